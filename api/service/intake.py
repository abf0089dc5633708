"""Fix and event intake for continuous operation (POST /v1/fixes, `tagtrail watch`).

A batch is validated row by row exactly as files are (CONTRACT.md,
"Quarantine" reasons 1-7, vectorised), deduplicated against everything
accepted before it (reason 10: the first copy to arrive is kept, so sending
the same batch twice adds nothing), projected once, and written to the
intake log (`intake_fix_chunks`, one per batch, and `intake_events`) together with its quarantined
rows, its counts and an audit entry, in one transaction: when the caller
hears "accepted", the rows are durable. Detection picks them up from the log
(`api.service.stream`); rows of a device nobody wears at that time are kept too
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

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from trails.errors import InputError
from trails.keys import KeyIndex
from trails.projection import project_lonlat
from trails.quarantine import REASON_CODE, REASONS, Rejected, bounded_text
from trails.readers import EVENT_COLUMNS, FIX_COLUMNS, iter_raw_batches
from trails.store import STORE_CRS
from trails.timestamps import POS_INF_MS, format_ms, format_ms_array
from trails.validate import validate_events, validate_fixes

from api.db import fixlog
from api.db.models import DetectorState, IntakeBatch, IntakeEvent, IntakeFixChunk, IntakeQuarantine, User

__all__ = ["MAX_ROWS", "IntakeContext", "IntakeResult", "accept_batch", "batch_summary", "parse_json_body",
           "parse_csv_body", "BatchError", "INLINE_DEVICES", "take_batch", "AssignmentIndex", "summary_bytes", "read_summary",
           "SUMMARY_SCHEMA"]

#: Rows (fixes + events) one batch may carry.
MAX_ROWS = 50_000
_FIX_FIELDS = ("device_id", "ts", "lat", "lon", "accuracy_m", "battery_pct")
_EVENT_FIELDS = ("device_id", "ts", "event")
_DUPLICATE = REASON_CODE["duplicate"]
_FUTURE = REASON_CODE["future_timestamp"]


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


def _surrogate(values: list) -> tuple[int, str] | None:
    """(position, the lone surrogate) of the first value that is not valid Unicode text, or None.

    JSON may spell a lone surrogate (``"\\ud800"``), which no UTF-8 text can hold:
    like a CSV file that is not valid UTF-8, such a batch cannot be read at all."""
    for i, v in enumerate(values):
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as exc:
                return i, v[exc.start]
    return None


def _table(rows: list, fields: tuple[str, ...], what: str) -> pa.Table:
    if not isinstance(rows, list):
        raise BatchError(f"{what} must be a list of objects")
    if not all(isinstance(r, dict) for r in rows):
        i = next(i for i, r in enumerate(rows) if not isinstance(r, dict))
        raise BatchError(f"{what}[{i}] must be an object")
    columns = {}
    for f in fields:
        values = [r.get(f) for r in rows]
        try:
            columns[f] = _column(values, f in _NUMERIC)
        except UnicodeEncodeError:
            i, char = _surrogate(values)
            raise BatchError(f"{what}[{i}].{f} holds a lone surrogate (\\u{ord(char):04x}): not valid Unicode text, "
                             f"so the batch cannot be read (as a CSV file that is not valid UTF-8)") from None
    return pa.table(columns)


def parse_json_body(raw: bytes) -> tuple[pa.Table | None, pa.Table | None]:
    """(fixes table, events table) of string columns from a JSON body."""
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise BatchError("body is nested too deeply to be a batch (JSON arrays or objects inside each other "
                         "hundreds of levels deep)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchError(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not set(doc) <= {"fixes", "events"} or not doc:
        raise BatchError('body must be an object with "fixes" and/or "events" lists')
    fixes = _table(doc["fixes"], _FIX_FIELDS, "fixes") if "fixes" in doc else None
    events = _table(doc["events"], _EVENT_FIELDS, "events") if "events" in doc else None
    return fixes, events


def parse_csv_body(raw: bytes, kind: str, tmp_dir: Path | None = None) -> pa.Table:
    """The contract's columns of a CSV body (a fixes or an events file) as one table.

    The body is read where it is (`trails.readers` takes bytes), with the same
    checks and messages as a file, naming it ``(body)``. `tmp_dir` is not used
    (bodies were once written to a temporary file there); it goes when the
    router stops passing it."""
    try:
        tables = list(iter_raw_batches(raw, kind=kind, batch_rows=MAX_ROWS + 1, fmt="csv", name="(body)"))
    except InputError as exc:
        raise BatchError(str(exc)) from None
    cols = [c for group in (FIX_COLUMNS if kind == "fixes" else EVENT_COLUMNS) for c in group]
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in cols if c in ("device_id", "ts", "lat", "lon", "event")})
    return pa.concat_tables(tables)


# --------------------------------------------------------------------------- accepting
@dataclass(frozen=True)
class AssignmentIndex:
    """Who wears which device, as sorted columns, for naming the wearers a batch concerns.

    devices: the distinct device ids, sorted; first/count: where each device's
    assignments start in the other columns and how many there are; start_ms,
    end_ms (`trails.timestamps.POS_INF_MS` = still worn), subject_id: the assignments, by device."""

    devices: pa.Array
    first: np.ndarray
    count: np.ndarray
    start_ms: np.ndarray
    end_ms: np.ndarray
    subject_id: pa.Array

    @staticmethod
    def build(assignments) -> "AssignmentIndex":
        rows = sorted(assignments, key=lambda a: (a.device_id, a.start_ms))
        dev = [a.device_id for a in rows]
        names, first, count = np.unique(np.asarray(dev, object), return_index=True, return_counts=True) if rows \
            else (np.zeros(0, object), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return AssignmentIndex(pa.array(names.tolist(), pa.string()), first.astype(np.int64), count.astype(np.int64),
                               np.array([a.start_ms for a in rows], np.int64),
                               np.array([POS_INF_MS if a.end_ms is None else a.end_ms for a in rows], np.int64),
                               pa.array([a.subject_id for a in rows], pa.string()))


@dataclass(frozen=True)
class IntakeContext:
    """What intake needs from the running service for one batch (`api.service.stream.StreamService.intake_context`).

    keys: accepted keys, for first-arrival deduplication; day_loader: loads one
    UTC day's accepted keys on first use; max_ahead_ms: the policy's
    ``max_clock_ahead_s`` in ms; assignments: who wears which device
    (`AssignmentIndex`), to name the wearers a batch concerns in the audit log."""

    keys: KeyIndex
    day_loader: Callable | None = None
    max_ahead_ms: int = 300_000
    assignments: AssignmentIndex = field(default_factory=lambda: AssignmentIndex.build([]))


def _counts(n: int, rejected: Rejected) -> dict:
    return {"received": n, "accepted": n - len(rejected), "quarantined": rejected.counts()}


def _screen(kept, rej: Rejected, source: str, first: np.ndarray, future: np.ndarray) -> tuple[Rejected, np.ndarray]:
    """Rejected rows of one source (reasons 1-7, then future_timestamp, then duplicate) and the kept positions."""
    dup = np.flatnonzero(~first & ~future)
    fut = np.flatnonzero(future)
    parts = [rej, Rejected(source, kept.row[fut], np.full(fut.size, _FUTURE, np.int8)),
             Rejected(source, kept.row[dup], np.full(dup.size, _DUPLICATE, np.int8))]
    return Rejected.concat(source, parts), np.flatnonzero(first & ~future)


def _accept_fixes(fixes: pa.Table, ctx: IntakeContext, now: int) -> tuple[Rejected, pa.Table]:
    """Validated, not from the future, first copies, projected: (rejected rows, the fix table to log)."""
    kept, rej, _ = validate_fixes(fixes, first_row=1, name="fixes")
    future = kept.ts_ms > now + ctx.max_ahead_ms
    first = np.ones(len(kept), bool)
    ahead = np.flatnonzero(~future)  # a row from the future is quarantined before it is looked up or indexed
    first[ahead] = ctx.keys.first_copies(kept.device_id.take(pa.array(ahead)), kept.ts_ms[ahead], loader=ctx.day_loader)
    f_rej, ok = _screen(kept, rej, "fixes", first, future)
    x, y = project_lonlat(kept.lon[ok], kept.lat[ok], STORE_CRS)
    table = pa.table({"row": kept.row[ok], "device_id": kept.device_id.take(pa.array(ok)),
                      "ts_ms": kept.ts_ms[ok], "lat": kept.lat[ok], "lon": kept.lon[ok], "x": x, "y": y,
                      "accuracy_m": kept.accuracy_m[ok], "battery_pct": kept.battery_pct[ok]})
    return f_rej, table


def _accept_events(events: pa.Table, ctx: IntakeContext, now: int) -> tuple[Rejected, list[dict]]:
    kept, rej, _ = validate_events(events, first_row=1, name="events")
    future = kept.ts_ms > now + ctx.max_ahead_ms
    dev, kinds = kept.device_id.to_pylist(), kept.event.to_pylist()
    first = np.ones(len(kept), bool)
    ahead = np.flatnonzero(~future)
    first[ahead] = ctx.keys.first_events([dev[i] for i in ahead.tolist()], kept.ts_ms[ahead],
                                         [kinds[i] for i in ahead.tolist()])
    e_rej, ok = _screen(kept, rej, "events", first, future)
    rows = [{"row": int(kept.row[i]), "device_id": dev[i], "ts_ms": int(kept.ts_ms[i]), "event": kinds[i]}
            for i in ok.tolist()]
    return e_rej, rows


def accept_batch(session: Session, audit, ctx: IntakeContext, *, fixes: pa.Table | None, events: pa.Table | None,
                 source: str, user: User | None, now_ms: int | None = None) -> tuple[IntakeResult, dict]:
    """Validate, deduplicate, project and log one batch in the caller's transaction.

    `now_ms` is the batch's receipt time: a row dated more than
    ``ctx.max_ahead_ms`` after it is quarantined ``future_timestamp`` (a tag
    clock running ahead must not move time for every wearer; CONTRACT.md
    "Continuous intake"). Returns (result, accepted) where ``accepted`` is
    what to hand to `api.service.stream.StreamService.accepted` once the transaction
    has committed (the keys for deduplication, and the logged fixes with
    their seqs for compaction): the index must never claim a row that a
    rolled-back transaction did not keep.
    """
    n_f = fixes.num_rows if fixes is not None else 0
    n_e = events.num_rows if events is not None else 0
    if n_f + n_e > MAX_ROWS:
        raise BatchError(f"batch has {n_f + n_e} rows; at most {MAX_ROWS} per batch")
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    # validation, deduplication and projection first: the database's write lock is taken
    # (by the first write) only for the inserts and the audit entry
    f_rej, fix_table = _accept_fixes(fixes, ctx, now) if n_f else (Rejected.empty("fixes"), None)
    e_rej, ev_rows = _accept_events(events, ctx, now) if n_e else (Rejected.empty("events"), [])
    summary = batch_summary(fix_table, ev_rows, ctx.assignments)
    data = summary_bytes(summary)
    batch = IntakeBatch(received_ms=now, source=source[:300], user_id=user.id if user else None, fix_rows=n_f,
                        event_rows=n_e, fixes_accepted=0, events_accepted=0, quarantined_json="{}",
                        summary=data)
    session.add(batch)
    session.flush()
    for r in ev_rows:
        r["batch_id"] = batch.id
    q_rows = _quarantine_rows(batch.id, now, "fixes", f_rej, fixes) + _quarantine_rows(batch.id, now, "events", e_rej, events)
    n_fixes = fix_table.num_rows if fix_table is not None else 0
    accepted: dict = {"fixes": (fix_table.column("device_id"), fix_table.column("ts_ms").to_numpy()) if n_fixes
                      else ([], np.zeros(0, np.int64)),
                      "events": tuple(list(c) for c in zip(*((r["device_id"], r["ts_ms"], r["event"]) for r in ev_rows)))
                      or ([], [], [])}
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
    audit.append(session, action="fixes.intake", actor=user, now_ms=now,
                 detail=_audit_detail(audit, batch.id, source, result, summary, data))
    return result, accepted


#: A batch touching at most this many devices is described device by device in its audit entry;
#: a larger one by counts and the SHA-256 of its summary (kept with the batch: `intake_batches.summary`).
INLINE_DEVICES = 20


def batch_summary(fix_table: pa.Table | None, ev_rows: list[dict], assignments: AssignmentIndex) -> pa.Table:
    """Per device a batch added rows for, in device order: ``device_id``, ``rows``,
    first and last instant (``from_ms``, ``to_ms``) and ``subjects``, the wearers
    whose assignment of it covers those instants (in start order).

    This is what an audit of "who added evidence about this wearer" needs: the
    batch's audit entry commits to it (by SHA-256, or inline). A national batch
    touches thousands of devices: grouping and the lookup of assignments are
    whole-column work."""
    parts = []
    if fix_table is not None and fix_table.num_rows:
        parts.append(fix_table.select(["device_id", "ts_ms"]))
    if ev_rows:
        parts.append(pa.table({"device_id": pa.array([r["device_id"] for r in ev_rows], pa.string()),
                               "ts_ms": pa.array([r["ts_ms"] for r in ev_rows], pa.int64())}))
    if not parts:
        return SUMMARY_SCHEMA.empty_table()
    g = pa.concat_tables(parts).group_by("device_id").aggregate([("ts_ms", "count"), ("ts_ms", "min"), ("ts_ms", "max")])
    g = g.sort_by("device_id")
    lo, hi = g["ts_ms_min"].to_numpy(), g["ts_ms_max"].to_numpy()
    k = pc.index_in(g["device_id"], value_set=assignments.devices).to_numpy(zero_copy_only=False)
    has = ~np.isnan(k) if k.dtype.kind == "f" else k >= 0
    k = np.where(has, k, 0).astype(np.int64)
    n = np.where(has, assignments.count[k] if assignments.count.size else 0, 0)
    owner = np.repeat(np.arange(g.num_rows), n)  # one row per (batch device, one of its assignments)
    at = np.repeat(assignments.first[k] if assignments.first.size else n, n) + (
        np.arange(owner.size) - np.repeat(np.cumsum(n) - n, n))
    keep = (assignments.start_ms[at] <= hi[owner]) & (assignments.end_ms[at] > lo[owner]) if owner.size else owner > 0
    offsets = np.zeros(g.num_rows + 1, np.int32)
    np.cumsum(np.bincount(owner[keep], minlength=g.num_rows), out=offsets[1:])
    subjects = pa.ListArray.from_arrays(pa.array(offsets), assignments.subject_id.take(pa.array(at[keep])))
    return pa.Table.from_arrays([g["device_id"], g["ts_ms_count"], g["ts_ms_min"], g["ts_ms_max"], subjects],
                                schema=SUMMARY_SCHEMA)


SUMMARY_SCHEMA = pa.schema([("device_id", pa.string()), ("rows", pa.int64()), ("from_ms", pa.int64()),
                            ("to_ms", pa.int64()), ("subjects", pa.list_(pa.string()))])


def summary_bytes(summary: pa.Table) -> bytes:
    """The summary as kept with the batch (`intake_batches.summary`, an Arrow IPC stream of
    `SUMMARY_SCHEMA`) and hashed into its audit entry; `read_summary` reads it back."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SUMMARY_SCHEMA) as writer:
        writer.write_table(summary.cast(SUMMARY_SCHEMA))
    return sink.getvalue().to_pybytes()


