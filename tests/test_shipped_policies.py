"""The policies shipped in policies/ do the job: complete, lint-clean, and they plan on the seed scenario."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from canary_sandbox.scenario import Variant, manifest_documents
from controller.adapters.policy_files import check_documents
from controller.adapters.yaml_documents import read_yaml_file
from controller.core.plan import SourceDocument, plan_rollout
from controller.core.policy import CanaryPolicy
from tests.support.paths import REPO

SHIPPED: dict[str, Variant] = {"tcp-echo.yaml": "istio", "tcp-echo-gateway-api.yaml": "gateway-api"}


def _policy(file_name: str) -> CanaryPolicy:
    documents, findings = read_yaml_file(REPO / "policies" / file_name)
    report = check_documents(documents)
    assert not findings, [str(f) for f in findings]
    assert not report.findings, [str(f) for f in report.findings]
    assert len(report.policies) == 1
    return report.policies[0].policy


def test_the_shipped_policies_lint_with_no_problem_and_no_warning() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "controller", "lint", "policies"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "2 policies OK"
    assert done.stderr == "", f"lint warned about a shipped policy: {done.stderr}"


@pytest.mark.parametrize("file_name", sorted(SHIPPED))
def test_a_shipped_policy_advances_on_its_own_analysis_and_alerts_people(file_name: str) -> None:
    policy = _policy(file_name)
    analysis = policy.spec.analysis
    assert analysis is not None, f"{file_name} has no spec.analysis: it could only advance by promote"
    assert [m.template for m in analysis.metrics] == ["istio-tcp-connect-error-ratio"]
    assert analysis.prometheus is not None
    assert analysis.prometheus.url == "http://prometheus.istio-system:9090"
    check = analysis.metrics[0]
    assert check.min_connections is not None
    assert check.count_test is not None
    assert check.max is not None
    assert policy.spec.workload.canary is not None
    assert policy.spec.workload.canary.name == "tcp-echo-v2"
    assert analysis.selector.stable_workload == "tcp-echo-v1"
    assert policy.spec.alerts, f"{file_name} sends its alerts nowhere"


def _step_gives_enough_connections(policy: CanaryPolicy, connections_per_second: float) -> bool:
    """At the first step with canary traffic, the step's whole window reaches minConnections."""
    assert policy.spec.analysis is not None
    first = next(weight for weight in policy.spec.schedule.steps if weight > 0)
    seconds = policy.spec.schedule.step_duration_seconds
    needed = policy.spec.analysis.metrics[0].min_connections
    assert needed is not None
    return connections_per_second * seconds * first / 100 >= needed


@pytest.mark.parametrize("file_name", sorted(SHIPPED))
def test_a_shipped_policy_can_pass_its_first_canary_step_at_one_connection_a_second(file_name: str) -> None:
    # tcp-echo is a quiet service; a minConnections the first canary step cannot reach would hold forever.
    assert _step_gives_enough_connections(_policy(file_name), 1.0)


@pytest.mark.parametrize(("file_name", "variant"), sorted(SHIPPED.items()))
def test_a_shipped_policy_plans_every_step_on_the_seed_scenario(file_name: str, variant: Variant) -> None:
    sources = [SourceDocument(doc, f"{variant}.yaml#{i}") for i, doc in enumerate(_in_namespace(variant))]
    plan = plan_rollout(_policy(file_name), sources)
    assert [step.weight for step in plan.steps] == [0, 20, 50, 100]


def _in_namespace(variant: Variant) -> list[dict[str, Any]]:
    documents = manifest_documents(variant)
    for document in documents:
        document["metadata"]["namespace"] = "istio-io-tcp-traffic-shifting"
    return documents


def test_the_readme_policy_is_the_shipped_seed_policy() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    shipped = yaml.safe_load((REPO / "policies" / "tcp-echo.yaml").read_text(encoding="utf-8"))
    blocks = [block.split("```", 1)[0] for block in readme.split("```yaml\n")[1:]]
    policies = [yaml.safe_load(block) for block in blocks if "kind: CanaryPolicy" in block]
    assert shipped in policies, "README.md's complete policy differs from policies/tcp-echo.yaml"
