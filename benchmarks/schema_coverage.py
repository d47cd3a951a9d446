"""How many of the policies ``canaryctl lint`` refuses does the published JSON Schema refuse too?

``python -m benchmarks.schema_coverage --out DIR [--schema FILE]`` mutates valid policies (the shipped ones and
a policy using every section: a custom query, every alert sink, basic auth, a count or duration...) one
change at a time, at every field: deleted, replaced by a value of each other JSON type, by boundary values
(negative, zero, huge, empty), by strings with a trailing newline, upper case or spaces, plus an unknown
sibling field, and the mutations that break a rule relating fields (steps out of order, both or neither of
an exactly-one-of pair, canary equal to stable, a count test on a custom query...). Each mutant is judged
by lint (``validate_policy``) and by the schema (jsonschema, Draft 2020-12, with format checks off, as
editors run it). It writes ``DIR/schema_coverage.json`` with the counts and every mutant lint refuses that
the schema accepts (by path and mutation), and prints the totals. It asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from controller.core.policy import policy_json_schema
from controller.core.problems import validate_policy

REPO = Path(__file__).resolve().parents[1]

EVERY_SECTION: dict[str, Any] = {
    "apiVersion": "canaryctl.dev/v1alpha1",
    "kind": "CanaryPolicy",
    "metadata": {"name": "shop", "namespace": "team-a", "labels": {"app": "shop"}},
    "spec": {
        "target": {
            "virtualService": {"name": "shop", "namespace": "mesh"},
            "route": {"protocol": "http", "name": "primary", "index": 0},
            "stable": {"host": "shop", "subset": "v1", "port": 8080},
            "canary": {"host": "shop", "subset": "v2"},
        },
        "workload": {"canary": {"kind": "Deployment", "name": "shop-v2"}, "progressDeadline": "15m"},
        "schedule": {"steps": [5, 25, 50, 75], "stepDuration": "90s"},
        "analysis": {
            "interval": "20s",
            "prometheus": {
                "url": "https://prometheus.example:9090",
                "basicAuth": {"username": "reader", "password": {"secretKeyRef": {"name": "prom", "key": "pw"}}},
                "headers": {"X-Scope-OrgID": "team-a"},
                "caBundle": {"env": "PROM_CA"},
                "timeout": "5s",
            },
            "selector": {
                "canaryWorkload": "shop-v2",
                "stableWorkload": "shop-v1",
                "canaryCluster": "outbound|8080|v2|shop.mesh.svc.cluster.local",
                "stableCluster": "outbound|8080|v1|shop.mesh.svc.cluster.local",
                "clusterLabel": "cluster_name",
                "namespace": "team-a",
            },
            "metrics": [
                {
                    "name": "errors",
                    "template": "envoy-tcp-connect-error-ratio",
                    "countTest": {"method": "poisson", "confidence": 0.95},
                    "minConnections": 50,
                    "window": "1m",
                    "onNoData": "fail",
                },
                {
                    "name": "latency",
                    "query": "histogram_quantile(0.99, sum by (le) (rate(x{w={{ workload }}}[{{ window }}])))",
                    "max": 0.5,
                    "min": 0,
                    "compareToStable": {"factor": 1.2, "margin": 0.01},
                },
            ],
            "failureLimit": 2,
            "maxInconclusive": 5,
            "onInconclusive": "rollback",
        },
        "alerts": [
            {"name": "am", "alertmanager": {"url": "http://alertmanager:9093"}, "severity": {"CanaryPaused": "info"}},
            {"name": "chat", "slack": {"webhookUrl": {"secretKeyRef": {"name": "hooks", "key": "slack"}}}},
            {"name": "teams", "teams": {"webhookUrl": {"env": "TEAMS_URL"}}, "on": ["CanaryPromoted"]},
            {"name": "discord", "discord": {"webhookUrl": {"env": "DISCORD_URL"}}},
            {"name": "hook", "webhook": {"url": {"env": "HOOK_URL"}, "secret": {"env": "HOOK_SECRET"}}},
        ],
    },
}

WRONG_TYPES: list[tuple[str, Any]] = [
    ("null", None),
    ("true", True),
    ("int 7", 7),
    ("float 0.5", 0.5),
    ("string", "x"),
    ("list", ["x"]),
    ("mapping", {"x": 1}),
]


def seeds() -> list[tuple[str, dict[str, Any]]]:
    """The valid policies the mutants start from."""
    found = [(path.name, yaml.safe_load(path.read_text())) for path in sorted((REPO / "policies").glob("*.yaml"))]
    return [*found, ("every-section", copy.deepcopy(EVERY_SECTION))]


def _walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _replaced(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    result = copy.deepcopy(doc)
    if not path:
        return value  # type: ignore[no-any-return]
    _get(result, path[:-1])[path[-1]] = copy.deepcopy(value)
    return result


def _deleted(doc: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    result = copy.deepcopy(doc)
    del _get(result, path[:-1])[path[-1]]
    return result


def _value_mutations(value: Any) -> Iterator[tuple[str, Any]]:
    for name, wrong in WRONG_TYPES:
        if type(wrong) is not type(value):
            yield name, wrong
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield from [("negative", -1), ("zero", 0), ("huge", 10**9), ("fraction", value + 0.5)]
    if isinstance(value, str):
        yield from [
            ("trailing newline", value + "\n"),
            ("empty", ""),
            ("upper case", value.upper()),
            ("spaces", f" {value} "),
            ("long", value * 40),
            ("zero duration", "0s"),
            ("negative duration", "-1m"),
            ("overflowing duration", "100000000h"),
            ("bare number", "30"),
            ("percent", "1%"),
        ]
    if isinstance(value, list):
        yield from [("empty list", [])]
        if value:
            yield from [("duplicated first item", [value[0], *value]), ("reversed", list(reversed(value)))]
    if isinstance(value, dict):
        yield from [("empty mapping", {}), ("unknown field", {**value, "unknownField": 1})]


def _rule_mutations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Changes that break a rule relating fields, where the seed has the fields involved."""
    spec = doc["spec"]
    target = spec["target"]
    both = dict(target, virtualService={"name": "a"}, tcpRoute={"name": "a"})
    yield "target: both virtualService and tcpRoute", _replaced(doc, ("spec", "target"), both)
    neither = {k: v for k, v in target.items() if k not in ("virtualService", "tcpRoute")}
    yield "target: neither virtualService nor tcpRoute", _replaced(doc, ("spec", "target"), neither)
    yield "target: canary equals stable", _replaced(doc, ("spec", "target", "canary"), target["stable"])
    yield "target: name selector on tcp", _replaced(doc, ("spec", "target", "route"), {"protocol": "tcp", "name": "x"})
    if "tcpRoute" in target:
        yield "tcpRoute: tls protocol", _replaced(doc, ("spec", "target", "route"), {"protocol": "tls"})
        yield "tcpRoute: port selector", _replaced(doc, ("spec", "target", "route"), {"port": 80})
        yield "tcpRoute: subset", _replaced(doc, ("spec", "target", "stable", "subset"), "v1")
    yield "steps: equal", _replaced(doc, ("spec", "schedule", "steps"), [20, 20])
    yield "steps: decreasing", _replaced(doc, ("spec", "schedule", "steps"), [50, 20])
    yield "steps: 0 then 0", _replaced(doc, ("spec", "schedule", "steps"), [0, 0, 100])
    analysis = spec.get("analysis")
    if analysis:
        check = analysis["metrics"][0]
        at: tuple[Any, ...] = ("spec", "analysis", "metrics", 0)
        yield (
            "metric: template and query",
            _replaced(doc, at, {**check, "template": "istio-tcp-connections", "query": "up"}),
        )
        bare = {k: v for k, v in check.items() if k not in ("template", "query", "countTest", "minConnections")}
        yield "metric: neither template nor query", _replaced(doc, at, bare)
        yield "metric: count test on a query", _replaced(doc, at, {**bare, "query": "up", "countTest": {}})
        yield "metric: minConnections on a query", _replaced(doc, at, {**bare, "query": "up", "minConnections": 5})
        yield "metric: min above max", _replaced(doc, at, {**check, "min": 2, "max": 1})
        yield "metric: duplicate name", _replaced(doc, ("spec", "analysis", "metrics"), [check, check])
        yield "metric: unknown variable", _replaced(doc, at, {**bare, "query": "x{a={{ nothing }}}"})
        yield "metric: quoted placeholder", _replaced(doc, at, {**bare, "query": 'x{a="{{ workload }}"}'})
        yield (
            "metric: compareToStable without workload",
            _replaced(doc, at, {**bare, "query": "up", "compareToStable": {"factor": 1}}),
        )
        envoy = {**bare, "template": "envoy-tcp-connect-error-ratio"}
        no_cluster = {k: v for k, v in analysis["selector"].items() if not k.endswith("Cluster")}
        mutated = _replaced(doc, at, envoy)
        yield (
            "metric: envoy template without clusters",
            _replaced(mutated, ("spec", "analysis", "selector"), no_cluster),
        )
        if "prometheus" in analysis:
            token = {"env": "TOKEN"}
            auth = {"username": "u", "password": {"env": "PW"}}
            prometheus = {**analysis["prometheus"], "bearerToken": token, "basicAuth": auth}
            yield (
                "prometheus: bearerToken and basicAuth",
                _replaced(doc, ("spec", "analysis", "prometheus"), prometheus),
            )
            headers = {"Authorization": "Bearer x"}
            yield (
                "prometheus: Authorization header",
                _replaced(doc, ("spec", "analysis", "prometheus", "headers"), headers),
            )
    for index, route in enumerate(spec.get("alerts", [])):
        at = ("spec", "alerts", index)
        yield (
            "alert: two sinks",
            _replaced(doc, at, {**route, "alertmanager": {"url": "http://a"}, "slack": {"webhookUrl": {"env": "S"}}}),
        )
        sinkless = {k: v for k, v in route.items() if k in ("name", "on", "severity")}
        yield "alert: no sink", _replaced(doc, at, sinkless)
        yield "alert: unknown severity key", _replaced(doc, at, {**route, "severity": {"CanaryExploded": "info"}})
        yield "alert: duplicate name", _replaced(doc, ("spec", "alerts"), [route, route])
        yield (
            "alert: literal slack URL",
            _replaced(doc, at, {"name": route["name"], "slack": "https://hooks.slack.com/x"}),
        )
    secret_at = ("spec", "alerts")
    yield (
        "secretRef: both",
        _replaced(
            doc,
            secret_at,
            [{"name": "x", "teams": {"webhookUrl": {"env": "A", "secretKeyRef": {"name": "s", "key": "k"}}}}],
        ),
    )
    yield "secretRef: neither", _replaced(doc, secret_at, [{"name": "x", "teams": {"webhookUrl": {}}}])


