"""A bad policy file is reported where people look: the canary_policy_errors metric and a Kubernetes Event."""

from __future__ import annotations

import socket

from prometheus_client import generate_latest

from controller.adapters.policy_sources import file_problem_object
from controller.ports import InvolvedObject, PolicySnapshot, SourceProblem
from controller.runtime.loop import ReconcileLoop
from controller.runtime.metrics import ControllerMetrics
from controller.service.reconcile import Dependencies
from tests.fakes import StaticSource


def _merge(*snapshots: PolicySnapshot) -> PolicySnapshot:
    return PolicySnapshot(problems=tuple(p for s in snapshots for p in s.problems))


def _no_dependencies(ref: object) -> Dependencies:
    raise AssertionError("no pass should run")


def test_the_policy_errors_metric_counts_the_problems_of_each_source_and_falls_back_to_zero() -> None:
    bad_file = SourceProblem(source="file", location="p/bomb.yaml:1", message="yaml: refused: ...")
    other = SourceProblem(source="file", location="p/int.yaml:2", message="yaml: refused: ...")
    source = StaticSource(PolicySnapshot(problems=(bad_file, other)))
    metrics = ControllerMetrics()
    controller = ReconcileLoop(sources=[source], merge=_merge, dependencies_for=_no_dependencies, metrics=metrics)

    controller.tick()
    text = generate_latest(metrics.registry).decode()
    assert 'canary_policy_errors{source="file"} 2.0' in text
    assert 'canary_policy_errors{source="crd"} 0.0' in text

    source.current = PolicySnapshot()
    controller.tick()
    assert 'canary_policy_errors{source="file"} 0.0' in generate_latest(metrics.registry).decode()


def test_the_event_about_a_named_bad_file_goes_on_the_policys_status_configmap() -> None:
    problem = SourceProblem(
        source="file", location="p/a.yaml:9", message="spec.schedule.steps: ...", namespace="shop", name="web"
    )

    assert file_problem_object(problem, controller_namespace="canary-system") == InvolvedObject(
        "ConfigMap", "v1", "canary-system", "canary-shop-web"
    )


def test_the_event_about_a_file_naming_no_policy_goes_on_the_controllers_pod() -> None:
    problem = SourceProblem(source="file", location="p/bomb.yaml:1", message="yaml: refused: ...")

    assert file_problem_object(problem, controller_namespace="canary-system") == InvolvedObject(
        "Pod", "v1", "canary-system", socket.gethostname()
    )
