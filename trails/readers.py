"""Read fixes and events files (CSV or Parquet) into validated columns.

CONTRACT.md, "Files": CSV is UTF-8 (leading BOM ignored; invalid UTF-8 makes the
file unreadable), RFC 4180 quoting, a header row naming columns in any order
(case-sensitive, extra columns ignored); ``row`` counts records after the
header and blank lines are not records. Every CSV column is read as text, with
no null inference. In Parquet, ``row`` is the 1-based row index and
``device_id``/``event`` must be string or integer columns.

A source is a path (its extension says CSV or Parquet), or the file's bytes
(or a binary file object) with ``fmt="csv"``/``"parquet"``: an HTTP body is read
where it is, never written to a temporary file. File-level problems raise
`trails.errors.InputError` naming the file (``fixes file 'in/f.csv': ...``; a
source that is not a path by its ``name``, ``(body)`` unless given) and the
column; row-level problems are quarantined (`trails.validate`). A missing
required column is reported with what the header holds and the likely cause
(a second byte-order mark, a name differing in case or quoting, a header that
looks ``;``- or tab-separated): `_header_hint`.

Parquet is read so that a small file cannot take a large amount of memory
(issue 10: a 1.5 KB file with a dictionary-encoded 1 MiB device id repeated
took 4.8 GB):

- Before anything is decoded, each wanted column chunk's uncompressed size
  (from the file's metadata) is checked against `MAX_CHUNK_BYTES` or
  `MAX_CHUNK_BYTES_PER_ROW` per row, whichever is larger; a file over it is
  refused (`InputError` naming the file, column and limit).
- A wanted string column whose chunks are dictionary-encoded is read as an
  Arrow dictionary column, so its values are decoded once each, not once per
  row; `trails.validate` judges them on the dictionary, and only kept rows
  (ids of at most 128 characters) are ever decoded per row.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from trails.errors import InputError
from trails.quarantine import Rejected
from trails.timestamps import WHITESPACE
from trails.validate import Events, Fixes, validate_events, validate_fixes

__all__ = [
    "Fixes",
    "Events",
    "FIX_COLUMNS",
    "EVENT_COLUMNS",
    "read_fixes",
    "read_events",
    "iter_fix_batches",
    "iter_event_batches",
    "iter_raw_batches",
]

#: (required, optional) columns per source.
FIX_COLUMNS: tuple[tuple[str, ...], tuple[str, ...]] = (("device_id", "ts", "lat", "lon"), ("accuracy_m", "battery_pct"))
EVENT_COLUMNS: tuple[tuple[str, ...], tuple[str, ...]] = (("device_id", "ts", "event"), ())

_CSV_BLOCK = 4 << 20
#: A Parquet column chunk may decode to at most max(MAX_CHUNK_BYTES,
#: MAX_CHUNK_BYTES_PER_ROW x its rows) bytes: far above any real fixes file
#: (a row's wanted fields take well under 100 bytes), far below a memory bomb.
MAX_CHUNK_BYTES = 256 << 20
MAX_CHUNK_BYTES_PER_ROW = 1024


@dataclass(frozen=True)
class _Input:
    """One source to read: a path, or bytes held in memory (`data`), or a caller's
    seekable binary file (`stream`, read from `start`, never closed here)."""

    label: str  # how messages name it: 'dir/f.csv' (repr of the path) or (body)
    fmt: str  # "csv" or "parquet"
    path: Path | None = None
    data: pa.Buffer | None = None
    stream: object | None = None
    start: int = 0

    @contextlib.contextmanager
    def open(self):
        """A binary stream of the whole source from its start (closed, or rewound, after)."""
        if self.path is not None:
            with open(self.path, "rb") as fh:
                yield fh
        elif self.data is not None:
            yield pa.BufferReader(self.data)  # zero-copy
        else:
            self.stream.seek(self.start)
            yield self.stream

    def arrow(self):
        """What pyarrow's readers take: the path, or a stream positioned at the start."""
        if self.path is not None:
            return self.path
        if self.data is not None:
            return pa.BufferReader(self.data)
        self.stream.seek(self.start)
        return self.stream


