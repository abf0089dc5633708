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
    assert fixes.row.tolist() == [1]
    assert fixes.device_id.to_pylist() == ["D1"]
    # the quoted newline is read into the field (RFC 4180), and an id holding one is bad_device
    assert rej.row.tolist() == [2, 3] and rej.reason_names() == ["bad_device", "missing_device"]
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


# --------------------------------------------------------------------------- header messages
def test_doubled_bom_is_named_not_reported_as_a_missing_column(tmp_path):
    p = write(tmp_path / "f.csv", b"\xef\xbb\xbf\xef\xbb\xbfdevice_id,ts,lat,lon\nD1,2024-06-01T10:00:00Z,51,0\n")
    with pytest.raises(InputError) as exc:
        read_fixes(p)
    assert str(exc.value) == (
        f"fixes file {str(p)!r}: missing required column 'device_id': the file starts with two byte-order "
        "marks (U+FEFF), so the first column is named '\\ufeffdevice_id', not 'device_id'; save the file as "
        "UTF-8 with at most one BOM; the header holds ['\\ufeffdevice_id', 'ts', 'lat', 'lon']")


@pytest.mark.parametrize("header,hint", [
    ("device_id;ts;lat;lon", "the header looks semicolon-separated (';'); columns must be separated by commas"),
    ("device_id\tts\tlat\tlon", "the header looks tab-separated ('\\t'); columns must be separated by commas"),
    ("Device_ID,ts,lat,lon", "column 'Device_ID' differs only in letter case (column names are case-sensitive)"),
    ('"""device_id""",ts,lat,lon', "column '\"device_id\"' has quote marks inside its name (names are written without them)"),
], ids=["semicolon", "tab", "case", "quoted"])
def test_missing_column_message_says_what_the_header_holds(tmp_path, header, hint):
    p = write(tmp_path / "f.csv", header + "\n")
    with pytest.raises(InputError) as exc:
        read_fixes(p)
    names = next(csv.reader([header]))
    assert str(exc.value) == f"fixes file {str(p)!r}: missing required column 'device_id': {hint}; the header holds {names!r}"


def test_missing_column_without_a_likely_cause_lists_the_header(tmp_path):
    p = write(tmp_path / "f.csv", "tag,ts,lat,lon\n")
    with pytest.raises(InputError) as exc:
        read_fixes(p)
    assert str(exc.value) == f"fixes file {str(p)!r}: missing required column 'device_id'; the header holds ['tag', 'ts', 'lat', 'lon']"


# --------------------------------------------------------------------------- Parquet memory bounds
def test_dictionary_encoded_parquet_strings_are_read_as_dictionaries(tmp_path):
    from trails.readers import iter_raw_batches

    n = 1000
    dev = pa.DictionaryArray.from_arrays(pa.array(np.arange(n) % 3, pa.int32()), pa.array(["D1", "D" * 5000, "D\u200b2"]))
    t = pa.table({"device_id": dev, "ts": pa.array(["2024-06-01T10:00:00Z"] * n), "lat": np.full(n, 51.5), "lon": np.zeros(n)})
    pq.write_table(t, tmp_path / "f.parquet")
    (raw,) = list(iter_raw_batches(tmp_path / "f.parquet"))
    assert pa.types.is_dictionary(raw.column("device_id").type)
    fixes, rej = read_fixes(tmp_path / "f.parquet")
    assert fixes.row.tolist() == list(range(1, n + 1, 3)) and set(fixes.device_id.to_pylist()) == {"D1"}
    assert rej.reason_names() == ["bad_device"] * (n - len(fixes))


def test_parquet_chunk_too_large_once_decoded_is_refused(tmp_path, monkeypatch):
    import trails.readers as readers

    monkeypatch.setattr(readers, "MAX_CHUNK_BYTES", 1 << 20)
    monkeypatch.setattr(readers, "MAX_CHUNK_BYTES_PER_ROW", 1024)
    n = 100
    t = pa.table({"device_id": ["D" * 65536] * n, "ts": pa.array(["2024-06-01T10:00:00Z"] * n), "lat": np.full(n, 51.5),
                  "lon": np.zeros(n)})
    p = tmp_path / "f.parquet"
    pq.write_table(t, p, use_dictionary=False, compression="zstd")
    size = pq.ParquetFile(p).metadata.row_group(0).column(0).total_uncompressed_size
    assert size > 100 * 65536 > p.stat().st_size * 100  # compressed, the column is small
    with pytest.raises(InputError) as exc:
        read_fixes(p)
    assert str(exc.value) == (
        f"fixes file {str(p)!r}: column 'device_id' in row group 0 would take {size:,} bytes for 100 rows once "
        "decoded, more than the limit of 1,048,576 (the larger of 1,048,576 bytes and 1,024 bytes per row): "
        "refusing to read it")
