"""One analysis pass as plain data: the queries it needs (``plan_pass``) and its verdict (``judge_pass``).

A pass goes through three stages, and only the middle one does I/O:

1. ``plan_pass`` builds every query of the pass for a policy at one moment: per check, the canary's and
   (when the check reads it) the stable's queries, each at the instant it is evaluated (at weight 100 the
   stable's baseline is read at the step's start over one step duration), with the look's share of the
   step's error budget. A side of a built-in check that can be read from a grouped query (one query per
   template and window shared by every rollout, ``controller.core.promql.grouped_queries``) also names that grouped
   request and the group holding its counts.
2. The service fetches them all (``controller.service.prometheus_analysis``): the grouped requests it
   uses, then every query of the sides not read from a group.
3. ``judge_pass`` turns the answers into the pass's result: each check's verdict, the traffic share and
   the combined verdict and reason.

``look_due`` and ``not_yet`` decide, before any of that, whether a pass looks at all: a new look runs every
``spec.analysis.interval`` and at the step's gate, and none before the step holds two scrapes
(``controller.core.scrape_windows``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from controller.core.durations import parse_go_duration
from controller.core.judgement import CheckResult, SideData, check_alpha, combine, judge, step_alpha_share
from controller.core.measurement import QueryOutcome, VectorOutcome
from controller.core.policy import CanaryPolicy, MetricCheck
from controller.core.promql import (
    CountQueries,
    GroupedQueries,
    Side,
    Variables,
    counts_from_groups,
    envoy_counts,
    expand_custom,
    group_key,
    grouped_queries,
    istio_counts,
    prom_duration,
)
from controller.core.scrape_windows import (
    minimum_window,
    not_yet_reason,
    weight_zero_without_baseline,
    window_seconds,
)
from controller.core.status import AnalysisResult, RolloutStatus, Verdict
from controller.core.traffic_share import DEFAULT_TOLERANCE_PP, TrafficShare, traffic_share

ENVOY_TEMPLATE = "envoy-tcp-connect-error-ratio"
CONNECTIONS_TEMPLATE = "istio-tcp-connections"
NOT_STARTED = "(window not started)"
_QUERY_FAILED = "query failed: "


def variables_for(
    policy: CanaryPolicy, *, window_seconds: float, step_start: datetime, scrape_interval_seconds: float = 0.0
) -> Variables:
    """Template variables of a policy at one moment."""
    analysis = policy.spec.analysis
    assert analysis is not None
    selector = analysis.selector
    canary_workload = selector.canary_workload or (
        policy.spec.workload.canary.name if policy.spec.workload.canary is not None else None
    )
    return Variables(
        namespace=selector.namespace or policy.metadata.namespace,
        window_seconds=window_seconds,
        step_start=step_start.timestamp(),
        canary_workload=canary_workload,
        stable_workload=selector.stable_workload,
        canary_service=selector.canary_service,
        stable_service=selector.stable_service,
        canary_cluster=selector.canary_cluster,
        stable_cluster=selector.stable_cluster,
        cluster_label=selector.cluster_label,
        scrape_interval_seconds=scrape_interval_seconds,
    )


# -- the plan ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instant:
    """One instant query: PromQL evaluated at ``at``."""

    query: str
    at: datetime


@dataclass(frozen=True)
class GroupRequest:
    """One grouped fetch: a built-in template's grouped queries over one window, shared by every rollout.

    ``key`` tells grouped answers apart (on one Prometheus): the template, the label grouped by, the scrape
    interval and the window, which together fix the queries.
    """

    template: str
    cluster_label: str
    scrape_interval_seconds: float
    window_seconds: float
    queries: GroupedQueries

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the answer: (template with its label and scrape interval, window)."""
        return (
            f"{self.template}|{self.cluster_label}|{self.scrape_interval_seconds:g}",
            prom_duration(self.window_seconds),
        )


@dataclass(frozen=True)
class GroupRead:
    """Where one side's counts sit in a grouped answer: the request, and the group (its label values)."""

    request: GroupRequest
    group: tuple[str, ...]


