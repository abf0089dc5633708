"""The stream service's units, each alone (issue 11): the intake-log reader, the
breach-queue writer, compaction, the detector state, the runner and intake's
side. The service as a whole is tested over HTTP in tests/test_stream_api.py;
its failure handling in tests/test_stream_failures.py.

Each test builds just what its unit touches: a migrated database in a fresh
home, log rows written as intake writes them (`api.db.fixlog` chunks, event
rows), a stand-in audit log that records what it is asked to append.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select

from api.db import fixlog
from api.db.models import BreachRow, IntakeEvent, IntakeFixChunk
from api.db.session import open_database, read_only_factory
from api.service.detections import breach_fields, bump_config_version, save_detection
from api.service.stream.compaction import Compaction
from api.service.stream.detector_state import DetectorStore, config_digest, thin_cuts
from api.service.stream.intake_link import IntakeLink
from api.service.stream.log_reader import LogReader
from api.service.stream.queue_writer import QueueWriter, row_to_record
from api.service.stream.runner import Runner, pause_after
from api.settings import Settings
from geofence.incremental import Change
from geofence.model import Assignment
from trails.keys import DAY_MS
from trails.store import read_store_events, read_store_fixes

T0 = 1_704_909_600_000  # 2024-01-10T18:00:00Z


def _ms(*args) -> int:
    """Epoch ms of a UTC date and time, by the standard library (not by tagtrail)."""
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


class _Audit:
    """Stands in for `api.audit.log.AuditLog`: records every append."""

    def __init__(self) -> None:
        self.entries: list[dict] = []

    def append(self, session, **kwargs) -> None:
        self.entries.append(kwargs)

    def pseudonym(self, subject_id: str) -> str:
        return f"p-{subject_id}"


@pytest.fixture()
def db(tmp_path):
    home = tmp_path / "home"
    engine, factory = open_database(Settings.from_home(home))
    yield home, factory
    engine.dispose()


def _chunk(first: int, devices: list[str], ts_ms: list[int]) -> pa.Table:
    n = len(ts_ms)
    return pa.table({"row": pa.array(range(1, n + 1), pa.int64()), "device_id": pa.array(devices, pa.string()),
                     "ts_ms": pa.array(ts_ms, pa.int64()), "lat": np.full(n, 51.5), "lon": np.full(n, -0.1),
                     "x": np.arange(first, first + n, dtype=np.float64), "y": np.zeros(n),
                     "accuracy_m": np.full(n, 5.0), "battery_pct": np.full(n, 80.0)})


def _log(factory, chunks: list[tuple[int, int, list[str], list[int]]], events: list[tuple[int, int, str, int, str]]):
    """Write fix chunks (first seq, batch, devices, ts) and events (seq, batch, device, ts, kind)
    into the intake log as intake does; returns the chunks as the reader holds them."""
    out = []
    with factory() as s:
        for first, batch_id, devices, ts in chunks:
            t = _chunk(first, devices, ts)
            s.add(IntakeFixChunk(seq_first=first, seq_last=first + t.num_rows - 1, batch_id=batch_id,
                                 rows=t.num_rows, data=fixlog.encode(t)))
            out.append((first, first + t.num_rows - 1, batch_id, t))
        for seq, batch_id, device, ts, kind in events:
            s.add(IntakeEvent(seq=seq, batch_id=batch_id, row=1, device_id=device, ts_ms=ts, event=kind))
        s.commit()
    return out


#: Two batches: seqs 1-3 (batch 1) and 4-6 (batch 2), one minute apart; two events.
LOG = [(1, 1, ["D1", "D2", "D1"], [T0, T0 + 60_000, T0 + 120_000]),
       (4, 2, ["D2", "D1", "D1"], [T0 + 180_000, T0 + 240_000, T0 + 300_000])]
EVENTS = [(1, 1, "D1", T0 + 30_000, "strap_tamper"), (2, 2, "D2", T0 + 200_000, "charger_connected")]


# ---------------------------------------------------------------- the intake-log reader
def test_reader_gives_the_rows_after_a_watermark_in_arrival_order(db):
    home, factory = db
    _log(factory, LOG, EVENTS)
    reader = LogReader(home)
    with factory() as s:
        got = reader.rows(s, after=(2, 1))
        everything = reader.rows(s)
    assert got.fixes.ts_ms.tolist() == [T0 + 120_000, T0 + 180_000, T0 + 240_000, T0 + 300_000]
    assert got.fixes.device_id.to_pylist() == ["D1", "D2", "D1", "D1"]
    assert got.fixes.x.tolist() == [3.0, 4.0, 5.0, 6.0]  # seq 3 is the third row of chunk 1
    assert got.events.device_id == ["D2"] and got.events.event == ["charger_connected"]
    assert got.last == (6, 2) and got.batch == 2
    assert got.after((2, 1)) == (6, 2)
    assert len(everything.fixes) == 6 and len(everything.events) == 2


def test_reader_slices_chunks_and_stops_after_whole_chunks_at_limit(db):
    home, factory = db
    _log(factory, LOG, [])
    reader = LogReader(home)
    with factory() as s:
        sliced = reader.chunks(s, 2, 5)
        limited = reader.rows(s, limit=2)
        nothing = reader.rows(s, after=(6, 0))
    assert [(a, b, batch, t.column("x").to_pylist()) for a, b, batch, t in sliced] == [
        (3, 3, 1, [3.0]), (4, 5, 2, [4.0, 5.0])]
    assert limited.last == (3, None) and len(limited.fixes) == 3  # the whole first chunk
    assert len(nothing.fixes) == 0 and nothing.last == (None, None) and nothing.after((6, 0)) == (6, 0)


def test_reader_filters_one_device_from_an_instant_and_skips_compacted_seqs(db):
    home, factory = db
    _log(factory, LOG, EVENTS)
    reader = LogReader(home)
    reader.compacted = (3, 1)  # seqs up to 3 (and event 1) are in the store
    with factory() as s:
        got = reader.rows(s, device="D1", since_ms=T0 + 60_000)
        pending = reader.pending(s, (4, 0))
        f, e = reader.processed_rows(s, upto=(5, 2), device="D1")
    assert got.fixes.ts_ms.tolist() == [T0 + 240_000, T0 + 300_000]
    assert got.events.device_id == []
    assert pending == (2, 1)  # fixes 5 and 6; event 2 (event 1 is compacted)
    assert f.ts_ms.tolist() == [T0 + 240_000] and e.device_id == []  # no store yet: the log up to seq 5


def test_reader_uses_held_chunks_until_released(db):
    home, factory = db
    held = _log(factory, LOG, [])
    reader = LogReader(home)
    for c in held:
        reader.hold(c)
    assert reader.held_count() == 2
    with factory() as s:
        from_memory = reader.chunks(s, 0)
    assert all(got[3].equals(c[3]) for got, c in zip(from_memory, held))
    reader.release(3)
    assert reader.held_count() == 1
    reader.release(6)
    assert reader.held_count() == 0
    with factory() as s:  # decoded from the database: the same rows
        decoded = reader.chunks(s, 0)
    assert all(got[3].equals(c[3]) for got, c in zip(decoded, held))


# ---------------------------------------------------------------- the breach-queue writer
def _record(bid: str, type_: str = "battery", *, start="2024-01-10T21:00:00.000Z", end="2024-01-10T21:30:00.000Z",
            subject="S1", zone=None, duration_s=1800) -> dict:
    return {"breach_id": bid, "kind": "alert", "type": type_, "subject_id": subject, "device_id": "D1",
            "zone_id": zone, "start": start, "end": end, "duration_s": duration_s, "priority": 3}


def _row(factory, bid: str) -> BreachRow:
    with factory() as s:
        return s.get(BreachRow, bid)


def test_writer_inserts_updates_and_withdraws_with_reason_and_batch(db):
    _, factory = db
    audit, now = _Audit(), [1_000]
    writer = QueueWriter(audit, lambda: now[0])
    with factory() as s:
        assert writer.apply(s, [Change("b1", _record("b1"), None)], batches=(1, 1)) == (1, 0, 0)
        s.commit()
    row = _row(factory, "b1")
    assert (row.status, row.first_seen_ms, row.updated_ms) == ("new", 1_000, 1_000)
    assert (row.start_ms, row.end_ms) == (_ms(2024, 1, 10, 21), _ms(2024, 1, 10, 21, 30))
    assert row.duration_s == 1800.0 and row.priority == 3

    now[0] = 2_000  # the episode goes on
    longer = _record("b1", end="2024-01-10T22:00:00.000Z", duration_s=3600)
    with factory() as s:
        assert writer.apply(s, [Change("b1", longer, None)], batches=(2, 2)) == (0, 1, 0)
        s.commit()
    row = _row(factory, "b1")
    assert (row.first_seen_ms, row.updated_ms, row.end_ms, row.duration_s) == (1_000, 2_000, _ms(2024, 1, 10, 22), 3600.0)

    now[0] = 3_000  # later fixes fill the gap
    with factory() as s:
        assert writer.apply(s, [Change("b1", None, longer)], batches=(3, 5)) == (0, 0, 1)
        assert writer.apply(s, [Change("b1", None, longer)], batches=(6, 6)) == (0, 0, 0)  # already withdrawn
        s.commit()
    row = _row(factory, "b1")
    reason = "fixes received later show contact during this gap"
    assert (row.status, row.status_ms, row.withdrawn_reason, row.withdrawn_batch) == ("withdrawn", 3_000, reason, 5)
    assert audit.entries[2]["action"] == "breaches.update" and audit.entries[2]["now_ms"] == 3_000
    assert audit.entries[2]["detail"] == {"inserted": 0, "updated": 0, "withdrawn": 1, "batches": [3, 5],
                                          "withdrawals": [{"breach_id": "b1", "type": "battery", "reason": reason,
                                                           "batch": 5}]}

    now[0] = 4_000  # produced again by later data: new again
    with factory() as s:
        assert writer.apply(s, [Change("b1", longer, None)]) == (0, 1, 0)
        s.commit()
    row = _row(factory, "b1")
    assert (row.status, row.status_ms, row.withdrawn_reason, row.withdrawn_batch) == ("new", 4_000, None, None)


def test_writer_reasons_name_the_replacing_record_or_the_re_evaluation(db):
    _, factory = db
    writer = QueueWriter(_Audit(), lambda: 1)
    absence = _record("a1", "curfew_absence", zone="Z1")
    missed = _record("m1", "curfew_missed", zone="Z1", start="2024-01-10T19:00:00.000Z")
    with factory() as s:
        writer.apply(s, [Change("a1", absence, None), Change("a2", _record("a2", "exclusion_entry", zone="Z2"), None)])
        writer.apply(s, [Change("a1", None, absence), Change("m1", missed, None)])
        writer.apply(s, [Change("a2", None, None)], reason_default="recomputed after the subjects or zones changed")
        s.commit()
    assert _row(factory, "a1").withdrawn_reason == "replaced by curfew_missed breach m1 for the whole curfew window"
    assert _row(factory, "a2").withdrawn_reason == "recomputed after the subjects or zones changed"
    assert _row(factory, "a2").withdrawn_batch is None


def test_writer_with_no_changes_writes_nothing(db):
    _, factory = db
    audit = _Audit()
    with factory() as s:
        assert QueueWriter(audit, lambda: 1).apply(s, []) == (0, 0, 0)
    assert audit.entries == []


def test_one_record_to_row_mapping_for_the_stream_and_detect_db(db):
    """`tagtrail detect --db` (save_detection) and the stream write the same columns for a record,
    and a row reads back as the record it came from."""
    _, factory = db
    rec = _record("s1", "curfew_absence", zone="Z1", duration_s=90.5)
    with factory() as s:
        save_detection(s, assignments=[], zone_features=[], zones=[], records=[rec])
        QueueWriter(_Audit(), lambda: 1).apply(s, [Change("s2", {**rec, "breach_id": "s2"}, None)])
        s.commit()
    a, b = _row(factory, "s1"), _row(factory, "s2")
    fields = breach_fields(rec)
    assert {k: getattr(a, k) for k in fields} == {k: getattr(b, k) for k in fields} == fields
    assert fields["start_ms"] == _ms(2024, 1, 10, 21) and fields["duration_s"] == 90.5
    back = row_to_record(a)
    assert {k: v for k, v in back.items() if not k.startswith("_")} == rec
    assert row_to_record(b)["duration_s"] == 90.5 and row_to_record(_row(factory, "s2"))["_end_ms"] == _ms(2024, 1, 10, 21, 30)


# ---------------------------------------------------------------- compaction
def _compaction(home, factory):
    reader = LogReader(home)
    return reader, Compaction(home, factory, read_only_factory(factory), reader)


def test_compaction_moves_processed_rows_once(db):
    home, factory = db
    _log(factory, LOG, EVENTS)
    reader, comp = _compaction(home, factory)
    assert comp.move((4, 1)) == 5  # fixes 1-4 and event 1: only what was processed
    comp.trim()
    assert reader.compacted == (4, 1)
    with factory() as s:
        assert s.scalars(select(IntakeFixChunk.seq_first)).all() == [4]  # chunk 4-6 still has rows 5 and 6
        assert s.scalars(select(IntakeEvent.seq)).all() == [2]
    assert comp.move((4, 1)) == 0  # nothing new
    assert comp.move((6, 2)) == 3
    comp.trim()
    fixes, events = read_store_fixes(home), read_store_events(home)
    assert sorted(fixes.ts_ms.tolist()) == sorted(ts for _, _, _, t in LOG for ts in t)  # each row once
    assert sorted(events.ts_ms.tolist()) == [T0 + 30_000, T0 + 200_000]
    assert sorted(set(events.source.to_pylist())) == ["intake batch 1", "intake batch 2"]
    with factory() as s:
        assert s.scalars(select(IntakeFixChunk.seq_first)).all() == [] and s.scalars(select(IntakeEvent.seq)).all() == []
        assert reader.rows(s).fixes.ts_ms.size == 0


def test_compaction_resumes_after_a_crash_between_store_and_log(db):
    """Files written, the log not trimmed (a crash): the next build sees where the store
    ends, removes the log's copies, and nothing is moved twice."""
    home, factory = db
    _log(factory, LOG, EVENTS)
    _, comp = _compaction(home, factory)
    assert comp.move((6, 2)) == 8  # ... and the process dies before trim()
    reader, comp = _compaction(home, factory)  # a restart
    assert reader.compacted == (0, 0)
    with factory() as s:
        comp.resume(s)
        s.commit()
    assert reader.compacted == (6, 2)
    with factory() as s:
        assert s.scalars(select(IntakeFixChunk.seq_first)).all() == [] and s.scalars(select(IntakeEvent.seq)).all() == []
    assert comp.move((6, 2)) == 0
    assert len(read_store_fixes(home)) == 6 and len(read_store_events(home)) == 2


