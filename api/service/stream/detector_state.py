"""The detector and the state saved beside it.

The in-memory `geofence.incremental.IncrementalDetector` is only ever a
cache of the database: records are in `breaches`, and `detector_state` keeps
the watermark (the last intake seqs processed), as_of, the digest of the
subjects, zones and policy it ran on, and each assignment's safe cuts. So the
detector can always be dropped and rebuilt: resumed from the saved cuts when
the configuration is the one saved, else recomputed from every processed row
(records it no longer produces are withdrawn).

Two rules keep memory and database in step:

- The detector is dropped whenever a change to it may not have reached the
  database (a failed pass, a failed re-evaluation): the next pass rebuilds
  it. A configuration version counts as applied only once its changes are
  committed, so a failed re-evaluation is retried at the next pass.
- A history read (`history`, the detector's loader for an assignment's whole
  history) goes through the session of the re-evaluation running it, and
  only while that runs (`_reading_through` binds and always unbinds it);
  otherwise through a new read-only session. A session is never reused
  after its `with` block has closed it.

Safe cuts are saved now and then (`checkpoint_s`), not with every pass: any
past cut is a valid place to resume from as long as the rows after it are
kept, and they are (the log and the store keep everything).
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from geofence.incremental import Change, EventRows, FixRows, IncrementalDetector
from geofence.model import Assignment, Policy
from trails.timestamps import POS_INF_MS, format_ms

from api.db.models import BreachRow, ZoneRow
from api.db.models import DetectorState as StateRow
from api.service.detections import config_version, load_assignments, load_zones_from_db
from api.service.stream.log_reader import LogReader
from api.service.stream.queue_writer import QueueWriter, row_to_record

__all__ = ["DetectorStore", "policy_text", "home_policy", "assignment_key", "config_digest", "thin_cuts"]

#: Safe cuts saved per assignment (`thin_cuts`).
KEEP_CUTS = 24


def policy_text(home: Path) -> str:
    """HOME/policy.json as text ("" without one): part of what the detector runs on."""
    path = Path(home) / "policy.json"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def home_policy(home: Path) -> Policy:
    """The home's policy (HOME/policy.json, the defaults without one)."""
    from geofence.policy import load_policy

    path = Path(home) / "policy.json"
    return load_policy(path if path.exists() else None)


def assignment_key(a: Assignment) -> str:
    """An assignment's key in the saved cuts (subject, device, start)."""
    return f"{a.subject_id}|{a.device_id}|{a.start_ms}"


def config_digest(assignments: Sequence[Assignment], zone_rows: Sequence[tuple[str, str]], policy: str = "") -> str:
    """SHA-256 of what detection depends on besides the rows: the assignments, the zone
    rows (id, feature JSON) and the policy text. Saved cuts are valid only under it."""
    h = hashlib.sha256(policy.encode())
    for a in assignments:
        h.update(f"{assignment_key(a)}|{a.end_ms}|{','.join(a.zones)}\n".encode())
    for zid, feature in zone_rows:
        h.update(f"{zid}:{feature}\n".encode())
    return h.hexdigest()


def thin_cuts(cuts: Sequence[int], keep: int = KEEP_CUTS) -> list[int]:
    """At most `keep` of an assignment's safe cuts, the oldest and the latest among them.

    Any subset of valid cuts is valid (each is a place to resume from); the
    oldest keeps late rows from needing a rebuild, the latest keeps restarts
    cheap. A cut is kept every few minutes, so without thinning a national
    checkpoint would hold millions of them."""
    if len(cuts) <= keep:
        return [int(c) for c in cuts]
    pick = np.unique(np.linspace(0, len(cuts) - 1, keep).round().astype(np.int64))
    return [int(cuts[k]) for k in pick]


