"""The audit log's files outside the database: signed checkpoints (sharded by
size, with a LATEST pointer so no folder is listed on the hot path), earlier
checkpoint series moved aside by an accepted break, the integrity-failure
marker, the keys, and the export of checkpoints to another disk.

Layout under HOME/audit::

    audit-ed25519.pub.pem                    the verification key (public)
    checkpoints/LATEST                       {"size", "file", "series"}: the newest checkpoint
    checkpoints/000000/000000001234.json     one signed checkpoint: <size // 1e6:06d>/<size:012d>.json
    checkpoints/000000001234.json            the same, in the flat layout written before sharding
    series/<idx:012d>/...                    a series retired by the accepted break at entry idx
    INTEGRITY-FAILED                         {"message", "ts", "ts_ms"}: tampering was detected
    integrity-history/<ts_ms>.json           resolved failures, with how they were resolved

No database here; `api.audit.log` and `api.audit.verify` build on this module.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trails.timestamps import format_ms

__all__ = ["AuditIntegrityError", "ExportReport", "checkpoint_note", "checkpoint_relpath", "list_checkpoints",
           "load_checkpoint", "store_checkpoint", "latest_on_disk", "LatestPointer", "retire_series", "restore_series",
           "list_series", "record_integrity_failure",
           "read_integrity_failure", "clear_integrity_failure", "export_checkpoints", "write_atomic",
           "load_or_create", "private_dir", "CHECKPOINT_DIR", "SERIES_DIR", "LATEST_FILE", "INTEGRITY_FILE",
           "PSEUDONYM_KEY_FILE", "SIGNING_KEY_FILE", "PUBLIC_KEY_FILE", "MAC_KEY_FILE", "SHARD_ENTRIES"]

PSEUDONYM_KEY_FILE = "pseudonym.key"        #: in HOME/keys: 32 random bytes
SIGNING_KEY_FILE = "audit-ed25519.pem"      #: in HOME/keys: PKCS#8 PEM, unencrypted, mode 600
MAC_KEY_FILE = "audit-mac.key"              #: in HOME/keys: 32 random bytes, HMAC key of the entries
PUBLIC_KEY_FILE = "audit-ed25519.pub.pem"   #: in HOME/audit: SubjectPublicKeyInfo PEM, for verifiers
CHECKPOINT_DIR = "checkpoints"              #: in HOME/audit: the current series
SERIES_DIR = "series"                       #: in HOME/audit: series retired by accepted breaks
LATEST_FILE = "LATEST"                      #: in the checkpoint folder: pointer to the newest
INTEGRITY_FILE = "INTEGRITY-FAILED"         #: in HOME/audit: present while tampering is unresolved
INTEGRITY_HISTORY_DIR = "integrity-history"
SHARD_ENTRIES = 1_000_000                   #: checkpoints per shard folder (by size)
NOTE_ORIGIN = "tagtrail-audit"

_FLAT_NAME = re.compile(r"^(\d{12})\.json$")
_SHARD_NAME = re.compile(r"^\d{6}$")
_SERIES_NAME = re.compile(r"^\d{12}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class AuditIntegrityError(RuntimeError):
    """The log or its checkpoints are inconsistent (tampering, or a key file
    that does not match): refuse to sign, and point at `tagtrail audit verify`."""


# ---------------------------------------------------------------- plain files
def private_dir(path: Path) -> None:
    """Create `path` (mode 700): key and audit folders are the service's alone."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def write_atomic(path: Path, data: bytes, *, mode: int, exclusive: bool = False) -> bool:
    """Write `data` to `path` through a temporary file in the same directory,
    so a reader sees the old file or the new one, never half of one.

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


def load_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes of `path`, creating it with ``make()`` (mode 600) if absent.
    Two processes racing to create it end up with the same file."""
    if not path.exists():
        write_atomic(path, make(), mode=0o600, exclusive=True)
    return path.read_bytes()


def _json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=1) + "\n").encode("utf-8")


