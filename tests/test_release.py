"""Release artifacts: the chart package (``make chart``) carries the one version, Artifact Hub's annotations and
every file of the chart, packaged by the real Helm engine; the changelog and checksum helpers of ``make dist``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import tarfile
from pathlib import Path

import yaml

from controller.core.policy import CanaryPolicy
from tests.support.paths import REPO
from tools import release


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_the_chart_package_is_versioned_annotated_and_complete(tmp_path: Path) -> None:
    archive = release.package_chart(tmp_path)
    version = release.version()
    assert archive.name == f"canary-controller-{version}.tgz"
    files = _members(archive)
    chart = yaml.safe_load(files["canary-controller/Chart.yaml"])
    assert (chart["version"], chart["appVersion"]) == (version, version)
    annotations = chart["annotations"]
    assert annotations["artifacthub.io/license"] == "Apache-2.0"
    assert yaml.safe_load(annotations["artifacthub.io/images"]) == [
        {"name": "controller", "image": f"canary-controller:{version}"}
    ]
    (crd,) = yaml.safe_load(annotations["artifacthub.io/crds"])
    assert (crd["kind"], crd["name"], crd["version"]) == ("CanaryPolicy", "canarypolicies.canaryctl.dev", "v1alpha1")
    (example,) = yaml.safe_load(annotations["artifacthub.io/crdsExamples"])
    CanaryPolicy.model_validate(example)  # the example is a valid policy
    changes = yaml.safe_load(annotations["artifacthub.io/changes"])
    assert changes
    assert {c["kind"] for c in changes} <= {
        "added",
        "changed",
        "deprecated",
        "removed",
        "fixed",
        "security",
    }
    # Every file of the chart is in the package (Helm's own .helmignore rules aside), unchanged but Chart.yaml.
    expected = {
        f"canary-controller/{p.relative_to(REPO / 'helm')}"
        for p in (REPO / "helm").rglob("*")
        if p.is_file() and p.name != ".helmignore"
    }
    assert expected <= set(files)
    for name in expected - {"canary-controller/Chart.yaml"}:
        assert files[name] == (REPO / "helm" / name.removeprefix("canary-controller/")).read_bytes(), name


def test_changes_come_from_the_newest_changelog_section_by_kind() -> None:
    text = (
        "# Changelog\n\n## [Unreleased]\n\n### Added\n\n- A `kubectl` plugin. It runs\n  canaryctl.\n"
        "- [Docs](https://example.com/x) for it.\n\n### Fixed\n\n- A crash on start.\n\n### Other\n\n- Ignored.\n\n"
        "## [0.1.0] - 2026-11-23\n\n### Added\n\n- Old.\n"
    )
    assert release.unreleased_changes(text) == [
        {"kind": "added", "description": "A kubectl plugin."},
        {"kind": "added", "description": "Docs for it."},
        {"kind": "fixed", "description": "A crash on start."},
    ]


def test_checksums_are_what_sha256sum_checks(tmp_path: Path) -> None:
    files = []
    for name, content in (("a.whl", b"wheel"), ("b.tgz", b"chart")):
        (tmp_path / name).write_bytes(content)
        files.append(tmp_path / name)
    sums = release.checksums(files, tmp_path)
    checked = subprocess.run(["sha256sum", "-c", sums.name], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (tmp_path / "b.tgz").write_bytes(b"changed")
    assert (
        subprocess.run(["sha256sum", "-c", sums.name], cwd=tmp_path, capture_output=True, check=False).returncode == 1
    )


def test_the_chart_is_packaged_from_inside_a_running_event_loop(tmp_path: Path) -> None:
    """Helm's package action runs its own event loop; a caller's running loop (Playwright's sync API keeps one
    in the test session) must not stop it."""

    async def inside() -> Path:
        return release.package_chart(tmp_path)

    # The caller's loop runs in a thread of the test's own (this thread may already hold Playwright's loop).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        archive = pool.submit(asyncio.run, inside()).result()
    assert archive.exists()
