"""Merge the benchmarks' results into ``latest.json`` and ``latest.md`` (the README shows the tables).

Reads ``rollback_latency.json``, ``scale.json`` and ``judgement.json`` from ``--out`` (those present), adds
the date, the machine and the versions of Envoy and Prometheus, and writes both files beside them. The scale
table shows, beside each size, the same benchmark on the controller before issue 18
(``scale_before_issue18.json``, when present), and the issue's goals against both.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import judgement_accuracy, rollback_latency, scale
from canary_sandbox.envoy_gateway import envoy_version
from canary_sandbox.processes import SandboxError, binary_version, find_binary

PARTS = {
    "rollback_latency": ("rollback_latency.json", "Rollback latency"),
    "scale": ("scale.json", "Scale"),
    "judgement": ("judgement.json", "Judgement accuracy"),
}


def versions() -> dict[str, str]:
    """Envoy's and Prometheus' versions on this machine."""
    found = {"envoy": envoy_version()}
    for name in ("prometheus", "prometheus-alertmanager"):
        try:
            found[name] = binary_version(find_binary(name))
        except SandboxError as exc:
            found[name] = str(exc)
    return found


def section(key: str, data: dict[str, Any], out: Path) -> str:
    """One benchmark's Markdown."""
    if key == "rollback_latency":
        return rollback_latency.markdown(data)
    if key == "scale":
        before = scale.load_before(out / scale.BEFORE_FILE)
        text = scale.markdown(data["results"], before)
        if before is not None:
            commit = json.loads((out / scale.BEFORE_FILE).read_text()).get("controller", {}).get("commit") or "?"
            text += (
                f'\n\n"today": the same benchmark on the controller before issue 18 (commit {commit[:7]}, '
                f"{scale.BEFORE_FILE})."
            )
        return text
    return judgement_accuracy.markdown(data)


def main(argv: list[str] | None = None) -> int:
    """Write ``latest.json`` and ``latest.md`` in ``--out``."""
    parser = argparse.ArgumentParser(description="Merge benchmark results into latest.json and latest.md")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    merged: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": rollback_latency.machine(),
        "versions": versions(),
    }
    lines = [
        "# Benchmark results",
        "",
        f"Date: {merged['date']}. Machine: {merged['machine']['cores']} cores, "
        f"{merged['machine']['memory_mib']} MiB, {merged['machine']['platform']}. "
        + ", ".join(f"{k} {v}" for k, v in merged["versions"].items())
        + ".",
    ]
    for key, (filename, title) in PARTS.items():
        path = args.out / filename
        if not path.exists():
            lines += ["", f"## {title}", "", f"(not run: no {filename})"]
            continue
        data = json.loads(path.read_text())
        merged[key] = data
        lines += ["", f"## {title}", "", section(key, data, args.out)]
    (args.out / "latest.json").write_text(json.dumps(merged, indent=2) + "\n")
    (args.out / "latest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
