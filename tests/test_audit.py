"""The audit log on a real service: `tagtrail audit verify` passes on the log
the API wrote, and fails, naming the first bad entry, on every kind of
tampering someone with write access to the database (and with the triggers
dropped) could do: an edited row, an edited row with its hash recomputed, a
deleted row, two rows swapped, truncation, a forged checkpoint. Each case is
checked twice: where HOME/keys is present (entry MACs checked) and as a DPO
holding only the public key sees it (checkpoints alone). The database itself
refuses UPDATE and DELETE on the log. More tamper cases (query columns,
forged rows, deleted checkpoints, exported copies) are in
tests/test_audit_integrity.py."""
from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
import rfc8785
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DatabaseError

from api.audit import merkle
from api.audit.log import AuditLog, verify_log
from api.cli.main import main
from api.db.session import open_database
from api.db.models import AuditEntry
from api.settings import Settings
from api_fixtures import api_template, close_env, create_request, decide, make_env  # noqa: F401


def list_checkpoints(folder) -> list[tuple[int, object]]:
    """(size, path) of the checkpoint files under `folder` (any depth), by size:
    found by name here, not through the code under test."""
    return sorted((int(p.stem), p) for p in folder.rglob("*.json") if p.stem.isdigit() and len(p.stem) == 12)


def sign_every_commit(home) -> None:
    """HOME/settings.json: a checkpoint after every commit (audit_checkpoint_s 0),
    so each API call's entries get a checkpoint of their own."""
    cfg = home / "settings.json"
    doc = json.loads(cfg.read_text()) if cfg.exists() else {}
    cfg.write_text(json.dumps({**doc, "audit_checkpoint_s": 0}))


@pytest.fixture()
def served(api_template, tmp_path):
    """A home whose audit log the API wrote: user setup, requests, a decision,
    reads and reports, each call committed with its own checkpoint."""
    shutil.copytree(api_template, tmp_path / "home")
    sign_every_commit(tmp_path / "home")
    env = make_env(tmp_path / "home")
    rid = create_request(env, "caseworker")["id"]
    assert decide(env, rid).status_code == 200
    assert env.client.get(f"/v1/access-requests/{rid}", headers=env.h("auditor")).status_code == 200
    assert env.client.get("/v1/reports/breaches", headers=env.h("auditor")).status_code == 200
    assert env.client.get(f"/v1/access-requests/{rid}/extract?format=csv", headers=env.h("caseworker")).status_code == 200
    home = env.home
    close_env(env)
    return home


def _verify(home, capsys, *extra) -> tuple[int, str]:
    code = main(["audit", "verify", "--home", str(home), *extra])
    cap = capsys.readouterr()
    return code, (cap.out + cap.err).strip()


def _db(home) -> sqlite3.Connection:
    """A raw connection with the append-only triggers dropped: what an attacker with file access can do."""
    con = sqlite3.connect(home / "tagtrail.db")
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("DROP TRIGGER audit_log_no_delete")
    return con


def _rows(con) -> list[tuple[int, str, str]]:
    return con.execute("SELECT idx, entry, leaf_hash FROM audit_log ORDER BY idx").fetchall()


def test_real_log_verifies(served, capsys):
    code, out = _verify(served, capsys)
    assert code == 0, out
    con = sqlite3.connect(served / "tagtrail.db")
    n = con.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    con.close()
    n_cp = len(list_checkpoints(served / "audit" / "checkpoints"))
    assert n >= 15 and n_cp >= 6
    assert out.startswith(f"OK: {n} entries match {n_cp} signed checkpoint(s)")
    assert out.endswith("; entry MACs checked")


def test_database_refuses_update_and_delete(served):
    settings = Settings.from_home(served)
    engine, factory = open_database(settings)
    try:
        for stmt in (update(AuditEntry).where(AuditEntry.idx == 1).values(action="nothing.happened"),
                     delete(AuditEntry).where(AuditEntry.idx == 1),
                     delete(AuditEntry)):
            with factory() as s:
                with pytest.raises(DatabaseError, match="append-only"):
                    s.execute(stmt)
                    s.commit()
    finally:
        engine.dispose()


def _edit_keep_hash(con, k):
    idx, entry, _ = _rows(con)[k]
    doc = json.loads(entry)
    doc["actor"] = "someone-else"
    con.execute("UPDATE audit_log SET entry=? WHERE idx=?", (rfc8785.dumps(doc).decode(), idx))


def _edit_rehash(con, k):
    idx, entry, _ = _rows(con)[k]
    doc = json.loads(entry)
    assert doc["action"] != "nothing.happened"
    doc["action"] = "nothing.happened"
    new = rfc8785.dumps(doc)
    con.execute("UPDATE audit_log SET entry=?, leaf_hash=?, action=? WHERE idx=?",
                (new.decode(), merkle.leaf_hash(new).hex(), "nothing.happened", idx))


def _delete(con, k):
    con.execute("DELETE FROM audit_log WHERE idx=?", (k,))


