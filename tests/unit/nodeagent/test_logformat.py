import datetime as dt

import pytest

from kiln.devcluster.nodeagent.logformat import LogOptions, parse_log, parse_time, render, tail_text

pytestmark = pytest.mark.unit

LOG = (
    b"2026-01-01T00:00:01.000000000Z stdout F one\n"
    b"2026-01-01T00:00:02.000000000Z stderr F two\n"
    b"2026-01-01T00:00:03.000000000Z stdout P thr\n"
    b"2026-01-01T00:00:03.500000000Z stdout F ee\n"
    b"2026-01-01T00:00:04.000000000Z stdout F \n"
)


def test_plain_output_joins_partial_lines() -> None:
    assert render(parse_log(LOG), LogOptions()) == b"one\ntwo\nthree\n\n"


def test_timestamps_prefix_each_line_once() -> None:
    out = render(parse_log(LOG), LogOptions(timestamps=True)).splitlines()
    assert out[0] == b"2026-01-01T00:00:01.000000000Z one"
    assert out[2] == b"2026-01-01T00:00:03.000000000Z three"


def test_tail_lines_counts_whole_lines() -> None:
    assert render(parse_log(LOG), LogOptions(tail_lines=2)) == b"three\n\n"
    assert render(parse_log(LOG), LogOptions(tail_lines=0)) == b""


def test_since_and_limit() -> None:
    since = dt.datetime(2026, 1, 1, 0, 0, 2, tzinfo=dt.UTC)
    assert render(parse_log(LOG), LogOptions(since=since)) == b"two\nthree\n\n"
    assert render(parse_log(LOG), LogOptions(limit_bytes=5)) == b"one\nt"


def test_parse_time_keeps_microseconds() -> None:
    assert parse_time("2026-01-01T00:00:03.500000000Z").microsecond == 500000
    assert parse_time("2026-01-01T00:00:03Z").second == 3


def test_fallback_tail() -> None:
    assert tail_text(LOG, max_lines=1) == "\n"
    assert tail_text(LOG, max_bytes=3) == "e\n\n"
