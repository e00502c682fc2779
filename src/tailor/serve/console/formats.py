"""How the console's pages write times, sizes, durations, shares and figures (Jinja globals of every template).

Times are written in UTC on the server; ``console.js`` rewrites every ``<time data-ts>`` in the reader's own
time zone and language once the page loads.
"""

from __future__ import annotations

from datetime import datetime, timezone

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
DASH = "–"


def when(moment: datetime | int | None) -> dict | None:
    """A time (a datetime or Unix seconds) as ``{"ts", "iso", "text"}``: seconds, ISO 8601 and UTC text to the
    minute; None for no time."""
    if moment is None:
        return None
    if isinstance(moment, (int, float)):
        moment = datetime.fromtimestamp(moment, timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return {"ts": int(moment.timestamp()), "iso": moment.isoformat().replace("+00:00", "Z"),
            "text": moment.strftime("%Y-%m-%d %H:%M UTC")}


def size(count: int) -> str:
    """Bytes as people read them: ``512 B``, ``23.8 KiB``, ``1.5 GiB``."""
    value, unit = float(count), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {_UNITS[unit]}"


def duration(seconds: float) -> str:
    """Seconds as ``1 h 02 min``, ``3 min 20 s`` or ``42 s``."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal; a dash when there is none."""
    return DASH if value is None else f"{100 * value:.1f}%"


def num(value, digits: int = 2) -> str:
    """A figure: a count as is (with thousands separators), others to ``digits`` decimals; a dash for none."""
    if value is None:
        return DASH
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


GLOBALS = {"when": when, "size": size, "duration": duration, "pct": pct, "num": num}