@dataclass(frozen=True)
class SidePlan:
    """The queries of one side (canary or stable) of one check.

    Exactly one form holds: ``unbuilt`` (the query could not be built: the reason, nothing to fetch);
    ``not_started`` (the window is empty: nothing to fetch, nothing measured); ``value`` (one query: a
    custom query, or the connections of ``istio-tcp-connections``); or ``errors`` and ``total`` (an error
    ratio's two counts). ``group``, when set, is where the same numbers can be read from a grouped answer
    instead of querying alone; the outcomes then still show these per-rollout queries.
    """

    side: Side
    at: datetime
    error_ratio: bool
    value: str | None = None
    errors: str | None = None
    total: str | None = None
    unbuilt: str | None = None
    not_started: bool = False
    group: GroupRead | None = None

    def instants(self) -> list[Instant]:
        """The queries to fetch when this side is not read from a group."""
        return [Instant(q, self.at) for q in (self.value, self.errors, self.total) if q is not None]


@dataclass(frozen=True)
class CheckPlan:
    """One check of a pass: its sides' queries, the window's variables and the look's share of the budget.

    ``baseline_seconds`` is set at weight 100, where the stable side is its baseline of that many seconds
    before the step.
    """

    check: MetricCheck
    variables: Variables
    alpha_share: float
    canary: SidePlan
    stable: SidePlan | None
    baseline_seconds: float | None = None

    @property
    def sides(self) -> list[SidePlan]:
        """The check's sides, canary first."""
        return [self.canary] if self.stable is None else [self.canary, self.stable]


@dataclass(frozen=True)
class PassPlan:
    """Every query of one pass for one policy (``plan_pass``): ``at`` is when the pass looks, ``step_start``
    (a Unix timestamp) when the step began, which no grouped answer's window may reach back before."""

    run_id: str
    step_index: int
    weight: int
    at: datetime
    step_start: float
    checks: tuple[CheckPlan, ...]

    def sides(self) -> Iterator[SidePlan]:
        """Every side of every check, in order."""
        for check in self.checks:
            yield from check.sides

    def group_requests(self) -> list[GroupRequest]:
        """The distinct grouped requests the pass's sides can be read from, in order of first use."""
        requests: dict[tuple[str, str], GroupRequest] = {}
        for side in self.sides():
            if side.group is not None:
                requests.setdefault(side.group.request.key, side.group.request)
        return list(requests.values())

    def instants(self, *, grouped: frozenset[tuple[str, str]] = frozenset()) -> list[Instant]:
        """The distinct queries to fetch alone, given the grouped answers available (by request key)."""
        wanted: dict[Instant, None] = {}
        for side in self.sides():
            if side.group is None or side.group.request.key not in grouped:
                wanted.update(dict.fromkeys(side.instants()))
        return list(wanted)


def _wants_or_has_stable(check: MetricCheck, variables: Variables) -> bool:
    """Whether a check reads the stable side: it compares with it, or (a built-in, at weight 0) the stable
    workload or cluster is known, so the first step observes the stable baseline."""
    if check.compare_to_stable is not None or check.count_test is not None:
        return True
    if check.query is not None:
        return False
    side = variables.stable_cluster if check.template == ENVOY_TEMPLATE else variables.stable_workload
    return side is not None


def _counts(template: str | None, variables: Variables, side: Side) -> CountQueries:
    return envoy_counts(variables, side) if template == ENVOY_TEMPLATE else istio_counts(variables, side)


