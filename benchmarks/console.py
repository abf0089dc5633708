"""Console page benchmark: server-side render time of `/queue` with 20,000
open records and of `/breaches/{id}` for a 7-day absence (issue 12: under
200 ms each). Not a timed test: the figures go to RESULTS.md (## Console).

The home: `trails.sim` wearers over 9 days, ingested and detected (`detect
--db`), then 20,000 open records inserted directly into the breach queue (on
the simulated wearers, every type and priority) and one curfew absence of 7
days on a real wearer, device and curfew zone (tests/breach_records.py), so
its page counts the ~10,000 fixes of its window plus coverage and shows a
page of the table; its map and timeline data (all the fixes) come from the
page's `/breaches/{id}/evidence.json` link, timed as well (after the page,
not part of its render). Requests go
through the app itself (FastAPI TestClient, signed in as a caseworker, every
audit entry written as in production); each page is fetched `--n` times after
one warm-up, and the median and p95 of the wall time per request reported.

    .venv/bin/python benchmarks/console.py [--n 30] [--no-write]
"""
from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work" / "console"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

from results import cpu_model, write_section  # noqa: E402

TARGET_MS = 200.0
#: Where the breach page's time went when last measured piecewise (2-core VM), and what would fix it.
MISSED_NOTE = ("Where the time goes (py-spy, quiet machine): on the breach page mostly reading the fixes (the "
               "store's day files are read whole, every device and column, then filtered to the wearer's device); "
               "on the wearer's casework page this wearer has ~1,000 records and has never been reviewed, so the "
               "review summary covers ~1,000 days: reading those days' store files whole and judging ~1,000 "
               "curfew windows is about a third of the page, the ladder over the records about a sixth. A wearer "
               "reviewed every 91 days has a tenth of that. Not done yet: a per-device read of the store (the "
               "device buckets of issue 14) and a cached attendance per closed curfew window.")
#: Written with the figures: what changed since the 327 ms measurement.
CHANGE_NOTE = ("The breach page no longer carries its map and timeline data (it did: ~1 MB of JSON for ~10,000 "
               "fixes, serialised in the render): the browser fetches it from the page's "
               "/breaches/{id}/evidence.json link, bound to the page's one audited consultation (api.web.pages.breach). "
               "The fix table shows 100 fixes a page (was 500; Jinja2 rendered each row's London time)."
               " Profiled (pyinstrument and per-call timers, same home, loaded machine): of the page's time about "
               "60-70 ms is reading the week's fixes (trails.store reads each day file whole, every device and "
               'column, then filters to the one device: ~55-60 ms for 8 days of 20 devices, and it grows with the '
               "fleet), ~13 ms the wearer's other records, ~13 ms the template, ~6 ms the audit commit and "
               'checkpoint.')
N_RECORDS = 20_000


def build_home(root: Path) -> Path:
    from api.cli.main import main
    from trails.ingest import ingest
    from trails.sim.simulate import simulate

    sim = simulate(root / "sim", wearers=20, days=9, seed=11, start="2024-03-04")
    home = root / "home"
    ingest(sim.fixes_path, home=home, events_path=root / "sim" / "events.csv")
    code = main(["detect", "--home", str(home), "--subjects", str(root / "sim" / "subjects.json"),
                 "--zones", str(root / "sim" / "zones.geojson"), "--out", str(root / "out"), "--db", "--quiet"])
    assert code == 0
    return home


def add_records(session, subjects: list[tuple[str, str]], n: int) -> None:
    """`n` open records, spread over the wearers, types and priorities (direct inserts)."""
    from api.db.models import BreachRow
    from geofence.records import RECORD_TYPES
    from trails.timestamps import format_ms

    rng = np.random.default_rng(5)
    t0 = 1_709_510_400_000
    rows = []
    for i in range(n):
        subject, device = subjects[i % len(subjects)]
        start = t0 + int(rng.integers(0, 9 * 86_400_000))
        dur = int(rng.integers(60_000, 6 * 3_600_000))
        bid = hashlib.sha256(f"bench:{i}".encode()).hexdigest()[:16]
        rows.append(dict(breach_id=bid, kind="breach", type=RECORD_TYPES[i % len(RECORD_TYPES)],
                         subject_id=subject, device_id=device, zone_id=None, start=format_ms(start),
                         end=format_ms(start + dur), start_ms=start, end_ms=start + dur, duration_s=dur / 1000,
                         priority=1 + i % 4, first_seen_ms=t0 + i, updated_ms=t0 + i,
                         status=("new", "in_review")[i % 2]))
    session.bulk_insert_mappings(BreachRow, rows)
    session.commit()


