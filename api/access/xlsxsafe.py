"""XLSX that a spreadsheet opens as data, never as formulas: the spreadsheet
twin of `api.access.csvsafe` (same rule, same function: `csvsafe.neutralise`).

openpyxl stores a ``str`` cell that starts with ``=`` as a formula; every
text cell goes through `csvsafe.neutralise` first, so a zone id
``=HYPERLINK("http://evil")`` is written as the text ``'=HYPERLINK(...)``,
exactly as the CSV download holds it. Numbers stay numbers.
"""
from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook

from api.access.csvsafe import neutralise

__all__ = ["workbook_bytes"]

_MAX_TITLE = 31  # Excel's limit on a sheet name


def workbook_bytes(sheets: Sequence[tuple[str, Iterable[Iterable[Any]]]]) -> bytes:
    """An .xlsx file with one sheet per (title, rows); the first row of each
    is its header (bold). Text cells are neutralised as in CSV."""
    from openpyxl.styles import Font

    wb = Workbook()
    wb.remove(wb.active)
    for title, rows in sheets:
        ws = wb.create_sheet(title=title[:_MAX_TITLE])
        for n, row in enumerate(rows):
            ws.append([neutralise(c) for c in row])
            if n == 0:
                for cell in ws[1]:
                    cell.font = Font(bold=True)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
