"""geofence.subjects: SUBJECTS.json loading and every contract input error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from geofence.errors import SubjectsError
from geofence.model import Assignment
from geofence.subjects import load_subjects
from geofence.zones import load_zones

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "contract" / "examples"
ZONES = {"Z1", "Z2"}
T0 = "2024-03-01T12:00:00Z"
T0_MS = 1_709_294_400_000


def entry(sid="S-001", dev="D-001", start=T0, end=None, zones=("Z1",), **extra):
    out = {"subject_id": sid, "device_id": dev, "start": start, "end": end, "zones": zones if zones is None or isinstance(zones, str) else list(zones)}
    out.update(extra)
    return out


def write(tmp_path, obj):
    path = tmp_path / "subjects.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


@pytest.mark.parametrize("example", sorted(p.parent.name for p in EXAMPLES.glob("*/subjects.json")))
def test_contract_examples_load(example):
    folder = EXAMPLES / example
    # the zone ids of the two examples whose zones file is the error they show
    bad_zone_ids = {"bad_zone": {"EXC-bowtie"}, "zone_swapped": {"S1-home"}}
    zone_ids = bad_zone_ids.get(example) or {z.zone_id for z in load_zones(folder / "zones.geojson")}
    raw = json.loads((folder / "subjects.json").read_text())
    got = load_subjects(folder / "subjects.json", zone_ids)
    assert [a.subject_id for a in got] == [s["subject_id"] for s in raw["subjects"]]


def test_shapes_and_defaults(tmp_path):
    doc = {"subjects": [
        entry(zones=("Z1", "Z2"), note="ignored"),
        {"subject_id": " S 2 ", "device_id": "D-002", "start": " 2024-03-01 12:00:00.9999+01:00 "},
        entry("S-003", "D-003", end="2024-03-02T00:00:00z", zones=()),
        entry("S-004", "D-004", zones=None),
    ], "other": 1}
    got = load_subjects(write(tmp_path, doc), ZONES)
    assert got[0] == Assignment("S-001", "D-001", T0_MS, None, ("Z1", "Z2"))
    assert got[1] == Assignment(" S 2 ", "D-002", T0_MS - 3_600_000 + 999, None, ())
    assert got[2].end_ms == T0_MS + 12 * 3_600_000 and got[2].zones == ()
    assert got[3].zones == ()


def test_empty_list(tmp_path):
    assert load_subjects(write(tmp_path, {"subjects": []}), ZONES) == ()


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param([entry("A", "D1", end="2024-03-02T00:00:00Z"), entry("A", "D2", start="2024-03-02T00:00:00Z")], id="subject-swaps-device-touching"),
        pytest.param([entry("A", "D1", end="2024-03-02T00:00:00Z"), entry("B", "D1", start="2024-03-02T00:00:00Z")], id="device-passes-between-subjects"),
        pytest.param([entry("B", "D1", start="2024-03-05T00:00:00Z"), entry("A", "D1", end="2024-03-02T00:00:00Z")], id="unsorted-disjoint"),
    ],
)
def test_non_overlapping_assignments_are_fine(tmp_path, doc):
    assert len(load_subjects(write(tmp_path, {"subjects": doc}), ZONES)) == 2


BAD = [
    ("top-level-list", [entry()], "must be a JSON object"),
    ("subjects-missing", {}, "'subjects' must be a list"),
    ("subjects-object", {"subjects": {"a": 1}}, "'subjects' must be a list"),
    ("entry-not-object", {"subjects": ["S-001"]}, "subjects[0]: must be an object"),
    ("subject-id-missing", {"subjects": [{"device_id": "D", "start": T0}]}, "subjects[0]: subject_id must be a non-empty string"),
    ("subject-id-empty", {"subjects": [entry(sid="")]}, "subjects[0]: subject_id must be a non-empty string"),
    ("subject-id-number", {"subjects": [entry(sid=7)]}, "subjects[0]: subject_id must be a non-empty string"),
    ("device-id-empty", {"subjects": [entry(dev="")]}, "subjects[0] (subject_id 'S-001'): device_id must be a non-empty string"),
    ("device-id-number", {"subjects": [entry(dev=12)]}, "subjects[0] (subject_id 'S-001'): device_id must be a non-empty string"),
    ("start-missing", {"subjects": [{"subject_id": "S-001", "device_id": "D"}]}, "subjects[0] (subject_id 'S-001'): start is missing"),
    ("start-null", {"subjects": [entry(start=None)]}, "subjects[0] (subject_id 'S-001'): start must be an RFC 3339 timestamp string"),
    ("start-naive", {"subjects": [entry(start="2024-03-01T12:00:00")]}, "subjects[0] (subject_id 'S-001'): start '2024-03-01T12:00:00' has no UTC offset"),
    ("start-impossible-date", {"subjects": [entry(start="2024-02-30T12:00:00Z")]}, "subjects[0] (subject_id 'S-001'): start '2024-02-30T12:00:00Z' is not an RFC 3339"),
    ("start-date-only", {"subjects": [entry(start="2024-03-01")]}, "start '2024-03-01' is not an RFC 3339"),
    ("start-epoch-number", {"subjects": [entry(start=1709294400)]}, "start must be an RFC 3339 timestamp string"),
    ("end-naive", {"subjects": [entry(end="2024-03-02 12:00:00")]}, "subjects[0] (subject_id 'S-001'): end '2024-03-02 12:00:00' has no UTC offset"),
    ("end-garbage", {"subjects": [entry(end="tomorrow")]}, "subjects[0] (subject_id 'S-001'): end 'tomorrow' is not an RFC 3339"),
    ("end-equals-start", {"subjects": [entry(end="2024-03-01T13:00:00+01:00")]}, "subjects[0] (subject_id 'S-001'): end '2024-03-01T13:00:00+01:00' is not after start"),
    ("end-before-start", {"subjects": [entry(end="2024-02-01T00:00:00Z")]}, "is not after start"),
    ("zones-string", {"subjects": [entry(zones="Z1")]}, "subjects[0] (subject_id 'S-001'): zones must be a list"),
    ("zones-duplicate", {"subjects": [entry(zones=("Z1", "Z1"))]}, "subjects[0] (subject_id 'S-001'): zones lists 'Z1' twice"),
    ("zones-not-string", {"subjects": [entry(zones=(1,))]}, "subjects[0] (subject_id 'S-001'): zones: 1 is not a zone id"),
    ("zones-undefined", {"subjects": [entry(zones=("Z9",))]}, "subjects[0] (subject_id 'S-001'): zone 'Z9' is not defined in ZONES.geojson"),
    ("device-overlap", {"subjects": [entry("A", "D1", end="2024-03-03T00:00:00Z"), entry("B", "D1", start="2024-03-02T00:00:00Z")]},
     "subjects[1] (subject_id 'B'): overlaps subjects[0] (subject_id 'A') in time: one device ('D1')"),
    ("device-overlap-open-end", {"subjects": [entry("B", "D1", start="2024-04-01T00:00:00Z"), entry("A", "D1")]},
     "subjects[1] (subject_id 'A'): overlaps subjects[0] (subject_id 'B') in time: one device ('D1')"),
    ("device-same-start", {"subjects": [entry("A", "D1", end="2024-03-03T00:00:00Z"), entry("B", "D1", end="2024-03-02T00:00:00Z")]},
     "overlaps subjects[0] (subject_id 'A')"),
    ("subject-overlap", {"subjects": [entry("A", "D1"), entry("A", "D2", start="2024-05-01T00:00:00Z")]},
     "subjects[1] (subject_id 'A'): overlaps subjects[0] (subject_id 'A') in time: one subject ('A')"),
    ("subject-overlap-contained", {"subjects": [entry("A", "D1", end="2024-04-01T00:00:00Z"), entry("A", "D2", start="2024-03-10T00:00:00Z", end="2024-03-11T00:00:00Z")]},
     "one subject ('A')"),
]


@pytest.mark.parametrize(("doc", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_input_errors_name_the_assignment(tmp_path, doc, fragment):
    with pytest.raises(SubjectsError) as info:
        load_subjects(write(tmp_path, doc), ZONES)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("content", "fragment"), [(None, "file not found"), ("{", "not valid JSON"), ('{"subjects": [], "subjects": []}', "duplicate key")],
                         ids=["missing", "not-json", "duplicate-key"])
def test_file_errors_name_the_file(tmp_path, content, fragment):
    path = tmp_path / "subjects.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SubjectsError) as info:
        load_subjects(path, ZONES)
    assert str(path) in str(info.value) and fragment in str(info.value)


# --------------------------------------------------------------------------- ids and the timestamp range
@pytest.mark.parametrize("doc,message", [
    ({"subjects": [entry(dev="D" * 129)]},
     "subjects[0] (subject_id 'S-001'): device_id '" + "D" * 56 + "... is 129 characters long (at most 128)"),
    ({"subjects": [entry(dev="D\u202e1")]},
     "subjects[0] (subject_id 'S-001'): device_id 'D\\u202e1' holds U+202E (RIGHT-TO-LEFT OVERRIDE) at character 2: "
     "control, format and surrogate characters are not allowed"),
    ({"subjects": [entry(sid="S\x001")]},
     "subjects[0]: subject_id 'S\\x001' holds U+0000 (category Cc) at character 2: "
     "control, format and surrogate characters are not allowed"),
    ({"subjects": [entry(zones=("Z1", "Z\u200b2"))]},
     "subjects[0] (subject_id 'S-001'): zones: zone id 'Z\\u200b2' holds U+200B (ZERO WIDTH SPACE) at character 2: "
     "control, format and surrogate characters are not allowed"),
    ({"subjects": [entry(start="9999-12-31T23:59:59-23:59")]},
     "subjects[0] (subject_id 'S-001'): start '9999-12-31T23:59:59-23:59' is not a timestamp: its instant in UTC lies "
     "outside 0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z"),
    ({"subjects": [entry(end="0001-01-01T00:30:00+01:00", start="0001-01-01T00:00:00+01:00")]},
     "subjects[0] (subject_id 'S-001'): start '0001-01-01T00:00:00+01:00' is not a timestamp: its instant in UTC lies "
     "outside 0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z"),
], ids=["device-129", "device-rlo", "subject-nul", "zone-id-zwsp", "start-year-10000", "start-year-0"])
def test_ids_and_timestamp_range_are_input_errors(tmp_path, doc, message):
    with pytest.raises(SubjectsError) as info:
        load_subjects(write(tmp_path, doc), ZONES | {"Z\u200b2"})
    assert str(info.value) == message


def test_ids_of_128_characters_and_the_range_ends_are_fine(tmp_path):
    doc = {"subjects": [entry(sid="S" * 128, dev="D\u00e9" * 64, start="0001-01-01T00:00:00Z", end="9999-12-31T23:59:59.999Z")]}
    (a,) = load_subjects(write(tmp_path, doc), ZONES)
    assert (a.subject_id, a.device_id) == ("S" * 128, "D\u00e9" * 64)
    assert (a.start_ms, a.end_ms) == (-62_135_596_800_000, 253_402_300_799_999)
