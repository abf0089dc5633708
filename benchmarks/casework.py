"""Casework benchmark (issue 13): machine time per breach to generate the
evidence pack (PDF) of every breach and the escalation proposal of every
wearer, against 20-30 minutes of keying by hand. Target: under 1 s per
breach. Not a timed test: the figures go to RESULTS.md (## Casework).

The caseload: `trails.sim` wearers over a month, ingested and detected
(`detect --db`), so every breach is a real detection on simulated fixes.
Each pack goes through the service the API uses
(`api.service.evidence_documents.evidence_document`: reading the window's
fixes from the store, classifying them, drawing map and timeline, the PDF,
the audit entry and its commit); proposals through
`api.service.escalation.wearer_proposal`.

    .venv/bin/python benchmarks/casework.py [--wearers 40] [--days 30] [--no-write]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work" / "casework"
sys.path.insert(0, str(HERE))

from results import cpu_model, write_section  # noqa: E402

TARGET_S = 1.0


def build_home(root: Path, wearers: int, days: int) -> Path:
    from api.cli.main import main
    from trails.ingest import ingest
    from trails.sim.simulate import simulate

    sim = simulate(root / "sim", wearers=wearers, days=days, seed=13, start="2024-03-04")
    home = root / "home"
    ingest(sim.fixes_path, home=home, events_path=root / "sim" / "events.csv")
    code = main(["detect", "--home", str(home), "--subjects", str(root / "sim" / "subjects.json"),
                 "--zones", str(root / "sim" / "zones.geojson"), "--out", str(root / "out"), "--db", "--quiet"])
    assert code == 0
    return home


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wearers", type=int, default=40)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    from sqlalchemy import select

    from api.access.users import add_user
    from api.db.models import BreachRow
    from api.http.app import create_app
    from api.service.escalation import wearer_proposal
    from api.service.evidence_documents import evidence_document
    from api.service.ladder import load_ladder
    from api.settings import Settings

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    t = time.perf_counter()
    home = build_home(WORK, args.wearers, args.days)
    settings = Settings.from_home(home)
    app = create_app(settings)
    audit = app.state.audit.via("api")
    with app.state.session_factory() as s:
        user, _ = add_user(s, app.state.audit, name="bench-cw", role="caseworker", org="home office")
        s.commit()
        ids = list(s.scalars(select(BreachRow.breach_id).where(BreachRow.kind == "breach",
                                                               BreachRow.status != "withdrawn")
                             .order_by(BreachRow.breach_id)))
        subjects = sorted(set(s.scalars(select(BreachRow.subject_id))))
    print(f"caseload built in {time.perf_counter() - t:.0f} s: {len(ids)} breaches, {len(subjects)} wearers",
          flush=True)

    pack_s, sizes = [], []
    with app.state.session_factory() as s:
        me = s.get(type(user), user.id)
        for bid in ids:
            t = time.perf_counter()
            pack = evidence_document(s, audit, me, settings, bid, "pdf", now_ms=app.state.clock(),
                                     flush_store=lambda: None)
            s.commit()
            pack_s.append(time.perf_counter() - t)
            sizes.append(len(pack.content))
        ladder = load_ladder(home)
        t = time.perf_counter()
        for subject in subjects:
            wearer_proposal(s, ladder, subject, now_ms=1_712_000_000_000)
        proposals_s = time.perf_counter() - t
    app.state.engine.dispose()

    total = sum(pack_s) + proposals_s
    per_breach = total / max(1, len(ids))
    verdict = "met" if per_breach < TARGET_S else "missed"
    section = "\n".join([
        f"`benchmarks/casework.py`, {time.strftime('%Y-%m-%d')}, {cpu_model()}; a simulated caseload of "
        f"{args.wearers} wearers over {args.days} days (`trails.sim`, detected with `detect --db`): "
        f"{len(ids)} breaches, {len(subjects)} wearers with records. Target: under {TARGET_S:g} s of machine time "
        "per breach (against 20-30 minutes of keying).", "",
        "| what | n | median s | p95 s | total s |", "|---|---:|---:|---:|---:|",
        f"| evidence pack (PDF, audited) | {len(ids)} | {statistics.median(pack_s):.3f} | "
        f"{sorted(pack_s)[int(0.95 * (len(pack_s) - 1))]:.3f} | {sum(pack_s):.1f} |",
        f"| escalation proposal | {len(subjects)} | | | {proposals_s:.2f} |", "",
        f"Per breach, every pack plus every proposal: **{per_breach:.3f} s: {verdict}**. PDFs "
        f"{statistics.median(sizes) / 1024:.0f} KiB median."])
    print(section)
    if not args.no_write:
        write_section("Casework", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