def test_compaction_is_due_on_a_large_backlog_or_after_its_interval(db):
    home, factory = db
    _, comp = _compaction(home, factory)
    comp.every_s = 60.0
    assert not comp.due((0, 0))
    assert not comp.due((10, 0))  # a small backlog, just compacted
    assert comp.due((200_001, 0))
    comp.last_run -= 61
    assert comp.due((10, 0)) and not comp.due((0, 0))


# ---------------------------------------------------------------- the detector state
def test_thin_cuts_keeps_the_oldest_and_the_latest():
    cuts = list(range(0, 1000, 10))
    thin = thin_cuts(cuts, keep=24)
    assert len(thin) == 24 and thin[0] == 0 and thin[-1] == 990 and thin == sorted(thin)
    assert set(thin) <= set(cuts)
    assert thin_cuts([5, 7], keep=24) == [5, 7] and thin_cuts([]) == []


def test_config_digest_changes_with_what_detection_depends_on():
    a = Assignment("S1", "D1", T0, None, ("Z1",))
    base = config_digest([a], [("Z1", "{}")], "")
    assert config_digest([a], [("Z1", "{}")], "") == base
    assert config_digest([Assignment("S1", "D1", T0, T0 + DAY_MS, ("Z1",))], [("Z1", "{}")], "") != base
    assert config_digest([a], [("Z1", '{"r": 2}')], "") != base
    assert config_digest([a], [("Z1", "{}")], '{"max_gap_s": 600}') != base


