"""`detect --home --cluster`: the same bytes in-process, on a LocalCluster of two worker processes,
and on a real scheduler with two workers this test starts itself (127.0.0.1 only); a worker
killed with SIGKILL while it holds a task changes nothing.

Dask is part of the test extra: under CI a missing Dask fails here, it is never skipped.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from api.cli.main import main
from trails.ingest import ingest
from trails.sim.simulate import simulate

if os.environ.get("CI"):
    import distributed  # noqa: F401  (CI: a missing Dask is a failure)
else:
    pytest.importorskip("distributed")

from distributed import Client  # noqa: E402

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    sim = root / "sim"
    simulate(sim, wearers=8, days=2, seed=21, start="2024-03-04", bad_row_rate=0.01)
    home = root / "home"
    ingest(sim / "fixes.csv", home=home, events_path=sim / "events.csv", buckets=4)
    single = _detect(sim, home, root / "single", "--single-pass")
    return sim, home, single


def _args(sim: Path, home: Path, out: Path, *extra: str) -> list[str]:
    return ["detect", "--home", str(home), "--subjects", str(sim / "subjects.json"), "--zones",
            str(sim / "zones.geojson"), "--out", str(out), "--quiet", "--task-rows", "1", *extra]


def _detect(sim: Path, home: Path, out: Path, *extra: str) -> dict[str, bytes]:
    assert main(_args(sim, home, out, *extra)) == 0
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop the processes this test started, by their PIDs: SIGTERM, then SIGKILL."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory):
    """A `dask scheduler` and two `dask worker` processes on 127.0.0.1, started here, stopped by PID
    (module scope: started once for the two tests that use it; the worker-kill test runs last)."""
    sched_file = tmp_path_factory.mktemp("dask") / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(sched_file)], **quiet)]
    try:
        deadline = time.monotonic() + 30
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sched_file.exists(), "the scheduler did not start"
        for _ in range(2):
            procs.append(subprocess.Popen(
                [str(BIN / "dask"), "worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
                 "--nthreads", "1", "--nworkers", "1", "--no-dashboard"],
                env={**os.environ, "NUMBA_NUM_THREADS": "1"}, **quiet))
        client = Client(scheduler_file=str(sched_file), timeout="30s")
        client.wait_for_workers(2, timeout=60)
        yield client
        client.close()
    finally:
        _stop(procs)


def test_in_process_equals_single_pass(case, tmp_path):
    sim, home, single = case
    assert _detect(sim, home, tmp_path / "o") == single


def test_local_cluster_of_two_processes_equals_single_pass(case, tmp_path):
    sim, home, single = case
    assert _detect(sim, home, tmp_path / "o", "--cluster", "local:2") == single


def test_real_scheduler_and_workers_equal_single_pass(case, tmp_path, real_cluster):
    sim, home, single = case
    address = real_cluster.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    assert _detect(sim, home, tmp_path / "o", "--cluster", address,
                   "--store-url", f"file://{home.resolve() / 'store'}") == single


def test_a_worker_killed_mid_run_changes_nothing(case, tmp_path, real_cluster):
    """SIGKILL a worker process while it holds tasks: the scheduler runs them again elsewhere
    (its nanny restarts the process), and the output is the same bytes."""
    sim, home, single = case
    client = real_cluster
    pids = client.run(os.getpid)  # worker address -> worker process pid
    done: dict[str, int] = {}
    run = threading.Thread(target=lambda: done.setdefault(
        "rc", main(_args(sim, home, tmp_path / "o", "--cluster", client.scheduler.address))))
    run.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and run.is_alive():
        busy = {w: keys for w, keys in client.processing().items() if keys}
        if busy:
            victim = sorted(busy)[0]
            os.kill(pids[victim], signal.SIGKILL)
        else:
            time.sleep(0.005)
    run.join(timeout=120)
    assert victim is not None, "no worker was seen holding a task"
    assert done.get("rc") == 0
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "o").iterdir())} == single
    assert _dead(pids[victim]), "the killed worker is still running"


def _dead(pid: int, timeout_s: float = 10.0) -> bool:
    """Whether `pid` has exited (gone, or a zombie its nanny has not reaped yet)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_bad_cluster_addresses_are_refused(case, tmp_path, capsys):
    sim, home, _ = case
    for bad in ("local:0", "localhost", "http://x:8786"):
        assert main(_args(sim, home, tmp_path / "o", "--cluster", bad)) == 2
        assert "--cluster" in capsys.readouterr().err
    assert main(_args(sim, home, tmp_path / "o", "--cluster", "local:1", "--store-url", "s3://bucket/store")) == 2
    assert "s3 is not a local filesystem" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
