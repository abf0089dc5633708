"""The tamper-evident audit log: entries are leaves of an RFC 6962 Merkle
tree, and signed checkpoints (tree size, root) are written outside the
database (governance.md, "The audit log: tamper-evident, honestly").

- Each entry is the RFC 8785 canonical JSON of its fields (`rfc8785`); its
  leaf hash is ``merkle.leaf_hash(entry)``. The table is append-only (the
  migration's triggers refuse UPDATE and DELETE). Each row carries a MAC
  (HMAC-SHA256 under HOME/keys/audit-mac.key): a row someone INSERTs without
  that key is refused before it could be signed.
- Wearers appear only as keyed pseudonyms, HMAC-SHA256(HOME/keys/pseudonym.key,
  subject_id); deleting the key severs the link while the log stays intact.
  Coordinates never enter the log: a `detail` with a coordinate key is refused.
- `AuditLog.write_checkpoint` is called after each committed batch of
  appends; it checks the new entries (MAC, columns) and the log against the
  latest checkpoint every time, and signs (Ed25519) the note
  ``"tagtrail-audit\\n{size}\\n{root_b64}\\n"`` when the cadence says so
  (every `audit_checkpoint_every` entries or `audit_checkpoint_s` seconds;
  ``force=True`` at once). Checkpoints go to
  HOME/audit/checkpoints/<size // 1e6:06d>/<size:012d>.json, with a LATEST
  pointer (`api.audit.files`). The root is recomputed from the stored entry
  text, never taken from the `leaf_hash` column, and a checkpoint is refused
  when the log no longer extends the latest one.
- Tampering found that way is recorded (HOME/audit/INTEGRITY-FAILED,
  `AuditLog.integrity_problem`) and no checkpoint is signed until an
  operator runs `resume` (`tagtrail audit resume`): after a restore that
  verifies, or accepting the break on the record and starting a new
  checkpoint series.
- `verify_log` (`api.audit.verify`; needs only the public key,
  HOME/audit/audit-ed25519.pub.pem) finds edited, deleted, reordered,
  inserted and truncated entries, edited query columns, forged or altered
  checkpoints and deleted ones, and names the first bad entry.

What it does not promise: confidentiality, or protection against someone who
controls both the database and every copy of the checkpoints and keys.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from trails.timestamps import format_ms, parse_timestamp

from api.audit import merkle
from api.audit.pseudonym_keys import PseudonymKeys
from api.audit.files import (CHECKPOINT_DIR, MAC_KEY_FILE, LatestPointer, PSEUDONYM_KEY_FILE, PUBLIC_KEY_FILE,
                          SIGNING_KEY_FILE, AuditIntegrityError, checkpoint_note, clear_integrity_failure,
                          latest_on_disk, list_checkpoints, load_checkpoint, load_or_create, private_dir,
                          read_integrity_failure, record_integrity_failure, restore_series, retire_series,
                          store_checkpoint, write_atomic)
from api.audit.verify import (BREAK_ACTION, RESUME_ACTION, VerifyReport, check_row, entry_mac, row_select,
                           scan_rows, signature_ok, verify_log)
from api.db.models import AuditEntry, User
from api.settings import Settings

__all__ = ["AuditLog", "ChannelAudit", "CHANNELS", "commit_with_checkpoint", "AuditIntegrityError", "VerifyReport",
           "ResumeResult", "verify_log", "resume",
           "checkpoint_note", "FORBIDDEN_DETAIL_KEYS", "PSEUDONYM_KEY_FILE", "SIGNING_KEY_FILE", "PUBLIC_KEY_FILE",
           "MAC_KEY_FILE", "BREAK_ACTION", "RESUME_ACTION"]

#: Keys that would carry coordinates; refused anywhere in `detail` (case-insensitive).
FORBIDDEN_DETAIL_KEYS: frozenset[str] = frozenset(
    {"lat", "lon", "lng", "latitude", "longitude", "x", "y", "coordinates", "geometry"})

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_PENDING_KEY = "tagtrail.audit.pending"  # session.info: (transaction, first idx appended in it)
#: Most row problems one accepted break may list; beyond it, restore from a backup.
MAX_ACCEPTED_PROBLEMS = 100_000


def _public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _random_key(path) -> bytes:
    key = load_or_create(path, lambda: os.urandom(32))
    if len(key) != 32:
        raise AuditIntegrityError(f"{path}: expected 32 bytes, found {len(key)}")
    return key


def _load_keys(settings: Settings) -> tuple[PseudonymKeys, bytes, Ed25519PrivateKey]:
    """(the per-wearer pseudonym keys, MAC key, signing key), creating any that are missing
    (mode 600, folders 700) and publishing the public key once.

    Raises AuditIntegrityError if a key file is malformed, or the published
    public key is not the signing key's (it is never silently replaced).
    """
    keys_dir, audit_dir = settings.keys_dir, settings.audit_dir
    private_dir(keys_dir)
    private_dir(audit_dir)
    private_dir(audit_dir / CHECKPOINT_DIR)
    pseudonym_keys = PseudonymKeys(keys_dir)
    mac_key = _random_key(keys_dir / MAC_KEY_FILE)
    sign_path = keys_dir / SIGNING_KEY_FILE
    pem = load_or_create(sign_path, lambda: Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditIntegrityError(f"{sign_path}: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditIntegrityError(f"{sign_path}: not an Ed25519 key ({type(key).__name__})")
    pub_path = audit_dir / PUBLIC_KEY_FILE
    want = _public_pem(key.public_key())
    if not pub_path.exists():
        write_atomic(pub_path, want, mode=0o644, exclusive=True)
    if pub_path.read_bytes() != want:
        raise AuditIntegrityError(f"{pub_path} is not the public key of {sign_path}; "
                                  f"restore it (it is never replaced silently)")
    return pseudonym_keys, mac_key, key


def _check_coordinate_free(value: Any, where: str = "detail") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            if key.lower() in FORBIDDEN_DETAIL_KEYS:
                raise ValueError(f"{where}[{key!r}]: coordinates never go into the audit log")
            _check_coordinate_free(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_coordinate_free(item, f"{where}[{i}]")


def _opt_str(name: str, value: object, max_len: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
    if len(value) > max_len:
        raise ValueError(f"{name} is {len(value)} characters, at most {max_len} allowed")
    return value


def _opt_int(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer or None, got {value!r}")
    return value


def _checked_fields(action: object, actor: object, request_id: object, ground: object,
                    justification_ref: object, extract_sha256: object,
                    detail: object) -> tuple[str, int | None, str | None, str | None]:
    """`AuditLog.append`'s fields checked, in this order, before anything is written: (action,
    request_id, ground, justification_ref). Raises ValueError naming the first bad one."""
    action = _opt_str("action", action, 60)
    if action is None:
        raise ValueError("action is required")
    if actor is not None and not isinstance(actor, User):
        raise ValueError(f"actor must be a User or None, got {type(actor).__name__}")
    request_id = _opt_int("request_id", request_id)
    ground = _opt_str("ground", ground, 30)
    justification_ref = _opt_str("justification_ref", justification_ref, 200)
    if extract_sha256 is not None and (not isinstance(extract_sha256, str)
                                       or not _SHA256_HEX.match(extract_sha256)):
        raise ValueError(f"extract_sha256 must be 64 lowercase hex digits, got {extract_sha256!r}")
    if detail is not None:
        if not isinstance(detail, dict):
            raise ValueError(f"detail must be a dict or None, got {type(detail).__name__}")
        _check_coordinate_free(detail)
    return action, request_id, ground, justification_ref


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class _Latest:
    """The newest checkpoint of the current series, as this process last saw it."""

    checkpoint: dict
    series: int

    @property
    def size(self) -> int:
        return int(self.checkpoint["size"])


class _CommittedTree:
    """The Merkle tree of the committed entries, cached (each checkpoint and
    proof hashes only the new entries), and which cached entry first had a
    MAC. Entries no checkpoint covers are checked as they enter the cache.
    Not thread-safe: `AuditLog` holds its lock around every use."""

    def __init__(self, mac_key: bytes) -> None:
        self._mac_key = mac_key
        self.tree = merkle.MerkleLog()  # leaf hashes of committed entries, from their text
        self._first_mac_idx: int | None = None

    def sync(self, session: Session, *, check_from: int, pending_from: int | None) -> tuple[int, list[bytes]]:
        """Bring the cache up to the committed entries; returns (log size,
        leaf hashes beyond the cache: the session's own uncommitted appends
        from `pending_from` on, never cached). Committed entries from
        `check_from` on (those no checkpoint covers) are checked as they
        enter the cache (`check_row`: hash, query columns, MAC).

        Raises AuditIntegrityError if the indexes are not 0..n-1, the log is
        shorter than what was read before, or a new entry fails its check.
        """
        count, max_idx = session.execute(select(func.count(), func.max(AuditEntry.idx))).one()
        if count and max_idx != count - 1:
            raise AuditIntegrityError(f"audit_log has {count} rows but its last index is {max_idx} "
                                      f"(entries deleted?); run `tagtrail audit verify`")
        committed = count if pending_from is None else min(pending_from, count)
        cached = len(self.tree)
        if committed < cached:
            raise AuditIntegrityError(f"the log has {committed} entries but had {cached} (truncated?); "
                                      f"run `tagtrail audit verify`")
        if committed > cached:
            self.tree.extend(self._read(session, cached, committed, check_from=check_from, cache=True))
        extra = self._read(session, committed, count, check_from=count) if count > committed else []
        return count, extra

    def _read(self, session: Session, lo: int, hi: int, *, check_from: int, cache: bool = False) -> list[bytes]:
        """Leaf hashes of entries lo..hi-1, checking those from `check_from` on."""
        rows = session.execute(row_select().where(AuditEntry.idx >= lo, AuditEntry.idx < hi)).all()
        out, first_mac = [], self._first_mac_idx
        for expect, row in enumerate(rows, start=lo):
            if row[0] != expect:
                raise AuditIntegrityError(f"audit entry {expect} missing (deleted?); run `tagtrail audit verify`")
            if expect >= check_from:
                leaf, _, problems = check_row(row, expect, mac_key=self._mac_key, macs_started=first_mac is not None)
                if problems:
                    raise AuditIntegrityError(f"{problems[0].message}; it is never signed into a checkpoint; "
                                              f"run `tagtrail audit verify`")
            else:
                leaf = merkle.leaf_hash(row[1].encode("utf-8"))
            if first_mac is None and row[3] is not None:
                first_mac = expect
            out.append(leaf)
        if len(out) != hi - lo:
            raise AuditIntegrityError(f"audit entries {lo}..{hi - 1} changed while being read")
        if cache:
            self._first_mac_idx = first_mac
        return out

    def all_hashes(self, extra: list[bytes]) -> list[bytes]:
        return [self.tree.leaf_hash(i) for i in range(len(self.tree))] + extra

    def root(self, size: int, extra: list[bytes]) -> bytes:
        """Root of the first `size` entries, the session's own uncommitted ones included."""
        if size <= len(self.tree):
            return self.tree.root(size)
        return merkle.root_from_leaf_hashes(self.all_hashes(extra)[:size])

    def inclusion_proof(self, index: int, size: int, extra: list[bytes]) -> tuple[list[bytes], bytes, bytes]:
        """(proof, root, leaf hash) of entry `index` in the tree of the first `size` entries, the
        session's own uncommitted ones (`extra`) included: from the cache when it covers them."""
        if size <= len(self.tree):
            return self.tree.inclusion_proof(index, size), self.tree.root(size), self.tree.leaf_hash(index)
        hashes = self.all_hashes(extra)
        return (merkle.inclusion_proof(index, size, hashes), merkle.root_from_leaf_hashes(hashes[:size]),
                hashes[index])

    def consistency_proof(self, first: int, second: int, extra: list[bytes]) -> tuple[list[bytes], bytes, bytes]:
        """(proof, first root, second root) that the tree of the first `second` entries extends
        the tree of the first `first` (uncommitted `extra` included, as for `inclusion_proof`)."""
        if second <= len(self.tree):
            return self.tree.consistency_proof(first, second), self.tree.root(first), self.tree.root(second)
        hashes = self.all_hashes(extra)
        return (merkle.consistency_proof(first, second, hashes), merkle.root_from_leaf_hashes(hashes[:first]),
                merkle.root_from_leaf_hashes(hashes[:second]))


