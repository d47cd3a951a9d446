"""The chart's PrometheusRule: installed as Helm renders it, checked by ``promtool check rules`` and exercised
by ``promtool test rules`` (Debian's Prometheus 2.42), so every alert fires on the series the controller
really exports (names from ``ControllerMetrics``) and stays quiet on a healthy controller."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.conftest import Outcome
from tests.helm.test_chart import installed, objects, only

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed")


def _rules(helm_results: dict[str, Outcome]) -> tuple[dict[str, Any], str]:
    """The rendered PrometheusRule of the observability case and the job its default selector names."""
    outcome = installed(helm_results, "observability")
    rule = only(outcome, "PrometheusRule")
    job = only(outcome, "Deployment")["metadata"]["name"]  # the release's full name
    return rule, job


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_the_rule_is_off_by_default_and_carries_the_chosen_labels(helm_results: dict[str, Outcome]) -> None:
    assert objects(installed(helm_results, "default"), "PrometheusRule") == []
    rule, _ = _rules(helm_results)
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    names = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert names == [
        "CanaryControllerNoLeader",
        "CanaryControllerAbsent",
        "CanaryControllerApiErrors",
        "CanaryPolicyProblems",
        "CanaryAlertDeliveriesFailing",
        "CanaryRolloutStalledOnNoData",
        "CanaryConflictingWriters",
    ]


def test_promtool_accepts_the_rendered_rules(helm_results: dict[str, Outcome], tmp_path: Path) -> None:
    rule, _ = _rules(helm_results)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = _run("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def test_each_alert_fires_on_the_controllers_series_and_not_on_a_healthy_controller(
    helm_results: dict[str, Outcome], tmp_path: Path
) -> None:
    rule, job = _rules(helm_results)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    leader = f'canary_leader{{job="{job}",instance="a"}}'
    standby = f'canary_leader{{job="{job}",instance="b"}}'
    rollout = f'job="{job}",instance="a",namespace="shop",policy="tcp-echo"'
    stalled = f'canary_stalled{{{rollout},reason="Inconclusive"}}'
    conflicting = f"canary_conflicting_writers{{{rollout}}}"
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {  # a healthy pair of replicas: nothing fires
                "interval": "1m",
                "input_series": [
                    {"series": leader, "values": "1x40"},
                    {"series": standby, "values": "0x40"},
                    {
                        "series": f'canary_kubernetes_api_errors_total{{job="{job}",instance="a",code="409"}}',
                        "values": "0+1x40",
                    },
                    {"series": f'canary_policy_errors{{job="{job}",instance="a",source="crd"}}', "values": "0x40"},
                    {
                        "series": f'canary_alerts_sent_total{{job="{job}",instance="a",sink="slack",result="sent"}}',
                        "values": "0+1x40",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": name, "exp_alerts": []}
                    for name in (
                        "CanaryControllerNoLeader",
                        "CanaryControllerAbsent",
                        "CanaryControllerApiErrors",
                        "CanaryPolicyProblems",
                        "CanaryAlertDeliveriesFailing",
                        "CanaryRolloutStalledOnNoData",
                        "CanaryConflictingWriters",
                    )
                ],
            },
            {  # the leader is lost, API calls fail, a policy is refused, Slack refuses, a rollout has no data
                "interval": "1m",
                "input_series": [
                    {"series": leader, "values": "1x10 0x30"},
                    {"series": standby, "values": "0x40"},
                    {
                        "series": f'canary_kubernetes_api_errors_total{{job="{job}",instance="a",code="500"}}',
                        "values": "0+30x40",
                    },
                    {"series": f'canary_policy_errors{{job="{job}",instance="a",source="file"}}', "values": "2x40"},
                    {
                        "series": f'canary_alerts_sent_total{{job="{job}",instance="a",sink="slack",result="failed"}}',
                        "values": "0x5 1x35",
                    },
                    {
                        "series": stalled,
                        "values": "1x40",
                    },
                    {
                        "series": conflicting,
                        "values": "1x40",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "9m",
                        "alertname": "CanaryRolloutStalledOnNoData",
                        "exp_alerts": [],  # held 9 minutes: not yet 15
                    },
                    {
                        "eval_time": "12m",
                        "alertname": "CanaryAlertDeliveriesFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "sink": "slack"},
                                "exp_annotations": {
                                    "summary": "Rollout alerts to slack are not delivered.",
                                    "description": "Deliveries to slack failed in the last 15 minutes; the "
                                    "rollouts' status.alertLog has the errors.",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "17m",
                        "alertname": "CanaryControllerNoLeader",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical"},
                                "exp_annotations": {
                                    "summary": "No canary-controller replica has led for 5m.",
                                    "description": "Every scraped replica reports canary_leader 0, so no rollout "
                                    "advances or rolls back. Check the Lease in canary-obs and the pods' logs.",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "17m",
                        "alertname": "CanaryControllerApiErrors",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning"},
                                "exp_annotations": {
                                    "summary": "canary-controller's Kubernetes API calls keep failing.",
                                    "description": "500m failed API calls a second over 5 minutes; see "
                                    "canary_kubernetes_api_errors_total by code.",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "17m",
                        "alertname": "CanaryPolicyProblems",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "source": "file"},
                                "exp_annotations": {
                                    "summary": "Some canary policies cannot run.",
                                    "description": "2 policies from file are refused; canaryctl status and the "
                                    "policies' Events say why.",
                                },
                            }
                        ],
                    },
                    {  # the leader flag is 0 from 10m on: a no-data hold counts only on the leader's series
                        "eval_time": "16m",
                        "alertname": "CanaryRolloutStalledOnNoData",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "17m",
                        "alertname": "CanaryConflictingWriters",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "namespace": "shop", "policy": "tcp-echo"},
                                "exp_annotations": {
                                    "summary": "Two controllers write shop/tcp-echo.",
                                    "description": "Another controller's status writes were seen on this policy; "
                                    "check for overlapping shards or a second canaryctl run.",
                                },
                            }
                        ],
                    },
                ],
            },
            {  # a leader holding a rollout on no data for 20 minutes; then the controller is no longer scraped
                "interval": "1m",
                "input_series": [
                    {"series": leader, "values": "1x20"},
                    {
                        "series": stalled,
                        "values": "1x20",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "17m",
                        "alertname": "CanaryRolloutStalledOnNoData",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "namespace": "shop", "policy": "tcp-echo"},
                                "exp_annotations": {
                                    "summary": "Rollout shop/tcp-echo is held on no data.",
                                    "description": "Its analysis has been inconclusive (no data or too few "
                                    "connections) for 15m; canaryctl status shows the reason.",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "35m",
                        "alertname": "CanaryControllerAbsent",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "job": job},
                                "exp_annotations": {
                                    "summary": "canary-controller is not scraped.",
                                    "description": "No canary_leader series for 5m; the controller is down or "
                                    "its ServiceMonitor does not match.",
                                },
                            }
                        ],
                    },
                ],
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = _run("test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
