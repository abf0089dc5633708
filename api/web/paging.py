"""Filters and paging in a console page's query string: the queue and the
audit log read theirs the same way, so a bookmark, a "back" link and a
refused filter behave the same on both.

Unknown names are refused rather than ignored (a mistyped filter would
otherwise show everything and look like an answer); the query a view
writes back leaves its defaults out, so links stay short and stable.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlencode

__all__ = ["read_params", "read_page", "view_query", "page_count"]


def read_params(pairs: Iterable[tuple[str, str]], names: tuple[str, ...],
                what: str) -> tuple[dict[str, str], list[str]]:
    """The known parameters (stripped; the last of a repeated name) and one problem per unknown one."""
    pairs = list(pairs)
    problems = [f"{what} has no filter {k[:40]!r}" for k, _ in pairs if k not in names]
    return {k: v.strip() for k, v in pairs if k in names}, problems


def read_page(value: str, most: int, problems: list[str]) -> int:
    """Page number `value` (empty means 1); a problem is added, and 1 returned, when it is not 1..`most`."""
    value = value or "1"
    if not value.isdigit() or not 1 <= int(value) <= most:
        problems.append(f"page must be a whole number from 1, not {value[:20]!r}")
        return 1
    return int(value)


def view_query(values: Mapping[str, object], defaults: Mapping[str, object]) -> str:
    """The query string for `values`, leaving out empty values and those equal to their default."""
    return urlencode({k: v for k, v in values.items() if v not in ("", None) and defaults.get(k, "") != v})


def page_count(total: int, size: int) -> int:
    """Pages of `size` needed for `total` rows (at least one: an empty list is one empty page)."""
    return max(1, -(-total // size))
