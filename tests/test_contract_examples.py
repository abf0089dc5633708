"""Every case in ../shared/contract/examples, run through the real CLI entry
point, must reproduce expected/ exactly (records as parsed JSON, numbers
numerically, same order; quarantine.csv row for row; exit code)."""
from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import pytest

from api.cli.main import main
from conftest import EXAMPLES

CASES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) if EXAMPLES.is_dir() else []


def _args(case: Path, out: Path) -> list[str]:
    words = shlex.split((case / "command.txt").read_text(encoding="utf-8"))[2:]
    i = words.index("--out")
    words = words[:i] + words[i + 2:]
    resolved = []
    for w in words:
        resolved.append(str(case / w) if (case / w).exists() and not w.startswith("-") else w)
    return ["detect", *resolved, "--out", str(out), "--quiet"]


def test_examples_are_present():
    assert len(CASES) >= 20, f"expected the contract's examples under {EXAMPLES}"


@pytest.mark.parametrize("name", CASES)
def test_contract_example(name, tmp_path, capsys):
    case = EXAMPLES / name
    out = tmp_path / "out"
    code = main(_args(case, out))
    want_code = int((case / "expected" / "exit_code").read_text().strip())
    err = capsys.readouterr().err
    assert code == want_code, err
    if want_code != 0:  # "Exit 2, writing nothing": neither file, nor the directory
        assert not out.exists(), sorted(p.name for p in out.iterdir())
        assert len(err.strip().splitlines()) == 1, err
        return
    got = [json.loads(l) for l in (out / "breaches.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]
    want = [json.loads(l) for l in (case / "expected" / "breaches.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]
    norm = lambda rs: [{**r, "duration_s": float(r["duration_s"])} for r in rs]
    assert norm(got) == norm(want)
    with open(out / "quarantine.csv", newline="", encoding="utf-8") as fh:
        got_q = list(csv.reader(fh))
    with open(case / "expected" / "quarantine.csv", newline="", encoding="utf-8") as fh:
        want_q = list(csv.reader(fh))
    assert got_q == want_q
