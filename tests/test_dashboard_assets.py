"""The dashboard's static assets: the page loads nothing from the network, and its JavaScript parses.

The browser tests (tests/browser/) drive the page in chromium; these are the cheap checks that run
without one: every URL the page references is relative and names a file the package ships (no CDN, no
web fonts: the dashboard must work air-gapped), the vendored uPlot is the version its README names and
carries its license, and ``node --check`` accepts app.js (skipped where Node.js is not installed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[1] / "controller" / "dashboard" / "assets"
TEXT_ASSETS = ("index.html", "app.js", "app.css", "vendor/uPlot.min.css")


def test_index_references_only_shipped_files() -> None:
    html = (ASSETS / "index.html").read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    local = [ref for ref in refs if not ref.startswith("data:")]
    assert "assets/app.js" in local, local
    assert "assets/vendor/uPlot.iife.min.js" in local, local
    for ref in local:
        assert ref.startswith("assets/"), f"index.html references {ref!r}: only relative assets/ URLs work offline"
        assert (ASSETS / ref.removeprefix("assets/")).is_file(), f"index.html references {ref!r}, not shipped"


@pytest.mark.parametrize("name", TEXT_ASSETS)
def test_no_remote_loads(name: str) -> None:
    text = (ASSETS / name).read_text(encoding="utf-8")
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", text), f"{name} loads a remote stylesheet or font"
    assert not re.search(r"(?:src|href)=[\"'](?:https?:)?//", text), f"{name} loads a remote resource"
    assert not re.search(r"(?:fetch|EventSource)\(\s*['\"`](?:https?:)?//", text), f"{name} calls a remote URL"


def test_vendored_uplot_matches_its_readme() -> None:
    readme = (ASSETS / "vendor" / "README.md").read_text(encoding="utf-8")
    header = (ASSETS / "vendor" / "uPlot.iife.min.js").read_text(encoding="utf-8")[:200]
    version = re.search(r"\(v(\d+\.\d+\.\d+)\)", header)
    assert version, "uPlot.iife.min.js lost its version banner"
    assert f"| {version.group(1)} |" in readme, f"vendor/README.md does not name uPlot {version.group(1)}"
    assert "MIT License" in (ASSETS / "vendor" / "LICENSE").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_app_js_parses() -> None:
    node = shutil.which("node")
    assert node
    result = subprocess.run(
        [node, "--check", str(ASSETS / "app.js")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
