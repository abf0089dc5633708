"""One pseudonym key per wearer, so that one wearer's link to the audit log
can be severed without touching anyone else's.

A wearer's audit pseudonym is HMAC-SHA256(their key, subject_id), first 32
hex digits. Their key is 32 random bytes in
``HOME/keys/wearers/<index>.key``, where the index is HMAC-SHA256 of the
subject id under ``HOME/keys/wearer-index.key``: the file name does not
name the wearer, and the index never enters the log. When the wearer's
audit retention ends the key file is deleted (`destroy`): their entries
stay in the log, which stays append-only and verifiable, but nobody can
compute the pseudonym again to find them. A wearer seen again afterwards
gets a new key, so new entries cannot be joined to the old ones either.

Homes made before per-wearer keys have ``HOME/keys/pseudonym.key``, the
single key their older entries were written under; it is kept for reading
them (`legacy`) and never used for a new entry.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from api.audit.files import load_or_create, private_dir

__all__ = ["PseudonymKeys", "INDEX_KEY_FILE", "WEARER_KEY_DIR", "LEGACY_KEY_FILE"]

INDEX_KEY_FILE = "wearer-index.key"  #: in HOME/keys: 32 random bytes, names the key files
WEARER_KEY_DIR = "wearers"          #: in HOME/keys: one <index>.key per wearer, 32 random bytes
LEGACY_KEY_FILE = "pseudonym.key"   #: in HOME/keys of homes made before per-wearer keys


def _mac(key: bytes, subject_id: str) -> str:
    return hmac.new(key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()


class PseudonymKeys:
    """The per-wearer keys of one home (module docstring). Safe across processes: a key is created with an
    exclusive create (two racing processes end with the same file), and a key is read at each use, so one
    destroyed by another process is never used again."""

    def __init__(self, keys_dir: Path) -> None:
        self._dir = Path(keys_dir) / WEARER_KEY_DIR
        private_dir(Path(keys_dir))
        private_dir(self._dir)
        self._index_key = load_or_create(Path(keys_dir) / INDEX_KEY_FILE, lambda: secrets.token_bytes(32))
        legacy = Path(keys_dir) / LEGACY_KEY_FILE
        self._legacy = legacy.read_bytes() if legacy.exists() else None

    def _path(self, subject_id: str) -> Path:
        return self._dir / f"{_mac(self._index_key, subject_id)[:40]}.key"

    def _key(self, subject_id: str) -> bytes:
        """Read each time (32 bytes): another process may have destroyed it, or made it anew."""
        path = self._path(subject_id)
        key = load_or_create(path, lambda: secrets.token_bytes(32))
        if len(key) != 32:
            raise ValueError(f"{path}: expected 32 bytes, found {len(key)}")
        return key

    def pseudonym(self, subject_id: str) -> str:
        """The wearer's pseudonym for new entries (their key made on first use)."""
        if not isinstance(subject_id, str) or not subject_id:
            raise ValueError(f"subject_id must be a non-empty string, got {subject_id!r}")
        return _mac(self._key(subject_id), subject_id)[:32]

    def legacy(self, subject_id: str) -> str | None:
        """The pseudonym older entries of a home made before per-wearer keys carry, or None."""
        return _mac(self._legacy, subject_id)[:32] if self._legacy is not None else None

    def exists(self, subject_id: str) -> bool:
        return self._path(subject_id).exists()

    def destroy(self, subject_id: str) -> bool:
        """Delete the wearer's key; False if there was none. The folder is synced so the deletion survives a
        crash."""
        path = self._path(subject_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
