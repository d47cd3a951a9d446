"""The analysis of a step: when to query Prometheus, over which window, and the verdict.

* During a step the checks run every ``spec.analysis.interval`` (fail fast); in between, passes reuse the
  last evaluation (the state machine counts each evaluation once).
* When the step's duration is up, a final evaluation covers the whole step (the window grows to the
  step's age unless the check fixes its own ``window``): only that PASS advances the step.
* A window never reaches back before the step started, and it counts only increases between samples
  taken inside it, so it never mixes in the previous weight's traffic. It is never shorter than two scrape
  intervals (learned from the samples' spacing, or stated by ``spec.analysis.scrapeInterval`` or the
  controller's setting): until the step is that old the analysis is "not yet", which holds the step and
  counts nothing (``controller.core.scrape_windows``, docs/analysis.md).
* At weight 100 nothing goes to stable, so a comparison with stable uses stable's baseline from the
  previous step: the stable query is evaluated at the step's start over one step duration.
* Grouped queries (``group_seconds`` > 0): built-in checks over the same window share one query per
  counter across every rollout (``sum by`` the labels that tell rollouts apart), so the queries per tick
  grow with the number of templates and windows, not of rollouts. A grouped answer serves the rollouts
  that ask within ``group_seconds`` of it, before or after (at most a quarter of its window: passes run in
  parallel, so one that started a moment before the answer was fetched uses it too), and only when its
  window lies inside their step. A newer answer is never replaced by an older one.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
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
    interval_groups,
    istio_counts,
    prom_duration,
    scrape_interval_queries,
)
from controller.core.scrape_windows import (
    minimum_window,
    not_yet_reason,
    slowest,
    weight_zero_without_baseline,
    window_seconds,
)
from controller.core.status import AnalysisResult, RolloutStatus, Verdict
from controller.core.traffic_share import DEFAULT_TOLERANCE_PP, TrafficShare, traffic_share
from controller.ports import GroupedMetricsSource, MetricsSource
from controller.service.analysis import NoAnalysis


@dataclass(frozen=True)
class _Key:
    namespace: str
    name: str


_QUERY_FAILED = "query failed: "


def _one_query_problem(results: list[CheckResult]) -> str | None:
    """The problem, once, when every check failed to query for the same reason (no Prometheus URL, Prometheus
    down): it is what holds the step, and naming each check in front of it only hides it."""
    reasons = {result.reason for result in results if result.verdict == Verdict.INCONCLUSIVE}
    if not results or len(reasons) != 1 or any(r.verdict != Verdict.INCONCLUSIVE for r in results):
        return None
    (reason,) = reasons
    return reason.removeprefix(_QUERY_FAILED) if reason.startswith(_QUERY_FAILED) else None


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


# How long a learned scrape interval is used before it is learned again (after a failed query: sooner).
LEARNED_FOR_SECONDS = 300.0
RELEARN_AFTER_FAILURE_SECONDS = 30.0


@dataclass(frozen=True)
class _Learned:
    """One template's learned scrape intervals on one Prometheus: when, and per group."""

    at: datetime
    groups: Mapping[tuple[str, ...], float]


@dataclass
class _Grouped:
    """One grouped fetch: when it was evaluated, and its parts once fetched."""

    at: datetime
    ready: threading.Event
    parts: dict[str, VectorOutcome]


