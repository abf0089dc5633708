"""The console's /reports page (issue 12): Figure 6 and Figure 9 as tables
with the API report's figures, chart data in a JSON block for the static
module, turnaround times, CSV and XLSX downloads (read back with openpyxl,
formula-looking text neutralised), roles and audit entries (TestClient)."""
from __future__ import annotations

import io
import json
import re

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from api_fixtures import api_env, api_template, create_request, decide  # noqa: F401 (fixtures)
from test_console_session import sign_in


@pytest.fixture()
def env(api_env):
    return api_env


def _all(env) -> list[dict]:
    from api.db.models import AuditEntry

    with env.session() as s:
        return [json.loads(e) for e in s.scalars(select(AuditEntry.entry).order_by(AuditEntry.idx))]


def _api(env, name: str) -> dict:
    r = env.client.get(f"/v1/reports/{name}", headers=env.h("auditor"))
    assert r.status_code == 200
    return r.json()


def test_reports_page_shows_the_api_figures_and_chart_data(env):
    create_request(env, "caseworker")
    api_b, api_r = _api(env, "breaches"), _api(env, "access-requests")
    assert api_b["totals"]["total"] > 0
    sign_in(env, "approver", "/reports")
    r = env.client.get("/reports")
    assert r.status_code == 200
    table = r.text[r.text.index('id="breaches-table"'):r.text.index("</table>", r.text.index('id="breaches-table"'))]
    total_row = table[table.index(">Total</th>"):]
    cells = [int(x) for x in re.findall(r'numeric">(\d+)</td>', total_row)][:len(api_b["months"]) + 1]
    assert cells == [*(api_b["totals"]["months"][m] for m in api_b["months"]), api_b["totals"]["total"]]
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', r.text,
                                re.S).group(1))
    assert data["breaches"]["labels"] == api_b["months"]
    assert [s["label"] for s in data["breaches"]["series"]] == [x["type"].replace("_", " ") for x in api_b["rows"]]
    assert [sum(s["values"]) for s in data["breaches"]["series"]] == [x["total"] for x in api_b["rows"]]
    pending = next(x for x in api_r["rows"] if x["outcome"] == "pending")
    assert data["requests"]["series"][0] == {"label": "trail", "values": [x["trail"] for x in api_r["rows"]]}
    assert pending["total"] == 1
    assert '<script type="module" src="/static/reports.js"></script>' in r.text
    assert "Request turnaround" in r.text and "1 still pending" in r.text


def test_turnaround_is_made_to_decided_with_nearest_rank_percentiles(env):
    from api.access.reports import request_turnaround
    from api.db.models import AccessRequest

    ids = [create_request(env, "caseworker")["id"] for _ in range(3)]
    for i in ids:
        assert decide(env, i).status_code == 200
    hours = [2, 10, 30]
    with env.session() as s:
        for i, h in zip(ids, hours):
            created = s.scalar(select(AccessRequest.created_ms).where(AccessRequest.id == i))
            s.execute(update(AccessRequest).where(AccessRequest.id == i).values(decided_ms=created + h * 3_600_000))
        s.commit()
        t = request_turnaround(s)
    trail = next(x for x in t["rows"] if x["kind"] == "trail")
    assert trail == {"kind": "trail", "decided": 3, "median_h": 10.0, "p90_h": 30.0, "max_h": 30.0}
    assert next(x for x in t["rows"] if x["kind"] == "attendance")["median_h"] is None
    sign_in(env, "auditor", "/reports")
    r = env.client.get("/reports")
    row = re.sub(r">\s+<", "><", r.text[r.text.index('id="turnaround-table"'):])
    assert re.search(r">Trail</th><td[^>]*>3</td><td[^>]*>10.0</td><td[^>]*>30.0</td><td[^>]*>30.0</td>", row)


def test_reports_page_is_audited_like_the_api(env):
    sign_in(env, "admin", "/reports")
    n = len(_all(env))
    assert env.client.get("/reports").status_code == 200
    new = [e for e in _all(env)[n:] if e["action"] == "report.read"]
    assert [e["detail"] for e in new] == [{"report": "breaches", "from": None, "to": None, "format": "html"},
                                          {"report": "access-requests", "from": None, "to": None, "format": "html"}]
    assert {e["channel"] for e in new} == {"console"} and {e["actor"] for e in new} == {"ad-1"}


def test_caseworker_gets_the_403_page(env):
    sign_in(env, "caseworker", "/queue")
    for path in ("/reports", "/reports/breaches.csv", "/reports/access-requests.xlsx"):
        r = env.client.get(path)
        assert r.status_code == 403 and "You cannot see this page" in r.text


def test_csv_downloads_are_the_api_csv(env):
    create_request(env, "caseworker")
    for name in ("breaches", "access-requests"):
        api = env.client.get(f"/v1/reports/{name}?format=csv", headers=env.h("auditor")).text
        sign_in(env, "auditor", "/reports")
        r = env.client.get(f"/reports/{name}.csv")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"] == f'attachment; filename="{name}.csv"'
        assert r.text == api
    reads = [e["detail"] for e in _all(env) if e["action"] == "report.read" and e.get("channel") == "console"]
    assert [(d["report"], d["format"]) for d in reads] == [("breaches", "csv"), ("access-requests", "csv")]


def test_xlsx_downloads_read_back_as_the_csv_rows(env):
    import csv

    create_request(env, "caseworker")
    sign_in(env, "auditor", "/reports")
    for name in ("breaches", "access-requests"):
        r = env.client.get(f"/reports/{name}.xlsx")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        ws = load_workbook(io.BytesIO(r.content)).active
        got = [[c for c in row] for row in ws.iter_rows(values_only=True)]
        want = [[int(c) if c.isdigit() else c for c in row]
                for row in csv.reader(io.StringIO(env.client.get(f"/reports/{name}.csv").text))]
        assert got == want and isinstance(got[1][1], int)
    assert ws.title == "Requests by outcome and kind"


def test_xlsx_neutralises_formula_looking_text():
    from api.access.xlsxsafe import workbook_bytes

    data = workbook_bytes([("t", [["zone", "n"], ['=HYPERLINK("http://evil")', 3], ["-2", -2.5], ["@SUM(A1)", 0]])])
    wb = load_workbook(io.BytesIO(data))
    ws = wb["t"]
    assert [[c.value for c in row] for row in ws.iter_rows()] == [
        ["zone", "n"], ['\'=HYPERLINK("http://evil")', 3], ["'-2", -2.5], ["'@SUM(A1)", 0]]
    assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)