def _store(home, factory, audit=None):
    reader = LogReader(home)
    ro = read_only_factory(factory)
    resumed = []
    state = DetectorStore(home, reader, QueueWriter(audit or _Audit(), lambda: 1), ro, resume=resumed.append,
                          retention_ms=3_600_000, checkpoint_s=0.0)
    return state, resumed


def test_detector_state_saves_progress_and_a_restart_resumes_from_it(db):
    home, factory = db
    state, resumed = _store(home, factory)
    with factory() as s:
        state.configure(s)
    assert state.detector is not None and len(resumed) == 1 and state.config_version == 0
    assert state.is_current(0, "") and not state.is_current(1, "")
    with factory() as s:
        state.save_progress(s, (6, 2))
        s.commit()
    with factory() as s:
        assert DetectorStore.get(s, "watermark") == [6, 2] and DetectorStore.get(s, "cuts") == {}
        assert DetectorStore.get(s, "missing", "default") == "default"
    again, _ = _store(home, factory)
    with factory() as s:
        again.configure(s)
    assert again.watermark == (6, 2) and again.config == state.config


def test_detector_state_failed_configure_drops_the_detector_and_unbinds_history(db, monkeypatch):
    """A configuration that fails is not recorded (the next pass tries again), the
    detector is dropped, and a later history read opens its own session."""
    import api.service.stream.detector_state as ds

    home, factory = db
    _log(factory, LOG, EVENTS)
    state, _ = _store(home, factory)
    with factory() as s:
        state.configure(s)
        state.save_progress(s, (6, 2))
        s.commit()
    state.watermark = (6, 2)
    with factory() as s:
        bump_config_version(s)
        s.commit()

    def fail(session, subject_id=None):
        raise RuntimeError("assignments unreadable")

    monkeypatch.setattr(ds, "load_assignments", fail)
    with factory() as s, pytest.raises(RuntimeError, match="assignments unreadable"):
        state.configure(s)
    assert state.detector is None and state.config_version == 0 and not state.is_current(1, "")
    f, e = state.history(Assignment("S1", "D1", T0, None, ()))
    assert f.ts_ms.tolist() == [T0, T0 + 120_000, T0 + 240_000, T0 + 300_000] and e.device_id == ["D1"]
    with factory() as s:  # nothing holds the write lock: a writer goes straight in
        DetectorStore.put(s, "probe", 1)
        s.commit()


