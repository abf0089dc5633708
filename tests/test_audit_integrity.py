"""Audit log integrity (issue 10, items 8, 9, 15 and 19): query columns checked
against their entries; forged rows INSERTed at the tail never signed; deleted
checkpoints and removed newest rows caught (the staleness bound, exported
copies); the integrity failure recorded and survived, and the operator's two
ways out (`audit resume` after a restore, `--accept-break` on the record);
checkpoint cadence, the LATEST pointer and sharded folders.

Every tamper case asserts that `tagtrail audit verify` exits 1 and names the
entry, the column or the checkpoint, with the message worked out from the rule."""
from __future__ import annotations

import getpass
import json
import secrets
import shutil
import sqlite3

import pytest
import rfc8785
import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError

import api.audit.log as audit_module
from api.audit import merkle
from api.audit.log import AuditIntegrityError, AuditLog
from api.audit.log import verify_log
from api.cli.main import main
from api.db.session import MIGRATIONS, make_engine, migrate, open_database
from api.settings import Settings
from test_audit import _db, list_checkpoints, served  # noqa: F401
from trails.errors import InputError
from trails.timestamps import format_ms, parse_timestamp

from api_fixtures import api_template  # noqa: F401

T0 = parse_timestamp("2024-03-05T10:00:00Z")
LATEST_FILE = "LATEST"
#: Query column -> the field of the canonical entry it repeats (AuditLog.append's entry fields).
ENTRY_COLUMNS = (("ts_ms", "ts_ms"), ("actor_id", "actor_id"), ("actor", "actor"), ("role", "role"), ("org", "org"),
                 ("action", "action"), ("request_id", "request_id"), ("subject_pseudonym", "subject"),
                 ("ground", "ground"), ("justification_ref", "justification_ref"),
                 ("extract_sha256", "extract_sha256"))
COLS = tuple(col for col, _ in ENTRY_COLUMNS)


def checkpoint_relpath(size: int) -> str:
    """Where the rule puts the checkpoint of `size` entries: <size // 10**6:06d>/<size:012d>.json."""
    return f"{size // 10**6:06d}/{size:012d}.json"


# ------------------------------------------------------------------- helpers
def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out.strip(), cap.err.strip()


def _verify(home, capsys, *extra) -> tuple[int, str]:
    code, out, err = _cli(capsys, "audit", "verify", "--home", str(home), *extra)
    return code, (out + err).strip()


def _entries(home) -> list[dict]:
    con = sqlite3.connect(home / "tagtrail.db")
    try:
        return [json.loads(e) for (e,) in con.execute("SELECT entry FROM audit_log ORDER BY idx")]
    finally:
        con.close()


def _insert(home, doc: dict, *, mac: str | None) -> None:
    """INSERT a well-formed row for `doc` (canonical entry, its hash, every
    column consistent): what someone with write access to the database can do."""
    text = rfc8785.dumps(doc).decode()
    values = [doc[key] for _, key in ENTRY_COLUMNS]
    con = sqlite3.connect(home / "tagtrail.db")
    con.execute(f"INSERT INTO audit_log (idx, entry, leaf_hash, mac, {', '.join(COLS)}) "
                f"VALUES (?, ?, ?, ?{', ?' * len(COLS)})",
                (doc["idx"], text, merkle.leaf_hash(text.encode()).hex(), mac, *values))
    con.commit()
    con.close()


def _forge_tail(home, mac_kind: str = "none") -> int:
    """A forged entry after the last one (a copy of it, new idx, a download
    recorded that never happened); returns its index."""
    last = _entries(home)[-1]
    doc = {**last, "idx": last["idx"] + 1, "detail": {"forged": True}}
    con = sqlite3.connect(home / "tagtrail.db")
    last_mac = con.execute("SELECT mac FROM audit_log WHERE idx = ?", (last["idx"],)).fetchone()[0]
    con.close()
    mac = {"none": None, "copied": last_mac, "random": secrets.token_hex(32)}[mac_kind]
    _insert(home, doc, mac=mac)
    return doc["idx"]


