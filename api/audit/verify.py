"""Checking the audit log: one row against its own canonical entry and MAC
(`check_row`, also what `AuditLog` runs on every new entry before signing),
the whole log (`scan_rows`), and the log against every checkpoint series
and an exported copy (`verify_log`, behind `tagtrail audit verify`).

What a row must satisfy: its `leaf_hash` is the hash of its `entry`; the
entry is canonical JSON (RFC 8785) whose `idx` is the row's; every query
column (`actor`, `role`, `ts_ms`, ...) says what the entry says, since a DPO's
SQL reads those; and its `mac`, HMAC-SHA256 under HOME/keys/audit-mac.key,
proves the service wrote it. Rows from before migration 0005 have no MAC;
they are accepted only as a prefix of the log (no MAC-less row after a row
with one), and the checkpoints of the time cover them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Select, inspect, null, select
from sqlalchemy.orm import Session

from trails.timestamps import format_ms

from api.audit import merkle
from api.audit.files import (CHECKPOINT_DIR, MAC_KEY_FILE, PUBLIC_KEY_FILE, SERIES_DIR, SIGNING_KEY_FILE,
                          checkpoint_note, list_checkpoints, list_series, load_checkpoint,
                          read_integrity_failure)
from api.db.models import AuditEntry
from api.settings import Settings

__all__ = ["VerifyReport", "RowProblem", "LogScan", "verify_log", "check_row", "scan_rows", "row_select",
           "entry_mac", "load_mac_key", "load_public_key", "signature_ok", "ENTRY_COLUMNS", "BREAK_ACTION",
           "RESUME_ACTION"]

#: Query column -> the canonical entry's field it repeats (item 8 of issue 10: verify each).
ENTRY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts_ms", "ts_ms"), ("actor_id", "actor_id"), ("actor", "actor"), ("role", "role"), ("org", "org"),
    ("action", "action"), ("request_id", "request_id"), ("subject_pseudonym", "subject"), ("ground", "ground"),
    ("justification_ref", "justification_ref"), ("extract_sha256", "extract_sha256"))
BREAK_ACTION = "audit.break_accepted"   #: an operator accepted a break (`tagtrail audit resume --accept-break`)
RESUME_ACTION = "audit.resumed"         #: an operator resumed after `audit verify` passed again
_MAC_DOMAIN = b"tagtrail-audit-entry\n"


def entry_mac(key: bytes, entry: str) -> str:
    """HMAC-SHA256 (hex) of an entry's canonical JSON under the MAC key. The
    entry holds its own idx, so a MAC also fixes the entry's position."""
    return hmac.new(key, _MAC_DOMAIN + entry.encode("utf-8"), hashlib.sha256).hexdigest()


def row_select(*, has_mac: bool = True) -> Select:
    """The columns `check_row` reads, in its order, by index. has_mac=False
    reads a database from before migration 0005 (verify never migrates)."""
    mac = AuditEntry.mac if has_mac else null().label("mac")
    return select(AuditEntry.idx, AuditEntry.entry, AuditEntry.leaf_hash, mac,
                  *(getattr(AuditEntry, col) for col, _ in ENTRY_COLUMNS)).order_by(AuditEntry.idx)


@dataclass(frozen=True)
class RowProblem:
    """What is wrong with entry `index`: `kind` is hash, json, idx, mac or
    column:<name> (what an accepted break lists), `message` names both."""

    index: int
    kind: str
    message: str


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


