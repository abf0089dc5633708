"""Faults: a real `tagtrail serve` is killed (SIGKILL) while batches arrive and
detection runs. After a restart, and the client resending what it got no
answer for, no acknowledged row is lost, no row is stored twice, and the
breach queue equals batch detection on the rows in the order they arrived.

The kill is placed by the client, not by a timer: right after a fixed number
of acknowledged batches, one batch taken whose answer is lost, and the next
batch half sent, so the same thing is tested on a fast machine and a slow one."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
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


#: Batches acknowledged before the kill; batch KILL_AFTER is taken but its answer is lost, and
#: batch KILL_AFTER + 1 is half sent when the server dies.
KILL_AFTER = 20
BATCH_ROWS = 250


def _half_sent(port: int, token: str, rows: list[dict]) -> socket.socket:
    """A POST /v1/fixes whose headers and first half of the body are on the wire (no more)."""
    body = json.dumps({"fixes": rows}).encode()
    head = (f"POST /v1/fixes HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head + body[:len(body) // 2])
    return sock


def _no_answer(sock: socket.socket) -> bool:
    """True when the connection ends without a byte of response."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    finally:
        sock.close()


def test_kill_mid_stream_loses_and_doubles_nothing(tmp_path):
    """The kill lands at the same point every run: after the KILL_AFTER-th acknowledged batch,
    after the server has taken one more batch whose answer the client never sees, and while the
    next batch is half received (detection passes run in the background, so one may be under way)."""
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
    # every row is valid, assigned, in the past and unique: each batch is accepted whole the first time
    assert len({(f["device_id"], f["ts"]) for f in fixes}) == len(fixes)
    batches = [fixes[i:i + BATCH_ROWS] for i in range(0, len(fixes), BATCH_ROWS)]
    assert len(batches) > KILL_AFTER + 3
    port = _free_port()
    h = {"Authorization": f"Bearer {tok}"}

    def post(b: int) -> dict:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/fixes", json={"fixes": batches[b]}, headers=h, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["fixes"]

    def fresh(b: int) -> dict:
        return {"received": len(batches[b]), "accepted": len(batches[b]), "quarantined": {}}

    server = _start(home, port)
    for b in range(KILL_AFTER):
        assert post(b) == fresh(b), b
    assert post(KILL_AFTER) == fresh(KILL_AFTER)  # durable; the answer is lost on its way back
    sock = _half_sent(port, tok, batches[KILL_AFTER + 1])
    os.killpg(server.pid, signal.SIGKILL)  # no shutdown: mid-request
    server.wait()
    assert _no_answer(sock), "the half-sent batch got an answer"
    server = _start(home, port)
    try:
        # the client resends what it got no answer for, then carries on
        assert post(KILL_AFTER) == {"received": len(batches[KILL_AFTER]), "accepted": 0,
                                    "quarantined": {"duplicate": len(batches[KILL_AFTER])}}
        for b in range(KILL_AFTER + 1, len(batches)):
            assert post(b) == fresh(b), b  # the half-sent batch left nothing behind
        _wait_caught_up(port, tok)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    sent = fixes  # the order the server first took them: batches 0, 1, ... (the resend added nothing)
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