def _open(home):
    settings = Settings.from_home(home)
    engine, factory = open_database(settings)
    return settings, engine, factory, AuditLog(settings)


def _checkpoint(home, *, force: bool = True):
    """Run the service's checkpoint step once, as `api.http.deps.commit` does."""
    settings, engine, factory, audit = _open(home)
    try:
        with factory() as s:
            return audit.write_checkpoint(s, force=force)
    finally:
        engine.dispose()


def _n_rows(home) -> int:
    return len(_entries(home))


@pytest.fixture()
def small(tmp_path):
    """An empty home with a migrated database; settings.json as the test writes it."""
    home = tmp_path / "small"
    home.mkdir()
    return home


def _append(audit, factory, n, *, start_ms=T0, step_ms=1000, checkpoint=None):
    with factory() as s:
        for i in range(n):
            audit.append(s, action="test.event", actor=None, now_ms=start_ms + i * step_ms)
        s.commit()
        if checkpoint is not None:
            return audit.write_checkpoint(s, force=checkpoint)
    return None


# ----------------------------------------------------- item 8: query columns
NEW_VALUE = {  # column -> a value the entry certainly does not hold
    "ts_ms": lambda old: old + 1, "actor_id": lambda old: 999, "actor": lambda old: "mallory",
    "role": lambda old: "nobody-role", "org": lambda old: "elsewhere", "action": lambda old: "nothing.happened",
    "request_id": lambda old: 4242, "subject_pseudonym": lambda old: "f" * 32, "ground": lambda old: "forged_ground",
    "justification_ref": lambda old: "REF-forged", "extract_sha256": lambda old: "0" * 64,
}


@pytest.mark.parametrize("col,key", ENTRY_COLUMNS, ids=COLS)
def test_edited_query_column_is_named_with_both_values(served, capsys, col, key):
    entries = _entries(served)
    k = len(entries) - 4
    old = entries[k][key]
    new = NEW_VALUE[col](old)
    con = _db(served)
    con.execute(f"UPDATE audit_log SET {col} = ? WHERE idx = ?", (new, k))
    con.commit()
    con.close()
    code, out = _verify(served, capsys)
    assert code == 1
    assert out == f"FAILED: entry {k}: column {col} is {new!r} but the entry says {old!r} (edited?)"


def test_column_edit_reads_as_the_issue_describes(served, capsys):
    k = next(e["idx"] for e in _entries(served) if e["actor"] == "cw-1")
    con = _db(served)
    con.execute("UPDATE audit_log SET actor = 'mallory' WHERE idx = ?", (k,))
    con.commit()
    con.close()
    code, out = _verify(served, capsys)
    assert (code, out) == (1, f"FAILED: entry {k}: column actor is 'mallory' but the entry says 'cw-1' (edited?)")


def test_column_cleared_to_null_is_caught(served, capsys):
    k = next(e["idx"] for e in _entries(served) if e["request_id"] is not None)
    rid = _entries(served)[k]["request_id"]
    con = _db(served)
    con.execute("UPDATE audit_log SET request_id = NULL WHERE idx = ?", (k,))
    con.commit()
    con.close()
    code, out = _verify(served, capsys)
    assert (code, out) == (1, f"FAILED: entry {k}: column request_id is None but the entry says {rid} (edited?)")


# ----------------------------------------------- item 19: forged rows at the tail
FORGED = {
    "none": "entry {n}: no MAC, but earlier entries have one (inserted without the service's key?)",
    "copied": "entry {n}: MAC does not match its content (forged, or edited without the service's key?)",
    "random": "entry {n}: MAC does not match its content (forged, or edited without the service's key?)",
}


