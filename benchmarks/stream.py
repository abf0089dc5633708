"""Continuous intake benchmark: a real `tagtrail serve` fed a national caseload.

The population is `benchmarks/_work/sim_national` (20,000 wearers, one day,
built by benchmarks/detect.py or here); its fixes are replayed in time order
as a supplier would send them, over HTTP from this process, with the server in
its own process (both on the same 2 cores). Latency of a batch is from the
moment its POST is sent to the moment the server reports (GET
/v1/breaches/stream-status, polled every 20 ms) that detection has committed
it, which is when any breach it causes is visible in the queue.

Scenarios, each measured in one run and written to RESULTS.md (## Stream):

- real time, 333 fixes/s (20,000 tags at one fix a minute), in batches of
  5,000 devices and of 10 devices;
- offered rates in steps (10,000 to 50,000 fixes/s, batches of 5,000 rows):
  the maximum sustained rate is the highest step that detection keeps up
  with (detected >= 95% of offered) with p99 latency under 2 s;
- as fast as the server takes it, in batches of 5,000 rows from one sender
  that waits for each reply (a closed loop: intake and detection then share
  the two cores with the client).

Paced scenarios send each batch at its due time, from `SENDERS` threads;
latency counts from the due time, so a batch held back behind a slow reply
shows as latency, never as a lower offered rate.

    .venv/bin/python benchmarks/stream.py [--seconds 40] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"
TAGTRAIL = str(REPO / ".venv" / "bin" / "tagtrail")
sys.path.insert(0, str(HERE))

from results import cpu_model, write_section  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bodies(fixes, n_per_batch: int, limit: int) -> list[tuple[bytes, int]]:
    """JSON bodies of `n_per_batch` fixes (in time order) and their row counts."""
    from trails.timestamps import format_ms_array

    n = min(limit, fixes.num_rows)
    t = fixes.slice(0, n)
    dev = t.column("device_id").to_pylist()
    ts = format_ms_array(t.column("ts").cast("int64").to_numpy())
    lat, lon = t.column("lat").to_pylist(), t.column("lon").to_pylist()
    acc, bat = t.column("accuracy_m").to_pylist(), t.column("battery_pct").to_pylist()
    out = []
    for a in range(0, n, n_per_batch):
        rows = [{"device_id": dev[i], "ts": ts[i], "lat": lat[i], "lon": lon[i], "accuracy_m": acc[i],
                 "battery_pct": bat[i]} for i in range(a, min(n, a + n_per_batch))]
        out.append((json.dumps({"fixes": rows}).encode(), len(rows)))
    return out


class Run:
    """One server process on a fresh home, with a feed user and a poller."""

    def __init__(self, home: Path, sim: Path) -> None:
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run([TAGTRAIL, "subjects", "load", "--home", str(home), str(sim / "subjects.json"),
                        str(sim / "zones.geojson")], check=True, stdout=subprocess.DEVNULL)
        self.token = subprocess.run([TAGTRAIL, "users", "add", "--home", str(home), "--name", "feed", "--role", "feed"],
                                    check=True, capture_output=True, text=True).stdout.strip()
        self.port = _port()
        self.proc = subprocess.Popen([TAGTRAIL, "serve", "--home", str(home), "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        import httpx

        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120,
                                   headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        for _ in range(600):
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                st = self.client.get("/v1/breaches/stream-status").json()
                self.seen.append((time.perf_counter(), int(st["processed_batch"])))
            except Exception:
                pass
            time.sleep(0.02)

    def post(self, body: bytes) -> int:
        r = self.client.post("/v1/fixes", content=body)
        r.raise_for_status()
        return int(r.json()["batch_id"])

    def latencies(self, sent: list[tuple[float, int]], timeout: float = 120) -> np.ndarray:
        """Seconds from each POST's send to the first poll showing its batch processed."""
        last = max(b for _, b in sent)
        t_end = time.perf_counter() + timeout
        while time.perf_counter() < t_end and (not self.seen or self.seen[-1][1] < last):
            time.sleep(0.05)
        times = np.array([t for t, _ in self.seen])
        done = np.maximum.accumulate(np.array([b for _, b in self.seen]))
        out = []
        for t0, b in sent:
            k = int(np.searchsorted(done, b, side="left"))
            out.append(times[k] - t0 if k < len(times) else np.nan)
        return np.asarray(out)

    def close(self) -> None:
        self._stop.set()
        self._poller.join(timeout=5)
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)


def scenario(sim: Path, fixes, *, label: str, batch_devices: int, rate: float | None, seconds: float) -> dict:
    """Feed `fixes` in batches at `rate` fixes/s (None: as fast as accepted) for `seconds`."""
    n_rows = int(rate * seconds) + batch_devices if rate else 1_200_000
    bodies = _bodies(fixes, batch_devices, n_rows)
    run = Run(WORK / "stream_home", sim)
    try:
        # warm-up: the first pass builds the detector (all 20,000 assignments, zones compiled)
        run.latencies([(time.perf_counter(), run.post(bodies[0][0]))])
        sent: list[tuple[float, int]] = []
        t_start = time.perf_counter()
        if rate is None:  # one sender, each batch as soon as the last was accepted
            for body, n in bodies[1:]:
                t0 = time.perf_counter()
                sent.append((t0, run.post(body)))
                if time.perf_counter() - t_start > seconds:
                    break
        else:  # batches sent at their due times, by a few senders (a slow reply does not hold the next back)
            from concurrent.futures import ThreadPoolExecutor

            def send(body, due):
                return due, run.post(body)  # latency from the due time: waiting for a free sender counts

            with ThreadPoolExecutor(SENDERS) as pool:
                futures, offered = [], 0
                for body, n in bodies[1:]:
                    due = t_start + offered / rate
                    time.sleep(max(0.0, due - time.perf_counter()))  # no spinning: the client shares the cores
                    if due - t_start > seconds:
                        break
                    futures.append(pool.submit(send, body, due))
                    offered += n
                sent = [f.result() for f in futures]
        t_sent = time.perf_counter() - t_start
        lat = run.latencies(sent)
        last = max(b for _, b in sent)
        t_done = next((t for t, b in run.seen if b >= last), time.perf_counter()) - t_start
        rows = sum(n for (_, n) in bodies[1:len(sent) + 1])
    finally:
        run.close()
    lat = lat[np.isfinite(lat)]
    return {"label": label, "batch": batch_devices, "offered": rate, "rows": rows, "sent_s": t_sent,
            "intake_rate": rows / t_sent, "detect_rate": rows / max(t_done, 1e-9),
            "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"), "batches": len(sent)}


