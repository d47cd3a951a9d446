"""Release artifacts: the chart as a versioned ``.tgz`` (``make chart``) and the whole set (``make dist``).

* ``chart``: packages ``helm/`` with the real Helm engine (PyPI ``helm-sdkpy``'s ``Package`` action) after
  writing, into a copy of the chart, the version from the one version source (the package metadata, i.e.
  ``pyproject.toml``) as ``version`` and ``appVersion``, and Artifact Hub's annotations: the image, the CRD
  with an example (the seed policy), the license, and the changes of the release from CHANGELOG.md.
* ``dist``: the wheel and the sdist (``python -m build``), the chart, and a CycloneDX SBOM of the image's
  Python environment: a fresh virtualenv with the wheel and its dependencies installed, as the Dockerfile
  does, read by ``cyclonedx-py environment``. ``SHA256SUMS`` covers every artifact (``sha256sum -c`` reads it).

Usage: ``python -m tools.release chart --out dist`` or ``python -m tools.release dist --out dist``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm"
CHANGELOG = REPO / "CHANGELOG.md"
SEED_POLICY = REPO / "policies" / "tcp-echo.yaml"
IMAGE = "canary-controller"  # the repository the README's build step tags; users push it to their registry
LICENSE = "Apache-2.0"


class ReleaseError(Exception):
    """A release step failed; the message says which and why."""


def version() -> str:
    """The package's version, from its installed metadata (pyproject.toml is the one source)."""
    try:
        return importlib.metadata.version("canary-controller")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ReleaseError("canary-controller is not installed: run make venv first") from exc


def unreleased_changes(text: str) -> list[dict[str, str]]:
    """Artifact Hub's ``artifacthub.io/changes`` entries from CHANGELOG.md's newest section.

    Keep a Changelog headings map to Artifact Hub kinds (added, changed, deprecated, removed, fixed,
    security); each entry is an item's first sentence, without its markdown.
    """
    kinds = {"added", "changed", "deprecated", "removed", "fixed", "security"}
    section = re.split(r"^## ", text, flags=re.M)
    newest = next((part for part in section[1:] if part.strip()), "")
    changes: list[dict[str, str]] = []
    kind: str | None = None
    item: list[str] = []

    def flush() -> None:
        if kind is not None and item:
            words = " ".join(line.strip() for line in item)
            words = re.sub(r"[`*\[\]]", "", words)
            words = re.sub(r"\(https?://[^)]*\)", "", words)
            first = re.split(r"(?<=\.)\s", words, maxsplit=1)[0]
            changes.append({"kind": kind, "description": first[:250]})
        item.clear()

    for line in newest.splitlines():
        heading = re.match(r"^### (\w+)", line)
        if heading:
            flush()
            kind = heading.group(1).lower() if heading.group(1).lower() in kinds else None
        elif line.startswith("- "):
            flush()
            item.append(line[2:])
        elif line.startswith("  ") and item:
            item.append(line)
    flush()
    return changes


def chart_metadata(chart: dict[str, Any], *, release: str) -> dict[str, Any]:
    """``Chart.yaml`` for a release: the version written in both fields, Artifact Hub's annotations added."""
    crd_file = next((CHART / "crds").glob("*.yaml"))
    crd = yaml.safe_load(crd_file.read_text(encoding="utf-8"))
    example = yaml.safe_load(SEED_POLICY.read_text(encoding="utf-8"))
    annotations = dict(chart.get("annotations") or {})
    annotations.update(
        {
            "artifacthub.io/license": LICENSE,
            "artifacthub.io/images": yaml.safe_dump([{"name": "controller", "image": f"{IMAGE}:{release}"}]),
            "artifacthub.io/crds": yaml.safe_dump(
                [
                    {
                        "kind": crd["spec"]["names"]["kind"],
                        "version": crd["spec"]["versions"][0]["name"],
                        "name": crd["metadata"]["name"],
                        "displayName": "Canary policy",
                        "description": "What to roll out, in which steps, how to judge it and whom to alert.",
                    }
                ]
            ),
            "artifacthub.io/crdsExamples": yaml.safe_dump([example], sort_keys=False),
            "artifacthub.io/changes": yaml.safe_dump(unreleased_changes(CHANGELOG.read_text(encoding="utf-8"))),
        }
    )
    return {**chart, "version": release, "appVersion": release, "annotations": annotations}


def package_chart(out: Path) -> Path:
    """Package the chart at the package's version into ``out``; returns the archive's path."""
    import helm_sdkpy  # type: ignore[import-untyped]  # noqa: PLC0415 - Helm's Go library loads only here

    release = version()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        staged = Path(work) / "canary-controller"
        shutil.copytree(CHART, staged)
        chart_file = staged / "Chart.yaml"
        chart = yaml.safe_load(chart_file.read_text(encoding="utf-8"))
        chart_file.write_text(yaml.safe_dump(chart_metadata(chart, release=release), sort_keys=False), encoding="utf-8")

        def package() -> str:
            action = helm_sdkpy.Package(helm_sdkpy.Configuration())
            return str(asyncio.run(action.run(str(staged), dest_dir=str(out))))

        # A thread of its own, so an event loop the caller may be running (Playwright's, in the test session)
        # never meets this one.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            try:
                archive = pool.submit(package).result()
            except helm_sdkpy.HelmError as exc:
                raise ReleaseError(f"helm package failed: {exc}") from exc
    return Path(archive)


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ReleaseError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}")


def build_python(out: Path) -> list[Path]:
    """The wheel and the sdist of the controller (the sandbox is not released)."""
    before = set(out.glob("*"))
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], "python -m build")
    return sorted(set(out.glob("*")) - before)


def image_sbom(wheel: Path, out: Path) -> Path:
    """A CycloneDX SBOM (JSON) of the environment the image carries: a fresh virtualenv with the wheel."""
    sbom = out / f"canary-controller-{version()}.cdx.json"
    with tempfile.TemporaryDirectory() as work:
        env = Path(work) / "venv"
        venv.EnvBuilder(with_pip=True).create(env)
        python = env / "bin" / "python"
        _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], "installing the wheel")
        _run(
            [sys.executable, "-m", "cyclonedx_py", "environment", "--output-format", "JSON", "--output-file", str(sbom),
             str(python)],
            "cyclonedx-py environment",
        )  # fmt: skip
    return sbom


def checksums(files: list[Path], out: Path) -> Path:
    """``SHA256SUMS`` in ``sha256sum``'s format, names relative to ``out``."""
    lines = [f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}" for path in sorted(files)]
    sums = out / "SHA256SUMS"
    sums.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sums


def main(argv: list[str] | None = None) -> int:
    """``chart`` or ``dist`` into ``--out``; prints each artifact's path."""
    parser = argparse.ArgumentParser(prog="python -m tools.release", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["chart", "dist"])
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    try:
        if args.what == "chart":
            print(package_chart(out))
            return 0
        out.mkdir(parents=True, exist_ok=True)
        python = build_python(out)
        wheel = next(path for path in python if path.suffix == ".whl")
        artifacts = [*python, package_chart(out), image_sbom(wheel, out)]
        artifacts.append(checksums(artifacts, out))
    except ReleaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    for path in artifacts:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
