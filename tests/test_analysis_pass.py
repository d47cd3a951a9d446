"""One analysis pass as plain data, without I/O: the queries planned for a policy, and the verdict judged
from their answers (the service that fetches them is tested in tests/test_prometheus_analysis.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from controller.core.analysis_pass import (
    Answers,
    Instant,
    PassPlan,
    judge_pass,
    look_due,
    not_yet,
    plan_pass,
)
from controller.core.measurement import QueryOutcome, VectorOutcome
from controller.core.policy import CanaryPolicy
from controller.core.status import RolloutStatus, Verdict
from tests.rollout_sim import T0
from tests.test_rollout import seed_policy

NAMESPACE = "istio-io-tcp-traffic-shifting"
COUNTS = {"tcp-echo-v2": (0.0, 500.0), "tcp-echo-v1": (1.0, 2000.0)}


def _policy(*metrics: dict[str, Any], **selector: str) -> CanaryPolicy:
    doc = seed_policy(stepDuration="2m").model_dump(mode="json")
    doc["spec"]["analysis"] = {
        "interval": "30s",
        "selector": selector or {"canaryWorkload": "tcp-echo-v2", "stableWorkload": "tcp-echo-v1"},
        "metrics": list(metrics) or [{"name": "errors", "template": "istio-tcp-connect-error-ratio", "countTest": {}}],
    }
    return CanaryPolicy.model_validate(doc)


def _status(weight: int = 20) -> RolloutStatus:
    return RolloutStatus(run_id="r-1", step_index=1, weight=weight, step_started_at=T0)


def _alone(plan: PassPlan) -> Answers:
    """Each query answered alone, from COUNTS by the workload it selects."""
    outcomes = {}
    for instant in plan.instants():
        workload = "tcp-echo-v2" if 'destination_workload="tcp-echo-v2"' in instant.query else "tcp-echo-v1"
        errors, total = COUNTS[workload]
        value = errors if 'response_flags!="-"' in instant.query else total
        outcomes[instant] = QueryOutcome(query=instant.query, value=value)
    return Answers(outcomes=outcomes, groups={})


def _grouped(plan: PassPlan) -> Answers:
    """Each grouped request answered with one vector per part, from COUNTS; nothing queried alone."""
    groups = {}
    for request in plan.group_requests():
        parts = {}
        for name, query in request.queries.parts.items():
            index = 0 if name == "errors" else 1
            values: dict[tuple[str, ...], float] = {
                (workload, NAMESPACE): counts[index] for workload, counts in COUNTS.items()
            }
            parts[name] = VectorOutcome(query=query, values=values)
        groups[request.key] = parts
    assert plan.instants(grouped=frozenset(groups)) == [], "every side is read from a group"
    return Answers(outcomes={}, groups=groups)


def test_a_pass_plans_both_sides_of_a_count_test_at_the_look_with_one_shared_group_request() -> None:
    now = T0 + timedelta(seconds=31)
    plan = plan_pass(_policy(), _status(), now=now, final=False, scrape_interval_seconds=0.0)
    (check,) = plan.checks
    assert check.stable is not None
    assert 'destination_workload="tcp-echo-v2"' in (check.canary.total or "")
    assert 'destination_workload="tcp-echo-v1"' in (check.stable.total or "")
    assert {instant.at for instant in plan.instants()} == {now}
    assert len(plan.instants()) == 4, "errors and total of each side"
    (request,) = plan.group_requests()
    assert request.key == ("istio-tcp-connect-error-ratio|envoy_cluster_name|0", "30s")
    assert check.canary.group is not None
    assert check.canary.group.group == ("tcp-echo-v2", NAMESPACE)


def test_grouped_and_alone_answers_judge_to_the_same_result_showing_the_rollouts_own_queries() -> None:
    plan = plan_pass(_policy(), _status(), now=T0 + timedelta(seconds=31), final=False, scrape_interval_seconds=0.0)
    alone = judge_pass(_policy(), plan, _alone(plan))
    grouped = judge_pass(_policy(), plan, _grouped(plan))
    assert alone.verdict == Verdict.PASS, alone.reason
    assert grouped == alone
    assert grouped.checks[0].canary_connections == 500
    assert grouped.checks[0].stable_errors == 1
    assert grouped.traffic_share is not None
    assert grouped.traffic_share["connections"] == 2500


def test_at_weight_100_the_stable_baseline_is_planned_at_the_steps_start_and_never_grouped() -> None:
    now = T0 + timedelta(minutes=2, seconds=1)
    plan = plan_pass(_policy(), _status(weight=100), now=now, final=True, scrape_interval_seconds=0.0)
    (check,) = plan.checks
    assert check.stable is not None
    assert check.stable.at == T0
    assert check.stable.group is None
    assert "offset 120s" in (check.stable.total or "")
    result = judge_pass(_policy(), plan, _alone(plan))
    assert result.verdict == Verdict.PASS
    assert "(stable baseline: the 120 s before this step)" in result.reason
    assert result.traffic_share is None, "stable serves nothing at weight 100"


def test_a_side_that_cannot_be_built_holds_the_check_with_the_reason() -> None:
    custom = {"name": "refused", "query": "sum(refused{service={{ canary_service }}})", "max": 1}
    policy = _policy(custom)
    plan = plan_pass(policy, _status(), now=T0 + timedelta(seconds=31), final=False, scrape_interval_seconds=0.0)
    canary = plan.checks[0].canary
    assert canary.unbuilt == "variable 'canary_service' has no value (set it in analysis.selector)"
    assert plan.instants() == []
    result = judge_pass(policy, plan, Answers(outcomes={}, groups={}))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "canary_service" in result.reason


def test_a_query_missing_from_the_answers_is_inconclusive_never_a_pass() -> None:
    plan = plan_pass(_policy(), _status(), now=T0 + timedelta(seconds=31), final=False, scrape_interval_seconds=0.0)
    answers = _alone(plan)
    dropped = {i: o for i, o in answers.outcomes.items() if "tcp-echo-v1" not in i.query}
    result = judge_pass(_policy(), plan, Answers(outcomes=dropped, groups={}))
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "not fetched" in result.reason


def test_two_checks_reading_the_same_counts_plan_each_query_once() -> None:
    policy = _policy(
        {"name": "errors", "template": "istio-tcp-connect-error-ratio", "countTest": {}},
        {"name": "capped", "template": "istio-tcp-connect-error-ratio", "max": 0.05, "countTest": {}},
    )
    plan = plan_pass(policy, _status(), now=T0 + timedelta(seconds=31), final=False, scrape_interval_seconds=0.0)
    assert len(plan.instants()) == 4
    assert all(isinstance(instant, Instant) for instant in plan.instants())
    assert [c.name for c in judge_pass(policy, plan, _alone(plan)).checks] == ["errors", "capped"]


def test_a_look_is_due_at_a_new_step_after_an_interval_and_at_the_gate_and_not_before_two_scrapes() -> None:
    policy, status = _policy(), _status()
    assert look_due(policy, status, None, now=T0)
    plan = plan_pass(policy, status, now=T0 + timedelta(seconds=100), final=False, scrape_interval_seconds=0.0)
    last = judge_pass(policy, plan, _alone(plan))
    assert not look_due(policy, status, last, now=T0 + timedelta(seconds=119))
    assert look_due(policy, status, last, now=T0 + timedelta(seconds=120)), "the gate"
    assert look_due(policy, status.model_copy(update={"step_index": 2}), last, now=T0 + timedelta(seconds=101))
    waiting = not_yet(status, now=T0 + timedelta(seconds=20), scrape_interval_seconds=15.0, source="learned")
    assert waiting is not None
    assert waiting.verdict == Verdict.NOT_YET
    assert not_yet(status, now=T0 + timedelta(seconds=30), scrape_interval_seconds=15.0, source="learned") is None