def read_summary(data: bytes) -> list[dict]:
    """A batch's summary (`summary_bytes`) as one dict per device, instants in the contract's form."""
    t = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    return [{"device_id": d["device_id"], "rows": d["rows"], "from": format_ms(d["from_ms"]), "to": format_ms(d["to_ms"]),
             "subjects": d["subjects"]} for d in t.to_pylist()]


def _audit_detail(audit, batch_id: int, source: str, result: IntakeResult, summary: pa.Table,
                  data: bytes) -> dict:
    """DPA 2018 s.62: collection is logged: which devices, which wearers (by pseudonym), which
    period; never a position."""
    detail = {"batch_id": batch_id, "source": source[:200], "fixes": result.fixes, "events": result.events,
              "devices": summary.num_rows, "summary_sha256": hashlib.sha256(data).hexdigest()}
    if summary.num_rows:
        first, last = format_ms_array([pc.min(summary["from_ms"]).as_py(), pc.max(summary["to_ms"]).as_py()])
        detail["from"], detail["to"] = first, last
        detail["subjects"] = int(pc.count_distinct(pc.list_flatten(summary["subjects"])).as_py())
    if 0 < summary.num_rows <= INLINE_DEVICES:
        detail["by_device"] = [{"device_id": d["device_id"], "rows": d["rows"], "from": format_ms(d["from_ms"]),
                                "to": format_ms(d["to_ms"]), "subjects": [audit.pseudonym(s) for s in d["subjects"]]}
                               for d in summary.to_pylist()]
    return detail