#: The ways in whose entries say which they came through: the same action read in the
#: console or through the API is the same entry apart from this field.
CHANNELS: tuple[str, ...] = ("api", "console")


class ChannelAudit:
    """The audit log as one way in (the API, the console) sees it: `append`
    adds ``channel``; everything else is the log's own. Handed to endpoints
    and service functions in place of the log, so no call site names its
    channel and none can forget it."""

    def __init__(self, log: "AuditLog", channel: str) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
        self.log = log
        self.channel = channel

    def append(self, session: Session, **fields: Any) -> AuditEntry:
        return self.log.append(session, channel=self.channel, **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)


def commit_with_checkpoint(session: Session, audit: "AuditLog | ChannelAudit") -> None:
    """Commit the business change and its audit entries together, then write a
    checkpoint of the audit log (outside the database). A failed checkpoint
    is logged, not raised: the entries are committed, and the next checkpoint
    covers them. Every way in (API, console) ends its unit of work here."""
    session.commit()
    try:
        audit.write_checkpoint(session)
        session.commit()  # end the transaction the checkpoint opened (it only reads)
    except AuditIntegrityError as exc:  # recorded by the audit log; the ways in refuse what they must
        session.rollback()
        logging.getLogger("tagtrail.api").warning("audit checkpoint refused: %s", exc)
    except Exception:  # pragma: no cover - disk full and the like
        session.rollback()
        logging.getLogger("tagtrail.api").exception("audit checkpoint not written")