@pytest.mark.parametrize("mac_kind", list(FORGED))
def test_forged_row_at_the_tail_is_never_signed(served, capsys, mac_kind):
    signed_before = list_checkpoints(served / "audit" / "checkpoints")[-1][0]
    n = _forge_tail(served, mac_kind)
    want = FORGED[mac_kind].format(n=n)
    with pytest.raises(AuditIntegrityError) as info:
        _checkpoint(served)
    assert str(info.value).startswith(want + "; it is never signed into a checkpoint")
    assert list_checkpoints(served / "audit" / "checkpoints")[-1][0] == signed_before == n
    code, out = _verify(served, capsys)
    assert (code, out) == (1, f"FAILED: {want}")


def test_verify_says_when_it_could_not_check_macs(served, capsys):
    (served / "keys" / "audit-mac.key").unlink()
    code, out = _verify(served, capsys)
    assert code == 0
    assert out.endswith(f"; entry MACs not checked ({served / 'keys' / 'audit-mac.key'} is not here: "
                        f"only the public key)")


def test_rows_without_mac_are_accepted_only_before_the_first_mac(small):
    """Rows written before migration 0005 have no MAC: fine as a prefix, never after a MACed row."""
    from api.audit.verify import check_row, row_select

    settings, engine, factory, audit = _open(small)
    try:
        _append(audit, factory, 1)
        with factory() as s:
            row = list(s.execute(row_select()).one())
    finally:
        engine.dispose()
    legacy = row[:3] + [None] + row[4:]
    assert check_row(legacy, 0, mac_key=audit._mac_key, macs_started=False)[2] == []
    problems = check_row(legacy, 0, mac_key=audit._mac_key, macs_started=True)[2]
    assert [(p.kind, p.message) for p in problems] == [
        ("mac", "entry 0: no MAC, but earlier entries have one (inserted without the service's key?)")]


# ---------------------------------------------- item 19: deleted checkpoints
def test_every_checkpoint_deleted_fails_past_the_bound(served, capsys):
    shutil.rmtree(served / "audit" / "checkpoints")
    (served / "audit" / "checkpoints").mkdir()
    last = _entries(served)[-1]
    n = last["idx"] + 1
    code, out = _verify(served, capsys, "--max-unsigned-age", "0")
    assert (code, out) == (1, f"FAILED: {n} entries but no checkpoint at all, and the newest (entry {n - 1}, "
                              f"{last['ts']}) is older than 0 s (checkpoints deleted?)")


def test_unsigned_entries_bound_is_exact(small):
    (small / "settings.json").write_text(json.dumps({"audit_unsigned_max_s": 60}))
    settings, engine, factory, audit = _open(small)
    try:
        _append(audit, factory, 3, checkpoint=True)
        _append(audit, factory, 2, start_ms=T0 + 5000)  # entries 3 and 4, at T0+5 s and T0+6 s: no checkpoint
        newest = T0 + 6000
        with factory() as s:
            inside = verify_log(settings, s, now_ms=newest + 60_000)
            outside = verify_log(settings, s, now_ms=newest + 60_001)
            wider = verify_log(settings, s, now_ms=newest + 60_001, max_unsigned_age_s=61)
    finally:
        engine.dispose()
    assert inside.ok and ", 2 newer entries not yet checkpointed" in inside.message
    assert not outside.ok and outside.first_bad_index == 3
    assert outside.message == ("entries 3..4 covered by no checkpoint, and the newest (entry 4, "
                               "2024-03-05T10:00:06.000Z) is older than 60 s (checkpoints deleted, or the service "
                               "stopped without checkpointing?)")
    assert wider.ok


def test_checkpoints_deleted_under_a_running_service_are_detected(small):
    settings, engine, factory, audit = _open(small)
    try:
        _append(audit, factory, 2, checkpoint=True)
        shutil.rmtree(settings.audit_dir / "checkpoints")
        (settings.audit_dir / "checkpoints").mkdir()
        with pytest.raises(AuditIntegrityError, match=r"^checkpoint 000000000002 was the latest, now the latest "
                                                       r"is none \(checkpoints deleted\?\)"):
            _append(audit, factory, 1, checkpoint=False)
        assert audit.integrity_problem().startswith("checkpoint 000000000002 was the latest")
    finally:
        engine.dispose()


