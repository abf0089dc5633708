"""``tagtrail store migrate-buckets``: rewrite a store's fix files into B device buckets.

Why a command and not a background job: a rewrite must see a store nobody is
adding to, so it holds the store lock (`trails.store.StoreLock`, role
``migrate``) from start to end, like an ingest; a running service or ingest
makes it refuse, and it makes them refuse.

Atomic: every new file is staged (`trails.store.Transaction`), then one
manifest replace lists the new files, unlists the old ones and records B; the
old files are removed after that. A crash before the replace leaves the store
exactly as it was (the staging folder is removed by the next lock holder).
Idempotent: a store already in B buckets is left alone. Rows are not changed,
only regrouped: each day's fixes are re-sorted by (device_id, ts_ms), which is
a total order in the store (a key is stored once), so the rewrite of any
layout gives the same files.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from trails.buckets import check_buckets
from trails.errors import InputError
from trails.manifest import Manifest
from trails.store import FIX_SCHEMA, StoreLock, Transaction, _read_checked, device_order, sort_order, store_root

__all__ = ["MigrateSummary", "migrate_buckets"]


@dataclass(frozen=True)
class MigrateSummary:
    """What `migrate_buckets` did: ``changed`` False when the store already had B buckets."""

    buckets: int
    before: int | None  # B before, None for a store without buckets (format 1)
    days: int
    files_before: int
    files_after: int
    fixes: int
    changed: bool


def migrate_buckets(home, buckets: int) -> MigrateSummary:
    """Rewrite the fix files of the store under `home` into `buckets` device buckets.

    Raises
    ------
    InputError
        No store under `home`; `buckets` not in 1..4096; another process
        holds the store lock (it names what it is doing).
    """
    try:
        buckets = check_buckets(buckets)
    except ValueError as exc:
        raise InputError(f"--buckets: {exc}") from None
    root = store_root(home)
    if not root.is_dir():
        raise InputError(f"no store at {str(root)!r}: nothing to migrate (`tagtrail ingest` creates one)")
    with StoreLock(home, "migrate"):
        m = Manifest.read(root)
        days = m.days("fixes")
        old_files = m.table.filter(pa.compute.equal(m.table.column("kind"), "fixes")).column("path").to_pylist()
        summary = dict(buckets=buckets, before=m.buckets, days=len(days), files_before=len(old_files))
        if m.buckets == buckets:
            return MigrateSummary(**summary, files_after=len(old_files), fixes=int(_fix_rows(m)), changed=False)
        with Transaction(home) as txn:
            txn.buckets = buckets
            n_fixes = 0
            for day in days:
                table = _day_table(m, day)
                n_fixes += table.num_rows
                txn.write_day("fixes", day, f"part-{txn.ingest_id}-00000.parquet", table)
            n_after = len(txn.files)
            txn.retire(old_files)
            txn.commit()
    return MigrateSummary(**summary, files_after=n_after, fixes=n_fixes, changed=True)


def _fix_rows(m: Manifest) -> int:
    return int(m.files("fixes")[1].sum())


def _day_table(m: Manifest, day: int) -> pa.Table:
    """Every stored fix of one day (from the listed files, each checked), sorted by (device_id, ts_ms)."""
    files, rows = m.files("fixes", [day])
    table = pa.concat_tables([_read_checked(f, int(n)).cast(FIX_SCHEMA) for f, n in zip(files, rows)])
    table = table.unify_dictionaries().combine_chunks()
    order = sort_order(device_order(table.column("device_id")), table.column("ts_ms").to_numpy())
    return table.take(pa.array(order))
