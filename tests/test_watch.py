"""`tagtrail watch`: files dropped into a folder go through the same intake as
POST /v1/fixes and are moved aside; unreadable ones go to failed/ with the
reason; half-written names are left alone; the breach queue then equals
batch detection on the rows. While a service runs on a home, `tagtrail
ingest` and a second service refuse, naming why."""
from __future__ import annotations

import shutil

from api.cli import main
from conftest import EXAMPLES
from test_incremental import _example, batch
from test_stream_api import _db_records, _setup
from trails.store import ServiceLock


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
    assert sorted(p.name for p in (feed / "processed").iterdir()) == ["a-fixes.csv", "b-fixes.csv", "c-events.csv"]
    assert sorted(p.name for p in (feed / "failed").iterdir()) == ["d-bad.csv", "d-bad.csv.error.txt"]
    assert (feed / "e-fixes.csv.part").exists()
    from test_stream_api import _app

    app2, _, _ = _app(home, tokens={})
    assert _db_records(app2) == batch(fixes, events, assignments, zones, policy)
    app2.state.engine.dispose()
    # the same files again: every row is a duplicate, nothing changes
    for name in ("a-fixes.csv", "b-fixes.csv"):
        shutil.move(feed / "processed" / name, feed / name)
    assert main(["watch", str(feed), "--home", str(home), "--once", "--interval", "0.2"]) == 0
    assert "0 rows accepted" in capsys.readouterr().out


def test_a_running_service_keeps_others_out(tmp_path, capsys):
    home = tmp_path / "home"
    lock = ServiceLock(home)
    lock.acquire()
    try:
        assert ServiceLock.held(home)
        assert main(["ingest", str(EXAMPLES / "curfew_basic" / "fixes.csv"), "--home", str(home)]) == 2
        assert "a tagtrail service is running" in capsys.readouterr().err
        assert main(["serve", "--home", str(home), "--port", "1"]) == 2
        assert "another tagtrail service" in capsys.readouterr().err
        assert main(["watch", str(tmp_path / "feed"), "--home", str(home), "--once"]) == 2
    finally:
        lock.release()
    assert not ServiceLock.held(home)
    assert main(["ingest", str(EXAMPLES / "curfew_basic" / "fixes.csv"), "--home", str(home)]) == 0