class AuditLog:
    """Appends audit entries, writes signed checkpoints, serves proofs and
    knows whether the log's integrity has failed.

    One instance per service (it caches the Merkle tree of committed entries,
    guarded by a lock, so each checkpoint hashes only the new entries).
    Construction loads or creates the keys (mode 600, folders 700):

    - HOME/keys/wearer-index.key and HOME/keys/wearers/: one pseudonym key per wearer
      (`api.audit.pseudonym_keys`; a home made before them keeps its single
      pseudonym.key for reading older entries);
    - HOME/keys/audit-mac.key: 32 random bytes (HMAC key of the entries);
    - HOME/keys/audit-ed25519.pem: the Ed25519 signing key;
    - HOME/audit/audit-ed25519.pub.pem: its public key, for verifiers.

    Raises
    ------
    AuditIntegrityError
        If a key file is malformed, or the published public key is not the
        signing key's (it is never silently replaced).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pseudonym_keys, self._mac_key, self._signing_key = _load_keys(settings)
        self.public_key = self._signing_key.public_key()
        self.key_id = _key_id(self.public_key)
        self._checkpoint_dir = settings.audit_dir / CHECKPOINT_DIR
        self._lock = threading.RLock()
        self._pointer = LatestPointer(self._checkpoint_dir)
        self._reset()

    def _reset(self) -> None:
        """Forget the cached tree and the checkpoint last seen (a new series,
        or a resume): the next call reads both afresh."""
        self._entries = _CommittedTree(self._mac_key)
        self._seen: _Latest | None = None
        self._pointer.forget()

    def via(self, channel: str) -> "ChannelAudit":
        """This log as one way in (`CHANNELS`) uses it: its entries name the channel."""
        return ChannelAudit(self, channel)

    # ---------------------------------------------------------------- entries
    def pseudonym(self, subject_id: str) -> str:
        """Keyed pseudonym of a wearer for new entries: HMAC-SHA256(their own key, subject_id) hex, first 32
        digits (`api.audit.pseudonym_keys`)."""
        return self.pseudonym_keys.pseudonym(subject_id)

    def pseudonyms(self, subject_id: str) -> list[str]:
        """Every pseudonym the wearer's entries may carry: their key's, and in a home made before per-wearer
        keys the single key's (what searching the log for them must look for)."""
        legacy = self.pseudonym_keys.legacy(subject_id)
        return [self.pseudonym(subject_id)] + ([legacy] if legacy is not None else [])

    def append(self, session: Session, *, action: str, actor: User | None, request_id: int | None = None,
               subject_id: str | None = None, ground: str | None = None, justification_ref: str | None = None,
               extract_sha256: str | None = None, detail: dict | None = None,
               now_ms: int | None = None, channel: str | None = None) -> AuditEntry:
        """Add the next entry to the log in the caller's transaction (the caller commits).

        `channel` says which way in the call came through (`CHANNELS`: the API or
        the console); entries made by the CLI or the service itself have none,
        and then the entry has no ``channel`` field (older entries keep their
        exact form). Use `via` rather than passing it by hand.

        The next index is (max idx) + 1, read in the same transaction; on
        SQLite every transaction begins IMMEDIATE, so appends are serialised.
        The entry is the RFC 8785 canonical JSON of ``{idx, ts, ts_ms,
        actor_id, actor, role, org, action, request_id, subject, ground,
        justification_ref, extract_sha256, detail}``, where `subject` is the
        pseudonym of `subject_id` and `ts` the contract's UTC form of `ts_ms`.
        The row's `mac` authenticates the entry (`audit_verify.entry_mac`).

        Raises
        ------
        ValueError
            A field of the wrong type or too long, a `detail` that is not a
            JSON object of canonicalisable values, or one holding a coordinate
            key (lat, lon, x, y, coordinates, geometry, ...) at any depth.
        """
        action, request_id, ground, justification_ref = _checked_fields(
            action, actor, request_id, ground, justification_ref, extract_sha256, detail)
        if channel is not None and channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)} or None, got {channel!r}")
        subject = self.pseudonym(subject_id) if subject_id is not None else None
        ts_ms = _opt_int("now_ms", now_ms)
        if ts_ms is None:
            ts_ms = _now_ms()

        last = session.scalar(select(func.max(AuditEntry.idx)))
        idx = 0 if last is None else int(last) + 1
        fields = {
            "idx": idx, "ts": format_ms(ts_ms), "ts_ms": ts_ms,
            "actor_id": actor.id if actor is not None else None,
            "actor": actor.name if actor is not None else None,
            "role": actor.role if actor is not None else None,
            "org": actor.org if actor is not None else None,
            "action": action, "request_id": request_id, "subject": subject, "ground": ground,
            "justification_ref": justification_ref, "extract_sha256": extract_sha256, "detail": detail,
        }
        if channel is not None:
            fields["channel"] = channel
        try:
            entry = rfc8785.dumps(fields)
        except rfc8785.CanonicalizationError as exc:
            raise ValueError(f"audit entry {action!r} is not canonical JSON: {exc}") from None
        text = entry.decode("utf-8")
        row = AuditEntry(idx=idx, ts_ms=ts_ms, actor_id=fields["actor_id"], actor=fields["actor"],
                         role=fields["role"], org=fields["org"], action=action, request_id=request_id,
                         subject_pseudonym=subject, ground=ground, justification_ref=justification_ref,
                         extract_sha256=extract_sha256, entry=text, leaf_hash=merkle.leaf_hash(entry).hex(),
                         mac=entry_mac(self._mac_key, text))
        session.add(row)
        session.flush()
        pending = session.info.get(_PENDING_KEY)
        txn = session.get_transaction()
        if pending is None or pending[0] is not txn:
            session.info[_PENDING_KEY] = (txn, idx)
        return row


    # --------------------------------------------------------------- the tree
    def _pending_from(self, session: Session) -> int | None:
        """Index of the first entry this session appended in its open transaction."""
        pending = session.info.get(_PENDING_KEY)
        txn = session.get_transaction()
        if pending is not None and txn is not None and pending[0] is txn:
            return pending[1]
        return None

    def _break_floor(self, session: Session) -> int:
        """Index of the last accepted break whose MAC verifies, else 0: with no
        checkpoint in the current series, entries from there on are checked."""
        rows = session.execute(row_select().where(AuditEntry.action == BREAK_ACTION)).all()
        for row in reversed(rows):
            if row[3] is not None and hmac.compare_digest(str(row[3]), entry_mac(self._mac_key, row[1])):
                return int(row[0])
        return 0

    # ------------------------------------------------------------ checkpoints
    def _latest(self) -> _Latest | None:
        """The current series' newest checkpoint, by the LATEST pointer."""
        found = self._pointer.get()
        return None if found is None else _Latest(*found)

    def latest_checkpoint(self) -> dict | None:
        """The current series' newest checkpoint as written (not verified;
        `verify_log` does that), or None if there is none."""
        latest = self._latest()
        return None if latest is None else latest.checkpoint

    def _state(self, session: Session) -> tuple[int, list[bytes], _Latest | None]:
        """(log size, own uncommitted leaf hashes, latest checkpoint) after
        syncing the tree and checking the log against the latest checkpoint.
        Tampering found here is recorded (`integrity_problem`) and raised."""
        try:
            return self._check_state(session)
        except AuditIntegrityError as exc:
            self._fail(str(exc))
            raise

    def _check_state(self, session: Session) -> tuple[int, list[bytes], _Latest | None]:
        latest, seen = self._latest(), self._seen
        if latest is not None and seen is not None and latest.series != seen.series:
            self._reset()  # an accepted break started a new series (and may have cut the log)
            seen = None
        if seen is not None and (latest is None or latest.size < seen.size):
            now = "none" if latest is None else f"{latest.size:012d}"
            raise AuditIntegrityError(f"checkpoint {seen.size:012d} was the latest, now the latest is {now} "
                                      f"(checkpoints deleted?); run `tagtrail audit verify`")
        check_from = latest.size if latest is not None else self._break_floor(session)
        size, extra = self._entries.sync(session, check_from=check_from, pending_from=self._pending_from(session))
        if latest is not None:
            old = latest.size
            if old > size:
                raise AuditIntegrityError(f"log has {size} entries but checkpoint {old:012d} commits to "
                                          f"{old} (truncated?); run `tagtrail audit verify`")
            if self._entries.root(old, extra).hex() != latest.checkpoint["root"]:
                raise AuditIntegrityError(f"the first {old} entries no longer match checkpoint {old:012d} "
                                          f"(rewritten?); run `tagtrail audit verify`")
        self._seen = latest
        return size, extra, latest

    def _due(self, n_new: int, latest: _Latest) -> bool:
        """The cadence: `audit_checkpoint_every` new entries, or
        `audit_checkpoint_s` seconds since the latest checkpoint was signed."""
        if n_new >= self.settings.audit_checkpoint_every:
            return True
        try:
            signed_ms = parse_timestamp(latest.checkpoint["ts"])
        except (KeyError, ValueError):
            return True
        return _now_ms() - signed_ms >= self.settings.audit_checkpoint_s * 1000

    def write_checkpoint(self, session: Session, *, force: bool = False) -> dict | None:
        """Check the committed log and, when the cadence says so (or `force`),
        sign and store a checkpoint of it. Call it after each committed batch
        of appends (it only reads; the caller ends the transaction it opens),
        with ``force=True`` where a checkpoint is needed at once (a CLI
        command's end, clean shutdown, the checkpoint endpoint).

        Every call checks the entries no checkpoint covers yet (`check_row`:
        hash, query columns, MAC: a row INSERTed without the service's key is
        refused) and the log against the latest checkpoint (not shorter, same
        root over its first `size` entries); then signs if there is something
        new and `force`, or no checkpoint yet, or `audit_checkpoint_every`
        new entries, or `audit_checkpoint_s` seconds since the latest.

        Returns the new checkpoint ``{"size", "root" (hex), "signature"
        (base64 Ed25519 over `checkpoint_note`), "key_id", "ts"}``, the latest
        one if none is due or the log has not grown, or None for an empty log.

        Raises
        ------
        RuntimeError
            If this session still holds uncommitted audit entries.
        AuditIntegrityError
            If an integrity failure is recorded (until `resume`), or this call
            finds one (then it is recorded): the log is never signed over
            tampering.
        """
        if self._pending_from(session) is not None:
            raise RuntimeError("write_checkpoint: this session has uncommitted audit entries; commit first")
        failure = read_integrity_failure(self.settings.audit_dir)
        if failure is not None:
            raise AuditIntegrityError(f"audit integrity failure recorded at {failure['ts']}: {failure['message']}; "
                                      f"no checkpoint is signed until an operator runs `tagtrail audit resume`")
        return self._checkpoint(session, force=force)

    def _checkpoint(self, session: Session, *, force: bool) -> dict | None:
        with self._lock:
            size, _, latest = self._state(session)
            if size == 0:
                return None
            if latest is not None and (latest.size == size or not (force or self._due(size - latest.size, latest))):
                return latest.checkpoint
            root = self._entries.tree.root(size)
            signature = self._signing_key.sign(checkpoint_note(size, root))
            checkpoint = {"size": size, "root": root.hex(), "signature": base64.b64encode(signature).decode("ascii"),
                          "key_id": self.key_id, "ts": format_ms(_now_ms())}
            series = latest.series if latest is not None else self._break_floor(session)
            store_checkpoint(self._checkpoint_dir, checkpoint, series=series)
            self._seen = _Latest(checkpoint, series)
            return checkpoint

    # -------------------------------------------------------------- integrity
    def integrity_problem(self) -> str | None:
        """What tampering was detected and when, while it is unresolved, else
        None. Kept in HOME/audit/INTEGRITY-FAILED, so it survives restarts and
        every process on this home sees it; only `resume` clears it. Costs one
        failed open when all is well: cheap enough for every request."""
        failure = read_integrity_failure(self.settings.audit_dir)
        return None if failure is None else f"{failure['message']} (detected {failure['ts']})"

    def _fail(self, message: str) -> None:
        record_integrity_failure(self.settings.audit_dir, message, _now_ms())

    # ----------------------------------------------------------------- proofs
    def inclusion_proof(self, session: Session, index: int, size: int) -> dict:
        """Inclusion proof (RFC 9162 2.1.3) of entry `index` in the tree of the
        first `size` entries: ``{"index", "size", "leaf_hash", "root",
        "proof": [hex, ...]}``. Take `size` from a checkpoint to check `root`.

        Raises
        ------
        ValueError
            If ``size < 1``, ``size`` exceeds the log, or ``index`` is not in
            ``[0, size)``.
        AuditIntegrityError
            If the log fails the checks `write_checkpoint` makes (then recorded).
        """
        index, size = _opt_int("index", index), _opt_int("size", size)
        if index is None or size is None:
            raise ValueError("index and size are required")
        if size < 1:
            raise ValueError(f"{size=}: a proof needs a tree of at least one entry")
        if index < 0 or index >= size:
            raise ValueError(f"{index=} is not below {size=}")
        with self._lock:
            n, extra, _ = self._state(session)
            if size > n:
                raise ValueError(f"{size=} exceeds the log's {n} entries")
            proof, root, leaf = self._entries.inclusion_proof(index, size, extra)
        return {"index": index, "size": size, "leaf_hash": leaf.hex(), "root": root.hex(),
                "proof": [h.hex() for h in proof]}

    def consistency_proof(self, session: Session, first: int, second: int) -> dict:
        """Consistency proof (RFC 9162 2.1.4) that the tree of the first
        `second` entries extends the tree of the first `first`:
        ``{"first", "second", "first_root", "second_root", "proof": [hex, ...]}``.
        ``first == 0`` gives an empty proof (and the empty tree's root).

        Raises
        ------
        ValueError
            If ``first < 0``, ``first > second`` or ``second`` exceeds the log.
        AuditIntegrityError
            If the log fails the checks `write_checkpoint` makes (then recorded).
        """
        first, second = _opt_int("first", first), _opt_int("second", second)
        if first is None or second is None:
            raise ValueError("first and second are required")
        if first < 0:
            raise ValueError(f"{first=} < 0")
        if first > second:
            raise ValueError(f"{first=} > {second=}")
        with self._lock:
            n, extra, _ = self._state(session)
            if second > n:
                raise ValueError(f"{second=} exceeds the log's {n} entries")
            proof, first_root, second_root = self._entries.consistency_proof(first, second, extra)
        return {"first": first, "second": second, "first_root": first_root.hex(),
                "second_root": second_root.hex(), "proof": [h.hex() for h in proof]}




