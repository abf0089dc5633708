"""Bucketed detection: ``tagtrail detect --home`` as independent tasks over device buckets.

Why it is exact. Every rule of the contract works per assignment, and an
assignment has one device; a task holds *every* fix and event of its devices
for the whole period asked, so nothing is cut in time and nothing (the
accumulated-battery window, an episode, a gap) crosses from one task to
another. What is global is the implicit as_of (the latest kept fix or event
of anyone): the client finds it first (`latest_kept_ms`, reading only the
last day that has a kept fix, and the events) and hands it to every task as
`detect_columns(latest_ms=...)`, which, unlike an explicit --as-of, sets no
row aside. Records and quarantine rows are then merged in the contract's
order, a total order on what is written, so the files are byte for byte
those of a single pass.

Why memory is bounded. A task is one device bucket of the store, split
further into runs of devices (contiguous in device order, so each store file
gives one contiguous slice: `trails.store.FixFiles(device_range=...)`) until
each holds about `TASK_ROWS` fixes. Peak memory is one task's, whatever the
length of the history, as long as one device's history fits.

Tasks are pure: a `BucketTask` in, a `TaskResult` out, no shared state; the
task names the store path and carries its own snapshot of the manifest (the
fix files and sizes to read, checked as every store read is) and its
devices' events (a few a week per wearer: the client reads them once, rather
than every task opening every event file). The same function
runs in-process and on Dask workers (`api.cluster`).
"""
from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trails.buckets import bucket_of, bucket_of_path
from trails.manifest import MANIFEST_SCHEMA, Manifest
from trails.projection import STORE_CRS
from trails.store import FixFiles, StoredEvents, days_between, read_store_events
from trails.timestamps import DAY_MS, NEG_INF_MS, POS_INF_MS

from .detect import battery_policy_counts, detect_columns
from .layout import assign_rows
from .model import Assignment, Policy, Zone
from .records import record_key, record_line
from .store_input import sort_store_quarantine, store_event_input, store_fix_input, store_origin, store_quarantine

__all__ = ["TASK_ROWS", "BucketTask", "TaskResult", "Merged", "plan_tasks", "run_task", "merge_results",
           "latest_kept_ms", "add_counts"]

#: Fixes per task: peak memory is the process's base (~400 MiB: interpreter, NumPy, Arrow,
#: Numba, pyproj) plus about 150-200 bytes per fix of the task.
TASK_ROWS = 1_000_000


@dataclass(frozen=True)
class BucketTask:
    """One task: the assignments of the devices in [device_range) and what to read for them."""

    store: str  # the store folder (HOME/store), as the worker sees it
    listing: tuple[dict, ...]  # manifest rows of the fix files to read (its bucket's)
    events: StoredEvents  # its devices' events (few: read once by the client, shipped with the task)
    device_range: tuple[str, str] | None  # None: every row of the listed fix files is the task's
    assignments: tuple[Assignment, ...]
    zones: tuple[Zone, ...]
    policy: Policy
    window: tuple[int | None, int | None]
    as_of_ms: int | None
    latest_ms: int | None
    compare_policies: bool = False
    label: str = ""


@dataclass(frozen=True)
class TaskResult:
    """A task's records as (contract order key, breaches.jsonl line), its quarantine rows
    (source, row, reason, file), and counts for the summary."""

    lines: list[tuple[tuple[str, str, str, str], str]]
    quarantine: list[tuple[str, int, str, str]]
    n_kept: int
    counts: dict[tuple[str, str, int], int]
    policy_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Merged:
    """Every task's results in the contract's order."""

    lines: list[str]
    quarantine: list[tuple[str, int, str, str]]
    n_kept: int
    counts: Counter
    policy_counts: dict[str, dict[str, int]]
    timings: dict[str, float]