# ---------------------------------------------------------------- checkpoints
def checkpoint_note(size: int, root: bytes) -> bytes:
    """The bytes a checkpoint signs: ``"tagtrail-audit\\n{size}\\n{root_b64}\\n"``."""
    return f"{NOTE_ORIGIN}\n{size}\n{base64.b64encode(root).decode('ascii')}\n".encode("ascii")


def checkpoint_relpath(size: int) -> str:
    """Where the checkpoint of `size` entries goes inside a checkpoint folder:
    ``<size // 1_000_000:06d>/<size:012d>.json`` (at most a million per folder)."""
    return f"{size // SHARD_ENTRIES:06d}/{size:012d}.json"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(size, path) of every checkpoint file in `directory`, sharded or flat
    (the layout before sharding), by size. Lists folders: for verifying and
    exporting, never for the hot path (`latest_on_disk` reads the pointer)."""
    out: list[tuple[int, Path]] = []
    if not directory.is_dir():
        return out
    for entry in os.scandir(directory):
        if entry.is_file() and (m := _FLAT_NAME.match(entry.name)):
            out.append((int(m.group(1)), Path(entry.path)))
        elif entry.is_dir() and _SHARD_NAME.match(entry.name):
            out.extend((int(m.group(1)), Path(sub.path)) for sub in os.scandir(entry.path)
                       if sub.is_file() and (m := _FLAT_NAME.match(sub.name)))
    return sorted(out)


def load_checkpoint(path: Path, size: int) -> tuple[dict | None, str | None]:
    """(checkpoint, None), or (None, problem) naming the file and what is wrong:
    unreadable, not an object, a size that is not its name's, a root that is
    not 64 hex digits, no signature, or a shard folder that is not its size's."""
    name = f"checkpoint {size:012d}"
    if path.parent.name != CHECKPOINT_DIR and _SHARD_NAME.match(path.parent.name) \
            and int(path.parent.name) != size // SHARD_ENTRIES:
        return None, f"{name}: in shard folder {path.parent.name}, not {size // SHARD_ENTRIES:06d} (moved?)"
    try:
        cp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{name}: unreadable: {exc}"
    if not isinstance(cp, dict):
        return None, f"{name}: not a JSON object"
    if not isinstance(cp.get("size"), int) or isinstance(cp.get("size"), bool) or cp["size"] != size:
        return None, f"{name}: its size {cp.get('size')!r} does not match its file name"
    if not isinstance(cp.get("root"), str) or not _SHA256_HEX.match(cp["root"]):
        return None, f"{name}: root is not 64 hex digits"
    if not isinstance(cp.get("signature"), str):
        return None, f"{name}: signature missing"
    return cp, None


def store_checkpoint(directory: Path, checkpoint: dict, *, series: int) -> Path:
    """Write `checkpoint` to its sharded place in `directory`, then point
    LATEST at it (both atomically; a crash between leaves LATEST one behind,
    which the next checkpoint corrects). Returns the checkpoint's path."""
    rel = checkpoint_relpath(int(checkpoint["size"]))
    path = directory / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, _json_bytes(checkpoint), mode=0o644)
    pointer = {"size": int(checkpoint["size"]), "file": rel, "series": int(series)}
    write_atomic(directory / LATEST_FILE, _json_bytes(pointer), mode=0o644)
    return path


def _read_pointer(directory: Path) -> tuple[int, Path, int] | None:
    """(size, path, series) from LATEST, or None if it is absent or malformed."""
    try:
        doc = json.loads((directory / LATEST_FILE).read_text(encoding="utf-8"))
        size, rel, series = doc["size"], doc["file"], doc["series"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (size, series)) \
            or rel not in (checkpoint_relpath(size), f"{size:012d}.json"):
        return None
    return size, directory / rel, series