# ----------------------------------------------- item 19: exported checkpoints
def test_newest_rows_and_their_checkpoints_removed_are_caught_against_an_export(served, tmp_path, capsys):
    dest = tmp_path / "dpo-share"
    code, out, err = _cli(capsys, "audit", "export-checkpoints", "--home", str(served), str(dest))
    exported = list_checkpoints(dest / "checkpoints")
    assert code == 0 and out.startswith(f"exported {len(exported)} new checkpoint file(s) to {dest} (0 already")
    assert (dest / "audit-ed25519.pub.pem").read_bytes() == (served / "audit" / "audit-ed25519.pub.pem").read_bytes()
    k = _n_rows(served) - 3
    con = _db(served)
    con.execute("DELETE FROM audit_log WHERE idx >= ?", (k,))
    con.commit()
    con.close()
    for size, path in list_checkpoints(served / "audit" / "checkpoints"):
        if size > k:
            path.unlink()
    (served / "audit" / "checkpoints" / LATEST_FILE).unlink()
    code, out = _verify(served, capsys)
    assert code == 0, out  # this machine alone cannot tell: its own record was cut consistently
    first = min(size for size, _ in exported if size > k)
    code, out = _verify(served, capsys, "--against", str(dest))
    assert (code, out) == (1, f"FAILED: log has {k} entries but exported checkpoint "
                              f"{dest / 'checkpoints' / checkpoint_relpath(first)} commits to {first} (truncated?)")


def test_export_is_incremental_and_never_overwrites(served, tmp_path, capsys):
    dest = tmp_path / "dpo-share"
    assert _cli(capsys, "audit", "export-checkpoints", "--home", str(served), str(dest))[0] == 0
    n_files = len(list_checkpoints(dest / "checkpoints"))
    settings, engine, factory, audit = _open(served)
    try:
        _append(audit, factory, 1, checkpoint=True)
    finally:
        engine.dispose()
    code, out, _ = _cli(capsys, "audit", "export-checkpoints", "--home", str(served), str(dest))
    assert (code, out) == (0, f"exported 1 new checkpoint file(s) to {dest} ({n_files} already there, "
                              f"0 moved to series/ after an accepted break)")
    code, out = _verify(served, capsys, "--against", str(dest))
    assert code == 0 and f"; {n_files + 1} exported checkpoint(s) in {dest} agree" in out
    size, victim = list_checkpoints(dest / "checkpoints")[0]
    victim.write_text(victim.read_text().replace('"key_id"', '"key_id" ', 1))
    code, _, err = _cli(capsys, "audit", "export-checkpoints", "--home", str(served), str(dest))
    assert code == 1 and err == (f"FAILED: {victim} differs from this home's copy and was kept (the log rewritten "
                                 f"here?); run `tagtrail audit verify --against {dest}`")


def test_export_refuses_a_destination_with_another_key(served, tmp_path, capsys):
    dest = tmp_path / "dpo-share"
    dest.mkdir()
    (dest / "audit-ed25519.pub.pem").write_text("another key\n")
    code, _, err = _cli(capsys, "audit", "export-checkpoints", "--home", str(served), str(dest))
    assert code == 1 and err == (f"FAILED: {dest / 'audit-ed25519.pub.pem'} is not this home's public key: export "
                                 f"to another folder (a verification key is never replaced)")


