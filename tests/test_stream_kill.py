"""Faults: a real `tagtrail serve` is killed (SIGKILL) while batches arrive and
detection runs. After a restart, and the client resending what it got no
answer for, no acknowledged row is lost, no row is stored twice, and the
breach queue equals batch detection on the rows in the order they arrived."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from api.cli.main import main
from test_incremental import batch
from trails.timestamps import format_ms

BIN = Path(sys.executable).parent


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(home: Path, port: int) -> subprocess.Popen:
    p = subprocess.Popen([str(BIN / "tagtrail"), "serve", "--home", str(home), "--port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.1)
    p.kill()
    raise AssertionError("server did not start")


def _wait_caught_up(port: int, token: str) -> None:
    for _ in range(600):
        st = httpx.get(f"http://127.0.0.1:{port}/v1/breaches/stream-status",
                       headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
        assert st["last_error"] is None, st
        if st["pending_fixes"] == 0 and st["pending_events"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("detection did not catch up")


def test_kill_mid_stream_loses_and_doubles_nothing(tmp_path):
    from trails.sim.simulate import simulate

    sim = tmp_path / "sim"
    simulate(sim, wearers=6, days=2, seed=11, start="2024-03-09")  # spans the spring clock change
    home = tmp_path / "home"
    assert main(["subjects", "load", "--home", str(home), str(sim / "subjects.json"), str(sim / "zones.geojson")]) == 0
    tok = subprocess.run([str(BIN / "tagtrail"), "users", "add", "--home", str(home), "--name", "feed-1", "--role", "feed"],
                         capture_output=True, text=True, check=True).stdout.strip()
    import pyarrow.csv as pacsv

    t = pacsv.read_csv(sim / "fixes.csv").to_pylist()
    rng = np.random.default_rng(3)
    rows = [t[i] for i in np.argsort([r["ts"].timestamp() for r in t], kind="stable")]  # time order, roughly live
    for k in rng.choice(len(rows), size=len(rows) // 20, replace=False):  # 5% come late
        j = min(len(rows) - 1, int(k) + int(rng.integers(10, 400)))
        rows[k], rows[j] = rows[j], rows[k]
    fixes = [{"device_id": r["device_id"], "ts": format_ms(int(r["ts"].timestamp() * 1000)), "lat": r["lat"],
              "lon": r["lon"], "accuracy_m": r.get("accuracy_m"), "battery_pct": r.get("battery_pct")} for r in rows]
    batches = [fixes[i:i + 250] for i in range(0, len(fixes), 250)]
    port = _free_port()
    server = _start(home, port)
    acked: list[int] = []
    unanswered: list[int] = []
    h = {"Authorization": f"Bearer {tok}"}

    def client(first: int, stop_on_error: bool) -> None:
        for b in range(first, len(batches)):
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/v1/fixes", json={"fixes": batches[b]}, headers=h, timeout=30)
                assert r.status_code == 200, r.text
                acked.append(b)
            except httpx.HTTPError:
                unanswered.append(b)
                if stop_on_error:
                    return

    th = threading.Thread(target=client, args=(0, True))
    th.start()
    time.sleep(float(rng.uniform(1.0, 3.0)))
    os.killpg(server.pid, signal.SIGKILL)  # no shutdown: mid-request, mid-pass
    server.wait()
    th.join()
    assert acked and unanswered, "the kill should land in the middle of the stream"
    server = _start(home, port)
    try:
        resend = unanswered[0]
        client(resend, False)  # the client resends what got no answer, then carries on
        assert not unanswered[1:], "the restarted server answered everything"
        _wait_caught_up(port, tok)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    sent = [f for b in acked for f in batches[b]]  # in the order the server took them
    # nothing lost, nothing twice: every row sent is in the intake log or the store exactly once
    import sqlite3

    from trails.store import read_store_fixes

    con = sqlite3.connect(home / "tagtrail.db")
    from api.db.fixlog import decode

    chunks = con.execute("SELECT seq_first, seq_last, rows, data FROM intake_fix_chunks ORDER BY seq_first").fetchall()
    assert all(last - first + 1 == n == decode(d).num_rows for first, last, n, d in chunks)
    assert all(b[0] > a[1] for a, b in zip(chunks, chunks[1:])), "chunks' seqs overlap"
    logged = [k for *_, d in chunks for k in zip(decode(d).column("device_id").to_pylist(),
                                                 decode(d).column("ts_ms").to_pylist())]
    sf = read_store_fixes(home)
    keys = logged + list(zip(sf.device_id.to_pylist(), sf.ts_ms.tolist()))
    assert len(keys) == len(set(keys)) == len({(f["device_id"], f["ts"]) for f in fixes})
    breaches = con.execute("SELECT breach_id, kind, type, subject_id, device_id, zone_id, start, \"end\", duration_s, "
                           "priority FROM breaches WHERE status != 'withdrawn'").fetchall()
    con.close()
    from geofence.records import sort_records
    from geofence.subjects import load_subjects
    from geofence.zones import load_zones
    from trails.timestamps import parse_timestamp

    zones = load_zones(sim / "zones.geojson")
    assignments = load_subjects(sim / "subjects.json", {z.zone_id for z in zones})
    from geofence.model import Policy

    rows_in_order = [{"device_id": f["device_id"], "ts_ms": parse_timestamp(f["ts"]), "lat": f["lat"], "lon": f["lon"],
                      "accuracy_m": f["accuracy_m"], "battery_pct": f["battery_pct"]} for f in sent]
    want = batch(rows_in_order, [], assignments, zones, Policy())
    got = sort_records([{"breach_id": b[0], "kind": b[1], "type": b[2], "subject_id": b[3], "device_id": b[4],
                         "zone_id": b[5], "start": b[6], "end": b[7],
                         "duration_s": int(b[8]) if float(b[8]).is_integer() else b[8], "priority": b[9]}
                        for b in breaches])
    assert got == want
