"""PromQL for the checks: the built-in TCP templates, and safe expansion of custom templates.

**Counting connections in a window, only from samples taken inside it.** ``rate()``/``increase()``
need two samples of a series, so the first increment of a series born inside the window (typically the
first failed connect, which creates the ``response_flags="UF,URX"`` series) is lost, and ``increase()``
extrapolates to fractional counts. The built-ins count exactly instead, per series (``I`` is the scrape
interval, docs/analysis.md)::

    sum( (last_over_time(S[W]) - min_over_time(S[W])) and S offset (W - I) unless resets(S[W]) > 0
         or last_over_time(S[W]) )

* a series seen by one scrape interval into the window counts the increase between its first and its
  last sample *inside* the window (a counter's first sample in the window is its smallest when it did not
  reset). The last sample before the window is never used: it may be up to a scrape interval older than
  the window, and the window starts no earlier than the step, so it would count the previous weight's
  connections;
* a series born later (no sample in the window's first scrape interval: its target was scraped inside
  the window without it) counts its whole value, all of it counted inside the window;
* a series that reset inside the window counts what it counted since the reset, never a negative.

``last_over_time`` keeps what a series counted before it went stale mid-window (a client pod deleted).
The parts of a count select disjoint series and are joined with ``or`` before summing, so a total is "no
data" only when no part has a series. ``W`` is at least two scrape intervals and never reaches back
before the step started: the service waits ("not yet") until the step is that old.

**Selecting the canary.** Istio's client side (``reporter="source"``) is the only reporter that sees a
failed connect, and it fills ``destination_version`` with ``unknown`` on exactly those series, so the
canary is selected by ``destination_workload`` (+ namespace). With no healthy endpoint at all (``UH``,
``NR``, ``NC``) the client does not know the workload either; when the canary has its own Service (host
split, Gateway API backends), ``canary_service`` counts those by ``destination_service``.

**No injection.** Every substituted value is validated by the policy schema (label values, names) and
quoted as a PromQL string literal here; ``| regex`` additionally escapes regex metacharacters for ``=~``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from controller.core.measurement import QueryOutcome, VectorOutcome

Side = Literal["canary", "stable"]
_REGEX_META = re.compile(r"([\\.^$|?*+()\[\]{}])")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*(?:\|\s*([a-z]+)\s*)?\}\}")
ENVOY_FAILURES = (
    "envoy_cluster_upstream_cx_connect_fail",
    "envoy_cluster_upstream_cx_overflow",
    "envoy_cluster_upstream_cx_none_healthy",
)
ENVOY_ATTEMPTS = (
    "envoy_cluster_upstream_cx_total",
    "envoy_cluster_upstream_cx_overflow",
    "envoy_cluster_upstream_cx_none_healthy",
)
ISTIO_OPENED = "istio_tcp_connections_opened_total"


def quote(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def regex_escape(value: str) -> str:
    """Escape RE2 metacharacters so ``=~`` matches ``value`` literally."""
    return _REGEX_META.sub(r"\\\1", value)


def prom_duration(seconds: float) -> str:
    """A PromQL duration, to the millisecond (a young step's window is shorter than a second)."""
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _matchers(labels: dict[str, tuple[str, str]]) -> str:
    return "{" + ",".join(f"{name}{op}{quote(value)}" for name, (op, value) in labels.items()) + "}"


def window_series(selector: str, window_seconds: float, scrape_interval_seconds: float = 0.0) -> str:
    """Per series, the exact count of increments between samples taken inside the window (see the module
    docstring): last minus first sample in the window for a series seen in its first scrape interval, the
    whole value of a series born after that, what a series counted since it reset. The end value is the
    series' last sample in the window, so a series that went stale mid-window (its client pod deleted)
    keeps what it counted.

    ``scrape_interval_seconds`` 0 (unknown): a series is born in the window when it has no sample at or
    before the window's start.
    """
    window = prom_duration(window_seconds)
    last = f"last_over_time({selector}[{window}])"
    first = f"min_over_time({selector}[{window}])"
    # A series with a sample before (window start + one scrape interval) may carry increments from before
    # the window in its first sample: only the increase after it counts. One first seen later was scraped
    # inside the window without it (its target's scrape before that one), so all it counted is inside.
    seen_until = window_seconds - scrape_interval_seconds + 0.001 if scrape_interval_seconds > 0 else window_seconds
    seen = f"{selector} offset {prom_duration(seen_until)}" if seen_until >= 0.001 else selector
    return f"((({last} - {first}) and {seen} unless resets({selector}[{window}]) > 0) or {last})"


def window_count(selector: str, window_seconds: float, scrape_interval_seconds: float = 0.0) -> str:
    """Exact count of increments inside the window of the series ``selector``, new series included."""
    return f"sum({window_series(selector, window_seconds, scrape_interval_seconds)})"


@dataclass(frozen=True)
class Variables:
    """Values substituted into queries; validated by the policy schema before they get here."""

    namespace: str
    window_seconds: float
    step_start: float
    canary_workload: str | None = None
    stable_workload: str | None = None
    canary_service: str | None = None
    stable_service: str | None = None
    canary_cluster: str | None = None
    stable_cluster: str | None = None
    cluster_label: str = "envoy_cluster_name"
    scrape_interval_seconds: float = 0.0  # 0: unknown

    def of(self, side: Side) -> tuple[str | None, str | None, str | None]:
        """(workload, service, cluster) of one side."""
        if side == "canary":
            return self.canary_workload, self.canary_service, self.canary_cluster
        return self.stable_workload, self.stable_service, self.stable_cluster


@dataclass(frozen=True)
class CountQueries:
    """Queries returning the errors and the attempts of one side over the window."""

    errors: str
    total: str


def _sum_all(parts: list[str], *, first_required: bool) -> str:
    """Add count queries. A missing series set counts 0, except the first when ``first_required``: with no
    attempts series at all there is no data, which must stay distinguishable from zero."""
    if len(parts) == 1 and first_required:
        return parts[0]
    rendered = [
        f"({part})" if index == 0 and first_required else f"({part} or vector(0))" for index, part in enumerate(parts)
    ]
    return " + ".join(rendered)


def istio_selectors(variables: Variables, side: Side) -> tuple[list[str], list[str]]:
    """The raw series selectors of one side's failed and opened client-side TCP connections: (errors, totals).

    The parts select disjoint series (a workload, or "unknown" with a service). The checks count them over a
    window (:func:`istio_counts`); the dashboard charts them from a range query.

    Raises:
        ValueError: the policy names no workload for ``side``.
    """
    workload, service, _ = variables.of(side)
    if workload is None:
        raise ValueError(f"no {side} workload to select")
    base = {
        "reporter": ("=", "source"),
        "destination_workload": ("=", workload),
        "destination_workload_namespace": ("=", variables.namespace),
    }
    failed = {**base, "response_flags": ("!=", "-")}
    totals = [ISTIO_OPENED + _matchers(base)]
    errors = [ISTIO_OPENED + _matchers(failed)]
    if service is not None:
        unrouted = {
            "reporter": ("=", "source"),
            "destination_service": ("=", service),
            "destination_workload": ("=", "unknown"),
            "response_flags": ("!=", "-"),
        }
        totals.append(ISTIO_OPENED + _matchers(unrouted))
        errors.append(ISTIO_OPENED + _matchers(unrouted))
    return errors, totals


def envoy_selectors(variables: Variables, side: Side) -> tuple[list[str], list[str]]:
    """The raw series selectors of one Envoy cluster's connect failures and attempts: (errors, totals).

    Raises:
        ValueError: the policy names no Envoy cluster for ``side``.
    """
    _, _, cluster = variables.of(side)
    if cluster is None:
        raise ValueError(f"no {side} Envoy cluster to select")
    selector = _matchers({variables.cluster_label: ("=", cluster)})
    return [name + selector for name in ENVOY_FAILURES], [name + selector for name in ENVOY_ATTEMPTS]


def istio_counts(variables: Variables, side: Side) -> CountQueries:
    """Failed and opened client-side TCP connections of one side."""
    window, scrape = variables.window_seconds, variables.scrape_interval_seconds
    error_parts, total_parts = istio_selectors(variables, side)
    errors = [window_series(selector, window, scrape) for selector in error_parts]
    totals = [window_series(selector, window, scrape) for selector in total_parts]
    # The parts select disjoint series, so their union is summed once: no attempts series at all is no data,
    # while errors with no series are 0.
    return CountQueries(
        errors=f"sum({' or '.join(errors)}) or vector(0)",
        total=f"sum({' or '.join(totals)})",
    )


def envoy_counts(variables: Variables, side: Side) -> CountQueries:
    """Connect failures (incl. overflow and no healthy host) and attempts of one Envoy cluster."""
    window, scrape = variables.window_seconds, variables.scrape_interval_seconds
    error_parts, total_parts = envoy_selectors(variables, side)
    errors = _sum_all([window_count(selector, window, scrape) for selector in error_parts], first_required=False)
    total = _sum_all([window_count(selector, window, scrape) for selector in total_parts], first_required=True)
    return CountQueries(errors=errors, total=total)


def expand_custom(query: str, variables: Variables, side: Side) -> str:
    """Substitute ``{{ name }}`` / ``{{ name | regex }}`` in a custom query, quoting every value.

    ``window`` becomes a PromQL duration and ``step_start`` a Unix timestamp (bare, unquoted: both are
    numbers the controller computes); every other variable becomes a quoted string literal, so it can only
    ever be a label value.

    Raises:
        ValueError: a variable has no value for this policy.
    """
    workload, _, _ = variables.of(side)
    values: dict[str, str | None] = {
        "workload": workload,
        "namespace": variables.namespace,
        "canary_workload": variables.canary_workload,
        "stable_workload": variables.stable_workload,
        "canary_service": variables.canary_service,
        "stable_service": variables.stable_service,
        "canary_cluster": variables.canary_cluster,
        "stable_cluster": variables.stable_cluster,
    }

    def substitute(match: re.Match[str]) -> str:
        name, flt = match.group(1), match.group(2)
        if name == "window":
            return prom_duration(variables.window_seconds)
        if name == "step_start":
            return f"{variables.step_start:.3f}"
        value = values.get(name)
        if value is None:
            raise ValueError(f"variable {name!r} has no value (set it in analysis.selector)")
        return quote(regex_escape(value) if flt == "regex" else value)

    return _PLACEHOLDER.sub(substitute, query)


# Variables expanded to numbers the controller computes; every other one becomes a quoted string literal.
NUMERIC_VARIABLES = frozenset({"window", "step_start"})
_GROUPING = re.compile(r"(?:\bby|\bwithout|\bon|\bignoring|\bgroup_left|\bgroup_right)\s*\($")
_MATCHER_OPERATOR = re.compile(r"\s*(?:=~|!~|!=|=(?!=))")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_:]")


