"""`tagtrail detect` as a user meets it: every input error the contract lists
exits 2 with one line naming the item and writes nothing; output does not
depend on the Numba thread count or the run; store mode equals file mode."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli.main import main
from conftest import EXAMPLES

BASE = EXAMPLES / "quarantine_rows"  # fixes, events, subjects, zones; as-of in its command


def _copy_case(tmp_path: Path) -> Path:
    d = tmp_path / "case"
    shutil.copytree(BASE, d)
    return d


def _run(d: Path, out: Path, **override) -> list[str]:
    args = {"--fixes": d / "fixes.csv", "--events": d / "events.csv", "--subjects": d / "subjects.json",
            "--zones": d / "zones.geojson"}
    args.update(override)
    words = ["detect"]
    for k, v in args.items():
        if v is not None:
            words += [k, str(v)]
    return words + ["--out", str(out), "--quiet"]


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# (id, how to break the case, text the one-line message must contain)
INPUT_ERRORS = [
    ("subjects-missing", lambda d: {"--subjects": d / "nope.json"}, "nope.json"),
    ("subjects-not-json", lambda d: {"--subjects": _write(d / "s.json", "{")}, "s.json"),
    ("subjects-bad-shape", lambda d: {"--subjects": _write(d / "s.json", '{"subjects": {}}')}, "subjects"),
    ("subjects-naive-start", lambda d: {"--subjects": _write(d / "s.json", json.dumps(
        {"subjects": [{"subject_id": "S", "device_id": "D", "start": "2024-01-01T00:00:00"}]}))}, "S"),
    ("subjects-overlap", lambda d: {"--subjects": _write(d / "s.json", json.dumps({"subjects": [
        {"subject_id": "S1", "device_id": "D", "start": "2024-01-01T00:00:00Z"},
        {"subject_id": "S2", "device_id": "D", "start": "2024-01-02T00:00:00Z"}]}))}, "D"),
    ("subjects-unknown-zone", lambda d: {"--subjects": _write(d / "s.json", json.dumps({"subjects": [
        {"subject_id": "S1", "device_id": "D", "start": "2024-01-01T00:00:00Z", "zones": ["NOPE-9"]}]}))}, "NOPE-9"),
    ("zones-missing", lambda d: {"--zones": d / "none.geojson"}, "none.geojson"),
    ("zones-bowtie", lambda d: {"--zones": EXAMPLES / "bad_zone" / "zones.geojson",
                                "--subjects": EXAMPLES / "bad_zone" / "subjects.json"}, "EXC-bowtie"),
    ("policy-unknown-key", lambda d: {"--policy": _write(d / "p.json", '{"grace": 3}')}, "grace"),
    ("policy-bad-fraction", lambda d: {"--policy": _write(d / "p.json", '{"curfew_missed_fraction": 0}')},
     "curfew_missed_fraction"),
    ("policy-missing", lambda d: {"--policy": d / "nop.json"}, "nop.json"),
    ("as-of-invalid", lambda d: {"--as-of": "2024-02-30T00:00:00Z"}, "--as-of"),
    ("as-of-naive", lambda d: {"--as-of": "2024-06-01T10:00:00"}, "--as-of"),
    ("fixes-missing", lambda d: {"--fixes": d / "gone.csv"}, "gone.csv"),
    ("fixes-extension", lambda d: {"--fixes": _write(d / "fixes.txt", "device_id,ts,lat,lon\n")}, "fixes.txt"),
    ("fixes-missing-column", lambda d: {"--fixes": _write(d / "f.csv", "device_id,ts,lat\nD1,2024-06-01T10:00:00Z,51\n")},
     "lon"),
    ("fixes-not-utf8", lambda d: {"--fixes": _write(d / "f.csv", b"device_id,ts,lat,lon\n\xff\xfe,1,2,3\n")}, "f.csv"),
    ("fixes-bad-parquet", lambda d: {"--fixes": _write(d / "f.parquet", b"PAR1 not really")}, "f.parquet"),
    ("events-missing-column", lambda d: {"--events": _write(d / "e.csv", "device_id,ts\nD1,2024-06-01T10:00:00Z\n")},
     "event"),
    ("events-missing", lambda d: {"--events": d / "ev.csv"}, "ev.csv"),
]


@pytest.mark.parametrize("break_case,needle", [pytest.param(f, n, id=i) for i, f, n in INPUT_ERRORS])
def test_input_error_exits_2_naming_item(tmp_path, capsys, break_case, needle):
    d = _copy_case(tmp_path)
    out = tmp_path / "out"
    code = main(_run(d, out, **break_case(d)))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert needle in err
    assert not out.exists()  # nothing written: no breaches.jsonl, no quarantine.csv, not even the directory


@pytest.mark.parametrize("break_case,needle", [pytest.param(f, n, id=i) for i, f, n in INPUT_ERRORS])
def test_input_error_leaves_an_existing_out_dir_as_it_was(tmp_path, capsys, break_case, needle):
    """Exit 2 into a directory that holds an earlier run's outputs: both files keep their
    bytes, and nothing is added (no fresh quarantine.csv beside a stale breaches.jsonl)."""
    d = _copy_case(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    before = {"breaches.jsonl": b'{"earlier": "run"}\n', "quarantine.csv": b"source,row,reason\nfixes,1,bad_device\n"}
    for name, data in before.items():
        (out / name).write_bytes(data)
    assert main(_run(d, out, **break_case(d))) == 2
    assert needle in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_same_output_with_one_or_two_threads_and_across_runs(tmp_path):
    d = EXAMPLES / "exclusion_hole"
    args = lambda out: ["detect", "--fixes", str(d / "fixes.csv"), "--subjects", str(d / "subjects.json"),
                        "--zones", str(d / "zones.geojson"), "--out", str(out), "--quiet"]
    exe = Path(sys.executable).parent / "tagtrail"
    outputs = []
    for i, threads in enumerate((1, 2, 2)):
        out = tmp_path / f"o{i}"
        p = subprocess.run([str(exe), *args(out)], env={**os.environ, "NUMBA_NUM_THREADS": str(threads)},
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        outputs.append((out / "breaches.jsonl").read_bytes())
    assert outputs[0] and outputs[0] == outputs[1] == outputs[2]


def test_store_mode_equals_file_mode(tmp_path, capsys):
    from trails.sim.simulate import simulate

    sim = simulate(tmp_path / "in", wearers=12, days=3, seed=11, start="2024-03-29", bad_row_rate=0.01)
    inp = tmp_path / "in"
    home = tmp_path / "home"
    assert main(["ingest", str(sim.fixes_path), "--events", str(inp / "events.csv"), "--home", str(home)]) == 0
    common = ["--subjects", str(inp / "subjects.json"), "--zones", str(inp / "zones.geojson"), "--quiet"]
    assert main(["detect", "--fixes", str(sim.fixes_path), "--events", str(inp / "events.csv"),
                 "--out", str(tmp_path / "files"), *common]) == 0
    assert main(["detect", "--home", str(home), "--out", str(tmp_path / "store"), *common]) == 0
    by_files = (tmp_path / "files" / "breaches.jsonl").read_text()
    assert by_files.count("\n") > 5
    assert (tmp_path / "store" / "breaches.jsonl").read_text() == by_files


def test_store_mode_period_reads_only_that_period(tmp_path):
    from trails.sim.simulate import simulate

    sim = simulate(tmp_path / "in", wearers=6, days=4, seed=5, start="2024-01-08")
    inp = tmp_path / "in"
    home = tmp_path / "home"
    assert main(["ingest", str(sim.fixes_path), "--home", str(home)]) == 0
    out = tmp_path / "out"
    assert main(["detect", "--home", str(home), "--subjects", str(inp / "subjects.json"),
                 "--zones", str(inp / "zones.geojson"), "--from", "2024-01-09T00:00:00Z",
                 "--to", "2024-01-10T00:00:00Z", "--out", str(out), "--quiet"]) == 0
    records = [json.loads(l) for l in (out / "breaches.jsonl").read_text().splitlines()]
    assert records
    for r in records:
        assert "2024-01-09T00:00:00.000Z" <= r["start"] <= r["end"] <= "2024-01-10T00:00:00.000Z"