# --------------------------------------------- item 9: fail closed, resume
def test_detected_tampering_is_recorded_and_survives_a_restart(served):
    n = _forge_tail(served)
    settings, engine, factory, audit = _open(served)
    try:
        assert audit.integrity_problem() is None
        with factory() as s, pytest.raises(AuditIntegrityError):
            audit.write_checkpoint(s)
        problem = audit.integrity_problem()
        marker = json.loads((served / "audit" / "INTEGRITY-FAILED").read_text())
        assert problem == f"{marker['message']} (detected {marker['ts']})"
        assert marker["message"].startswith(FORGED["none"].format(n=n))
        restarted = AuditLog(settings)
        assert restarted.integrity_problem() == problem
        with factory() as s:
            with pytest.raises(AuditIntegrityError, match=r"^audit integrity failure recorded at .*no checkpoint is "
                                                           r"signed until an operator runs `tagtrail audit resume`$"):
                restarted.write_checkpoint(s, force=True)
    finally:
        engine.dispose()


def test_proof_request_over_tampering_records_the_failure(served):
    n = _forge_tail(served)
    settings, engine, factory, audit = _open(served)
    try:
        with factory() as s, pytest.raises(AuditIntegrityError):
            audit.inclusion_proof(s, 0, n + 1)
        assert audit.integrity_problem().startswith(FORGED["none"].format(n=n))
    finally:
        engine.dispose()


def test_resume_refuses_while_verify_still_fails(served, capsys):
    n = _forge_tail(served)
    with pytest.raises(AuditIntegrityError):
        _checkpoint(served)
    code, out, err = _cli(capsys, "audit", "resume", "--home", str(served), "--reason", "looked at it")
    assert code == 1
    assert err == (f"not resumed: `tagtrail audit verify` still fails: {FORGED['none'].format(n=n)}. Restore the "
                   f"database (and HOME/audit) from a backup and run this again, or accept the break on the record "
                   f"with --accept-break")
    assert (served / "audit" / "INTEGRITY-FAILED").exists()


def _backup(src, dst) -> None:
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    a.close()
    b.close()


def test_resume_after_restoring_the_database(served, tmp_path, capsys):
    _backup(served / "tagtrail.db", tmp_path / "backup.db")
    n = _forge_tail(served)
    with pytest.raises(AuditIntegrityError):
        _checkpoint(served)
    _backup(tmp_path / "backup.db", served / "tagtrail.db")
    code, out, err = _cli(capsys, "audit", "resume", "--home", str(served), "--reason", "restored the 02:00 backup")
    assert code == 0, err
    assert out.startswith("resumed: the log verifies again (OK: ") and out.endswith(f"; entry {n} records it")
    assert not (served / "audit" / "INTEGRITY-FAILED").exists()
    (history,) = (served / "audit" / "integrity-history").iterdir()
    record = json.loads(history.read_text())
    assert record["failure"]["message"].startswith(FORGED["none"].format(n=n))
    assert record["resolution"] == {"how": "verified", "os_user": getpass.getuser(),
                                    "reason": "restored the 02:00 backup", "entry": n}
    entry = _entries(served)[n]
    assert entry["action"] == "audit.resumed" and entry["actor"] is None
    assert entry["detail"]["os_user"] == getpass.getuser() and entry["detail"]["reason"] == "restored the 02:00 backup"
    assert list_checkpoints(served / "audit" / "checkpoints")[-1][0] == n + 1
    assert _verify(served, capsys)[0] == 0


def test_resume_with_nothing_to_resume(served, capsys):
    code, out, _ = _cli(capsys, "audit", "resume", "--home", str(served), "--reason", "checking")
    assert code == 0 and out.startswith("nothing to resume: no integrity failure is recorded and the log verifies")


def test_resume_needs_a_reason(served, capsys):
    code, _, err = _cli(capsys, "audit", "resume", "--home", str(served), "--reason", "  ")
    assert (code, err) == (2, "tagtrail audit: error: --reason must say why")


