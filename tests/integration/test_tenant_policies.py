"""A CanaryPolicy author cannot make the controller send secrets to a server of theirs (issue 13, item 1).

The composed controller (settings -> adapters -> daemon) runs against the Kubernetes API emulator with
the real Prometheus analysis and alert delivery. Two loopback HTTP servers stand in for the default
Prometheus (answering every query with 0) and for a server of the tenant's (recording every request).
The controller holds the operator's secrets: the default bearer token, the default Prometheus password
in its URL, and a chat webhook URL, all in its environment; the tenant's namespace holds a Secret the
author may not read. Each attack is a CanaryPolicy resource in the tenant's namespace; an honest policy
in another namespace rolls out alongside and must not be harmed.
"""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.runtime.composition import build_loop
from controller.settings import Settings
from tests.sandbox.conftest import document
from tests.support.paths import REPO, SHARED_ISTIO
from tests.support.recording_server import RecordingServer, recording_server

CRD = REPO / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
CR = "canarypolicies.canaryctl.dev"
VS = "virtualservices.networking.istio.io"
DEFAULT_TOKEN = "default-bearer-token-0f3a9c"
PROMETHEUS_PASSWORD = "prometheus-password-77e1d2"
SLACK_URL_PATH = "/services/T000/B000/slack-secret-5b8e4a"
TENANT_UNREADABLE = "db-password-not-for-the-tenant-91c0"


@dataclass
class Outcome:
    """What the controller did in the scenario."""

    emulator: KubeApiEmulator
    tenant: RecordingServer
    prometheus: RecordingServer
    slack: RecordingServer

    def policy(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.emulator.get(CR, name, namespace=namespace)
        assert found is not None
        return found

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.emulator.list("events", namespace="tenant") if e["involvedObject"]["name"] == name]


def _policy(namespace: str, name: str, *, analysis: dict[str, Any], alerts: list[Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "policies" / "tcp-echo.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": namespace}
    doc["spec"]["target"]["virtualService"] = {"name": name}
    doc["spec"].pop("workload")
    doc["spec"]["schedule"]["stepDuration"] = "300ms"
    doc["spec"]["analysis"] = {"interval": "100ms", **analysis}
    doc["spec"]["alerts"] = alerts or []
    return doc


def _checks(maximum: float) -> dict[str, Any]:
    return {"metrics": [{"name": "errors", "query": "vector(0)", "max": maximum}]}


def _route(emulator: KubeApiEmulator, namespace: str, name: str) -> None:
    vs = copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService"))
    vs["metadata"] = {"name": name, "namespace": namespace}
    emulator.put(vs, namespace=namespace)


def _tick_until(controller: Any, done: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done():
        controller.tick()
        time.sleep(0.05)
    for _ in range(10):  # a few more passes: anything a refused policy would do has time to happen
        controller.tick()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    if not SHARED_ISTIO.is_dir():
        pytest.fail("shared Istio test data missing")
    monkeypatch = pytest.MonkeyPatch()
    with (
        recording_server(value=0.0) as prometheus,
        recording_server(value=0.0) as tenant,
        recording_server() as slack,
        KubeApiEmulator(crds=[CRD, SHARED_ISTIO / "virtualservice-crd.yaml"]) as emulator,
    ):
        monkeypatch.setenv("PROM_TOKEN", DEFAULT_TOKEN)
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url + SLACK_URL_PATH)
        for namespace in ("shop", "tenant", "canary-system"):
            emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        emulator.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db", "namespace": "tenant"},
                "data": {"password": base64.b64encode(TENANT_UNREADABLE.encode()).decode()},
            },
            namespace="tenant",
        )
        _route(emulator, "shop", "honest")
        emulator.create(_policy("shop", "honest", analysis=_checks(0.5)))
        attacks = {
            "default-token": {"prometheus": {"url": tenant.url}, **_checks(0.5)},
            "env-token": {
                "prometheus": {"url": tenant.url, "bearerToken": {"env": "SLACK_WEBHOOK_URL"}},
                **_checks(0.5),
            },
            "secret-token": {
                "prometheus": {"url": tenant.url, "bearerToken": {"secretKeyRef": {"name": "db", "key": "password"}}},
                **_checks(0.5),
            },
        }
        for name, analysis in attacks.items():
            _route(emulator, "tenant", name)
            emulator.create(_policy("tenant", name, analysis=analysis))
        # Fails at once (0 > -1), rolls back, and alerts: to the tenant's own Alertmanager (allowed), and to
        # the operator's Slack through an {env} reference (refused).
        _route(emulator, "tenant", "alert-link")
        emulator.create(
            _policy(
                "tenant",
                "alert-link",
                analysis=_checks(-1),
                alerts=[{"name": "mine", "alertmanager": {"url": tenant.url}, "on": ["CanaryRolledBack"]}],
            )
        )
        _route(emulator, "tenant", "alert-env")
        emulator.create(
            _policy(
                "tenant",
                "alert-env",
                analysis=_checks(-1),
                alerts=[{"name": "ops", "slack": {"webhookUrl": {"env": "SLACK_WEBHOOK_URL"}}}],
            )
        )
        kubeconfig = tmp_path_factory.mktemp("kube") / "main"
        emulator.write_kubeconfig(kubeconfig, context_name="main")
        host = prometheus.url.removeprefix("http://")
        settings = Settings(
            kubeconfig=str(kubeconfig),
            tick_seconds=0.05,
            watch_crds=True,
            prometheus_url=f"http://promuser:{PROMETHEUS_PASSWORD}@{host}",
            prometheus_bearer_token_env="PROM_TOKEN",
        )
        controller = build_loop(settings)
        result = Outcome(emulator, tenant, prometheus, slack)

        def settled() -> bool:
            honest = (result.policy("shop", "honest").get("status") or {}).get("phase")
            alerted = any(r.path.startswith("/api/v2/alerts") for r in tenant.received())
            return honest == "Promoted" and alerted

        try:
            _tick_until(controller, settled, seconds=60)
            assert controller.dispatcher is not None
            controller.dispatcher.wait_idle(5)
        finally:
            controller.shutdown(timeout=5)
            monkeypatch.undo()
        yield result