class PrometheusAnalysis:
    """AnalysisSource that queries Prometheus through the MetricsSource port and judges the results.

    Args:
        metrics: the Prometheus port.
        group_seconds: how long a grouped answer serves other rollouts (0: every rollout queries alone).
        scrape_interval_seconds: the controller's setting (None: learned from the samples' spacing); a
            policy's ``spec.analysis.scrapeInterval`` overrides both.
    """

    def __init__(
        self, metrics: MetricsSource, *, group_seconds: float = 0.0, scrape_interval_seconds: float | None = None
    ) -> None:
        self.metrics = metrics
        self.group_seconds = group_seconds
        self.scrape_interval_seconds = scrape_interval_seconds
        self._learned: dict[tuple[str, str, str], _Learned] = {}
        self._learned_lock = threading.Lock()
        self._last: dict[_Key, AnalysisResult] = {}
        self._fallback = NoAnalysis()
        self._groups: dict[tuple[str, str, str], _Grouped] = {}
        self._groups_lock = threading.Lock()

    def verdict(self, *, policy: CanaryPolicy, status: RolloutStatus, now: datetime) -> AnalysisResult | None:
        """The current evaluation for the step, running a new one when it is due."""
        analysis = policy.spec.analysis
        if analysis is None:
            return self._fallback.verdict(policy=policy, status=status, now=now)
        if status.run_id is None or status.step_index < 0 or status.step_started_at is None:
            return None
        key = _Key(policy.metadata.namespace, policy.metadata.name)
        last = self._last.get(key)
        if last is not None and (last.run_id != status.run_id or last.step_index != status.step_index):
            last = None
        gate = status.step_started_at + timedelta(seconds=policy.spec.schedule.step_duration_seconds)
        due = (
            last is None
            or last.evaluated_at is None
            or now - last.evaluated_at >= timedelta(seconds=analysis.interval_seconds)
            or (now >= gate > last.evaluated_at)
        )
        if not due:
            return last
        scrape, source = self.scrape_interval(policy, now)
        waiting = not_yet_reason(
            step_started_at=status.step_started_at, now=now, scrape_interval_seconds=scrape, source=source
        )
        if waiting is not None:
            # Not stored: the first look runs at the first pass once the step is old enough.
            return AnalysisResult(
                run_id=status.run_id, step_index=status.step_index, verdict=Verdict.NOT_YET, reason=waiting
            )
        result = self.evaluate(policy, status, now=now, final=now >= gate)
        self._last[key] = result
        return result

    def evaluate(self, policy: CanaryPolicy, status: RolloutStatus, *, now: datetime, final: bool) -> AnalysisResult:
        """Run every check of the policy for the current step at ``now``."""
        analysis = policy.spec.analysis
        assert analysis is not None
        assert status.run_id is not None
        assert status.step_started_at is not None
        age = max(0.0, (now - status.step_started_at).total_seconds())
        scrape, _ = self.scrape_interval(policy, now)
        # One error budget per step, spent sequentially: each in-step look (one interval's information)
        # spends what a Hwang-Shih-DeCani function allows, the final gate the rest (judgement.py).
        duration = policy.spec.schedule.step_duration_seconds
        looks = max(1, math.ceil(duration / analysis.interval_seconds) - 1)
        information = min(1.0, analysis.interval_seconds / duration) if duration > 0 else 1.0
        results = []
        opened: list[tuple[MetricCheck, Variables, SideData, SideData]] = []  # for the traffic share
        for check in analysis.metrics:
            configured = parse_go_duration(check.window) if check.window else None
            wanted = configured or (age if final else analysis.interval_seconds)
            variables = variables_for(
                policy,
                window_seconds=window_seconds(wanted=wanted, age=age, scrape_interval_seconds=scrape),
                step_start=status.step_started_at,
                scrape_interval_seconds=scrape,
            )
            results.append(
                self._check(
                    policy,
                    check,
                    variables,
                    weight=status.weight or 0,
                    at=now,
                    step_start=status.step_started_at,
                    opened=opened,
                    alpha_share=step_alpha_share(
                        final=final, in_step_looks=looks, information=information, alpha=check_alpha(check)
                    ),
                )
            )
        verdict, reason = combine(results)
        shared = _one_query_problem(results)
        if shared is not None:
            reason = shared
        share = _share_of(policy, weight=status.weight or 0, opened=opened)
        verdict, reason = _judge_share(policy, share, verdict, reason)
        return AnalysisResult(
            run_id=status.run_id,
            step_index=status.step_index,
            verdict=verdict,
            reason=reason,
            evaluated_at=now,
            checks=[result.as_dict() for result in results],
            traffic_share=share.as_dict() if share is not None else None,
        )

    def scrape_interval(self, policy: CanaryPolicy, at: datetime) -> tuple[float, str]:
        """The scrape interval the policy's windows respect, in seconds, and where it comes from: the
        policy's ``scrapeInterval``, the controller's setting, or learned from the spacing of the samples of
        the counters its built-in checks read (the slowest of them). 0 when unknown (only custom queries, no
        such counter is 5 minutes old, or Prometheus did not answer): no minimum window then, and no data
        is no data.

        Learning is one grouped query per template and Prometheus, shared by every rollout and repeated
        every ``LEARNED_FOR_SECONDS`` (``controller.core.promql.scrape_interval_queries``), so the queries do
        not grow with the number of rollouts.
        """
        analysis = policy.spec.analysis
        assert analysis is not None
        stated = analysis.scrape_interval_seconds
        if stated is not None:
            return stated, "spec.analysis.scrapeInterval"
        if self.scrape_interval_seconds is not None:
            return self.scrape_interval_seconds, "the controller's setting"
        if not isinstance(self.metrics, GroupedMetricsSource):
            return 0.0, "unknown"
        variables = variables_for(policy, window_seconds=0.0, step_start=at)
        intervals: list[float] = []
        for template in dict.fromkeys(c.template for c in analysis.metrics if c.template is not None):
            learned = self._learned_groups(policy, template, variables.cluster_label, at)
            intervals.extend(learned[key] for key in interval_groups(template, variables) if key in learned)
        seconds = slowest(intervals)
        return (0.0, "unknown") if seconds is None else (seconds, "learned from the samples")

    def _learned_groups(
        self, policy: CanaryPolicy, template: str, cluster_label: str, at: datetime
    ) -> Mapping[tuple[str, ...], float]:
        """Each group's scrape interval for one template on the policy's Prometheus, learned at most every
        ``LEARNED_FOR_SECONDS`` (a failed answer keeps the last one)."""
        assert isinstance(self.metrics, GroupedMetricsSource)
        queries = scrape_interval_queries(template, cluster_label=cluster_label)
        if queries is None:
            return {}
        spec = policy.spec.analysis.prometheus if policy.spec.analysis is not None else None
        connection = json.dumps(spec.model_dump(mode="json") if spec is not None else None, sort_keys=True)
        key = (connection, template, cluster_label)
        with self._learned_lock:
            known = self._learned.get(key)
            if known is not None and abs((at - known.at).total_seconds()) < LEARNED_FOR_SECONDS:
                return known.groups
            # Claimed before querying, so passes in parallel do not all ask; they use the last answer.
            self._learned[key] = _Learned(at=at, groups=known.groups if known is not None else {})
        try:
            answer = self.metrics.query_vector(
                query=queries.parts["interval"], at=at, labels=queries.labels, connection=policy
            )
        except Exception as exc:  # the port promises not to raise; a bug there must not stop the rollout
            answer = VectorOutcome(query=queries.parts["interval"], error=f"internal error: {type(exc).__name__}")
        if answer.error is not None:
            # Keep the last answer, and ask again soon rather than in LEARNED_FOR_SECONDS.
            retry = at - timedelta(seconds=LEARNED_FOR_SECONDS - RELEARN_AFTER_FAILURE_SECONDS)
            old = known.groups if known is not None else {}
            with self._learned_lock:
                self._learned[key] = _Learned(at=retry, groups=old)
            return old
        with self._learned_lock:
            self._learned[key] = _Learned(at=at, groups=dict(answer.values))
        return answer.values

    def _query(self, policy: CanaryPolicy, query: str, at: datetime) -> QueryOutcome:
        try:
            return self.metrics.query(query=query, at=at, connection=policy)
        except Exception as exc:  # the port promises not to raise; a bug there must not stop the rollout
            return QueryOutcome(query=query, error=f"internal error: {type(exc).__name__}: {str(exc)[:200]}")

    def _side(
        self,
        policy: CanaryPolicy,
        check: MetricCheck,
        variables: Variables,
        side: Side,
        at: datetime,
        *,
        shared: bool = True,
    ) -> SideData:
        if variables.window_seconds < 0.001:
            empty = QueryOutcome(query="(window not started)")
            return SideData(value=empty) if not check.is_error_ratio else SideData(errors=empty, total=empty)
        if shared and check.template is not None and check.query is None:
            grouped = self._from_group(policy, check.template, variables, side, at)
            if grouped is not None:
                return grouped
        try:
            if check.query is not None:
                return SideData(value=self._query(policy, expand_custom(check.query, variables, side), at))
            if check.template == "istio-tcp-connections":
                return SideData(value=self._query(policy, istio_counts(variables, side).total, at))
            counts: CountQueries = (
                envoy_counts(variables, side)
                if check.template == "envoy-tcp-connect-error-ratio"
                else istio_counts(variables, side)
            )
        except ValueError as exc:
            failed = QueryOutcome(query="(not built)", error=str(exc))
            return SideData(value=failed, errors=failed, total=failed)
        return SideData(errors=self._query(policy, counts.errors, at), total=self._query(policy, counts.total, at))

    def _check(
        self,
        policy: CanaryPolicy,
        check: MetricCheck,
        variables: Variables,
        *,
        weight: int,
        at: datetime,
        step_start: datetime,
        alpha_share: float,
        opened: list[tuple[MetricCheck, Variables, SideData, SideData]] | None = None,
    ) -> CheckResult:
        canary = self._side(policy, check, variables, "canary", at)
        if weight == 0:
            stable_then = (
                None
                if not _wants_or_has_stable(check, variables)
                else self._side(policy, check, variables, "stable", at)
            )
            if opened is not None and stable_then is not None:
                opened.append((check, variables, canary, stable_then))
            result = judge(check, canary, stable_then, weight=weight, alpha_share=alpha_share)
            return weight_zero_without_baseline(check, canary, stable_then, weight=weight, result=result)
        wants_stable = check.compare_to_stable is not None or check.count_test is not None
        has_stable = (
            variables.stable_workload if check.template != "envoy-tcp-connect-error-ratio" else variables.stable_cluster
        ) is not None
        if not (wants_stable or (weight == 0 and has_stable and check.query is None)):
            return judge(check, canary, None, weight=weight, alpha_share=alpha_share)
        if weight < 100:
            stable_now = self._side(policy, check, variables, "stable", at)
            if opened is not None:
                opened.append((check, variables, canary, stable_now))
            return judge(check, canary, stable_now, weight=weight, alpha_share=alpha_share)
        # Weight 100: stable serves nothing now; its baseline is the step before this one.
        duration = max(policy.spec.schedule.step_duration_seconds, minimum_window(variables.scrape_interval_seconds))
        baseline_vars = replace(variables, window_seconds=duration, step_start=step_start.timestamp() - duration)
        stable = self._side(policy, check, baseline_vars, "stable", step_start, shared=False)
        result = judge(check, canary, stable, weight=weight, alpha_share=alpha_share)
        return replace(result, reason=f"{result.reason} (stable baseline: the {duration:g} s before this step)")

    # -- grouped queries ------------------------------------------------------------------------

    def _from_group(
        self, policy: CanaryPolicy, template: str, variables: Variables, side: Side, now: datetime
    ) -> SideData | None:
        """One side's counts read from a grouped answer, or None to query alone."""
        if self.group_seconds <= 0 or not isinstance(self.metrics, GroupedMetricsSource):
            return None
        key = group_key(template, variables, side)
        grouped = grouped_queries(
            template,
            variables.window_seconds,
            cluster_label=variables.cluster_label,
            scrape_interval_seconds=variables.scrape_interval_seconds,
        )
        if key is None or grouped is None:
            return None
        parts = self._fetch_group(policy, template, variables, grouped, now)
        if parts is None:
            return None
        shown = (
            envoy_counts(variables, side)
            if template == "envoy-tcp-connect-error-ratio"
            else istio_counts(variables, side)
        )
        outcomes = {name: vector.outcome_for(key, query=vector.query) for name, vector in parts.items()}
        errors, total = counts_from_groups(template, outcomes, shown)
        if template == "istio-tcp-connections":
            return SideData(value=total)
        return SideData(errors=errors, total=total)

    def _fetch_group(
        self, policy: CanaryPolicy, template: str, variables: Variables, grouped: GroupedQueries, now: datetime
    ) -> dict[str, VectorOutcome] | None:
        assert isinstance(self.metrics, GroupedMetricsSource)
        spec = policy.spec.analysis.prometheus if policy.spec.analysis is not None else None
        connection = json.dumps(spec.model_dump(mode="json") if spec is not None else None, sort_keys=True)
        cache_key = (
            connection,
            f"{template}|{variables.cluster_label}|{variables.scrape_interval_seconds:g}",
            prom_duration(variables.window_seconds),
        )
        with self._groups_lock:
            current = self._groups.get(cache_key)
            usable = (
                current is not None
                and abs((now - current.at).total_seconds()) <= min(self.group_seconds, variables.window_seconds / 4)
                and current.at.timestamp() - variables.window_seconds >= variables.step_start - 0.001
            )
            fetch = not usable
            entry = current
            if fetch:
                entry = _Grouped(at=now, ready=threading.Event(), parts={})
                if current is None or current.at <= now:
                    self._groups[cache_key] = entry
                stale = now - timedelta(seconds=max(60.0, 2 * self.group_seconds))
                for old in [k for k, e in self._groups.items() if e.at < stale]:
                    del self._groups[old]
        assert entry is not None
        if fetch:
            try:
                entry.parts = {
                    name: self.metrics.query_vector(query=query, at=now, labels=grouped.labels, connection=policy)
                    for name, query in grouped.parts.items()
                }
            except Exception as exc:  # the port promises not to raise; a bug there must not stop the rollout
                error = f"internal error: {type(exc).__name__}: {str(exc)[:200]}"
                entry.parts = {name: VectorOutcome(query=query, error=error) for name, query in grouped.parts.items()}
            finally:
                entry.ready.set()
            return entry.parts
        if not entry.ready.wait(timeout=30):
            return None
        return entry.parts


