"""Issue 13, section 6: priority 1 records are announced within seconds of
detection by a signed webhook and by email, to real receivers this module
starts on 127.0.0.1 (an HTTP server in a thread; aiosmtpd's SMTP server);
nothing is sent twice for the same record version, a changed record is sent
again, failures are retried with backoff and end on the dead-letter list,
and no message carries coordinates."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from api_fixtures import api_env, api_template  # noqa: F401 (fixtures)
from pg_server import missing_part
from trails.timestamps import format_ms

H = 3_600_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A webhook receiver: records each POST; answers 500 to the first `fail` of them (all when None)."""

    def __init__(self, fail: int | None = 0) -> None:
        self.got: list[tuple[dict, bytes]] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failing = receiver.fail is None or len(receiver.got) <= receiver.fail
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", _free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def smtp():
    try:
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Message
    except ImportError as exc:
        missing_part(f"aiosmtpd is not installed ({exc}): pip install -e .[test]")

    messages = []

    class Collect(Message):
        def handle_message(self, message):
            messages.append(message)

    controller = Controller(Collect(), hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, messages
    controller.stop()


def _configure(env, **settings) -> None:
    new = env.app.state.settings.model_copy(update=settings)
    env.app.state.settings = new
    env.app.state.stream.settings = new


def _tamper(env, subject: str, n: int = 0) -> str:
    from api.db.models import BreachRow

    t = env.clock() - 2 * H
    bid = hashlib.sha256(f"tamper:{subject}:{n}".encode()).hexdigest()[:16]
    with env.session() as s:
        device = s.scalar(BreachRow.__table__.select().with_only_columns(BreachRow.device_id)
                          .where(BreachRow.subject_id == subject).limit(1)) or "D-X"
        s.add(BreachRow(breach_id=bid, kind="breach", type="strap_tamper", subject_id=subject, device_id=device,
                        zone_id=None, start=format_ms(t), end=format_ms(t + 60_000), start_ms=t, end_ms=t + 60_000,
                        duration_s=60.0, priority=1, first_seen_ms=t, updated_ms=t, status="new"))
        s.commit()
    return bid


def _wait(predicate, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_p1_record_is_announced_once_by_signed_webhook_and_email_within_seconds(api_env, smtp):
    from api.service.notifications import notify_cycle

    env = api_env
    controller, mails = smtp
    hook = Receiver()
    try:
        _configure(env, notify_webhook_url=hook.url, smtp_host="127.0.0.1", smtp_port=controller.port,
                   notify_email_to=("hub-team@example.org",))
        subject = env.subjects[0]
        env.app.state.stream.start()  # the continuous service, as `tagtrail serve` runs it
        env.app.state.stream.flush()  # its first pass done, so the record added below stands
        bid = _tamper(env, subject)
        t0 = time.monotonic()
        assert _wait(lambda: len(hook.got) == 1 and len(mails) == 1)  # the running service sends, unprompted
        assert time.monotonic() - t0 < 10
        headers, body = hook.got[0]
        key = (env.home / "notify.key").read_bytes()
        assert headers["x-tagtrail-signature"] == "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        doc = json.loads(body)
        assert doc["breach_id"] == bid and doc["type"] == "strap_tamper" and doc["priority"] == 1
        assert doc["subject_id"] == subject and doc["console_path"] == f"/breaches/{bid}"
        mail = mails[0]
        assert mail["To"] == "hub-team@example.org" and "strap tamper" in mail["Subject"]
        text = mail.get_payload()
        for message in (body.decode(), text):
            assert not re.search(r'"(lat|lon|x|y|coordinates)"', message)
            assert not re.search(r"-?\d{1,3}\.\d{4,}", message)  # no position-like decimals

        notify_cycle(env.app.state.session_factory, env.app.state.settings, now_ms=env.clock())  # again: nothing new
        time.sleep(1.5)
        assert len(hook.got) == 1 and len(mails) == 1
        from api.db.models import BreachRow

        with env.session() as s:  # detection extends the record: a new version, announced again
            row = s.get(BreachRow, bid)
            row.end_ms += 60_000
            row.end = format_ms(row.end_ms)
            s.commit()
        assert _wait(lambda: len(hook.got) == 2 and len(mails) == 2)
    finally:
        env.app.state.stream.stop()
        hook.close()


def test_failures_are_retried_with_backoff_then_dead_lettered(api_env):
    from api.service.notifications import notify_cycle

    env = api_env
    flaky, dead = Receiver(fail=2), Receiver(fail=None)
    try:
        # the service is not started here: the test drives the cycles itself, at instants it chooses
        _configure(env, notify_webhook_url=flaky.url, notify_max_attempts=3, notify_backoff_s=10.0)
        _tamper(env, env.subjects[1])
        factory, now = env.app.state.session_factory, env.clock()
        notify_cycle(factory, env.app.state.settings, now_ms=now)  # fails: next try in 10 s
        notify_cycle(factory, env.app.state.settings, now_ms=now + 5_000)  # not due yet
        assert len(flaky.got) == 1
        notify_cycle(factory, env.app.state.settings, now_ms=now + 10_000)  # fails: next in 20 s
        notify_cycle(factory, env.app.state.settings, now_ms=now + 29_000)
        assert len(flaky.got) == 2
        notify_cycle(factory, env.app.state.settings, now_ms=now + 30_000)  # third try succeeds
        assert len(flaky.got) == 3
        _configure(env, notify_webhook_url=dead.url, notify_max_attempts=3, notify_backoff_s=0.0)
        _tamper(env, env.subjects[2])
        for k in range(5):
            notify_cycle(factory, env.app.state.settings, now_ms=now + 40_000 + k)
        r = env.client.get("/v1/notifications?status=dead", headers=env.h("admin"))
        assert r.status_code == 200
        (row,) = r.json()
        assert row["attempts"] == 3 and row["last_error"] == "RuntimeError: webhook answered HTTP 500"
        assert len(dead.got) == 3  # no fourth try
        sent = env.client.get("/v1/notifications?status=sent", headers=env.h("admin")).json()
        assert [n["attempts"] for n in sent] == [3]
    finally:
        flaky.close()
        dead.close()


def test_a_record_the_ladder_refers_immediately_is_announced_too(api_env):
    """A home ladder that refers every exclusion-zone entry (priority 2) immediately: such a record is
    announced like a priority 1 one; a priority 2 record of another type is not."""
    from api.db.models import BreachRow
    from api.service.notifications import notify_cycle

    env = api_env
    hook = Receiver()
    try:
        (env.home / "escalation.json").write_text(json.dumps({
            "window_days": 182, "steps": [{"step": "warning_letter_1", "at": 1}],
            "immediate": [{"step": "refer_immediately", "types": ["exclusion_entry"], "priority": 2}]}))
        _configure(env, notify_webhook_url=hook.url)
        t = env.clock() - 2 * H
        with env.session() as s:
            for n, kind in enumerate(("exclusion_entry", "curfew_absence")):
                bid = hashlib.sha256(f"refer:{n}".encode()).hexdigest()[:16]
                s.add(BreachRow(breach_id=bid, kind="breach", type=kind, subject_id=env.subjects[0],
                                device_id="D-X", zone_id=None, start=format_ms(t), end=format_ms(t + H), start_ms=t,
                                end_ms=t + H, duration_s=3600.0, priority=2, first_seen_ms=t, updated_ms=t,
                                status="new"))
            s.commit()
        notify_cycle(env.app.state.session_factory, env.app.state.settings, now_ms=env.clock())
        assert [json.loads(body)["type"] for _, body in hook.got] == ["exclusion_entry"]
    finally:
        hook.close()


def test_the_owner_is_emailed_at_their_address_and_the_team_too(api_env, smtp):
    """Issue 13 §6 "notify the owner and a configurable team": the owning caseworker's account address
    (set by an admin, PUT /v1/admin/users/{id}/email) is added to the team's; with no team address the owner
    alone is written to; a revoked owner is not."""
    from api.db.models import User
    from api.service.notifications import notify_cycle

    env = api_env
    controller, mails = smtp
    with env.session() as s:
        cw1 = s.scalar(select(User.id).where(User.name == "cw-1", User.revoked_ms.is_(None)))
    r = env.client.put(f"/v1/admin/users/{cw1}/email", headers=env.h("admin"), json={"email": "not an address"})
    assert r.status_code == 422 and "email must be an address" in r.json()["detail"]
    r = env.client.put(f"/v1/admin/users/{cw1}/email", headers=env.h("admin"), json={"email": "cw1@hub.example.org"})
    assert r.status_code == 200 and r.json()["email"] == "cw1@hub.example.org"
    owned, unowned = env.subjects[0], env.subjects[1]
    assert env.client.put(f"/v1/subjects/{owned}/owner", headers=env.h("admin"),
                          json={"owner": "cw-1"}).status_code == 200
    _configure(env, smtp_host="127.0.0.1", smtp_port=controller.port, notify_email_to=("hub-team@example.org",))
    factory = env.app.state.session_factory
    _tamper(env, owned, 1)
    notify_cycle(factory, env.app.state.settings, now_ms=env.clock())
    assert [m["To"] for m in mails] == ["hub-team@example.org, cw1@hub.example.org"]
    _configure(env, notify_email_to=())  # no team address: the owner alone; a wearer with no owner: nobody
    _tamper(env, owned, 2)
    _tamper(env, unowned, 3)
    notify_cycle(factory, env.app.state.settings, now_ms=env.clock())
    assert [m["To"] for m in mails[1:]] == ["cw1@hub.example.org"]
    body = mails[1].get_payload()
    assert "owner: cw-1" in body and "cw1@hub.example.org" not in body