class DetectorStore:
    """The in-memory detector of one home and its saved state (`detector_state`).

    Parameters
    ----------
    home : the tagtrail home (policy.json).
    reader : the intake log's reader (rows for a rebuild and for history reads).
    writer : the breach queue's writer (changes a rebuild or a re-evaluation makes).
    read_only : read-only sessions, for history reads outside a re-evaluation.
    resume : called with the build's session before a build reads any row
        (compaction: where the store ends, leftovers of a crash).
    retention_ms : the detector's `retention_ms` (safe cuts kept for late rows).
    checkpoint_s : seconds between saves of the safe cuts by passes.
    """

    def __init__(self, home: Path, reader: LogReader, writer: QueueWriter, read_only: sessionmaker[Session], *,
                 resume: Callable[[Session], None], retention_ms: int, checkpoint_s: float) -> None:
        self.home = Path(home)
        self.reader, self.writer, self.read_only, self.resume = reader, writer, read_only, resume
        self.retention_ms = retention_ms
        self.checkpoint_s = checkpoint_s
        self.detector: IncrementalDetector | None = None
        self.config: str | None = None  # digest of what the detector runs on
        self.policy_key: str | None = None  # the policy text it was built with
        self.config_version = -1  # the stored configuration version it has applied
        self.watermark: tuple[int, int] = (0, 0)  # last fix and event seqs processed (as committed)
        self._last_cuts = 0.0
        self._bound: Session | None = None  # the session history reads go through, while a re-evaluation runs

    # ------------------------------------------------------------ saved values
    @staticmethod
    def get(session: Session, key: str, default=None):
        """A saved value (JSON) of `detector_state`."""
        row = session.get(StateRow, key)
        return default if row is None else json.loads(row.value)

    @staticmethod
    def put(session: Session, key: str, value) -> None:
        """Save a value (JSON) in `detector_state`, in `session`'s transaction."""
        row = session.get(StateRow, key)
        text = json.dumps(value, separators=(",", ":"))
        if row is None:
            session.add(StateRow(key=key, value=text))
        else:
            row.value = text

    def save_progress(self, session: Session, watermark: tuple[int, int]) -> None:
        """Save the watermark and as_of after a pass (and the safe cuts when they are due)."""
        self.put(session, "watermark", list(watermark))
        self.put(session, "as_of_ms", self.detector.as_of)
        if time.monotonic() - self._last_cuts >= self.checkpoint_s:
            self.save_cuts(session)

    def save_cuts(self, session: Session, det: IncrementalDetector | None = None) -> None:
        """Save every assignment's safe cuts (thinned) and whether its rows start at A.start."""
        det = det or self.detector
        if det is None:
            return
        self.put(session, "cuts", {assignment_key(a): {"cuts": thin_cuts(cuts), "complete": complete}
                                   for a, (cuts, complete) in zip(det.assignments, det.saved_cuts())})
        self._last_cuts = time.monotonic()

    # ------------------------------------------------------------ configuration
    def is_current(self, version: int, policy: str) -> bool:
        """Whether the detector runs on stored configuration `version` and policy text `policy`."""
        return self.detector is not None and version == self.config_version and self.policy_key == policy

    def drop(self) -> None:
        """Forget the detector: it may be ahead of the database; the next pass rebuilds it."""
        self.detector = None

    def configure(self, session: Session) -> None:
        """Bring the detector to the stored subjects, zones and policy (or build it, at the
        first pass), in `session`'s transaction, and commit.

        New subjects or zones re-evaluate only the assignments they touch; a new
        policy, or no detector, rebuilds it. If anything fails the detector is
        dropped (a re-evaluation may have changed part of it, and its changes
        were not committed) and the version is not recorded, so the next pass
        starts again from the database."""
        version = config_version(session)
        text = policy_text(self.home)
        try:
            with self._reading_through(session):
                assignments = load_assignments(session)
                config = config_digest(assignments, _zone_rows(session), text)
                if self.detector is not None and config != self.config and self.policy_key == text:
                    self._reconfigure(session, assignments, config)
                elif self.detector is None or config != self.config:
                    self.detector = None
                    self.build(session)
            session.commit()
        except BaseException:
            self.drop()
            raise
        self.config_version = version

    def _reconfigure(self, session: Session, assignments: Sequence[Assignment], config: str) -> None:
        changes = self.detector.reconfigure(assignments, load_zones_from_db(session, crs=home_policy(self.home).crs))
        self.writer.apply(session, changes, reason_default="re-evaluated after the subjects or zones changed")
        self.put(session, "config", config)
        self.put(session, "as_of_ms", self.detector.as_of)
        self.save_cuts(session)
        self.config = config

    def build(self, session: Session) -> None:
        """(Re)build the detector from the database: resumed from the saved cuts when the
        saved configuration is the current one, else recomputed from every processed row."""
        assignments = load_assignments(session)
        policy = home_policy(self.home)
        zones = load_zones_from_db(session, crs=policy.crs)
        self.policy_key = policy_text(self.home)
        config = config_digest(assignments, _zone_rows(session), self.policy_key)
        det = IncrementalDetector(assignments, zones, policy, retention_ms=self.retention_ms, history=self.history)
        self.resume(session)
        wm = self.get(session, "watermark", [0, 0])
        self.watermark = (int(wm[0]), int(wm[1]))
        if self.get(session, "config") == config and self.watermark != (0, 0):
            self._restore(session, det)
        else:
            self._fresh(session, det)
            self.put(session, "config", config)
        self.detector, self.config = det, config

    def _restore(self, session: Session, det: IncrementalDetector) -> None:
        """Resume: the saved cuts, the current records, and the rows from each oldest cut on."""
        cuts = self.get(session, "cuts", {})
        det.as_of = self.get(session, "as_of_ms")
        records: dict[str, list[dict]] = {}
        for b in session.scalars(select(BreachRow).where(BreachRow.status != "withdrawn")):
            records.setdefault(b.subject_id + "|" + b.device_id, []).append(row_to_record(b))
        saved = [cuts.get(assignment_key(a), {"cuts": [], "complete": True}) for a in det.assignments]
        starts = [a.start_ms if c["complete"] or not c["cuts"] else int(c["cuts"][0])
                  for a, c in zip(det.assignments, saved)]
        f, e = self.reader.processed_rows(session, upto=self.watermark, since_ms=min(starts) if starts else None)
        states = []
        for a, c in zip(det.assignments, saved):
            end = POS_INF_MS if a.end_ms is None else a.end_ms
            mine = {r["breach_id"]: r for r in records.get(a.subject_id + "|" + a.device_id, [])
                    if a.start_ms <= r["_start_ms"] < end}
            states.append((c["cuts"], c["complete"], mine))
        det.restore(states, f, e)

    def _fresh(self, session: Session, det: IncrementalDetector) -> None:
        """First start (or a new policy): everything processed so far, as one batch."""
        f, e = self.reader.processed_rows(session, upto=self.watermark)
        changes, _, _ = det.add(f, e)
        known = det.breach_ids()
        # records in the database that this detector does not produce any more are withdrawn
        existing = {b.breach_id for b in session.scalars(select(BreachRow).where(BreachRow.status != "withdrawn"))}
        stale = [Change(bid, None, None) for bid in existing - known]
        self.writer.apply(session, changes + stale, reason_default="recomputed after the subjects or zones changed")
        self.put(session, "as_of_ms", det.as_of)
        self.save_cuts(session, det)

    # ------------------------------------------------------------ history reads
    def history(self, a: Assignment) -> tuple[FixRows, EventRows]:
        """Every processed row of `a`'s device from its start (the store and the log): the
        detector's history loader. Through the re-evaluation's session while one runs (a
        second connection would see another snapshot), else a new read-only session."""
        if self._bound is not None:
            return self.reader.processed_rows(self._bound, upto=self.watermark, device=a.device_id, since_ms=a.start_ms)
        with self.read_only() as s:
            out = self.reader.processed_rows(s, upto=self.watermark, device=a.device_id, since_ms=a.start_ms)
            s.commit()
            return out

    @contextmanager
    def _reading_through(self, session: Session) -> Iterator[None]:
        """History reads go through `session` inside the block, and never after it, however it ends."""
        self._bound = session
        try:
            yield
        finally:
            self._bound = None

    # ------------------------------------------------------------ reporting
    def failures(self, pseudonym: Callable[[str], str]) -> list[dict]:
        """Assignments whose detection failed at the last try (each keeps its previous records
        and is retried at every pass that reaches it); wearers by `pseudonym` only."""
        det = self.detector
        if det is None:
            return []
        out = []
        for i, error in sorted(det.failures.items()):
            a = det.assignments[i]
            out.append({"subject": pseudonym(a.subject_id), "device_id": a.device_id,
                        "start": format_ms(a.start_ms), "error": error[:300]})
        return out


def _zone_rows(session: Session) -> list[tuple[str, str]]:
    """Every stored zone version as (id, feature JSON), for the configuration digest."""
    return [(z.zone_id, z.feature_json) for z in session.scalars(select(ZoneRow).order_by(ZoneRow.zone_id))]
