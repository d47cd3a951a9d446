"""canaryctl plan: targets the API servers would refuse, YAML-only values in JSON output, huge targets.

The weight rules are those of the real schemas in ../shared/data/istio (see SOURCES.md there):

* virtualservice-crd.yaml (istio/api): ``weight`` is ``type: integer, format: int32``; istiod's validation
  webhook refuses a negative weight (istio/istio pkg/config/validation, ``validateWeight``: "weight %d < 0");
* gateway.networking.k8s.io_tcproutes.yaml (gateway-api v1.6.1): backendRef ``weight`` is
  ``type: integer, minimum: 0, maximum: 1000000``;
* both declare each destination entry (``route[]`` items, ``backendRefs[]`` items) ``type: object``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from controller.cli import app
from controller.core.plan import SourceDocument, json_ready, plan_rollout
from controller.core.problems import validate_policy
from controller.core.routes import weight_problems
from controller.errors import RouteResolutionError
from tests.support.paths import REPO, SHARED_ISTIO

runner = CliRunner()
SEED_POLICY = REPO / "policies" / "tcp-echo.yaml"
GATEWAY_POLICY = REPO / "policies" / "tcp-echo-gateway-api.yaml"


def _plan(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["plan", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def _istio_target() -> tuple[list[Any], dict[str, Any]]:
    documents = list(yaml.safe_load_all((SHARED_ISTIO / "tcp-echo-all-v1.yaml").read_text()))
    service = next(doc for doc in documents if doc and doc["kind"] == "VirtualService")
    return documents, service


def _gateway_target() -> tuple[list[Any], dict[str, Any]]:
    documents = list(yaml.safe_load_all((SHARED_ISTIO / "gateway-api-tcp-echo-20-v2.yaml").read_text()))
    route = next(doc for doc in documents if doc and doc["kind"] == "TCPRoute")
    return documents, route


def _write(tmp_path: Path, documents: list[Any]) -> Path:
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("weight", "says"),
    [
        (-20, "spec.tcp[0].route[0].weight: must be between 0 and 2,147,483,647 for a VirtualService (got -20)"),
        (2**31, "must be between 0 and 2,147,483,647 for a VirtualService (got 2147483648)"),
        (20.5, "spec.tcp[0].route[0].weight: must be an integer (got 20.5)"),
        ("20", "spec.tcp[0].route[0].weight: must be an integer (got '20')"),
        (True, "spec.tcp[0].route[0].weight: must be an integer (got true)"),
    ],
)
def test_plan_exits_2_on_a_virtualservice_weight_istio_refuses(tmp_path: Path, weight: Any, says: str) -> None:
    documents, service = _istio_target()
    service["spec"]["tcp"][0]["route"][0]["weight"] = weight
    code, out, err = _plan("--policy", SEED_POLICY, "--target", _write(tmp_path, documents))
    assert code == 2
    assert out == ""
    assert says in err
    assert "(Istio refuses it)" in err


@pytest.mark.parametrize("weight", [-1, 1_000_001, "30", 30.5, False])
def test_plan_exits_2_on_a_tcproute_weight_the_gateway_api_refuses(tmp_path: Path, weight: Any) -> None:
    documents, route = _gateway_target()
    route["spec"]["rules"][0]["backendRefs"][1]["weight"] = weight
    code, _, err = _plan("--policy", GATEWAY_POLICY, "--target", _write(tmp_path, documents))
    assert code == 2
    assert "spec.rules[0].backendRefs[1].weight: must be" in err
    assert "(the Gateway API refuses it)" in err


def test_the_largest_weights_each_api_accepts_are_not_refused() -> None:
    _, route = _gateway_target()
    route["spec"]["rules"][0]["backendRefs"].append({"name": "other", "port": 9000, "weight": 1_000_000})
    assert weight_problems(route, "TCPRoute") == []
    _, service = _istio_target()
    service["spec"]["tcp"][0]["route"][0]["weight"] = 2**31 - 1
    assert weight_problems(service, "VirtualService") == []


@pytest.mark.parametrize("entry", ["tcp-echo", None, ["a"]])
def test_plan_exits_2_on_a_destination_that_is_not_a_mapping(tmp_path: Path, entry: Any) -> None:
    documents, service = _istio_target()
    service["spec"]["tcp"][0]["route"].append(entry)
    code, _, err = _plan("--policy", SEED_POLICY, "--target", _write(tmp_path, documents))
    assert code == 2
    assert "spec.tcp[0].route[1]: must be a mapping" in err


def test_a_bad_weight_in_another_route_of_the_object_is_refused_too() -> None:
    # The API server refuses the whole object, so a write of any step would fail.
    _, service = _istio_target()
    service["spec"]["tls"] = [{"route": [{"destination": {"host": "a"}, "weight": -5}]}]
    assert weight_problems(service, "VirtualService") == [
        "spec.tls[0].route[0].weight: must be between 0 and 2,147,483,647 for a VirtualService (got -5)"
    ]


def test_a_weight_holding_a_newline_is_shown_escaped(tmp_path: Path) -> None:
    documents, service = _istio_target()
    service["spec"]["tcp"][0]["route"][0]["weight"] = "20\nforged.yaml:1: ok \x1b[0m"
    code, _, err = _plan("--policy", SEED_POLICY, "--target", _write(tmp_path, documents))
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "\x1b" not in err


# ------------------------------------------------------------------------------------------ -o json


def test_json_output_holds_dates_and_binary_values_of_the_target(tmp_path: Path) -> None:
    _, service = _istio_target()
    text = yaml.safe_dump(service, sort_keys=False).replace(
        "metadata:\n",
        "metadata:\n  creationTimestamp: 2024-05-01T10:00:00Z\n"
        "  annotations:\n    released: 2024-05-01\n    blob: !!binary aGVsbG8=\n",
        1,
    )
    target = tmp_path / "target.yaml"
    target.write_text(text)
    code, out, err = _plan("--policy", SEED_POLICY, "--target", target, "-o", "json")
    assert (code, err) == (0, "")
    plan = json.loads(out)
    for obj in [plan["rollback"]["object"], *(step["object"] for step in plan["steps"])]:
        assert obj["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00+00:00"
        assert obj["metadata"]["annotations"] == {"released": "2024-05-01", "blob": "aGVsbG8="}


def test_json_ready_turns_yaml_only_values_into_json_values() -> None:
    ready = json_ready({1: {"a", "b"}, "nan": float("nan"), "inf": float("-inf"), "t": (1, b"\x00")})
    assert json.loads(json.dumps(ready, allow_nan=False)) == {
        "1": ["a", "b"],
        "nan": ".nan",
        "inf": "-.inf",
        "t": [1, "AA=="],
    }


# ------------------------------------------------------------------------------------------ large targets


def _many_routes(count: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "tcp-echo", "namespace": "istio-io-tcp-traffic-shifting"},
        "spec": {
            "hosts": ["*"],
            "tcp": [
                {"match": [{"port": 10000 + i}], "route": [{"destination": {"host": "tcp-echo", "subset": "v1"}}]}
                for i in range(count)
            ],
        },
    }


def _seed_policy(port: int) -> Any:
    doc = yaml.safe_load(SEED_POLICY.read_text())
    doc["spec"]["target"]["route"]["port"] = port
    policy, problems = validate_policy(doc)
    assert problems == []
    return policy


def test_an_unresolvable_route_among_many_lists_ten_routes_and_counts_the_rest() -> None:
    with pytest.raises(RouteResolutionError) as caught:
        plan_rollout(_seed_policy(31400), [SourceDocument(_many_routes(500), "t.yaml:1")])
    (message,) = caught.value.problems
    assert "tcp[9] ports=[10009]" in message
    assert "tcp[10] " not in message
    assert message.endswith("; and 490 more)")


def test_each_step_of_a_many_route_target_changes_only_the_selected_route() -> None:
    original = _many_routes(300)
    before = copy.deepcopy(original)
    plan = plan_rollout(_seed_policy(10005), [SourceDocument(original, "t.yaml:1")])
    assert original == before
    assert plan.rollback == before
    for step in plan.steps:
        routes = step.object["spec"]["tcp"]
        assert routes[:5] + routes[6:] == before["spec"]["tcp"][:5] + before["spec"]["tcp"][6:]
        assert [d.get("weight") for d in routes[5]["route"]] == [100 - step.weight, step.weight]
