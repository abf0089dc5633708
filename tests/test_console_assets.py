"""The console's vendored browser assets (scripts/vendor_assets.py): every file is
pinned in MANIFEST.json, each package keeps its licence, and nothing GOV.UK-only
(the GDS Transport fonts, the crest and crown icons) is shipped."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("vendor_assets", REPO / "scripts" / "vendor_assets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_console_packages_are_pinned_with_licence_and_tarball_checksum():
    mod = _script()
    assert mod.check() == []
    manifest = json.loads((mod.VENDOR / "MANIFEST.json").read_text())
    assets = {p["name"]: p for p in json.loads((mod.VENDOR / "assets.json").read_text())["packages"]}
    for name in ("govuk-frontend", "htmx.org", "leaflet", "uplot", "swagger-ui-dist"):
        pkg = manifest["packages"][name]
        assert pkg["version"] == assets[name]["version"]
        assert len(pkg["tarball_sha256"]) == 64
        licences = [rel for rel in manifest["files"] if rel.startswith(f"{name}/LICENSE")]
        assert licences, f"{name}: no licence text vendored"
    for rel in ("govuk-frontend/govuk-frontend.min.css", "govuk-frontend/govuk-frontend.min.js",
                "htmx.org/htmx.min.js", "leaflet/leaflet.js", "leaflet/leaflet.css", "leaflet/images/layers.png",
                "uplot/uPlot.iife.min.js"):
        assert rel in manifest["files"], rel
    assert "Crown Copyright" in (mod.VENDOR / "govuk-frontend" / "LICENSE.txt").read_text()


def test_no_restricted_font_or_crown_is_vendored():
    mod = _script()
    names = [p.name.lower() for p in mod.VENDOR.rglob("*")]
    assert not [n for n in names if n.endswith((".woff", ".woff2"))]
    assert not [n for n in names if "crest" in n or "crown" in n or n.startswith("govuk-icon")]


def test_check_finds_an_edited_and_an_unlisted_file(tmp_path):
    mod = _script()
    copy = tmp_path / "vendor"
    shutil.copytree(mod.VENDOR, copy)
    (copy / "htmx.org" / "htmx.min.js").write_text("alert(1)")
    (copy / "leaflet" / "extra.js").write_text("")
    problems = mod.check(copy)
    assert problems == ["leaflet/extra.js: not in MANIFEST.json (added by hand?)",
                        "htmx.org/htmx.min.js: content differs from MANIFEST.json (edited by hand?)"]