def _input(source, kind: str, fmt: str | None, name: str) -> _Input:
    """Check `source` and say how to read it (errors name the file)."""
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        label = repr(str(p))
        if p.suffix not in (".csv", ".parquet"):
            raise InputError(f"{kind} file {label}: extension {p.suffix or '(none)'!r} is not .csv or .parquet")
        if fmt is not None and fmt != p.suffix[1:]:
            raise InputError(f"{kind} file {label}: asked to read it as {fmt}, but its extension is {p.suffix!r}")
        if not p.exists():
            raise InputError(f"{kind} file {label}: not found")
        if not p.is_file():
            raise InputError(f"{kind} file {label}: not a regular file")
        return _Input(label, p.suffix[1:], path=p)
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"{kind} source {name}: fmt must be 'csv' or 'parquet' when it is not a path, got {fmt!r}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _Input(name, fmt, data=pa.py_buffer(source))
    if isinstance(source, pa.Buffer):
        return _Input(name, fmt, data=source)
    if not callable(getattr(source, "read", None)):
        raise TypeError(f"{kind} source {name}: {type(source).__name__} is not a path, bytes or a binary file object")
    try:
        return _Input(name, fmt, stream=source, start=source.tell()) if source.seekable() else \
            _Input(name, fmt, data=pa.py_buffer(source.read()))
    except OSError as exc:
        raise InputError(f"{kind} file {name}: unreadable: {exc}") from None


def _csv_header(src: _Input, kind: str) -> list[str]:
    """The header row's raw names (first non-blank record; BOM dropped)."""
    try:
        with src.open() as fb:
            text = io.TextIOWrapper(fb, encoding="utf-8-sig", newline="")
            try:
                for rec in csv.reader(text):
                    if rec:
                        return rec
            finally:
                text.detach()  # the binary stream is closed (or kept) by `open`, not by the wrapper
    except UnicodeDecodeError:
        raise InputError(f"{kind} file {src.label}: unreadable: not valid UTF-8") from None
    except (OSError, csv.Error) as exc:
        raise InputError(f"{kind} file {src.label}: unreadable: {exc}") from None
    raise InputError(f"{kind} file {src.label}: unreadable: no header row")


def _check_utf8(src: _Input, kind: str) -> None:
    """Raise unless the whole file is valid UTF-8 (used when columns are skipped)."""
    dec = codecs.getincrementaldecoder("utf-8")()
    try:
        with src.open() as fb:
            while chunk := fb.read(8 << 20):
                dec.decode(chunk)
            dec.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InputError(f"{kind} file {src.label}: unreadable: not valid UTF-8") from None


def _select(names: list[str], columns, kind: str, src: _Input) -> dict[str, str]:
    """Map wanted column -> name as written in the file (names are trimmed)."""
    required, optional = columns
    found: dict[str, str] = {}
    for raw in names:
        name = raw.strip(WHITESPACE)
        if name in required or name in optional:
            if name in found:
                raise InputError(f"{kind} file {src.label}: column {name!r} appears more than once")
            found[name] = raw
    for name in required:
        if name not in found:
            raise InputError(f"{kind} file {src.label}: missing required column {name!r}"
                             f"{_header_hint(name, names, is_csv=src.fmt == 'csv')}; "
                             f"the header holds {_header_text(names)}")
    return found


def _header_text(names: list[str], shown: int = 12) -> str:
    """The header's names as a short readable list (each repr'd, long ones cut)."""
    def one(n: str) -> str:
        return repr(n) if len(n) <= 40 else repr(n[:37]) + "..."
    text = ", ".join(one(n) for n in names[:shown])
    return f"[{text}{f', ... ({len(names)} names)' if len(names) > shown else ''}]"


