"""``canaryctl plan`` on a target with many routes (issue 13, item 5).

``python -m benchmarks.plan_large_target --out DIR [--routes 10000] [--repeat 3]`` writes a VirtualService
with N tcp routes (each with one destination, host ``tcp-echo``: 8 YAML nodes a route, so 10,000 routes stay
under the reader's limit of 100,000 nodes a file) as compact JSON, which is YAML, and a policy selecting
the route in the middle by index. It then times each phase of ``canaryctl plan`` in
this process, best of ``--repeat`` runs: reading the target file, computing the plan, rendering it as
YAML and as JSON, and the whole command (``plan`` through its CLI, YAML output) for a route that resolves
and for one that does not (no index: every route holds the stable destination, and the error names the
routes it saw). Wall and CPU seconds are both recorded,
since the machine may be shared. It writes ``DIR/plan_large_target.json`` and prints a Markdown table.
It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from controller.adapters.policy_files import check_documents
from controller.adapters.yaml_documents import read_yaml_file
from controller.cli import app, render_plan_yaml
from controller.core.plan import SourceDocument, plan_rollout

REPO = Path(__file__).resolve().parents[1]
SEED_POLICY = REPO / "policies" / "tcp-echo.yaml"


def target_document(routes: int) -> dict[str, Any]:
    """A VirtualService with ``routes`` tcp routes, each sending everything to ``tcp-echo``."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "tcp-echo", "namespace": "istio-io-tcp-traffic-shifting"},
        "spec": {
            "hosts": ["*"],
            "gateways": ["tcp-echo-gateway"],
            "tcp": [{"route": [{"destination": {"host": "tcp-echo"}}]} for _ in range(routes)],
        },
    }


def _timed(run: Callable[[], Any], repeat: int) -> tuple[dict[str, float], Any]:
    best: dict[str, float] | None = None
    result: Any = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        figures = {"wall_seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}
        if best is None or figures["cpu_seconds"] < best["cpu_seconds"]:
            best = figures
    assert best is not None
    return {key: round(value, 3) for key, value in best.items()}, result


def measure(routes: int, repeat: int, folder: Path) -> dict[str, Any]:
    """Every phase's best wall and CPU seconds."""
    target = folder / "target.yaml"
    target.write_text(json.dumps(target_document(routes), separators=(",", ":")))
    seed = SEED_POLICY.read_text().replace("subset: v1, port: 9000", "port: 9000")
    seed = seed.replace("{host: tcp-echo, subset: v2, port: 9000}", "{host: tcp-echo-v2, port: 9000}")
    policy_file = folder / "policy.yaml"
    policy_file.write_text(seed.replace("port: 31400", f"index: {routes // 2}"))
    unresolvable = folder / "unresolvable.yaml"
    unresolvable.write_text(seed.replace("      port: 31400\n", ""))
    documents, _ = read_yaml_file(policy_file)
    policy = check_documents(documents).policies[0].policy

    phases: dict[str, Any] = {}
    phases["read_target"], (target_docs, _) = _timed(lambda: read_yaml_file(target), repeat)
    sources = [SourceDocument(doc.data, doc.where) for doc in target_docs]
    phases["plan_rollout"], plan = _timed(lambda: plan_rollout(policy, sources), repeat)
    phases["render_yaml"], text = _timed(lambda: render_plan_yaml(plan), repeat)
    phases["render_json"], _ = _timed(lambda: json.dumps(plan.to_json(), indent=2), repeat)
    runner = CliRunner()

    def command(policy_path: Path) -> Any:
        return runner.invoke(app, ["plan", "--policy", str(policy_path), "--target", str(target)])

    phases["command_resolves"], done = _timed(lambda: command(policy_file), repeat)
    phases["command_unresolvable"], failed = _timed(lambda: command(unresolvable), repeat)
    error_lines = failed.stderr.splitlines()
    return {
        "routes": routes,
        "target_bytes": target.stat().st_size,
        "phases": phases,
        "yaml_output_bytes": len(text),
        "command_resolves_exit_code": done.exit_code,
        "command_unresolvable_exit_code": failed.exit_code,
        "unresolvable_error_lines": len(error_lines),
        "unresolvable_longest_error_line_chars": max((len(line) for line in error_lines), default=0),
        "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plan_large_target", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="directory for plan_large_target.json")
    parser.add_argument("--routes", type=int, default=10_000, help="tcp routes in the target (default 10000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per phase; the best is kept (default 3)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        result = measure(args.routes, args.repeat, Path(folder))
    result["machine"] = {"python": sys.version.split()[0], "platform": platform.platform()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "plan_large_target.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"canaryctl plan, {result['routes']:,} routes ({result['target_bytes']:,} bytes), best of {args.repeat}\n")
    print("| phase | wall s | CPU s |\n|---|---:|---:|")
    for name, figures in result["phases"].items():
        print(f"| {name} | {figures['wall_seconds']} | {figures['cpu_seconds']} |")
    print(
        f"\nunresolvable route: {result['unresolvable_error_lines']} error line(s), the longest "
        f"{result['unresolvable_longest_error_line_chars']:,} characters"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
