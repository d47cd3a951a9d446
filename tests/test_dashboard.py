"""The Grafana dashboard the Helm chart ships: every query asks for series the controller really exports.

Metric names and label names come from a live ``ControllerMetrics`` registry, so renaming a metric (or a
label) without updating ``helm/dashboards/canary-controller.json`` fails here, as does a new ``canary_*``
metric that no panel shows. ``tests/prom/test_dashboard_queries.py`` runs the same queries on a real
Prometheus scraping the daemon's ``/metrics``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from controller.runtime.metrics import ControllerMetrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "helm" / "dashboards" / "canary-controller.json"

TARGET_LABELS = frozenset({"job", "instance", "pod"})
"""Labels Prometheus adds to every scraped series (``pod`` by Kubernetes service discovery / ServiceMonitors)."""
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
GRAFANA_VARIABLES = frozenset(
    {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms", "__from", "__to"}
)
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"})
SET_OPERATORS = frozenset({"and", "or", "unless", "atan2"})
LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"}
)
FUNCTIONS = AGGREGATIONS | frozenset(
    {
        "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
        "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_quantile",
        "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln", "log2", "log10",
        "minute", "month", "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt",
        "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
        "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
        "present_over_time",
    }
)  # fmt: skip
"""Prometheus 2.42's aggregation operators and functions."""

TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{(?P<braced>\w+)(?::\w+)?\}|\$(?P<bare>\w+))
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|s|m|h|d|w|y)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|=~|!~|>=|<=|[-+*/%^<>=(){}\[\],])
    """,
    re.VERBOSE,
)
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\s*\)$")
CLOSING = {"(": ")", "[": "]", "{": "}"}


# ------------------------------------------------------------------------------------------ what is exported


@dataclass(frozen=True)
class Family:
    """One metric family of the registry: its series names and its own labels."""

    name: str
    kind: str
    series: frozenset[str]
    labels: frozenset[str]


def exported_families(metrics: ControllerMetrics | None = None) -> dict[str, Family]:
    """Every family ``ControllerMetrics`` registers, by family name."""
    metrics = metrics or ControllerMetrics()
    wrappers = [value for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]
    labels = {wrapper._name: frozenset(wrapper._labelnames) for wrapper in wrappers}
    families: dict[str, Family] = {}
    for family in metrics.registry.collect():
        assert family.type in SUFFIXES, f"{family.name}: metric type {family.type} not handled by this test"
        series = {family.name + suffix for suffix in SUFFIXES[family.type]} | {s.name for s in family.samples}
        assert family.name in labels, f"{family.name} is registered but is no attribute of ControllerMetrics"
        families[family.name] = Family(family.name, family.type, frozenset(series), labels[family.name])
    return families


def series_labels(families: dict[str, Family]) -> dict[str, frozenset[str]]:
    """Series name -> the labels it carries when scraped."""
    out: dict[str, frozenset[str]] = {}
    for family in families.values():
        for name in family.series:
            extra = {"le"} if name.endswith("_bucket") else set()
            out[name] = family.labels | TARGET_LABELS | extra
    return out


# ---------------------------------------------------------------------------------------------------- PromQL


@dataclass
class Query:
    """What a PromQL expression refers to."""

    selectors: list[tuple[str, set[str]]] = field(default_factory=list)  # (metric, matcher labels)
    grouping: set[str] = field(default_factory=set)  # by/without/on/ignoring/group_* labels
    functions: set[str] = field(default_factory=set)
    variables: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        """The series names selected."""
        return {name for name, _ in self.selectors}


def tokens(expr: str) -> list[tuple[str, str]]:
    """``(kind, text)`` tokens of a PromQL expression with Grafana variables; fails on anything else."""
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = TOKEN.match(expr, position)
        assert match is not None, f"cannot read {expr[position:]!r} in {expr!r}"
        kind = "variable" if match.group("variable") else match.lastgroup
        position = match.end()
        if kind is not None and kind != "space":
            found.append((kind, match.group(0)))
    return found


def check_balanced(expr: str, items: list[tuple[str, str]]) -> None:
    """Brackets nest and close (strings are single tokens, so brackets inside them do not count)."""
    stack: list[str] = []
    for kind, text in items:
        if kind != "op":
            continue
        if text in CLOSING:
            stack.append(CLOSING[text])
        elif text in CLOSING.values():
            assert stack, f"unbalanced {text!r} in {expr!r}"
            assert stack.pop() == text, f"unbalanced {text!r} in {expr!r}"
    assert not stack, f"unclosed {stack} in {expr!r}"


def analyse(expr: str) -> Query:
    """The metrics, labels, functions and variables a PromQL expression uses; checks its brackets."""
    assert expr.strip(), "empty expression"
    items = tokens(expr)
    check_balanced(expr, items)
    assert items[-1][1] not in {"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", ","}, expr
    query = Query()
    index = 0
    while index < len(items):
        kind, text = items[index]
        following = items[index + 1][1] if index + 1 < len(items) else ""
        if kind == "variable":
            query.variables.add(text.strip("${}").split(":")[0])
        elif text == "[":  # a range or subquery: durations and variables only
            end = next(i for i in range(index, len(items)) if items[i][1] == "]")
            for inner_kind, inner in items[index + 1 : end]:
                assert inner_kind in {"number", "variable"} or inner == ":", f"odd range {inner!r} in {expr!r}"
                if inner_kind == "variable":
                    query.variables.add(inner.strip("${}").split(":")[0])
            index = end
        elif kind == "ident" and text in LABEL_LISTS and following == "(":
            end = next(i for i in range(index, len(items)) if items[i][1] == ")")
            query.grouping |= {inner for inner_kind, inner in items[index + 2 : end] if inner_kind == "ident"}
            index = end
        elif kind == "ident" and (
            (following == "(" and text not in KEYWORDS | SET_OPERATORS)
            or (text in AGGREGATIONS and following in {"by", "without"})
        ):
            assert text in FUNCTIONS, f"unknown PromQL function {text}() in {expr!r}"
            query.functions.add(text)
        elif (kind == "ident" and text not in KEYWORDS | SET_OPERATORS) or text == "{":
            name = text if kind == "ident" else ""
            matchers: set[str] = set()
            if (following == "{" and name) or text == "{":
                start = index + (2 if name else 1)
                end = next(i for i in range(start, len(items)) if items[i][1] == "}")
                body = items[start:end]
                for position in range(0, len(body), 4):
                    label, operator, value = (body[position : position + 3] + [("", "")] * 3)[:3]
                    assert label[0] == "ident", f"bad matcher {body[position:]} in {expr!r}"
                    assert operator[1] in {"=", "!=", "=~", "!~"}, f"bad matcher operator in {expr!r}"
                    assert value[0] == "string", f"matcher value must be a string in {expr!r}"
                    for variable in VARIABLE.finditer(value[1]):
                        query.variables.add(next(group for group in variable.groups() if group))
                    matchers.add(label[1])
                index = end
            if name:
                query.selectors.append((name, matchers))
        index += 1
    return query


# ----------------------------------------------------------------------------------------------- the dashboard


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Panels, including those inside (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def load_dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def panel_targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query target of every panel."""
    return [(panel, target) for panel in all_panels(dashboard["panels"]) for target in panel.get("targets", [])]