def plan_side(check: MetricCheck, variables: Variables, side: Side, *, at: datetime, shared: bool = True) -> SidePlan:
    """The queries of one side of a check over the window of ``variables``, evaluated at ``at``.

    Args:
        check: the check.
        variables: the window and the selector.
        side: canary or stable.
        at: the instant the queries are evaluated at.
        shared: whether the side may be read from a grouped answer (not the weight-100 baseline, whose
            window ends at the step's start).
    """
    ratio = check.is_error_ratio
    if variables.window_seconds < 0.001:
        return SidePlan(side=side, at=at, error_ratio=ratio, not_started=True)
    try:
        if check.query is not None:
            return SidePlan(side=side, at=at, error_ratio=ratio, value=expand_custom(check.query, variables, side))
        counts = _counts(check.template, variables, side)
    except ValueError as exc:
        return SidePlan(side=side, at=at, error_ratio=ratio, unbuilt=str(exc))
    group = _group_read(check.template, variables, side) if shared else None
    if check.template == CONNECTIONS_TEMPLATE:
        return SidePlan(side=side, at=at, error_ratio=ratio, value=counts.total, group=group)
    return SidePlan(side=side, at=at, error_ratio=ratio, errors=counts.errors, total=counts.total, group=group)


def _group_read(template: str | None, variables: Variables, side: Side) -> GroupRead | None:
    if template is None:
        return None
    key = group_key(template, variables, side)
    queries = grouped_queries(
        template,
        variables.window_seconds,
        cluster_label=variables.cluster_label,
        scrape_interval_seconds=variables.scrape_interval_seconds,
    )
    if key is None or queries is None:
        return None
    request = GroupRequest(
        template=template,
        cluster_label=variables.cluster_label,
        scrape_interval_seconds=variables.scrape_interval_seconds,
        window_seconds=variables.window_seconds,
        queries=queries,
    )
    return GroupRead(request=request, group=key)


def plan_pass(
    policy: CanaryPolicy, status: RolloutStatus, *, now: datetime, final: bool, scrape_interval_seconds: float
) -> PassPlan:
    """Every query of one look at the current step (the policy must have ``spec.analysis``, the status a step).

    During the step a check's window is one analysis interval, at the gate (``final``) the whole step,
    unless the check fixes its own ``window``; never shorter than two scrape intervals, never reaching back
    before the step started. Each look spends its share of the step's error budget (``judgement.py``).
    """
    analysis = policy.spec.analysis
    assert analysis is not None
    assert status.run_id is not None
    assert status.step_started_at is not None
    weight = status.weight or 0
    step_start = status.step_started_at
    age = max(0.0, (now - step_start).total_seconds())
    scrape = scrape_interval_seconds
    # One error budget per step, spent sequentially: each in-step look (one interval's information)
    # spends what a Hwang-Shih-DeCani function allows, the final gate the rest (judgement.py).
    duration = policy.spec.schedule.step_duration_seconds
    looks = max(1, math.ceil(duration / analysis.interval_seconds) - 1)
    information = min(1.0, analysis.interval_seconds / duration) if duration > 0 else 1.0
    checks: list[CheckPlan] = []
    for check in analysis.metrics:
        configured = parse_go_duration(check.window) if check.window else None
        wanted = configured or (age if final else analysis.interval_seconds)
        variables = variables_for(
            policy,
            window_seconds=window_seconds(wanted=wanted, age=age, scrape_interval_seconds=scrape),
            step_start=step_start,
            scrape_interval_seconds=scrape,
        )
        share = step_alpha_share(final=final, in_step_looks=looks, information=information, alpha=check_alpha(check))
        canary = plan_side(check, variables, "canary", at=now)
        stable: SidePlan | None = None
        baseline: float | None = None
        if weight == 0:
            if _wants_or_has_stable(check, variables):
                stable = plan_side(check, variables, "stable", at=now)
        elif check.compare_to_stable is not None or check.count_test is not None:
            if weight < 100:
                stable = plan_side(check, variables, "stable", at=now)
            else:
                # Weight 100: stable serves nothing now; its baseline is the step before this one.
                baseline = max(duration, minimum_window(scrape))
                before = replace(variables, window_seconds=baseline, step_start=step_start.timestamp() - baseline)
                stable = plan_side(check, before, "stable", at=step_start, shared=False)
        checks.append(CheckPlan(check, variables, share, canary, stable, baseline))
    return PassPlan(
        run_id=status.run_id,
        step_index=status.step_index,
        weight=weight,
        at=now,
        step_start=step_start.timestamp(),
        checks=tuple(checks),
    )