def take_batch(stream, session: Session, audit, *, fixes: pa.Table | None, events: pa.Table | None, source: str,
               user: User | None, now_ms: int | None = None) -> IntakeResult:
    """The intake protocol, one batch, for every way in (POST /v1/fixes, `tagtrail watch`):
    under the service's intake lock, accept the batch in `session`'s transaction, commit it
    with its audit entry, hand what was accepted to the detector, write an audit checkpoint,
    and wake the detector. When this returns, the accepted rows are durable."""
    with stream.intake_lock:
        ctx = stream.intake_context(session)
        result, accepted = accept_batch(session, audit, ctx, fixes=fixes, events=events, source=source, user=user,
                                        now_ms=now_ms)
        session.commit()
        stream.accepted(accepted, loader=ctx.day_loader)
    try:
        audit.write_checkpoint(session)
        session.commit()  # end the transaction the checkpoint opened (it only reads)
    except Exception:  # the entries are committed; the next checkpoint covers them
        session.rollback()
        logging.getLogger("tagtrail.intake").exception("audit checkpoint not written")
    if result.accepted_fixes or result.accepted_events:
        stream.notify()
    return result


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


def _quarantine_rows(batch_id: int, received_ms: int, source: str, rej: Rejected, table: pa.Table | None) -> list[dict]:
    """Rows for `intake_quarantine`: reason, receipt time, and at most a bounded
    prefix of the raw device id and timestamp (`trails.quarantine.bounded_text`)."""
    if len(rej) == 0 or table is None:
        return []
    idx = pa.array(rej.row - 1)
    dev = bounded_text(table.column("device_id").take(idx)).to_pylist()
    ts = bounded_text(table.column("ts").take(idx)).to_pylist()
    return [{"batch_id": batch_id, "received_ms": received_ms, "source": source, "row": int(r),
             "reason": REASONS[int(c)], "device_id": d, "ts": t}
            for r, c, d, t in zip(rej.row.tolist(), rej.reason.tolist(), dev, ts)]