_INVISIBLE = "\ufeff\u200b\u00a0\u2060"
_QUOTES = "\"'\u2018\u2019\u201c\u201d"


def _header_hint(name: str, names: list[str], *, is_csv: bool) -> str:
    """Why `name` is not in the header, when the header says so ("" when it does not).

    Checked in this order: a byte-order mark before the first name that is
    `name` (in CSV, where one leading BOM is ignored, that is a second BOM: the
    file was saved as "UTF-8 with BOM" twice, or a BOM was pasted in); a name
    that is `name` except for quote marks, invisible characters or letter
    case; a header that holds `name` once split on ``;``, tab or ``|`` (a
    file not separated by commas).
    """
    bom = "\ufeff"
    if names and names[0].startswith(bom) and names[0].lstrip(bom).strip(WHITESPACE) == name:
        where = "the file starts with two byte-order marks" if is_csv else "a byte-order mark starts the first name"
        return (f": {where} (U+FEFF), so the first column is named {names[0]!r}, not {name!r}; "
                f"save the file as UTF-8 with at most one BOM")
    for raw in names:
        n = raw.strip(WHITESPACE)
        bare = n.strip(WHITESPACE + _INVISIBLE + _QUOTES)
        if bare.lower() != name.lower() or n == name:
            continue
        if any(c in _QUOTES for c in n) and bare == name:
            return f": column {n!r} has quote marks inside its name (names are written without them)"
        if any(c in _INVISIBLE for c in n) and bare == name:
            return f": column {n!r} holds invisible characters (byte-order mark, zero-width or no-break space)"
        return f": column {n!r} differs only in letter case (column names are case-sensitive)"
    for sep, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
        parts = [part.strip(WHITESPACE + _QUOTES) for raw in names for part in raw.split(sep)]
        if any(sep in raw for raw in names) and name in parts:
            return f": the header looks {label}-separated ({sep!r}); columns must be separated by commas"
    return ""


def _skip_blank_rows(row) -> str:
    """A line of only whitespace is a blank line, not a record; any other ragged row is an error."""
    return "skip" if (row.text or "").strip(WHITESPACE) == "" else "error"


def _rechunk(batches: Iterator[pa.RecordBatch], batch_rows: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    n = 0
    for b in batches:
        while b.num_rows:
            take = min(b.num_rows, batch_rows - n)
            pending.append(b.slice(0, take))
            n += take
            b = b.slice(take)
            if n >= batch_rows:
                yield pa.Table.from_batches(pending)
                pending, n = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def _iter_csv(src: _Input, columns, kind: str, batch_rows: int) -> Iterator[pa.Table]:
    """Check the header eagerly (errors before any output); return a batch generator."""
    names = _csv_header(src, kind)
    found = _select(names, columns, kind, src)
    if len(names) != len(found):
        _check_utf8(src, kind)  # skipped columns are not converted, so check them here
    convert = pacsv.ConvertOptions(
        column_types={raw: pa.string() for raw in found.values()},
        include_columns=list(found.values()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        check_utf8=True,
    )
    parse = pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=_skip_blank_rows)
    read = pacsv.ReadOptions(block_size=_CSV_BLOCK, use_threads=True)
    rename = {raw: name for name, raw in found.items()}
    # opening parses the first block: done lazily (in the prefetch thread when streaming)
    return _gen_csv(src, kind, (read, parse, convert), rename, batch_rows)


def _csv_error(src: _Input, kind: str, exc: Exception) -> InputError:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "utf8" in msg.lower():
        msg = "not valid UTF-8"
    return InputError(f"{kind} file {src.label}: unreadable: {msg}")


def _gen_csv(src: _Input, kind: str, options, rename: dict, batch_rows: int) -> Iterator[pa.Table]:
    read, parse, convert = options
    try:
        reader = pacsv.open_csv(src.arrow(), read_options=read, parse_options=parse, convert_options=convert)
        for table in _rechunk(iter(reader), batch_rows):
            yield table.rename_columns([rename[c] for c in table.column_names])
    except pa.ArrowInvalid as exc:
        raise _csv_error(src, kind, exc) from None
    except OSError as exc:
        raise InputError(f"{kind} file {src.label}: unreadable: {exc}") from None


def _iter_parquet(src: _Input, columns, kind: str, batch_rows: int) -> Iterator[pa.Table]:
    try:
        f = pq.ParquetFile(src.arrow())
        schema = f.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{kind} file {src.label}: unreadable: {str(exc).splitlines()[0]}") from None
    found = _select(list(schema.names), columns, kind, src)
    for name in ("device_id", "event"):
        if name in found:
            t = schema.field(found[name]).type
            if pa.types.is_dictionary(t):
                t = t.value_type
            if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)):
                raise InputError(f"{kind} file {src.label}: column {name!r} has type {t}, not string or integer")
    t = schema.field(found["ts"]).type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if not (pa.types.is_timestamp(t) or pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise InputError(f"{kind} file {src.label}: column 'ts' has type {t}, not timestamp or string")
    for name in ("lat", "lon", "accuracy_m", "battery_pct"):
        if name in found:
            t = schema.field(found[name]).type
            if pa.types.is_dictionary(t):
                t = t.value_type
            if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)
                    or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
                raise InputError(f"{kind} file {src.label}: column {name!r} has type {t}, not a number or string")
    dictionary_columns = _check_parquet_sizes(src, kind, f, found)
    if dictionary_columns:
        f = pq.ParquetFile(src.arrow(), read_dictionary=dictionary_columns, metadata=f.metadata)
    rename = {raw: name for name, raw in found.items()}
    return _gen_parquet(src, kind, f, found, rename, batch_rows)


