"""Fix and event intake for continuous operation (POST /v1/fixes, `tagtrail watch`).

A batch is validated row by row exactly as files are (CONTRACT.md,
"Quarantine" reasons 1-7, vectorised), deduplicated against everything
accepted before it (reason 10: the first copy to arrive is kept, so sending
the same batch twice adds nothing), projected once, and written to the
intake log (`intake_fix_chunks`, one per batch, and `intake_events`) together with its quarantined
rows, its counts and an audit entry, in one transaction: when the caller
hears "accepted", the rows are durable. Detection picks them up from the log
(`api.stream`); rows of a device nobody wears at that time are kept too
(an assignment may be registered later) and simply take no part until then.

Bodies:

- JSON: ``{"fixes": [{"device_id", "ts", "lat", "lon", "accuracy_m"?, "battery_pct"?}, ...],
  "events": [{"device_id", "ts", "event"}, ...]}`` (either list may be absent).
  A JSON value is read as the text a CSV field would hold (a number as its
  shortest decimal form, null as missing), then the CSV rules apply: so a
  number for `ts` is ``bad_timestamp`` and ``true`` for `lat` is
  ``bad_coordinates``, never guessed at.
- CSV: a fixes file (or, with ``kind=events``, an events file) in the
  contract's format, header first.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from trails.errors import InputError
from trails.keys import KeyIndex
from trails.projection import project_lonlat
from trails.quarantine import REASON_CODE, REASONS, Rejected
from trails.readers import iter_raw_batches
from trails.validate import validate_events, validate_fixes

from . import fixlog
from .models import DetectorState, IntakeBatch, IntakeEvent, IntakeFixChunk, IntakeQuarantine, User

__all__ = ["MAX_ROWS", "IntakeResult", "accept_batch", "parse_json_body", "parse_csv_body", "BatchError"]

#: Rows (fixes + events) one batch may carry.
MAX_ROWS = 50_000
STORE_CRS = "EPSG:27700"
_FIX_FIELDS = ("device_id", "ts", "lat", "lon", "accuracy_m", "battery_pct")
_EVENT_FIELDS = ("device_id", "ts", "event")
_DUPLICATE = REASON_CODE["duplicate"]


class BatchError(InputError):
    """A batch that cannot be read at all (not JSON, wrong shape, too many rows)."""


@dataclass
class IntakeResult:
    """What one batch did: per source, rows received, accepted and quarantined by reason."""

    batch_id: int
    fixes: dict = field(default_factory=dict)
    events: dict = field(default_factory=dict)
    accepted_fixes: int = 0
    accepted_events: int = 0

    def as_json(self) -> dict:
        return {"batch_id": self.batch_id, "fixes": self.fixes, "events": self.events}


# --------------------------------------------------------------------------- bodies
def _text(v) -> str | None:
    """A JSON value as the text of a CSV field (None = missing)."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan"
    return json.dumps(v)


_NUMERIC = frozenset({"lat", "lon", "accuracy_m", "battery_pct"})
_NUMBER_TYPES = frozenset({int, float, type(None)})
_TEXT_TYPES = frozenset({str, type(None)})


def _column(values: list, numeric: bool) -> pa.Array:
    """One field's values as an Arrow column that validates exactly as their CSV text would.

    The usual batch (strings where text belongs, numbers where numbers do)
    goes straight to Arrow: a JSON number is then a typed value, which the
    validator reads as it reads Parquet, with the same outcome as its text
    (non-finite is "not a number" either way). Anything else (a bool, an
    object, a number for a text field) goes through `_text`.
    """
    kinds = set(map(type, values))
    try:
        if numeric and kinds <= _NUMBER_TYPES:
            return pa.array(values, pa.float64())
        if kinds <= _TEXT_TYPES:
            return pa.array(values, pa.string())
    except (pa.ArrowInvalid, OverflowError):  # an integer too big for a double: read as text
        pass
    return pa.array([_text(v) for v in values], pa.string())