def test_accept_break_records_who_why_and_the_roots_and_starts_a_new_series(served, capsys):
    old = list_checkpoints(served / "audit" / "checkpoints")
    old_bytes = {p.name: p.read_bytes() for _, p in old}
    old_cp = json.loads(old[-1][1].read_text())
    n = _forge_tail(served)
    with pytest.raises(AuditIntegrityError):
        _checkpoint(served)
    reason = "INC-4711: forged download entry kept on the record"
    code, out, err = _cli(capsys, "audit", "resume", "--home", str(served), "--accept-break", "--reason", reason)
    assert code == 0, err
    b = n + 1
    series = served / "audit" / "series" / f"{b:012d}"
    assert out == (f"break accepted at entry {b} by {getpass.getuser()}: 1 problem(s) on the record, checkpoints up "
                   f"to {old_cp['size']:012d} moved to {series}; a new checkpoint series starts")
    entries = _entries(served)
    texts = [rfc8785.dumps(e) for e in entries]
    detail = entries[b]["detail"]
    assert entries[b]["action"] == "audit.break_accepted"
    assert detail["os_user"] == getpass.getuser() and detail["reason"] == reason
    assert detail["problem"].startswith(FORGED["none"].format(n=n))
    assert detail["old_checkpoint"] == {"size": old_cp["size"], "root": old_cp["root"]}
    assert detail["size"] == b
    assert detail["root"] == merkle.root_from_leaf_hashes([merkle.leaf_hash(t) for t in texts[:b]]).hex()
    assert detail["series"] == f"{b:012d}" and detail["accepted"] == [[n, "mac"]] and detail["bad_checkpoints"] == []
    assert {p.name: p.read_bytes() for _, p in list_checkpoints(series)} == old_bytes  # kept as they were
    assert [s for s, _ in list_checkpoints(served / "audit" / "checkpoints")] == [b + 1]
    assert not (served / "audit" / "INTEGRITY-FAILED").exists()
    code, out = _verify(served, capsys)
    assert code == 0, out
    assert (f"; break accepted at entry {b} by {getpass.getuser()} ({reason!r}), 1 earlier problem(s) accepted; "
            f"series {b:012d} ({len(old)} checkpoint(s), signatures verify)") in out


def test_after_a_break_only_the_accepted_problems_are_tolerated(served, capsys):
    n = _forge_tail(served)
    with pytest.raises(AuditIntegrityError):
        _checkpoint(served)
    assert _cli(capsys, "audit", "resume", "--home", str(served), "--accept-break", "--reason", "kept")[0] == 0
    con = _db(served)
    con.execute("UPDATE audit_log SET actor = 'mallory' WHERE idx = ?", (n,))  # accepted was its MAC, not this
    con.commit()
    con.close()
    code, out = _verify(served, capsys)
    assert (code, out) == (1, f"FAILED: entry {n}: column actor is 'mallory' but the entry says "
                              f"{_entries(served)[n]['actor']!r} (edited?)")
    m = _forge_tail(served)
    with pytest.raises(AuditIntegrityError, match=f"^entry {m}: no MAC"):
        _checkpoint(served)


def test_accept_break_after_truncation_moves_the_longer_series_aside(served, capsys):
    k = _n_rows(served) - 3
    longest = list_checkpoints(served / "audit" / "checkpoints")[-1][0]
    con = _db(served)
    con.execute("DELETE FROM audit_log WHERE idx >= ?", (k,))
    con.commit()
    con.close()
    with pytest.raises(AuditIntegrityError, match=f"^log has {k} entries but checkpoint {longest:012d} commits"):
        _checkpoint(served)
    assert _cli(capsys, "audit", "resume", "--home", str(served), "--accept-break", "--reason", "disk lost")[0] == 0
    detail = _entries(served)[k]["detail"]
    assert detail["old_checkpoint"]["size"] == longest and detail["accepted"] == []
    assert list_checkpoints(served / "audit" / "series" / f"{k:012d}")[-1][0] == longest
    assert _verify(served, capsys)[0] == 0


def test_accept_break_refuses_a_log_with_holes(served, capsys):
    k = _n_rows(served) - 5
    con = _db(served)
    con.execute("DELETE FROM audit_log WHERE idx = ?", (k,))
    con.commit()
    con.close()
    code, _, err = _cli(capsys, "audit", "resume", "--home", str(served), "--accept-break", "--reason", "try")
    assert (code, err) == (1, f"cannot accept the break: entry {k} missing (deleted?), and a log with missing "
                              f"entries cannot be continued; restore the database from a backup")
    assert list_checkpoints(served / "audit" / "checkpoints") and not (served / "audit" / "series").exists()


