"""Times as people at the Hub read them: Europe/London wall-clock time with
its offset's abbreviation (``19:00 BST``) beside the UTC instant. Inside
tagtrail every time is epoch ms UTC (DEVELOPERS.md); this is the one place
one is turned into words, for the console (`api.web.london` wraps it in a
``<time>`` element) and for documents (evidence packs, letters), so a
curfew set for 19:00 never reads ``18:00Z`` in March."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from trails.timestamps import format_ms

__all__ = ["LONDON", "LondonTime", "london_time", "duration_text"]

LONDON = ZoneInfo("Europe/London")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class LondonTime:
    """`text`: ``4 Mar 2024 19:00 GMT``; `utc`: the contract's UTC form
    (``2024-03-04T19:00:00.000Z``); `title`: ``UTC 2024-03-04 19:00:00``."""

    text: str
    utc: str
    title: str


def london_time(ms: int) -> LondonTime:
    """`ms` (epoch ms UTC) in London time, with GMT or BST as it was then
    (zoneinfo: both clock changes, any year)."""
    utc = _EPOCH + timedelta(milliseconds=int(ms))
    local = utc.astimezone(LONDON)
    text = f"{local.day} {local:%b %Y %H:%M} {local.tzname()}"
    return LondonTime(text=text, utc=format_ms(int(ms)), title=f"UTC {utc:%Y-%m-%d %H:%M:%S}")


def duration_text(seconds: float) -> str:
    """``2 h 05 min``, ``45 min``, ``30 s``: how long a record lasted, to the second below a minute."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    h, m = divmod(s // 60, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"