# ---------------------------------------------------------------- the runner
def test_runner_runs_passes_until_one_finds_nothing_then_housekeeping():
    found = [True, True, False]
    passes, chores = [], []

    def run_pass() -> bool:
        passes.append(1)
        return found.pop(0) if found else False

    runner = Runner(run_pass, lambda: chores.append(1), min_pass_s=0.0)
    runner.start()
    try:
        runner.notify()
        assert runner.wait_idle(10)
        deadline = time.monotonic() + 10
        while not chores and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(passes) >= 3 and chores and runner.last_error is None and runner.running
    finally:
        assert runner.stop() is True
    assert not runner.running and runner.stop() is False


def test_runner_keeps_the_error_and_retries_at_the_next_wake_up():
    outcomes = [RuntimeError("pass failed"), False]
    done = threading.Event()

    def run_pass() -> bool:
        out = outcomes.pop(0) if outcomes else False
        if isinstance(out, Exception):
            raise out
        done.set()
        return out

    runner = Runner(run_pass, lambda: None, min_pass_s=0.0)
    runner.start()
    try:
        runner.notify()
        deadline = time.monotonic() + 10
        while runner.last_error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runner.last_error == "RuntimeError: pass failed"
        runner.notify()
        assert done.wait(10)
        deadline = time.monotonic() + 10
        while runner.last_error is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runner.last_error is None
    finally:
        runner.stop()