# -------------------------------------------------------------------- resuming
@dataclass(frozen=True)
class ResumeResult:
    """Outcome of `resume`: ok (the service may serve again), one line saying
    what happened, the entry that records it and the checkpoint signed then."""

    ok: bool
    message: str
    entry_idx: int | None = None
    checkpoint: dict | None = None


def resume(audit: AuditLog, session: Session, *, reason: str, operator: str,
           accept_break: bool = False) -> ResumeResult:
    """An operator's answer to a detected break (`AuditLog.integrity_problem`).

    Without `accept_break` it succeeds only if `verify_log` passes again (the
    database, and HOME/audit if need be, restored from a backup); entries
    no checkpoint covers are not held against it (they are checked before
    the checkpoint signed now). An ``audit.resumed`` entry records `operator`
    (the OS user), `reason` and the failure, a checkpoint is signed, and the
    failure marker moves to HOME/audit/integrity-history.

    With `accept_break`, when the log does not verify, the log is kept as it
    is, on the record (`_accept_break`). A log with missing entries cannot
    be continued that way: restore it.

    Raises
    ------
    ValueError
        If `reason` or `operator` is empty.
    """
    reason = _opt_str("reason", reason, 2000)
    operator = _opt_str("operator", operator, 200)
    if reason is None or operator is None:
        raise ValueError("resume needs a reason and the operator's name")
    settings = audit.settings
    failure = read_integrity_failure(settings.audit_dir)
    report = verify_log(settings, session, max_unsigned_age_s=float("inf"))
    session.rollback()
    if report.ok:
        if failure is None:
            return ResumeResult(True, f"nothing to resume: no integrity failure is recorded and the log verifies "
                                      f"({report.message})")
        entry = audit.append(session, action=RESUME_ACTION, actor=None,
                             detail={"os_user": operator, "reason": reason, "failure": failure["message"],
                                     "detected": failure["ts"]})
        session.commit()
        return _finish(audit, session, entry.idx, {"how": "verified", "os_user": operator, "reason": reason},
                       f"resumed: the log verifies again ({report.message}); entry {entry.idx} records it")
    if not accept_break:
        return ResumeResult(False, f"not resumed: `tagtrail audit verify` still fails: {report.message}. Restore the "
                                   f"database (and HOME/audit) from a backup and run this again, or accept the "
                                   f"break on the record with --accept-break")
    if failure is None:  # hold the service's checkpoints while the series changes
        audit._fail(report.message)
    return _accept_break(audit, session, reason=reason, operator=operator,
                         problem=failure["message"] if failure else report.message)


