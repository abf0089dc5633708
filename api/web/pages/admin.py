"""`/admin`: running the service from the console (admin only): users (add,
showing the new token once; revoke), uploads of zones (a GeoJSON
FeatureCollection) and subjects (SUBJECTS.json) with a validation error per
item, the policy in force and continuous detection's status.

Authorisation is the API's: the page needs ``list_users``, the zones
upload ``upsert_zone``, the subjects upload ``upsert_assignment``, the user
forms ``add_user`` and ``revoke_user`` (all admin only, as
``/v1/admin/users``). Users are added and revoked with `api.access.users`
(``user.add`` / ``user.revoke`` entries, channel console, the admin as
actor).

An upload applies from now, as the API's PUTs do, through the same steps
(`api.service.admin_changes`: zones first, since assignments name them).
It is all or nothing: each item is tried in its own savepoint, every
item's error is listed, and if any item fails nothing is kept, so a file is
never half applied. Continuous detection is told once the upload is
committed.
"""
from __future__ import annotations

import json
from dataclasses import fields
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy import select

from api.access.users import UserError, add_user, list_users, revoke_user
from api.audit.log import commit_with_checkpoint
from api.db.models import ROLES, ZoneRow
from api.service.admin_changes import apply_assignment, apply_zone
from api.service.boundaries import BoundaryError, audit_load, parse_boundaries, store_boundaries
from api.service.conditions import ConditionError
from api.web.auth import DbSession, console_audit, now_ms, require, require_form
from api.web.sessions import SignedIn
from api.web.templating import render
from geofence.errors import SubjectsError
from geofence.subjects import parse_subjects
from trails.errors import InputError
from trails.timestamps import parse_timestamp

__all__ = ["router", "MAX_UPLOAD_BYTES"]

router = APIRouter(include_in_schema=False)

#: Largest zones or subjects file the console takes (a city's zones fit in a few MB).
MAX_UPLOAD_BYTES = 8 << 20
_NO_STORE = {"Cache-Control": "no-store"}


def _policy_rows(request: Request) -> list[tuple[str, str]]:
    policy = request.app.state.stream.policy()
    out = []
    for f in fields(policy):
        value = getattr(policy, f.name)
        if f.name.endswith("_ms"):
            out.append((f.name.removesuffix("_ms").replace("_", " "), f"{value // 1000:,} s ({value:,} ms)"))
        else:
            out.append((f.name.replace("_", " "), str(value)))
    return out


def _boundaries_status(request: Request) -> str:
    n = request.app.state.boundaries.count()
    return f"{n} loaded" if n else "none loaded (maps without a tile background have no context)"


def _page(request: Request, session, *, status_code: int = 200, **extra: Any) -> Response:
    context = {"users": list_users(session), "roles": [r for r in ROLES], "policy": _policy_rows(request),
               "policy_file": (request.app.state.settings.home / "policy.json").exists(),
               "new_user": None, "new_token": None, "user_error": None, "upload": None,
               "boundaries": _boundaries_status(request)}
    stream = request.app.state.stream.status(session)
    context |= {"stream": stream, "stream_as_of_ms": parse_timestamp(stream["as_of"]) if stream["as_of"] else None}
    session.rollback()  # the page only read
    return render(request, "admin/admin.html", context | extra, status_code=status_code, headers=_NO_STORE)


@router.get("/admin")
def admin_page(request: Request, session: DbSession,
               me: Annotated[SignedIn, Depends(require("list_users"))]) -> Response:
    return _page(request, session)


@router.post("/admin/users")
def add_user_form(request: Request, session: DbSession, me: Annotated[SignedIn, Depends(require_form("add_user"))],
                  name: Annotated[str, Form(max_length=200)], role: Annotated[str, Form(max_length=20)],
                  org: Annotated[str, Form(max_length=200)] = "",
                  email: Annotated[str, Form(max_length=320)] = "") -> Response:
    """Add a user; the answer shows their token, once (it is stored only as a hash)."""
    audit = console_audit(request)
    try:
        user, token = add_user(session, audit, name=name.strip(), role=role, org=org.strip() or None, actor=me.user,
                               now_ms=now_ms(request), email=email.strip() or None)
    except UserError as exc:
        session.rollback()
        return _page(request, session, status_code=422, user_error=str(exc))
    commit_with_checkpoint(session, audit)
    return _page(request, session, new_user=user.name, new_token=token)


