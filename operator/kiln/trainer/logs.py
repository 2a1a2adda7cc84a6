"""Structured progress lines on stdout: one JSON object per line, readable by any collector."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


class EventLog:
    """`{"ts": <Unix seconds>, "level", "event", ...fields}` per line; the phase records the
    operator follows are defined in `kiln.contract.progress`."""

    def __init__(
        self, stream: TextIO | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._stream = stream
        self._clock = clock

    def emit(self, event: str, level: str = "info", **fields: Any) -> dict[str, Any]:
        """Write one record; returns it (its `ts` is what the report repeats)."""
        record = {"ts": round(self._clock(), 3), "level": level, "event": event, **fields}
        stream = self._stream or sys.stdout
        stream.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        stream.flush()
        return record