def placeholder_problems(query: str) -> list[str]:
    """Placeholders of a custom query that can never expand into valid PromQL, one message each.

    A string variable becomes a quoted string literal (``"tcp-echo-v2"``), so it can only stand where a
    label value does. Refused: one inside the query's own quotes (``pod="{{ workload }}"`` would give
    ``pod=""tcp-echo-v2""``), one where a label name goes (before ``=``, ``!=``, ``=~``, ``!~``, or in a
    ``by (...)``-style label list), and one glued to a name (``{{ workload }}_total``).
    """
    problems: list[str] = []
    quote_char: str | None = None
    labels_depth = 0  # > 0 inside by (...), without (...), on (...), ...
    index = 0
    while index < len(query):
        char = query[index]
        found = _PLACEHOLDER.match(query, index)
        if found is not None:
            name = found.group(1)
            shown = "{{ " + name + (f" | {found.group(2)}" if found.group(2) else "") + " }}"
            if name not in NUMERIC_VARIABLES:
                if quote_char is not None:
                    problems.append(
                        f"{shown} is inside quotes ({quote_char}...{quote_char}): it is inserted as a quoted "
                        "string already; remove the quotes around it"
                    )
                elif labels_depth or _MATCHER_OPERATOR.match(query, found.end()):
                    problems.append(
                        f"{shown} stands where a label name goes: it is inserted as a quoted string, "
                        "which can only be a label value"
                    )
                elif (index and _NAME_CHAR.match(query[index - 1])) or _NAME_CHAR.match(query, found.end()):
                    problems.append(
                        f"{shown} is glued to a name: it is inserted as a quoted string, which can only be a "
                        "label value"
                    )
            index = found.end()
            continue
        if quote_char is not None:
            if char == "\\" and quote_char != "`":
                index += 2
                continue
            if char == quote_char:
                quote_char = None
        elif char in "\"'`":
            quote_char = char
        elif char == "#":  # a comment runs to the end of the line
            newline = query.find("\n", index)
            index = len(query) if newline < 0 else newline
            continue
        elif char == "(" and (labels_depth or _GROUPING.search(query, 0, index + 1)):
            labels_depth += 1
        elif char == ")" and labels_depth:
            labels_depth -= 1
        index += 1
    return problems


