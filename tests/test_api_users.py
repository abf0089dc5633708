"""`/v1/admin/users`: an admin adds an account (its token shown once and
working at once), lists accounts, and revokes one (its token refused at
once); each change is one audit entry with channel api; bad input is 422
with the rule in words."""
from __future__ import annotations

import json


from api_fixtures import api_env, api_template, audit_entries  # noqa: F401


_entries = audit_entries

def test_add_list_and_revoke_an_account(api_env):
    env = api_env
    r = env.client.post("/v1/admin/users", json={"name": "Priya Shah", "role": "caseworker",
                                                 "org": "home office"}, headers=env.h("admin"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user"]["name"] == "Priya Shah" and body["user"]["role"] == "caseworker"
    assert body["user"]["revoked"] is None and len(body["token"]) >= 40
    new_id, token = body["user"]["id"], body["token"]
    # the token works at once: the new caseworker reads the queue
    assert env.client.get("/v1/breaches/queue?limit=1", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    listed = env.client.get("/v1/admin/users", headers=env.h("admin")).json()
    assert [u["name"] for u in listed if u["id"] == new_id] == ["Priya Shah"]
    assert "token" not in json.dumps(listed)  # never shown again
    [added] = [e for e in _entries(env, "user.add") if e["detail"]["user_id"] == new_id]
    assert added["channel"] == "api" and added["detail"]["role"] == "caseworker"
    r = env.client.post(f"/v1/admin/users/{new_id}/revoke", headers=env.h("admin"))
    assert r.status_code == 200 and r.json()["revoked"] is not None
    assert env.client.get("/v1/breaches/queue?limit=1", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    [revoked] = [e for e in _entries(env, "user.revoke") if e["detail"]["user_id"] == new_id]
    assert revoked["channel"] == "api"
    again = env.client.post(f"/v1/admin/users/{new_id}/revoke", headers=env.h("admin"))
    assert again.status_code == 422 and again.json()["detail"] == f"no active user with id {new_id}"


def test_bad_accounts_are_refused_with_the_rule(api_env):
    env = api_env
    r = env.client.post("/v1/admin/users", json={"name": "PC Jones", "role": "requester", "org": "council"},
                        headers=env.h("admin"))
    assert r.status_code == 422
    assert r.json()["detail"] == ("a requester is an external agency: --org must be one of police, probation, "
                                  "got 'council'")
    r = env.client.post("/v1/admin/users", json={"name": "CW-1", "role": "approver"}, headers=env.h("admin"))
    assert r.status_code == 422 and "already exists" in r.json()["detail"]  # cw-1 is active: same person
    r = env.client.post("/v1/admin/users", json={"name": "x", "role": "superuser"}, headers=env.h("admin"))
    assert r.status_code == 422