def test_export_after_a_break_moves_the_retired_copies(served, tmp_path, capsys):
    dest = tmp_path / "dpo-share"
    assert _cli(capsys, "audit", "export-checkpoints", "--home", str(served), str(dest))[0] == 0
    n_old = len(list_checkpoints(dest / "checkpoints"))
    _forge_tail(served)
    with pytest.raises(AuditIntegrityError):
        _checkpoint(served)
    assert _cli(capsys, "audit", "resume", "--home", str(served), "--accept-break", "--reason", "kept")[0] == 0
    code, out = _verify(served, capsys, "--against", str(dest))  # the old copies are the retired series'
    assert code == 0, out
    code, out, _ = _cli(capsys, "audit", "export-checkpoints", "--home", str(served), str(dest))
    assert (code, out) == (0, f"exported 1 new checkpoint file(s) to {dest} (0 already there, "
                              f"{n_old} moved to series/ after an accepted break)")
    assert len(list_checkpoints(dest / "checkpoints")) == 1
    assert _verify(served, capsys, "--against", str(dest))[0] == 0


def test_a_series_folder_no_break_named_is_caught(served, capsys):
    folder = served / "audit" / "series" / "000000000003"
    folder.mkdir(parents=True)
    code, out = _verify(served, capsys)
    assert (code, out) == (1, "FAILED: audit/series/000000000003: no accepted break moved this series aside "
                              "(moved by hand?)")


# ---------------------------------------------------- item 15: cadence, layout
def test_checkpoint_cadence_every_n_entries(small):
    (small / "settings.json").write_text(json.dumps({"audit_checkpoint_every": 3, "audit_checkpoint_s": 3600}))
    settings, engine, factory, audit = _open(small)
    try:
        sizes = [_append(audit, factory, 1, checkpoint=False)["size"] for _ in range(5)]
        forced = _append(audit, factory, 1, checkpoint=True)["size"]
    finally:
        engine.dispose()
    # the first is signed at once; then one every 3 new entries (at 4); force signs at once
    assert sizes == [1, 1, 1, 4, 4] and forced == 6


def test_checkpoint_cadence_every_t_seconds(small, monkeypatch):
    (small / "settings.json").write_text(json.dumps({"audit_checkpoint_s": 10}))
    settings, engine, factory, audit = _open(small)
    try:
        first = _append(audit, factory, 1, checkpoint=False)
        signed = parse_timestamp(first["ts"])
        monkeypatch.setattr(audit_module, "_now_ms", lambda: signed + 9_999)
        assert _append(audit, factory, 1, checkpoint=False)["size"] == 1
        monkeypatch.setattr(audit_module, "_now_ms", lambda: signed + 10_000)
        assert _append(audit, factory, 1, checkpoint=False)["size"] == 3
    finally:
        engine.dispose()


@pytest.mark.parametrize("size,rel", [(1, "000000/000000000001.json"), (999_999, "000000/000000999999.json"),
                                      (1_000_000, "000001/000001000000.json"),
                                      (12_345_678, "000012/000012345678.json")])
def test_checkpoint_folders_are_sharded_by_the_million(size, rel):
    from api.audit.files import checkpoint_relpath as real

    assert real(size) == rel


