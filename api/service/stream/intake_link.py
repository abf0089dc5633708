"""What intake needs from the running service, and what it hands back.

Intake deduplicates by first arrival: a fix is a duplicate if its (device,
instant) was accepted before, by any batch, whether the row is still in the
intake log or already in the store. The service keeps that index
(`trails.keys.KeyIndex`) in memory for its whole life, so it lives here,
beside the log it mirrors: intake asks for its context under `lock` (one
batch at a time: check, insert, commit, index update), and after its
transaction commits hands over what it accepted (`accepted`), whose fix chunk
the log reader then holds for the pass and compaction.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from trails.keys import DAY_MS, KeyIndex

from api.db import fixlog
from api.db.models import IntakeEvent
from api.service.detections import config_version, load_assignments
from api.service.intake import AssignmentIndex, IntakeContext
from api.service.stream.detector_state import home_policy, policy_text
from api.service.stream.log_reader import LogReader

__all__ = ["IntakeLink"]

#: Loader of one UTC day's accepted fix keys: day -> (device ids, ts_ms).
DayLoader = Callable[[int], tuple[pa.Array, np.ndarray]]


class IntakeLink:
    """The deduplication index and the context intake needs, for one home."""

    def __init__(self, home: Path, reader: LogReader) -> None:
        self.home = Path(home)
        self.reader = reader
        self.keys = KeyIndex()  # accepted keys, for first-arrival deduplication at intake
        self.lock = threading.Lock()  # dedup check, insert, commit and index update: one batch at a time
        self._events_loaded = False
        # ((config version, policy text), clock allowance ms, who wears which device)
        self._cache: tuple[tuple[int, str], int, AssignmentIndex] | None = None

    def accepted(self, accepted: dict, *, loader: DayLoader | None = None) -> None:
        """After an intake transaction committed: index its keys, hold its fix chunk for passes and compaction."""
        self.keys.add(*accepted["fixes"], loader=loader)
        self.keys.add_events(*accepted["events"])
        chunk = accepted.get("fix_log")
        if chunk is not None:
            self.reader.hold(chunk)

    def context(self, session: Session) -> IntakeContext:
        """What intake needs for one batch, read through `session`: the index and its day
        loader, the policy's clock allowance, and who wears which device (cached until
        the subjects, zones or policy change)."""
        key = (config_version(session), policy_text(self.home))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, home_policy(self.home).max_clock_ahead_ms,
                           AssignmentIndex.build(load_assignments(session)))
        _, ahead_ms, by_device = self._cache
        return IntakeContext(keys=self.keys, day_loader=self.day_loader(session), max_ahead_ms=ahead_ms,
                             assignments=by_device)

    def day_loader(self, session: Session) -> DayLoader:
        """Loader of one UTC day's accepted fix keys (the store and the log), through `session`.
        The first call also loads every accepted event key (events are few)."""
        from trails.store import existing_keys

        if not self._events_loaded:
            self._load_events(session)

        def load(day: int) -> tuple[pa.Array, np.ndarray]:
            parts = [c[3].select(["device_id", "ts_ms"]) for c in self.reader.chunks(session, self.reader.compacted[0])]
            if (self.home / "store").exists():
                parts.append(existing_keys(self.home, "fixes", day, ["device_id", "ts_ms"]))
            t = pa.concat_tables(parts) if parts else fixlog.SCHEMA.empty_table().select(["device_id", "ts_ms"])
            ts = t.column("ts_ms").to_numpy().astype(np.int64)
            on_day = np.flatnonzero((ts >= day * DAY_MS) & (ts < (day + 1) * DAY_MS))
            return t.column("device_id").take(pa.array(on_day)), ts[on_day]

        return load

    def _load_events(self, session: Session) -> None:
        self.keys.load_events(session.execute(select(IntakeEvent.device_id, IntakeEvent.ts_ms, IntakeEvent.event)).all())
        if (self.home / "store").exists():
            from trails.store import read_store_events

            se = read_store_events(self.home)
            self.keys.load_events(zip(se.device_id.to_pylist(), se.ts_ms.tolist(), se.event.to_pylist()))
        self._events_loaded = True
