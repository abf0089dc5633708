"""CSV/Parquet readers (trails.readers) and the contract's example files."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest

from trails.errors import InputError
from trails.readers import iter_fix_batches, read_events, read_fixes

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "contract" / "examples"
LATER = {"after_as_of", "unassigned", "duplicate"}


@pytest.mark.parametrize("case,sources", [
    ("quarantine_rows", ("fixes", "events")),
    ("timestamp_forms", ("fixes",)),
], ids=str)
def test_contract_examples_reasons_1_to_7(case, sources):
    d = EXAMPLES / case
    expected = {(r["source"], int(r["row"])): r["reason"] for r in csv.DictReader(open(d / "expected" / "quarantine.csv"))}
    got = {}
    for src in sources:
        reader = read_fixes if src == "fixes" else read_events
        kept, rej = reader(d / f"{src}.csv")
        got.update({(src, int(r)): name for r, name in zip(rej.row, rej.reason_names())})
        # rows quarantined later (8-10) are kept here
        for (s, row), reason in expected.items():
            if s == src and reason in LATER:
                assert row in set(kept.row.tolist())
    assert got == {k: v for k, v in expected.items() if v not in LATER}


def test_parquet_example_reads_cleanly():
    fixes, rej = read_fixes(EXAMPLES / "parquet_input" / "fixes.parquet")
    assert len(rej) == 0 and len(fixes) > 0
    assert fixes.row[0] == 1 and (np.diff(fixes.row) == 1).all()
    assert fixes.ts_ms.dtype == np.int64


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_csv_header_any_order_bom_quotes_blank_lines(tmp_path):
    p = write(tmp_path / "f.csv", (
        "\ufeffextra,lon,\"lat\",ts,device_id\r\n"
        "x,-0.1,51.5,2024-06-01T10:00:00Z,D1\r\n"
        "\r\n"
        "\"a,b\",-0.1,51.5,2024-06-01T10:01:00Z,\"D\n2\"\r\n"
        "y,-0.1,51.5,2024-06-01T10:02:00Z,\"  \"\r\n"
    ))
    fixes, rej = read_fixes(p)
    assert fixes.row.tolist() == [1, 2]
    assert fixes.device_id.to_pylist() == ["D1", "D\n2"]
    assert rej.row.tolist() == [3] and rej.reason_names() == ["missing_device"]
    assert np.isnan(fixes.accuracy_m).all()


def test_csv_no_null_inference(tmp_path):
    p = write(tmp_path / "f.csv", "device_id,ts,lat,lon\nNULL,2024-06-01T10:00:00Z,51,0\nNA,2024-06-01T10:00:00Z,51,0\n")
    fixes, rej = read_fixes(p)
    assert fixes.device_id.to_pylist() == ["NULL", "NA"]


def test_batches_number_rows_globally(tmp_path):
    lines = ["device_id,ts,lat,lon"] + [f"D{i % 3},2024-06-01T10:{i % 60:02d}:00Z,51,{'x' if i % 7 == 0 else 0}" for i in range(50)]
    p = write(tmp_path / "f.csv", "\n".join(lines) + "\n")
    rows, bad = [], []
    for f, r in iter_fix_batches(p, batch_rows=8):
        assert len(f) + len(r) <= 8
        rows += f.row.tolist()
        bad += r.row.tolist()
    assert sorted(rows + bad) == list(range(1, 51))
    assert bad == [i + 1 for i in range(50) if i % 7 == 0]


@pytest.mark.parametrize("name,content,message", [
    ("f.txt", "device_id,ts,lat,lon\n", "extension"),
    ("missing.csv", None, "not found"),
    ("f.csv", "device_id,ts,lat\nD1,2024-06-01T10:00:00Z,51\n", "'lon'"),
    ("f.csv", "Device_id,ts,lat,lon\n", "'device_id'"),
    ("f.csv", b"device_id,ts,lat,lon\nD\xff1,2024-06-01T10:00:00Z,51,0\n", "UTF-8"),
    ("f.csv", b"device_id,ts,lat,lon,note\nD1,2024-06-01T10:00:00Z,51,0,\xc3\x28\n", "UTF-8"),
    ("f.csv", "", "header"),
    ("f.parquet", b"PAR1 not really", "unreadable"),
], ids=["ext", "missing", "column", "case", "utf8", "utf8-extra-column", "empty", "corrupt-parquet"])
def test_file_errors(tmp_path, name, content, message):
    p = tmp_path / name
    if content is not None:
        write(p, content)
    with pytest.raises(InputError) as exc:
        read_fixes(p)
    assert message in str(exc.value)
    assert name in str(exc.value)
    assert "\n" not in str(exc.value)


def test_events_missing_event_column(tmp_path):
    p = write(tmp_path / "e.csv", "device_id,ts\nD1,2024-06-01T10:00:00Z\n")
    with pytest.raises(InputError, match="'event'"):
        read_events(p)


def test_parquet_types(tmp_path):
    t = pa.table({
        "device_id": pa.array([101, 102, None], pa.int64()),
        "ts": pa.array([1_717_236_000_123_456, -1, 5], pa.timestamp("us", tz="UTC")),
        "lat": pa.array([51.5, 51.5, 51.5]),
        "lon": pa.array([0, 0, 0], pa.int32()),
        "accuracy_m": pa.array([np.nan, None, 3.0]),
        "battery_pct": pa.array(["50", " ", "x"]),
    })
    p = tmp_path / "f.parquet"
    pq.write_table(t, p)
    fixes, rej = read_fixes(p)
    assert fixes.device_id.to_pylist() == ["102"]
    assert fixes.ts_ms.tolist() == [-1]
    assert rej.row.tolist() == [1, 3]
    assert rej.reason_names() == ["bad_accuracy", "missing_device"]


def test_parquet_naive_and_bad_types(tmp_path):
    p = tmp_path / "f.parquet"
    pq.write_table(pa.table({"device_id": ["D1"], "ts": pa.array([0], pa.timestamp("ms")), "lat": [1.0], "lon": [1.0]}), p)
    _, rej = read_fixes(p)
    assert rej.reason_names() == ["naive_timestamp"]
    pq.write_table(pa.table({"device_id": [1.5], "ts": pa.array([0], pa.timestamp("ms")), "lat": [1.0], "lon": [1.0]}), p)
    with pytest.raises(InputError, match="device_id"):
        read_fixes(p)
    pq.write_table(pa.table({"device_id": ["D1"], "ts": [0], "lat": [1.0], "lon": [1.0]}), p)
    with pytest.raises(InputError, match="'ts'"):
        read_fixes(p)


def test_csv_and_parquet_agree(tmp_path):
    src = EXAMPLES / "quarantine_rows" / "fixes.csv"
    a, ra = read_fixes(src)
    t = pa.csv.read_csv(src, convert_options=pa.csv.ConvertOptions(
        column_types={c: pa.string() for c in ["device_id", "ts", "lat", "lon", "accuracy_m", "battery_pct"]},
        strings_can_be_null=False))
    pq.write_table(t, tmp_path / "f.parquet")
    b, rb = read_fixes(tmp_path / "f.parquet")
    assert a.row.tolist() == b.row.tolist() and a.ts_ms.tolist() == b.ts_ms.tolist()
    assert ra.reason_names() == rb.reason_names()


def test_whitespace_only_line_is_blank_but_ragged_row_is_unreadable(tmp_path):
    p = write(tmp_path / "f.csv", "device_id,ts,lat,lon\nD1,2024-06-01T10:00:00Z,51,0\n \t\nD2,2024-06-01T10:00:00Z,51,0\n")
    fixes, rej = read_fixes(p)
    assert fixes.row.tolist() == [1, 2] and len(rej) == 0
    p = write(tmp_path / "g.csv", "device_id,ts,lat,lon\nD1,2024-06-01T10:00:00Z,51\n")
    with pytest.raises(InputError, match="g.csv"):
        read_fixes(p)
