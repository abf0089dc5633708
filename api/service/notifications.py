"""Notifications of the records that cannot wait: priority 1 (strap tamper,
out of contact, a missed curfew) and any record the escalation ladder
refers immediately (its `immediate` rules: a type at a priority) reach the
Hub's team within seconds of detection, by a signed webhook and by email.

An outbox (`Notification`): each record version (its type, priority, start
and end) gets one row per configured channel, so nothing is sent twice for
the same version, and a record that detection extends or changes is sent
again as a new version. The stream service runs `notify_cycle` after each
pass (its housekeeping): rows are enqueued, then every due row is tried;
a failure is retried with exponential backoff (`notify_backoff_s` doubled
each time) and after `notify_max_attempts` the row is ``dead``, listed for
admins (`GET /v1/notifications?status=dead`).

The webhook body is JSON signed with HMAC-SHA256 under a per-home key
(HOME/notify.key, made on first use, 0600), sent as
``X-Tagtrail-Signature: sha256=<hex>``. Email goes through `smtplib`
(host, port, STARTTLS from the settings) to the team (`notify_email_to`)
and to the wearer's owning caseworker when their account has an address
(the owner and address as they were when the version was queued). A notification never carries
coordinates: the record's id, type, priority, times, wearer and owner, and
where to look in the console.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import smtplib
from email.message import EmailMessage
from pathlib import Path

import httpx
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.db.models import BreachRow, Notification, User, Wearer
from api.service.ladder import LadderError, load_ladder
from api.service.london import london_time
from api.settings import Settings

__all__ = ["SIGNATURE_HEADER", "channels", "enqueue", "send_due", "notify_cycle", "signing_key", "sign",
           "read_notifications"]

SIGNATURE_HEADER = "X-Tagtrail-Signature"


def channels(settings: Settings) -> list[str]:
    """The channels configured: the webhook when it has a URL, email when there is an SMTP host (a message
    goes to the team, `notify_email_to`, and to the wearer's owner when they have an address)."""
    return ([] if settings.notify_webhook_url is None else ["webhook"]) + (["email"] if settings.smtp_host else [])


def _recipients(settings: Settings, payload: dict) -> list[str]:
    team = list(settings.notify_email_to or ())
    owner = payload.get("owner_email")
    return team + ([owner] if owner and owner not in team else [])


def signing_key(home: Path) -> bytes:
    """This home's webhook key (HOME/notify.key), made on first use, readable by the service only."""
    path = Path(home) / "notify.key"
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def _version(b: BreachRow) -> str:
    return hashlib.sha256(f"{b.type}|{b.priority}|{b.start}|{b.end}".encode()).hexdigest()


def _payload(session: Session, b: BreachRow) -> dict:
    owner = session.execute(select(User.name, User.email).join(Wearer, Wearer.owner_id == User.id)
                            .where(Wearer.subject_id == b.subject_id, User.revoked_ms.is_(None))).first()
    return {"breach_id": b.breach_id, "kind": b.kind, "type": b.type, "priority": b.priority, "start": b.start,
            "end": b.end, "start_uk": london_time(b.start_ms).text, "subject_id": b.subject_id,
            "owner": owner[0] if owner else None, "owner_email": owner[1] if owner else None,
            "console_path": f"/breaches/{b.breach_id}"}


def _immediate_rules(settings: Settings):
    try:
        return load_ladder(settings.home).immediate
    except LadderError:  # a broken escalation.json is reported where the ladder is read; priority 1 still goes
        return ()


def enqueue(session: Session, settings: Settings, *, now_ms: int) -> int:
    """Outbox rows for every live urgent record version not yet queued (priority 1, or a type and priority
    the escalation ladder refers immediately); returns how many."""
    chans = channels(settings)
    if not chans:
        return 0
    added = 0
    urgent = [BreachRow.priority == 1]  # and whatever the ladder in force refers immediately
    for _, types, priority in _immediate_rules(settings):
        urgent.append(and_(BreachRow.type.in_(sorted(types)), BreachRow.priority == priority))
    rows = list(session.scalars(select(BreachRow).where(or_(*urgent), BreachRow.status != "withdrawn")))
    done = {tuple(r) for r in session.execute(select(Notification.breach_id, Notification.version,
                                                     Notification.channel)
                                              .where(Notification.breach_id.in_([b.breach_id for b in rows])))}
    for b in rows:
        v = _version(b)
        payload = None
        for ch in chans:
            if (b.breach_id, v, ch) in done:
                continue
            payload = payload or _payload(session, b)
            if ch == "email" and not _recipients(settings, payload):
                continue  # nobody to write to: no team address, and the owner has none
            session.add(Notification(breach_id=b.breach_id, version=v, channel=ch,
                                     payload_json=json.dumps(payload, sort_keys=True),
                                     status="pending", attempts=0, next_attempt_ms=now_ms, created_ms=now_ms))
            added += 1
    return added


def _send_webhook(settings: Settings, body: bytes) -> None:
    r = httpx.post(settings.notify_webhook_url, content=body, timeout=5.0,
                   headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(signing_key(settings.home),
                                                                                        body)})
    if r.status_code >= 300:
        raise RuntimeError(f"webhook answered HTTP {r.status_code}")