def run_task(task: BucketTask) -> TaskResult:
    """Detect one task's assignments on its own fixes and events (a pure function of `task`).

    Raises
    ------
    trails.manifest.StoreIntegrityError
        A file of the task's listing is missing or changed since the listing was taken.
    """
    t0 = time.perf_counter()
    root = Path(task.store)
    m = Manifest(root, pa.Table.from_pylist(list(task.listing), schema=MANIFEST_SCHEMA), exists=True, partial=True)
    start, end = task.window
    position = ["x", "y"] if task.policy.crs == STORE_CRS else ["lat", "lon"]  # as `store_fix_input` reads them
    files = FixFiles(root.parent, start_ms=start, end_ms=end, manifest=m, device_range=task.device_range,
                     preload=["ts_ms", *position, "accuracy_m", "battery_pct", "row"])
    devices = sorted({a.device_id for a in task.assignments})
    se = task.events
    t_read = time.perf_counter()
    result = detect_columns(store_fix_input(files, devices, task.policy.crs, task.window), store_event_input(se),
                            task.assignments, task.zones, task.policy, as_of_ms=task.as_of_ms,
                            latest_ms=task.latest_ms)
    quarantine = store_quarantine(result.quarantine, store_origin(files, se))
    counts = Counter((r["kind"], r["type"], r["priority"]) for r in result.records)
    policy = battery_policy_counts(result, task.policy) if task.compare_policies else {}
    lines = [(record_key(r), record_line(r)) for r in result.records]
    timings = {"task: open files": t_read - t0, **{f"task: {k}": v for k, v in result.timings.items()},
               "task: total": time.perf_counter() - t0}
    return TaskResult(lines, quarantine, result.n_fixes_kept, dict(counts), policy, timings)


