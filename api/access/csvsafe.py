"""CSV that a spreadsheet opens as data, never as formulas (CSV injection).

Every CSV the service writes (trail and attendance extracts, reports) goes
through `writer`. A text cell whose first character is one of ``= + - @``,
TAB or CR is prefixed with a single quote, as OWASP's "CSV Injection" page
recommends: Excel, LibreOffice and Google Sheets then show the text as it
is instead of evaluating it (a zone id ``=HYPERLINK("http://evil")`` stays
that text). Only ``str`` cells are touched: numbers the service writes are
passed as ``int``/``float`` and written as numbers, so a negative coordinate
stays ``-2.98``, not ``'-2.98``. The csv module still quotes cells holding
the delimiter, quotes or line breaks, so a prefixed cell is one cell.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

__all__ = ["FORMULA_PREFIXES", "neutralise", "writer", "SafeWriter"]

#: First characters that make a spreadsheet read a cell as a formula (OWASP).
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: Any) -> Any:
    """`cell` as it should go into a CSV: text starting with a formula
    character gets a leading ``'``; anything that is not ``str`` (numbers,
    None) is returned unchanged.

    >>> neutralise("=1+1"), neutralise("-5"), neutralise(-5.0), neutralise("HOME-A")
    ("'=1+1", "'-5", -5.0, 'HOME-A')
    """
    if isinstance(cell, str) and cell.startswith(FORMULA_PREFIXES):
        return "'" + cell
    return cell


class SafeWriter:
    """A `csv.writer` whose rows go through `neutralise` cell by cell."""

    def __init__(self, stream, **fmtparams: Any) -> None:
        self._w = csv.writer(stream, **fmtparams)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow([neutralise(c) for c in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(stream, **fmtparams: Any) -> SafeWriter:
    """Like `csv.writer(stream, **fmtparams)`, with formula characters neutralised."""
    return SafeWriter(stream, **fmtparams)
