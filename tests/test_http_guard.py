"""The HTTP edge (issue 10 items 2, 14, 17, 24, 26 and the offline docs): size,
identity and role are checked before a body is read; JSON is parsed off the
event loop; refused calls on personal data are audited and external
requesters learn nothing from them; bad input is 4xx, a full disk is 507;
the docs page loads nothing from the internet."""
from __future__ import annotations

import asyncio
import json
import re
import threading
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from api.db.models import AuditEntry
from api_fixtures import api_env, api_template, close_env, copy_env, request_body  # noqa: F401 (fixtures)


@pytest.fixture()
def env(api_env):
    return api_env


def _asgi(app, method: str, path: str, headers: dict[str, str], chunks: list[bytes]):
    """Call `app` directly over ASGI; returns (status, body, how many body chunks the app asked for)."""
    asked = 0
    out: dict = {"status": None, "body": b""}

    async def receive():
        nonlocal asked
        asked += 1
        if asked <= len(chunks):
            return {"type": "http.request", "body": chunks[asked - 1], "more_body": asked < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 80), "state": {}}
    asyncio.run(app(scope, receive, send))
    return out["status"], out["body"], asked


def _entries(env, action: str) -> list[dict]:
    with env.session() as s:
        return [json.loads(e) for e in s.scalars(select(AuditEntry.entry).where(AuditEntry.action == action)
                                                 .order_by(AuditEntry.idx))]


# ------------------------------------------------------------------ item 2: bodies

def test_anonymous_oversized_body_is_refused_without_reading_it(env):
    """50 MB announced, no token: 413 at once, and the app never asks for a byte of it."""
    status, body, asked = _asgi(env.app, "POST", "/v1/access-requests",
                                {"content-type": "application/json", "content-length": str(50 << 20)}, [b"{"])
    assert status == 413 and asked == 0
    assert json.loads(body) == {"detail": f"body of {50 << 20} bytes; at most {256 << 10} bytes for this operation"}


def test_anonymous_body_is_not_read_before_authentication(env):
    status, body, asked = _asgi(env.app, "POST", "/v1/access-requests",
                                {"content-type": "application/json", "content-length": "20"}, [b'{"subject_id": "x"}'])
    assert status == 401 and asked == 0
    assert json.loads(body) == {"detail": "missing bearer token: send 'Authorization: Bearer TOKEN'"}


def test_wrong_role_body_is_not_read(env):
    body = json.dumps(request_body(env.subjects[0])).encode()
    status, _, asked = _asgi(env.app, "POST", "/v1/access-requests", {"content-type": "application/json",
                                                                     "content-length": str(len(body)),
                                                                     **env.h("auditor")}, [body])
    assert status == 403 and asked == 0


def test_chunked_body_over_the_limit_is_cut_off(env):
    """No Content-Length: the bytes are counted as they arrive and reading stops past 256 KiB."""
    chunks = [b"[" + b" " * (64 << 10)] * 40  # 2.5 MiB if it were all read
    status, body, asked = _asgi(env.app, "POST", "/v1/access-requests",
                                {"content-type": "application/json", **env.h("caseworker")}, chunks)
    assert status == 413 and asked <= 6, (status, asked)


def test_intake_body_over_its_limit_is_413_from_content_length(env):
    status, body, asked = _asgi(env.app, "POST", "/v1/fixes", {"content-type": "text/csv",
                                                               "content-length": str(33 << 20), **env.h("feed")}, [b"x"])
    assert status == 413 and asked == 0
    assert json.loads(body)["detail"] == f"body of {33 << 20} bytes; at most {32 << 20} bytes for this operation"


def test_json_bodies_are_parsed_off_the_event_loop(env, monkeypatch):
    from api.http import guard

    threads = []
    real = guard._parse_json

    def spy(body):
        threads.append(threading.current_thread())
        return real(body)

    monkeypatch.setattr(guard, "_parse_json", spy)
    r = env.client.post("/v1/access-requests", json=request_body(env.subjects[0]), headers=env.h("caseworker"))
    assert r.status_code == 201, r.text
    assert len(threads) == 1 and threads[0] is not threading.main_thread()
    assert "AnyIO worker" in threads[0].name or threads[0].name.startswith(("AnyIO", "asyncio", "ThreadPool"))


# ------------------------------------------------------------------ item 17: 4xx, never 500