def sign_in(client, token: str) -> None:
    r = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    r = client.post("/login", data={"token": token, "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text


def timed(client, path: str, n: int) -> tuple[list[float], int]:
    r = client.get(path)  # warm-up (templates compiled, caches filled)
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200
    return times, len(r.content)


def _stats(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), float(np.percentile(times, 95))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    from fastapi.testclient import TestClient
    from sqlalchemy import func, select

    from api.access.users import add_user
    from api.db.models import AssignmentRow, BreachRow
    from api.http.app import create_app
    from api.settings import Settings
    from breach_records import add_curfew_record

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    t = time.perf_counter()
    home = build_home(WORK)
    app = create_app(Settings.from_home(home))
    app.state.stream.flush()  # detection's pending pass first: records added below are not withdrawn
    with app.state.session_factory() as s:
        _, token = add_user(s, app.state.audit, name="bench-cw", role="caseworker", org="home office")
        s.commit()
        subjects = sorted(set(s.execute(select(AssignmentRow.subject_id, AssignmentRow.device_id)).all()))
        add_records(s, [tuple(x) for x in subjects], N_RECORDS)
        bid = add_curfew_record(s, home, minutes=7 * 1440, offset_min=0)
        b = s.get(BreachRow, bid)
        open_records = s.scalar(select(func.count()).select_from(BreachRow)
                                .where(BreachRow.status.in_(("new", "in_review"))))
        window = (b.start, b.end)
    print(f"home built in {time.perf_counter() - t:.0f} s: {open_records} open records", flush=True)

    with TestClient(app) as client:
        sign_in(client, token)
        queue, queue_bytes = timed(client, "/queue", args.n)
        page, page_bytes = timed(client, f"/breaches/{bid}", args.n)
        html = client.get(f"/breaches/{bid}").text
        n_fixes = int(re.search(r'id="evidence-window">(\d+) fix', html).group(1))
        data_url = re.search(r'data-tt-map="([^"#]+)#map"', html).group(1).replace("&amp;", "&")
        data, data_bytes = timed(client, data_url, args.n)
        casework, casework_bytes = timed(client, "/casework", args.n)
        wearer, wearer_bytes = timed(client, f"/subjects/{b.subject_id}/casework", args.n)
    app.state.engine.dispose()

    lines, missed = [], []
    from api.web.pages.breach import FIX_PAGE

    for name, times, size in (("/queue (20,000 open records, page of 50)", queue, queue_bytes),
                              (f"/breaches/{{id}} (7-day absence, {n_fixes} fixes counted, table page of {FIX_PAGE})",
                               page, page_bytes),
                              ((f"/breaches/{{id}}/evidence.json (its map and timeline data: {n_fixes} fixes; "
                                f"fetched by the browser after the page, no target)"), data, data_bytes),
                              ("/casework (mitigations awaiting a decision, reviews due in 14 days)", casework,
                               casework_bytes),
                              ("/subjects/{id}/casework (the 7-day record's wearer: ladder, mitigations, review "
                               "summary with curfew attendance, notes)", wearer, wearer_bytes)):
        med, p95 = _stats(times)
        verdict = "met" if p95 < TARGET_MS else ("missed at p95 (median met)" if med < TARGET_MS else "missed")
        if "evidence.json" in name:
            verdict = "(not a page)"
        lines.append(f"| {name} | {med:.0f} | {p95:.0f} | {size / 1024:.0f} KiB | {verdict} |")
        if verdict not in ("met", "(not a page)"):
            missed.append(name.split(" ")[0])
        print(lines[-1], flush=True)
    if not args.no_write:
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        write_section("Console", "\n".join([
            "## Console",
            "",
            f"`benchmarks/console.py`, {when}, {cpu_model()}, 2 cores shared with other work; server-side "
            f"render through the app (TestClient: routing, session, role, queries, audit entries with their "
            f"commit, Jinja2), {args.n} requests after one warm-up. Target: under {TARGET_MS:.0f} ms. "
            f"{open_records} open records; the 7-day record spans {window[0]} to {window[1]}.",
            "",
            "| page | median ms | p95 ms | size | 200 ms target |",
            "|---|---:|---:|---:|---|",
            *lines,
            "",
            CHANGE_NOTE,
            "",
            *([f"Missed: {', '.join(missed)}. " + MISSED_NOTE, ""] if missed else []),
        ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