def _check_parquet_sizes(src: _Input, kind: str, f: pq.ParquetFile, found: dict[str, str]) -> list[str]:
    """Refuse a file whose metadata says a wanted column would decode too large; return
    the wanted string columns that hold dictionary pages (to be read as dictionaries).

    The bound per column chunk is max(`MAX_CHUNK_BYTES`, `MAX_CHUNK_BYTES_PER_ROW`
    x rows of its row group), on the chunk's ``total_uncompressed_size``
    (dictionary page included). A dictionary-encoded chunk is small however
    often a long value repeats: reading it as a dictionary keeps it small.
    """
    md = f.metadata
    leaf = {md.schema.column(j).path: j for j in range(md.num_columns)}
    schema = f.schema_arrow
    dictionary_columns: set[str] = set()
    for name, raw in found.items():
        j = leaf.get(raw)
        if j is None:
            continue
        t = schema.field(raw).type
        is_text = pa.types.is_string(t) or pa.types.is_large_string(t) or (
            pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)))
        for g in range(md.num_row_groups):
            group = md.row_group(g)
            chunk = group.column(j)
            limit = max(MAX_CHUNK_BYTES, MAX_CHUNK_BYTES_PER_ROW * group.num_rows)
            if chunk.total_uncompressed_size > limit:
                raise InputError(
                    f"{kind} file {src.label}: column {name!r} in row group {g} would take "
                    f"{chunk.total_uncompressed_size:,} bytes for {group.num_rows:,} rows once decoded, more than "
                    f"the limit of {limit:,} (the larger of {MAX_CHUNK_BYTES:,} bytes and "
                    f"{MAX_CHUNK_BYTES_PER_ROW:,} bytes per row): refusing to read it")
            if is_text and chunk.has_dictionary_page:
                dictionary_columns.add(raw)
    return sorted(dictionary_columns)


def _gen_parquet(src: _Input, kind: str, f, found: dict, rename: dict, batch_rows: int) -> Iterator[pa.Table]:
    try:
        it = f.iter_batches(batch_size=batch_rows, columns=list(found.values()), use_threads=True)
        for b in it:
            yield pa.Table.from_batches([b]).rename_columns([rename[c] for c in b.schema.names])
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{kind} file {src.label}: unreadable: {str(exc).splitlines()[0]}") from None