def _wants_or_has_stable(check: MetricCheck, variables: Variables) -> bool:
    """Whether a check reads the stable side: it compares with it, or (a built-in, at weight 0) the stable
    workload or cluster is known, so the first step observes the stable baseline."""
    if check.compare_to_stable is not None or check.count_test is not None:
        return True
    if check.query is not None:
        return False
    side = variables.stable_cluster if check.template == "envoy-tcp-connect-error-ratio" else variables.stable_workload
    return side is not None


# -- traffic share ----------------------------------------------------------------------------------


def _opened_count(check: MetricCheck, side: SideData) -> tuple[bool, float | None]:
    """(usable, connections opened) of one side of a built-in check; no series is 0 connections."""
    outcome = side.value if check.template == "istio-tcp-connections" else side.total
    if check.query is not None or outcome is None or outcome.error is not None:
        return False, None
    return True, outcome.value if outcome.value is not None else 0.0


def _share_of(
    policy: CanaryPolicy, *, weight: int, opened: list[tuple[MetricCheck, Variables, SideData, SideData]]
) -> TrafficShare | None:
    """The canary's share of new connections, from the first built-in check that measured both sides."""
    for check, variables, canary, stable in opened:
        canary_ok, canary_count = _opened_count(check, canary)
        stable_ok, stable_count = _opened_count(check, stable)
        if not (canary_ok and stable_ok) or not stable_count:
            continue  # no stable connections: nothing to compare the canary's with
        envoy = check.template == "envoy-tcp-connect-error-ratio"
        name = (variables.canary_cluster if envoy else variables.canary_workload) or "the canary"
        settings = policy.spec.analysis.traffic_share if policy.spec.analysis is not None else None
        tolerance = settings.tolerance if settings is not None else DEFAULT_TOLERANCE_PP
        return traffic_share(
            canary=canary_count, stable=stable_count, weight=weight, canary_name=name, tolerance_pp=tolerance
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
