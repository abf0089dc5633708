"""README is tested: every `tagtrail` command it shows runs, in order, on
small data, and the two `make` targets it promises exist and call what the
tour runs. Docs that cannot rot."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import REPO

README = REPO / "README.md"


def _shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _commands(prefix: str) -> list[str]:
    lines = []
    for block in _shell_blocks():
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(prefix):
                lines.append(line)
    return lines


def test_readme_opens_with_two_commands():
    assert _commands("make ") == ["make run", "make test"]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "tagtrail demo" in makefile


def test_every_tagtrail_command_in_readme_runs(tmp_path):
    cmds = _commands("tagtrail ")
    assert len(cmds) >= 4
    exe = Path(sys.executable).parent / "tagtrail"
    for cmd in cmds:
        words = shlex.split(cmd)
        p = subprocess.run([str(exe), *words[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    assert (tmp_path / "demo-out" / "breaches.jsonl").exists()
    assert (tmp_path / "demo-out-store" / "breaches.jsonl").exists()


def test_every_subcommand_has_help_with_examples():
    exe = Path(sys.executable).parent / "tagtrail"
    for sub in ("simulate", "ingest", "detect", "zones", "demo", "serve", "users", "audit"):
        p = subprocess.run([str(exe), sub, "--help"], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert "example" in p.stdout.lower(), sub