# ----------------------------------------------------------------------------------------- grouped queries
#
# Many rollouts checking the same built-in template over the same window can share one query: per counter,
# the same exact counting form without the per-rollout selector, summed by the labels that tell rollouts
# apart, the counters joined in one query (GroupedQueries.combined). Each rollout then reads its own group.
# A group missing from the answer had no series.

ISTIO_GROUP = ("destination_workload", "destination_workload_namespace")


PART_LABEL = "canary_part"
"""The label that tells the parts of a combined grouped query apart in its answer."""


@dataclass(frozen=True)
class GroupedQueries:
    """The grouped queries of one template and window: part name -> query, and the labels grouped by.

    The parts are fetched as one query (:attr:`combined`): each part's series tagged with the part's name
    in the label ``canary_part``, joined with ``or`` (their label sets differ by that label, so ``or`` keeps
    them all), then split again (:meth:`split`). One query per grouped answer, whatever the number of
    counters, so the queries per analysis interval grow with templates and windows only.
    """

    labels: tuple[str, ...]
    parts: dict[str, str]

    @property
    def combined(self) -> str:
        """Every part in one query (the part alone when there is one)."""
        if len(self.parts) == 1:
            return next(iter(self.parts.values()))
        return " or ".join(
            f'label_replace({query}, "{PART_LABEL}", "{name}", "", "")' for name, query in self.parts.items()
        )

    @property
    def combined_labels(self) -> tuple[str, ...]:
        """The labels of :attr:`combined`'s groups: the part's name, then the labels grouped by."""
        return self.labels if len(self.parts) == 1 else (PART_LABEL, *self.labels)

    def split(self, answer: VectorOutcome) -> dict[str, VectorOutcome]:
        """:attr:`combined`'s answer (grouped by :attr:`combined_labels`) as each part's answer; an error is
        every part's error. A part with no series in the answer has no groups."""
        if len(self.parts) == 1:
            return dict.fromkeys(self.parts, answer)
        if answer.error is not None:
            return {name: VectorOutcome(query=answer.query, error=answer.error) for name in self.parts}
        values: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in self.parts}
        for key, value in answer.values.items():
            part = values.get(key[0])
            if part is not None:
                part[key[1:]] = value
        return {name: VectorOutcome(query=answer.query, values=values[name]) for name in self.parts}


