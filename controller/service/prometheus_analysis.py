"""The analysis of a step: when to query Prometheus, over which window, and the verdict.

A look is planned, fetched and judged: ``controller.core.analysis_pass`` builds every query of the pass
(``plan_pass``), ``PrometheusAnalysis.fetch`` fetches them all here, grouped or alone, and the core judges
the answers (``judge_pass``). This module holds what needs I/O or memory across passes: the last look per
rollout, the learned scrape intervals and the grouped answers shared between rollouts.

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
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.core.analysis_pass import (
    Answers,
    GroupRequest,
    Instant,
    PassPlan,
    gate_of,
    judge_pass,
    look_due,
    not_yet,
    plan_pass,
    variables_for,
)
from controller.core.measurement import QueryOutcome, VectorOutcome
from controller.core.policy import CanaryPolicy
from controller.core.promql import interval_groups, scrape_interval_queries
from controller.core.scrape_windows import slowest
from controller.core.status import AnalysisResult, RolloutStatus
from controller.ports import GroupedMetricsSource, MetricsSource
from controller.service.analysis import NoAnalysis

__all__ = ["LEARNED_FOR_SECONDS", "RELEARN_AFTER_FAILURE_SECONDS", "PrometheusAnalysis", "variables_for"]


@dataclass(frozen=True)
class _Key:
    namespace: str
    name: str


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


def _connection(policy: CanaryPolicy) -> str:
    """The policy's Prometheus connection as a key: answers from one Prometheus serve only its policies."""
    spec = policy.spec.analysis.prometheus if policy.spec.analysis is not None else None
    return json.dumps(spec.model_dump(mode="json") if spec is not None else None, sort_keys=True)


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
        if policy.spec.analysis is None:
            return self._fallback.verdict(policy=policy, status=status, now=now)
        if status.run_id is None or status.step_index < 0 or status.step_started_at is None:
            return None
        key = _Key(policy.metadata.namespace, policy.metadata.name)
        last = self._last.get(key)
        if not look_due(policy, status, last, now=now):
            return last
        scrape, source = self.scrape_interval(policy, now)
        waiting = not_yet(status, now=now, scrape_interval_seconds=scrape, source=source)
        if waiting is not None:
            # Not stored: the first look runs at the first pass once the step is old enough.
            return waiting
        result = self.evaluate(policy, status, now=now, final=now >= gate_of(policy, status))
        self._last[key] = result
        return result

    def evaluate(self, policy: CanaryPolicy, status: RolloutStatus, *, now: datetime, final: bool) -> AnalysisResult:
        """Run every check of the policy for the current step at ``now``: plan its queries (core), fetch
        them, judge the answers (core)."""
        scrape, _ = self.scrape_interval(policy, now)
        plan = plan_pass(policy, status, now=now, final=final, scrape_interval_seconds=scrape)
        return judge_pass(policy, plan, self.fetch(policy, plan))

    def fetch(self, policy: CanaryPolicy, plan: PassPlan) -> Answers:
        """Every answer a plan needs: its grouped requests (when grouping is on and the source can), then each
        query of the sides not read from a group, once."""
        groups: dict[tuple[str, str], Mapping[str, VectorOutcome]] = {}
        if self.group_seconds > 0 and isinstance(self.metrics, GroupedMetricsSource):
            for request in plan.group_requests():
                parts = self._fetch_group(policy, request, step_start=plan.step_start, now=plan.at)
                if parts is not None:
                    groups[request.key] = parts
        outcomes = {instant: self._query(policy, instant) for instant in plan.instants(grouped=frozenset(groups))}
        return Answers(outcomes=outcomes, groups=groups)

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
        key = (_connection(policy), template, cluster_label)
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

    def _query(self, policy: CanaryPolicy, instant: Instant) -> QueryOutcome:
        try:
            return self.metrics.query(query=instant.query, at=instant.at, connection=policy)
        except Exception as exc:  # the port promises not to raise; a bug there must not stop the rollout
            return QueryOutcome(query=instant.query, error=f"internal error: {type(exc).__name__}: {str(exc)[:200]}")

    def _fetch_group(
        self, policy: CanaryPolicy, request: GroupRequest, *, step_start: float, now: datetime
    ) -> Mapping[str, VectorOutcome] | None:
        """One grouped answer: a usable one already fetched (see the module docstring), or a fresh one;
        None when another pass's fetch of it did not finish in time (the sides then query alone)."""
        assert isinstance(self.metrics, GroupedMetricsSource)
        cache_key = (_connection(policy), *request.key)
        window = request.window_seconds
        with self._groups_lock:
            current = self._groups.get(cache_key)
            usable = (
                current is not None
                and abs((now - current.at).total_seconds()) <= min(self.group_seconds, window / 4)
                and current.at.timestamp() - window >= step_start - 0.001
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
        grouped = request.queries
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
