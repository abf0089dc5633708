"""Breach and alert records: identity, formatting, ordering and output files
(CONTRACT.md, "Outputs").

Records are built column-wise by `geofence.detect`; only here, at the very
end, do they become one Python dict per record (records are few: thousands,
not millions).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trails.quarantine import REASONS, Rejected
from trails.timestamps import format_ms_array

__all__ = [
    "RECORD_TYPES",
    "RecordColumns",
    "breach_id",
    "to_dicts",
    "to_dicts_ordered",
    "sort_records",
    "record_key",
    "record_line",
    "write_outputs",
    "write_output_lines",
    "quarantine_rows",
]

#: Record types; `RecordColumns.type_code` indexes this tuple.
RECORD_TYPES: tuple[str, ...] = (
    "curfew_absence",
    "inclusion_exit",
    "exclusion_entry",
    "curfew_missed",
    "battery",
    "no_signal",
    "accumulated_battery",
    "strap_tamper",
    "low_battery",
)
TYPE_CODE = {name: i for i, name in enumerate(RECORD_TYPES)}


@dataclass(frozen=True)
class RecordColumns:
    """Records as parallel arrays. `zone_idx` is -1 for records without a zone;
    `is_alert` selects kind ``alert`` over ``breach``."""

    assignment_idx: np.ndarray
    type_code: np.ndarray
    zone_idx: np.ndarray
    start_ms: np.ndarray
    end_ms: np.ndarray
    priority: np.ndarray
    is_alert: np.ndarray

    @staticmethod
    def concat(parts: "list[RecordColumns]") -> "RecordColumns":
        if not parts:
            z = np.zeros(0, np.int64)
            return RecordColumns(z, z, z, z, z, z, np.zeros(0, np.bool_))
        return RecordColumns(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
            "assignment_idx", "type_code", "zone_idx", "start_ms", "end_ms", "priority", "is_alert")))

    def __len__(self) -> int:
        return int(self.start_ms.shape[0])


def breach_id(subject_id: str, type_: str, zone_id: str | None, start: str) -> str:
    """First 16 hex digits of SHA-256 of ``subject_id|type|zone_id|start``."""
    key = f"{subject_id}|{type_}|{zone_id or ''}|{start}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _duration(ms: int) -> int | float:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def to_dicts(cols: RecordColumns, subject_ids: list[str], device_ids: list[str],
             zone_ids: list[str]) -> list[dict]:
    """One dict per record with exactly the contract's keys, sorted."""
    return to_dicts_ordered(cols, subject_ids, device_ids, zone_ids)[0]


def to_dicts_ordered(cols: RecordColumns, subject_ids: list[str], device_ids: list[str],
                     zone_ids: list[str]) -> tuple[list[dict], np.ndarray]:
    """`to_dicts`, and for each output record its index in `cols` (so callers
    can keep the assignment and the instants without parsing them back)."""
    out = []
    starts, ends = format_ms_array(cols.start_ms), format_ms_array(cols.end_ms)
    for a, t, z, s, e, p, al, start, end in zip(cols.assignment_idx.tolist(), cols.type_code.tolist(),
                                                cols.zone_idx.tolist(), cols.start_ms.tolist(),
                                                cols.end_ms.tolist(), cols.priority.tolist(),
                                                cols.is_alert.tolist(), starts, ends):
        type_ = RECORD_TYPES[t]
        zone = zone_ids[z] if z >= 0 else None
        out.append({
            "breach_id": breach_id(subject_ids[a], type_, zone, start),
            "kind": "alert" if al else "breach",
            "type": type_,
            "subject_id": subject_ids[a],
            "device_id": device_ids[a],
            "zone_id": zone,
            "start": start,
            "end": end,
            "duration_s": _duration(e - s),
            "priority": int(p),
        })
    order = sorted(range(len(out)), key=lambda i: (out[i]["subject_id"], out[i]["start"], out[i]["type"],
                                                   out[i]["zone_id"] or ""))
    return [out[i] for i in order], np.asarray(order, np.int64)


def record_key(r: dict) -> tuple[str, str, str, str]:
    """The contract's order of records: (subject_id, start, type, zone_id or ""), code-point order."""
    return r["subject_id"], r["start"], r["type"], r["zone_id"] or ""


def record_line(r: dict) -> str:
    """One record as its breaches.jsonl line (without the newline)."""
    return json.dumps(r, ensure_ascii=False, separators=(",", ":"))


def sort_records(records: list[dict]) -> list[dict]:
    """Order by (subject_id, start, type, zone_id or ""), code-point order."""
    return sorted(records, key=record_key)


def quarantine_rows(parts: list[Rejected]) -> list[tuple[str, int, str]]:
    """(source, row, reason) sorted by source (events first) then row."""
    rows: list[tuple[str, int, str]] = []
    for rej in parts:
        if len(rej) == 0:
            continue
        order = np.argsort(rej.row, kind="stable")
        rows.extend((rej.source, int(r), REASONS[int(c)])
                    for r, c in zip(rej.row[order].tolist(), rej.reason[order].tolist()))
    return sorted(rows, key=lambda q: (q[0] != "events", q[0], q[1]))


def write_outputs(out_dir: str | os.PathLike, records: list[dict], quarantine: list[tuple],
                  *, header: tuple[str, ...] = ("source", "row", "reason")) -> None:
    """Write breaches.jsonl and quarantine.csv, each atomically (temp + rename)."""
    write_output_lines(out_dir, (record_line(r) for r in records), quarantine, header=header)


def write_output_lines(out_dir: str | os.PathLike, lines, quarantine: list[tuple],
                       *, header: tuple[str, ...] = ("source", "row", "reason")) -> None:
    """`write_outputs` from records already made lines (`record_line`), in order: bucketed
    detection holds its records this way (a few hundred bytes each, not a dict)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def atomic(name: str, write) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                write(fh)
            os.replace(tmp, out / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_jsonl(fh) -> None:
        for line in lines:
            fh.write(line + "\n")

    def write_csv(fh) -> None:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(quarantine)

    atomic("breaches.jsonl", write_jsonl)
    atomic("quarantine.csv", write_csv)
