"""Bucket tasks on a Dask distributed cluster: ``tagtrail detect --home DIR --cluster ADDRESS``.

Why Dask and nothing home-made: scheduling, retries, a worker lost mid-task
(its tasks are run again elsewhere: the scheduler notices the lost worker
and reschedules what it held) and deployment on many machines are Dask's
job. Ours is only that a task is a pure function (`geofence.bucketed.run_task`:
a `BucketTask` in, a `TaskResult` out), so the cluster is a deployment
choice: the same function runs in-process, and the client merges the
results in the contract's order whatever order they come back in.

Workers read the store themselves, from the path in each task: the store
must be on a filesystem every worker mounts at that path (`--store-url`
when it differs from the client's). Dask is an optional extra
(``pip install -e '.[cluster]'``); without it ``--cluster`` is an input error.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence

from trails.errors import InputError

from geofence.bucketed import BucketTask, TaskResult, run_task

__all__ = ["parse_cluster", "local_store_path", "run_on_cluster"]

_LOCAL = re.compile(r"^local:([1-9]\d{0,2})$")
#: How long the client waits for a scheduler to answer, and for a LocalCluster's workers.
CONNECT_TIMEOUT_S = 30
#: Runs of one task on workers that died while holding it, before the run fails (Dask's own count).
ALLOWED_FAILURES = 3


def parse_cluster(address: str) -> tuple[str, int | str]:
    """``("local", N)`` for ``local:N``, ``("remote", address)`` for a scheduler address.

    Raises
    ------
    InputError
        Anything else, naming the value and the two accepted forms.
    """
    m = _LOCAL.match(address)
    if m:
        return "local", int(m.group(1))
    if re.match(r"^(tcp|tls|ucx|inproc)://[^/\s]+$", address):
        return "remote", address
    raise InputError(f"--cluster {address!r}: give a scheduler address (tcp://HOST:8786) or local:N "
                     f"(N worker processes on this machine, 1 to 999)")


def local_store_path(url: str) -> str:
    """The filesystem path of a store named by a plain path or an fsspec URL.

    Workers read store files with local file APIs (and check each against the
    manifest with ``lstat``), so the URL must name a filesystem mounted on
    every worker (a ``file://`` URL or a plain path: NFS, a cluster
    filesystem, an object store mounted with s3fs/gcsfuse).

    Raises
    ------
    InputError
        Another protocol (``s3://`` ...), naming it.
    """
    try:
        import fsspec
    except ImportError:  # a plain path needs no fsspec
        if "://" in url:
            raise InputError(f"--store-url {url!r}: a URL needs fsspec (the `cluster` extra)") from None
        return os.path.abspath(url)
    protocol, _ = fsspec.core.split_protocol(url)
    if protocol not in (None, "file", "local"):
        raise InputError(f"--store-url {url!r}: workers read the store as files ({protocol} is not a local "
                         f"filesystem): mount it on every worker and give that path")
    return fsspec.core.url_to_fs(url)[1]


def _client(address: str):
    """A Dask client on `address` (a LocalCluster it started for ``local:N``), and that cluster."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("--cluster needs Dask: pip install -e '.[cluster]'") from None
    kind, where = parse_cluster(address)
    if kind == "local":
        n = int(where)
        # Numba's threads per worker: the cores shared out (no oversubscription), unless set
        threads = os.environ.get("NUMBA_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // n))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               env={"NUMBA_NUM_THREADS": threads})
        return Client(cluster, timeout=f"{CONNECT_TIMEOUT_S}s"), cluster
    try:
        return Client(where, timeout=f"{CONNECT_TIMEOUT_S}s"), None
    except (OSError, TimeoutError) as exc:
        raise InputError(f"--cluster {address!r}: no Dask scheduler answered: {exc}") from None


def run_on_cluster(tasks: Sequence[BucketTask], address: str, *, progress: bool = False) -> Iterator[TaskResult]:
    """Run `tasks` on the cluster at `address`; yield their results as they finish (any order).

    Raises whatever a task raised (a `trails.manifest.StoreIntegrityError` for
    a changed store file, as in-process); `distributed.KilledWorker` when
    a task's workers died `ALLOWED_FAILURES` times.
    """
    import dask
    from distributed import as_completed

    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        client, cluster = _client(address)
        try:
            futures = client.map(run_task, list(tasks), pure=False, retries=1)
            bar = _bar(len(futures)) if progress else None
            for fut in as_completed(futures):
                result = fut.result()
                fut.release()
                if bar is not None:
                    bar.update(1)
                yield result
            if bar is not None:
                bar.close()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit=" task", desc="detect (cluster)", leave=False)
