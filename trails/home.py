"""A tagtrail home is private to the account that runs tagtrail.

HOME holds every trail (the store, the database, the intake log), the audit
signing key and the API tokens, so no other local account may read any of it:
HOME is mode 0700, its folders 0700 and its files 0600. The `tagtrail` CLI
sets umask 077 at start-up, and code that creates files in a home creates
them private; `secure_home` repairs a home made before this rule (or by
another tool) whenever a home is opened.

The one exception is what the audit log publishes for outside verifiers,
HOME/audit/ (its public key and signed checkpoints, written 0644 by
`api.audit.log`): they hold no trail data, and inside a 0700 HOME no other
account can reach them anyway; an operator copies them out to verifiers.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from trails.errors import InputError

__all__ = ["PUBLISHED_DIR", "secure_home", "private_dir"]

#: HOME's sub-folder whose files are published on purpose (0644 allowed; the folder itself stays 0700).
PUBLISHED_DIR = "audit"


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700 folders; returns it.

    ``mkdir(mode=0o700)`` is masked by the umask, which can only remove bits,
    so new folders are 0700 or stricter whatever the caller's umask is."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _strip(path: str, mode: int) -> None:
    """Remove group and other bits from `path`'s `mode` (owner bits stay as they are)."""
    if mode & 0o077:
        os.chmod(path, stat.S_IMODE(mode) & ~0o077, follow_symlinks=False)


def _walk(top: str, *, published: bool, at_home: bool = False) -> None:
    """Strip group/other bits from everything under `top` (files under HOME/audit/
    excepted: `published`); symbolic links are never followed (nor changed: their
    own mode means nothing on Linux). An entry that disappears meanwhile (a
    running service's staging folder, a SQLite journal) is skipped."""
    try:
        with os.scandir(top) as it:
            entries = list(it)
    except FileNotFoundError:
        return
    for e in entries:
        try:
            if e.is_symlink():
                continue
            st = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _strip(e.path, st.st_mode)
                _walk(e.path, published=published or (at_home and e.name == PUBLISHED_DIR))
            elif not published:
                _strip(e.path, st.st_mode)
        except FileNotFoundError:
            continue


def secure_home(home) -> None:
    """Make an existing HOME private: HOME and its folders lose their group and
    other bits (0755 -> 0700), its files too (0644 -> 0600), except the files
    under HOME/audit/ (`PUBLISHED_DIR`). A HOME that does not exist is left
    alone (it is created 0700 by whoever creates it).

    Cost: one ``lstat`` per entry under HOME (a few thousand for a year of
    national data), and a ``chmod`` only where a mode is wrong.

    Raises
    ------
    InputError
        HOME or something under it belongs to another account (chmod refused).
    """
    home = Path(home)
    try:
        st = os.stat(home)  # HOME itself may be a symbolic link the operator made
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"tagtrail home {str(home)!r}: not a folder")
    try:
        if st.st_mode & 0o077:
            os.chmod(home, stat.S_IMODE(st.st_mode) & ~0o077)
        _walk(str(home), published=False, at_home=True)
    except PermissionError as exc:
        raise InputError(f"tagtrail home {str(home)!r}: cannot make it private ({exc.filename}: "
                         f"{exc.strerror}); it must belong to the account that runs tagtrail") from None
