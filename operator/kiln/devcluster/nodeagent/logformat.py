"""Container log files in the CRI format and what `kubectl logs` gets from them (pure).

A line of the file is `<RFC3339Nano time> <stream> <F|P> <text>`; `P` marks a piece of
a longer line that the next entries continue.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class LogEntry:
    time: str
    stream: str
    partial: bool
    text: bytes

    @property
    def moment(self) -> dt.datetime:
        return parse_time(self.time)


def parse_time(text: str) -> dt.datetime:
    """RFC 3339 with up to nanoseconds (Python keeps microseconds)."""
    main, _, fraction = text.rstrip("Z").partition(".")
    micros = (fraction + "000000")[:6] if fraction else "000000"
    return dt.datetime.strptime(f"{main}.{micros}", "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.UTC)


def parse_line(line: bytes) -> LogEntry | None:
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    text = parts[3] if len(parts) == 4 else b""
    return LogEntry(parts[0].decode(), parts[1].decode(), parts[2] == b"P", text)


@dataclass(frozen=True)
class LogOptions:
    timestamps: bool = False
    tail_lines: int | None = None
    since: dt.datetime | None = None
    limit_bytes: int | None = None


def render_entry(entry: LogEntry, timestamps: bool, at_line_start: bool) -> bytes:
    prefix = entry.time.encode() + b" " if timestamps and at_line_start else b""
    return prefix + entry.text + (b"" if entry.partial else b"\n")


def select_entries(entries: Iterable[LogEntry], options: LogOptions) -> list[LogEntry]:
    """Entries after `since`, then the last `tail_lines` complete lines."""
    chosen = [e for e in entries if options.since is None or e.moment >= options.since]
    if options.tail_lines is None:
        return chosen
    if options.tail_lines <= 0:
        return []
    complete = 0
    for index in range(len(chosen) - 1, -1, -1):
        if not chosen[index].partial:
            complete += 1
            if complete > options.tail_lines:
                return chosen[index + 1 :]
    return chosen


def render(entries: Iterable[LogEntry], options: LogOptions) -> bytes:
    out = bytearray()
    at_line_start = True
    for entry in select_entries(entries, options):
        out += render_entry(entry, options.timestamps, at_line_start)
        at_line_start = not entry.partial
    if options.limit_bytes is not None:
        return bytes(out[: options.limit_bytes])
    return bytes(out)


def parse_log(data: bytes) -> list[LogEntry]:
    return [e for e in (parse_line(line) for line in data.splitlines()) if e is not None]


def tail_text(data: bytes, max_lines: int = 80, max_bytes: int = 2048) -> str:
    """The log tail kubelet uses for FallbackToLogsOnError (80 lines, 2 KiB)."""
    text = render(parse_log(data), LogOptions(tail_lines=max_lines))
    return text[-max_bytes:].decode("utf-8", "replace")