def _send_email(settings: Settings, payload: dict) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"] = settings.smtp_from, ", ".join(_recipients(settings, payload))
    msg["Subject"] = f"Priority {payload['priority']} {payload['type'].replace('_', ' ')}: wearer {payload['subject_id']}"
    msg.set_content(f"A priority {payload['priority']} record needs action now.\n\n"
                    f"Record: {payload['breach_id']} ({payload['type'].replace('_', ' ')})\n"
                    f"Wearer: {payload['subject_id']}; owner: {payload['owner'] or 'none assigned'}\n"
                    f"From: {payload['start_uk']} ({payload['start']})\n"
                    f"Open it in the console: {payload['console_path']}\n")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        smtp.send_message(msg)


def _deliver(settings: Settings, channel: str, payload_json: str) -> str | None:
    """Send one message; None when delivered, else why not."""
    try:
        if channel == "webhook":
            _send_webhook(settings, payload_json.encode("utf-8"))
        else:
            _send_email(settings, json.loads(payload_json))
    except Exception as exc:  # noqa: BLE001 - any failure to deliver is retried, then dead-lettered
        return f"{type(exc).__name__}: {exc}"[:500]
    return None


def send_due(factory, settings: Settings, *, now_ms: int) -> int:
    """Try every due pending row once, with no transaction open while sending (a slow receiver must not
    hold the database's one writer); returns how many were sent."""
    with factory() as session:
        due = session.execute(select(Notification.id, Notification.channel, Notification.payload_json).where(
            Notification.status == "pending", Notification.next_attempt_ms <= now_ms)).all()
        session.rollback()
    outcomes = {nid: _deliver(settings, channel, body) for nid, channel, body in due}
    with factory() as session:
        for nid, error in outcomes.items():
            n = session.get(Notification, nid)
            n.attempts += 1
            if error is None:
                n.status, n.sent_ms = "sent", now_ms
            elif n.attempts >= settings.notify_max_attempts:
                n.status, n.last_error = "dead", error
            else:
                n.last_error = error
                n.next_attempt_ms = now_ms + int(settings.notify_backoff_s * 1000 * 2 ** (n.attempts - 1))
        session.commit()
    return sum(1 for e in outcomes.values() if e is None)


def read_notifications(session: Session, audit, user: User, *, status: str | None, now_ms: int,
                       limit: int = 500) -> list[Notification]:
    """The outbox, newest first (`status` "dead": the dead-letter list), as an admin reads it (API and
    console): audited ``notification.list`` with the ids."""
    q = select(Notification).order_by(Notification.id.desc()).limit(limit)
    if status is not None:
        q = q.where(Notification.status == status)
    rows = list(session.scalars(q))
    audit.append(session, action="notification.list", actor=user, now_ms=now_ms,
                 detail={"status": status, "ids": [n.id for n in rows]})
    return rows


def notify_cycle(factory, settings: Settings, *, now_ms: int) -> None:
    """Enqueue new record versions (one short transaction), then send what is due: the stream service's
    housekeeping step."""
    if not channels(settings):
        return
    with factory() as session:
        try:
            enqueue(session, settings, now_ms=now_ms)
            session.commit()
        except IntegrityError:  # another process queued the same version first
            session.rollback()
    send_due(factory, settings, now_ms=now_ms)