def _table(rows: list, fields: tuple[str, ...], what: str) -> pa.Table:
    if not isinstance(rows, list):
        raise BatchError(f"{what} must be a list of objects")
    if not all(isinstance(r, dict) for r in rows):
        i = next(i for i, r in enumerate(rows) if not isinstance(r, dict))
        raise BatchError(f"{what}[{i}] must be an object")
    return pa.table({f: _column([r.get(f) for r in rows], f in _NUMERIC) for f in fields})


def parse_json_body(raw: bytes) -> tuple[pa.Table | None, pa.Table | None]:
    """(fixes table, events table) of string columns from a JSON body."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchError(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not set(doc) <= {"fixes", "events"} or not doc:
        raise BatchError('body must be an object with "fixes" and/or "events" lists')
    fixes = _table(doc["fixes"], _FIX_FIELDS, "fixes") if "fixes" in doc else None
    events = _table(doc["events"], _EVENT_FIELDS, "events") if "events" in doc else None
    return fixes, events


def parse_csv_body(raw: bytes, kind: str, tmp_dir: Path) -> pa.Table:
    """The contract's columns of a CSV body (a fixes or an events file) as one table."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="batch-", suffix=".csv", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        tables = list(iter_raw_batches(name, kind=kind, batch_rows=MAX_ROWS + 1))
    except InputError as exc:
        raise BatchError(str(exc).replace(repr(name), "(body)")) from None
    finally:
        os.unlink(name)
    from trails.readers import EVENT_COLUMNS, FIX_COLUMNS

    cols = [c for group in (FIX_COLUMNS if kind == "fixes" else EVENT_COLUMNS) for c in group]
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in cols if c in ("device_id", "ts", "lat", "lon", "event")})
    return pa.concat_tables(tables)


# --------------------------------------------------------------------------- accepting
def _counts(n: int, rejected: Rejected) -> dict:
    return {"received": n, "accepted": n - len(rejected), "quarantined": rejected.counts()}


