"""How the console writes times, sizes, durations, shares and figures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tailor.serve.console.formats import duration, num, pct, size, when


def test_times_are_utc_with_their_seconds_and_iso_form_whatever_they_come_as():
    expected = {"ts": 1796053155, "iso": "2026-11-30T15:39:15Z", "text": "2026-11-30 15:39 UTC"}
    assert when(1796053155) == expected
    assert when(datetime(2026, 11, 30, 23, 39, 15, tzinfo=timezone(timedelta(hours=8)))) == expected
    assert when(None) is None


def test_sizes_durations_shares_and_figures_read_naturally():
    assert [size(n) for n in (0, 512, 24335, 5 * 1024 ** 3)] == ["0 B", "512 B", "23.8 KiB", "5.0 GiB"]
    assert [duration(s) for s in (0, 42.4, 200, 3725)] == ["0 s", "42 s", "3 min 20 s", "1 h 02 min"]
    assert [pct(v) for v in (None, 0.0, 0.7768)] == ["–", "0.0%", "77.7%"]
    assert [num(None), num(12345), num(0.12345), num(2.5, 1)] == ["–", "12,345", "0.12", "2.5"]