def test_deeply_nested_json_is_422_not_500(env):
    deep = b"[" * 100_000 + b"]" * 100_000
    for path, who in (("/v1/access-requests", "caseworker"), ("/v1/fixes", "feed")):
        r = env.client.post(path, content=deep, headers={**env.h(who), "content-type": "application/json"})
        assert r.status_code in (413, 422), (path, r.status_code, r.text)
    small_deep = b"[" * 5000 + b"]" * 5000  # under every size limit
    r = env.client.post("/v1/access-requests", content=small_deep,
                        headers={**env.h("caseworker"), "content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("body is nested too deeply")
    r = env.client.post("/v1/fixes", content=small_deep, headers={**env.h("feed"), "content-type": "application/json"})
    assert r.status_code == 422
    assert "nested too deeply" in r.json()["detail"]


def test_lone_surrogate_in_intake_json_is_422_not_500(env):
    body = '{"fixes": [{"device_id": "D-\\ud800", "ts": "2024-03-05T10:00:00Z", "lat": 53.4, "lon": -2.9}]}'
    r = env.client.post("/v1/fixes", content=body.encode(), headers={**env.h("feed"), "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == ("fixes[0].device_id holds a lone surrogate (\\ud800): not valid Unicode text, "
                                  "so the batch cannot be read (as a CSV file that is not valid UTF-8)")


# ------------------------------------------------------------------ item 24: bounded reads

def test_long_query_string_is_refused_and_never_logged(env):
    query = "&".join(["status=new"] * 400)  # 4.4 KB
    before = len(_entries(env, "breach.queue.read"))
    r = env.client.get(f"/v1/breaches/queue?{query}", headers=env.h("caseworker"))
    assert r.status_code == 414
    assert r.json() == {"detail": f"query string of {len(query)} bytes; at most 2048"}
    assert len(_entries(env, "breach.queue.read")) == before


def test_repeated_filters_are_recorded_once(env):
    r = env.client.get("/v1/breaches/queue?" + "&".join(["status=new"] * 150), headers=env.h("caseworker"))
    assert r.status_code == 200, r.text
    (entry,) = _entries(env, "breach.queue.read")[-1:]
    assert entry["detail"]["status"] == ["new"]


# ------------------------------------------------------------------ item 14: refusals

def test_external_requester_cannot_tell_unknown_wearer_from_unmonitored_period(env):
    """A police requester probing wearers gets the same answer whatever the reason,
    and each probe is audited with the real reason (subject by pseudonym only)."""
    unknown = env.client.post("/v1/access-requests", json=request_body("S-NOBODY"), headers=env.h("requester"))
    outside = env.client.post("/v1/access-requests", json=request_body(env.subjects[0], start="2020-01-01T00:00:00Z",
                                                                        end="2020-01-02T00:00:00Z"),
                              headers=env.h("requester"))
    assert unknown.status_code == outside.status_code == 403
    pattern = r"^this request was refused; the EM Hub can tell you why: quote reference A-(\d+)$"
    refs = [int(re.match(pattern, r.json()["detail"]).group(1)) for r in (unknown, outside)]
    entries = {e["idx"]: e for e in _entries(env, "access.refused")}
    first, second = entries[refs[0]], entries[refs[1]]
    assert first["actor"] == second["actor"] == "police-1"
    assert first["detail"]["operation"] == "create_access_request"
    assert first["detail"]["status"] == 404 and first["detail"]["reason"] == "subject '[subject]' has no monitoring record"
    assert second["detail"]["status"] == 422
    assert "is not inside the monitoring of subject '[subject]'" in second["detail"]["reason"]
    assert first["subject"] == env.app.state.audit.pseudonym("S-NOBODY")
    assert "S-NOBODY" not in json.dumps(first) and env.subjects[0] not in json.dumps(second)


def test_staff_still_get_the_reason(env):
    r = env.client.post("/v1/access-requests", json=request_body("S-NOBODY"), headers=env.h("caseworker"))
    assert r.status_code == 404
    assert r.json() == {"detail": "subject 'S-NOBODY' has no monitoring record"}
    (entry,) = _entries(env, "access.refused")
    assert entry["actor"] == "cw-1" and entry["detail"]["status"] == 404


def test_denied_role_on_personal_data_is_audited(env):
    r = env.client.get("/v1/breaches/queue", headers=env.h("feed"))
    assert r.status_code == 403
    (entry,) = _entries(env, "access.refused")
    assert entry["actor"] == "feed-1" and entry["role"] == "feed"
    assert entry["detail"]["operation"] == "breach_queue" and entry["detail"]["status"] == 403


def test_revoked_user_attempt_is_audited_by_name(env):
    r = env.client.get(f"/v1/subjects/{env.subjects[0]}/breaches", headers=env.h("revoked"))
    assert r.status_code == 401
    (entry,) = _entries(env, "access.refused")
    assert entry["actor"] == "gone-1" and entry["detail"]["reason"] == "revoked token"
    assert entry["subject"] == env.app.state.audit.pseudonym(env.subjects[0])


def test_anonymous_attempts_are_summarised(env):
    env.app.state.failed_auth.interval_s = 0.0
    for _ in range(3):
        assert env.client.get("/v1/breaches/queue", headers={"Authorization": "Bearer nope"}).status_code == 401
    summaries = _entries(env, "auth.failed")
    assert sum(e["detail"]["attempts"].get("breach_queue", 0) for e in summaries) == 3
    assert all(e["actor"] is None for e in summaries)


def test_non_personal_operations_are_not_audited_when_refused(env):
    assert env.client.get("/v1/reports/breaches", headers=env.h("caseworker")).status_code == 403
    assert _entries(env, "access.refused") == []


# ------------------------------------------------------------------ item 26: storage full

@pytest.fixture()
def tiny_disk(tmp_path):
    """A 64 MiB tmpfs: a real file system that can be filled. Mounting needs root, which CI
    has; on a developer's machine without it the test is skipped, never in CI."""
    import os
    import subprocess

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs to fill: {done.stderr.decode().strip()}")
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_507_with_a_clear_message_for_reads_and_writes(api_template, tiny_disk):
    import shutil

    from api.http.errors import STORAGE_FULL

    env = copy_env(api_template, tiny_disk / "home")
    try:
        assert env.client.get("/v1/breaches/queue", headers=env.h("caseworker")).status_code == 200
        with open(tiny_disk / "filler", "wb", buffering=0) as fh:  # fill the disk to the last byte
            try:
                while True:
                    fh.write(b"\0" * (1 << 16))
            except OSError:
                pass
            for size in (4096, 256, 1):
                try:
                    while True:
                        fh.write(b"\0" * size)
                except OSError:
                    pass
        assert shutil.disk_usage(tiny_disk).free < 4096
        read = env.client.get("/v1/breaches/queue?limit=500", headers=env.h("caseworker"))
        write = env.client.post("/v1/access-requests", json=request_body(env.subjects[0]), headers=env.h("caseworker"))
        for r in (read, write):
            assert r.status_code == 507, r.text
            assert r.json() == {"detail": STORAGE_FULL}
    finally:
        close_env(env)


def test_disk_full_oserror_is_recognised():
    import errno

    from sqlalchemy.exc import OperationalError

    from api.http.errors import is_storage_full

    assert is_storage_full(OSError(errno.ENOSPC, "No space left on device"))
    wrapped = OperationalError("INSERT ...", {}, Exception("database or disk is full"))
    assert is_storage_full(wrapped)
    assert not is_storage_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_storage_full(OperationalError("SELECT", {}, Exception("no such table: x")))


# ------------------------------------------------------------------ offline docs

class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.refs += [v for k, v in a.items() if k in ("src", "href") and v]
        if tag == "script":
            self._in_script = "src" not in a

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False


def test_docs_reference_only_local_files(env):
    r = env.client.get("/docs")
    assert r.status_code == 200
    parser = _Refs()
    parser.feed(r.text)
    assert parser.refs, "the docs page loads its assets"
    for ref in parser.refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        assert env.client.get(ref).status_code == 200, ref
    assert parser.inline_scripts == 0
    assert env.client.get("/redoc").status_code == 404  # ReDoc needs a CDN: not served
    init = env.client.get("/static/docs-init.js").text
    assert "validatorUrl: null" in init  # Swagger UI's online validator badge would call out


def test_vendored_assets_match_their_manifest():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "vendor_assets.py"
    spec = importlib.util.spec_from_file_location("vendor_assets", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.check() == []
    manifest = json.loads((mod.VENDOR / "MANIFEST.json").read_text())
    assert "swagger-ui-dist/swagger-ui-bundle.js" in manifest["files"]
    assert all(row["license"] and row["version"] for row in manifest["files"].values())
