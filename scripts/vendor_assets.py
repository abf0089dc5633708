#!/usr/bin/env python3
"""Vendor third-party browser assets (JavaScript, CSS, fonts) into the package.

tagtrail runs without network access (air-gapped deployments, CI), so every
asset a page uses is a file inside the package, taken once from the npm
registry by this script and committed. `api/web/static/vendor/assets.json`
pins each package: version, the registry's integrity hash (SRI, sha512) of
its tarball and the tarball's SHA-256 (both checked), its licence, and which
files to take (tarball path -> file name, which may hold a sub-directory:
`images/layers.png`). A package whose tarball has no licence file carries
the upstream text as `license_text` (written as LICENSE.txt) and says where
it came from in `license_source`.

    python scripts/vendor_assets.py          # fetch, check, write files and MANIFEST.json
    python scripts/vendor_assets.py --check  # offline: committed files match MANIFEST.json

Writes `api/web/static/vendor/<package>/<file>` and
`api/web/static/vendor/MANIFEST.json` (per package: version, licence, tarball
sha256; per file: package, version, licence, sha256). A test runs `--check`'s logic, so a hand-edited asset fails CI.
Only the Python standard library; no node, no npm.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

VENDOR = Path(__file__).resolve().parent.parent / "api" / "web" / "static" / "vendor"
REGISTRY = "https://registry.npmjs.org"


def _tarball_url(name: str, version: str) -> str:
    base = name.split("/")[-1]
    return f"{REGISTRY}/{name}/-/{base}-{version}.tgz"


def _check_integrity(data: bytes, integrity: str) -> None:
    algo, _, digest = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode("ascii")
    if got != digest:
        raise SystemExit(f"integrity mismatch: expected {integrity}, got {algo}-{got}")


def _check_sha256(data: bytes, expected: str, what: str) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise SystemExit(f"{what}: sha256 mismatch: expected {expected}, got {got}")


def _write(out_dir: Path, dest: str, content: bytes, spec: dict) -> tuple[str, dict]:
    """Write one file under the package's directory; its manifest row."""
    if Path(dest).is_absolute() or ".." in Path(dest).parts:
        raise SystemExit(f"{spec['name']}: file name {dest!r} leaves the package's directory")
    path = out_dir / dest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return f"{spec['name']}/{dest}", {"package": spec["name"], "version": spec["version"], "license": spec["license"],
                                      "sha256": hashlib.sha256(content).hexdigest()}


def fetch(spec: dict) -> dict[str, dict]:
    """Download one pinned package, check its integrity and SHA-256, write its files; returns manifest rows."""
    url = _tarball_url(spec["name"], spec["version"])
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - a fixed https registry URL
        data = resp.read()
    _check_integrity(data, spec["integrity"])
    _check_sha256(data, spec["tarball_sha256"], f"{spec['name']}@{spec['version']} tarball")
    out_dir = VENDOR / spec["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for src, dest in spec["files"].items():
            member = tar.extractfile(f"package/{src}")
            if member is None:
                raise SystemExit(f"{spec['name']}@{spec['version']}: no file {src!r} in the tarball")
            rel, row = _write(out_dir, dest, member.read(), spec)
            rows[rel] = row
    if "license_text" in spec:  # the tarball has no licence file: the upstream text, pinned in assets.json
        rel, row = _write(out_dir, "LICENSE.txt", spec["license_text"].encode("utf-8"), spec)
        rows[rel] = row | {"source": spec["license_source"]}
    return rows


def check(vendor: Path = VENDOR) -> list[str]:
    """Problems with the committed files (empty when every file matches MANIFEST.json)."""
    manifest = json.loads((vendor / "MANIFEST.json").read_text(encoding="utf-8"))
    problems = []
    listed = set(manifest["files"]) | {"MANIFEST.json", "assets.json"}
    for path in sorted(p for p in vendor.rglob("*") if p.is_file()):
        if path.relative_to(vendor).as_posix() not in listed:
            problems.append(f"{path.relative_to(vendor).as_posix()}: not in MANIFEST.json (added by hand?)")
    for rel, row in manifest["files"].items():
        path = vendor / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != row["sha256"]:
            problems.append(f"{rel}: content differs from MANIFEST.json (edited by hand?)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check the committed files (no network)")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    specs = json.loads((VENDOR / "assets.json").read_text(encoding="utf-8"))["packages"]
    files: dict[str, dict] = {}
    packages: dict[str, dict] = {}
    for spec in specs:
        rows = fetch(spec)
        files.update(rows)
        packages[spec["name"]] = {"version": spec["version"], "license": spec["license"],
                                  "tarball": _tarball_url(spec["name"], spec["version"]),
                                  "tarball_sha256": spec["tarball_sha256"]}
        print(f"{spec['name']}@{spec['version']}: {len(rows)} files")
    manifest = {"comment": "written by scripts/vendor_assets.py; do not edit",
                "packages": dict(sorted(packages.items())), "files": dict(sorted(files.items()))}
    (VENDOR / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