def latest_on_disk(directory: Path) -> tuple[dict, int] | None:
    """(newest checkpoint as written, its series) by the LATEST pointer, or
    None if the folder holds none. Without a usable pointer (the flat layout,
    a crash, a deleted pointer) the folder is listed once and the pointer
    rewritten; the series is then 0 unless the old pointer said otherwise.

    Raises
    ------
    AuditIntegrityError
        If the newest checkpoint file is unreadable or malformed.
    """
    pointer = _read_pointer(directory)
    if pointer is not None and pointer[1].is_file():
        size, path, series = pointer
    else:
        found = list_checkpoints(directory)
        if not found:
            return None
        (size, path), series = found[-1], 0
    cp, problem = load_checkpoint(path, size)
    if problem:
        raise AuditIntegrityError(f"{problem}; run `tagtrail audit verify`")
    if pointer is None or pointer[1] != path:
        rel = str(path.relative_to(directory))
        write_atomic(directory / LATEST_FILE, _json_bytes({"size": size, "file": rel, "series": series}),
                     mode=0o644)
    return cp, series


class LatestPointer:
    """`latest_on_disk` for a service: LATEST is stat'ed on every call and
    read only when it changed, so a commit costs one stat, never a listing."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cached: tuple[tuple[int, int, int], tuple[dict, int] | None] | None = None

    def forget(self) -> None:
        self._cached = None

    def get(self) -> tuple[dict, int] | None:
        """(newest checkpoint as written, its series), or None; see `latest_on_disk`."""
        try:
            st = os.stat(self.directory / LATEST_FILE)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp is not None and self._cached is not None and self._cached[0] == stamp:
            return self._cached[1]
        found = latest_on_disk(self.directory)
        self._cached = None if stamp is None else (stamp, found)
        return found


def retire_series(audit_dir: Path, name: str) -> Path:
    """Move the current checkpoint folder to HOME/audit/series/`name` (kept,
    still verifiable with the public key) and start an empty one. Idempotent
    for a retry after a crash: if the series exists and the current folder
    holds no checkpoint, nothing moves. Returns the series folder."""
    if not _SERIES_NAME.match(name):
        raise ValueError(f"series name {name!r} is not 12 digits")
    current, target = audit_dir / CHECKPOINT_DIR, audit_dir / SERIES_DIR / name
    if target.exists():
        if list_checkpoints(current):
            raise AuditIntegrityError(f"{target} exists and {current} holds checkpoints: move one aside by hand")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if current.exists():
        os.rename(current, target)
    else:
        target.mkdir()
    private_dir(current)
    return target


def restore_series(audit_dir: Path, name: str) -> None:
    """Undo `retire_series` when the break could not be recorded: the series
    goes back in place if the new current folder is still empty."""
    current, target = audit_dir / CHECKPOINT_DIR, audit_dir / SERIES_DIR / name
    if target.is_dir() and not list_checkpoints(current):
        shutil.rmtree(current, ignore_errors=True)
        os.rename(target, current)


def list_series(audit_dir: Path) -> list[str]:
    """Names of the retired series folders, in order."""
    folder = audit_dir / SERIES_DIR
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


# ------------------------------------------------------------------ integrity
def record_integrity_failure(audit_dir: Path, message: str, now_ms: int) -> None:
    """Persist that tampering was detected (HOME/audit/INTEGRITY-FAILED), so a
    restart does not forget it. The first failure is kept: later ones are
    usually consequences of it."""
    doc = {"message": message, "ts": format_ms(now_ms), "ts_ms": now_ms}
    write_atomic(audit_dir / INTEGRITY_FILE, _json_bytes(doc), mode=0o644, exclusive=True)


def read_integrity_failure(audit_dir: Path) -> dict | None:
    """The recorded failure ``{"message", "ts", "ts_ms"}``, or None. A marker
    that cannot be read still counts as a failure (it says so)."""
    path = audit_dir / INTEGRITY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(data)
        if isinstance(doc, dict) and isinstance(doc.get("message"), str) and isinstance(doc.get("ts"), str):
            return doc
    except ValueError:
        pass
    return {"message": f"{path} is present but unreadable", "ts": "unknown", "ts_ms": None}


def clear_integrity_failure(audit_dir: Path, resolution: dict, now_ms: int) -> None:
    """Move the failure marker to HOME/audit/integrity-history/<now_ms>.json,
    with `resolution` (who resumed, why, how) added. No marker: nothing to do."""
    failure = read_integrity_failure(audit_dir)
    if failure is None:
        return
    history = audit_dir / INTEGRITY_HISTORY_DIR
    history.mkdir(exist_ok=True)
    write_atomic(history / f"{now_ms:015d}.json", _json_bytes({"failure": failure, "resolution": resolution,
                                                             "resolved": format_ms(now_ms)}), mode=0o644)
    (audit_dir / INTEGRITY_FILE).unlink(missing_ok=True)


# --------------------------------------------------------------------- export
@dataclass(frozen=True)
class ExportReport:
    """Outcome of `export_checkpoints`.

    copied: files written to DEST this time. present: files DEST already had.
    moved: DEST copies moved into series/ because an accepted break retired
    them here. conflicts: DEST files that differ from this home's (never
    overwritten). missing_here: DEST checkpoints this home no longer has.
    """

    copied: int
    present: int
    moved: int
    conflicts: tuple[str, ...]
    missing_here: tuple[str, ...]


def _export_files(audit_dir: Path) -> dict[str, Path]:
    """Relative path (as in DEST) -> file, for every checkpoint to export."""
    files = {f"{CHECKPOINT_DIR}/{p.relative_to(audit_dir / CHECKPOINT_DIR)}": p
             for _, p in list_checkpoints(audit_dir / CHECKPOINT_DIR)}
    for name in list_series(audit_dir):
        folder = audit_dir / SERIES_DIR / name
        files.update({f"{SERIES_DIR}/{name}/{p.relative_to(folder)}": p for _, p in list_checkpoints(folder)})
    return files


def export_checkpoints(audit_dir: Path, dest: Path) -> ExportReport:
    """Copy the public key and every checkpoint (current and retired series,
    same layout) to `dest`, incrementally: a file DEST already has is left
    alone, a DEST file that differs is reported and never overwritten, and a
    DEST checkpoint that an accepted break moved into series/ here is moved
    the same way there.

    Raises
    ------
    AuditIntegrityError
        If DEST holds a different public key (it is never replaced).
    """
    dest.mkdir(parents=True, exist_ok=True)
    pub = (audit_dir / PUBLIC_KEY_FILE).read_bytes()
    if (dest / PUBLIC_KEY_FILE).exists() and (dest / PUBLIC_KEY_FILE).read_bytes() != pub:
        raise AuditIntegrityError(f"{dest / PUBLIC_KEY_FILE} is not this home's public key: "
                                  f"export to another folder (a verification key is never replaced)")
    write_atomic(dest / PUBLIC_KEY_FILE, pub, mode=0o644, exclusive=True)
    files = _export_files(audit_dir)
    retired_by_name: dict[str, list[str]] = {}
    for rel, src in files.items():
        if rel.startswith(SERIES_DIR + "/"):
            retired_by_name.setdefault(src.name, []).append(rel)
    moved_to: set[str] = set()
    missing = []
    for _, path in list_checkpoints(dest / CHECKPOINT_DIR):
        rel = f"{CHECKPOINT_DIR}/{path.relative_to(dest / CHECKPOINT_DIR)}"
        data = path.read_bytes()
        if rel in files and files[rel].read_bytes() == data:
            continue
        retired = [r for r in retired_by_name.get(path.name, ()) if files[r].read_bytes() == data]
        if retired:
            (dest / retired[0]).parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest / retired[0])
            moved_to.add(retired[0])
        elif rel not in files:
            missing.append(str(path))
    copied = present = 0
    conflicts = []
    for rel, src in sorted(files.items()):
        target, data = dest / rel, src.read_bytes()
        if target.exists():
            if rel in moved_to:
                continue
            if target.read_bytes() == data:
                present += 1
            else:
                conflicts.append(str(target))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data, mode=0o644, exclusive=True)
        copied += 1
    return ExportReport(copied, present, len(moved_to), tuple(conflicts), tuple(missing))
