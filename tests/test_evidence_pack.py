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
