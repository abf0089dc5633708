"""Issue 13, section 1: `GET /v1/breaches/{id}/evidence?format=pdf|html`.

The PDF opens (pypdf reads its text back) and names the breach, the rule
and the times in London time and UTC; the pack holds exactly the fixes of
the record's window plus coverage; the same inputs give the same bytes
(only the printed generation time differs); the document's SHA-256 is in
the audit entry that released it, on ground bail_breach; and a service set
to `breach_evidence: "request"` makes no pack."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from api_fixtures import api_env, api_template, audit_entries  # noqa: F401 (fixtures)
from test_console_breach import _breach


@pytest.fixture()
def env(api_env):
    return api_env


_entries = audit_entries

def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def _window_fixes(env, b) -> list[int]:
    """The instants the pack must hold, read from the store independently of the pack's reader."""
    from api.service.stream.detector_state import home_policy
    from trails.store import read_store_fixes

    cov = home_policy(env.home).coverage_ms
    every = np.sort(read_store_fixes(env.home, devices=[b.device_id]).ts_ms)
    return [int(t) for t in every if b.start_ms - cov <= t <= b.end_ms + cov]


def test_pdf_names_the_breach_the_rule_and_the_times_and_its_hash_is_audited(env):
    b = _breach(env)
    r = env.client.get(f"/v1/breaches/{b.breach_id}/evidence?format=pdf", headers=env.h("caseworker"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF-")
    assert r.headers["content-disposition"] == f'attachment; filename="evidence-{b.breach_id}.pdf"'
    text = _pdf_text(r.content)
    flat = " ".join(text.split())
    assert b.breach_id in flat and b.subject_id in flat and "curfew_absence" in flat
    assert "The wearer was away from the curfew zone during a curfew window" in flat
    assert "Curfew grace in the policy in force: 15 min." in flat
    assert b.start in flat and b.end in flat  # UTC beside the London time
    assert "GMT" in flat  # March 2024
    digest = hashlib.sha256(r.content).hexdigest()
    assert r.headers["x-evidence-sha256"] == digest
    (entry,) = [e for e in _entries(env, "breach.evidence_pack") if e["detail"]["breach_id"] == b.breach_id]
    assert entry["detail"]["document_sha256"] == digest and entry["detail"]["format"] == "pdf"
    assert entry["ground"] == "bail_breach" and entry["justification_ref"] == f"breach:{b.breach_id}"
    assert entry["channel"] == "api" and entry["actor"] == "cw-1"
    assert entry["detail"]["n_fixes"] == len(_window_fixes(env, b))
    assert f"Data SHA-256 {r.headers['x-data-sha256']}" in flat


def test_html_pack_holds_exactly_the_window_fixes_and_the_same_data_hash(env):
    from trails.timestamps import format_ms

    b = _breach(env)
    pdf = env.client.get(f"/v1/breaches/{b.breach_id}/evidence", headers=env.h("auditor"))
    html = env.client.get(f"/v1/breaches/{b.breach_id}/evidence?format=html", headers=env.h("auditor"))
    assert pdf.status_code == html.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"  # the default format
    assert pdf.headers["x-data-sha256"] == html.headers["x-data-sha256"]  # the same data, either way
    page = html.text
    rows = page.split('class="fixes"', 1)[1]
    shown = [cell.split("</td>")[0] for cell in rows.split("<tr><td>")[1:]]
    assert len(shown) == len(_window_fixes(env, b))
    for t in _window_fixes(env, b):
        assert f"<td>{format_ms(t)}</td>" in rows
    assert "<script" not in page and page.count('src="data:image/png;base64,') == 2


def test_same_inputs_give_the_same_bytes_apart_from_the_generation_time(env):
    from api.service.breach_evidence import breach_zone, read_evidence
    from api.service.evidence_pack import build_pack
    from api.service.evidence_render import pack_html, pack_pdf
    from api.service.stream.detector_state import home_policy
    from api.db.models import BreachRow

    b = _breach(env)
    policy = home_policy(env.home)
    with env.session() as s:
        row = s.get(BreachRow, b.breach_id)
        zone = breach_zone(s, row, policy)
        ev = read_evidence(env.home, s, row, zone, policy)
        one = build_pack(row, zone, ev, policy, generated_ms=1_733_000_000_000)
        two = build_pack(row, zone, ev, policy, generated_ms=1_733_000_000_000)
        later = build_pack(row, zone, ev, policy, generated_ms=1_733_000_060_000)
    assert pack_pdf(one) == pack_pdf(two) and pack_html(one) == pack_html(two)
    assert one.map_png == later.map_png and one.data_sha256 == later.data_sha256
    a, c = pack_html(one).decode(), pack_html(later).decode()
    # the only difference is the generation line
    diff = [(x, y) for x, y in zip(a.splitlines(), c.splitlines()) if x != y]
    assert len(diff) == 1 and "Generated" in diff[0][0]


def test_no_pack_where_fixes_need_an_access_request(env):
    b = _breach(env)
    env.app.state.settings = env.app.state.settings.model_copy(update={"breach_evidence": "request"})
    r = env.client.get(f"/v1/breaches/{b.breach_id}/evidence", headers=env.h("caseworker"))
    assert r.status_code == 409 and "access request" in r.json()["detail"]
    assert [e for e in _entries(env, "breach.evidence_pack")] == []
    r = env.client.get("/v1/breaches/0123456789abcdef/evidence", headers=env.h("caseworker"))
    assert r.status_code == 409  # the rule is checked before the record is looked up: nothing is read


def test_console_breach_page_offers_the_pack_audited_with_channel_console(env):
    from test_console_session import sign_in

    b = _breach(env)
    sign_in(env)
    page = env.client.get(f"/breaches/{b.breach_id}")
    assert f'href="/breaches/{b.breach_id}/evidence.pdf"' in page.text
    r = env.client.get(f"/breaches/{b.breach_id}/evidence.pdf")
    assert r.status_code == 200 and r.content.startswith(b"%PDF-")
    (entry,) = [e for e in _entries(env, "breach.evidence_pack") if e["detail"]["breach_id"] == b.breach_id]
    assert entry["channel"] == "console" and entry["detail"]["document_sha256"] == hashlib.sha256(r.content).hexdigest()
    assert b.breach_id in " ".join(_pdf_text(r.content).split())


def test_a_wearer_period_pack_holds_each_record_and_says_how_each_stands(env):
    """Issue 13 §1 "per wearer-period": the wearer's records that started in the period, each with the pack
    its own endpoint makes (the data hash is over theirs, one a line, by hand here), the cover saying which
    one a mitigation excused; audited once with every record's data hash."""
    from sqlalchemy import select

    from api.db.models import BreachRow
    from api.service.london import london_time

    with env.session() as s:
        rows = list(s.scalars(select(BreachRow).where(BreachRow.kind == "breach", BreachRow.status != "withdrawn")
                              .order_by(BreachRow.subject_id, BreachRow.start_ms, BreachRow.breach_id)))
    by = {}
    for b in rows:
        by.setdefault(b.subject_id, []).append(b)
    subject, mine = max(by.items(), key=lambda kv: (len(kv[1]), kv[0]))
    mine = mine[:6]
    assert len(mine) >= 2
    first, last = london_time(mine[0].start_ms).text[:11], london_time(mine[-1].start_ms).text[:11]
    from datetime import datetime

    day = lambda text: datetime.strptime(text.strip(), "%d %b %Y").strftime("%Y-%m-%d")  # noqa: E731
    with env.session() as s:  # the pack covers whole London days: every record of the wearer starting in them
        from api.service.london import LONDON

        lo = int(datetime.strptime(day(first), "%Y-%m-%d").replace(tzinfo=LONDON).timestamp() * 1000)
        hi = int(datetime.strptime(day(last), "%Y-%m-%d").replace(tzinfo=LONDON).timestamp() * 1000) + 86_400_000
        expected = [b.breach_id for b in s.scalars(select(BreachRow).where(
            BreachRow.subject_id == subject, BreachRow.kind == "breach", BreachRow.status != "withdrawn",
            BreachRow.start_ms >= lo, BreachRow.start_ms < hi).order_by(BreachRow.start_ms, BreachRow.breach_id))]
    assert len(expected) <= 40
    r = env.client.post("/v1/mitigations", headers=env.h("caseworker"), json={
        "subject_id": subject, "breach_ids": [expected[0]], "received": "2024-03-20T09:00:00Z", "channel": "letter",
        "text": "I was in hospital."})
    env.client.post(f"/v1/mitigations/{r.json()['id']}/decision", headers=env.h("caseworker"),
                    json={"outcome": "accepted", "reason": "The discharge letter covers it."})
    url = f"/v1/subjects/{subject}/evidence?from={day(first)}&to={day(last)}"
    pdf = env.client.get(url, headers=env.h("caseworker"))
    assert pdf.status_code == 200, pdf.text
    flat = " ".join(_pdf_text(pdf.content).split())
    assert f"Evidence pack: wearer {subject}" in flat and all(bid in flat for bid in expected)
    assert f"Breach records that started from" in flat and f": {len(expected)}, each with its own evidence" in flat
    own = [env.client.get(f"/v1/breaches/{bid}/evidence?format=html", headers=env.h("caseworker"))
           .headers["x-data-sha256"] for bid in expected]
    assert pdf.headers["x-data-sha256"] == hashlib.sha256("".join(h + "\n" for h in own).encode()).hexdigest()
    html = env.client.get(url + "&format=html", headers=env.h("auditor")).text
    cover = html.split("</table>", 1)[0]
    assert cover.count('<tr><td><a href="#record-') == len(expected)
    assert f'#record-{expected[0]}">{expected[0]}</a></td>' in cover
    row0 = cover.split(f'#record-{expected[0]}"', 1)[1].split("</tr>", 1)[0]
    assert "excused by an accepted mitigation" in row0
    assert all("counts toward escalation" in cover.split(f'#record-{b}"', 1)[1].split("</tr>", 1)[0]
               for b in expected[1:])
    (entry, _) = [e for e in _entries(env, "subject.evidence_pack")]
    assert entry["detail"]["records"] == [[b, h] for b, h in zip(expected, own)]  # in the cover's order
    assert entry["detail"]["document_sha256"] == hashlib.sha256(pdf.content).hexdigest()
    assert entry["ground"] == "bail_breach" and entry["justification_ref"] == f"subject:{subject}"
    assert env.client.get(f"/v1/subjects/{subject}/evidence?from=2020-01-01&to=2020-01-02",
                          headers=env.h("caseworker")).status_code == 404
    assert env.client.get(f"/v1/subjects/{subject}/evidence?from=2024-03-05&to=2024-03-01",
                          headers=env.h("caseworker")).status_code == 422