def grouped_queries(
    template: str,
    window_seconds: float,
    *,
    cluster_label: str = "envoy_cluster_name",
    scrape_interval_seconds: float = 0.0,
) -> GroupedQueries | None:
    """The grouped form of a built-in template (None for a template that cannot be grouped)."""
    window = window_seconds
    scrape = scrape_interval_seconds
    if template in {"istio-tcp-connect-error-ratio", "istio-tcp-connections"}:
        by = ", ".join(ISTIO_GROUP)
        opened = _matchers({"reporter": ("=", "source")})
        failed = _matchers({"reporter": ("=", "source"), "response_flags": ("!=", "-")})
        parts = {"total": f"sum by ({by}) ({window_series(ISTIO_OPENED + opened, window, scrape)})"}
        if template == "istio-tcp-connect-error-ratio":
            parts["errors"] = f"sum by ({by}) ({window_series(ISTIO_OPENED + failed, window, scrape)})"
        return GroupedQueries(ISTIO_GROUP, parts)
    if template == "envoy-tcp-connect-error-ratio":
        names = dict.fromkeys((*ENVOY_FAILURES, *ENVOY_ATTEMPTS))
        parts = {name: f"sum by ({cluster_label}) ({window_series(name, window, scrape)})" for name in names}
        return GroupedQueries((cluster_label,), parts)
    return None


def group_key(template: str, variables: Variables, side: Side) -> tuple[str, ...] | None:
    """The group that holds one side's counts, or None when that side cannot be read from a group.

    A side selected by Service as well (``canary_service``/``stable_service``: failures with no workload)
    needs its own query.
    """
    workload, service, cluster = variables.of(side)
    if template in {"istio-tcp-connect-error-ratio", "istio-tcp-connections"}:
        if workload is None or service is not None:
            return None
        return (workload, variables.namespace)
    if template == "envoy-tcp-connect-error-ratio":
        return None if cluster is None else (cluster,)
    return None


