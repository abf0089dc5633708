"""Synthetic population generator: `tagtrail simulate`.

Writes a monitoring caseload in the contract's input formats (CONTRACT.md,
"Inputs"): ``fixes.csv`` or ``fixes.parquet``, ``events.csv``,
``subjects.json`` and ``zones.geojson``. Wearers live around English towns
(``trails/data/towns.csv``, weighted by population); see
`trails.sim.population` for zones and assignments, `trails.sim.behaviour` for
movement, battery and signal, `trails.sim.bad_rows` for ``--bad-row-rate``.

Determinism: wearer ``i`` draws from ``SeedSequence(seed, spawn_key=(i,))``
only (three child streams: population, behaviour, bad rows), so the files are
identical byte for byte for a seed whatever the batch size, and the clean
rows do not change with ``bad_row_rate``.

Speed: per-fix work is vectorised per wearer; rows are formatted and written
by pyarrow in batches of wearers (timestamps by table lookup into a byte
buffer: `trails.timestamps.format_ms_column`).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from trails.errors import InputError
from trails.sim.bad_rows import KINDS, UNKNOWN_EVENT, UNKNOWN_EVENT_NAME, draw_bad_rows, render_bad_fix
from trails.sim.behaviour import Calendar, simulate_wearer, swap_ms
from trails.sim.population import load_towns, make_wearer
from trails.timestamps import DAY_MS, MAX_MS, format_ms, format_ms_column, parse_day_or_timestamp

__all__ = ["SimulationSummary", "SimulationError", "simulate", "format_ts_ms", "FIX_COLUMNS"]

FIX_COLUMNS: tuple[str, ...] = ("device_id", "ts", "lat", "lon", "accuracy_m", "battery_pct")
EVENT_COLUMNS: tuple[str, ...] = ("device_id", "ts", "event")
FORMATS: tuple[str, ...] = ("csv", "parquet")
#: Wearers generated, formatted and written together (does not change the output).
DEFAULT_BATCH_WEARERS = 50


class SimulationError(InputError):
    """A `simulate` argument is out of range (the message names it)."""


@dataclass(frozen=True)
class SimulationSummary:
    """What `simulate` wrote."""

    out_dir: Path
    fixes_path: Path
    n_wearers: int
    n_days: int
    n_assignments: int
    n_zones: int
    n_fixes: int
    """Good fix rows."""
    n_events: int
    """Good event rows (strap tampers)."""
    n_bad_rows: int
    """Injected bad rows, fixes and events together."""
    seconds: float

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (
            f"simulated {self.n_wearers:,} wearers x {self.n_days} days: {self.n_fixes:,} fixes, "
            f"{self.n_events:,} events, {self.n_bad_rows:,} bad rows, {self.n_assignments:,} assignments, "
            f"{self.n_zones:,} zones in {self.seconds:.1f} s -> {self.out_dir}"
        )


# --------------------------------------------------------------------------- timestamps

#: Kept for callers of the simulator's formatter; the one implementation is `trails.timestamps`.
format_ts_ms = format_ms_column


# --------------------------------------------------------------------------- arguments

def _parse_start(start: str | date | datetime) -> int:
    if isinstance(start, datetime):
        if start.tzinfo is None:
            raise SimulationError(f"start has no UTC offset: {start!r}")
        return int(start.timestamp() * 1000)
    if isinstance(start, date):
        return int(datetime(start.year, start.month, start.day, tzinfo=timezone.utc).timestamp() * 1000)
    try:
        return parse_day_or_timestamp(str(start))
    except ValueError as exc:
        raise SimulationError(f"start is not a date YYYY-MM-DD or a timestamp: {start!r} ({exc})") from None


def _check(wearers: int, days: int, fmt: str, bad_row_rate: float, start_ms: int) -> None:
    if not isinstance(wearers, int) or wearers < 1:
        raise SimulationError(f"wearers must be a whole number >= 1: {wearers=}")
    if not isinstance(days, int) or not 1 <= days <= 366:
        raise SimulationError(f"days must be a whole number in 1..366: {days=}")
    if fmt not in FORMATS:
        raise SimulationError(f"format must be one of {', '.join(FORMATS)}: {fmt=}")
    if not (0.0 <= bad_row_rate <= 1.0):  # also rejects NaN
        raise SimulationError(f"bad_row_rate must be in [0, 1]: {bad_row_rate=}")
    if not DAY_MS <= start_ms <= MAX_MS - 367 * DAY_MS:
        raise SimulationError(f"start must lie between 1970 and 9998: {format_ms(start_ms)}")


# --------------------------------------------------------------------------- writing

class _FixWriter:
    """Appends batches of fix rows to ``fixes.csv`` or ``fixes.parquet``."""

    def __init__(self, path: Path, fmt: str, string_ts: bool) -> None:
        self.fmt = fmt
        self.string_ts = string_ts
        if fmt == "csv":
            self._sink = pa.OSFile(str(path), "wb")
            self._sink.write((",".join(FIX_COLUMNS) + "\n").encode())
            self._options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        else:
            ts_type = pa.string() if string_ts else pa.timestamp("ms", tz="UTC")
            self.schema = pa.schema([
                ("device_id", pa.string()), ("ts", ts_type), ("lat", pa.float64()),
                ("lon", pa.float64()), ("accuracy_m", pa.float64()), ("battery_pct", pa.float64()),
            ])
            self._writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        if self.fmt == "csv":
            pacsv.write_csv(table, self._sink, self._options)
        else:
            self._writer.write_table(table.cast(self.schema))

    def close(self) -> None:
        if self.fmt == "csv":
            self._sink.close()
        else:
            self._writer.close()


def _dump_lines(obj_key: str, items: list[dict], head: dict | None = None) -> str:
    """JSON with one item per line (readable, diff-friendly, deterministic)."""
    prefix = "{" + "".join(f"{json.dumps(k)}: {json.dumps(v)}, " for k, v in (head or {}).items())
    body = ",\n".join(json.dumps(it, separators=(", ", ": ")) for it in items)
    return f"{prefix}{json.dumps(obj_key)}: [\n{body}\n]}}\n" if items else f"{prefix}{json.dumps(obj_key)}: []}}\n"


def _build_batch(tracks, wearers, bads, fmt: str, string_ts: bool):
    """One batch of wearers -> (table of fix rows with bad rows mixed in, bad event rows)."""
    names: list[str] = []
    dev_parts, sizes = [], []
    for w, tr in zip(wearers, tracks):
        dev_parts.append(tr.device_idx.astype(np.int32) + len(names))
        names.extend(w.device_ids)
        sizes.append(tr.ts_ms.size)
    starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    ts_ms = np.concatenate([t.ts_ms for t in tracks])
    device = pc.take(pa.array(names, type=pa.string()), pa.array(np.concatenate(dev_parts)))
    lat = np.concatenate([t.lat for t in tracks])
    lon = np.concatenate([t.lon for t in tracks])
    acc = np.concatenate([t.accuracy_m for t in tracks])
    bat = np.concatenate([t.battery_pct for t in tracks])
    is_csv = fmt == "csv"
    if is_csv or string_ts:
        ts_col = format_ms_column(ts_ms)
    else:
        ts_col = pa.array(ts_ms, type=pa.timestamp("ms", tz="UTC"))
    cols = [device, ts_col, pa.array(lat), pa.array(lon), pa.array(acc), pa.array(bat, from_pandas=True)]

    n_bad = sum(b.n for b in bads)
    bad_events: list[list] = [[] for _ in wearers]
    if n_bad == 0:
        return pa.table(cols, names=list(FIX_COLUMNS)), bad_events, 0

    if is_csv:
        cols = [cols[0], cols[1]] + [pc.cast(c, pa.string()) for c in cols[2:]]
    fix_rows: list[list] = []
    fix_pos: list[int] = []
    for k, (w, b) in enumerate(zip(wearers, bads)):
        if b.n == 0:
            continue
        base_abs = b.base_idx + starts[k]
        if is_csv:
            base_cols = [c.take(pa.array(base_abs)).to_pylist() for c in cols]
        else:
            base_cols = [cols[0].take(pa.array(base_abs)).to_pylist(), cols[1].take(pa.array(base_abs)).to_pylist(),
                         lat[base_abs].tolist(), lon[base_abs].tolist(), acc[base_abs].tolist(),
                         [None if v != v else v for v in bat[base_abs].tolist()]]
        for j in range(b.n):
            row = [c[j] for c in base_cols]
            kind = int(b.kind[j])
            if kind == UNKNOWN_EVENT:
                bad_events[k].append((int(ts_ms[base_abs[j]]), row[0], row[1]))
                continue
            fix_rows.append(render_bad_fix(KINDS[kind], int(b.variant[j]), row,
                                           unassigned_device=f"D-X{w.index:06d}", is_csv=is_csv))
            fix_pos.append(int(b.insert_pos[j] + starts[k]))
    good = pa.table(cols, names=list(FIX_COLUMNS))
    if not fix_rows:
        return good, bad_events, n_bad
    bad_cols = list(zip(*fix_rows))
    bad = pa.table([pa.array(list(c), type=good.schema.field(i).type) for i, c in enumerate(bad_cols)],
                   names=list(FIX_COLUMNS))
    n_good = good.num_rows
    order = np.insert(np.arange(n_good), np.asarray(fix_pos), n_good + np.arange(len(fix_rows)))
    table = pa.concat_tables([good, bad]).take(pa.array(order))
    return table, bad_events, n_bad


def simulate(
    out_dir: str | Path,
    *,
    wearers: int = 100,
    days: int = 7,
    seed: int = 0,
    start: str | date | datetime = "2024-03-04",
    fmt: str = "csv",
    bad_row_rate: float = 0.0,
    progress: bool = False,
    batch_wearers: int = DEFAULT_BATCH_WEARERS,
) -> SimulationSummary:
    """Simulate ``wearers`` tag wearers for ``days`` days and write the contract's input files.

    Parameters
    ----------
    out_dir
        Directory to write into (created if needed): ``fixes.csv`` or
        ``fixes.parquet``, ``events.csv``, ``subjects.json``, ``zones.geojson``.
    wearers, days
        Population size and run length (one fix a minute per wearer, less
        flat-battery silences and signal loss).
    seed
        Everything is a function of ``(seed, wearer index)``; same seed, same bytes.
    start
        ``YYYY-MM-DD`` (midnight UTC), an RFC 3339 timestamp, a `date` or an
        aware `datetime`: when every assignment starts.
    fmt
        ``csv`` or ``parquet``. Parquet ``ts`` is ``timestamp[ms, tz=UTC]``, or
        RFC 3339 strings when ``bad_row_rate > 0`` (bad timestamps need text).
    bad_row_rate
        Extra bad rows, as a fraction of good fix rows, cycling through every
        row-level quarantine kind (`trails.sim.bad_rows`), mixed among the good rows.
    progress
        Show a tqdm progress bar on stderr.
    batch_wearers
        Wearers per write batch (memory vs. overhead; never changes the output).

    Raises
    ------
    SimulationError
        An argument is out of range.
    """
    t0 = time.perf_counter()
    start_ms = _parse_start(start)
    _check(wearers, days, fmt, bad_row_rate, start_ms)
    if batch_wearers < 1:
        raise SimulationError(f"batch_wearers must be >= 1: {batch_wearers=}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cal = Calendar(start_ms, days * 1440)
    towns = load_towns()
    string_ts = fmt == "parquet" and bad_row_rate > 0
    fixes_path = out / f"fixes.{fmt}"
    writer = _FixWriter(fixes_path, fmt, string_ts)

    subjects: list[dict] = []
    features: list[dict] = []
    event_rows: list[tuple[str, str, str]] = []
    n_fixes = n_events = n_bad = 0
    start_text = format_ms(start_ms)

    from tqdm import tqdm

    bar = tqdm(total=wearers, unit="wearer", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        for lo in range(0, wearers, batch_wearers):
            hi = min(wearers, lo + batch_wearers)
            ws, tracks, bads = [], [], []
            for i in range(lo, hi):
                s_pop, s_beh, s_bad = np.random.SeedSequence(seed, spawn_key=(i,)).spawn(3)
                w = make_wearer(i, np.random.default_rng(s_pop), towns, cal.n_minutes)
                tr = simulate_wearer(w, np.random.default_rng(s_beh), cal)
                b = draw_bad_rows(tr.ts_ms.size, bad_row_rate, np.random.default_rng(s_bad), i)
                ws.append(w)
                tracks.append(tr)
                bads.append(b)
                bar.update(1)
            table, bad_events, nb = _build_batch(tracks, ws, bads, fmt, string_ts)
            writer.write(table)
            n_bad += nb
            for w, tr, bev in zip(ws, tracks, bad_events):
                n_fixes += tr.ts_ms.size
                n_events += tr.event_ts_ms.size
                subjects.extend(_assignments(w, cal, start_text))
                features.extend(w.features)
                rows = [(int(t), w.device_ids[int(d)], format_ms(int(t)), "strap_tamper")
                        for t, d in zip(tr.event_ts_ms, tr.event_device_idx)]
                rows += [(t_ms, dev, ts_text, UNKNOWN_EVENT_NAME) for t_ms, dev, ts_text in bev]
                rows.sort(key=lambda r: r[0])
                event_rows.extend(r[1:] for r in rows)
    finally:
        writer.close()
        bar.close()

    with open(out / "events.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(EVENT_COLUMNS) + "\n")
        fh.writelines(f"{d},{t},{e}\n" for d, t, e in event_rows)
    (out / "subjects.json").write_text(_dump_lines("subjects", subjects), encoding="utf-8")
    (out / "zones.geojson").write_text(
        _dump_lines("features", features, head={"type": "FeatureCollection"}), encoding="utf-8")
    return SimulationSummary(
        out_dir=out, fixes_path=fixes_path, n_wearers=wearers, n_days=days,
        n_assignments=len(subjects), n_zones=len(features), n_fixes=n_fixes,
        n_events=n_events, n_bad_rows=n_bad, seconds=time.perf_counter() - t0,
    )


def _assignments(w, cal: Calendar, start_text: str) -> list[dict]:
    if len(w.device_ids) == 1:
        return [{"subject_id": w.subject_id, "device_id": w.device_ids[0], "start": start_text,
                 "end": None, "zones": list(w.zone_ids)}]
    swap_text = format_ms(swap_ms(w, cal))
    return [
        {"subject_id": w.subject_id, "device_id": w.device_ids[0], "start": start_text,
         "end": swap_text, "zones": list(w.zone_ids)},
        {"subject_id": w.subject_id, "device_id": w.device_ids[1], "start": swap_text,
         "end": None, "zones": list(w.zone_ids)},
    ]
