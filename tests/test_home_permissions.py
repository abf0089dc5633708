"""A tagtrail home is readable by tagtrail's account only (issue 10, item 12).

HOME is 0700; under it folders are 0700 and files 0600, except HOME/audit's
published public key and checkpoints (0644 by design, unreachable inside a
0700 HOME). The CLI sets umask 077; library entry points (ingest, the app)
create private files whatever the umask, and repair a home made before.

The second-user checks run only as root (CI runs as root): they read the
database and a store file as ``nobody`` (uid 65534) and must be refused. As
another user they cannot be set up (no setuid), so only the modes are
asserted then.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from api.cli.main import main
from conftest import EXAMPLES

QR = EXAMPLES / "quarantine_rows"
NOBODY = 65534


@pytest.fixture
def open_base():
    """A folder every account can enter (0755; pytest's own tmp folders are 0700,
    which would hide a readable home from a second user and prove nothing).
    The umask is 022 inside, as a library caller's may be, then restored."""
    base = Path(tempfile.mkdtemp(prefix="tagtrail-perm-", dir="/tmp"))
    os.chmod(base, 0o755)
    old = os.umask(0o022)
    try:
        yield base
    finally:
        os.umask(old)
        shutil.rmtree(base)


def _exposed(home: Path) -> list[str]:
    """Entries under HOME (HOME included) with any group/other bit, except the
    files HOME/audit publishes on purpose."""
    bad = []
    for path in [home, *home.rglob("*")]:
        st = os.lstat(path)
        rel = path.relative_to(home)
        published = stat.S_ISREG(st.st_mode) and rel.parts[:1] == ("audit",)
        if st.st_mode & 0o077 and not published and not stat.S_ISLNK(st.st_mode):
            bad.append(f"{rel} {stat.filemode(st.st_mode)}")
    return bad


def _as_nobody(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["head", "-c", "1", str(path)], capture_output=True, user=NOBODY, group=NOBODY,
                          extra_groups=[], timeout=30)


def test_home_store_database_are_private_after_ingest_and_app_start(open_base):
    from api.http.app import create_app
    from api.settings import Settings
    from trails.ingest import ingest

    home = open_base / "home"
    home.mkdir()  # a home made before this rule: 0755, with a 0644 file in it
    (home / "settings.json").write_text("{}\n")
    assert stat.S_IMODE(os.stat(home / "settings.json").st_mode) == 0o644
    ingest(QR / "fixes.csv", home=home, events_path=QR / "events.csv")
    app = create_app(Settings.from_home(home))
    try:
        app.state.stream.start()  # the service: store lock, detector thread
        app.state.stream.stop()
    finally:
        app.state.engine.dispose()
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert _exposed(home) == []
    store_file = next((home / "store" / "fixes").rglob("*.parquet"))
    for path in (home / "tagtrail.db", store_file, home / "store.lock", home / "settings.json"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    if os.geteuid() != 0:
        return  # not root: no second account to read as (CI runs as root and does the rest)
    control = open_base / "control.txt"  # proves nobody can reach open_base: the refusals below are HOME's doing
    control.write_text("x")
    assert _as_nobody(control).returncode == 0
    for path in (home / "tagtrail.db", store_file, home / "keys"):
        r = _as_nobody(path)
        assert r.returncode != 0 and b"Permission denied" in r.stderr, (path, r)


def test_cli_sets_umask_077_and_makes_an_existing_home_private(open_base):
    """`tagtrail` sets umask 077 before any command runs, and a command on a home
    (here `detect --home`, which only reads) first makes that home private."""
    home = open_base / "home"
    assert main(["ingest", str(QR / "fixes.csv"), "--home", str(home), "--no-progress"]) == 0
    assert os.umask(0o022) == 0o077  # set by main (the fixture had set 022)
    assert _exposed(home) == []
    os.chmod(home, 0o755)  # loosened by hand, as an operator might
    loose = next((home / "store" / "fixes").rglob("*.parquet"))
    os.chmod(loose, 0o644)
    os.chmod(loose.parent, 0o755)
    assert main(["detect", "--home", str(home), "--subjects", str(QR / "subjects.json"), "--zones",
                 str(QR / "zones.geojson"), "--out", str(open_base / "out"), "--quiet"]) == 0
    assert _exposed(home) == []
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o600 and stat.S_IMODE(os.stat(loose.parent).st_mode) == 0o700
    if os.geteuid() == 0:
        r = _as_nobody(loose)
        assert r.returncode != 0 and b"Permission denied" in r.stderr
