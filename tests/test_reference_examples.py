"""The slow reference (`tests/reference.py`) reproduces every contract example.

Run on its own with ``pytest -m reference tests/test_reference_examples.py``.
Reads ../shared/contract/examples in place (never copied into the repo).
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from reference import reference_detect
from reference_io import load_case

pytestmark = pytest.mark.reference

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "contract" / "examples"


def _cases():
    if not EXAMPLES.is_dir():
        return []
    out = []
    for d in sorted(EXAMPLES.iterdir()):
        code = d / "expected" / "exit_code"
        if code.is_file() and code.read_text().strip() == "0":
            out.append(d)
    return out


CASES = _cases()


def _same_record(got: dict, want: dict) -> bool:
    if list(got) != list(want) and set(got) != set(want):
        return False
    for k, w in want.items():
        g = got[k]
        if isinstance(w, (int, float)) and not isinstance(w, bool):
            if not isinstance(g, (int, float)) or isinstance(g, bool) or g != w:
                return False
        elif g != w:
            return False
    return True


@pytest.mark.skipif(not CASES, reason="contract examples not found")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reference_matches_example(case: Path):
    inputs = load_case(str(case))
    row_quarantine = inputs.pop("row_quarantine")
    records, q_8_10 = reference_detect(**inputs)

    # breaches.jsonl: parsed JSON, numbers numerically, same order
    with open(case / "expected" / "breaches.jsonl", encoding="utf-8") as fh:
        want = [json.loads(line) for line in fh if line.strip()]
    got = json.loads(json.dumps(records))  # what would be written
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert _same_record(g, w), (g, w)

    # quarantine.csv: whole file, reasons 1-7 (reference_io) + 8-10 (reference_detect)
    rows = sorted(row_quarantine + q_8_10, key=lambda q: (0 if q[0] == "events" else 1, q[1]))
    with open(case / "expected" / "quarantine.csv", newline="", encoding="utf-8") as fh:
        want_q = list(csv.reader(fh))
    assert want_q[0] == ["source", "row", "reason"]
    assert [(s, str(r), reason) for s, r, reason in rows] == [tuple(x) for x in want_q[1:]]


def test_examples_present():
    if os.environ.get("TAGTRAIL_REQUIRE_EXAMPLES"):
        assert CASES
