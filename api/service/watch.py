"""Intake from a folder: supplier feeds that arrive as files (`tagtrail watch`,
`tagtrail serve --watch`).

Each scan takes the files in the folder whose size has not changed since the
previous scan (a file still being written is left for the next one; better
still, suppliers write to a name starting with ``.`` or ending in ``.part`` or
``.tmp`` and rename when done, and such names are ignored). A file is a fixes
file or, when its columns include ``event`` and not ``lat``, an events file,
in CSV or Parquet as the contract defines them. It goes through exactly the
intake of POST /v1/fixes, 50,000 rows a batch.

The folder is writable by suppliers, so nothing in it is trusted:

- a symbolic link (to a file or a folder) is never followed, opened or moved
  into: it is refused, reported once (in the scan's results and the log) and
  left in place;
- a file is opened with ``O_NOFOLLOW`` and checked to be a regular file
  (``fstat``) before anything reads it, then moved (or, across file systems,
  copied from that open descriptor) into HOME, where it is read: what is read
  is what was checked;
- nothing is written into the folder: a taken file ends in
  ``HOME/watch/<feed>/processed/`` (a file that cannot be read in
  ``HOME/watch/<feed>/failed/`` with a ``.error.txt`` beside it saying why),
  where ``<feed>`` is the folder's name plus a hash of its full path
  (`feed_dir`). HOME is private to tagtrail's account (`trails.home`).

A crash between a batch and the move is harmless: the file is still in
``HOME/watch/<feed>/incoming/``, taken again first at the next start, and its
rows already accepted are all duplicates.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import threading
from pathlib import Path

import pyarrow as pa

from trails.errors import InputError
from trails.home import private_dir
from trails.readers import iter_raw_batches

from api.service.intake import MAX_ROWS, take_batch

__all__ = ["FolderWatcher", "feed_dir"]

log = logging.getLogger("tagtrail.watch")
_SKIP_SUFFIXES = (".part", ".tmp", ".error.txt")
_REFUSED_LINK = "a symbolic link: never followed or taken; left in place"
_REFUSED_OTHER = "not a regular file: left in place"


def feed_dir(home, folder) -> Path:
    """HOME/watch/<feed>: where files taken from `folder` are kept (incoming,
    processed, failed). <feed> is the folder's name (letters, digits, ``._-``)
    and the first 8 hex digits of SHA-256 of its absolute path, so two feeds
    with the same name never share one."""
    full = os.path.abspath(folder)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(full.rstrip("/")) or "root")[:40].lstrip(".") or "feed"
    return Path(home) / "watch" / f"{name}-{hashlib.sha256(full.encode()).hexdigest()[:8]}"


def _kind(path: Path) -> str:
    """``events`` if the file's columns include event and not lat, else ``fixes``."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        names = set(pq.ParquetFile(path).schema_arrow.names)
    else:
        with open(path, "r", encoding="utf-8-sig", errors="replace") as fh:
            names = {c.strip().strip('"') for c in fh.readline().split(",")}
    return "events" if "event" in names and "lat" not in names else "fixes"


def _copy_fd(fd: int, dest: Path) -> None:
    """Copy the open file `fd` (from its start) into the new file `dest` (0600)."""
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 8 << 20):
            os.write(out, chunk)
    finally:
        os.close(out)


