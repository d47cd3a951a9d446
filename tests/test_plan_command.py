"""canaryctl plan: output formats and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from controller.cli import app
from tests.support.paths import REPO, SHARED_ISTIO

runner = CliRunner()
SEED_POLICY = REPO / "policies" / "tcp-echo.yaml"
GATEWAY_POLICY = REPO / "policies" / "tcp-echo-gateway-api.yaml"


def _plan(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["plan", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def test_json_output_is_one_object_with_every_step_and_the_rollback() -> None:
    code, out, _ = _plan("--policy", SEED_POLICY, "--target", SHARED_ISTIO / "tcp-echo-all-v1.yaml", "-o", "json")
    assert code == 0
    plan = json.loads(out)
    assert set(plan) == {"target", "route", "steps", "rollback"}
    assert plan["target"] == {
        "kind": "VirtualService",
        "name": "tcp-echo",
        "namespace": "istio-io-tcp-traffic-shifting",
    }
    assert plan["route"] == {"protocol": "tcp", "index": 0}
    assert [step["weight"] for step in plan["steps"]] == [0, 20, 50, 100]
    original = list(yaml.safe_load_all((SHARED_ISTIO / "tcp-echo-all-v1.yaml").read_text()))[2]
    assert plan["rollback"]["object"] == original
    last = plan["steps"][-1]["object"]["spec"]["tcp"][0]["route"]
    assert [(d["destination"]["subset"], d["weight"]) for d in last] == [("v1", 0), ("v2", 100)]


def test_yaml_output_is_a_stream_with_a_comment_per_step() -> None:
    code, out, _ = _plan("--policy", GATEWAY_POLICY, "--target", SHARED_ISTIO / "gateway-api-tcp-echo-all-v1.yaml")
    assert code == 0
    documents = list(yaml.safe_load_all(out))
    assert len(documents) == 5
    assert all(doc["kind"] == "TCPRoute" for doc in documents)
    comments = [line for line in out.splitlines() if line.startswith("# ")]
    assert comments[0] == "# step 1/4: canary weight 0 (TCPRoute istio-io-tcp-traffic-shifting/tcp-echo, route tcp[0])"
    assert comments[3].startswith("# step 4/4: canary weight 100")
    assert comments[4].startswith("# rollback: the original object")
    assert [b["weight"] for b in documents[1]["spec"]["rules"][0]["backendRefs"]] == [80, 20]


def test_an_invalid_policy_exits_1_with_lint_messages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEED_POLICY.read_text().replace("steps: [0, 20, 50, 100]", "steps: [0, 50, 20]"))
    code, out, err = _plan("--policy", bad, "--target", SHARED_ISTIO / "tcp-echo-all-v1.yaml")
    assert code == 1
    assert out == ""
    line = bad.read_text().splitlines().index("    steps: [0, 50, 20]") + 1
    assert f"{bad}:{line}: spec.schedule.steps[2]: must be greater than the previous step (got 20 after 50)" in err


def test_an_unresolvable_route_exits_2_naming_file_object_and_route(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(SEED_POLICY.read_text().replace("port: 31400", "port: 31401"))
    target = SHARED_ISTIO / "tcp-echo-all-v1.yaml"
    code, out, err = _plan("--policy", policy, "--target", target)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"{target}:44: VirtualService istio-io-tcp-traffic-shifting/tcp-echo: no tcp routes match (port=31401)"
    )
    assert "seen: tcp[0] ports=[31400] destinations=[tcp-echo:9000/v1 weight -]" in lines[0]


def test_a_missing_target_object_exits_2() -> None:
    code, _, err = _plan("--policy", SEED_POLICY, "--target", SHARED_ISTIO / "tcp-echo.yaml")
    assert code == 2
    assert err.startswith(
        f"{SHARED_ISTIO / 'tcp-echo.yaml'}: VirtualService istio-io-tcp-traffic-shifting/tcp-echo: not found"
    )


def test_every_failing_step_is_listed(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: canaryctl.dev/v1alpha1\nkind: CanaryPolicy\nmetadata: {name: r}\nspec:\n"
        "  target:\n    virtualService: {name: reviews}\n    route: {protocol: http}\n"
        "    stable: {host: reviews, subset: v2}\n    canary: {host: reviews, subset: v3}\n"
        "  schedule: {steps: [10, 30, 60], stepDuration: 1m}\n"
    )
    code, _, err = _plan("--policy", policy, "--target", SHARED_ISTIO / "vs-11-bookinfo-reviews-80-20-http.yaml")
    assert code == 2
    lines = [line for line in err.splitlines() if ": warning: " not in line]  # the policy has no analysis
    assert len(lines) == 2
    assert "at canary weight 30 the stable destination would get -10" in lines[0]
    assert "at canary weight 60 the stable destination would get -40" in lines[1]


def test_a_policy_file_with_several_policies_needs_a_name(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text(
        SEED_POLICY.read_text()
        + "---\n"
        + SEED_POLICY.read_text().replace("name: tcp-echo\n  namespace", "name: other\n  namespace")
    )
    target = SHARED_ISTIO / "tcp-echo-all-v1.yaml"
    code, _, err = _plan("--policy", both, "--target", target)
    assert code == 1
    assert "holds 2 policies (use --name); policies: tcp-echo, other" in err
    code, out, _ = _plan("--policy", both, "--target", target, "--name", "other", "-o", "json")
    assert code == 0
    assert json.loads(out)["target"]["name"] == "tcp-echo"


def test_a_target_file_with_broken_yaml_exits_2(tmp_path: Path) -> None:
    target = tmp_path / "t.yaml"
    target.write_text("kind: VirtualService\nspec: [\n")
    code, _, err = _plan("--policy", SEED_POLICY, "--target", target)
    assert code == 2
    assert err.startswith(f"{target}:3: yaml: syntax error")