def _refused(outcome: Outcome, name: str, field: str) -> None:
    status = outcome.policy("tenant", name).get("status") or {}
    ready = next(c for c in status.get("conditions", []) if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PolicyRefused")
    assert field in ready["message"]
    events = [e for e in outcome.events(name) if e["reason"] == "PolicyRefused"]
    assert events, f"no PolicyRefused event on tenant/{name}"
    assert field in events[0]["message"]
    assert events[0]["type"] == "Warning"


def test_the_default_bearer_token_never_reaches_a_server_a_policy_names(outcome: Outcome) -> None:
    assert DEFAULT_TOKEN not in outcome.tenant.everything()
    _refused(outcome, "default-token", "spec.analysis.prometheus.url")


def test_a_policy_cannot_read_the_controllers_environment_into_a_bearer_token(outcome: Outcome) -> None:
    assert SLACK_URL_PATH not in outcome.tenant.everything()
    _refused(outcome, "env-token", "spec.analysis.prometheus.bearerToken.env")


def test_a_secret_of_the_policys_namespace_never_goes_to_a_server_a_policy_names(outcome: Outcome) -> None:
    assert TENANT_UNREADABLE not in outcome.tenant.everything()
    _refused(outcome, "secret-token", "spec.analysis.prometheus.url")


def test_alerts_to_a_tenants_sink_carry_no_prometheus_password(outcome: Outcome) -> None:
    posts = [r for r in outcome.tenant.received() if r.path.startswith("/api/v2/alerts")]
    status = outcome.policy("tenant", "alert-link").get("status")
    assert posts, f"the tenant's own alert route is allowed and must receive the rollback alert: {status}"
    assert "/graph?" in posts[0].body.decode(), "the alert keeps its graph link, without the user info"
    assert PROMETHEUS_PASSWORD not in outcome.tenant.everything()
    assert (outcome.policy("tenant", "alert-link").get("status") or {}).get("phase") == "RolledBack"


def test_a_policy_cannot_send_its_alerts_through_the_operators_env_webhook(outcome: Outcome) -> None:
    assert outcome.slack.received() == []
    _refused(outcome, "alert-env", "spec.alerts[0].slack.webhookUrl.env")


def test_refused_policies_do_not_harm_another_namespaces_rollout(outcome: Outcome) -> None:
    honest = outcome.policy("shop", "honest")["status"]
    assert honest["phase"] == "Promoted", honest
    assert {c["type"]: c["status"] for c in honest["conditions"]} == {"Ready": "True", "Succeeded": "True"}
    # The honest policy names no Prometheus: it gets the default one, with the default credentials.
    queries = [r for r in outcome.prometheus.received() if r.path.startswith("/api/v1/query")]
    assert queries
    assert all(r.headers.get("Authorization") for r in queries)
    routes = outcome.emulator.get(VS, "honest", namespace="shop")
    assert routes is not None
    assert [d["weight"] for d in routes["spec"]["tcp"][0]["route"]] == [0, 100]


def test_refused_policies_never_move_their_routes(outcome: Outcome) -> None:
    original = document("tcp-echo-all-v1.yaml", "VirtualService")["spec"]
    for name in ("default-token", "env-token", "secret-token", "alert-env"):
        vs = outcome.emulator.get(VS, name, namespace="tenant")
        assert vs is not None
        assert vs["spec"] == original, name