def check_row(row: Sequence[Any], pos: int, *, mac_key: bytes | None,
              macs_started: bool) -> tuple[bytes, dict | None, list[RowProblem]]:
    """Check one row of `row_select()` at position `pos`.

    macs_started: an earlier row has a MAC (so this one must too).
    Returns (leaf hash of the stored entry text, the entry's fields or None if
    it is not canonical JSON, problems in the order a reader should hear them).
    """
    entry, stored_hash, mac = row[1], row[2], row[3]
    leaf = merkle.leaf_hash(entry.encode("utf-8"))
    problems: list[RowProblem] = []
    if leaf.hex() != stored_hash:
        problems.append(RowProblem(pos, "hash", f"entry {pos}: hash does not match its content (edited?)"))
    try:
        fields = json.loads(entry)
        canonical = isinstance(fields, dict) and rfc8785.dumps(fields).decode("utf-8") == entry
    except (ValueError, rfc8785.CanonicalizationError):
        fields, canonical = None, False
    if not canonical:
        return leaf, None, problems + [RowProblem(pos, "json", f"entry {pos}: not canonical JSON (edited?)")]
    if not _same(fields.get("idx"), pos):
        problems.append(RowProblem(pos, "idx", f"entry {pos}: its content says idx {fields.get('idx')!r} (moved?)"))
    for (col, key), value in zip(ENTRY_COLUMNS, row[4:]):
        if not _same(value, fields.get(key)):
            problems.append(RowProblem(pos, f"column:{col}", f"entry {pos}: column {col} is {value!r} but the "
                                                             f"entry says {fields.get(key)!r} (edited?)"))
    if mac is None:
        if macs_started:
            problems.append(RowProblem(pos, "mac", f"entry {pos}: no MAC, but earlier entries have one "
                                                   f"(inserted without the service's key?)"))
    elif mac_key is not None and not hmac.compare_digest(str(mac), entry_mac(mac_key, entry)):
        problems.append(RowProblem(pos, "mac", f"entry {pos}: MAC does not match its content "
                                               f"(forged, or edited without the service's key?)"))
    return leaf, fields, problems


@dataclass
class LogScan:
    """Every row checked (`scan_rows`). leaves: leaf hashes up to the first
    hole. problems: every row problem, by index, a hole last. breaks:
    (idx, detail) of break entries that have no problem of their own.
    newest_ts_ms: the last entry's time (None for an empty log)."""

    leaves: list[bytes] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    breaks: list[tuple[int, dict]] = field(default_factory=list)
    has_hole: bool = False
    newest_ts_ms: int | None = None


def _swap_message(rows: Sequence[Sequence[Any]], pos: int, claimed: object) -> str | None:
    """'entries a and b out of order (swapped?)' when row `claimed` says it is `pos`."""
    if not isinstance(claimed, int) or isinstance(claimed, bool) or not 0 <= claimed < len(rows) \
            or claimed == pos or rows[claimed][0] != claimed:
        return None
    try:
        other = json.loads(rows[claimed][1])
    except ValueError:
        return None
    if not isinstance(other, dict) or not _same(other.get("idx"), pos):
        return None
    lo, hi = sorted((pos, claimed))
    return f"entries {lo} and {hi} out of order (swapped?)"


def scan_rows(rows: Sequence[Sequence[Any]], *, mac_key: bytes | None) -> LogScan:
    """Check every row of `row_select()` (in index order); stop at the first
    hole in the indexes, which is recorded as the last problem."""
    scan = LogScan()
    macs_started = False
    for pos, row in enumerate(rows):
        idx = row[0]
        if idx != pos:
            gone = f"entry {pos}" if idx == pos + 1 else f"entries {pos}..{idx - 1}"
            scan.problems.append(RowProblem(pos, "hole", f"{gone} missing (deleted?)"))
            scan.has_hole = True
            break
        leaf, fields, problems = check_row(row, pos, mac_key=mac_key, macs_started=macs_started)
        for i, p in enumerate(problems):
            if p.kind == "idx" and (swapped := _swap_message(rows, pos, fields.get("idx"))):
                problems[i] = RowProblem(pos, "idx", swapped)
        macs_started = macs_started or row[3] is not None
        scan.leaves.append(leaf)
        scan.problems.extend(problems)
        if fields is not None:
            scan.newest_ts_ms = fields.get("ts_ms") if isinstance(fields.get("ts_ms"), int) else row[4]
            if not problems and fields.get("action") == BREAK_ACTION and isinstance(fields.get("detail"), dict):
                scan.breaks.append((pos, fields["detail"]))
        else:
            scan.newest_ts_ms = row[4]
    return scan


# ---------------------------------------------------------------------- keys
def load_mac_key(settings: Settings) -> tuple[bytes | None, str | None]:
    """(HOME/keys/audit-mac.key, None), (None, None) when it is not here (a
    verifier with only the public key), or (None, problem) when malformed."""
    path = settings.keys_dir / MAC_KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return None, None
    if len(key) != 32:
        return None, f"{path}: expected 32 bytes, found {len(key)}"
    return key, None