def add_counts(total: dict[str, dict[str, int]], part: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Battery-policy counts of two sets of assignments, added (counts are per assignment)."""
    out = {p: dict(c) for p, c in total.items()}
    for p, c in part.items():
        mine = out.setdefault(p, {})
        for k, v in c.items():
            mine[k] = mine.get(k, 0) + v
    return {p: dict(sorted(c.items())) for p, c in out.items()}


def merge_results(results: Iterable[TaskResult]) -> Merged:
    """Records and quarantine of all tasks in the contract's order (`record_key`, then the
    store quarantine's order); counts and timings added."""
    keyed: list[tuple[tuple[str, str, str, str], str]] = []
    quarantine: list[tuple[str, int, str, str]] = []
    counts: Counter = Counter()
    policy: dict[str, dict[str, int]] = {}
    timings: dict[str, float] = {}
    n_kept = 0
    for r in results:
        keyed.extend(r.lines)
        quarantine.extend(r.quarantine)
        counts.update(r.counts)
        policy = add_counts(policy, r.policy_counts)
        n_kept += r.n_kept
        for k, v in r.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    keyed.sort(key=lambda kl: kl[0])
    return Merged([line for _, line in keyed], sort_store_quarantine(quarantine), n_kept, counts, policy, timings)


# --------------------------------------------------------------------------- planning
def _device_groups(m: Manifest, devices: list[str], rows_of: dict,
                   task_rows: int) -> list[tuple[int, list[str], bool]]:
    """(bucket, devices, whole bucket) per task of a bucketed store: each bucket's devices (sorted)
    in runs of about `task_rows` fixes, estimated from the manifest; "whole bucket" when one task
    takes all of a bucket (it then reads every row of the bucket's files, no device slice)."""
    by_bucket: dict[int, list[str]] = {}
    for d, k in zip(devices, bucket_of(devices, m.buckets).tolist()):
        by_bucket.setdefault(k, []).append(d)
    out = []
    for k in sorted(by_bucket):
        devs = by_bucket[k]
        n_sub = max(1, min(len(devs), math.ceil(rows_of.get(k, 0) / max(1, task_rows))))
        out.extend((k, list(part), n_sub == 1) for part in np.array_split(np.array(devs, object), n_sub))
    return out


def plan_tasks(store: str | Path, m: Manifest, assignments: Sequence[Assignment], zones: Sequence[Zone],
               policy: Policy, *, window: tuple[int | None, int | None] = (None, None),
               as_of_ms: int | None = None, latest_ms: int | None = None, task_rows: int = TASK_ROWS,
               compare_policies: bool = False) -> list[BucketTask]:
    """The tasks of one detection over the store snapshot `m`: every assignment in exactly one task.

    `assignments` are already clipped to `window` (`store_input.clip_assignments`); `store` is
    the store's path as workers see it (`m` was read from the client's, `m.root`).
    """
    days = set(days_between(m, "fixes", *window))
    fix_rows = [r for r in m.table.to_pylist() if r["kind"] == "fixes" and r["day"] in days]
    devices = sorted({a.device_id for a in assignments})
    events = read_store_events(m.root.parent, start_ms=window[0], end_ms=window[1], devices=devices, manifest=m)
    listing: dict[int | None, list[dict]] = {}
    for r in fix_rows:
        listing.setdefault(bucket_of_path(r["path"]), []).append(r)
    rows_of = {k: sum(r["rows"] for r in v) for k, v in listing.items()}
    by_device: dict[str, list[Assignment]] = {}
    for a in assignments:
        by_device.setdefault(a.device_id, []).append(a)
    tasks = []
    if devices and (m.buckets is None or sum(rows_of.values()) <= task_rows):
        # it all fits one task; or a store without buckets (format 1), whose large files, sorted by
        # device across all devices, every task would have to open: one task, as before buckets
        groups: list = [("all", devices, True)]
    else:
        groups = _device_groups(m, devices, rows_of, task_rows)
    for n, (k, devs, whole) in enumerate(groups):
        mine = tuple(a for d in devs for a in by_device[d])
        used = {z for a in mine for z in a.zones}
        files = fix_rows if k == "all" else listing.get(k, [])
        tasks.append(BucketTask(
            store=str(store), listing=tuple(files), events=events.of_devices(devs),
            device_range=None if whole else (devs[0], devs[-1] + "\0"),
            assignments=mine, zones=tuple(z for z in zones if z.zone_id in used), policy=policy, window=window,
            as_of_ms=as_of_ms, latest_ms=latest_ms, compare_policies=compare_policies,
            label=f"bucket {k} task {n + 1}/{len(groups)}"))
    return tasks


def latest_kept_ms(home: str | Path, m: Manifest, assignments: Sequence[Assignment],
                   window: tuple[int | None, int | None] = (None, None)) -> int | None:
    """The implicit as_of (CONTRACT.md, "Time"): the latest kept fix or event, of anyone.

    A row is kept when an assignment of its device holds its instant (inside
    `window`); a duplicate has the instant of a kept row, so it changes
    nothing here. Fix days are read from the latest back, only until one
    holds a kept fix (one day, in practice).
    """
    devices = sorted({a.device_id for a in assignments})
    if not devices:
        return None
    dev_index = {d: i for i, d in enumerate(devices)}
    a_dev = np.array([dev_index[a.device_id] for a in assignments], np.int64)
    a_start = np.array([a.start_ms for a in assignments], np.int64)
    a_end = np.array([POS_INF_MS if a.end_ms is None else a.end_ms for a in assignments], np.int64)
    lo = NEG_INF_MS if window[0] is None else window[0]
    hi = POS_INF_MS if window[1] is None else window[1]

    def latest(codes: np.ndarray, ts: np.ndarray) -> int | None:
        inside = (ts >= lo) & (ts < hi) & (codes >= 0)
        codes, ts = codes[inside], ts[inside]
        owner = assign_rows(codes, ts, len(devices), a_dev, a_start, a_end)
        kept = ts[owner >= 0]
        return int(kept.max()) if kept.size else None

    found = []
    for day in sorted(days_between(m, "fixes", *window), reverse=True):
        files = FixFiles(home, start_ms=day * DAY_MS, end_ms=(day + 1) * DAY_MS, manifest=m)
        got = latest(files.device_codes(devices), files.column("ts_ms"))
        if got is not None:
            found.append(got)
            break
    se = read_store_events(home, start_ms=window[0], end_ms=window[1], devices=devices, manifest=m)
    codes = pc.index_in(se.device_id, value_set=pa.array(devices, pa.string())).fill_null(-1)
    got = latest(codes.to_numpy(zero_copy_only=False).astype(np.int64), np.asarray(se.ts_ms, np.int64))
    if got is not None:
        found.append(got)
    return max(found) if found else None