# -- the answers and the verdict -----------------------------------------------------------------------


@dataclass(frozen=True)
class Answers:
    """What the service fetched for a plan: each query fetched alone, and each grouped answer it used (by
    ``GroupRequest.key``: part name -> vector)."""

    outcomes: Mapping[Instant, QueryOutcome]
    groups: Mapping[tuple[str, str], Mapping[str, VectorOutcome]]


def side_data(side: SidePlan, answers: Answers) -> SideData:
    """One side's measurements from the answers: from its group when that was fetched, else its own."""
    if side.not_started:
        empty = QueryOutcome(query=NOT_STARTED)
        return SideData(errors=empty, total=empty) if side.error_ratio else SideData(value=empty)
    if side.unbuilt is not None:
        failed = QueryOutcome(query="(not built)", error=side.unbuilt)
        return SideData(value=failed, errors=failed, total=failed)
    parts = answers.groups.get(side.group.request.key) if side.group is not None else None
    if side.group is not None and parts is not None:
        shown = CountQueries(errors=side.errors or "", total=side.total or side.value or "")
        outcomes = {name: vector.outcome_for(side.group.group, query=vector.query) for name, vector in parts.items()}
        errors, total = counts_from_groups(side.group.request.template, outcomes, shown)
        return SideData(value=total) if side.value is not None else SideData(errors=errors, total=total)

    def fetched(query: str | None) -> QueryOutcome | None:
        if query is None:
            return None
        outcome = answers.outcomes.get(Instant(query, side.at))
        return outcome if outcome is not None else QueryOutcome(query=query, error="internal error: not fetched")

    return SideData(value=fetched(side.value), errors=fetched(side.errors), total=fetched(side.total))


def judge_check(plan: CheckPlan, answers: Answers, *, weight: int) -> CheckResult:
    """One check's verdict from the answers."""
    canary = side_data(plan.canary, answers)
    stable = side_data(plan.stable, answers) if plan.stable is not None else None
    result = judge(plan.check, canary, stable, weight=weight, alpha_share=plan.alpha_share)
    result = weight_zero_without_baseline(plan.check, canary, stable, weight=weight, result=result)
    if plan.baseline_seconds is not None:
        result = replace(
            result, reason=f"{result.reason} (stable baseline: the {plan.baseline_seconds:g} s before this step)"
        )
    return result


def judge_pass(policy: CanaryPolicy, plan: PassPlan, answers: Answers) -> AnalysisResult:
    """The pass's result: each check's verdict, the traffic share, and the verdict of them all."""
    results = [judge_check(check, answers, weight=plan.weight) for check in plan.checks]
    verdict, reason = combine(results)
    shared = _one_query_problem(results)
    if shared is not None:
        reason = shared
    share = _share_of(policy, plan, answers)
    verdict, reason = _judge_share(policy, share, verdict, reason)
    return AnalysisResult(
        run_id=plan.run_id,
        step_index=plan.step_index,
        verdict=verdict,
        reason=reason,
        evaluated_at=plan.at,
        checks=[result.as_dict() for result in results],
        traffic_share=share.as_dict() if share is not None else None,
    )


def _one_query_problem(results: list[CheckResult]) -> str | None:
    """The problem, once, when every check failed to query for the same reason (no Prometheus URL, Prometheus
    down): it is what holds the step, and naming each check in front of it only hides it."""
    reasons = {result.reason for result in results if result.verdict == Verdict.INCONCLUSIVE}
    if not results or len(reasons) != 1 or any(r.verdict != Verdict.INCONCLUSIVE for r in results):
        return None
    (reason,) = reasons
    return reason.removeprefix(_QUERY_FAILED) if reason.startswith(_QUERY_FAILED) else None


