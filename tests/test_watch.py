"""`tagtrail watch`: files dropped into a folder go through the same intake as
POST /v1/fixes and are moved into HOME/watch/<feed>/processed/; unreadable ones
go to failed/ with the reason; half-written names are left alone; the breach
queue then equals batch detection on the rows. While a service runs on a home,
`tagtrail ingest` and a second service refuse, naming why."""
from __future__ import annotations

import os
import re
import shutil

import pytest

from api.cli.main import main
from conftest import EXAMPLES
from test_incremental import _example, batch
from test_stream_api import _db_records, _setup


def test_watch_takes_files_and_moves_them(tmp_path, capsys):
    case = EXAMPLES / "tamper_out_of_contact"
    fixes, events, assignments, zones, policy = _example("tamper_out_of_contact")
    home = tmp_path / "home"
    app, _client, _tokens = _setup(home, assignments, zones, tmp_path)
    app.state.engine.dispose()
    feed = tmp_path / "feed"
    feed.mkdir()
    lines = (case / "fixes.csv").read_text().splitlines()
    half = len(lines) // 2
    (feed / "a-fixes.csv").write_text("\n".join(lines[:half]) + "\n")
    (feed / "b-fixes.csv").write_text("\n".join([lines[0]] + lines[half:]) + "\n")
    shutil.copy(case / "events.csv", feed / "c-events.csv")
    (feed / "d-bad.csv").write_text("device_id,when\nD1,now\n")
    (feed / "e-fixes.csv.part").write_text(lines[0] + "\n")
    assert main(["watch", str(feed), "--home", str(home), "--once", "--interval", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "a-fixes.csv: " in out and "d-bad.csv: 0 rows accepted" in out and "missing" in out.lower()
    from api.service.watch import feed_dir

    kept = feed_dir(home, feed)
    assert kept.parent == home / "watch" and f"taken files go to {kept}/processed/" in out
    assert sorted(p.name for p in (kept / "processed").iterdir()) == ["a-fixes.csv", "b-fixes.csv", "c-events.csv"]
    assert sorted(p.name for p in (kept / "failed").iterdir()) == ["d-bad.csv", "d-bad.csv.error.txt"]
    assert sorted(p.name for p in feed.iterdir()) == ["e-fixes.csv.part"]  # nothing written into the feed
    from test_stream_api import _app

    app2, _, _ = _app(home, tokens={})
    assert _db_records(app2) == batch(fixes, events, assignments, zones, policy)
    app2.state.engine.dispose()
    # the same files again: every row is a duplicate, nothing changes
    for name in ("a-fixes.csv", "b-fixes.csv"):
        shutil.move(kept / "processed" / name, feed / name)
    assert main(["watch", str(feed), "--home", str(home), "--once", "--interval", "0.2"]) == 0
    assert "0 rows accepted" in capsys.readouterr().out


def test_a_running_service_keeps_others_out(tmp_path, capsys):
    from trails.store import StoreLock

    home = tmp_path / "home"
    lock = StoreLock(home, "service")
    lock.acquire()
    try:
        assert StoreLock.holder(home) == ("service", os.getpid())
        assert main(["ingest", str(EXAMPLES / "curfew_basic" / "fixes.csv"), "--home", str(home)]) == 2
        err = capsys.readouterr().err
        assert f"a tagtrail service is running on {str(home)!r} (pid {os.getpid()}): send the fixes to it" in err
        assert main(["serve", "--home", str(home), "--port", "1"]) == 2
        assert re.fullmatch(rf"tagtrail serve: error: a tagtrail service is running on {re.escape(repr(str(home)))} "
                            rf"\(pid {os.getpid()}\)\n", capsys.readouterr().err)
        assert main(["watch", str(tmp_path / "feed"), "--home", str(home), "--once"]) == 2
        assert "a tagtrail service is running" in capsys.readouterr().err
    finally:
        lock.release()
    assert StoreLock.holder(home) is None
    assert main(["ingest", str(EXAMPLES / "curfew_basic" / "fixes.csv"), "--home", str(home)]) == 0


def test_watch_help_says_files_move_under_home_and_links_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["watch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "HOME/watch/FEED/processed/NAME" in text and "HOME/watch/FEED/failed/NAME with NAME.error.txt" in text
    assert "Nothing is written into DIR." in text
    assert "Symbolic links in DIR (to files or folders) are never followed or taken" in text
