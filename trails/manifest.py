"""The store's manifest: the files the store itself published, and nothing else.

``HOME/store/manifest.parquet`` has one row per published file: ``path``
(relative to HOME/store), ``kind`` (fixes, events, quarantine), ``day``
(UTC day number; null for quarantine), ``rows`` and ``bytes``. A store write
(`trails.store.Transaction.commit`, under the store lock) renames its new
files into place and then replaces the manifest in one ``os.replace``: that
rename is the moment the files become part of the store, so a crash before it
publishes nothing.

Readers go through one `Manifest` per call and read only the files it lists:

- a file in a partition folder that the manifest does not list (dropped there
  by anything but the store) is ignored, with a warning naming it (once per
  process);
- a listed file that is missing, is not a regular file, or whose size differs
  from the manifest is an error (`StoreIntegrityError`) naming it: it was
  changed after the store wrote it.

A store written before the manifest existed is adopted once: the first process
to take the store lock lists the Parquet files it finds (`adopt`).

The manifest also says how the store is laid out, in its Parquet key-value
metadata (replaced with the file list, so the two never disagree):
``tagtrail.store.format`` (``1``: fix files directly in the day folders;
``2``: fix files in device buckets, ``fixes/day=D/bucket=K/NAME``),
``tagtrail.store.buckets`` (B) and ``tagtrail.store.bucket_hash``
(`trails.buckets`). A manifest without them is format 1.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import threading
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trails.buckets import BUCKET_HASH, bucket_of_path
from trails.errors import InputError

__all__ = ["MANIFEST_NAME", "MANIFEST_SCHEMA", "KINDS", "PUBLISHING", "Manifest", "StoreIntegrityError", "adopt",
           "day_label", "entry", "write_manifest"]

log = logging.getLogger("tagtrail.store")

MANIFEST_NAME = "manifest.parquet"
MANIFEST_SCHEMA = pa.schema([
    ("path", pa.string()),
    ("kind", pa.string()),
    ("day", pa.int32()),
    ("rows", pa.int64()),
    ("bytes", pa.int64()),
])
KINDS = ("fixes", "events", "quarantine")
_DAY_DIR = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")
_BUCKET_DIR = re.compile(r"^bucket=(0|[1-9]\d{0,3})$")
_FORMAT_KEY, _BUCKETS_KEY, _HASH_KEY = b"tagtrail.store.format", b"tagtrail.store.buckets", b"tagtrail.store.bucket_hash"
_warned: set[str] = set()
#: Held by a commit of this process while it publishes (renames, then the manifest).
PUBLISHING = threading.Lock()


class StoreIntegrityError(InputError):
    """A file the manifest lists is missing or not what the store wrote."""


def day_label(day: int) -> str:
    """Day number (days since 1970-01-01) -> ``YYYY-MM-DD`` (a partition is ``day=YYYY-MM-DD``)."""
    return str(np.datetime64(int(day), "D"))


def _day_number(label: str) -> int:
    return int(np.datetime64(label, "D").astype(np.int64))


def entry(root: Path, rel: str, rows: int) -> dict:
    """The manifest row of the file `rel` (relative to the store `root`), just written."""
    parts = rel.split("/")
    if len(parts) == 3 and parts[0] in ("fixes", "events") and _DAY_DIR.match(parts[1]):
        day = _day_number(parts[1][4:])
    elif len(parts) == 4 and parts[0] == "fixes" and _DAY_DIR.match(parts[1]) and _BUCKET_DIR.match(parts[2]):
        day = _day_number(parts[1][4:])
    elif len(parts) == 2 and parts[0] == "quarantine":
        day = None
    else:
        raise ValueError(f"store path {rel!r}: not KIND/day=YYYY-MM-DD/NAME, fixes/day=YYYY-MM-DD/bucket=K/NAME "
                         f"or quarantine/NAME")
    return {"path": rel, "kind": parts[0], "day": day, "rows": int(rows), "bytes": os.lstat(root / rel).st_size}


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message)


class Manifest:
    """One reading of the manifest: read once per store call, then asked which
    files to read. ``exists`` is False for a store that has no manifest yet."""

    def __init__(self, root: Path, table: pa.Table, *, exists: bool, buckets: int | None = None,
                 partial: bool = False) -> None:
        self.root = Path(root)
        self.table = table
        self.exists = exists
        #: a part of the store's manifest (a bucket task's listing): files it does not list are
        #: other tasks' and not reported (the client's full reading reported the unknown ones)
        self.partial = partial
        #: B of a store written in device buckets (format 2), None for format 1
        self.buckets = buckets

    @classmethod
    def read(cls, root) -> "Manifest":
        """The manifest of the store `root`, as it is now: one small Parquet read
        (measured: 4 ms for 5,000 files, 70 ms for 100,000), once per store call."""
        root = Path(root)
        path = root / MANIFEST_NAME
        try:
            table = pq.read_table(path, schema=MANIFEST_SCHEMA)
            meta = pq.read_schema(path).metadata or {}
        except FileNotFoundError:
            return cls(root, MANIFEST_SCHEMA.empty_table(), exists=False)
        except (pa.ArrowException, OSError) as exc:
            raise StoreIntegrityError(f"store manifest {str(path)!r}: unreadable: {exc}") from None
        return cls(root, table, exists=True, buckets=_layout_of(path, meta))

    def _of(self, kind: str) -> pa.Table:
        return self.table.filter(pc.equal(self.table.column("kind"), kind))

    def days(self, kind: str) -> list[int]:
        """Day numbers with at least one listed file of `kind`, ascending; a day
        folder on disk that the manifest does not know is reported (once)."""
        listed = sorted(int(d) for d in pc.unique(self._of(kind).column("day")).to_pylist() if d is not None)
        folder = self.root / kind
        if folder.is_dir() and not self.partial:
            known = {day_label(d) for d in listed}
            for name in os.listdir(folder):
                m = _DAY_DIR.match(name)
                if not (m and m.group(1) in known):
                    _warn_once(str(folder / name), f"store: ignoring {str(folder / name)!r}: the store did not "
                                                    f"write it (not in {MANIFEST_NAME})")
        return listed

    def files(self, kind: str, days=None) -> tuple[list[str], np.ndarray]:
        """(absolute paths, rows of each) of the listed files of `kind` (on `days`,
        None = all), by day then name; each is checked against the manifest.

        Raises
        ------
        StoreIntegrityError
            A listed file is missing, not a regular file, or not the size listed.
        """
        t = self._of(kind)
        if days is not None:
            t = t.filter(pc.is_in(t.column("day"), value_set=pa.array(list(days), pa.int32())))
        t = t.take(pc.sort_indices(t, sort_keys=[("day", "ascending"), ("path", "ascending")]))
        rels = t.column("path").to_pylist()
        sizes = t.column("bytes").to_numpy()
        for rel, size in zip(rels, sizes.tolist()):
            self._check(rel, size)
        if not self.partial:
            self._warn_unlisted(kind, rels, days)
        return [str(self.root / r) for r in rels], t.column("rows").to_numpy()

    def _check(self, rel: str, size: int) -> None:
        path = self.root / rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise StoreIntegrityError(f"store file {str(path)!r}: listed in {MANIFEST_NAME} but missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise StoreIntegrityError(f"store file {str(path)!r}: not a regular file (the store wrote one)")
        if st.st_size != size:
            raise StoreIntegrityError(f"store file {str(path)!r}: {st.st_size} bytes, but the store wrote "
                                      f"{size}: it was changed after it was written")

    def _warn_unlisted(self, kind: str, rels: list[str], days) -> None:
        """Warn (once each) about files in the folders just read that the manifest does not list
        (a bucket folder that holds listed files is the store's own)."""
        listed = set(rels) | {r.rsplit("/", 1)[0] for r in rels if r.count("/") == 3}
        if kind == "quarantine":
            folders = [f"{kind}"]
        else:
            folders = sorted({r.rsplit("/", 1)[0] for r in rels})
            if days is not None:
                folders = sorted(set(folders) | {f"{kind}/day={day_label(d)}" for d in days})
        unlisted = []
        for folder in folders:
            try:
                names = os.listdir(self.root / folder)
            except (FileNotFoundError, NotADirectoryError):
                continue
            unlisted += [f"{folder}/{n}" for n in names if f"{folder}/{n}" not in listed]
        if not unlisted:
            return
        # a file renamed into place by a commit still under way is listed a moment later: look again
        with PUBLISHING:
            now = set(Manifest.read(self.root).table.column("path").to_pylist())
        now |= {r.rsplit("/", 1)[0] for r in now if r.count("/") == 3}  # bucket folders of listed files
        for rel in unlisted:
            if rel not in now:
                _warn_once(str(self.root / rel), f"store: ignoring {str(self.root / rel)!r}: the store did not "
                                                  f"write it (not in {MANIFEST_NAME})")

    def bucket_files(self, days=None) -> dict[int | None, tuple[list[str], np.ndarray]]:
        """Fix files on `days` (None = all) by bucket: bucket -> (absolute paths, rows), each list
        by day then name as `files` gives them; files outside buckets under the key None."""
        paths, rows = self.files("fixes", days)
        out: dict[int | None, tuple[list[str], list[int]]] = {}
        for p, n in zip(paths, rows.tolist()):
            got = out.setdefault(bucket_of_path(p[len(str(self.root)):]), ([], []))  # relative: HOME may say bucket=
            got[0].append(p)
            got[1].append(n)
        return {k: (v[0], np.asarray(v[1], np.int64)) for k, v in out.items()}

    def paths(self, kind: str) -> pa.Array:
        """The listed paths of `kind` (relative to the store)."""
        return self._of(kind).column("path").combine_chunks()

    def updated(self, entries: list[dict], *, removed: list[str] = ()) -> pa.Table:
        """This manifest with `entries` added (an entry replaces a listed one with the same path)
        and the paths `removed` taken out."""
        new = pa.Table.from_pylist(entries, schema=MANIFEST_SCHEMA)
        old = self.table
        gone = pa.concat_arrays([new.column("path").combine_chunks(), pa.array(list(removed), pa.string())])
        if len(gone) and old.num_rows:
            old = old.filter(pc.invert(pc.is_in(old.column("path"), value_set=gone)))
        t = pa.concat_tables([old, new])
        order = [("kind", "ascending"), ("day", "ascending"), ("path", "ascending")]
        return t.take(pc.sort_indices(t, sort_keys=order))


def _layout_of(path: Path, meta: dict) -> int | None:
    """B from a manifest's metadata (None: format 1); an unknown format or hash is an error,
    never guessed at (a reader that misplaced devices would miss their fixes)."""
    fmt = meta.get(_FORMAT_KEY, b"1")
    if fmt == b"1":
        return None
    if fmt != b"2" or meta.get(_HASH_KEY) != BUCKET_HASH.encode() or not meta.get(_BUCKETS_KEY, b"").isdigit():
        raise StoreIntegrityError(f"store manifest {str(path)!r}: layout {fmt!r} with buckets "
                                  f"{meta.get(_BUCKETS_KEY)!r} by {meta.get(_HASH_KEY)!r}: not one this tagtrail reads")
    return int(meta[_BUCKETS_KEY])


def write_manifest(root: Path, table: pa.Table, *, buckets: int | None = None) -> None:
    """Replace the manifest of the store `root` with `table`, atomically and
    durably (temporary file, fsync, rename, fsync of the folder), recording
    the layout: `buckets` B (format 2) or None (format 1). Caller holds the
    store lock."""
    root = Path(root)
    table = table.cast(MANIFEST_SCHEMA)
    if buckets is not None:
        table = table.replace_schema_metadata({_FORMAT_KEY: b"2", _BUCKETS_KEY: str(int(buckets)).encode(),
                                               _HASH_KEY: BUCKET_HASH.encode()})
    tmp = root / f".tmp-manifest-{uuid.uuid4().hex[:12]}.parquet"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, root / MANIFEST_NAME)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def adopt(root: Path) -> int:
    """List the files of a store written before the manifest existed (once: only
    when there is no manifest); returns the number of files adopted. Caller
    holds the store lock. Only regular ``*.parquet`` files in the store's own
    layout are listed; anything else is left out (and reported by readers)."""
    root = Path(root)
    if (root / MANIFEST_NAME).exists() or not root.is_dir():
        return 0
    entries = []
    for kind in KINDS:
        folder = root / kind
        if not folder.is_dir() or folder.is_symlink():
            continue
        if kind == "quarantine":
            rels = [f"{kind}/{n}" for n in sorted(os.listdir(folder))]
        else:
            rels = [f"{kind}/{d}/{n}" for d in sorted(os.listdir(folder)) if _DAY_DIR.match(d)
                    and not (folder / d).is_symlink() and (folder / d).is_dir() for n in sorted(os.listdir(folder / d))]
        for rel in rels:
            if not (rel.endswith(".parquet") and stat.S_ISREG(os.lstat(root / rel).st_mode)):
                continue
            try:
                rows = pq.ParquetFile(root / rel).metadata.num_rows
            except (pa.ArrowException, OSError) as exc:
                log.warning("store %r: not adopting %r: unreadable Parquet: %s", str(root), rel, exc)
                continue
            entries.append(entry(root, rel, rows))
    write_manifest(root, Manifest(root, MANIFEST_SCHEMA.empty_table(), exists=False).updated(entries))
    if entries:
        log.warning("store %r: adopted %d files written before the store kept a manifest", str(root), len(entries))
    return len(entries)