def _opened_count(check: MetricCheck, side: SideData) -> tuple[bool, float | None]:
    """(usable, connections opened) of one side of a built-in check; no series is 0 connections."""
    outcome = side.value if check.template == CONNECTIONS_TEMPLATE else side.total
    if check.query is not None or outcome is None or outcome.error is not None:
        return False, None
    return True, outcome.value if outcome.value is not None else 0.0


def _share_of(policy: CanaryPolicy, plan: PassPlan, answers: Answers) -> TrafficShare | None:
    """The canary's share of new connections, from the first built-in check that measured both sides now."""
    if plan.weight >= 100:
        return None  # stable serves nothing now: nothing to compare the canary's connections with
    for check in plan.checks:
        if check.stable is None:
            continue
        canary_ok, canary_count = _opened_count(check.check, side_data(check.canary, answers))
        stable_ok, stable_count = _opened_count(check.check, side_data(check.stable, answers))
        if not (canary_ok and stable_ok) or not stable_count:
            continue  # no stable connections: nothing to compare the canary's with
        variables = check.variables
        envoy = check.check.template == ENVOY_TEMPLATE
        name = (variables.canary_cluster if envoy else variables.canary_workload) or "the canary"
        settings = policy.spec.analysis.traffic_share if policy.spec.analysis is not None else None
        tolerance = settings.tolerance if settings is not None else DEFAULT_TOLERANCE_PP
        return traffic_share(
            canary=canary_count, stable=stable_count, weight=plan.weight, canary_name=name, tolerance_pp=tolerance
        )
    return None


def _judge_share(
    policy: CanaryPolicy, share: TrafficShare | None, verdict: Verdict, reason: str
) -> tuple[Verdict, str]:
    """The evaluation's verdict once the traffic share is known: a share far from the weight holds the step
    (inconclusive, ``check: hold``) or fails it (``check: fail``); a FAIL of the checks stands either way."""
    settings = policy.spec.analysis.traffic_share if policy.spec.analysis is not None else None
    mode = settings.check if settings is not None else "hold"
    if share is None or not share.off or mode == "off" or verdict not in {Verdict.PASS, Verdict.INCONCLUSIVE}:
        return verdict, reason
    why = f"traffic-share: {share.reason}"
    if verdict == Verdict.INCONCLUSIVE and reason:
        why = f"{why}; {reason}"
    return (Verdict.FAIL if mode == "fail" else Verdict.INCONCLUSIVE), why


# -- whether a pass looks ------------------------------------------------------------------------------


def look_due(policy: CanaryPolicy, status: RolloutStatus, last: AnalysisResult | None, *, now: datetime) -> bool:
    """Whether a new look is due: none yet at this step of this run, an interval since the last one, or the
    step's gate passed since it (the policy must have ``spec.analysis``, the status a step)."""
    analysis = policy.spec.analysis
    assert analysis is not None
    assert status.step_started_at is not None
    if last is None or last.run_id != status.run_id or last.step_index != status.step_index:
        return True
    if last.evaluated_at is None or now - last.evaluated_at >= timedelta(seconds=analysis.interval_seconds):
        return True
    return now >= gate_of(policy, status) > last.evaluated_at


def gate_of(policy: CanaryPolicy, status: RolloutStatus) -> datetime:
    """When the step's duration is up: the look then is the final one, over the whole step."""
    assert status.step_started_at is not None
    return status.step_started_at + timedelta(seconds=policy.spec.schedule.step_duration_seconds)


def not_yet(
    status: RolloutStatus, *, now: datetime, scrape_interval_seconds: float, source: str
) -> AnalysisResult | None:
    """The "not yet" result while the step holds fewer than two scrapes (it counts nothing), else None."""
    assert status.run_id is not None
    assert status.step_started_at is not None
    waiting = not_yet_reason(
        step_started_at=status.step_started_at, now=now, scrape_interval_seconds=scrape_interval_seconds, source=source
    )
    if waiting is None:
        return None
    return AnalysisResult(run_id=status.run_id, step_index=status.step_index, verdict=Verdict.NOT_YET, reason=waiting)
