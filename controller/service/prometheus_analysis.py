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
* Grouped queries (``group_seconds`` > 0): built-in checks over the same window share one query
  across every rollout (``sum by`` the labels that tell rollouts apart, every counter of the template in one
  query: ``controller.core.promql.GroupedQueries.combined``), so the queries per interval
  grow with the number of templates and windows, not of rollouts. An answer is fresh for ``group_seconds``
  (at most half its window) before or after its time: passes run in parallel, so one that started a moment
  before the answer was fetched uses it too. Once older, it still serves for as long again while a single
  refresh is fetched in the background: a pass never waits for Prometheus while a usable answer exists, so
  thousands of rollouts do not queue behind one slow grouped fetch, and at most two fetches per window are
  made. An answer serves a rollout only when its window lies inside the rollout's step, and only when it is
  newer than the answer the rollout's previous look used: two looks never judge the same counts. A newer
  answer is never replaced by an older one, nor a good one by a failed refresh (Prometheus timing out under
  load): the good one serves out its time, and the next refresh waits a fresh time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
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


@dataclass
class _Slot:
    """One grouped request's answers: the newest one fetched, and the fetch under way that others may wait for."""

    done: _Grouped | None = None
    pending: _Grouped | None = None
    failed_at: datetime | None = None  # when the last fetch that failed was evaluated


def _failed(entry: _Grouped) -> bool:
    return any(part.error is not None for part in entry.parts.values())