def mutants() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(seed, mutation, document) for every mutation of every seed."""
    for seed, doc in seeds():
        for path, value in list(_walk(doc)):
            where = ".".join(map(str, path)) or "(document)"
            if path:
                yield seed, f"{where}: deleted", _deleted(doc, path)
            for name, replacement in _value_mutations(value):
                yield seed, f"{where}: {name}", _replaced(doc, path, replacement)
        for name, mutated in _rule_mutations(doc):
            yield seed, name, mutated


def measure(schema: dict[str, Any]) -> dict[str, Any]:
    """Counts of mutants by lint's and the schema's verdicts, and the ones only lint refuses."""
    validator = jsonschema.Draft202012Validator(schema)
    counts: Counter[str] = Counter()
    missed: list[str] = []
    for seed, mutation, document in mutants():
        lint_refuses = bool(validate_policy(document)[1])
        schema_refuses = not validator.is_valid(document)
        counts["mutants"] += 1
        counts[
            f"lint_{'refuses' if lint_refuses else 'accepts'}_schema_{'refuses' if schema_refuses else 'accepts'}"
        ] += 1
        if lint_refuses and not schema_refuses:
            missed.append(f"{seed}: {mutation}")
    refused = counts["lint_refuses_schema_refuses"] + counts["lint_refuses_schema_accepts"]
    return {
        "mutants": counts["mutants"],
        "lint_refuses": refused,
        "schema_refuses_of_those": counts["lint_refuses_schema_refuses"],
        "schema_accepts_of_those": counts["lint_refuses_schema_accepts"],
        "schema_refuses_what_lint_accepts": counts["lint_accepts_schema_refuses"],
        "missed": missed,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and write its JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.schema_coverage", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="directory for schema_coverage.json")
    parser.add_argument("--schema", type=Path, help="a schema file to judge (default: the one the models generate)")
    args = parser.parse_args(argv)
    schema = json.loads(args.schema.read_text()) if args.schema else policy_json_schema()
    result = measure(schema)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "schema_coverage.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['mutants']} mutants; lint refuses {result['lint_refuses']}; the schema refuses "
        f"{result['schema_refuses_of_those']} of those and accepts {result['schema_accepts_of_those']}; "
        f"it refuses {result['schema_refuses_what_lint_accepts']} that lint accepts"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