def counts_from_groups(
    template: str, parts: Mapping[str, QueryOutcome], shown: CountQueries
) -> tuple[QueryOutcome, QueryOutcome]:
    """(errors, total) of one group from its parts: the same rules as the per-rollout queries ``shown``.

    Errors with no series count 0; a total with no attempts series at all is no data; a part's error is
    both results' error. The outcomes carry the per-rollout queries, which give these values.
    """
    for part in parts.values():
        if part.error is not None:
            return QueryOutcome(shown.errors, error=part.error), QueryOutcome(shown.total, error=part.error)

    def value(name: str) -> float | None:
        part = parts.get(name)
        return None if part is None else part.value

    if template in {"istio-tcp-connect-error-ratio", "istio-tcp-connections"}:
        return QueryOutcome(shown.errors, value=value("errors") or 0.0), QueryOutcome(shown.total, value("total"))
    errors = sum(value(name) or 0.0 for name in ENVOY_FAILURES)
    base = value(ENVOY_ATTEMPTS[0])
    total = None if base is None else base + sum(value(name) or 0.0 for name in ENVOY_ATTEMPTS[1:])
    return QueryOutcome(shown.errors, value=errors), QueryOutcome(shown.total, value=total)


# The spans, in seconds, over which a series' sample spacing is measured, longest first (see
# ``scrape_interval_queries``): 5 minutes when the series is that old, down to a second for one that has
# been scraped twice. Any two neighbouring spans are at most 30 s apart up to a minute, so a series scraped
# at most every minute is measured from its second sample on.
SPACING_SPANS = (300.0, 60.0, 30.0, 15.0, 10.0, 5.0, 2.0, 1.0)


def scrape_interval_queries(template: str, *, cluster_label: str = "envoy_cluster_name") -> GroupedQueries | None:
    """The grouped query from which the scrape interval of a built-in template's counters is learned, shared
    by every rollout on one Prometheus (None for a template with no counters of its own).

    Per series, the average spacing of its samples over the last 5 minutes, exactly:
    ``(timestamp(S) - timestamp(S offset 5m)) / count_over_time(S[299999ms])`` (from the last sample at
    least 5 minutes old to the newest, over the samples after it). A series younger than that has no sample
    5 minutes back, so it is measured the same way over the longest of ``SPACING_SPANS`` back to which it
    has a sample and after which it has one (with two samples, any span longer than the age of the newest
    and at most one interval longer; for intervals up to a minute one of the spans always is). So the
    series of a workload deployed seconds ago, or on a Prometheus that just started, are known from their
    second scrape on, and a window then never counts what a series counted before it. Only a series with
    a single sample is left out. The spacing over any span is an average of real spacings, so a series
    never looks faster than it is scraped (a missed scrape makes it look slower). Then the slowest series
    of each group (the labels that tell rollouts apart, as in ``grouped_queries``), since a window must hold
    two samples of every counter.
    """
    if template in {"istio-tcp-connect-error-ratio", "istio-tcp-connections"}:
        labels: tuple[str, ...] = ISTIO_GROUP
        selector = ISTIO_OPENED + _matchers({"reporter": ("=", "source")})
    elif template == "envoy-tcp-connect-error-ratio":
        labels = (cluster_label,)
        selector = ENVOY_ATTEMPTS[0]
    else:
        return None

    def spacing(back: float) -> str:
        # A span shorter than the gap since the newest sample finds that sample at both ends: 0 / 0, dropped.
        return (
            f"(timestamp({selector}) - timestamp({selector} offset {prom_duration(back)}))"
            f" / count_over_time({selector}[{round(back * 1000) - 1}ms]) > 0"
        )

    # The longest span each series has a sample at both ends of (``or`` keeps the first answer per series).
    either = " or ".join(f"({spacing(back)})" for back in SPACING_SPANS)
    return GroupedQueries(labels, {"interval": f"max by ({', '.join(labels)}) ({either})"})


def interval_groups(template: str, variables: Variables) -> list[tuple[str, ...]]:
    """The groups of ``scrape_interval_queries`` holding the counters one policy's check reads: the canary's
    and the stable's (the stable's is there at weight 0, before the canary has a series)."""
    if template in {"istio-tcp-connect-error-ratio", "istio-tcp-connections"}:
        workloads = (variables.canary_workload, variables.stable_workload)
        return [(workload, variables.namespace) for workload in workloads if workload is not None]
    if template == "envoy-tcp-connect-error-ratio":
        return [(cluster,) for cluster in (variables.canary_cluster, variables.stable_cluster) if cluster is not None]
    return []