def _delete_and_renumber(con, k):
    """Delete entry k and shift the later ones down, rewriting their idx and
    hashes, every query column kept and each row's old MAC copied along."""
    cols = ("ts_ms", "actor_id", "actor", "role", "org", "action", "request_id", "subject_pseudonym", "ground",
            "justification_ref", "extract_sha256", "mac")
    rows = con.execute(f"SELECT idx, entry, {', '.join(cols)} FROM audit_log WHERE idx > ? ORDER BY idx",
                       (k,)).fetchall()
    con.execute("DELETE FROM audit_log WHERE idx>=?", (k,))
    for idx, entry, *values in rows:
        doc = json.loads(entry)
        doc["idx"] = idx - 1
        new = rfc8785.dumps(doc)
        con.execute(f"INSERT INTO audit_log (idx, entry, leaf_hash, {', '.join(cols)}) "
                    f"VALUES (?, ?, ?{', ?' * len(cols)})",
                    (idx - 1, new.decode(), merkle.leaf_hash(new).hex(), *values))


def _swap(con, k):
    rows = _rows(con)
    a, b = rows[k][0], rows[k + 1][0]
    con.execute("UPDATE audit_log SET idx=-1 WHERE idx=?", (a,))
    con.execute("UPDATE audit_log SET idx=? WHERE idx=?", (a, b))
    con.execute("UPDATE audit_log SET idx=? WHERE idx=-1", (b,))


def _truncate(con, k):
    con.execute("DELETE FROM audit_log WHERE idx>=?", (k,))


_MAC_FORGED = "entry {k}: MAC does not match its content (forged, or edited without the service's key?)"

#: name -> (tamper(con, k), expected message fragment with {k}: with HOME/keys here, with the public key only)
TAMPERING = {
    "edited": (_edit_keep_hash, "entry {k}: hash does not match its content (edited?)",
               "entry {k}: hash does not match its content (edited?)"),
    "edited and rehashed": (_edit_rehash, _MAC_FORGED, "entry {k} does not match checkpoint"),
    "deleted": (_delete, "entry {k} missing (deleted?)", "entry {k} missing (deleted?)"),
    "deleted and renumbered": (_delete_and_renumber, _MAC_FORGED, "entry {k} does not match checkpoint"),
    "swapped": (_swap, "entries {k} and {k1} out of order (swapped?)", "entries {k} and {k1} out of order (swapped?)"),
    "truncated": (_truncate, "entries but checkpoint", "entries but checkpoint"),
}


@pytest.mark.parametrize("keys", ["with MAC key", "public key only"])
@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_is_caught_and_named(served, capsys, name, keys):
    tamper, with_key, public_only = TAMPERING[name]
    fragment = with_key if keys == "with MAC key" else public_only
    if keys == "public key only":
        (served / "keys" / "audit-mac.key").unlink()
    con = sqlite3.connect(served / "tagtrail.db")
    n = con.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    con.close()
    # the entry tampered with: one whose checkpoint covers only it (each API call checkpoints its own entry)
    k = n - 4
    con = _db(served)
    tamper(con, k)
    con.commit()
    con.close()
    code, out = _verify(served, capsys)
    assert code == 1, out
    assert out.startswith("FAILED: ")
    assert fragment.format(k=k, k1=k + 1) in out, out
    if name == "truncated":  # the first checkpoint beyond the cut is named
        first = min(size for size, _ in list_checkpoints(served / "audit" / "checkpoints") if size > k)
        assert out == f"FAILED: log has {k} entries but checkpoint {first:012d} commits to {first} (truncated?)"


def test_forged_or_altered_checkpoint_is_caught(served, capsys):
    size, path = list_checkpoints(served / "audit" / "checkpoints")[-1]
    cp = json.loads(path.read_text())
    cp["root"] = "00" * 32
    path.write_text(json.dumps(cp))
    code, out = _verify(served, capsys)
    assert code == 1
    assert f"checkpoint {size:012d}: signature does not verify" in out


def test_service_refuses_to_sign_over_tampering(served):
    """After a rewrite, the service never signs a new checkpoint over it."""
    con = _db(served)
    k = _rows(con)[-3][0]
    _edit_rehash(con, k)
    con.commit()
    con.close()
    settings = Settings.from_home(served)
    engine, factory = open_database(settings)
    try:
        audit = AuditLog(settings)
        with factory() as s:
            audit.append(s, action="test.append", actor=None)
            s.commit()
            from api.audit.log import AuditIntegrityError

            with pytest.raises(AuditIntegrityError, match="no longer match checkpoint"):
                audit.write_checkpoint(s)
            s.rollback()
            report = verify_log(settings, s)
        assert not report.ok and report.first_bad_index == k
    finally:
        engine.dispose()


def test_entries_hold_no_coordinates_and_pseudonyms_are_keyed(served):
    settings = Settings.from_home(served)
    engine, factory = open_database(settings)
    try:
        audit = AuditLog(settings)
        with factory() as s:
            with pytest.raises(ValueError, match="coordinates never go into the audit log"):
                audit.append(s, action="x.y", actor=None, detail={"where": [{"lat": 51.5}]})
            s.rollback()
            entries = [json.loads(e) for (e,) in s.execute(text("SELECT entry FROM audit_log"))]
    finally:
        engine.dispose()
    subjects = {e["subject"] for e in entries if e["subject"]}
    assert subjects and all(len(p) == 32 for p in subjects)
    # the pseudonym depends on the key in HOME/keys: a new key gives a different one
    other = Settings.from_home(served.parent / "other-home")
    assert AuditLog(other).pseudonym("S-000000") != AuditLog(settings).pseudonym("S-000000")


def test_verify_needs_a_database(tmp_path, capsys):
    code, out = _verify(tmp_path / "nothing", capsys)
    assert code == 2 and "no database" in out
