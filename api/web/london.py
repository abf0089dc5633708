"""London times in the console's pages: the text of `api.service.london`
in a ``<time>`` element whose attribute holds the UTC instant and whose
title shows it on hover."""
from __future__ import annotations

from markupsafe import Markup, escape

from api.service.london import london_time

__all__ = ["time_element"]


def time_element(ms: int | None) -> Markup:
    """``<time datetime="...Z" title="UTC ...">4 Mar 2024 19:00 GMT</time>``; an
    empty string for None."""
    if ms is None:
        return Markup("")
    t = london_time(ms)
    return Markup(f'<time datetime="{escape(t.utc)}" title="{escape(t.title)}">{escape(t.text)}</time>')
