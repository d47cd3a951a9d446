"""Values that lint used to accept but the controller cannot use, and lint's messages for common slips.

Issue 13 item 5 (trailing newlines, unbounded durations, raw values echoed) and issue 12 item 5 (messages
for ``interval: 30``, ``max: 1%`` and literal secrets).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from controller.cli import app
from controller.core.durations import MAX_GO_DURATION_SECONDS, parse_go_duration
from controller.core.problems import validate_policy
from tests.support.policies import policy_doc

runner = CliRunner()


def _problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    policy, problems = validate_policy(doc)
    assert (policy is None) == bool(problems)
    return [(p.dotted, p.message) for p in problems]


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = result
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value
    return result


def _analysed() -> dict[str, Any]:
    doc = policy_doc()
    doc["spec"]["analysis"] = {
        "interval": "30s",
        "selector": {"canaryWorkload": "tcp-echo-v2", "stableWorkload": "tcp-echo-v1"},
        "metrics": [{"name": "connect-errors", "template": "istio-tcp-connect-error-ratio", "max": 0.01}],
    }
    return doc


# ------------------------------------------------------------------------------------------ whole matches


@pytest.mark.parametrize(
    "path",
    [
        "metadata.name",
        "spec.target.virtualService.name",
        "spec.target.stable.host",
        "spec.target.canary.host",
        "spec.schedule.stepDuration",
    ],
)
def test_refuses_a_value_with_the_trailing_newline_that_a_yaml_block_scalar_leaves(path: str) -> None:
    doc = policy_doc()
    node: Any = doc
    for part in path.split(".")[:-1]:
        node = node[part]
    value = node[path.rsplit(".", maxsplit=1)[-1]] + "\n"  # what `name: |` produces
    problems = _problems(_set(doc, path, value))
    assert [where for where, _ in problems] == [path]
    assert "\\n" in problems[0][1]  # shown escaped, on the same line


def test_parse_go_duration_refuses_a_trailing_newline() -> None:
    with pytest.raises(ValueError, match="Go-style duration"):
        parse_go_duration("2m\n")


# ------------------------------------------------------------------------------------------ bounded durations


def test_a_duration_longer_than_go_allows_is_refused_with_the_limit() -> None:
    # 100000000h ended in OverflowError inside the controller's date arithmetic.
    problems = _problems(policy_doc(step_duration="100000000h"))
    assert problems == [
        (
            "spec.schedule.stepDuration",
            "must be at most 2562047h47m16.854775807s (about 292 years), the longest Go duration (got '100000000h')",
        )
    ]


def test_the_longest_go_duration_is_accepted_and_one_hour_more_is_not() -> None:
    assert parse_go_duration("2562047h") <= MAX_GO_DURATION_SECONDS
    with pytest.raises(ValueError, match="longest Go duration"):
        parse_go_duration("2562048h")
    with pytest.raises(ValueError, match="longest Go duration"):
        parse_go_duration("9" * 400 + "s")


# ------------------------------------------------------------------------------------------ messages


def test_a_bare_number_for_a_duration_asks_for_a_unit() -> None:
    doc = _set(_analysed(), "spec.analysis.interval", 30)
    assert _problems(doc) == [
        ("spec.analysis.interval", "must be a duration with a unit, such as 30s (got the number 30)")
    ]


def test_a_percentage_for_a_threshold_says_how_to_write_it_as_a_fraction() -> None:
    doc = _set(_analysed(), "spec.analysis.metrics.0.max", "1%")
    assert _problems(doc) == [
        ("spec.analysis.metrics[0].max", "must be a number; ratios are fractions, so 1% is written 0.01 (got '1%')")
    ]


def test_a_fractional_count_or_duration_gets_one_message_on_the_field() -> None:
    doc = _set(_analysed(), "spec.analysis.maxInconclusive", 2.5)
    assert _problems(doc) == [
        (
            "spec.analysis.maxInconclusive",
            "must be a count (a whole number such as 10) or a duration with a unit such as 10m (got the number 2.5)",
        )
    ]


SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"


@pytest.mark.parametrize(
    ("route", "where", "suggests"),
    [
        ({"slack": {"webhookUrl": SLACK_URL}}, "spec.alerts[0].slack.webhookUrl", "{env: VARIABLE}"),
        ({"teams": SLACK_URL}, "spec.alerts[0].teams", "{webhookUrl: {env: VARIABLE}}"),
        ({"webhook": SLACK_URL}, "spec.alerts[0].webhook", "{url: {secretKeyRef: {name: SECRET, key: KEY}}}"),
        ({"webhook": {"url": {"env": "HOOK"}, "secret": SLACK_URL}}, "spec.alerts[0].webhook.secret", "{secretKeyRef"),
    ],
)
def test_a_literal_webhook_url_or_token_is_refused_suggesting_a_reference_without_echoing_it(
    route: dict[str, Any], where: str, suggests: str
) -> None:
    doc = policy_doc()
    doc["spec"]["alerts"] = [{"name": "oncall", **route}]
    problems = _problems(doc)
    assert [path for path, _ in problems] == [where]
    assert suggests in problems[0][1]
    assert "hooks.slack.com" not in problems[0][1]


def test_a_literal_bearer_token_for_prometheus_is_refused_without_echoing_it() -> None:
    doc = _analysed()
    doc["spec"]["analysis"]["prometheus"] = {"url": "http://prometheus:9090", "bearerToken": "eyJhbGciOi.secret"}
    problems = _problems(doc)
    assert [path for path, _ in problems] == ["spec.analysis.prometheus.bearerToken"]
    assert "{secretKeyRef: {name: SECRET, key: KEY}} or {env: VARIABLE}" in problems[0][1]
    assert "eyJ" not in problems[0][1]


def test_an_authorization_header_in_the_policy_is_refused() -> None:
    doc = _analysed()
    doc["spec"]["analysis"]["prometheus"] = {"headers": {"Authorization": "Bearer abc", "X-Scope-OrgID": "team"}}
    problems = _problems(doc)
    assert [path for path, _ in problems] == ["spec.analysis.prometheus.headers.Authorization"]
    assert "bearerToken or basicAuth" in problems[0][1]


# ------------------------------------------------------------------------------------------ escaped output

FORGED = "tcp-echo\n/etc/forged.yaml:1: metadata.name: \x1b[31mall good\x1b[0m"


def _lint_file(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["lint", str(path)])
    assert result.exit_code == 1
    return result.output.splitlines()


def test_lint_prints_a_value_holding_a_newline_and_escapes_on_one_escaped_line(tmp_path: Path) -> None:
    import yaml  # noqa: PLC0415

    text = yaml.safe_dump(_set(policy_doc(), "metadata.name", FORGED))
    lines = _lint_file(tmp_path, text)
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'p.yaml'}:")
    assert "\x1b" not in lines[0]
    assert "\\x1b[31m" in lines[0]


def test_lint_shows_an_unknown_key_holding_a_newline_escaped(tmp_path: Path) -> None:
    import yaml  # noqa: PLC0415

    doc = policy_doc()
    doc["spec"]["schedule"]["x\nforged.yaml:1: ok"] = 1
    lines = _lint_file(tmp_path, yaml.safe_dump(doc))
    assert len(lines) == 1
    assert "spec.schedule['x\\nforged.yaml:1: ok']: unknown field" in lines[0]


# ------------------------------------------------------------------------------------------ custom queries


def _with_query(query: str) -> dict[str, Any]:
    doc = _analysed()
    doc["spec"]["analysis"]["metrics"] = [{"name": "custom", "query": query, "max": 1}]
    return doc


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ('sum(x{pod="{{ workload }}"})', 'is inside quotes ("...")'),
        ("sum(x{pod='{{ canary_workload }}'})", "is inside quotes ('...')"),
        ('sum(x{pod=~"{{ workload | regex }}.*"})', "is inside quotes"),
        ('sum(x{ {{ workload }}="a" })', "stands where a label name goes"),
        ("sum by ({{ workload }}) (x)", "stands where a label name goes"),
        ("sum(x) without (pod, {{ namespace }})", "stands where a label name goes"),
        ("{{ workload }}_connections_total", "is glued to a name"),
    ],
)
def test_refuses_a_custom_query_placeholder_that_can_never_parse(query: str, says: str) -> None:
    problems = _problems(_with_query(query))
    assert [path for path, _ in problems] == ["spec.analysis.metrics[0].query"]
    assert says in problems[0][1]


@pytest.mark.parametrize(
    "query",
    [
        'sum(x{pod={{ workload }}, ns={{ namespace }}, c=~{{ canary_cluster | regex }}, a="}"}[{{ window }}])',
        'sum by (pod) (rate(x{w!={{ workload }}, e="\\"x"}[{{ window }}])) > {{ step_start }}',
        'label_replace(x{w={{ workload }}}, "dst", "{{ window }}", "src", "")  # "{{ workload }}" in a comment',
    ],
)
def test_accepts_placeholders_where_a_label_value_or_number_goes(query: str) -> None:
    doc = _with_query(query)
    doc["spec"]["analysis"]["selector"]["canaryCluster"] = "outbound|9000|v2|tcp-echo"
    assert _problems(doc) == []
