"""README is tested: its first shell block is the two `make` commands, and
every other shell block runs, as written, in bash (with `set -euo pipefail`)
on small data, in order, in one scratch directory: the CLI session, then the
API session against a real `tagtrail serve` (curl fails the script on any
HTTP error). Docs that cannot rot. The scratch directory stands for the
repository: its `.venv` is a link to the venv running the tests, so the
tour's `. .venv/bin/activate` works as written; every block also runs with
that venv's bin first on PATH (each block is its own shell)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from trails.timestamps import parse_timestamp

README = REPO / "README.md"
BIN = Path(sys.executable).parent


def _shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_opens_with_two_commands():
    first = [line.split("#")[0].strip() for line in _shell_blocks()[0].splitlines()]
    assert [c for c in first if c] == ["make run", "make test"]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "tagtrail demo" in makefile


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_shell_block_runs(tmp_path):
    blocks = _shell_blocks()[1:]
    assert len(blocks) >= 2 and all("tagtrail " in b for b in blocks)
    (tmp_path / ".venv").symlink_to(BIN.parent, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("TAGTRAIL_HOME", "TAGTRAIL_DATABASE_URL")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    port = _free_port()
    for block in blocks:
        block = block.replace("8765", str(port)).replace("8766", str(port))  # the README's ports may be taken
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"{block}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}"
        if "audit verify" in block:
            api_out = p.stdout
        if "live-input/fixes.csv" in block:
            live_out = p.stdout
        if "/v1/mitigations" in block:
            casework_out = p.stdout
    assert (tmp_path / "demo-out" / "breaches.jsonl").exists()
    assert (tmp_path / "demo-out-store" / "breaches.jsonl").exists()
    # the API session: the extract holds only the narrowed period, the report and log are there
    doc = json.loads((tmp_path / "extract.geojson").read_text())
    times = [parse_timestamp(f["properties"]["ts"]) for f in doc["features"]]
    assert times and all(parse_timestamp("2024-03-05T06:00:00Z") <= t < parse_timestamp("2024-03-05T09:00:00Z")
                         for t in times)
    assert "partial_data_provided,1,0,0,1" in api_out
    assert "OK: " in api_out and re.search(r"OK: \d+ entries match \d+ signed checkpoint", api_out)
    # continuous operation: the second copy of the file adds nothing, and the queue answers
    posts = re.findall(r'\{"batch_id":\d+,"fixes":\{"received":(\d+),"accepted":(\d+)', live_out)
    assert len(posts) == 2 and int(posts[0][1]) > 0 and posts[1][1] == "0"
    assert '"items":' in live_out
    # casework: the mitigation accepted and answered, a step taken, both evidence packs made
    assert '"status":"accepted"' in casework_out and "The supplier confirmed the charger fault" in casework_out
    assert '"step":"warning_letter_1"' in casework_out
    assert all((tmp_path / f).read_bytes().startswith(b"%PDF-") for f in ("pack.pdf", "period.pdf"))


def test_every_subcommand_has_help_with_examples():
    for sub in ("simulate", "ingest", "detect", "store", "zones", "demo", "serve", "users", "audit"):
        p = subprocess.run([str(BIN / "tagtrail"), sub, "--help"], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert "example" in p.stdout.lower(), sub


def test_tour_says_how_to_find_tagtrail():
    """The first tour block activates .venv (where `make run` installs tagtrail),
    and the text says so: a newcomer who pastes it gets a working `tagtrail`."""
    tour = _shell_blocks()[1]
    assert tour.splitlines()[0] == ". .venv/bin/activate"
    text = README.read_text(encoding="utf-8")
    assert "Activate it once per shell" in text and "`.venv/bin/tagtrail`" in text


def test_make_run_takes_a_port():
    """`make run PORT=8080` serves on 8080 (before issue 11 the port could not be changed)."""
    # MAKEFLAGS/MAKELEVEL: the suite may itself run under make (`make coverage`), whose
    # sub-makes would print "Entering directory" lines around the command.
    env = {k: v for k, v in os.environ.items() if k not in ("TAGTRAIL_HOME", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    p = subprocess.run(["make", "-n", "run", "PORT=8080"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=60)
    # with ../shared/data present, the demo's map context (England's districts) is loaded from it, in place
    lad = "../shared/data/england_lad_2024_buc.geojson"
    context = f" --boundaries {lad}" if (REPO / lad).exists() else ""
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == ".venv/bin/tagtrail demo --home ./data --port 8080" + context
    p = subprocess.run(["make", "-n", "run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert p.stdout.splitlines()[-1] == ".venv/bin/tagtrail demo --home ./data --port 8000" + context
    p = subprocess.run(["make", "-n", "run", "BOUNDARIES="], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.stdout.splitlines()[-1] == ".venv/bin/tagtrail demo --home ./data --port 8000"
