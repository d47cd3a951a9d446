"""The traffic-share check on a real Prometheus: is the canary getting the share of new connections we wrote?"""

from __future__ import annotations

from typing import Any

import pytest

from controller.adapters.prometheus import PrometheusMetricsSource
from controller.core.policy import CanaryPolicy
from controller.core.status import Verdict
from tests.prom.test_analysis_live import _evaluate, _policy, _status, _traffic, mesh
from tests.prom.test_builtin_queries import Mesh

__all__ = ["mesh"]


def _with(namespace: str, *, canary_workload: str = "tcp-echo-v2", **share: Any) -> CanaryPolicy:
    doc = _policy(namespace).model_dump(mode="json", exclude_none=True)
    doc["spec"]["analysis"]["selector"]["canaryWorkload"] = canary_workload
    if share:
        doc["spec"]["analysis"]["trafficShare"] = share
    return CanaryPolicy.model_validate(doc)


def test_a_selector_matching_no_workload_holds_the_step_naming_the_selector(
    mesh: Mesh, metrics: PrometheusMetricsSource
) -> None:
    # The canary does get its 20 %, but the policy's selector names a workload that has no series at all.
    _traffic(mesh, canary=1, stable=1)
    start = mesh.exporter.step_start()
    _traffic(mesh, canary=100, stable=400)
    result = _evaluate(metrics, _with(mesh.namespace, canary_workload="tcp-echo-canary"), _status(start))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.reason.startswith(
        "traffic-share: weight 20 % written, 0 of 400 new connections reached tcp-echo-canary: "
        "check spec.analysis.selector or the data plane; "
    ), result.reason
    assert result.traffic_share is not None
    assert result.traffic_share["off"] is True
    assert result.traffic_share["share"] == 0


def test_a_weight_the_data_plane_did_not_apply_holds_the_step(mesh: Mesh, metrics: PrometheusMetricsSource) -> None:
    # Weight 20 written, but every new connection still goes to stable.
    _traffic(mesh, canary=1, stable=1)
    start = mesh.exporter.step_start()
    _traffic(mesh, canary=0, stable=500)
    result = _evaluate(metrics, _with(mesh.namespace), _status(start))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.reason.startswith(
        "traffic-share: weight 20 % written, 0 of 500 new connections reached tcp-echo-v2: "
        "check spec.analysis.selector or the data plane"
    ), result.reason


def test_check_fail_rolls_back_a_weight_the_data_plane_did_not_apply(
    mesh: Mesh, metrics: PrometheusMetricsSource
) -> None:
    _traffic(mesh, canary=1, stable=1)
    start = mesh.exporter.step_start()
    _traffic(mesh, canary=0, stable=500)
    result = _evaluate(metrics, _with(mesh.namespace, check="fail"), _status(start))
    assert result.verdict == Verdict.FAIL
    assert result.reason.startswith("traffic-share: weight 20 % written, 0 of 500 new connections"), result.reason


@pytest.mark.parametrize(("check", "verdict"), [("hold", Verdict.INCONCLUSIVE), ("off", Verdict.PASS)])
def test_a_canary_getting_far_more_than_its_weight_is_held_unless_the_check_is_off(
    mesh: Mesh, metrics: PrometheusMetricsSource, check: str, verdict: Verdict
) -> None:
    # Clients reach v2 without the route: half of the connections at weight 20, all healthy.
    _traffic(mesh, canary=1, stable=1)
    start = mesh.exporter.step_start()
    _traffic(mesh, canary=400, stable=400)
    result = _evaluate(metrics, _with(mesh.namespace, check=check), _status(start))
    assert result.verdict == verdict, result.reason
    assert result.traffic_share is not None
    assert result.traffic_share["share"] == 0.5
    assert result.traffic_share["off"] is True
    if check == "hold":
        assert "400 of 800 new connections (50.0 %) reached tcp-echo-v2 (expected 15-25 %)" in result.reason


def test_a_canary_getting_its_weight_passes_and_shows_its_share(mesh: Mesh, metrics: PrometheusMetricsSource) -> None:
    _traffic(mesh, canary=1, stable=1)
    start = mesh.exporter.step_start()
    _traffic(mesh, canary=190, stable=810)
    result = _evaluate(metrics, _with(mesh.namespace), _status(start))
    assert result.verdict == Verdict.PASS, result.reason
    assert result.traffic_share is not None
    assert result.traffic_share == {
        "weight": 20,
        "canaryConnections": 190,
        "connections": 1000,
        "share": 0.19,
        "low": pytest.approx(0.158, abs=0.01),
        "high": pytest.approx(0.225, abs=0.01),
        "off": False,
        "reason": "",
    }