def accept_batch(session: Session, audit, keys: KeyIndex, *, fixes: pa.Table | None, events: pa.Table | None,
                 source: str, user: User | None, now_ms: int | None = None, day_loader=None) -> tuple[IntakeResult, dict]:
    """Validate, deduplicate, project and log one batch in the caller's transaction.

    Returns (result, accepted) where ``accepted`` is what to hand to
    `api.stream.StreamService.accepted` once the transaction has committed
    (the keys for deduplication, and the logged fixes with their seqs for
    compaction): the index must never claim a row that a rolled-back
    transaction did not keep.
    """
    n_f = fixes.num_rows if fixes is not None else 0
    n_e = events.num_rows if events is not None else 0
    if n_f + n_e > MAX_ROWS:
        raise BatchError(f"batch has {n_f + n_e} rows; at most {MAX_ROWS} per batch")
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    # validation, deduplication and projection first: the database's write lock is taken
    # (by the first write) only for the inserts and the audit entry
    q_parts: list[tuple[str, Rejected, pa.Table]] = []
    accepted: dict = {"fixes": ([], np.zeros(0, np.int64)), "events": ([], [], [])}
    f_rej = Rejected.empty("fixes")
    e_rej = Rejected.empty("events")
    fix_table: pa.Table | None = None
    ev_rows: list[dict] = []
    if n_f:
        kept, rej, bad = validate_fixes(fixes, first_row=1, name="fixes")
        first = keys.first_copies(kept.device_id, kept.ts_ms, loader=day_loader)
        dup = np.flatnonzero(~first)
        f_rej = Rejected.concat("fixes", [rej, Rejected("fixes", kept.row[dup], np.full(dup.size, _DUPLICATE, np.int8))])
        ok = np.flatnonzero(first)
        x, y = project_lonlat(kept.lon[ok], kept.lat[ok], STORE_CRS)
        fix_table = pa.table({"row": kept.row[ok], "device_id": kept.device_id.take(pa.array(ok)),
                              "ts_ms": kept.ts_ms[ok], "lat": kept.lat[ok], "lon": kept.lon[ok], "x": x, "y": y,
                              "accuracy_m": kept.accuracy_m[ok], "battery_pct": kept.battery_pct[ok]})
        accepted["fixes"] = (fix_table.column("device_id"), kept.ts_ms[ok])
        q_parts.append(("fixes", f_rej, fixes))
    if n_e:
        kept, rej, bad = validate_events(events, first_row=1, name="events")
        dev, kinds = kept.device_id.to_pylist(), kept.event.to_pylist()
        first = keys.first_events(dev, kept.ts_ms, kinds)
        dup = np.flatnonzero(~first)
        e_rej = Rejected.concat("events", [rej, Rejected("events", kept.row[dup], np.full(dup.size, _DUPLICATE, np.int8))])
        ok = np.flatnonzero(first).tolist()
        for i in ok:
            ev_rows.append({"row": int(kept.row[i]), "device_id": dev[i], "ts_ms": int(kept.ts_ms[i]),
                            "event": kinds[i]})
        accepted["events"] = ([dev[i] for i in ok], [int(kept.ts_ms[i]) for i in ok], [kinds[i] for i in ok])
        q_parts.append(("events", e_rej, events))
    batch = IntakeBatch(received_ms=now, source=source[:300], user_id=user.id if user else None, fix_rows=n_f,
                        event_rows=n_e, fixes_accepted=0, events_accepted=0, quarantined_json="{}")
    session.add(batch)
    session.flush()
    for r in ev_rows:
        r["batch_id"] = batch.id
    q_rows = [q for name, rej, table in q_parts for q in _quarantine_rows(batch.id, name, rej, table)]
    n_fixes = fix_table.num_rows if fix_table is not None else 0
    if n_fixes:
        accepted["fix_log"] = _log_fixes(session, batch.id, fix_table)
    if ev_rows:
        session.execute(insert(IntakeEvent), ev_rows)
    if q_rows:
        session.execute(insert(IntakeQuarantine), q_rows)
    result = IntakeResult(batch_id=batch.id, fixes=_counts(n_f, f_rej), events=_counts(n_e, e_rej),
                          accepted_fixes=n_fixes, accepted_events=len(ev_rows))
    batch.fixes_accepted, batch.events_accepted = n_fixes, len(ev_rows)
    batch.quarantined_json = json.dumps({"fixes": result.fixes["quarantined"], "events": result.events["quarantined"]})
    # DPA 2018 s.62: collection is logged; counts only, never a position or a wearer
    audit.append(session, action="fixes.intake", actor=user, now_ms=now,
                 detail={"batch_id": batch.id, "source": source[:200], "fixes": result.fixes, "events": result.events})
    return result, accepted


def _log_fixes(session: Session, batch_id: int, table: pa.Table) -> tuple[int, int, int, pa.Table]:
    """Add the batch's accepted fixes to the intake log as one chunk; returns
    (first seq, last seq, batch id, table), what the stream service keeps.

    The seq counter is read and moved in the caller's transaction, which
    holds the database's one write lock (BEGIN IMMEDIATE on SQLite, the
    advisory lock on PostgreSQL): two batches never get the same seqs."""
    state = session.get(DetectorState, fixlog.SEQ_KEY)
    last_chunk = session.scalar(select(func.max(IntakeFixChunk.seq_last)))
    done = max(int(json.loads(state.value)) if state is not None else 0, int(last_chunk or 0))
    first, last = done + 1, done + table.num_rows
    if state is None:
        session.add(DetectorState(key=fixlog.SEQ_KEY, value=json.dumps(last)))
    else:
        state.value = json.dumps(last)
    session.add(IntakeFixChunk(seq_first=first, seq_last=last, batch_id=batch_id, rows=table.num_rows,
                               data=fixlog.encode(table)))
    return first, last, batch_id, table


def _quarantine_rows(batch_id: int, source: str, rej: Rejected, table: pa.Table) -> list[dict]:
    if len(rej) == 0:
        return []
    idx = pa.array(rej.row - 1)
    dev = table.column("device_id").take(idx).to_pylist()
    ts = table.column("ts").take(idx).to_pylist()
    return [{"batch_id": batch_id, "source": source, "row": int(r), "reason": REASONS[int(c)],
             "device_id": d, "ts": t} for r, c, d, t in zip(rej.row.tolist(), rej.reason.tolist(), dev, ts)]