def load_public_key(settings: Settings) -> tuple[Ed25519PublicKey | None, str | None]:
    """The published verification key (HOME/audit), cross-checked against the
    signing key when that is present. Returns (key, problem)."""
    pub_path = settings.audit_dir / PUBLIC_KEY_FILE
    sign_path = settings.keys_dir / SIGNING_KEY_FILE
    key = None
    if pub_path.exists():
        key, problem = _read_public_key(pub_path)
        if problem:
            return None, problem
    if sign_path.exists():
        try:
            private = serialization.load_pem_private_key(sign_path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            return key, f"{sign_path}: not an unencrypted PEM private key: {exc}"
        if not isinstance(private, Ed25519PrivateKey):
            return key, f"{sign_path}: not an Ed25519 key"
        if key is None:
            key = private.public_key()
        elif _raw(private.public_key()) != _raw(key):
            return key, f"{pub_path} is not the public key of {sign_path}"
    return key, None


def _read_public_key(path: Path) -> tuple[Ed25519PublicKey | None, str | None]:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError) as exc:
        return None, f"{path}: not a PEM public key: {exc}"
    if not isinstance(key, Ed25519PublicKey):
        return None, f"{path}: not an Ed25519 public key"
    return key, None


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --------------------------------------------------------------- checkpoints
@dataclass
class SeriesCheck:
    """A checkpoint folder checked: good_size is the largest size that
    verified before the first problem; problem is (message, entry index)."""

    good_size: int = 0
    n_checked: int = 0
    problem: tuple[str, int | None] | None = None


def signature_ok(key: Ed25519PublicKey, cp: dict) -> bool:
    """The checkpoint's Ed25519 signature over `checkpoint_note` verifies with `key`."""
    try:
        key.verify(base64.b64decode(cp["signature"], validate=True),
                   checkpoint_note(cp["size"], bytes.fromhex(cp["root"])))
    except (InvalidSignature, ValueError):
        return False
    return True


