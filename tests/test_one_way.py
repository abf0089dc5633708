"""One implementation of each idea (issue 11): one timestamp formatter, one
first-arrival deduplication, one decision of quarantine reasons 8-10, shared
constants defined once, settings through pydantic-settings, the store lock
through filelock, and readers that take the file's bytes.

Expected values are worked out by hand from CONTRACT.md ("Time",
"Quarantine") and the rules written in the modules' docstrings; the twins here
are plain Python."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trails.errors import InputError
from trails.quarantine import OK, REASON_CODE

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO.parent / "shared" / "contract" / "examples"
QR = EXAMPLES / "quarantine_rows"


# --------------------------------------------------------------------------- timestamps
def test_ingest_duplicates_keep_their_raw_text_in_the_quarantine(tmp_path):
    """Regression (issue 11): a ``duplicate`` row's quarantine record held its instant
    re-written to the second ("2024-03-04T09:00:00Z") and its device id trimmed; like
    every other reason it now holds the fields as the file wrote them."""
    from trails.ingest import ingest
    from trails.store import read_store_quarantine

    fixes = tmp_path / "fixes.csv"
    fixes.write_text("device_id,ts,lat,lon\n"
                     "D1,2024-03-04T10:00:00.250+01:00,51.5,-0.1\n"  # 09:00:00.250Z: kept
                     " D1 ,2024-03-04 09:00:00.2509Z,51.5,-0.1\n"  # same device, same ms (floored): duplicate
                     "D1,2024-03-04T09:00:01Z,51.5,-0.1\n")  # kept
    events = tmp_path / "events.csv"
    events.write_text("device_id,ts,event\n"
                      "D1,2024-03-04T09:00:00.1+00:00,strap_tamper\n"
                      "D1,2024-03-04t09:00:00.100z,strap_tamper\n")  # same instant and kind: duplicate
    s = ingest(fixes, home=tmp_path / "h", events_path=events)
    assert (s.fixes_stored, s.events_stored, s.quarantined) == (2, 1, {"duplicate": 2})
    again = tmp_path / "again.csv"
    again.write_text("device_id,ts,lat,lon\nD1,2024-03-04T09:00:01.000000+00:00,51.5,-0.1\n")  # a stored fix
    assert ingest(again, home=tmp_path / "h").quarantined == {"duplicate": 1}
    q = read_store_quarantine(tmp_path / "h").to_pylist()
    got = sorted((r["source_file"], r["source"], r["row"], r["reason"], r["device_id"], r["ts"]) for r in q)
    assert got == [
        ("again.csv", "fixes", 1, "duplicate", "D1", "2024-03-04T09:00:01.000000+00:00"),
        ("events.csv", "events", 2, "duplicate", "D1", "2024-03-04t09:00:00.100z"),
        ("fixes.csv", "fixes", 2, "duplicate", " D1 ", "2024-03-04 09:00:00.2509Z"),
    ]


#: (epoch ms, text) worked out by hand: days from 1970-01-01 times 86,400,000 plus the time of day.
KNOWN = [
    (0, "1970-01-01T00:00:00.000Z"),
    (-1, "1969-12-31T23:59:59.999Z"),
    (951_782_400_000 + 86_399_999, "2000-02-29T23:59:59.999Z"),  # 11,016 days: a leap day
    (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),  # MIN_MS
    (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),  # MAX_MS
    (1_709_510_400_000 + 3_600_000 + 61_001, "2024-03-04T01:01:01.001Z"),
]


def test_one_formatter_scalar_array_and_column_agree_with_hand_worked_values():
    from trails.timestamps import format_ms, format_ms_array, format_ms_column

    ms = [m for m, _ in KNOWN]
    want = [t for _, t in KNOWN]
    assert [format_ms(m) for m in ms] == want
    assert format_ms_array(ms) == want  # a span of years: the table of days that occur
    assert format_ms_column(np.array(ms, np.int64)).to_pylist() == want
    near = np.array([0, -1, 86_400_000, 86_399_999], np.int64)  # a short span: the table of every day
    assert format_ms_array(near) == ["1970-01-01T00:00:00.000Z", "1969-12-31T23:59:59.999Z",
                                     "1970-01-02T00:00:00.000Z", "1970-01-01T23:59:59.999Z"]
    assert format_ms_array([]) == [] and format_ms_column(np.zeros(0, np.int64)).type == pa.string()


def test_the_array_formatter_refuses_a_sentinel_naming_it():
    from trails.timestamps import POS_INF_MS, format_ms_array

    with pytest.raises(ValueError, match=rf"^epoch ms {POS_INF_MS} lies outside years 0000 \.\. 9999: not an instant to format$"):
        format_ms_array([0, POS_INF_MS])


def _package_sources():
    for pkg in ("trails", "geofence", "api"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), path.read_text(encoding="utf-8")


def test_epoch_ms_is_formatted_only_by_trails_timestamps():
    """No package module formats instants itself (strftime, datetime_as_string, isoformat)."""
    pattern = re.compile(r"\b(strftime|datetime_as_string|isoformat)\(")
    found = [(name, n) for name, text in _package_sources() if name != "trails/timestamps.py"
             for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_day_and_sentinel_constants_are_defined_once():
    """DAY_MS and the +-2**62 sentinels are written only in trails/timestamps.py."""
    pattern = re.compile(r"86_?400_?000\b|2 ?\*\* ?62\b|1 ?<< ?62\b")
    found = [(name, n, line.strip()) for name, text in _package_sources()
             if name != "trails/timestamps.py"
             for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_store_crs_has_one_home():
    import api.access.extracts as extracts
    import api.service.intake as intake
    import trails.ingest as ingest_module
    from trails.store import STORE_CRS

    assert STORE_CRS == "EPSG:27700"
    assert ingest_module.STORE_CRS is STORE_CRS and intake.STORE_CRS is STORE_CRS and extracts.STORE_CRS is STORE_CRS


# --------------------------------------------------------------------------- first arrival
def _first_arrival_twin(batches, stored=()):
    """Per batch, True for each key not seen before (stored, earlier batches, earlier in the batch)."""
    seen = set(stored)
    out = []
    for batch in batches:
        out.append([k not in seen and not seen.add(k) for k in batch])
    return out


@pytest.mark.parametrize("seed", range(6))
def test_key_set_is_first_arrival_with_or_without_the_callers_order(seed):
    """Many batches over a few days (runs merge as they grow), stored keys loaded per day,
    and the ingest path (the caller's order: day, device, time) giving the same answer."""
    from trails.keys import KeySet
    from trails.store import device_order, sort_order
    from trails.timestamps import DAY_MS

    rng = np.random.default_rng(seed)
    base = 1_709_510_400_000
    devices = [f"D{i}" for i in range(7)] + ["é-9", ""]

    def batch(n):
        return [(devices[int(d)], base + int(t)) for d, t in
                zip(rng.integers(0, len(devices), n), rng.integers(-DAY_MS, 3 * DAY_MS, n) // 250 * 250)]

    stored = batch(300)
    by_day: dict[int, list] = {}
    for d, t in stored:
        by_day.setdefault(t // DAY_MS, []).append((d, t))
    loader = lambda day: ([d for d, _ in by_day.get(day, [])], np.array([t for _, t in by_day.get(day, [])], np.int64))  # noqa: E731
    batches = [batch(int(rng.integers(0, 400))) for _ in range(12)]
    want = _first_arrival_twin(batches, stored)
    plain, ordered = KeySet(loader), KeySet(loader)
    for b, w in zip(batches, want):
        names = pa.array([d for d, _ in b], pa.string())
        ts = np.array([t for _, t in b], np.int64)
        mask = np.array(w, bool)
        assert plain.first(names, ts).tolist() == w
        plain.add(names.filter(pa.array(mask)), ts[mask])
        day, key = ordered.keys(names, ts)
        first = ordered.first_keys(day, key, order=sort_order(device_order(names), ts, day=ts // DAY_MS))
        assert first.tolist() == w
        ordered.add_keys(day[first], key[first])


def test_key_index_events_are_keyed_by_device_instant_and_kind():
    from trails.keys import KeyIndex

    index = KeyIndex()
    index.load_events([("D1", 1000, "strap_tamper")])
    got = index.first_events(["D1", "D1", "D1", "D2", "D1"], [1000, 1000, 2000, 1000, 1000],
                             ["strap_tamper", "power_on", "strap_tamper", "strap_tamper", "power_on"])
    assert got.tolist() == [False, True, True, True, False]
    index.add_events(["D1"], [1000], ["power_on"])
    assert index.first_events(["D1"], [1000], ["power_on"]).tolist() == [False]


# --------------------------------------------------------------------------- reasons 8-10
def _events_twin(dev, ts, kind, n_dev, a_dev, a_start, a_end, as_of):
    """CONTRACT.md "Quarantine" 8-10 for events, row by row in (device, ts, row) order."""
    reason, kept = [None] * len(ts), set()
    for i in sorted(range(len(ts)), key=lambda i: (dev[i] if 0 <= dev[i] < n_dev else n_dev, ts[i], i)):
        d, t = dev[i], ts[i]
        if as_of is not None and t > as_of:
            reason[i] = REASON_CODE["after_as_of"]
        elif not (0 <= d < n_dev) or not any(a_dev[a] == d and a_start[a] <= t < a_end[a] for a in range(len(a_dev))):
            reason[i] = REASON_CODE["unassigned"]
        elif (d, t, kind[i]) in kept:
            reason[i] = REASON_CODE["duplicate"]
        else:
            reason[i] = OK
            kept.add((d, t, kind[i]))
    return reason


@pytest.mark.parametrize("seed", range(8))
def test_events_take_reasons_8_to_10_from_the_layout_kernel(seed):
    """Events: same instant and same kind is a duplicate, same instant and another kind is not."""
    from geofence.layout import lay_out_fixes

    rng = np.random.default_rng(seed)
    n_dev, n = int(rng.integers(1, 4)), int(rng.integers(0, 120))
    dev = rng.integers(-1, n_dev + 1, n)
    ts = 1_700_000_000_000 + rng.integers(0, 8, n) * 60_000  # few instants: many repeats
    kind = rng.integers(0, 3, n)
    a_dev = np.arange(n_dev, dtype=np.int64)
    a_start = np.full(n_dev, 1_700_000_000_000 + 60_000, np.int64)
    a_end = np.full(n_dev, 1_700_000_000_000 + 6 * 60_000, np.int64)
    as_of = 1_700_000_000_000 + 5 * 60_000 if seed % 2 else None
    lay = lay_out_fixes(dev, ts, n_dev, a_dev, a_start, a_end, as_of_ms=as_of, extra_key=kind)
    assert lay.reason.tolist() == _events_twin(dev.tolist(), ts.tolist(), kind.tolist(), n_dev, a_dev, a_start,
                                               a_end, as_of)


def test_assign_rows_and_first_rows_by_hand():
    from geofence.layout import assign_rows, first_rows

    # device 0 worn by assignment 1 in [10, 20) and by assignment 0 from 20 on; device 1 by nobody
    owner = assign_rows(np.array([0, 0, 0, 1, -1, 0]), np.array([25, 10, 9, 15, 15, 25]), 2,
                        np.array([0, 0]), np.array([20, 10]), np.array([2**40, 20]))
    assert owner.tolist() == [0, 1, -1, -1, -1, 0]  # the repeat at 25 still has its owner
    first = first_rows(np.array([1, 0, 1, 1, 0]), np.array([5, 5, 5, 5, 6]), 2, extra_key=np.array([0, 0, 1, 0, 0]))
    assert first.tolist() == [True, True, True, False, True]


# --------------------------------------------------------------------------- settings
def _settings(tmp_path, doc):
    from api.settings import Settings

    (tmp_path / "settings.json").write_text(json.dumps(doc))
    return Settings.from_home(tmp_path)


def test_settings_refuse_max_period_days_that_is_not_an_object(tmp_path):
    """Regression: a list here raised AttributeError (a crash), not a refusal naming the key."""
    with pytest.raises(InputError) as exc:
        _settings(tmp_path, {"max_period_days": [7]})
    assert str(exc.value) == (f"{tmp_path / 'settings.json'}: max_period_days must be an object of grounds and "
                              f"days, got [7]")


@pytest.mark.parametrize("doc,message", [
    ({"home": "/elsewhere"}, "unknown keys ['home']"),
    ({"database_url": "sqlite://", "approval_ttl": 5}, "unknown keys ['approval_ttl', 'database_url']"),
    ({"guidance_version": 2}, "guidance_version must be non-empty text, got 2"),
    ({"approval_ttl_s": 0, "audit_checkpoint_s": "10"},
     "approval_ttl_s must be a positive whole number of seconds; audit_checkpoint_s must be seconds >= 0, got '10'"),
    ({"max_period_days": {"curfew": 3}}, "max_period_days['curfew'] must be a known ground with a positive whole "
                                         "number of days"),
], ids=["home", "url-and-typo", "guidance", "two-bad", "ground"])
def test_settings_refuse_bad_keys_naming_each(tmp_path, doc, message):
    with pytest.raises(InputError) as exc:
        _settings(tmp_path, doc)
    assert str(exc.value) == f"{tmp_path / 'settings.json'}: {message}"


def test_settings_sources_arguments_then_environment_then_file(tmp_path, monkeypatch):
    from api.settings import Settings

    monkeypatch.setenv("TAGTRAIL_DATABASE_URL", "sqlite:////srv/env.db")
    monkeypatch.setenv("TAGTRAIL_APPROVAL_TTL_S", "5")  # a policy choice is never taken from the environment
    monkeypatch.setenv("TAGTRAIL_HOME", str(tmp_path))
    s = _settings(tmp_path, {"max_period_days": {"absconded": 21}, "audit_checkpoint_s": 0})
    assert (s.home, s.database_url, s.approval_ttl_s, s.audit_checkpoint_s) == (tmp_path, "sqlite:////srv/env.db", 604800, 0.0)
    assert s.max_period_days == {"bail_breach": 7, "absconded": 21, "article8": 90, "breach_allegation": 14,
                                 "sar_or_legal": 365}
    assert Settings.from_home().home == tmp_path  # no home given: $TAGTRAIL_HOME
    assert Settings.from_home(tmp_path, database_url="postgresql://db/x").database_url == "postgresql://db/x"
    monkeypatch.delenv("TAGTRAIL_DATABASE_URL")
    assert Settings.from_home(tmp_path).database_url == f"sqlite:///{(tmp_path / 'tagtrail.db').resolve()}"
    with pytest.raises(Exception, match="frozen"):
        s.approval_ttl_s = 1


# --------------------------------------------------------------------------- store lock
_HOLD = """
import sys, time
from trails.store import StoreLock
lock = StoreLock(sys.argv[1], "ingest").acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_store_lock_goes_with_a_killed_holder(tmp_path):
    from trails.store import StoreLock

    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert StoreLock.holder(tmp_path) == ("ingest", holder.pid)
        with pytest.raises(InputError) as exc:
            StoreLock(tmp_path, "service").acquire()
        assert str(exc.value) == (f"an ingest is running on {str(tmp_path)!r} (pid {holder.pid}): "
                                  f"start the service when the ingest has finished")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert StoreLock.holder(tmp_path) is None  # its line is stale: the process is gone
    with StoreLock(tmp_path, "service"):
        assert StoreLock.holder(tmp_path) == ("service", os.getpid())
    assert (tmp_path / "store.lock").read_text() == "" and (tmp_path / "store.lock").stat().st_mode & 0o777 == 0o600


def test_store_lock_taken_in_one_thread_released_in_another_and_never_shared(tmp_path):
    from trails.store import StoreLock

    lock = StoreLock(tmp_path, "service")
    start = threading.Thread(target=lock.acquire)  # the service's start thread
    start.start()
    start.join()
    with pytest.raises(InputError, match=re.escape(f"a tagtrail service is running on {str(tmp_path)!r} (pid {os.getpid()})")):
        StoreLock(tmp_path, "writer").acquire()  # another holder in the same process
    done = threading.Thread(target=lock.release)
    done.start()
    done.join()
    assert StoreLock.held_here(tmp_path) is None
    with StoreLock(tmp_path, "writer"):
        pass


# --------------------------------------------------------------------------- readers
def test_readers_take_bytes_and_file_objects_like_files(tmp_path):
    from trails.readers import read_events, read_fixes

    path = QR / "fixes.csv"
    want, want_rej = read_fixes(path)
    for source in (path.read_bytes(), io.BytesIO(path.read_bytes()), _Unseekable(path.read_bytes())):
        got, rej = read_fixes(source, fmt="csv")
        assert got.row.tolist() == want.row.tolist() and got.ts_ms.tolist() == want.ts_ms.tolist()
        assert rej.reason_names() == want_rej.reason_names()
    t = pa.table({"device_id": ["D1"], "ts": ["2024-03-04T09:00:00Z"], "event": ["strap_tamper"]})
    buf = io.BytesIO()
    pq.write_table(t, buf)
    events, _ = read_events(buf.getvalue(), fmt="parquet")
    assert events.ts_ms.tolist() == [1_709_542_800_000]


class _Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b) -> int:
        return self._data.readinto(b)


@pytest.mark.parametrize("body,message", [
    (b"device_id,lat,lon\nD1,51,0\n", "missing required column 'ts'; the header holds ['device_id', 'lat', 'lon']"),
    (b"device_id,ts,lat,lon,extra\nD1,2024-03-04T09:00:00Z,51,0,\xff\n", "unreadable: not valid UTF-8"),
    (b"", "unreadable: no header row"),
], ids=["no-ts", "not-utf8", "empty"])
def test_a_csv_body_is_read_in_memory_with_the_file_messages(tmp_path, monkeypatch, body, message):
    import tempfile

    from api.service.intake import BatchError, parse_csv_body

    def no_temporary_files(*args, **kwargs):
        raise AssertionError("a body must not be written to a temporary file")

    monkeypatch.setattr(tempfile, "mkstemp", no_temporary_files)
    with pytest.raises(BatchError) as exc:
        parse_csv_body(body, "fixes", tmp_path / "tmp")
    assert str(exc.value) == f"fixes file (body): {message}"
    t = parse_csv_body(b"device_id,ts,lat,lon\nD1,2024-03-04T09:00:00Z,51,0\n", "fixes", tmp_path / "tmp")
    assert t.column("device_id").to_pylist() == ["D1"] and not (tmp_path / "tmp").exists()


def test_a_source_that_is_not_a_path_needs_its_format():
    from trails.readers import read_fixes

    with pytest.raises(ValueError, match=r"^fixes source \(body\): fmt must be 'csv' or 'parquet' when it is not a path, got None$"):
        read_fixes(b"device_id,ts,lat,lon\n")
