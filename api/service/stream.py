"""Continuous detection for a running service: the intake log is read in
arrival order, fed to `geofence.incremental.IncrementalDetector`, and the
changed records are written to the breach queue.

Consistency: one pass reads the rows after the watermark, applies every
record change (new, updated, withdrawn with a reason), moves the watermark
and appends one audit entry, all in one transaction. A crash anywhere loses
nothing: on restart the detector is rebuilt from the database (records,
watermark, safe cuts) and the rows already processed, and the rows after the
watermark are processed again; record changes are upserts by breach_id, so
nothing is counted twice.

Safe cuts are saved with a checkpoint now and then, not with every pass: any
past cut is a valid place to resume from (the records before it are final),
as long as the rows after it are kept, and they are (the intake log and the
store keep everything).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from geofence.incremental import Change, EventRows, FixRows, IncrementalDetector
from geofence.model import Assignment, Policy
from trails.keys import as_strings
from trails.timestamps import format_ms

from api.service.detections import config_version, load_assignments, load_zones_from_db
from api.db import fixlog
from api.db.models import BreachRow, DetectorState, IntakeEvent, IntakeFixChunk
from api.settings import Settings

__all__ = ["StreamService", "PassStats", "DEFAULT_RETENTION_MS"]

log = logging.getLogger("tagtrail.stream")

#: Data time for which safe cuts are kept in memory for late rows (6 h); older late rows rebuild the assignment.
DEFAULT_RETENTION_MS = 6 * 3_600_000
_INF = 2**62


@dataclass
class PassStats:
    fixes: int = 0
    events: int = 0
    inserted: int = 0
    updated: int = 0
    withdrawn: int = 0
    seconds: float = 0.0


def _key(a: Assignment) -> str:
    return f"{a.subject_id}|{a.device_id}|{a.start_ms}"


def _config_digest(assignments, zone_rows, policy_text: str = "") -> str:
    import hashlib

    h = hashlib.sha256(policy_text.encode())
    for a in assignments:
        h.update(f"{_key(a)}|{a.end_ms}|{','.join(a.zones)}\n".encode())
    for zid, feature in zone_rows:
        h.update(f"{zid}:{feature}\n".encode())
    return h.hexdigest()


class StreamService:
    """The streaming detector of one tagtrail home.

    `run_pending()` processes everything received so far (tests call it
    directly); `start()` runs it in a background thread, woken by `notify()`
    after each accepted batch.
    """

    def __init__(self, settings: Settings, factory: sessionmaker[Session], audit, *,
                 clock: Callable[[], int] | None = None, retention_ms: int = DEFAULT_RETENTION_MS,
                 checkpoint_s: float = 30.0, compact_s: float = 60.0, min_pass_s: float = 0.2) -> None:
        self.settings = settings
        self.factory = factory
        from api.db.session import read_only_factory

        self._reader = read_only_factory(factory)
        self.audit = audit
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        self.retention_ms = retention_ms
        self.checkpoint_s = checkpoint_s
        self.compact_s = compact_s
        self.min_pass_s = min_pass_s
        self._lock = threading.Lock()  # one pass at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._detector: IncrementalDetector | None = None
        self._config: str | None = None
        self._policy_key: str | None = None
        self._config_version = -1
        self._read_batch = 0  # latest intake batch read by a pass
        self.processed_batch = 0  # latest intake batch whose records are committed
        self._watermark = (0, 0)
        self._compacted = (0, 0)  # intake seqs already moved into the Parquet store
        self._last_compaction = time.monotonic()
        self._last_checkpoint = 0.0
        self._session: Session | None = None
        self.last_error: str | None = None
        self.idle = threading.Event()
        self.idle.set()
        from trails.keys import KeyIndex

        self.keys = KeyIndex()  # accepted keys, for first-arrival deduplication at intake
        self.intake_lock = threading.Lock()  # dedup check, insert, commit and index update: one batch at a time
        # fix chunks logged since the last compaction, as intake handed them over: (first seq, last seq,
        # batch id, rows) by first seq; passes and compaction use them instead of decoding the log again
        self._logged: dict[int, tuple[int, int, int, pa.Table]] = {}
        self._logged_lock = threading.Lock()
        self._events_loaded = False
        self._intake_cache = None  # ((config version, policy text), clock allowance ms, device -> assignments)

    def accepted(self, accepted: dict, *, loader=None) -> None:
        """After an intake transaction committed: index its keys, keep its fix chunk for passes and compaction."""
        self.keys.add(*accepted["fixes"], loader=loader)
        self.keys.add_events(*accepted["events"])
        log_entry = accepted.get("fix_log")
        if log_entry is not None:
            with self._logged_lock:
                self._logged[log_entry[0]] = log_entry

    def intake_context(self, session: Session):
        """What intake needs for one batch (`api.service.intake.IntakeContext`), read through `session`:
        the dedup index and its day loader, the policy's clock allowance, and who wears which
        device (cached until the subjects, zones or policy change)."""
        from api.service.intake import AssignmentIndex, IntakeContext

        key = (config_version(session), self._policy_text())
        if self._intake_cache is None or self._intake_cache[0] != key:
            self._intake_cache = (key, self._policy().max_clock_ahead_ms, AssignmentIndex.build(load_assignments(session)))
        _, ahead_ms, by_device = self._intake_cache
        return IntakeContext(keys=self.keys, day_loader=self.day_loader(session), max_ahead_ms=ahead_ms,
                             assignments=by_device)

    def day_loader(self, session: Session):
        """Loader of one UTC day's accepted fix keys (store and intake log), through `session`."""
        from trails.store import existing_keys

        if not self._events_loaded:
            self.keys.load_events(session.execute(select(IntakeEvent.device_id, IntakeEvent.ts_ms, IntakeEvent.event)).all())
            home = self.settings.home
            if (home / "store").exists():
                from trails.store import read_store_events

                se = read_store_events(home)
                self.keys.load_events(zip(se.device_id.to_pylist(), se.ts_ms.tolist(), se.event.to_pylist()))
            self._events_loaded = True

        def load(day: int):
            from trails.keys import DAY_MS

            parts = [t.select(["device_id", "ts_ms"]) for _, _, _, t in self._chunks(session, self._compacted[0])]
            if (self.settings.home / "store").exists():
                parts.append(existing_keys(self.settings.home, "fixes", day, ["device_id", "ts_ms"]))
            t = pa.concat_tables(parts) if parts else fixlog.SCHEMA.empty_table().select(["device_id", "ts_ms"])
            ts = t.column("ts_ms").to_numpy().astype(np.int64)
            on_day = np.flatnonzero((ts >= day * DAY_MS) & (ts < (day + 1) * DAY_MS))
            return t.column("device_id").take(pa.array(on_day)), ts[on_day]

        return load

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Hold the home's store lock (`trails.store.StoreLock`) and run passes in a thread.

        `tagtrail serve`/`watch` take the lock before anything else and hold it for
        the service's life; then it is used as it is (compaction writes under it),
        else (an app started by other code) the service takes it here until `stop`."""
        if self._thread is None:
            from trails.store import StoreLock

            held = StoreLock.held_here(self.settings.home)
            self._store_lock = None if held is not None and held.role == "service" else \
                StoreLock(self.settings.home, "service").acquire()
            self._thread = threading.Thread(target=self._loop, name="tagtrail-detect", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
            if self._store_lock is not None:
                self._store_lock.release()
                self._store_lock = None

    def notify(self) -> None:
        self.idle.clear()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            try:
                while not self._stop.is_set():
                    began = time.monotonic()
                    done = self.run_pending()
                    if not (done.fixes or done.events):
                        break
                    # at most one pass per `min_pass_s`: a pass reruns every worn assignment (as_of
                    # moved), so under many small batches back-to-back passes would starve intake;
                    # what arrives meanwhile goes into the next pass
                    self._stop.wait(max(0.0, self.min_pass_s - (time.monotonic() - began)))
                backlog = self._watermark[0] - self._compacted[0]
                if backlog > 200_000 or (backlog and time.monotonic() - self._last_compaction > self.compact_s):
                    self.compact()
                self._sign_if_due()
                self.last_error = None
            except Exception as exc:  # pragma: no cover - logged; retried on the next wake-up
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("detection pass failed; will retry")
                time.sleep(0.5)
            finally:
                if not self._wake.is_set():
                    self.idle.set()

    def _sign_if_due(self) -> None:
        """Sign an audit checkpoint when the cadence says so, also while no request commits
        (an idle service must not leave its last entries unsigned for long)."""
        from api.audit.log import AuditIntegrityError

        with self._reader() as session:
            try:
                self.audit.write_checkpoint(session)
            except AuditIntegrityError as exc:  # recorded; the API refuses what it must
                log.warning("audit checkpoint refused: %s", exc)
            finally:
                session.rollback()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until everything notified so far has been processed."""
        return self.idle.wait(timeout)

    # ------------------------------------------------------------ state
    def _policy_text(self) -> str:
        path = self.settings.home / "policy.json"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def policy(self) -> Policy:
        """The home's policy (HOME/policy.json, defaults without one)."""
        return self._policy()

    def _policy(self) -> Policy:
        from geofence.policy import load_policy

        path = self.settings.home / "policy.json"
        return load_policy(path if path.exists() else None)

    def _get(self, session: Session, key: str, default=None):
        row = session.get(DetectorState, key)
        return default if row is None else json.loads(row.value)

    def _put(self, session: Session, key: str, value) -> None:
        row = session.get(DetectorState, key)
        text = json.dumps(value, separators=(",", ":"))
        if row is None:
            session.add(DetectorState(key=key, value=text))
        else:
            row.value = text

    def _chunks(self, session: Session, lo: int, hi: int | None = None, limit: int | None = None
                ) -> list[tuple[int, int, int, pa.Table]]:
        """The fix chunks of the intake log with seqs in (lo, hi], sliced to that range, in seq
        order (whole chunks until `limit` rows): which chunks exist is read from the
        database; their rows come from what intake handed over when it is still held."""
        q = select(IntakeFixChunk.seq_first, IntakeFixChunk.seq_last, IntakeFixChunk.batch_id).where(
            IntakeFixChunk.seq_last > lo).order_by(IntakeFixChunk.seq_first)
        if hi is not None:
            q = q.where(IntakeFixChunk.seq_first <= hi)
        meta, n = [], 0
        for first, last, batch_id in session.connection().execute(q):
            if limit is not None and meta and n >= limit:
                break
            meta.append((int(first), int(last), int(batch_id)))
            n += int(last) - int(first) + 1
        with self._logged_lock:
            held = {m[0]: self._logged[m[0]][3] for m in meta if m[0] in self._logged}
        missing = [m[0] for m in meta if m[0] not in held]
        for k in range(0, len(missing), 500):
            q = select(IntakeFixChunk.seq_first, IntakeFixChunk.data).where(
                IntakeFixChunk.seq_first.in_(missing[k:k + 500]))
            held.update({int(f): fixlog.decode(d) for f, d in session.connection().execute(q)})
        out = []
        for first, last, batch_id in meta:
            a = max(lo + 1, first) - first
            b = (last if hi is None else min(last, hi)) - first + 1
            out.append((first + a, first + b - 1, batch_id, held[first].slice(a, b - a)))
        return out

    def _rows(self, session: Session, *, after: tuple[int, int] | None = None, upto: tuple[int, int] | None = None,
              device: str | None = None, since_ms: int | None = None, until_ms: int | None = None,
              limit: int | None = None):
        """Fix and event rows of the intake log (seq order), and the last seqs read."""
        lo_f = max(self._compacted[0], after[0] if after is not None else 0)
        chunks = self._chunks(session, lo_f, upto[0] if upto is not None else None, limit)
        t = pa.concat_tables([c[3] for c in chunks]) if chunks else fixlog.SCHEMA.empty_table()
        ts = t.column("ts_ms").to_numpy()
        keep = np.ones(t.num_rows, bool)
        if device is not None:
            keep &= (t.column("device_id").to_numpy(zero_copy_only=False) == device)
        if since_ms is not None:
            keep &= ts >= since_ms
        if until_ms is not None:
            keep &= ts < until_ms
        if not keep.all():
            t = t.filter(pa.array(keep))
        col = lambda name: t.column(name).to_numpy()  # noqa: E731
        fixes = FixRows(t.column("device_id").combine_chunks(), col("ts_ms"), col("x"), col("y"), col("accuracy_m"),
                        col("battery_pct"))
        qe = select(IntakeEvent.seq, IntakeEvent.device_id, IntakeEvent.ts_ms, IntakeEvent.event,
                    IntakeEvent.batch_id).order_by(IntakeEvent.seq)
        qe = qe.where(IntakeEvent.seq > max(self._compacted[1], after[1] if after is not None else 0))
        if upto is not None:
            qe = qe.where(IntakeEvent.seq <= upto[1])
        if device is not None:
            qe = qe.where(IntakeEvent.device_id == device)
        if since_ms is not None:
            qe = qe.where(IntakeEvent.ts_ms >= since_ms)
        if until_ms is not None:
            qe = qe.where(IntakeEvent.ts_ms < until_ms)
        if limit is not None:
            qe = qe.limit(limit)
        e = session.connection().execute(qe).all()  # Core rows: no ORM bookkeeping
        ec = list(zip(*e)) if e else [()] * 5
        events = EventRows(list(ec[1]), np.array(ec[2], np.int64), list(ec[3]))
        last = (chunks[-1][1] if chunks else None, e[-1][0] if e else None)
        if chunks:
            self._read_batch = max(self._read_batch, chunks[-1][2])
        if e and after is not None:  # a pass (not a history read): the batches it covers
            self._read_batch = max(self._read_batch, max(ec[4]))
        return fixes, events, last

    def _history(self, a: Assignment) -> tuple[FixRows, EventRows]:
        """Every processed row of `a`'s device from its start (the store and the intake log).

        Reads through the session of the pass that is building the detector,
        if any (a second connection would wait for its write lock), else a new one."""
        if self._session is not None:
            return self._all_rows(self._session, device=a.device_id, since_ms=a.start_ms)
        with self._reader() as s:
            out = self._all_rows(s, device=a.device_id, since_ms=a.start_ms)
            s.commit()
            return out

    def _build(self, session: Session) -> None:
        """(Re)build the detector from the database: fresh, or resumed from saved cuts."""
        assignments = load_assignments(session)
        zones = load_zones_from_db(session, crs=self.policy().crs)
        from api.db.models import ZoneRow

        zone_rows = [(z.zone_id, z.feature_json) for z in session.scalars(select(ZoneRow).order_by(ZoneRow.zone_id))]
        self._policy_key = self._policy_text()
        config = _config_digest(assignments, zone_rows, self._policy_key)
        det = IncrementalDetector(assignments, zones, self._policy(), retention_ms=self.retention_ms,
                                  history=self._history)
        from trails.store import compacted_upto

        self._compacted = (compacted_upto(self.settings.home, "fixes"), compacted_upto(self.settings.home, "events"))
        self._drop_compacted(session)
        saved = self._get(session, "config")
        wm = self._get(session, "watermark", [0, 0])
        self._watermark = (int(wm[0]), int(wm[1]))
        if saved == config and self._watermark != (0, 0):
            self._restore(session, det)
        else:
            self._fresh(session, det)
            self._put(session, "config", config)
        self._detector, self._config = det, config

    def _all_rows(self, session: Session, *, device: str | None = None, since_ms: int | None = None):
        """Every processed row (the store, and the intake log up to the watermark)."""
        from trails.store import read_store_events, read_store_fixes

        f, e, _ = self._rows(session, upto=self._watermark, device=device, since_ms=since_ms)
        home = self.settings.home
        if (home / "store").exists():
            devices = None if device is None else [device]
            sf = read_store_fixes(home, start_ms=since_ms, devices=devices)
            se = read_store_events(home, start_ms=since_ms, devices=devices)
            f = _cat_fixes([f, FixRows(sf.device_id, sf.ts_ms, sf.x, sf.y, sf.accuracy_m, sf.battery_pct)])
            e = _cat_events([e, EventRows(se.device_id.to_pylist(), se.ts_ms, se.event.to_pylist())])
        return f, e

    def _restore(self, session: Session, det: IncrementalDetector) -> None:
        cuts = self._get(session, "cuts", {})
        det.as_of = self._get(session, "as_of_ms")
        records: dict[str, list[dict]] = {}
        for b in session.scalars(select(BreachRow).where(BreachRow.status != "withdrawn")):
            records.setdefault(b.subject_id + "|" + b.device_id, []).append(_record(b))
        saved = [cuts.get(_key(a), {"cuts": [], "complete": True}) for a in det.assignments]
        starts = [a.start_ms if c["complete"] or not c["cuts"] else int(c["cuts"][0]) for a, c in zip(det.assignments, saved)]
        f, e = self._all_rows(session, since_ms=min(starts) if starts else None)
        states = []
        for a, c in zip(det.assignments, saved):
            end = _INF if a.end_ms is None else a.end_ms
            mine = {r["breach_id"]: r for r in records.get(a.subject_id + "|" + a.device_id, [])
                    if a.start_ms <= r["_start_ms"] < end}
            states.append((c["cuts"], c["complete"], mine))
        det.restore(states, f, e)

    def _fresh(self, session: Session, det: IncrementalDetector) -> None:
        """First start (or new subjects/zones): everything processed so far, as one batch."""
        f, e = self._all_rows(session)
        changes, _, _ = det.add(f, e)
        known = det.breach_ids()
        # records in the database that this detector does not produce any more are withdrawn
        existing = {b.breach_id for b in session.scalars(select(BreachRow).where(BreachRow.status != "withdrawn"))}
        stale = [Change(bid, None, None) for bid in existing - known]
        self._apply(session, changes + stale, reason_default="recomputed after the subjects or zones changed")
        self._put(session, "as_of_ms", det.as_of)
        self._save_cuts(session, det)

    def _save_cuts(self, session: Session, det: IncrementalDetector | None = None) -> None:
        det = det or self._detector
        if det is None:
            return
        self._put(session, "cuts", {_key(a): {"cuts": _thin(cuts), "complete": complete}
                                    for a, (cuts, complete) in zip(det.assignments, det.saved_cuts())})
        self._last_checkpoint = time.monotonic()

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
            with self._reader() as session:  # the usual pass: nothing changed, read the new rows
                version = config_version(session)
                unchanged = self._detector is not None and version == self._config_version \
                    and self._policy_key == self._policy_text()
                if unchanged:
                    f, e, last = self._rows(session, after=self._watermark, limit=limit)
                session.commit()
            if not unchanged:
                f, e, last = self._configure(version, limit)
            stats.fixes, stats.events = len(f), len(e)
            if not (len(f) or len(e)):
                return stats
            self._process(f, e, last, stats)
        stats.seconds = time.perf_counter() - t0
        return stats

    def _configure(self, version: int, limit: int):
        """Subjects, zones or the policy changed (or the first pass): re-evaluate, then read the new rows."""
        from api.db.models import ZoneRow

        with self.factory() as session:
            self._session = session
            assignments = load_assignments(session)
            zone_rows = [(z.zone_id, z.feature_json) for z in session.scalars(select(ZoneRow).order_by(ZoneRow.zone_id))]
            config = _config_digest(assignments, zone_rows, self._policy_text())
            self._config_version = version
            if self._detector is not None and config != self._config and self._policy_key == self._policy_text():
                # new subjects or zones: only the assignments they touch are re-evaluated
                changes = self._detector.reconfigure(assignments, load_zones_from_db(session, crs=self.policy().crs))
                self._apply(session, changes, reason_default="re-evaluated after the subjects or zones changed")
                self._put(session, "config", config)
                self._put(session, "as_of_ms", self._detector.as_of)
                self._save_cuts(session)
                self._config = config
                session.commit()
            elif self._detector is None or config != self._config:
                self._detector = None
                self._build(session)
                session.commit()
            f, e, last = self._rows(session, after=self._watermark, limit=limit)
            session.commit()
        self._session = None
        return f, e, last

    def _process(self, f: FixRows, e: EventRows, last, stats: PassStats) -> None:
        """Detect on the new rows; commit the changes, the watermark and as_of together."""
        try:
            changes, _, _ = self._detector.add(f, e)
            with self.factory() as session:
                counts = self._apply(session, changes, batches=(self.processed_batch + 1, self._read_batch))
                stats.inserted, stats.updated, stats.withdrawn = counts
                watermark = (last[0] if last[0] is not None else self._watermark[0],
                             last[1] if last[1] is not None else self._watermark[1])
                self._put(session, "watermark", list(watermark))
                self._put(session, "as_of_ms", self._detector.as_of)
                if time.monotonic() - self._last_checkpoint >= self.checkpoint_s:
                    self._save_cuts(session)
                session.commit()
                self._watermark = watermark
                self.processed_batch = self._read_batch
                if stats.inserted or stats.updated or stats.withdrawn:
                    try:
                        self.audit.write_checkpoint(session)
                        session.commit()
                    except Exception:  # pragma: no cover
                        session.rollback()
                        log.exception("audit checkpoint not written")
        except BaseException:
            self._detector = None  # ahead of the database now: rebuild from it next pass
            raise

    def _drop_compacted(self, session: Session) -> None:
        """Delete log rows the store already holds (a crash may leave some behind)."""
        from sqlalchemy import delete

        session.execute(delete(IntakeFixChunk).where(IntakeFixChunk.seq_last <= self._compacted[0]))
        session.execute(delete(IntakeEvent).where(IntakeEvent.seq <= self._compacted[1]))

    def compact(self) -> int:
        """Move processed rows of the intake log into the Parquet store (day partitions),
        so `tagtrail detect --home`, extracts and history read them there. Returns rows moved.

        The fixes come from what intake handed over (`accepted`), so nothing is
        read back; the log is read only for a run intake did not hand over
        (after a restart). The Parquet files are written without holding the
        database, and the moved rows leave the log in one short transaction
        afterwards, so intake is never held up for long; a crash in between
        leaves rows that `_drop_compacted` removes at the next start (the store
        records which seqs it holds)."""
        from trails.store import write_intake_rows

        moved = 0
        with self._lock:
            if self._detector is None:
                return 0
            lo_f, lo_e = self._compacted
            hi_f, hi_e = self._watermark
            if hi_f > lo_f:
                moved += write_intake_rows(self.settings.home, "fixes", self._fix_table(lo_f, hi_f), lo_f + 1, hi_f)
            if hi_e > lo_e:
                with self._reader() as session:
                    cols = ("device_id", "ts_ms", "event", "batch_id", "row")
                    rows = session.connection().execute(select(*(getattr(IntakeEvent, c) for c in cols)).where(
                        IntakeEvent.seq > lo_e, IntakeEvent.seq <= hi_e)).all()
                    session.commit()
                c = dict(zip(cols, zip(*rows)))
                t = pa.table({"device_id": pa.array(c["device_id"], pa.string()), "ts_ms": pa.array(c["ts_ms"], pa.int64()),
                              "event": pa.array(c["event"], pa.string()), "source": _batch_names(c["batch_id"]),
                              "row": pa.array(c["row"], pa.int64())})
                moved += write_intake_rows(self.settings.home, "events", t, lo_e + 1, hi_e)
            self._compacted = (max(lo_f, hi_f), max(lo_e, hi_e))
            self._last_compaction = time.monotonic()
        with self.factory() as session:  # a few chunk rows and the (few) events: one short transaction
            self._drop_compacted(session)
            session.commit()
        return moved

    def _fix_table(self, lo: int, hi: int) -> pa.Table:
        """The logged fixes with seq in (lo, hi], as the store's columns."""
        with self._logged_lock:  # what compaction has moved is not needed in memory any more
            self._logged = {k: e for k, e in self._logged.items() if e[1] > lo}
        with self._reader() as session:
            chunks = self._chunks(session, lo, hi)
            session.commit()
        t = pa.concat_tables([c[3] for c in chunks]) if chunks else fixlog.SCHEMA.empty_table()
        batch = np.concatenate([np.full(c[3].num_rows, c[2], np.int64) for c in chunks]) if chunks else np.zeros(0, np.int64)
        return t.append_column("source", _batch_names(batch))

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
            self._session = session
            self._save_cuts(session)
            session.commit()

    def _apply(self, session: Session, changes: list[Change], *, reason_default: str | None = None,
               batches: tuple[int, int] | None = None) -> tuple[int, int, int]:
        """Write record changes to the breach queue; returns (inserted, updated, withdrawn).

        `batches`: the intake batches whose rows caused the changes (first, last); a
        withdrawal names the last of them, and the audit entry the range, so every
        withdrawal can be traced to the data that caused it."""
        if not changes:
            return 0, 0, 0
        now = self.clock()
        ids = [c.breach_id for c in changes]
        rows = {}
        for k in range(0, len(ids), 900):
            rows.update({b.breach_id: b for b in session.scalars(select(BreachRow).where(BreachRow.breach_id.in_(ids[k:k + 900])))})
        new_by_subject: dict[str, list[dict]] = {}
        for c in changes:
            if c.record is not None:
                new_by_subject.setdefault(c.record["subject_id"], []).append(c.record)
        inserted = updated = withdrawn = 0
        withdrawals = []
        for c in changes:
            row = rows.get(c.breach_id)
            if c.record is None:
                if row is None or row.status == "withdrawn":
                    continue
                reason = reason_default or _withdraw_reason(row, new_by_subject.get(row.subject_id, []))
                row.status, row.status_ms, row.withdrawn_reason, row.updated_ms = "withdrawn", now, reason, now
                row.withdrawn_batch = batches[1] if batches is not None else None
                withdrawals.append({"breach_id": row.breach_id, "type": row.type, "reason": reason,
                                    "batch": row.withdrawn_batch})
                withdrawn += 1
                continue
            r = c.record
            from trails.timestamps import parse_timestamp

            fields = dict(kind=r["kind"], type=r["type"], subject_id=r["subject_id"], device_id=r["device_id"],
                          zone_id=r["zone_id"], start=r["start"], end=r["end"], start_ms=parse_timestamp(r["start"]),
                          end_ms=parse_timestamp(r["end"]), duration_s=float(r["duration_s"]), priority=int(r["priority"]))
            if row is None:
                session.add(BreachRow(breach_id=r["breach_id"], first_seen_ms=now, updated_ms=now, status="new", **fields))
                inserted += 1
            else:
                for k, v in fields.items():
                    setattr(row, k, v)
                row.updated_ms = now
                if row.status == "withdrawn":  # produced again by later data
                    row.status, row.status_ms, row.withdrawn_reason, row.withdrawn_batch = "new", now, None, None
                updated += 1
        session.flush()
        detail = {"inserted": inserted, "updated": updated, "withdrawn": withdrawn, "withdrawals": withdrawals[:1000]}
        if batches is not None:
            detail["batches"] = list(batches)
        self.audit.append(session, action="breaches.update", actor=None, now_ms=now, detail=detail)
        return inserted, updated, withdrawn

    def status(self, session: Session) -> dict:
        """How far detection has got: rows received but not yet processed, as_of, last error."""
        from trails.timestamps import format_ms

        wm = self._get(session, "watermark", [0, 0])
        done = max(wm[0], self._compacted[0])
        pf = sum(int(last) - max(int(first) - 1, done) for first, last in session.execute(
            select(IntakeFixChunk.seq_first, IntakeFixChunk.seq_last).where(IntakeFixChunk.seq_last > done)))
        pe = session.scalar(select(func.count()).select_from(IntakeEvent).where(IntakeEvent.seq > max(wm[1], self._compacted[1])))
        as_of = self._get(session, "as_of_ms")
        return {"pending_fixes": int(pf or 0), "pending_events": int(pe or 0),
                "as_of": None if as_of is None else format_ms(as_of), "last_error": self.last_error,
                "processed_batch": self.processed_batch,
                "running": self._thread is not None, "failed_assignments": self.failures()}

    def failures(self) -> list[dict]:
        """Assignments whose detection failed at the last try (each keeps its previous records
        and is retried at every pass that reaches it); wearers by audit pseudonym only."""
        det = self._detector
        if det is None:
            return []
        out = []
        for i, error in sorted(det.failures.items()):
            a = det.assignments[i]
            out.append({"subject": self.audit.pseudonym(a.subject_id), "device_id": a.device_id,
                        "start": format_ms(a.start_ms), "error": error[:300]})
        return out

    def as_of(self) -> int | None:
        return None if self._detector is None else self._detector.as_of