def _check_folder(found: list[tuple[int, Path]], key: Ed25519PublicKey, tree: merkle.MerkleLog | None, n: int,
                  *, label: str = "checkpoint", skip: frozenset[str] = frozenset()) -> SeriesCheck:
    """Check each (size, path): well formed and signed; with a `tree` (the
    log's leaves, `n` entries) also not beyond the log and its root the
    log's. `label` names the checkpoint in messages; files named in `skip`
    (a break accepted them as bad) are passed over."""
    out = SeriesCheck()
    for size, path in found:
        if path.name in skip:
            continue
        name = f"{label} {size:012d}" if label == "checkpoint" else f"{label} {path}"
        cp, problem = load_checkpoint(path, size)
        if problem:
            out.problem = (problem if label == "checkpoint" else f"{label} {path}: {problem}", None)
            return out
        if not signature_ok(key, cp):
            out.problem = (f"{name}: signature does not verify with {PUBLIC_KEY_FILE} (checkpoint altered or "
                           f"forged?)", None)
            return out
        if tree is not None:
            if size > n:
                out.problem = (f"log has {n} entries but {name} commits to {size} (truncated?)", n)
                return out
            if tree.root(size).hex() != cp["root"]:
                good = out.good_size
                where = f"entry {good}" if size - good == 1 else f"an entry in {good}..{size - 1}"
                out.problem = (f"{where} does not match {name} (rewritten?)", good)
                return out
            out.good_size = max(out.good_size, size)
        out.n_checked += 1
    return out


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of `verify_log`.

    ok: everything checked out. message: one line, naming the first bad
    entry (or column, or checkpoint) when not ok. first_bad_index: that
    entry's index, or None when the fault is a checkpoint's own (bad
    signature, unreadable). checked_size: entries checked. checkpoints:
    checkpoint files checked (current series).
    """

    ok: bool
    message: str
    first_bad_index: int | None
    checked_size: int
    checkpoints: int


def _accepted(breaks: list[tuple[int, dict]]) -> set[tuple[int, str]]:
    """(index, kind) of every row problem an accepted break listed, below it."""
    out: set[tuple[int, str]] = set()
    for at, detail in breaks:
        for item in detail.get("accepted") or []:
            if isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and item[0] < at:
                out.add((item[0], str(item[1])))
    return out


def _check_breaks(breaks: list[tuple[int, dict]], tree: merkle.MerkleLog, audit_dir: Path,
                  key: Ed25519PublicKey) -> tuple[str | None, int | None, str]:
    """Each accepted break: its recorded root is still the root of the entries
    before it, and the series it moved aside is there and its checkpoints
    verify (those it recorded as bad excepted); no other series folder.
    Returns (problem, index, note for the OK line)."""
    named = {}
    for at, detail in breaks:
        root, series = detail.get("root"), detail.get("series")
        if tree.root(at).hex() != root:
            return (f"entry {at}: the break accepted there recorded root {str(root)[:16]} of {at} entries, "
                    f"but they now hash to {tree.root(at).hex()[:16]} (rewritten after the break?)", at, "")
        if isinstance(series, str):
            named[series] = (at, frozenset(detail.get("bad_checkpoints") or ()))
    notes = []
    for name in list_series(audit_dir):
        if name not in named:
            return f"audit/{SERIES_DIR}/{name}: no accepted break moved this series aside (moved by hand?)", None, ""
        at, bad = named.pop(name)
        check = _check_folder(list_checkpoints(audit_dir / SERIES_DIR / name), key, None, 0, skip=bad)
        if check.problem:
            return f"series {name}: {check.problem[0]}", None, ""
        notes.append(f"series {name} ({check.n_checked} checkpoint(s), signatures verify)")
    for name, (at, _) in named.items():
        return f"entry {at}: the break accepted there moved series {name} aside, but it is gone (deleted?)", at, ""
    for at, detail in breaks:
        notes.insert(0, f"break accepted at entry {at} by {detail.get('os_user')} ({detail.get('reason')!r}), "
                        f"{len(detail.get('accepted') or [])} earlier problem(s) accepted")
    return None, None, "; ".join(notes)


def _check_against(against: Path, settings: Settings, key: Ed25519PublicKey, tree: merkle.MerkleLog, n: int,
                   breaks: list[tuple[int, dict]]) -> SeriesCheck:
    """The log against checkpoints exported elsewhere (`export_checkpoints`):
    DIR/checkpoints must match the log (a copy that commits to more entries
    than the log has, or to another root, shows truncation or a rewrite that
    this machine's own checkpoints no longer show); DIR/series and copies of
    checkpoints an accepted break retired need only verify. DIR may also be
    a plain copy of a checkpoint folder."""
    own = settings.audit_dir / PUBLIC_KEY_FILE
    if (against / PUBLIC_KEY_FILE).exists():
        theirs, problem = _read_public_key(against / PUBLIC_KEY_FILE)
        if problem or (own.exists() and own.read_bytes() != (against / PUBLIC_KEY_FILE).read_bytes()):
            return SeriesCheck(problem=(problem or f"{against / PUBLIC_KEY_FILE} is not {own} (key replaced?)",
                                        None))
        key = theirs
    current = against / CHECKPOINT_DIR if (against / CHECKPOINT_DIR).is_dir() else against
    retired_names = {str(d.get("series")) for _, d in breaks}
    retired = {p.name: p.read_bytes() for name in retired_names
               for _, p in list_checkpoints(settings.audit_dir / SERIES_DIR / name)}
    live = [(s, p) for s, p in list_checkpoints(current) if retired.get(p.name) != p.read_bytes()]
    old = [(s, p) for s, p in list_checkpoints(current) if retired.get(p.name) == p.read_bytes()]
    for name in list_series(against):
        if name not in retired_names:
            return SeriesCheck(problem=(f"{against / SERIES_DIR / name}: no accepted break here retired series "
                                        f"{name}", None))
        old += list_checkpoints(against / SERIES_DIR / name)
    check = _check_folder(live, key, tree, n, label="exported checkpoint")
    if check.problem is None:
        sig = _check_folder(old, key, None, 0, label="exported checkpoint")
        check.problem = sig.problem
    return check


def _first_unaccepted(scan: LogScan, breaks: list[tuple[int, dict]]) -> RowProblem | None:
    accepted = _accepted(breaks)
    return next((p for p in scan.problems if (p.index, p.kind) not in accepted), None)


def _staleness(scan: LogScan, n: int, covered: int, n_checkpoints: int, max_age_s: float,
               now_ms: int) -> str | None:
    """The newest entry no checkpoint covers is older than `max_age_s`: the
    service signs within its cadence (and at shutdown), so checkpoints were
    deleted, or the newest rows and their checkpoints both removed, or the
    service stopped without checkpointing."""
    if n <= covered or scan.newest_ts_ms is None or now_ms - scan.newest_ts_ms <= max_age_s * 1000:
        return None
    when = f"entry {n - 1}, {format_ms(scan.newest_ts_ms)}"
    if n_checkpoints == 0:
        return (f"{n} entries but no checkpoint at all, and the newest ({when}) is older than {max_age_s:g} s "
                f"(checkpoints deleted?)")
    span = f"entry {covered}" if n - covered == 1 else f"entries {covered}..{n - 1}"
    return (f"{span} covered by no checkpoint, and the newest ({when}) is older than {max_age_s:g} s "
            f"(checkpoints deleted, or the service stopped without checkpointing?)")


def verify_log(settings: Settings, session: Session, *, against: Path | None = None,
               max_unsigned_age_s: float | None = None, now_ms: int | None = None) -> VerifyReport:
    """Check the audit log against itself, every checkpoint series and,
    with `against`, an exported copy of the checkpoints. Read-only; needs
    only the public key (entry MACs are checked when HOME/keys/audit-mac.key
    is here, and the OK line says when they could not be).

    First failure reported, in this order: a row (`check_row`: hash, JSON,
    idx, every query column, MAC; a hole in the indexes), unless an accepted
    break listed it; a checkpoint of the current series (signature, beyond
    the log, root); an accepted break's own record and the series it moved
    aside; the exported copy; and entries no checkpoint covers whose newest
    is older than `max_unsigned_age_s` (default
    ``settings.audit_unsigned_max_s``) at `now_ms` (default now).
    """
    has_mac = any(c["name"] == "mac" for c in inspect(session.connection()).get_columns(AuditEntry.__tablename__))
    rows = session.execute(row_select(has_mac=has_mac)).all()
    mac_key, mac_problem = load_mac_key(settings)
    scan = scan_rows(rows, mac_key=mac_key)
    n = len(rows)

    def bad(message: str, index: int | None, n_checkpoints: int = 0) -> VerifyReport:
        return VerifyReport(False, message, index, len(scan.leaves), n_checkpoints)

    if mac_problem:
        return bad(mac_problem, None)
    tree = merkle.MerkleLog(scan.leaves)
    found = list_checkpoints(settings.audit_dir / CHECKPOINT_DIR)
    key, key_problem = load_public_key(settings)
    if (found or against is not None or scan.breaks) and (key_problem or key is None):
        return bad(key_problem or "no public key to check the checkpoints with", None)
    series = _check_folder(found, key, tree, n) if found and not scan.has_hole else SeriesCheck()
    breaks = [(at, d) for at, d in scan.breaks if at < series.good_size]
    problem = _first_unaccepted(scan, breaks)
    if problem is not None:
        return bad(problem.message, problem.index, series.n_checked)
    if series.problem:
        return bad(*series.problem, series.n_checked)
    message, index, break_note = _check_breaks(breaks, tree, settings.audit_dir, key)
    if message:
        return bad(message, index, series.n_checked)
    covered, notes = series.good_size, [break_note] if break_note else []
    if against is not None:
        if not against.is_dir():
            return bad(f"{against}: no such folder of exported checkpoints", None, series.n_checked)
        theirs = _check_against(against, settings, key, tree, n, breaks)
        if theirs.problem:
            return bad(*theirs.problem, series.n_checked)
        covered = max(covered, theirs.good_size)
        notes.append(f"{theirs.n_checked} exported checkpoint(s) in {against} agree")
    max_age = settings.audit_unsigned_max_s if max_unsigned_age_s is None else max_unsigned_age_s
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    stale = _staleness(scan, n, covered, series.n_checked, max_age, now)
    if stale:
        return bad(stale, covered, series.n_checked)
    notes.append("entry MACs checked" if mac_key is not None else
                 f"entry MACs not checked ({settings.keys_dir / MAC_KEY_FILE} is not here: only the public key)")
    failure = read_integrity_failure(settings.audit_dir)
    if failure is not None:
        notes.append(f"the service recorded an integrity failure at {failure['ts']} and serves no data until "
                     f"`tagtrail audit resume`: {failure['message']}")
    if not series.n_checked:
        head = f"OK: {n} entries, no checkpoint written yet (nothing to check them against)"
    else:
        beyond = n - series.good_size
        head = (f"OK: {n} entries match {series.n_checked} signed checkpoint(s), latest {series.good_size:012d} "
                f"root {tree.root(series.good_size).hex()[:16]}"
                + (f", {beyond} newer entries not yet checkpointed" if beyond else ""))
    return VerifyReport(True, "; ".join([head] + notes), None, n, series.n_checked)
