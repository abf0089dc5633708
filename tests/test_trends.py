"""The trends release (issue 15, "Trends without exposing anyone"): `api.service.trends` is checked
against slow, obvious twins written here, over generated populations, then over HTTP.

What the suppression check proves (`test_no_suppressed_cell_can_be_solved`): for every (month, type)
column, an attacker who knows
- each published cell's value to within its rounding interval, and that it is >= 10,
- the published national total to within its rounding interval (or nothing, when it is suppressed),
- which suppressed cells are primary (wearers 0-9, onsets 0-45) and which secondary (>= 10),
finds at least TWO integer values consistent with all of it for every suppressed cell, for wearers and
for onsets separately. The feasible values are found by enumerating reachable sums (`_feasible_twin`),
not by the closed form the code uses. The coupling between a cell's wearers and its onsets (wearers <=
onsets <= 5 x wearers) is then applied once to the two sets, which must each keep two values (the code
does the same on intervals; table case ``onsets-pin-wearers``); repeating that narrowing through the
other cells of the column to a fixed point is not checked. No all-areas, all-types or all-months sum is
published, so the column is the only linear system.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from api.db.models import AssignmentRow, AuditEntry, BreachRow, ZoneRow, ZoneVersion
from api.service.boundaries import parse_boundaries, store_boundaries
from api.service.trends import (BASE, ONSET_CAP, THRESHOLD, Cell, feasible_ranges, protect_column, release,
                                round_to_base)
from api.service.trends_source import NOT_PLACED, Districts, read_onsets
import api_fixtures

api_env, api_template = api_fixtures.api_env, api_fixtures.api_template  # the fixtures, by name
ENGLAND = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "england_lad_2024_buc.geojson"
needs_england = pytest.mark.skipif(not ENGLAND.exists(), reason="../shared/data is not here")


# ------------------------------------------------------------------ slow, obvious twins
def _true_cells(onsets) -> dict[tuple[str, str, str], tuple[set[str], int]]:
    """(month, type, area) -> (wearers, capped onsets), placing each wearer-month by its earliest onset."""
    home: dict[tuple[str, str], str] = {}
    for month, wearer in {(o[0], o[2]) for o in onsets}:
        mine = sorted((o[4], o[1]) for o in onsets if o[0] == month and o[2] == wearer)
        home[(month, wearer)] = mine[0][1]
    out: dict[tuple[str, str, str], tuple[set[str], int]] = {}
    for month, wearer, type_ in {(o[0], o[2], o[3]) for o in onsets}:
        n = sum(1 for o in onsets if (o[0], o[2], o[3]) == (month, wearer, type_))
        key = (month, type_, home[(month, wearer)])
        people, count = out.get(key, (set(), 0))
        out[key] = (people | {wearer}, count + min(n, ONSET_CAP))
    return out


def _feasible_twin(boxes, total, i) -> set[int]:
    """Values of cell i consistent with the boxes and the total box, by enumerating reachable sums."""
    cap = total[1]
    reach = {0}
    for j, (lo, hi) in enumerate(boxes):
        if j != i:
            top = min(hi, cap)
            reach = {s + x for s in reach for x in range(lo, int(top) + 1) if s + x <= cap}
    lo, hi = boxes[i]
    return {v for v in range(lo, int(min(hi, cap)) + 1) if any(total[0] <= v + s <= total[1] for s in reach)}


def _box(n: int) -> tuple[int, int]:
    r = round_to_base(n)
    return max(THRESHOLD, r - 2), r + 2


# ------------------------------------------------------------------ tables
@pytest.mark.parametrize("n, want", [(0, 0), (1, 0), (2, 0), (3, 5), (4, 5), (5, 5), (10, 10), (12, 10), (13, 15),
                                     (17, 15), (18, 20), (1002, 1000)], ids=lambda v: str(v))
def test_round_to_base(n, want):
    assert round_to_base(n) == want


def test_round_to_base_refuses_negative():
    with pytest.raises(ValueError, match="n=-1"):
        round_to_base(-1)


def test_feasible_ranges_match_the_twin():
    rng = random.Random(15)
    for _ in range(300):
        boxes = [(lo := rng.randint(0, 12), lo + rng.randint(0, 8)) for _ in range(rng.randint(1, 4))]
        t_lo = rng.randint(0, 40)
        total = (t_lo, t_lo + rng.randint(0, 6))
        for i, (lo, hi) in enumerate(feasible_ranges(boxes, total)):
            twin = _feasible_twin(boxes, total, i)
            assert set(range(lo, hi + 1)) == twin, (boxes, total, i)


@pytest.mark.parametrize("cells, suppressed, secondary, total_published", [
    ({}, set(), set(), False),                                                   # no area at all
    ({"a": Cell(0, 0), "b": Cell(0, 0)}, {"a", "b"}, set(), False),               # nothing: total < 10
    ({"a": Cell(12, 20)}, set(), set(), True),                                    # one area: its cell is the total
    ({"a": Cell(3, 4), "b": Cell(12, 15), "c": Cell(30, 50)}, {"a", "b"}, {"b"}, True),  # one under 10: a second
    ({"a": Cell(3, 4), "b": Cell(2, 2), "c": Cell(30, 50)}, {"a", "b"}, set(), True),    # two already
    ({"a": Cell(0, 0), "b": Cell(10, 10)}, {"a", "b"}, {"b"}, True),              # a in 0..2 given the total
    ({"a": Cell(9, 9), "b": Cell(9, 9)}, {"a", "b"}, set(), False),               # 18 in 18..22: both pinned at 9
    # wearers alone leave a in 4..9, but a's onsets must be 41..45, so >= 9 wearers: pinned; the total goes
    ({"a": Cell(9, 45), "b": Cell(19, 78), "c": Cell(9, 45)}, {"a", "c"}, set(), False),
], ids=["empty", "all-zero", "one-area", "one-small", "two-small", "zero-and-ten", "pinned-nines",
        "onsets-pin-wearers"])
def test_protect_column_table(cells, suppressed, secondary, total_published):
    col = protect_column(cells)
    assert set(col.suppressed) == suppressed and set(col.secondary) == secondary
    assert (col.total is not None) == total_published
    assert set(col.cells) == set(cells) - suppressed


def test_release_refuses_an_area_outside_the_geography():
    with pytest.raises(ValueError, match="outside the release geography"):
        release([("2024-01", "Atlantis", "w1", "battery", 0)], months=["2024-01"], areas=["Leeds"], types=["battery"])


def test_a_wearer_who_moves_counts_once_in_the_area_of_their_first_onset():
    onsets = [("2024-01", "A", "w", "battery", 5), ("2024-01", "B", "w", "battery", 1),
              ("2024-01", "A", "w", "curfew_absence", 9)]
    onsets += [("2024-01", "B", f"o{i}", t, 0) for i in range(12) for t in ("battery", "curfew_absence")]
    rel = release(onsets, months=["2024-01"], areas=["A", "B"], types=["battery", "curfew_absence"])
    assert rel.columns[("2024-01", "battery")].total == Cell(15, 15)  # 13 wearers, 14 onsets (w's two in B)
    assert rel.columns[("2024-01", "curfew_absence")].cells == {}     # B 13 but A 0 alone: B suppressed too


# ------------------------------------------------------------------ generated populations
MONTHS = ("2024-01", "2024-02")
TYPES = ("curfew_absence", "battery")


@st.composite
def populations(draw):
    """Onsets of up to 70 wearers over 1-4 areas, 2 months, 2 types; most wearers stay in one area."""
    areas = [f"area-{i}" for i in range(draw(st.integers(1, 4)))]
    weights = draw(st.lists(st.integers(1, 6), min_size=len(areas), max_size=len(areas)))
    pool = [a for a, w in zip(areas, weights) for _ in range(w)]
    onsets = []
    for w in range(draw(st.integers(0, 70))):
        home = draw(st.sampled_from(pool))
        for k in range(draw(st.integers(1, 7))):
            area = home if draw(st.integers(0, 9)) else draw(st.sampled_from(areas))
            onsets.append((draw(st.sampled_from(MONTHS)), area, f"w{w:03d}", draw(st.sampled_from(TYPES)),
                           draw(st.integers(0, 10_000))))
    return areas, onsets


def _release(areas, onsets):
    return release(onsets, months=MONTHS, areas=areas, types=TYPES)


@settings(max_examples=150, deadline=None)
@given(populations())
def test_every_released_cell_covers_at_least_ten_wearers(pop):
    areas, onsets = pop
    truth = _true_cells(onsets)
    rel = _release(areas, onsets)
    for (m, t), col in rel.columns.items():
        for a, c in col.cells.items():
            people, n = truth[(m, t, a)]
            assert len(people) >= THRESHOLD
            assert c.wearers % BASE == 0 and abs(c.wearers - len(people)) <= 2
            assert c.onsets % BASE == 0 and abs(c.onsets - n) <= 2
        if col.total is not None:
            everyone = set().union(*(truth.get((m, t, a), (set(), 0))[0] for a in areas))
            assert len(everyone) >= THRESHOLD and abs(col.total.wearers - len(everyone)) <= 2


@settings(max_examples=100, deadline=None)
@given(populations())
def test_no_suppressed_cell_can_be_solved(pop):
    """See the module docstring for exactly what the attacker is given."""
    areas, onsets = pop
    truth = _true_cells(onsets)
    for (m, t), col in _release(areas, onsets).columns.items():
        if col.total is None or not col.suppressed:
            continue  # no published sum: each suppressed cell ranges over its whole box
        feasible: dict[tuple[str, str], set[int]] = {}
        for field, primary in (("wearers", (0, 9)), ("onsets", (0, 9 * ONSET_CAP))):
            true = [(lambda p: len(p[0]) if field == "wearers" else p[1])(truth.get((m, t, a), (set(), 0)))
                    for a in areas]
            boxes = [(THRESHOLD, math.inf) if a in col.secondary else primary if a in col.suppressed
                     else _box(v) for a, v in zip(areas, true)]
            total_box = _box(sum(true))
            assert getattr(col.total, field) == round_to_base(sum(true))
            for i, a in enumerate(areas):
                if a in col.suppressed:
                    values = _feasible_twin(boxes, total_box, i)
                    assert true[i] in values and len(values) >= 2, (field, a, boxes, total_box, values)
                    feasible[(a, field)] = values
        for a in col.suppressed:  # one round of the coupling wearers <= onsets <= 5 x wearers, on the sets
            w_set, o_set = feasible[(a, "wearers")], feasible[(a, "onsets")]
            assert len({w for w in w_set if any(w <= o <= ONSET_CAP * w for o in o_set)}) >= 2, a
            assert len({o for o in o_set if any(w <= o <= ONSET_CAP * w for w in w_set)}) >= 2, a


def _published(rel) -> dict[tuple, int]:
    out = {}
    for (m, t), col in rel.columns.items():
        for a, c in col.cells.items():
            out[(m, t, a, "wearers")], out[(m, t, a, "onsets")] = c.wearers, c.onsets
        if col.total is not None:
            out[(m, t, "*", "wearers")], out[(m, t, "*", "onsets")] = col.total.wearers, col.total.onsets
    return out


@settings(max_examples=150, deadline=None)
@given(populations(), st.integers(0, 69))
def test_removing_one_wearer_moves_any_published_count_by_one_rounding_step_at_most(pop, who):
    """A wearer adds 1 to a wearer count and at most ONSET_CAP (5) onsets to a cell; rounding to 5 turns
    that into 0 or 5. A figure may also switch between published and suppressed (at the threshold)."""
    areas, onsets = pop
    wearer = f"w{who:03d}"
    with_, without = _published(_release(areas, onsets)), _published(_release(areas, [o for o in onsets
                                                                                     if o[2] != wearer]))
    for key in with_.keys() & without.keys():
        assert abs(with_[key] - without[key]) <= BASE, key


# ------------------------------------------------------------------ the attack drill
def _districts(tmp_path: Path) -> Districts:
    doc = json.loads(ENGLAND.read_text())
    store_boundaries(tmp_path, parse_boundaries(doc, "name"))
    return Districts.load(tmp_path)


@needs_england
def test_four_true_points_do_not_single_the_target_out(tmp_path):
    """The attacker knows four true (place, hour) points of the target, each modelled as a breach onset
    counted in the district where it happened (harsher than the service, which counts the home district). Every release cell the target is in covers >= 10 wearers or is not published; the releases
    with and without the target differ by at most one rounding step in any figure; the release holds
    no id, hour or coordinate to match the points against."""
    districts = _districts(tmp_path)
    rng = random.Random(2024)
    places = {"Liverpool": (-2.97, 53.41), "Westminster": (-0.137, 51.497), "Rutland": (-0.63, 52.66)}
    assert {districts.locate(*p) for p in places.values()} == set(places)
    onsets = []
    for w in range(60):  # 40 in Liverpool, 20 in Westminster, none in Rutland
        area = "Liverpool" if w < 40 else "Westminster"
        for _ in range(rng.randint(1, 4)):
            onsets.append(("2024-03", area, f"W-{w:04d}", rng.choice(TYPES), rng.randint(0, 2_000_000_000)))
    target = [("Liverpool", "2024-03-02T23:00"), ("Liverpool", "2024-03-09T23:00"),
              ("Rutland", "2024-03-15T02:00"), ("Liverpool", "2024-03-20T22:00")]
    onsets_t = onsets + [("2024-03", districts.locate(*places[p]), "TARGET-1", "curfew_absence", i)
                         for i, (p, _) in enumerate(target)]
    areas = districts.areas()
    with_t = release(onsets_t, months=["2024-03"], areas=areas, types=TYPES)
    without = release(onsets, months=["2024-03"], areas=areas, types=TYPES)
    truth = _true_cells(onsets_t)
    for (m, t, a), (people, _) in truth.items():
        if "TARGET-1" in people and a in with_t.columns[(m, t)].cells:
            assert len(people) >= THRESHOLD
    assert with_t.columns[("2024-03", "curfew_absence")].cells.get("Rutland") is None
    a, b = _published(with_t), _published(without)
    assert all(abs(a[k] - b[k]) <= BASE for k in a.keys() & b.keys())
    text = json.dumps(with_t.as_dict())
    assert "TARGET" not in text and "W-0" not in text and "T23" not in text and "53.41" not in text


# ------------------------------------------------------------------ over HTTP
_LIVERPOOL, _WESTMINSTER = (-2.97, 53.41), (-0.137, 51.497)


def _add_wearers(env, n: int, centre: tuple[float, float], month: str, prefix: str) -> None:
    """n wearers with a curfew zone (a circle) around `centre` and two curfew absences each in `month`."""
    t0 = 1_714_521_600_000 if month == "2024-05" else 1_717_200_000_000  # 2024-05-01 / 2024-06-01 UTC
    with env.session() as s:
        for i in range(n):
            subject, zone = f"{prefix}-{i:03d}", f"home-{prefix}-{i:03d}"
            feature = json.dumps({"type": "Feature", "id": zone, "geometry": {"type": "Point", "coordinates":
                                  [centre[0] + i * 1e-4, centre[1]]}, "properties": {"kind": "curfew", "radius_m": 50}})
            s.add(ZoneRow(zone_id=zone, kind="curfew", feature_json=feature, version=1))
            s.add(ZoneVersion(zone_id=zone, version=1, kind="curfew", feature_json=feature, sha256="0" * 64,
                              created_ms=t0))
            s.add(AssignmentRow(subject_id=subject, device_id=f"D-{prefix}-{i}", start_ms=t0 - 86_400_000,
                                end_ms=None, zones_json=json.dumps([zone]), chain_start_ms=t0 - 86_400_000,
                                zone_versions_json=json.dumps({zone: 1})))
            for k in range(2):
                start = t0 + (i * 2 + k) * 3_600_000
                iso = f"{month}-01T{(i * 2 + k) % 24:02d}:00:00.000Z"
                s.add(BreachRow(breach_id=f"{prefix[:4]}{i:05d}{k}".ljust(16, "0")[:16], kind="breach",
                                type="curfew_absence", subject_id=subject, device_id=f"D-{prefix}-{i}", zone_id=zone,
                                start=iso, end=iso, start_ms=start, end_ms=start + 60_000, duration_s=60.0,
                                priority=1, first_seen_ms=start, updated_ms=start))
        s.commit()


@needs_england
def test_trends_over_http(api_env):
    env = api_env
    store_boundaries(env.home, parse_boundaries(json.loads(ENGLAND.read_text()), "name"))
    _add_wearers(env, 23, _LIVERPOOL, "2024-05", "LIV")
    _add_wearers(env, 4, _WESTMINSTER, "2024-05", "WSM")
    for who in ("caseworker", "requester", "feed"):
        r = env.client.get("/v1/reports/trends", headers=env.h(who))
        assert r.status_code == 403, (who, r.text)
    r = env.client.get("/v1/reports/trends?from=2024-05&to=2024-05", headers=env.h("auditor"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["months"] == ["2024-05"] and len(body["areas"]) == 297 and body["areas"][-1] == NOT_PLACED
    # Liverpool: 23 wearers, 46 onsets; Westminster's 4 are not published; nationally 27 and 54
    assert body["cells"] == [{"month": "2024-05", "area": "Liverpool", "type": "curfew_absence",
                              "wearers": 25, "onsets": 45}]
    assert body["totals"][0] == {"month": "2024-05", "type": "curfew_absence", "wearers": 25, "onsets": 55,
                                 "suppressed": False}
    assert all(t["suppressed"] and t["wearers"] is None for t in body["totals"][1:])
    for secret in ("LIV-", "WSM-", "home-", "53.41", "-2.97", "51.49", "T0", ":00"):
        assert secret not in r.text, secret
    with env.session() as s:
        row = s.scalars(select(AuditEntry).where(AuditEntry.action == "report.read")
                        .order_by(AuditEntry.idx.desc())).first()
        assert row.role == "auditor"
        assert json.loads(row.entry)["detail"] == {"report": "trends", "from": "2024-05", "to": "2024-05",
                                                   "format": "json"}


@needs_england
def test_trends_refuses_a_range_of_fewer_than_ten_wearers(api_env):
    env = api_env
    store_boundaries(env.home, parse_boundaries(json.loads(ENGLAND.read_text()), "name"))
    _add_wearers(env, 6, _LIVERPOOL, "2024-06", "FEW")
    r = env.client.get("/v1/reports/trends?from=2024-06&to=2024-06", headers=env.h("approver"))
    assert r.status_code == 422
    assert r.json()["detail"] == ("the months 2024-06 to 2024-06 hold fewer than 10 wearers with a breach: "
                                  "nothing is released for so few")
    r = env.client.get("/v1/reports/trends?from=2024-13", headers=env.h("approver"))
    assert r.status_code == 422
    r = env.client.get("/v1/reports/trends?from=2024-06&to=2024-05", headers=env.h("approver"))
    assert r.status_code == 422 and r.json()["detail"] == "from '2024-06' must not be after to '2024-05'"
    r = env.client.get("/v1/reports/trends?format=csv", headers=env.h("admin"))
    assert r.status_code == 200 and r.text.startswith("month,area,type,wearers,onsets\n")
    assert "FEW-" not in r.text


@needs_england
def test_records_are_placed_by_the_curfew_zone_never_by_a_fix(api_env):
    """A polygon curfew zone in Leeds places its wearer in Leeds (its point on surface); a wearer with no
    curfew zone is not placed; the area follows the assignment segment in force at the record's start."""
    env = api_env
    store_boundaries(env.home, parse_boundaries(json.loads(ENGLAND.read_text()), "name"))
    _add_wearers(env, 1, _LIVERPOOL, "2024-05", "MOV")
    ring = [[-1.56, 53.79], [-1.54, 53.79], [-1.54, 53.81], [-1.56, 53.81], [-1.56, 53.79]]
    leeds = json.dumps({"type": "Feature", "id": "home-leeds", "geometry": {"type": "Polygon", "coordinates": [ring]},
                        "properties": {"kind": "curfew"}})
    t0 = 1_714_521_600_000
    with env.session() as s:
        s.add(ZoneRow(zone_id="home-leeds", kind="curfew", feature_json=leeds, version=1))
        mover = s.scalars(select(AssignmentRow).where(AssignmentRow.subject_id == "MOV-000")).one()
        mover.end_ms = t0 + 3_600_000  # from then on under the Leeds zone (no version named: the current one)
        s.add(AssignmentRow(subject_id="MOV-000", device_id="D-MOV-0", start_ms=t0 + 3_600_000, end_ms=None,
                            zones_json=json.dumps(["home-leeds"]), chain_start_ms=t0 - 86_400_000,
                            zone_versions_json="{}"))
        s.add(AssignmentRow(subject_id="NOZONE-1", device_id="D-NZ", start_ms=t0, end_ms=None, zones_json="[]",
                            chain_start_ms=t0, zone_versions_json="{}"))
        s.add(BreachRow(breach_id="NOZONE0000000001", kind="breach", type="battery", subject_id="NOZONE-1",
                        device_id="D-NZ", zone_id=None, start="2024-05-01T05:00:00.000Z", end="2024-05-01T05:01:00.000Z",
                        start_ms=t0 + 5 * 3_600_000, end_ms=t0 + 5 * 3_600_000 + 60_000, duration_s=60.0, priority=1,
                        first_seen_ms=t0, updated_ms=t0))
        s.commit()
        got = sorted((o[1], o[2], o[4]) for o in read_onsets(s, Districts.load(env.home), first_month="2024-05",
                                                             last_month="2024-05"))
    assert got == [("Leeds", "MOV-000", t0 + 3_600_000), ("Liverpool", "MOV-000", t0),
                   (NOT_PLACED, "NOZONE-1", t0 + 5 * 3_600_000)]