def _thin(cuts: list[int], keep: int = 24) -> list[int]:
    """At most `keep` of an assignment's safe cuts, the oldest and the latest among them.

    Any subset of valid cuts is valid (each is a place to resume from); the
    oldest keeps late rows from needing a rebuild, the latest keeps restarts
    cheap. A cut is kept every few minutes, so without thinning a national
    checkpoint would hold millions of them."""
    if len(cuts) <= keep:
        return list(cuts)
    pick = np.unique(np.linspace(0, len(cuts) - 1, keep).round().astype(np.int64))
    return [int(cuts[k]) for k in pick]


def _record(b: BreachRow) -> dict:
    return {"breach_id": b.breach_id, "kind": b.kind, "type": b.type, "subject_id": b.subject_id,
            "device_id": b.device_id, "zone_id": b.zone_id, "start": b.start, "end": b.end,
            "duration_s": int(b.duration_s) if float(b.duration_s).is_integer() else b.duration_s,
            "priority": b.priority, "_start_ms": b.start_ms, "_end_ms": b.end_ms}


def _withdraw_reason(row: BreachRow, new_records: list[dict]) -> str:
    """Why data received later removed this record, in words for the Hub."""
    if row.type == "curfew_absence":
        for r in new_records:
            if r["type"] == "curfew_missed" and r["zone_id"] == row.zone_id:
                return f"replaced by curfew_missed breach {r['breach_id']} for the whole curfew window"
    if row.type in ("battery", "no_signal"):
        return "fixes received later show contact during this gap"
    return "data received later changed this episode (its start or its evidence); see the current records"


def _cat_fixes(parts: list[FixRows]) -> FixRows:
    parts = [p for p in parts if len(p)]
    if not parts:
        return FixRows.empty()
    return FixRows(pa.concat_arrays([as_strings(p.device_id) for p in parts]), np.concatenate([p.ts_ms for p in parts]),
                   np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                   np.concatenate([p.accuracy_m for p in parts]), np.concatenate([p.battery_pct for p in parts]))


def _cat_events(parts: list[EventRows]) -> EventRows:
    parts = [p for p in parts if len(p)]
    if not parts:
        return EventRows.empty()
    return EventRows([d for p in parts for d in p.device_id], np.concatenate([p.ts_ms for p in parts]),
                     [k for p in parts for k in p.event])


def _batch_names(batch_ids):
    """The store's `source` for compacted rows: "intake batch N", dictionary-encoded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(batch_ids, pa.int64())
    return pc.binary_join_element_wise("intake batch ", pc.cast(ids, pa.string()), "").dictionary_encode()