def iter_raw_batches(source, *, kind: str = "fixes", batch_rows: int = 1_000_000, fmt: str | None = None,
                     name: str = "(body)") -> Iterator[pa.Table]:
    """Stream the wanted columns of a fixes/events file as tables of <= `batch_rows` rows.

    `source` is a path, or the file's bytes or a binary file object with `fmt`
    (``"csv"`` or ``"parquet"``) saying what they hold; `name` is how messages
    name such a source (``fixes file (body): ...``). Columns are renamed to their
    contract names; CSV columns are strings. Raises `InputError` for file-level
    problems (CONTRACT.md, "Files"), the same for every kind of source.
    """
    return _raw_batches(_input(source, kind, fmt, name), kind, batch_rows)


def _raw_batches(src: _Input, kind: str, batch_rows: int) -> Iterator[pa.Table]:
    columns = FIX_COLUMNS if kind == "fixes" else EVENT_COLUMNS
    if src.fmt == "csv":
        return _iter_csv(src, columns, kind, batch_rows)
    return _iter_parquet(src, columns, kind, batch_rows)


def iter_fix_batches(source, *, batch_rows: int = 1_000_000, fmt: str | None = None,
                     name: str = "(body)") -> Iterator[tuple[Fixes, Rejected]]:
    """Stream validated fixes (reasons 1-6) in batches; rows are numbered globally.
    `source`, `fmt`, `name`: as for `iter_raw_batches`."""
    for fixes, rejected, _table, _bad in _iter_validated(source, "fixes", batch_rows, fmt=fmt, name=name):
        yield fixes, rejected


def iter_event_batches(source, *, batch_rows: int = 1_000_000, fmt: str | None = None,
                       name: str = "(body)") -> Iterator[tuple[Events, Rejected]]:
    """Stream validated events (reasons 1, 2, 3, 7) in batches."""
    for events, rejected, _table, _bad in _iter_validated(source, "events", batch_rows, fmt=fmt, name=name):
        yield events, rejected


def _iter_validated(source, kind: str, batch_rows: int, *, fmt: str | None = None, name: str = "(body)"):
    """Iterator of (kept, Rejected, raw table, rejected positions in the table).

    The source and header are checked eagerly (errors before any output).
    """
    src = _input(source, kind, fmt, name)
    return _gen_validated(_prefetch(_raw_batches(src, kind, batch_rows)), src.label, kind)


def _prefetch(iterator, depth: int = 1):
    """Run `iterator` in a background thread, `depth` items ahead; its exceptions are re-raised here.

    Reading the next batch (Arrow's CSV/Parquet readers release the GIL) then
    overlaps validating the current one.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in iterator:
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as exc:  # handed to the consumer
            put((False, exc))

    th = threading.Thread(target=work, name="tagtrail-read", daemon=True)
    th.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()


def _gen_validated(batches, label: str, kind: str):
    validate = validate_fixes if kind == "fixes" else validate_events
    first = 1
    for table in batches:
        kept, rejected, bad = validate(table, first_row=first, name=f"{kind} file {label}")
        yield kept, rejected, table, bad
        first += table.num_rows


def read_fixes(source, *, fmt: str | None = None, name: str = "(body)") -> tuple[Fixes, Rejected]:
    """Read and validate a whole fixes file: (kept fixes, rejected rows)."""
    parts, rej = [], []
    for f, r in iter_fix_batches(source, fmt=fmt, name=name):
        parts.append(f)
        rej.append(r)
    return Fixes.concat(parts), Rejected.concat("fixes", rej)


def read_events(source, *, fmt: str | None = None, name: str = "(body)") -> tuple[Events, Rejected]:
    """Read and validate a whole events file: (kept events, rejected rows)."""
    parts, rej = [], []
    for e, r in iter_event_batches(source, fmt=fmt, name=name):
        parts.append(e)
        rej.append(r)
    return Events.concat(parts), Rejected.concat("events", rej)
