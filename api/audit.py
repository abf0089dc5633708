"""The tamper-evident audit log: entries are leaves of an RFC 6962 Merkle
tree, and signed checkpoints (tree size, root) are written outside the
database (governance.md, "The audit log: tamper-evident, honestly").

- Each entry is the RFC 8785 canonical JSON of its fields (`rfc8785`); its
  leaf hash is ``merkle.leaf_hash(entry)``. The table is append-only (the
  migration's triggers refuse UPDATE and DELETE).
- Wearers appear only as keyed pseudonyms, HMAC-SHA256(HOME/keys/pseudonym.key,
  subject_id); deleting the key severs the link while the log stays intact.
  Coordinates never enter the log: a `detail` with a coordinate key is refused.
- After each committed batch of appends, `AuditLog.write_checkpoint` signs
  (Ed25519) the note ``"tagtrail-audit\\n{size}\\n{root_b64}\\n"`` and writes
  HOME/audit/checkpoints/{size:012d}.json. The root is recomputed from the
  stored entry text, never taken from the `leaf_hash` column, and a
  checkpoint is refused when the log no longer extends the latest one.
- `verify_log` (needs only the public key, HOME/audit/audit-ed25519.pub.pem)
  finds edited, deleted, reordered and truncated entries and forged or
  altered checkpoints, and names the first bad entry.

What it does not promise: confidentiality, or protection against someone who
controls both the database and every copy of the checkpoints and keys.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from trails.timestamps import format_ms

from . import merkle
from .models import AuditEntry, User
from .settings import Settings

__all__ = ["AuditLog", "AuditIntegrityError", "VerifyReport", "verify_log", "checkpoint_note",
           "FORBIDDEN_DETAIL_KEYS", "PSEUDONYM_KEY_FILE", "SIGNING_KEY_FILE", "PUBLIC_KEY_FILE"]

PSEUDONYM_KEY_FILE = "pseudonym.key"        #: in HOME/keys: 32 random bytes
SIGNING_KEY_FILE = "audit-ed25519.pem"      #: in HOME/keys: PKCS#8 PEM, unencrypted, mode 600
PUBLIC_KEY_FILE = "audit-ed25519.pub.pem"   #: in HOME/audit: SubjectPublicKeyInfo PEM, for verifiers
CHECKPOINT_DIR = "checkpoints"              #: in HOME/audit
NOTE_ORIGIN = "tagtrail-audit"

#: Keys that would carry coordinates; refused anywhere in `detail` (case-insensitive).
FORBIDDEN_DETAIL_KEYS: frozenset[str] = frozenset(
    {"lat", "lon", "lng", "latitude", "longitude", "x", "y", "coordinates", "geometry"})

_CHECKPOINT_NAME = re.compile(r"^(\d{12})\.json$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_PENDING_KEY = "tagtrail.audit.pending"  # session.info: (transaction, first idx appended in it)


class AuditIntegrityError(RuntimeError):
    """The log or its checkpoints are inconsistent (tampering, or a key file
    that does not match): refuse to sign, and point at `tagtrail audit verify`."""


def checkpoint_note(size: int, root: bytes) -> bytes:
    """The bytes a checkpoint signs: ``"tagtrail-audit\\n{size}\\n{root_b64}\\n"``."""
    return f"{NOTE_ORIGIN}\n{size}\n{base64.b64encode(root).decode('ascii')}\n".encode("ascii")


def _key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_atomic(path: Path, data: bytes, *, mode: int, exclusive: bool = False) -> bool:
    """Write `data` to `path` through a temporary file in the same directory.

    exclusive: never replace an existing file (``os.link`` fails if it
    exists); returns False then. Otherwise ``os.replace``; returns True.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        os.replace(tmp, path)
        tmp = ""
        return True
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def _load_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes of `path`, creating it with ``make()`` (mode 600) if absent.
    Two processes racing to create it end up with the same file."""
    if not path.exists():
        _write_atomic(path, make(), mode=0o600, exclusive=True)
    return path.read_bytes()


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


def _entry_leaf(entry_text: str) -> bytes:
    return merkle.leaf_hash(entry_text.encode("utf-8"))


class AuditLog:
    """Appends audit entries, writes signed checkpoints and serves proofs.

    One instance per service (it caches the Merkle tree of committed entries,
    guarded by a lock, so each checkpoint hashes only the new entries).
    Construction loads or creates the keys:

    - HOME/keys/pseudonym.key: 32 random bytes (HMAC key for pseudonyms);
    - HOME/keys/audit-ed25519.pem: the Ed25519 signing key;
    - HOME/audit/audit-ed25519.pub.pem: its public key, for verifiers.

    Key files are mode 600 and their directories 700.

    Raises
    ------
    AuditIntegrityError
        If a key file is malformed, or the published public key is not the
        signing key's (it is never silently replaced).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        keys_dir, audit_dir = settings.keys_dir, settings.audit_dir
        _private_dir(keys_dir)
        _private_dir(audit_dir)
        _private_dir(audit_dir / CHECKPOINT_DIR)
        self._checkpoint_dir = audit_dir / CHECKPOINT_DIR

        key_path = keys_dir / PSEUDONYM_KEY_FILE
        self._pseudonym_key = _load_or_create(key_path, lambda: os.urandom(32))
        if len(self._pseudonym_key) != 32:
            raise AuditIntegrityError(f"{key_path}: expected 32 bytes, found {len(self._pseudonym_key)}")

        sign_path = keys_dir / SIGNING_KEY_FILE
        pem = _load_or_create(sign_path, lambda: Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise AuditIntegrityError(f"{sign_path}: not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditIntegrityError(f"{sign_path}: not an Ed25519 key ({type(key).__name__})")
        self._signing_key = key
        self.public_key = key.public_key()
        self.key_id = _key_id(self.public_key)

        pub_path = audit_dir / PUBLIC_KEY_FILE
        want = _public_pem(self.public_key)
        if not pub_path.exists():
            _write_atomic(pub_path, want, mode=0o644, exclusive=True)
        if pub_path.read_bytes() != want:
            raise AuditIntegrityError(f"{pub_path} is not the public key of {sign_path}; "
                                      f"restore it (it is never replaced silently)")

        self._lock = threading.RLock()
        self._tree = merkle.MerkleLog()  # leaf hashes of committed entries, from their text

    # ---------------------------------------------------------------- entries
    def pseudonym(self, subject_id: str) -> str:
        """Keyed pseudonym of a wearer: HMAC-SHA256(key, subject_id) hex, first 32 digits."""
        if not isinstance(subject_id, str) or not subject_id:
            raise ValueError(f"subject_id must be a non-empty string, got {subject_id!r}")
        return hmac.new(self._pseudonym_key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def append(self, session: Session, *, action: str, actor: User | None, request_id: int | None = None,
               subject_id: str | None = None, ground: str | None = None, justification_ref: str | None = None,
               extract_sha256: str | None = None, detail: dict | None = None,
               now_ms: int | None = None) -> AuditEntry:
        """Add the next entry to the log in the caller's transaction (the caller commits).

        The next index is (max idx) + 1, read in the same transaction; on
        SQLite every transaction begins IMMEDIATE, so appends are serialised.
        The entry is the RFC 8785 canonical JSON of ``{idx, ts, ts_ms,
        actor_id, actor, role, org, action, request_id, subject, ground,
        justification_ref, extract_sha256, detail}``, where `subject` is the
        pseudonym of `subject_id` and `ts` the contract's UTC form of `ts_ms`.

        Raises
        ------
        ValueError
            A field of the wrong type or too long, a `detail` that is not a
            JSON object of canonicalisable values, or one holding a coordinate
            key (lat, lon, x, y, coordinates, geometry, ...) at any depth.
        """
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
        subject = self.pseudonym(subject_id) if subject_id is not None else None
        ts_ms = _opt_int("now_ms", now_ms)
        if ts_ms is None:
            ts_ms = time.time_ns() // 1_000_000

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
        try:
            entry = rfc8785.dumps(fields)
        except rfc8785.CanonicalizationError as exc:
            raise ValueError(f"audit entry {action!r} is not canonical JSON: {exc}") from None
        row = AuditEntry(idx=idx, ts_ms=ts_ms, actor_id=fields["actor_id"], actor=fields["actor"],
                         role=fields["role"], org=fields["org"], action=action, request_id=request_id,
                         subject_pseudonym=subject, ground=ground, justification_ref=justification_ref,
                         extract_sha256=extract_sha256, entry=entry.decode("utf-8"),
                         leaf_hash=merkle.leaf_hash(entry).hex())
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

    def _leaf_hashes(self, session: Session) -> tuple[int, list[bytes]]:
        """Sync the cached tree with the committed entries; returns (log size,
        leaf hashes beyond the cache: this transaction's own uncommitted
        appends, never cached). Caller holds the lock.

        Raises AuditIntegrityError if the indexes are not 0..n-1.
        """
        count, max_idx = session.execute(select(func.count(), func.max(AuditEntry.idx))).one()
        if count and max_idx != count - 1:
            raise AuditIntegrityError(f"audit_log has {count} rows but its last index is {max_idx} "
                                      f"(entries deleted?); run `tagtrail audit verify`")
        pending_from = self._pending_from(session)
        committed = count if pending_from is None else min(pending_from, count)
        cached = len(self._tree)
        if committed > cached:
            self._tree.extend(self._hashes_between(session, cached, committed))
        extra = self._hashes_between(session, committed, count) if count > committed else []
        return count, extra

    @staticmethod
    def _hashes_between(session: Session, lo: int, hi: int) -> list[bytes]:
        rows = session.execute(select(AuditEntry.idx, AuditEntry.entry)
                               .where(AuditEntry.idx >= lo, AuditEntry.idx < hi).order_by(AuditEntry.idx)).all()
        out = []
        for expect, (idx, entry) in enumerate(rows, start=lo):
            if idx != expect:
                raise AuditIntegrityError(f"audit entry {expect} missing (deleted?); run `tagtrail audit verify`")
            out.append(_entry_leaf(entry))
        if len(out) != hi - lo:
            raise AuditIntegrityError(f"audit entries {lo}..{hi - 1} changed while being read")
        return out

    def _all_hashes(self, extra: list[bytes]) -> list[bytes]:
        return [self._tree.leaf_hash(i) for i in range(len(self._tree))] + extra

    # ------------------------------------------------------------ checkpoints
    def latest_checkpoint(self) -> dict | None:
        """The stored checkpoint with the largest size, as written (not
        verified; `verify_log` does that), or None if there is none."""
        names = sorted(p.name for p in self._checkpoint_dir.glob("*.json") if _CHECKPOINT_NAME.match(p.name))
        if not names:
            return None
        return json.loads((self._checkpoint_dir / names[-1]).read_text(encoding="utf-8"))

    def write_checkpoint(self, session: Session) -> dict | None:
        """Sign and store a checkpoint of the committed log; call it after each
        committed batch of appends (it only reads; the caller ends the
        transaction it opens).

        Returns the new checkpoint ``{"size", "root" (hex), "signature"
        (base64 Ed25519 over `checkpoint_note`), "key_id", "ts"}``, the latest
        one unchanged if the log has not grown, or None for an empty log.

        Raises
        ------
        RuntimeError
            If this session still holds uncommitted audit entries.
        AuditIntegrityError
            If the log has holes, is shorter than the latest checkpoint, or
            its first entries no longer hash to the latest checkpoint's root:
            the log is never re-signed over tampering.
        """
        if self._pending_from(session) is not None:
            raise RuntimeError("write_checkpoint: this session has uncommitted audit entries; commit first")
        with self._lock:
            size, _ = self._leaf_hashes(session)
            latest = self.latest_checkpoint()
            if latest is not None:
                old = int(latest["size"])
                if old > size:
                    raise AuditIntegrityError(f"log has {size} entries but checkpoint {old:012d} commits to "
                                              f"{old} (truncated?); run `tagtrail audit verify`")
                if self._tree.root(old).hex() != latest["root"]:
                    raise AuditIntegrityError(f"the first {old} entries no longer match checkpoint {old:012d} "
                                              f"(rewritten?); run `tagtrail audit verify`")
                if old == size:
                    return latest
            if size == 0:
                return None
            root = self._tree.root(size)
            signature = self._signing_key.sign(checkpoint_note(size, root))
            checkpoint = {"size": size, "root": root.hex(), "signature": base64.b64encode(signature).decode("ascii"),
                          "key_id": self.key_id, "ts": format_ms(time.time_ns() // 1_000_000)}
            data = (json.dumps(checkpoint, indent=1) + "\n").encode("utf-8")
            _write_atomic(self._checkpoint_dir / f"{size:012d}.json", data, mode=0o644)
            return checkpoint

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
        """
        index, size = _opt_int("index", index), _opt_int("size", size)
        if index is None or size is None:
            raise ValueError("index and size are required")
        if size < 1:
            raise ValueError(f"{size=}: a proof needs a tree of at least one entry")
        if index < 0 or index >= size:
            raise ValueError(f"{index=} is not below {size=}")
        with self._lock:
            n, extra = self._leaf_hashes(session)
            if size > n:
                raise ValueError(f"{size=} exceeds the log's {n} entries")
            if size <= len(self._tree):
                proof, root = self._tree.inclusion_proof(index, size), self._tree.root(size)
                leaf = self._tree.leaf_hash(index)
            else:
                hashes = self._all_hashes(extra)
                proof = merkle.inclusion_proof(index, size, hashes)
                root, leaf = merkle.root_from_leaf_hashes(hashes[:size]), hashes[index]
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
        """
        first, second = _opt_int("first", first), _opt_int("second", second)
        if first is None or second is None:
            raise ValueError("first and second are required")
        if first < 0:
            raise ValueError(f"{first=} < 0")
        if first > second:
            raise ValueError(f"{first=} > {second=}")
        with self._lock:
            n, extra = self._leaf_hashes(session)
            if second > n:
                raise ValueError(f"{second=} exceeds the log's {n} entries")
            if second <= len(self._tree):
                proof = self._tree.consistency_proof(first, second)
                first_root, second_root = self._tree.root(first), self._tree.root(second)
            else:
                hashes = self._all_hashes(extra)
                proof = merkle.consistency_proof(first, second, hashes)
                first_root = merkle.root_from_leaf_hashes(hashes[:first])
                second_root = merkle.root_from_leaf_hashes(hashes[:second])
        return {"first": first, "second": second, "first_root": first_root.hex(),
                "second_root": second_root.hex(), "proof": [h.hex() for h in proof]}


# ------------------------------------------------------------------ verifying
@dataclass(frozen=True)
class VerifyReport:
    """Outcome of `verify_log`.

    ok: everything checked out. message: one line, naming the first bad
    entry (or checkpoint) when not ok. first_bad_index: that entry's index,
    or None when the fault is a checkpoint's own (bad signature, unreadable).
    checked_size: entries checked. checkpoints: checkpoint files checked.
    """

    ok: bool
    message: str
    first_bad_index: int | None
    checked_size: int
    checkpoints: int


def _load_public_key(settings: Settings) -> tuple[Ed25519PublicKey | None, str | None]:
    """The published verification key (HOME/audit), cross-checked against the
    signing key when that is present. Returns (key, problem)."""
    pub_path = settings.audit_dir / PUBLIC_KEY_FILE
    sign_path = settings.keys_dir / SIGNING_KEY_FILE
    key = None
    if pub_path.exists():
        try:
            key = serialization.load_pem_public_key(pub_path.read_bytes())
        except (ValueError, TypeError) as exc:
            return None, f"{pub_path}: not a PEM public key: {exc}"
        if not isinstance(key, Ed25519PublicKey):
            return None, f"{pub_path}: not an Ed25519 public key"
    if sign_path.exists():
        try:
            private = serialization.load_pem_private_key(sign_path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            return key, f"{sign_path}: not an unencrypted PEM private key: {exc}"
        if not isinstance(private, Ed25519PrivateKey):
            return key, f"{sign_path}: not an Ed25519 key"
        if key is None:
            key = private.public_key()
        elif _public_pem(private.public_key()) != _public_pem(key):
            return key, f"{pub_path} is not the public key of {sign_path}"
    return key, None


def _read_checkpoints(directory: Path) -> list[tuple[str, dict | None, str | None]]:
    """(name, checkpoint or None, problem) for every checkpoint file, by size."""
    out = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        m = _CHECKPOINT_NAME.match(path.name)
        if not m:
            continue
        name = m.group(1)
        try:
            cp = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            out.append((name, None, f"checkpoint {name}: unreadable: {exc}"))
            continue
        problem = None
        if not isinstance(cp, dict):
            problem = f"checkpoint {name}: not a JSON object"
        elif not isinstance(cp.get("size"), int) or isinstance(cp.get("size"), bool) or cp["size"] != int(name):
            problem = f"checkpoint {name}: its size {cp.get('size')!r} does not match its file name"
        elif not isinstance(cp.get("root"), str) or not _SHA256_HEX.match(cp["root"]):
            problem = f"checkpoint {name}: root is not 64 hex digits"
        elif not isinstance(cp.get("signature"), str):
            problem = f"checkpoint {name}: signature missing"
        out.append((name, None if problem else cp, problem))
    return out


def verify_log(settings: Settings, session: Session) -> VerifyReport:
    """Check the audit log against itself and every stored checkpoint.

    Checks, first failure reported: each row's `leaf_hash` equals the hash of
    its `entry`; each entry is canonical JSON whose `idx` is its row's index;
    the indexes are 0..n-1 without a hole; each checkpoint's Ed25519
    signature verifies with HOME/audit/audit-ed25519.pub.pem and its root
    equals the root recomputed over the first `size` entries; the log is not
    shorter than the largest checkpoint. Read-only: needs no private key.
    """
    rows = session.execute(select(AuditEntry.idx, AuditEntry.entry, AuditEntry.leaf_hash)
                           .order_by(AuditEntry.idx)).all()
    n = len(rows)
    leaves: list[bytes] = []

    def bad(message: str, index: int | None, n_checkpoints: int = 0) -> VerifyReport:
        return VerifyReport(False, message, index, len(leaves), n_checkpoints)

    # 1. entries: hash, position, holes.
    for pos, (idx, entry, stored) in enumerate(rows):
        if idx != pos:
            if idx > pos:
                gone = f"entry {pos}" if idx == pos + 1 else f"entries {pos}..{idx - 1}"
                return bad(f"{gone} missing (deleted?)", pos)
            return bad(f"entry {pos}: row index {idx} out of sequence", pos)  # pragma: no cover - PK order
        leaf = _entry_leaf(entry)
        if leaf.hex() != stored:
            return bad(f"entry {pos}: hash does not match its content (edited?)", pos)
        try:
            fields = json.loads(entry)
            canonical = rfc8785.dumps(fields).decode("utf-8") == entry
        except (ValueError, rfc8785.CanonicalizationError):
            return bad(f"entry {pos}: not valid JSON (edited?)", pos)
        if not canonical or not isinstance(fields, dict):
            return bad(f"entry {pos}: not canonical JSON (edited?)", pos)
        claimed = fields.get("idx")
        if claimed != pos:
            if isinstance(claimed, int) and 0 <= claimed < n and claimed != pos:
                other = json.loads(rows[claimed][1]) if rows[claimed][0] == claimed else {}
                if isinstance(other, dict) and other.get("idx") == pos:
                    lo, hi = sorted((pos, claimed))
                    return bad(f"entries {lo} and {hi} out of order (swapped?)", lo)
            return bad(f"entry {pos}: its content says idx {claimed!r} (moved?)", pos)
        leaves.append(leaf)

    # 2. checkpoints: signature, root, truncation.
    checkpoints = _read_checkpoints(settings.audit_dir / CHECKPOINT_DIR)
    if not checkpoints:
        return VerifyReport(True, f"OK: {n} entries, no checkpoint written yet (nothing to check them against)",
                            None, n, 0)
    key, key_problem = _load_public_key(settings)
    if key_problem or key is None:
        return bad(key_problem or "no public key to check the checkpoints with", None)
    tree = merkle.MerkleLog(leaves)
    good_size, n_checked = 0, 0
    for name, cp, problem in checkpoints:
        if problem:
            return bad(problem, None, n_checked)
        size = cp["size"]
        try:
            signature = base64.b64decode(cp["signature"], validate=True)
            key.verify(signature, checkpoint_note(size, bytes.fromhex(cp["root"])))
        except (InvalidSignature, ValueError):
            return bad(f"checkpoint {name}: signature does not verify with {PUBLIC_KEY_FILE} "
                       f"(checkpoint altered or forged?)", None, n_checked)
        if size > n:
            return bad(f"log has {n} entries but checkpoint {name} commits to {size} (truncated?)", n, n_checked)
        if tree.root(size).hex() != cp["root"]:
            where = f"entry {good_size}" if size - good_size == 1 else f"an entry in {good_size}..{size - 1}"
            return bad(f"{where} does not match checkpoint {name} (rewritten?)", good_size, n_checked)
        good_size, n_checked = size, n_checked + 1
    beyond = n - good_size
    tail = f", {beyond} newer entries not yet checkpointed" if beyond else ""
    return VerifyReport(True, f"OK: {n} entries match {n_checked} signed checkpoint(s), latest {good_size:012d} "
                              f"root {tree.root(good_size).hex()[:16]}{tail}", None, n, n_checked)
