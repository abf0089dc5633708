"""Intake from a folder: supplier feeds that arrive as files (`tagtrail watch`,
`tagtrail serve --watch`).

Each scan takes the files in the folder whose size has not changed since the
previous scan (a file still being written is left for the next one; better
still, suppliers write to a name starting with ``.`` or ending in ``.part`` or
``.tmp`` and rename when done, and such names are ignored). A file is a fixes
file or, when its columns include ``event`` and not ``lat``, an events file,
in CSV or Parquet as the contract defines them. It goes through exactly the
intake of POST /v1/fixes, 50,000 rows a batch, and is then moved to
``DIR/processed/`` (a file that cannot be read goes to ``DIR/failed/`` with a
``.error.txt`` beside it saying why). A crash between a batch and the move is
harmless: on the next scan the file's rows are all duplicates.
"""
from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import pyarrow as pa

from trails.errors import InputError
from trails.readers import iter_raw_batches

from .intake import MAX_ROWS, accept_batch

__all__ = ["FolderWatcher"]

log = logging.getLogger("tagtrail.watch")
_SKIP_SUFFIXES = (".part", ".tmp", ".error.txt")


def _kind(path: Path) -> str:
    """``events`` if the file's columns include event and not lat, else ``fixes``."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        names = set(pq.ParquetFile(path).schema_arrow.names)
    else:
        with open(path, "r", encoding="utf-8-sig", errors="replace") as fh:
            names = {c.strip().strip('"') for c in fh.readline().split(",")}
    return "events" if "event" in names and "lat" not in names else "fixes"


class FolderWatcher:
    """Scans a folder and feeds its files to a `StreamService`'s intake."""

    def __init__(self, stream, factory, audit, folder, *, interval_s: float = 2.0) -> None:
        self.stream, self.factory, self.audit = stream, factory, audit
        self.folder = Path(folder)
        self.interval_s = interval_s
        self._sizes: dict[Path, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for sub in ("processed", "failed"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    def ready_files(self) -> list[Path]:
        """Files whose size is the same as at the previous call (oldest first)."""
        out, sizes = [], {}
        for p in sorted(self.folder.iterdir(), key=lambda p: (p.stat().st_mtime, p.name)) if self.folder.is_dir() else []:
            if not p.is_file() or p.name.startswith(".") or p.name.endswith(_SKIP_SUFFIXES):
                continue
            if p.suffix not in (".csv", ".parquet"):
                continue
            size = p.stat().st_size
            sizes[p] = size
            if self._sizes.get(p) == size:
                out.append(p)
        self._sizes = sizes
        return out

    def take(self, path: Path) -> dict:
        """Feed one file through intake and move it aside; returns its counts."""
        counts = {"file": path.name, "batches": 0, "accepted": 0, "quarantined": 0}
        try:
            kind = _kind(path)
            for table in iter_raw_batches(path, kind=kind, batch_rows=MAX_ROWS):
                fixes, events = (table, None) if kind == "fixes" else (None, table)
                with self.stream.intake_lock, self.factory() as session:
                    loader = self.stream.day_loader(session)
                    result, accepted = accept_batch(session, self.audit, self.stream.keys, fixes=fixes,
                                                    events=events, source=f"watch:{path.name}", user=None,
                                                    day_loader=loader)
                    session.commit()
                    self.stream.accepted(accepted, loader=loader)
                    try:
                        self.audit.write_checkpoint(session)
                        session.commit()
                    except Exception:  # pragma: no cover
                        session.rollback()
                counts["batches"] += 1
                src = result.fixes if kind == "fixes" else result.events
                counts["accepted"] += src["accepted"]
                counts["quarantined"] += sum(src["quarantined"].values())
                self.stream.notify()
        except (InputError, pa.ArrowException, OSError, UnicodeError) as exc:
            dest = self.folder / "failed" / path.name
            shutil.move(str(path), dest)
            (self.folder / "failed" / (path.name + ".error.txt")).write_text(f"{exc}\n", encoding="utf-8")
            counts["error"] = str(exc)
            log.warning("watch: %s failed: %s", path.name, exc)
            return counts
        shutil.move(str(path), self.folder / "processed" / path.name)
        return counts

    def scan_once(self) -> list[dict]:
        return [self.take(p) for p in self.ready_files()]

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