class FolderWatcher:
    """Scans a folder and feeds its files to a `StreamService`'s intake."""

    def __init__(self, stream, factory, audit, folder, *, interval_s: float = 2.0) -> None:
        self.stream, self.factory, self.audit = stream, factory, audit
        self.folder = Path(folder)
        self.interval_s = interval_s
        self.home_dir = feed_dir(stream.settings.home, self.folder)
        self.incoming, self.processed, self.failed = (private_dir(self.home_dir / s)
                                                      for s in ("incoming", "processed", "failed"))
        self.n_refused = 0  # distinct entries refused so far
        self._refused: dict[str, tuple[int, int]] = {}  # name -> (dev, inode) already reported
        self._sizes: dict[str, tuple[int, int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _refuse(self, name: str, st: os.stat_result, why: str) -> dict | None:
        """Report a refused entry once (counts and a log line); None if already reported."""
        if self._refused.get(name) == (st.st_dev, st.st_ino):
            return None
        self._refused[name] = (st.st_dev, st.st_ino)
        self.n_refused += 1
        log.warning("watch: refused %r in %s: %s", name, self.folder, why)
        return {"file": name, "batches": 0, "accepted": 0, "quarantined": 0, "refused": why}

    def _scan_folder(self) -> tuple[list[str], list[dict]]:
        """(names of files whose size is the same as at the previous scan, oldest
        first; entries refused for the first time). Uses ``lstat`` only."""
        ready, refused, sizes = [], [], {}
        try:
            entries = sorted(os.scandir(self.folder), key=lambda e: e.name)
        except FileNotFoundError:
            return [], []
        for e in entries:
            if e.name.startswith(".") or e.name.endswith(_SKIP_SUFFIXES):
                continue
            st = e.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                r = self._refuse(e.name, st, _REFUSED_LINK)
                refused += [r] if r else []
                continue
            if not stat.S_ISREG(st.st_mode) or Path(e.name).suffix not in (".csv", ".parquet"):
                continue  # folders (and other entries) are not feeds: never entered
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            sizes[e.name] = key
            if self._sizes.get(e.name) == key:
                ready.append((st.st_mtime_ns, e.name))
        self._sizes = sizes
        return [n for _, n in sorted(ready)], refused

    def ready_files(self) -> list[Path]:
        """Regular files whose size is the same as at the previous call (oldest first)."""
        return [self.folder / n for n in self._scan_folder()[0]]

    def _claim(self, name: str) -> tuple[Path | None, dict | None]:
        """Move `name` from the folder into HOME (incoming/), having opened it with
        O_NOFOLLOW and checked it is a regular file: (staged path, None), or
        (None, refusal or None) when it is a link, not a regular file, or gone."""
        src = self.folder / name
        try:
            fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            try:  # became a symbolic link since the scan
                return None, self._refuse(name, os.lstat(src), _REFUSED_LINK)
            except FileNotFoundError:
                return None, None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None, self._refuse(name, st, _REFUSED_OTHER)
            staged = self.incoming / name
            try:
                os.rename(src, staged)
                moved = os.lstat(staged)
                if (moved.st_dev, moved.st_ino) != (st.st_dev, st.st_ino):  # swapped after the open
                    os.unlink(staged)
                    _copy_fd(fd, staged)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                _copy_fd(fd, staged)  # another file system: copy what was checked, then remove it
                os.unlink(src)
            os.chmod(staged, 0o600, follow_symlinks=False)
            return staged, None
        finally:
            os.close(fd)

    def take(self, path: Path) -> dict:
        """Claim one file of the folder (see `_claim`), feed it through intake and
        keep it under HOME; returns its counts (``refused`` when it was not taken)."""
        staged, refusal = self._claim(Path(path).name)
        if staged is None:
            return refusal or {"file": Path(path).name, "batches": 0, "accepted": 0, "quarantined": 0,
                               "refused": "gone before it could be taken"}
        return self._feed(staged)

    def _feed(self, staged: Path) -> dict:
        """Feed a file claimed into HOME/watch/<feed>/incoming/ through intake, then
        move it to processed/ (or failed/, with the reason in NAME.error.txt)."""
        counts = {"file": staged.name, "batches": 0, "accepted": 0, "quarantined": 0}
        try:
            kind = _kind(staged)
            for table in iter_raw_batches(staged, kind=kind, batch_rows=MAX_ROWS):
                self._accept(table, kind, staged.name, counts)
        except (InputError, pa.ArrowException, OSError, UnicodeError) as exc:
            text = str(exc).replace(str(staged), staged.name)
            os.replace(staged, self.failed / staged.name)
            fd = os.open(self.failed / (staged.name + ".error.txt"),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f"{text}\n")
            counts["error"] = text
            log.warning("watch: %s failed: %s", staged.name, text)
            return counts
        os.replace(staged, self.processed / staged.name)
        return counts

    def _accept(self, table: pa.Table, kind: str, name: str, counts: dict) -> None:
        """One batch through the intake of POST /v1/fixes; adds to `counts`."""
        fixes, events = (table, None) if kind == "fixes" else (None, table)
        with self.factory() as session:
            result = take_batch(self.stream, session, self.audit, fixes=fixes, events=events,
                                source=f"watch:{name}", user=None, now_ms=self.stream.clock())
        counts["batches"] += 1
        src = result.fixes if kind == "fixes" else result.events
        counts["accepted"] += src["accepted"]
        counts["quarantined"] += sum(src["quarantined"].values())

    def scan_once(self) -> list[dict]:
        """Files left in incoming/ by a crash first, then the folder's ready files;
        plus one entry per newly refused link. Returns their counts."""
        out = [self._feed(p) for p in sorted(self.incoming.iterdir()) if p.is_file() and not p.is_symlink()]
        names, refused = self._scan_folder()
        return out + refused + [self.take(self.folder / n) for n in names]

    # a thread for `serve --watch`
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tagtrail-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan_once()
            except Exception:  # pragma: no cover - logged, retried
                log.exception("watch scan failed")
            self._stop.wait(self.interval_s)
