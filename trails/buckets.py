"""Device buckets: which of a store's B buckets a device's fixes live in.

Why buckets: detection is per assignment, and an assignment has one device,
so a task that holds every fix of a set of devices needs nothing else. A
store written in buckets (``fixes/day=D/bucket=K/part-*.parquet``, each file
sorted by device then time) lets such a task read exactly its bucket's files
for a period, without a shuffle (`geofence.bucketed`).

The bucket of a device is ``crc32(utf-8 bytes of device_id) mod B``: stable
across processes, machines and Python versions (Python's ``hash()`` of a
string is salted per process, so it can never name a file). B is chosen when
the store is created and recorded in its manifest (`trails.manifest`:
``tagtrail.store.buckets``); ``tagtrail store migrate-buckets`` rewrites a
store for another B.
"""
from __future__ import annotations

import re
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["DEFAULT_BUCKETS", "MAX_BUCKETS", "BUCKET_HASH", "check_buckets", "bucket_of", "bucket_dir",
           "bucket_of_path", "split_by_bucket"]

#: Buckets of a new store: enough for a task per core on a small cluster, few enough that a
#: day of a small caseload is not split into tiny files.
DEFAULT_BUCKETS = 16
MAX_BUCKETS = 4096
#: Recorded beside B so that a reader can tell which function placed the rows.
BUCKET_HASH = "crc32-utf8"
_BUCKET_DIR = re.compile(r"/bucket=(\d+)/")


def check_buckets(n_buckets: int) -> int:
    """`n_buckets` if it is a whole number in 1..MAX_BUCKETS.

    Raises
    ------
    ValueError
        Anything else, naming the value.
    """
    if isinstance(n_buckets, bool) or not isinstance(n_buckets, (int, np.integer)) \
            or not 1 <= int(n_buckets) <= MAX_BUCKETS:
        raise ValueError(f"buckets {n_buckets!r}: must be a whole number from 1 to {MAX_BUCKETS}")
    return int(n_buckets)


def bucket_of(device_id: pa.Array | pa.ChunkedArray | list[str], n_buckets: int) -> np.ndarray:
    """int32 bucket of each device id: ``crc32(utf-8) mod n_buckets``.

    The hash is computed once per distinct id (dictionary-encoded), so a day of
    millions of rows costs a few thousand CRCs.

    Examples
    --------
    >>> bucket_of(["D-001", "D-002", "D-001"], 16).tolist()
    [14, 4, 14]
    >>> bucket_of([], 16).tolist()
    []
    """
    n_buckets = check_buckets(n_buckets)
    arr = pa.array(device_id, pa.string()) if isinstance(device_id, list) else device_id
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if len(arr) == 0:
        return np.zeros(0, np.int32)
    enc = arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr)
    names = enc.dictionary.cast(pa.string()).to_pylist()
    per_name = np.array([zlib.crc32(n.encode("utf-8")) % n_buckets for n in names], np.int32)
    return per_name[enc.indices.to_numpy(zero_copy_only=False)]


def bucket_dir(bucket: int) -> str:
    """The folder name of bucket `bucket` inside a day partition (``bucket=K``)."""
    return f"bucket={int(bucket)}"


def bucket_of_path(relpath: str) -> int | None:
    """The bucket a store path lies in (``.../bucket=K/...``), None for a file outside buckets."""
    m = _BUCKET_DIR.search(relpath)
    return None if m is None else int(m.group(1))


def split_by_bucket(table: pa.Table, n_buckets: int) -> list[tuple[int, pa.Table]]:
    """(bucket, rows of that bucket) for each bucket present, ascending.

    Rows keep their relative order, so a table sorted by (device, time) gives
    bucket tables sorted the same way.
    """
    if table.num_rows == 0:
        return []
    k = bucket_of(table.column("device_id"), n_buckets)
    order = np.argsort(k, kind="stable")
    ks = k[order]
    starts = np.flatnonzero(np.concatenate([[True], ks[1:] != ks[:-1]]))
    ends = np.append(starts[1:], ks.size)
    taken = table.take(pa.array(order))
    return [(int(ks[a]), taken.slice(int(a), int(b - a))) for a, b in zip(starts, ends)]