def _finish(audit: AuditLog, session: Session, idx: int, resolution: dict, message: str) -> ResumeResult:
    """Sign a checkpoint over the resumed log (the marker still holds the
    service's own checkpoints back meanwhile), then clear the marker."""
    with audit._lock:
        audit._reset()
    try:
        checkpoint = audit._checkpoint(session, force=True)
        session.commit()
    except AuditIntegrityError as exc:
        session.rollback()
        return ResumeResult(False, f"not resumed: the checkpoint after entry {idx} was refused: {exc}", idx)
    clear_integrity_failure(audit.settings.audit_dir, {**resolution, "entry": idx}, _now_ms())
    return ResumeResult(True, message, idx, checkpoint)


def _old_series(audit: AuditLog) -> tuple[dict | None, list[str]]:
    """The current series' latest checkpoint ``{"size", "root"}`` as written
    (None if none or unreadable), and the names of its files that are
    malformed or do not verify, which the break records as accepted."""
    folder = audit.settings.audit_dir / CHECKPOINT_DIR
    bad = []
    for size, path in list_checkpoints(folder):
        cp, problem = load_checkpoint(path, size)
        if problem or not signature_ok(audit.public_key, cp):
            bad.append(path.name)
    try:
        found = latest_on_disk(folder)
    except AuditIntegrityError:
        found = None
    return (None if found is None else {"size": found[0]["size"], "root": found[0]["root"]}), bad