@router.post("/admin/users/{user_id}/revoke")
def revoke_user_form(request: Request, session: DbSession,
                     me: Annotated[SignedIn, Depends(require_form("revoke_user"))],
                     user_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> Response:
    """Revoke a user: their token and console sessions stop working at once."""
    audit = console_audit(request)
    try:
        revoke_user(session, audit, user_id=user_id, actor=me.user, now_ms=now_ms(request))
    except UserError as exc:
        session.rollback()
        return _page(request, session, status_code=422, user_error=str(exc))
    commit_with_checkpoint(session, audit)
    return _page(request, session)


async def _read_json(file: UploadFile) -> tuple[Any, str | None]:
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return None, f"the file is over {MAX_UPLOAD_BYTES >> 20} MB"
    try:
        return json.loads(data), None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return None, f"the file is not JSON: {exc}"[:300]


def _apply_items(request: Request, session, items: list[tuple[str, Any]], apply) -> dict:
    """Try each (label, item) in a savepoint; all kept, or none if any failed."""
    errors, done = [], []
    for label, item in items:
        try:
            with session.begin_nested():
                done.append((label, apply(item)))
        except (ConditionError, InputError) as exc:
            errors.append((label, str(exc)))
    if errors or not items:
        session.rollback()
        return {"errors": errors or [("file", "it holds no items")], "done": []}
    commit_with_checkpoint(session, console_audit(request))
    request.app.state.stream.notify()
    return {"errors": [], "done": done}


def _zone_items(doc: Any) -> list[tuple[str, Any]] | str:
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        return "a zones file is a GeoJSON FeatureCollection with a list 'features'"
    return [(f"feature {i + 1} ({f.get('id')!r})" if isinstance(f, dict) else f"feature {i + 1}", f)
            for i, f in enumerate(doc["features"])]


@router.post("/admin/zones")
async def upload_zones(request: Request, session: DbSession,
                       me: Annotated[SignedIn, Depends(require_form("upsert_zone"))],
                       file: Annotated[UploadFile, File()]) -> Response:
    """Zones from a FeatureCollection: each feature added, or a new version from now on."""
    doc, problem = await _read_json(file)
    items = _zone_items(doc) if problem is None else problem
    return await _finish(request, session, "zones", items, lambda f: _one_zone(request, session, me, f))


def _one_zone(request: Request, session, me: SignedIn, feature: Any) -> str:
    if not isinstance(feature, dict) or not isinstance(feature.get("id"), str) or not feature["id"]:
        raise ConditionError("a zone needs a text 'id'")
    ch = apply_zone(session, console_audit(request), me.user, feature["id"], feature, now_ms=now_ms(request),
                    crs=request.app.state.stream.policy().crs)
    return f"{'added' if ch.added else ('new version' if ch.changed else 'unchanged')} (version {ch.version})"


@router.post("/admin/subjects")
async def upload_subjects(request: Request, session: DbSession,
                          me: Annotated[SignedIn, Depends(require_form("upsert_assignment"))],
                          file: Annotated[UploadFile, File()]) -> Response:
    """Assignments from SUBJECTS.json, each added (from now or later) or changed from now on."""
    doc, problem = await _read_json(file)
    if problem is None and not (isinstance(doc, dict) and isinstance(doc.get("subjects"), list)):
        problem = "a subjects file is SUBJECTS.json: an object with a list 'subjects'"
    items = problem or [(f"assignment {i + 1} ({e.get('subject_id')!r})" if isinstance(e, dict) else
                         f"assignment {i + 1}", e) for i, e in enumerate(doc["subjects"])]
    return await _finish(request, session, "subjects", items, lambda e: _one_assignment(request, session, me, e))


def _one_assignment(request: Request, session, me: SignedIn, entry: Any) -> str:
    zone_ids = set(session.scalars(select(ZoneRow.zone_id)))
    try:
        (new,) = parse_subjects({"subjects": [entry]}, zone_ids, source="this assignment")
    except SubjectsError as exc:
        raise ConditionError(str(exc).replace("this assignment: ", "")) from None
    change = apply_assignment(session, console_audit(request), me.user, new, now_ms=now_ms(request))
    return change.action.removeprefix("assignment.").replace("add", "added").replace("change", "changed")


async def _finish(request: Request, session, what: str, items, apply) -> Response:
    from starlette.concurrency import run_in_threadpool

    if isinstance(items, str):
        result = {"errors": [("file", items)], "done": []}
    else:
        result = await run_in_threadpool(_apply_items, request, session, items, apply)
    upload = {"what": what, **result}
    return await run_in_threadpool(lambda: _page(request, session, status_code=422 if result["errors"] else 200,
                                                 upload=upload))


@router.post("/admin/boundaries")
async def upload_boundaries(request: Request, session: DbSession,
                            me: Annotated[SignedIn, Depends(require_form("upsert_zone"))],
                            file: Annotated[UploadFile, File()],
                            name_property: Annotated[str, Form(max_length=100)] = "name") -> Response:
    """Boundaries for map context (`api.service.boundaries`): every feature checked, all or nothing,
    replacing those loaded before; audited ``boundaries.load``."""
    from starlette.concurrency import run_in_threadpool

    doc, problem = await _read_json(file)
    prop = name_property.strip() or "name"

    def run() -> Response:
        audit = console_audit(request)
        try:
            if problem is not None:
                raise BoundaryError([("file", problem)])
            load = store_boundaries(request.app.state.settings.home, parse_boundaries(doc, prop),
                                    lambda ld: audit_load(session, audit, me.user, ld, prop, now_ms=now_ms(request)))
        except BoundaryError as exc:
            session.rollback()
            return _page(request, session, status_code=422,
                         upload={"what": "boundaries", "errors": exc.problems, "done": []})
        commit_with_checkpoint(session, audit)
        done = [(f"{load.n_features} boundaries", (f"names from {prop!r}, {load.vertices_kept:,} vertices kept of "
                                                   f"{load.vertices_given:,}; they replace those loaded before"))]
        return _page(request, session, upload={"what": "boundaries", "errors": [], "done": done})

    return await run_in_threadpool(run)
