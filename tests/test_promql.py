"""PromQL templates: exact counting form, selection of the canary, and no injection."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.measurement import VectorOutcome
from controller.core.promql import (
    PART_LABEL,
    Variables,
    envoy_counts,
    expand_custom,
    grouped_queries,
    istio_counts,
    quote,
    regex_escape,
)

VARS = Variables(
    namespace="shop",
    window_seconds=75.9,
    step_start=1700000000.5,
    canary_workload="tcp-echo-v2",
    stable_workload="tcp-echo-v1",
    canary_service="tcp-echo-v2.shop.svc.cluster.local",
    canary_cluster="outbound|9000|v2|tcp-echo",
    stable_cluster="outbound|9000|v1|tcp-echo",
)


def test_istio_counts_select_the_canary_by_workload_never_by_version() -> None:
    queries = istio_counts(VARS, "canary")
    assert 'destination_workload="tcp-echo-v2"' in queries.errors
    assert 'reporter="source"' in queries.errors
    assert 'response_flags!="-"' in queries.errors
    assert "destination_version" not in queries.errors + queries.total
    assert "offset 75900ms" in queries.total


def test_unrouted_failures_are_counted_by_service_when_the_canary_has_its_own() -> None:
    queries = istio_counts(VARS, "canary")
    assert 'destination_service="tcp-echo-v2.shop.svc.cluster.local",destination_workload="unknown"' in queries.errors
    assert "destination_service" not in istio_counts(VARS, "stable").errors


def test_envoy_counts_tolerate_missing_optional_counters_but_not_missing_attempts() -> None:
    queries = envoy_counts(VARS, "stable")
    assert queries.total.startswith("(sum((((last_over_time(envoy_cluster_upstream_cx_total{")
    assert "envoy_cluster_upstream_cx_overflow" in queries.total
    assert queries.total.count("or vector(0)") == 2
    assert queries.errors.count("or vector(0)") == 3


def test_istio_proxies_cluster_name_label_is_selectable() -> None:
    assert 'envoy_cluster_name="outbound|9000|v1|tcp-echo"' in envoy_counts(VARS, "stable").total
    istio = replace(VARS, cluster_label="cluster_name")
    queries = envoy_counts(istio, "stable")
    assert 'cluster_name="outbound|9000|v1|tcp-echo"' in queries.total
    assert "envoy_cluster_name" not in queries.total + queries.errors
    grouped = grouped_queries("envoy-tcp-connect-error-ratio", 30, cluster_label="cluster_name")
    assert grouped is not None
    assert grouped.labels == ("cluster_name",)
    assert all(q.startswith("sum by (cluster_name) (") for q in grouped.parts.values())


def test_custom_queries_quote_every_value_and_escape_regexes() -> None:
    query = "sum(x{w={{ workload }}, re=~{{ canary_cluster | regex }}}[{{ window }}]) > {{ step_start }}"
    assert expand_custom(query, VARS, "stable") == (
        'sum(x{w="tcp-echo-v1", re=~"outbound\\\\|9000\\\\|v2\\\\|tcp-echo"}[75900ms]) > 1700000000.500'
    )


def test_a_variable_without_a_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="stable_service"):
        expand_custom("x{s={{ stable_service }}}", VARS, "canary")


@given(st.text(max_size=40))
def test_a_quoted_value_cannot_close_its_string(value: str) -> None:
    quoted = quote(value)
    inner = quoted[1:-1]
    # Every double quote inside is escaped, so the literal ends exactly at the last character.
    i = 0
    while i < len(inner):
        if inner[i] == "\\":
            i += 2
            continue
        assert inner[i] != '"'
        i += 1


def test_regex_escape_neutralises_metacharacters() -> None:
    assert regex_escape("a.b|c*") == "a\\.b\\|c\\*"


def test_a_templates_counters_are_fetched_in_one_query_and_split_back_by_part() -> None:
    queries = grouped_queries("istio-tcp-connect-error-ratio", 30.0, scrape_interval_seconds=15.0)
    assert queries is not None
    assert set(queries.parts) == {"total", "errors"}
    combined = queries.combined
    for name, query in queries.parts.items():
        assert f'label_replace({query}, "{PART_LABEL}", "{name}", "", "")' in combined
    assert combined.count(" or label_replace(") == 1
    assert queries.combined_labels == (PART_LABEL, "destination_workload", "destination_workload_namespace")
    answer = VectorOutcome(
        query=combined,
        values={
            ("total", "tcp-echo-v2", "shop"): 250.0,
            ("errors", "tcp-echo-v2", "shop"): 3.0,
            ("total", "v1", "shop"): 9.0,
        },
    )
    split = queries.split(answer)
    assert split["total"].values == {("tcp-echo-v2", "shop"): 250.0, ("v1", "shop"): 9.0}
    assert split["errors"].values == {("tcp-echo-v2", "shop"): 3.0}
    assert split["errors"].outcome_for(("v1", "shop"), query="q").value is None, "no series: no data"
    failed = queries.split(VectorOutcome(query=combined, error="query timed out after 10s"))
    assert {name: part.error for name, part in failed.items()} == {
        "total": "query timed out after 10s",
        "errors": "query timed out after 10s",
    }
    # One counter: its own query, unchanged.
    single = grouped_queries("istio-tcp-connections", 30.0)
    assert single is not None
    assert single.combined == single.parts["total"]
    assert single.combined_labels == single.labels
    assert single.split(answer)["total"] is answer