def test_latest_pointer_means_no_folder_listing_on_the_hot_path(small, monkeypatch):
    settings, engine, factory, audit = _open(small)
    try:
        _append(audit, factory, 1, checkpoint=True)
        folder = settings.audit_dir / "checkpoints"
        assert (folder / "000000" / "000000000001.json").is_file()
        assert json.loads((folder / LATEST_FILE).read_text()) == {"size": 1, "file": "000000/000000000001.json",
                                                                   "series": 0}

        def no_listing(*_a, **_k):
            raise AssertionError("checkpoint folder listed on the hot path")

        import api.audit.files

        monkeypatch.setattr(api.audit.files, "list_checkpoints", no_listing)
        for _ in range(3):
            _append(audit, factory, 1, checkpoint=True)
        fresh = AuditLog(settings)  # a restart reads the pointer too
        assert fresh.latest_checkpoint()["size"] == 4
    finally:
        engine.dispose()
    assert json.loads((folder / LATEST_FILE).read_text())["file"] == "000000/000000000004.json"


def test_flat_layout_from_before_sharding_still_verifies_and_continues(served, capsys):
    folder = served / "audit" / "checkpoints"
    found = list_checkpoints(folder)
    for size, path in found:
        path.rename(folder / f"{size:012d}.json")
    shutil.rmtree(folder / "000000")
    (folder / LATEST_FILE).unlink()
    code, out = _verify(served, capsys)
    assert code == 0 and out.startswith(f"OK: {_n_rows(served)} entries match {len(found)} signed checkpoint(s)")
    settings, engine, factory, audit = _open(served)
    try:
        assert audit.latest_checkpoint()["size"] == found[-1][0]  # found by listing once, pointer rebuilt
        cp = _append(audit, factory, 1, checkpoint=True)
    finally:
        engine.dispose()
    assert (folder / checkpoint_relpath(cp["size"])).is_file()
    code, out = _verify(served, capsys)
    assert code == 0 and f"match {len(found) + 1} signed checkpoint(s)" in out


def test_checkpoint_in_the_wrong_shard_folder_is_named(served, capsys):
    size, path = list_checkpoints(served / "audit" / "checkpoints")[0]
    (path.parent.parent / "000001").mkdir()
    path.rename(path.parent.parent / "000001" / path.name)
    code, out = _verify(served, capsys)
    assert (code, out) == (1, f"FAILED: checkpoint {size:012d}: in shard folder 000001, not 000000 (moved?)")


def test_cadence_settings_are_validated(small):
    (small / "settings.json").write_text(json.dumps({"audit_checkpoint_every": 0}))
    with pytest.raises(InputError, match=r"audit_checkpoint_every must be a whole number >= 1, got 0$"):
        Settings.from_home(small)
    (small / "settings.json").write_text(json.dumps({"audit_checkpoint_s": -1}))
    with pytest.raises(InputError, match=r"audit_checkpoint_s must be seconds >= 0, got -1$"):
        Settings.from_home(small)


# ----------------------------------------------------------------- migration
def _legacy_database(path):
    """A database at revision 0004 (before the MAC column) holding one entry."""
    from alembic import command
    from alembic.config import Config

    engine = make_engine(f"sqlite:///{path}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    doc = {"idx": 0, "ts": format_ms(T0), "ts_ms": T0, "actor_id": None, "actor": None, "role": None, "org": None,
           "action": "old.entry", "request_id": None, "subject": None, "ground": None, "justification_ref": None,
           "extract_sha256": None, "detail": None}
    entry = rfc8785.dumps(doc).decode()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_log (idx, ts_ms, action, entry, leaf_hash) VALUES (0, :t, 'old.entry', "
                             ":e, :h)"), {"t": T0, "e": entry, "h": merkle.leaf_hash(entry.encode()).hex()})
    return engine


def test_verify_reads_a_database_from_before_0005(small, capsys):
    _legacy_database(small / "tagtrail.db").dispose()
    code, out = _verify(small, capsys, "--max-unsigned-age", "1e12")
    assert code == 0 and out.startswith("OK: 1 entries, no checkpoint written yet")


def test_0005_adds_the_mac_column_keeps_old_rows_and_the_triggers(tmp_path):
    engine = _legacy_database(tmp_path / "db.sqlite")
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT idx, mac FROM audit_log")).all() == [(0, None)]
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET mac = 'x'"))
    engine.dispose()