def variable_query(variable: dict[str, Any]) -> str:
    """A query variable's query text (Grafana stores a string or ``{"query": ...}``)."""
    query = variable.get("query")
    text = query.get("query", "") if isinstance(query, dict) else query
    assert isinstance(text, str)
    return text


def strings_in(node: Any) -> Iterator[str]:
    """Every string anywhere in a JSON document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    """The dashboard the chart ships."""
    return load_dashboard()


@pytest.fixture(scope="module")
def families() -> dict[str, Family]:
    """What the controller exports."""
    return exported_families()


def test_is_a_grafana_dashboard_with_schema_39(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] == 39
    assert dashboard["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"]), "Grafana uids: at most 40 of [A-Za-z0-9_-]"
    assert dashboard.get("id") is None, "an exported id would clash with the importing Grafana's own ids"


def test_has_datasource_namespace_and_policy_variables(dashboard: dict[str, Any], families: dict[str, Family]) -> None:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "policy"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        match = LABEL_VALUES.match(variable_query(variable))
        assert match is not None, f"${name}: expected label_values(canary_weight..., {name})"
        assert match["label"] == name
        query = analyse(match["selector"])
        assert query.metrics == {"canary_weight"}
        assert name in families["canary_weight"].labels


def test_every_panel_queries_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    # A hard-coded datasource uid would point nowhere in another Grafana.
    for panel in all_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["title"], f"panel {panel['id']} has no title"
        assert panel.get("targets"), f"{panel['title']}: no query"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert target["expr"].strip(), f"{panel['title']}: empty query"


def test_panel_ids_and_query_refids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
    assert all(isinstance(item, int) for item in ids)
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    for panel in all_panels(dashboard["panels"]):
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), f"{panel['title']}: duplicate refIds {refs}"


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels(dashboard["panels"]):
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert min(grid["w"], grid["h"]) > 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} is wider than the 24-column grid"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_queries_use_only_exported_metrics_and_their_labels(
    dashboard: dict[str, Any], families: dict[str, Family]
) -> None:
    known = series_labels(families)
    for panel, target in panel_targets(dashboard):
        where = f"{panel['title']} ({target['refId']}): {target['expr']}"
        query = analyse(target["expr"])
        assert query.selectors, f"{where}: selects no metric"
        used_labels: set[str] = set(TARGET_LABELS)
        for metric, matchers in query.selectors:
            assert metric in known, f"{where}: {metric} is not exported by ControllerMetrics"
            assert matchers <= known[metric] | {"__name__"}, (
                f"{where}: {metric} has no label {matchers - known[metric]}"
            )
            used_labels |= known[metric]
        assert query.grouping <= used_labels, f"{where}: no such label {query.grouping - used_labels}"
        legend = set(LEGEND_LABEL.findall(target.get("legendFormat", "")))
        assert legend <= used_labels, f"{where}: legend uses {legend - used_labels}"
        if any(metric.endswith("_bucket") for metric in query.metrics):
            assert "histogram_quantile" in query.functions, f"{where}: buckets without histogram_quantile"
            assert "le" in query.grouping, f"{where}: histogram_quantile needs the le label kept"
        counters = {series for family in families.values() if family.kind == "counter" for series in family.series}
        if query.metrics & counters:
            assert query.functions & {"rate", "increase", "irate"}, f"{where}: a raw counter, not a rate"


def test_every_controller_metric_is_on_the_dashboard(dashboard: dict[str, Any], families: dict[str, Family]) -> None:
    used = {metric for _, target in panel_targets(dashboard) for metric in analyse(target["expr"]).metrics}
    missing = sorted(
        name for name, family in families.items() if name.startswith("canary_") and not used & family.series
    )
    assert not missing, f"no panel shows {missing}"


def test_tick_duration_is_a_histogram_shown_as_p50_and_p99(
    dashboard: dict[str, Any], families: dict[str, Family]
) -> None:
    assert families["canary_tick_duration_seconds"].kind == "histogram"
    exprs = [target["expr"] for _, target in panel_targets(dashboard)]
    for quantile in ("0.5", "0.99"):
        assert any(
            re.search(rf"histogram_quantile\(\s*{re.escape(quantile)}\s*,.*canary_tick_duration_seconds_bucket", expr)
            for expr in exprs
        ), f"no p{float(quantile) * 100:g} of canary_tick_duration_seconds"


def test_every_variable_used_is_defined(dashboard: dict[str, Any]) -> None:
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}
    used: set[str] = set()
    for text in strings_in({key: value for key, value in dashboard.items() if key != "templating"}):
        for match in VARIABLE.finditer(text):
            used.add(next(group for group in match.groups() if group))
    for variable in dashboard["templating"]["list"]:
        for text in strings_in({key: value for key, value in variable.items() if key != "name"}):
            for match in VARIABLE.finditer(text):
                used.add(next(group for group in match.groups() if group))
    assert used - GRAFANA_VARIABLES <= defined, f"undefined variables: {sorted(used - GRAFANA_VARIABLES - defined)}"
    assert {"namespace", "policy", "datasource"} <= used, "a template variable that no panel uses"


def test_per_policy_panels_follow_the_namespace_and_policy_variables(
    dashboard: dict[str, Any], families: dict[str, Family]
) -> None:
    per_policy = {name for name, family in families.items() if {"namespace", "policy"} <= family.labels}
    assert per_policy, "no metric has namespace and policy labels"
    for panel, target in panel_targets(dashboard):
        for metric, matchers in analyse(target["expr"]).selectors:
            if metric in per_policy:
                assert {"namespace", "policy"} <= matchers, f"{panel['title']}: {metric} ignores $namespace/$policy"
