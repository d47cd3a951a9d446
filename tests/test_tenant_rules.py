"""What CanaryPolicy resources may reference, URL rules, and where the default Prometheus credentials go."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from controller.adapters.kubernetes.secrets import SecretReader
from controller.adapters.prometheus import PrometheusMetricsSource
from controller.core.admission import TenantRules, refusals
from controller.core.alerts import graph_url
from controller.core.policy import CanaryPolicy, PrometheusSpec
from controller.core.problems import validate_policy
from controller.core.url_rules import same_url, url_allowed
from controller.ports import PolicyRef, PolicySnapshot, SourcedPolicy
from controller.service.admission import screen
from controller.settings import Settings
from tests.prom.test_analysis_live import _policy
from tests.support.recording_server import recording_server

DEFAULT = "http://prometheus.istio-system:9090"


def _with(namespace: str = "shop", prometheus: dict[str, Any] | None = None, alerts: Any = None) -> CanaryPolicy:
    doc = _policy(namespace).model_dump(mode="json", exclude_none=True)
    if prometheus is not None:
        doc["spec"]["analysis"]["prometheus"] = prometheus
    if alerts is not None:
        doc["spec"]["alerts"] = alerts
    return CanaryPolicy.model_validate(doc)


def test_a_policy_naming_no_prometheus_or_the_default_one_is_accepted() -> None:
    rules = TenantRules(default_prometheus_url=DEFAULT)
    assert refusals(_with(), rules) == []
    assert refusals(_with(prometheus={"url": "http://Prometheus.istio-system:9090/"}), rules) == []


def test_a_policy_naming_another_prometheus_is_refused_naming_the_field() -> None:
    found = refusals(_with(prometheus={"url": "http://evil.example:9090"}), TenantRules(default_prometheus_url=DEFAULT))
    assert [refusal.field for refusal in found] == ["spec.analysis.prometheus.url"]
    assert "http://evil.example:9090 is not a Prometheus" in found[0].message
    assert "CANARY_POLICY_PROMETHEUS_URLS" in found[0].message


def test_per_namespace_prometheus_servers_are_allowed_by_a_pattern() -> None:
    rules = TenantRules(default_prometheus_url=DEFAULT, prometheus_urls=("http://prometheus.{namespace}:9090",))
    assert refusals(_with("shop", prometheus={"url": "http://prometheus.shop:9090"}), rules) == []
    refused = refusals(_with("shop", prometheus={"url": "http://prometheus.billing:9090"}), rules)
    assert [refusal.field for refusal in refused] == ["spec.analysis.prometheus.url"]
    assert url_allowed("http://anything:1", ("*",), namespace="shop")


def test_every_env_reference_of_a_policy_resource_is_refused_unless_allowed() -> None:
    policy = _with(
        prometheus={"basicAuth": {"username": "u", "password": {"env": "PROM_PASSWORD"}}, "caBundle": {"env": "CA"}},
        alerts=[
            {"name": "chat", "slack": {"webhookUrl": {"env": "SLACK_URL"}}},
            {"name": "hook", "webhook": {"url": {"secretKeyRef": {"name": "h", "key": "u"}}, "secret": {"env": "K"}}},
        ],
    )
    fields = [refusal.field for refusal in refusals(policy, TenantRules(default_prometheus_url=DEFAULT))]
    assert fields == [
        "spec.analysis.prometheus.basicAuth.password.env",
        "spec.analysis.prometheus.caBundle.env",
        "spec.alerts[0].slack.webhookUrl.env",
        "spec.alerts[1].webhook.secret.env",
    ]
    allowed = TenantRules(
        default_prometheus_url=DEFAULT, env_names=frozenset({"PROM_PASSWORD", "CA", "SLACK_URL", "K"})
    )
    assert refusals(policy, allowed) == []


def test_screen_refuses_resources_only_and_keeps_every_other_policy() -> None:
    bad = _with(prometheus={"url": "http://evil.example:9090"})
    good = _with("billing")
    snapshot = PolicySnapshot(
        policies=(
            SourcedPolicy(bad, PolicyRef("shop", "tcp-echo", "crd")),
            SourcedPolicy(good, PolicyRef("billing", "tcp-echo", "crd")),
            SourcedPolicy(bad, PolicyRef("shop", "tcp-echo", "file", location="p.yaml:1")),
        )
    )
    screened = screen(snapshot, TenantRules(default_prometheus_url=DEFAULT))
    assert [(p.ref.namespace, p.ref.source) for p in screened.policies] == [("billing", "crd"), ("shop", "file")]
    (problem,) = screened.problems
    assert (problem.reason, problem.location) == ("PolicyRefused", "shop/tcp-echo")
    assert problem.message.startswith("refused: spec.analysis.prometheus.url: ")


def test_lint_refuses_credentials_inside_urls() -> None:
    doc = _with().model_dump(mode="json", exclude_none=True)
    doc["spec"]["analysis"]["prometheus"] = {"url": "http://user:hunter2@prometheus:9090"}
    doc["spec"]["alerts"] = [{"name": "am", "alertmanager": {"url": "https://u:p@alertmanager:9093"}}]
    policy, problems = validate_policy(doc)
    assert policy is None
    assert sorted(problem.dotted for problem in problems) == [
        "spec.alerts[0].alertmanager.url",
        "spec.analysis.prometheus.url",
    ]
    assert all("credentials inside the URL" in problem.message for problem in problems)
    assert all("hunter2" not in problem.message for problem in problems)


def test_alert_graph_links_leave_out_the_prometheus_password() -> None:
    link = graph_url("http://user:hunter2@prometheus:9090/", "up", at=datetime(2026, 1, 1, tzinfo=UTC))
    assert link.startswith("http://prometheus:9090/graph?")
    assert "hunter2" not in link


def test_same_url_ignores_case_default_port_and_trailing_slash_but_not_user_info() -> None:
    assert same_url("https://Prom.example/", "https://prom.example:443")
    assert not same_url("http://a@prom:9090", "http://prom:9090")
    assert not same_url("http://prom:9091", "http://prom:9090")


def test_settings_refuse_allowed_urls_with_credentials_and_bad_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_POLICY_PROMETHEUS_URLS", "http://prometheus.{namespace}:9090, *")
    monkeypatch.setenv("CANARY_POLICY_ENV_ALLOWED", "TEAM_TOKEN")
    settings = Settings()
    assert settings.policy_prometheus_urls == ["http://prometheus.{namespace}:9090", "*"]
    assert settings.policy_env_allowed == ["TEAM_TOKEN"]
    monkeypatch.setenv("CANARY_POLICY_PROMETHEUS_URLS", "http://u:p@prom:9090")
    with pytest.raises(ValidationError, match="credentials inside the URL"):
        Settings()
    monkeypatch.setenv("CANARY_POLICY_PROMETHEUS_URLS", "")
    monkeypatch.setenv("CANARY_POLICY_ENV_ALLOWED", "NOT-A-NAME")
    with pytest.raises(ValidationError, match="not an environment variable name"):
        Settings()


def test_default_credentials_never_go_to_a_url_the_policy_names_even_when_allowed() -> None:
    """Attack 1 at the adapter: even with every URL allowed (``*``), the default token stays home."""
    with recording_server() as tenant:
        source = PrometheusMetricsSource(
            default_url=DEFAULT,
            secrets=SecretReader(environ={"PROM_TOKEN": "default-token-abc"}),
            default_spec=PrometheusSpec.model_validate(
                {"bearerToken": {"env": "PROM_TOKEN"}, "headers": {"X-Scope-OrgID": "operator"}}
            ),
        )
        try:
            outcome = source.query(query="up", at=datetime.now(UTC), connection=_with(prometheus={"url": tenant.url}))
            assert outcome.error is None
            assert outcome.value == 0.0
            default = source.connection(_with(prometheus={"url": DEFAULT + "/"}))
        finally:
            source.close()
        assert "default-token-abc" not in tenant.everything()
        assert "operator" not in tenant.everything()
        assert default.headers["Authorization"] == "Bearer default-token-abc", "the default URL keeps them"


def test_readiness_asks_prometheus_with_the_configured_token() -> None:
    with recording_server(require_authorization="Bearer ready-token") as prometheus:
        with_token = PrometheusMetricsSource(
            default_url=prometheus.url,
            secrets=SecretReader(environ={"PROM_TOKEN": "ready-token\n"}),
            default_spec=PrometheusSpec.model_validate({"bearerToken": {"env": "PROM_TOKEN"}}),
        )
        without = PrometheusMetricsSource(default_url=prometheus.url, secrets=SecretReader(environ={}))
        try:
            assert with_token.ready() is None
            reason = without.ready()
        finally:
            with_token.close()
            without.close()
        assert reason is not None
        assert "answered HTTP 401" in reason
        assert [r.path for r in prometheus.received()] == ["/-/ready", "/-/ready"]
