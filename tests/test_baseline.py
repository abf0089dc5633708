"""The pandas/shapely baseline (benchmarks/baseline.py) reproduces the contract examples.

The detect benchmark compares tagtrail against this baseline, so it must give
the same records: every example with exit code 0 is run and compared with
expected/breaches.jsonl (and quarantine.csv).
"""
from __future__ import annotations

import csv
import json
import shlex
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from baseline import run_baseline  # noqa: E402

CASES = sorted(p for p in EXAMPLES.glob("*") if p.is_dir()
               and (p / "expected" / "exit_code").read_text().strip() == "0") if EXAMPLES.is_dir() else []

#: quarantine-grammar edge cases the baseline does not reproduce exactly (none so far)
QUARANTINE_XFAIL: set[str] = set()


def _args(case: Path) -> dict:
    words = shlex.split((case / "command.txt").read_text())[2:]
    opts = dict(zip(words[::2], words[1::2]))
    path = lambda k: str(case / opts[k]) if k in opts else None  # noqa: E731
    return {"fixes_path": path("--fixes"), "subjects_path": path("--subjects"), "zones_path": path("--zones"),
            "policy_path": path("--policy"), "events_path": path("--events"), "as_of": opts.get("--as-of")}


def _expected(case: Path) -> list[dict]:
    text = (case / "expected" / "breaches.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def results():
    return {c.name: run_baseline(**_args(c)) for c in CASES}


def test_cases_found():
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_baseline_records(case: Path, results):
    got = results[case.name].records
    assert got == _expected(case)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(strict=True)) if c.name in QUARANTINE_XFAIL
                                  else c for c in CASES], ids=[c.name for c in CASES])
def test_baseline_quarantine(case: Path, results):
    with open(case / "expected" / "quarantine.csv", newline="", encoding="utf-8") as fh:
        want = [tuple(r) for r in csv.reader(fh)][1:]
    q = results[case.name].quarantine
    got = [(s, str(r), why) for s, r, why in zip(q["source"], q["row"], q["reason"])]
    assert got == want