def _accept_break(audit: AuditLog, session: Session, *, reason: str, operator: str, problem: str) -> ResumeResult:
    """Keep the log as it is, on the record: every row problem is listed, the
    current checkpoint series moves to HOME/audit/series/<n:012d> (kept,
    still verifiable), an ``audit.break_accepted`` entry (index n) records the
    OS user, the reason, the problem, the old series' latest checkpoint
    (size, root), the root of the n entries it accepts, the series and the
    problems; then a new series starts with a checkpoint over it all.
    `verify_log` from then on tolerates exactly the listed problems below n.
    The scan and the append are one transaction, so nothing slips between."""
    scan = scan_rows(session.execute(row_select()).all(), mac_key=audit._mac_key)
    if scan.has_hole:
        session.rollback()
        return ResumeResult(False, f"cannot accept the break: {scan.problems[-1].message}, and a log with missing "
                                   f"entries cannot be continued; restore the database from a backup")
    if len(scan.problems) > MAX_ACCEPTED_PROBLEMS:
        session.rollback()
        return ResumeResult(False, f"cannot accept the break: {len(scan.problems)} problems, more than the "
                                   f"{MAX_ACCEPTED_PROBLEMS} one break may accept; restore the database from a backup")
    n = len(scan.leaves)
    old, bad = _old_series(audit)
    name = f"{n:012d}"
    detail = {"os_user": operator, "reason": reason, "problem": problem, "old_checkpoint": old, "size": n,
              "root": merkle.root_from_leaf_hashes(scan.leaves).hex(), "series": name, "bad_checkpoints": bad,
              "accepted": [[p.index, p.kind] for p in scan.problems]}
    series = retire_series(audit.settings.audit_dir, name)
    try:
        entry = audit.append(session, action=BREAK_ACTION, actor=None, detail=detail)
        session.commit()
    except BaseException:
        session.rollback()
        restore_series(audit.settings.audit_dir, name)
        raise
    old_text = "no checkpoint" if old is None else f"checkpoints up to {old['size']:012d}"
    return _finish(audit, session, entry.idx, {"how": "break accepted", "os_user": operator, "reason": reason},
                   f"break accepted at entry {entry.idx} by {operator}: {len(scan.problems)} problem(s) on the "
                   f"record, {old_text} moved to {series}; a new checkpoint series starts")
