"""`tagtrail detect --home`: store mode, bucket by bucket (default) or in one pass.

Bucketed (`geofence.bucketed`): the client takes one snapshot of the store's
manifest, finds the implicit as_of, plans tasks (device buckets, split to
about --task-rows fixes each), runs them in turn in this process (a progress
bar on a terminal), or on a Dask cluster (`--cluster`, `api.cluster`), and
merges the records and quarantine rows in the contract's order. The outputs
are byte for byte those of the single pass (`--single-pass`, which reads
every fix of the period at once), which stays for comparison.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from geofence.bucketed import TASK_ROWS, latest_kept_ms, merge_results, plan_tasks, run_task
from geofence.detect import battery_policy_counts, detect_columns
from geofence.records import record_line
from geofence.store_input import clip_assignments, store_event_input, store_fix_input, store_origin, store_quarantine
from trails.errors import InputError
from trails.store import FixFiles, read_store_events, store_manifest, store_root
from trails.timestamps import parse_day_or_timestamp

from api.cli.common import resolve_home

__all__ = ["StoreRun", "detect_store", "add_store_options"]

STORE_HEADER = ("source", "row", "reason", "file")


@dataclass
class StoreRun:
    """What store mode produced: output lines in order, quarantine rows, and the summary's figures."""

    lines: list[str]
    quarantine: list[tuple[str, int, str, str]]
    counts: Counter
    n_rows: int
    policy_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    n_tasks: int = 1

    def records(self) -> list[dict]:
        """The records as dicts (for --db), parsed back from their lines."""
        return [json.loads(line) for line in self.lines]


def add_store_options(p: argparse.ArgumentParser) -> None:
    """The store-mode options of `tagtrail detect` beyond --home/--from/--to."""
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="store mode: run the bucket tasks on a Dask cluster: tcp://HOST:8786 (a running "
                        "scheduler), or local:N (a local cluster of N worker processes); needs the `cluster` extra")
    p.add_argument("--store-url", metavar="URL",
                   help="with --cluster: where workers find HOME/store (a path or file:// URL on a shared "
                        "filesystem; default: HOME/store as this machine sees it)")
    p.add_argument("--task-rows", type=int, metavar="N", default=TASK_ROWS,
                   help=f"store mode: fixes per bucket task, about (default {TASK_ROWS:,}); peak memory follows it")
    p.add_argument("--single-pass", action="store_true",
                   help="store mode: read every fix of the period at once, as before buckets (for comparison)")


def _window(args: argparse.Namespace) -> tuple[int | None, int | None]:
    def arg(name: str, value: str | None) -> int | None:
        if not value:
            return None
        try:
            return parse_day_or_timestamp(value)
        except ValueError as exc:
            raise InputError(f"{name} {value!r} is not a date YYYY-MM-DD or an RFC 3339 timestamp: {exc}") from None

    start, end = arg("--from", args.from_ts), arg("--to", args.to_ts)
    if start is not None and end is not None and end <= start:
        raise InputError(f"--to {args.to_ts!r} is not after --from {args.from_ts!r}")
    return start, end


def detect_store(args: argparse.Namespace, policy, assignments, zones, as_of: int | None,
                 compiled=None) -> StoreRun:
    """Store mode of `tagtrail detect`, bucketed or in one pass (`--single-pass`)."""
    home = resolve_home(args.home)
    window = _window(args)
    if not store_root(home).exists():
        raise InputError(f"no store at {store_root(home)}: run `tagtrail ingest` first, or pass --fixes")
    if args.task_rows < 1:
        raise InputError(f"--task-rows {args.task_rows}: must be at least 1")
    if args.single_pass and args.cluster:
        raise InputError("--single-pass and --cluster: choose one (the single pass runs in this process)")
    if args.cluster:
        from api.cluster import parse_cluster

        parse_cluster(args.cluster)  # a bad address fails before any work
    clipped = clip_assignments(assignments, *window)
    if args.single_pass:
        return _single_pass(home, policy, clipped, zones, as_of, window, args.compare_battery_policies, compiled)
    return _bucketed(args, home, policy, clipped, zones, as_of, window)


def _single_pass(home: Path, policy, assignments, zones, as_of, window, compare: bool, compiled=None) -> StoreRun:
    """Every fix of the period read at once, column by column (the store mode before buckets)."""
    devices = sorted({a.device_id for a in assignments})
    files = FixFiles(home, start_ms=window[0], end_ms=window[1])
    se = read_store_events(home, start_ms=window[0], end_ms=window[1], devices=devices)
    result = detect_columns(store_fix_input(files, devices, policy.crs, window), store_event_input(se),
                            assignments, zones, policy, as_of_ms=as_of, compiled=compiled)
    return StoreRun(lines=[record_line(r) for r in result.records],
                    quarantine=store_quarantine(result.quarantine, store_origin(files, se)),
                    counts=Counter((r["kind"], r["type"], r["priority"]) for r in result.records),
                    n_rows=len(files), policy_counts=battery_policy_counts(result, policy) if compare else {},
                    timings=result.timings)


def _bucketed(args: argparse.Namespace, home: Path, policy, assignments, zones, as_of, window) -> StoreRun:
    """Plan the bucket tasks on one manifest snapshot, run them (here or on --cluster), merge."""
    m = store_manifest(home)
    if m.buckets is None:
        print(f"note: store {store_root(home)} has no device buckets: detect reads it in one pass; "
              f"`tagtrail store migrate-buckets --home {home}` lets it run in bounded memory", file=sys.stderr)
    n_rows = len(FixFiles(home, start_ms=window[0], end_ms=window[1], manifest=m))  # each file checked, here first
    latest = None if as_of is not None else latest_kept_ms(home, m, assignments, window)
    if args.store_url:
        from api.cluster import local_store_path

        store = local_store_path(args.store_url)
    else:
        store = str(store_root(home).resolve())
    tasks = plan_tasks(store, m, assignments, zones, policy, window=window, as_of_ms=as_of, latest_ms=latest,
                       task_rows=args.task_rows, compare_policies=args.compare_battery_policies)
    if args.cluster:
        from api.cluster import run_on_cluster

        results = run_on_cluster(tasks, args.cluster, progress=sys.stderr.isatty())
    else:
        results = _in_process(tasks)
    merged = merge_results(results)
    return StoreRun(lines=merged.lines, quarantine=merged.quarantine, counts=merged.counts, n_rows=n_rows,
                    policy_counts=merged.policy_counts, timings=merged.timings, n_tasks=len(tasks))


def _release() -> None:
    """Between two tasks, give back what the last one left: its young cyclic garbage (`run`
    pauses the collector for the whole command) and the Arrow pool's free pages, so the
    process's memory is one task's, not the sum of what fragments the tasks left behind."""
    import gc

    import pyarrow as pa

    gc.collect(1)
    pa.default_memory_pool().release_unused()


def _in_process(tasks):
    """The tasks in turn, in this process: one task's data in memory at a time (a progress bar
    on a terminal). Yields results so the caller merges as they come."""
    bar = None
    if sys.stderr.isatty() and len(tasks) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), unit=" task", file=sys.stderr, desc="detect", leave=False)
    try:
        for t in tasks:
            yield run_task(t)
            _release()
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
