"""`StreamService`: the facade the rest of tagtrail uses (the app, `tagtrail
watch`, intake, the routers). It owns no logic of its own beyond the pass,
which it composes from the units: read the new rows (`log_reader`), bring
the detector up to date (`detector_state`), detect, write the changes
(`queue_writer`) and save the progress, all under one lock; the runner
(`runner`) schedules passes and housekeeping, compaction (`compaction`)
moves processed rows into the store, and intake's side (`intake_link`) keeps
the deduplication index.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from geofence.model import Policy
from trails.jit import limit_threads_here
from trails.timestamps import format_ms

from api.service.detections import config_version
from api.service.stream.compaction import Compaction
from api.service.stream.detector_state import DetectorStore, home_policy, policy_text
from api.service.stream.intake_link import IntakeLink
from api.service.stream.log_reader import LogReader, LogRows
from api.service.stream.queue_writer import QueueWriter
from api.service.notifications import notify_cycle
from api.service.retention.daily import DailyRetention
from api.service.stream.runner import Runner, sign_if_due
from api.settings import Settings

__all__ = ["StreamService", "PassStats", "DEFAULT_RETENTION_MS"]

log = logging.getLogger("tagtrail.stream")

#: Data time for which safe cuts are kept in memory for late rows (6 h); older late rows rebuild the assignment.
DEFAULT_RETENTION_MS = 6 * 3_600_000
#: Numba threads of a pass: one, since intake (HTTP parsing, validation, projection, inserts) needs
#: the other core meanwhile, and a parallel kernel whose second thread is preempted stalls
#: (`trails.jit.limit_threads_here`). Records do not depend on it.
PASS_THREADS = 1


@dataclass
class PassStats:
    """What one pass did: rows read, record changes written, and how long it took."""

    fixes: int = 0
    events: int = 0
    inserted: int = 0
    updated: int = 0
    withdrawn: int = 0
    seconds: float = 0.0


class StreamService:
    """The streaming detector of one tagtrail home.

    `run_pending()` processes everything received so far (tests call it
    directly); `start()` runs it in a background thread, woken by `notify()`
    after each accepted batch.
    """

    def __init__(self, settings: Settings, factory: sessionmaker[Session], audit, *,
                 clock: Callable[[], int] | None = None, retention_ms: int = DEFAULT_RETENTION_MS,
                 checkpoint_s: float = 30.0, compact_s: float = 60.0, min_pass_s: float = 0.2) -> None:
        from api.db.session import read_only_factory

        self.settings = settings
        self.factory = factory
        self.audit = audit
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._read_only = read_only_factory(factory)
        self._lock = threading.Lock()  # one pass (or compaction, or checkpoint) at a time
        home = settings.home
        self.reader = LogReader(home)
        self.writer = QueueWriter(audit, self.clock)
        self.compaction = Compaction(home, factory, self._read_only, self.reader, every_s=compact_s)
        self.state = DetectorStore(home, self.reader, self.writer, self._read_only, resume=self.compaction.resume,
                                   retention_ms=retention_ms, checkpoint_s=checkpoint_s)
        self.intake = IntakeLink(home, self.reader)
        self.runner = Runner(lambda: bool(self._pass_found_rows()), self._housekeeping, min_pass_s=min_pass_s)
        self.retention = DailyRetention(factory, audit, lambda: self.settings, self.clock)
        self._read_batch = 0  # latest intake batch read by a pass
        self.processed_batch = 0  # latest intake batch whose records are committed
        self._store_lock = None

    # ------------------------------------------------------------ intake's side
    @property
    def keys(self):
        """The first-arrival deduplication index (`trails.keys.KeyIndex`)."""
        return self.intake.keys

    @property
    def intake_lock(self) -> threading.Lock:
        """Held by intake for one batch: dedup check, insert, commit and index update."""
        return self.intake.lock

    def accepted(self, accepted: dict, *, loader=None) -> None:
        """After an intake transaction committed: index its keys, keep its fix chunk for passes and compaction."""
        self.intake.accepted(accepted, loader=loader)

    def intake_context(self, session: Session):
        """What intake needs for one batch (`api.service.intake.IntakeContext`), read through `session`."""
        return self.intake.context(session)

    def day_loader(self, session: Session):
        """Loader of one UTC day's accepted fix keys (store and intake log), through `session`."""
        return self.intake.day_loader(session)

    def policy(self) -> Policy:
        """The home's policy (HOME/policy.json, defaults without one)."""
        return home_policy(self.settings.home)

    # ------------------------------------------------------------ lifecycle
    @property
    def idle(self) -> threading.Event:
        """Set whenever nothing notified is left to process."""
        return self.runner.idle

    @property
    def last_error(self) -> str | None:
        """The error of the runner's last failed step (None once a step succeeds)."""
        return self.runner.last_error

    @last_error.setter
    def last_error(self, value: str | None) -> None:
        self.runner.last_error = value

    def start(self) -> None:
        """Hold the home's store lock (`trails.store.StoreLock`) and run passes in a thread.

        `tagtrail serve`/`watch` take the lock before anything else and hold it for
        the service's life; then it is used as it is (compaction writes under it),
        else (an app started by other code) the service takes it here until `stop`."""
        if not self.runner.running:
            from trails.store import StoreLock

            held = StoreLock.held_here(self.settings.home)
            self._store_lock = None if held is not None and held.role == "service" else \
                StoreLock(self.settings.home, "service").acquire()
            self.runner.start()

    def stop(self) -> None:
        """Stop the thread; release the store lock if `start` took it."""
        if self.runner.stop() and self._store_lock is not None:
            self._store_lock.release()
            self._store_lock = None

    def notify(self) -> None:
        """New rows were accepted: wake the thread."""
        self.runner.notify()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until everything notified so far has been processed."""
        return self.runner.wait_idle(timeout)

    def _pass_found_rows(self) -> int:
        limit_threads_here(PASS_THREADS)  # the runner's own thread: callers of run_pending keep theirs
        done = self.run_pending()
        return done.fixes or done.events

    def _housekeeping(self) -> None:
        if self.compaction.due(self.state.watermark):
            self.compact()
        sign_if_due(self.audit, self._read_only)
        notify_cycle(self.factory, self.settings, now_ms=self.clock())
        self.retention.tick()

    # ------------------------------------------------------------ a pass
    def run_pending(self, *, limit: int = 200_000) -> PassStats:
        """Process rows received since the last pass (at most `limit` fixes).

        Reading and writing are two short transactions with the detection in
        between, so intake is never held up by a pass; if the write fails the
        in-memory detector is dropped and rebuilt from the database next time.
        """
        t0 = time.perf_counter()
        stats = PassStats()
        with self._lock:
            rows = self._read(limit)
            self._read_batch = max(self._read_batch, rows.batch)
            stats.fixes, stats.events = len(rows.fixes), len(rows.events)
            if not (stats.fixes or stats.events):
                return stats
            self._process(rows, stats)
        stats.seconds = time.perf_counter() - t0
        return stats

    def _read(self, limit: int) -> LogRows:
        """The rows after the watermark; first, if the subjects, zones or policy changed (or
        at the first pass), bring the detector up to date in a writing transaction."""
        with self._read_only() as session:  # the usual pass: nothing changed, read the new rows
            if self.state.is_current(config_version(session), policy_text(self.settings.home)):
                rows = self.reader.rows(session, after=self.state.watermark, limit=limit)
                session.commit()
                return rows
            session.commit()
        with self.factory() as session:
            self.state.configure(session)
            rows = self.reader.rows(session, after=self.state.watermark, limit=limit)
            session.commit()
        return rows

    def _process(self, rows: LogRows, stats: PassStats) -> None:
        """Detect on the new rows; commit the changes, the watermark and as_of together."""
        try:
            changes, _, _ = self.state.detector.add(rows.fixes, rows.events)
            with self.factory() as session:
                counts = self.writer.apply(session, changes, batches=(self.processed_batch + 1, self._read_batch))
                stats.inserted, stats.updated, stats.withdrawn = counts
                watermark = rows.after(self.state.watermark)
                self.state.save_progress(session, watermark)
                session.commit()
                self.state.watermark = watermark
                self.processed_batch = self._read_batch
                if any(counts):
                    self._checkpoint_audit(session)
        except BaseException:
            self.state.drop()  # ahead of the database now: rebuild from it next pass
            raise

    def _checkpoint_audit(self, session: Session) -> None:
        try:
            self.audit.write_checkpoint(session)
            session.commit()
        except Exception:  # pragma: no cover - the entries are committed; the next checkpoint covers them
            session.rollback()
            log.exception("audit checkpoint not written")

    # ------------------------------------------------------------ store and checkpoints
    def compact(self) -> int:
        """Move processed rows of the intake log into the Parquet store (day partitions),
        so `tagtrail detect --home`, extracts and history read them there. Returns rows
        moved (`api.service.stream.compaction`: files first, then one short transaction)."""
        with self._lock:
            if self.state.detector is None:
                return 0
            moved = self.compaction.move(self.state.watermark)
        self.compaction.trim()
        return moved

    def flush(self) -> None:
        """Process everything received and move it into the store (before reading the store)."""
        while True:
            done = self.run_pending()
            if not (done.fixes or done.events):
                break
        self.compact()

    def checkpoint(self) -> None:
        """Save the safe cuts now (also done every `checkpoint_s` seconds of passes)."""
        with self._lock, self.factory() as session:
            self.state.save_cuts(session)
            session.commit()

    # ------------------------------------------------------------ reporting
    def status(self, session: Session) -> dict:
        """How far detection has got: rows received but not yet processed, as_of, last error."""
        wm = self.state.get(session, "watermark", [0, 0])
        pf, pe = self.reader.pending(session, (int(wm[0]), int(wm[1])))
        as_of = self.state.get(session, "as_of_ms")
        return {"pending_fixes": pf, "pending_events": pe,
                "as_of": None if as_of is None else format_ms(as_of), "last_error": self.last_error,
                "processed_batch": self.processed_batch,
                "running": self.runner.running, "failed_assignments": self.failures()}

    def failures(self) -> list[dict]:
        """Assignments whose detection failed at the last try (each keeps its previous records
        and is retried at every pass that reaches it); wearers by audit pseudonym only."""
        return self.state.failures(self.audit.pseudonym)

    def as_of(self) -> int | None:
        """The detector's as_of (epoch ms; None before any row or while it is being rebuilt)."""
        det = self.state.detector
        return None if det is None else det.as_of