def _in_a_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="prometheus-group-refresh", daemon=True).start()


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
        in_background: runs a grouped answer's refresh off the pass that noticed it was due (a thread; tests
            may run it at once).
    """

    def __init__(
        self,
        metrics: MetricsSource,
        *,
        group_seconds: float = 0.0,
        scrape_interval_seconds: float | None = None,
        in_background: Callable[[Callable[[], None]], None] = _in_a_thread,
    ) -> None:
        self.metrics = metrics
        # Checked once: a runtime-checkable Protocol's isinstance walks its members, a cost at every pass.
        self._grouped_source = isinstance(metrics, GroupedMetricsSource)
        self.group_seconds = group_seconds
        self.scrape_interval_seconds = scrape_interval_seconds
        self._learned: dict[tuple[str, str, str], _Learned] = {}
        self._learned_lock = threading.Lock()
        self._last: dict[_Key, AnalysisResult] = {}
        self._fallback = NoAnalysis()
        self._groups: dict[tuple[str, str, str], _Slot] = {}
        self._groups_lock = threading.Lock()
        self._in_background = in_background
        # The time of the grouped answers each rollout's last look used, per grouped request.
        self._used: dict[_Key, dict[tuple[str, str, str], float]] = {}

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
        result = self._look(policy, status, now=now, final=now >= gate_of(policy, status), scrape=scrape, key=key)
        self._last[key] = result
        return result

    def evaluate(self, policy: CanaryPolicy, status: RolloutStatus, *, now: datetime, final: bool) -> AnalysisResult:
        """Run every check of the policy for the current step at ``now``: plan its queries (core), fetch
        them, judge the answers (core)."""
        scrape, _ = self.scrape_interval(policy, now)
        return self._look(policy, status, now=now, final=final, scrape=scrape, key=None)

    def _look(
        self,
        policy: CanaryPolicy,
        status: RolloutStatus,
        *,
        now: datetime,
        final: bool,
        scrape: float,
        key: _Key | None,
    ) -> AnalysisResult:
        """One look at ``scrape`` s scrapes; ``key``: the rollout, whose looks never reuse a grouped answer."""
        plan = plan_pass(policy, status, now=now, final=final, scrape_interval_seconds=scrape)
        return judge_pass(policy, plan, self.fetch(policy, plan, key=key))

    def fetch(self, policy: CanaryPolicy, plan: PassPlan, *, key: _Key | None = None) -> Answers:
        """Every answer a plan needs: its grouped requests (when grouping is on and the source can), then each
        query of the sides not read from a group, once."""
        groups: dict[tuple[str, str], Mapping[str, VectorOutcome]] = {}
        if self.group_seconds > 0 and self._grouped_source:
            before = self._used.get(key, {}) if key is not None else {}
            used: dict[tuple[str, str, str], float] = {}
            for request in plan.group_requests():
                cache_key = (_connection(policy), *request.key)
                answer = self._fetch_group(
                    policy, request, step_start=plan.step_start, now=plan.at, after=before.get(cache_key)
                )
                if answer is not None:
                    groups[request.key] = answer.parts
                    used[cache_key] = answer.at.timestamp()
            if key is not None:
                self._used[key] = used
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
        if not self._grouped_source:
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
        self, policy: CanaryPolicy, request: GroupRequest, *, step_start: float, now: datetime, after: float | None
    ) -> _Grouped | None:
        """One grouped answer (see the module docstring): a usable one already fetched (refreshed in the
        background once past fresh), one being fetched, or a fresh one; None when another pass's fetch did not
        finish in time (the sides then query alone). ``after``: the time of the answer the rollout's previous
        look used, which this one must be newer than."""
        assert isinstance(self.metrics, GroupedMetricsSource)
        cache_key = (_connection(policy), *request.key)
        window = request.window_seconds
        fresh = min(self.group_seconds, window / 2)

        def fits(entry: _Grouped | None, *, oldest: float) -> bool:
            if entry is None:
                return False
            age = (now - entry.at).total_seconds()
            stamp = entry.at.timestamp()
            return (
                -fresh <= age <= oldest
                and stamp - window >= step_start - 0.001
                and (after is None or stamp > after + 0.000_001)
            )

        refresh: _Grouped | None = None
        with self._groups_lock:
            slot = self._groups.get(cache_key)
            if slot is None:
                slot = self._groups[cache_key] = _Slot()
                stale = now - timedelta(seconds=max(60.0, 2 * self.group_seconds))
                for old in [k for k, s in self._groups.items() if s.done is not None and s.done.at < stale]:
                    if self._groups[old].pending is None:
                        del self._groups[old]
            done, pending = slot.done, slot.pending
            if fits(done, oldest=2 * fresh):
                assert done is not None
                failed_at = slot.failed_at
                recently_failed = failed_at is not None and abs((now - failed_at).total_seconds()) <= fresh
                if (now - done.at).total_seconds() > fresh and pending is None and not recently_failed:
                    refresh = slot.pending = _Grouped(at=now, ready=threading.Event(), parts={})
                entry, fetch = done, False
            elif pending is not None and fits(pending, oldest=2 * fresh):
                entry, fetch = pending, False
            else:
                # The fetch under way (if any) is too old for this pass: this one replaces it as the one others
                # wait for, so a slow Prometheus gets one more query per serving time, not one per pass.
                entry, fetch = _Grouped(at=now, ready=threading.Event(), parts={}), True
                if pending is None or pending.at <= now:
                    slot.pending = entry
        if refresh is not None:
            self._in_background(lambda: self._fill(policy, request, slot, refresh))
        if fetch:
            self._fill(policy, request, slot, entry)
        elif not entry.ready.wait(timeout=30):
            return None
        return entry

    def _fill(self, policy: CanaryPolicy, request: GroupRequest, slot: _Slot, entry: _Grouped) -> None:
        """Fetch one grouped answer at its time, then offer it as the slot's newest (never replacing a newer one)."""
        assert isinstance(self.metrics, GroupedMetricsSource)
        grouped = request.queries
        try:
            # One query for every counter of the template (controller.core.promql.GroupedQueries.combined).
            entry.parts = grouped.split(
                self.metrics.query_vector(
                    query=grouped.combined, at=entry.at, labels=grouped.combined_labels, connection=policy
                )
            )
        except Exception as exc:  # the port promises not to raise; a bug there must not stop the rollout
            error = f"internal error: {type(exc).__name__}: {str(exc)[:200]}"
            entry.parts = {name: VectorOutcome(query=query, error=error) for name, query in grouped.parts.items()}
        finally:
            failed = _failed(entry)
            with self._groups_lock:
                done = slot.done
                # A failed answer never replaces a good one: the good one serves out its time (the passes
                # that waited for this fetch get its errors), and the next refresh waits a fresh time.
                if done is None or (done.at <= entry.at and (not failed or _failed(done))):
                    slot.done = entry
                if failed:
                    slot.failed_at = entry.at
                if slot.pending is entry:
                    slot.pending = None
            entry.ready.set()