#: Senders in the paced scenarios (2 parallel senders measured slower on 2 cores: 40,353/s taken at 50,000 offered).
SENDERS = 1
#: Offered rates (fixes/s) for the sustained-rate steps.
STEPS = (10_000, 20_000, 30_000, 40_000, 50_000)


def sustained(results: list[dict]) -> dict | None:
    """The fastest scenario that detection kept up with: a paced step with detected >= 95% of
    offered, or the closed loop with detected >= 95% of what was accepted; p99 < 2 s either way."""
    ok = [r for r in results if r["p99"] < 2.0 and (
        (r["offered"] and r["offered"] >= 1000 and r["detect_rate"] >= 0.95 * r["offered"])
        or (r["offered"] is None and r["detect_rate"] >= 0.95 * r["intake_rate"]))]
    return max(ok, key=lambda r: r["detect_rate"]) if ok else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="seconds of sending per scenario")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--steps", default=",".join(str(r) for r in STEPS),
                    help="offered rates of the paced steps, fixes/s, comma-separated (e.g. 40000,50000,60000)")
    ap.add_argument("--only-steps", action="store_true", help="run the paced steps only")
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    from detect import prepare

    sim = prepare("national")["dir"]
    t = pq.read_table(sim / "fixes.parquet")
    order = np.argsort(t.column("ts").cast(pa.int64()).to_numpy(), kind="stable")
    fixes = t.take(pa.array(order))
    load0 = os.getloadavg()
    results = [] if args.only_steps else [
        scenario(sim, fixes, label="real time, 5,000-device batches", batch_devices=5000, rate=333.3, seconds=args.seconds),
        scenario(sim, fixes, label="real time, 10-device batches", batch_devices=10, rate=333.3, seconds=args.seconds),
    ]
    for rate in (int(v) for v in args.steps.split(",")):
        results.append(scenario(sim, fixes, label=f"offered {rate:,}/s, 5,000-row batches", batch_devices=5000,
                                rate=float(rate), seconds=args.seconds))
        results[-1]["load"] = os.getloadavg()[0]
    if not args.only_steps:
        results.append(scenario(sim, fixes, label="one sender, as fast as accepted, 5,000-row batches",
                                batch_devices=5000, rate=None, seconds=args.seconds))
    for r in results:
        r.setdefault("load", os.getloadavg()[0])
    text = render(results, load0)
    print(text)
    if not args.no_write:
        write_section("Stream", text)


def render(results: list[dict], load0: tuple[float, float, float]) -> str:
    import platform

    cpu = cpu_model()
    best = sustained(results)
    lines = [
        "## Stream", "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by `benchmarks/stream.py`: a real `tagtrail serve` "
        f"(SQLite, one process) on {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, fed over "
        "HTTP from a client process on the same cores; data: the national day of `sim_national` (20,000 "
        "wearers, 21,651 zones), replayed in time order. Latency: POST sent -> detection committed "
        "(the queue shows the batch's breaches), polled every 20 ms. The machine is shared with other work: "
        f"1-min load average at start {load0[0]:.2f} (5 and 15 min: {load0[1]:.2f}, {load0[2]:.2f}), and after "
        "each scenario in the table.", "",
        "| scenario | offered fixes/s | rows | intake fixes/s | detected fixes/s | latency p50 | latency p99 | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        off = "max" if r["offered"] is None else f"{r['offered']:,.0f}"
        lines.append(f"| {r['label']} | {off} | {r['rows']:,} | {r['intake_rate']:,.0f} | {r['detect_rate']:,.0f} | "
                     f"{r['p50']:.2f} s | {r['p99']:.2f} s | {r['load']:.1f} |")
    if best is None:
        verdict = "no step was sustained: MISSED"
    else:
        met = best["detect_rate"] >= 50_000
        verdict = (f"{best['detect_rate']:,.0f} fixes/s sustained ({best['label']}, p99 {best['p99']:.2f} s): "
                   f"{'met' if met else 'MISSED'}")
    paced = [r for r in results if r["offered"] and r["offered"] >= 1000 and r["detect_rate"] >= 0.95 * r["offered"]
             and r["p99"] < 2.0]
    top = max(paced, key=lambda r: r["offered"]) if paced else None
    open_loop = ("none" if top is None else
                 f"{top['offered']:,.0f} fixes/s (detected {top['detect_rate']:,.0f}/s, p99 {top['p99']:.2f} s)")
    lines += ["",
              f"Open loop (paced steps, latency from each batch's due time): highest step kept up with: {open_loop}.",
              "Sustained = the fastest scenario detection kept up with: detected >= 95% of offered (paced "
              "steps) or of accepted (the closed loop), with p99 < 2 s.",
              f"Target: >= 50,000 fixes/s sustained with p99 < 2 s. Measured: {verdict}.",
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