# ---------------------------------------------------------------- intake's side
def test_intake_link_indexes_accepted_keys_and_loads_a_day_from_the_log(db):
    home, factory = db
    held = _log(factory, LOG, EVENTS)
    reader = LogReader(home)
    link = IntakeLink(home, reader)
    with factory() as s:
        load = link.day_loader(s)
        devices, ts = load(T0 // DAY_MS)
        other_day = load(T0 // DAY_MS + 1)
        ctx = link.context(s)
        assert link.context(s).assignments is ctx.assignments  # cached while nothing changed
        bump_config_version(s)
        s.flush()
        assert link.context(s).assignments is not ctx.assignments
    assert sorted(zip(devices.to_pylist(), ts.tolist())) == sorted(
        (d, t) for _, _, _, tab in held for d, t in zip(tab.column("device_id").to_pylist(), tab.column("ts_ms").to_pylist()))
    assert other_day[1].size == 0
    assert ctx.keys is link.keys and ctx.max_ahead_ms == 300_000
    # events accepted before the index existed were loaded: the same event again is not first
    assert link.keys.first_events(["D1"], [T0 + 30_000], ["strap_tamper"]).tolist() == [False]
    # what intake hands over after its commit: keys indexed, the chunk held for the pass
    chunk = (7, 7, 3, _chunk(7, ["D9"], [T0]))
    link.accepted({"fixes": (pa.array(["D9"]), np.array([T0])), "events": ([], [], []), "fix_log": chunk})
    assert link.keys.first_copies(pa.array(["D9", "D9"]), np.array([T0, T0 + 1])).tolist() == [False, True]
    assert reader.held_count() == 1


@pytest.mark.parametrize("took, min_pass, ratio, expected", [
    (0.05, 0.2, 1.0, 0.15),  # a quick pass: min_pass_s sets the pace
    (0.3, 0.2, 1.0, 0.3),  # a longer pass: as long again for intake
    (0.3, 0.2, 2.0, 0.6),  # the default ratio: twice as long
    (0.5, 0.2, 2.0, 0.5),  # cut by the latency budget: 1.5 - 2 * 0.5
    (0.8, 0.2, 2.0, 0.0),  # passes this long: back to back, latency first
    (0.3, 0.2, 0.0, 0.0),  # no rest: back to back once past min_pass_s
    (0.0, 0.0, 1.0, 0.0),
], ids=["quick", "longer", "default-ratio", "budget-cut", "over-budget", "no-rest", "instant"])
def test_runner_pause_after_a_pass(took, min_pass, ratio, expected):
    assert pause_after(took, min_pass_s=min_pass, rest_ratio=ratio, latency_budget_s=1.5) == pytest.approx(expected)


def test_runner_refuses_a_negative_rest():
    with pytest.raises(ValueError, match="rest_ratio"):
        Runner(lambda: False, lambda: None, rest_ratio=-1.0)


def test_pass_threads_are_limited_in_the_calling_thread_only():
    import numba

    from trails.jit import limit_threads_here

    before = numba.get_num_threads()
    seen = []

    def worker():
        limit_threads_here(1)
        seen.append(numba.get_num_threads())

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    assert seen == [1] and numba.get_num_threads() == before
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="n_threads"):
            limit_threads_here(bad)
