"""The PagerDuty sink (Events API v2) against a local receiver that checks the documented event fields.

``EventsApiReceiver`` answers as PagerDuty's Events API v2 documents: ``202`` with ``{"status": "success",
"message": "Event processed", "dedup_key": ...}`` for a valid event, ``400`` with ``{"status": "invalid event",
"errors": [...]}`` naming what is wrong otherwise. An event is valid when ``routing_key`` is a 32-character
string, ``event_action`` is ``trigger``, ``acknowledge`` or ``resolve``, ``dedup_key`` is at most 255
characters (required unless triggering), and a trigger's ``payload`` has ``summary`` (1 to 1024 characters),
``source``, ``severity`` (critical, error, warning or info) and, when present, an ISO 8601 ``timestamp`` and
an object ``custom_details``; ``links`` are objects with an ``href``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import jsonschema
import pytest

from controller.adapters.alerts import HttpAlertDelivery, PagerDutySink, deliver
from controller.adapters.alerts.pagerduty import dedup_key
from controller.adapters.kubernetes.secrets import SecretReader
from controller.core.policy import CanaryPolicy
from controller.core.problems import validate_policy
from controller.core.status import Phase, Verdict
from controller.ports import PolicyRef
from controller.runtime.loop import SystemClock
from controller.service.alerting import AlertDispatcher
from tests.alerts.conftest import Received, Receiver, Reply, alert_message
from tests.fakes import MemoryStore
from tests.rollout_sim import Sim
from tests.support.http_server import StubHandler
from tests.support.paths import REPO
from tests.support.policies import policy_doc
from tests.test_rollout import seed_policy, seed_target

ROUTING_KEY = "R0ut1ngK3yOfTh3Serv1ce0123456789"
EVENTS_PATH = "/v2/enqueue"


def event_errors(event: Any) -> list[str]:
    """What PagerDuty's Events API v2 documents as invalid in ``event`` (empty: valid)."""
    if not isinstance(event, dict):
        return ["the event is not an object"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in {"trigger", "acknowledge", "resolve"}:
        errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 1 <= len(dedup) <= 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in {"acknowledge", "resolve"} and dedup is None:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing or not an object"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not 1 <= len(summary) <= 1024:
            errors.append("'payload.summary' must be 1 to 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            errors.append("'payload.source' is missing")
        if payload.get("severity") not in {"critical", "error", "warning", "info"}:
            errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
        if "timestamp" in payload:
            try:
                datetime.fromisoformat(str(payload["timestamp"]).replace("Z", "+00:00"))
            except ValueError:
                errors.append("'payload.timestamp' is not ISO 8601")
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
            errors.append("'payload.custom_details' must be an object")
    for link in event.get("links", []):
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            errors.append("each of 'links' must be an object with an 'href'")
    return errors


class EventsApiReceiver(Receiver):
    """A local Events API v2: validates each event and answers as PagerDuty does (unless scripted)."""

    def handle(self, request: StubHandler) -> None:
        """Script first; otherwise 202 for a valid event, 400 naming its errors for an invalid one."""
        with self._lock:
            scripted = bool(self._script)
        if scripted:
            super().handle(request)
            return
        body = request.body()
        with self._lock:
            self.requests.append(
                Received(method=request.command, path=request.path, headers=dict(request.headers.items()), body=body)
            )
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        errors = event_errors(event)
        if errors:
            answer = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
            request.reply(400, json.dumps(answer).encode(), "application/json", {})
            return
        answer = {"status": "success", "message": "Event processed", "dedup_key": event.get("dedup_key")}
        request.reply(202, json.dumps(answer).encode(), "application/json", {})


@pytest.fixture
def pagerduty() -> Iterator[EventsApiReceiver]:
    """The local Events API v2."""
    with EventsApiReceiver() as server:
        yield server


def sink_for(server: EventsApiReceiver, http: httpx.Client, routing_key: str = ROUTING_KEY) -> PagerDutySink:
    return PagerDutySink(http, routing_key=routing_key, url=server.url(EVENTS_PATH))


def test_the_receiver_refuses_what_pagerduty_refuses() -> None:
    # The checks are only worth something if they fail: a short key, a trigger without payload fields.
    assert event_errors({"routing_key": "short", "event_action": "trigger", "payload": {}}) == [
        "Length of 'routing_key' is incorrect (should be 32 characters)",
        "'payload.summary' must be 1 to 1024 characters",
        "'payload.source' is missing",
        "'payload.severity' is invalid (must be one of: critical, error, warning, info)",
    ]
    assert event_errors({"routing_key": ROUTING_KEY, "event_action": "resolve"}) == [
        "'dedup_key' is required for acknowledge and resolve"
    ]


def test_a_rollback_triggers_an_event_with_every_documented_field(
    pagerduty: EventsApiReceiver, http: httpx.Client
) -> None:
    message = alert_message()

    sink_for(pagerduty, http).send(message)

    event = pagerduty.last.json()
    assert event_errors(event) == []
    assert pagerduty.last.path == EVENTS_PATH
    assert pagerduty.last.header("Content-Type") == "application/json"
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == f"canary-controller/shop/tcp-echo/{message.run_id}"
    payload = event["payload"]
    assert payload["summary"] == "CanaryRolledBack: shop/tcp-echo: tcp-echo rolled back at 20% canary weight"
    assert payload["source"] == "VirtualService shop/tcp-echo"
    assert payload["severity"] == "critical"
    assert datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00")) == message.started_at
    assert (payload["component"], payload["group"], payload["class"]) == ("shop/tcp-echo", "shop", "CanaryRolledBack")
    details = payload["custom_details"]
    assert details["policy"] == "shop/tcp-echo"
    assert details["step"] == "step 2, weight 20%"
    assert details["weight"] == 20
    assert details["reason"] == "check error-rate failed at step 2"
    assert details["runId"] == message.run_id
    [check] = details["failingChecks"]
    assert (check["name"], check["canaryValue"], check["stableValue"], check["threshold"], check["sampleSize"]) == (
        "error-rate",
        0.05,
        0.001,
        "<= 0.012",
        1200,
    )
    assert event["links"] == [
        {"href": message.source_url, "text": "Graph: controller"},
        {"href": message.checks[0].graph_urls[0], "text": "Graph: error-rate"},
    ]
    assert event["client"] == "canary-controller"


def test_severity_follows_the_alert_and_a_long_summary_is_cut_to_1024(
    pagerduty: EventsApiReceiver, http: httpx.Client
) -> None:
    sink = sink_for(pagerduty, http)
    sink.send(alert_message(severity="warning", summary="s" * 3000))

    payload = pagerduty.last.json()["payload"]
    assert payload["severity"] == "warning"
    assert len(payload["summary"]) == 1024
    assert payload["summary"].endswith("…")


def test_a_resolved_message_resolves_the_same_incident(pagerduty: EventsApiReceiver, http: httpx.Client) -> None:
    message = alert_message()
    sink = sink_for(pagerduty, http)

    sink.send(message)
    sink.send(alert_message(run_id=message.run_id, state="resolved", ended_at=datetime.now(UTC)))

    trigger, resolve = (request.json() for request in pagerduty.requests)
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": trigger["dedup_key"]}


def test_each_run_of_a_policy_has_its_own_dedup_key_and_each_policy_too() -> None:
    first, second = alert_message(), alert_message()
    other_policy = alert_message(run_id=first.run_id, policy="other")

    assert dedup_key(first) != dedup_key(second)
    assert dedup_key(first) != dedup_key(other_policy)
    assert dedup_key(first) == dedup_key(alert_message(run_id=first.run_id, name="CanaryDriftDetected"))
    assert len(dedup_key(alert_message(run_id="r" * 400))) <= 255


def test_an_invalid_event_is_not_retried_and_the_error_hides_the_routing_key(
    pagerduty: EventsApiReceiver, http: httpx.Client
) -> None:
    bad_key = "not-32-characters-but-secret-1234"
    outcome = deliver(sink_for(pagerduty, http, routing_key=bad_key), alert_message(), sleep=lambda _: None)

    assert (outcome.result, outcome.attempts, outcome.retryable) == ("failed", 1, False)
    assert outcome.error is not None
    assert "pagerduty sink: http://127.0.0.1:" in outcome.error
    assert "answered HTTP 400" in outcome.error
    assert bad_key not in outcome.error


def test_throttling_and_server_errors_are_retried_then_sent(pagerduty: EventsApiReceiver, http: httpx.Client) -> None:
    pagerduty.script(Reply(status=429, body=b"{}", headers={"Retry-After": "0"}), Reply(status=503, body=b"{}"))
    waits: list[float] = []

    outcome = deliver(sink_for(pagerduty, http), alert_message(), sleep=waits.append)

    assert (outcome.result, outcome.attempts) == ("sent", 3)
    assert len(waits) == 2
    assert len({request.json()["dedup_key"] for request in pagerduty.requests}) == 1


def test_an_empty_routing_key_is_refused_by_name(http: httpx.Client) -> None:
    with pytest.raises(ValueError, match="pagerduty sink: the routing key is empty"):
        PagerDutySink(http, routing_key="  ", url="https://events.pagerduty.com/v2/enqueue")


# ------------------------------------------------------------------------- through the outbox, end to end


def _policy_paging(url: str) -> CanaryPolicy:
    doc = seed_policy(stepDuration="1m").model_dump(mode="json")
    doc["spec"]["alerts"] = [{"name": "pager", "pagerduty": {"routingKey": {"env": "PD_ROUTING_KEY"}, "url": url}}]
    return CanaryPolicy.model_validate(doc)


def test_a_rollback_pages_once_and_a_later_promoted_run_resolves_the_incident(
    pagerduty: EventsApiReceiver,
) -> None:
    policy = _policy_paging(pagerduty.url(EVENTS_PATH))
    sim = Sim(policy, seed_target())
    sim.run_until({Phase.PROGRESSING})
    sim.tick(1)
    sim.verdict = Verdict.FAIL
    sim.run_until({Phase.ROLLED_BACK})
    store = MemoryStore()
    ref = PolicyRef("default", "tcp-echo", "file")
    store.save(policy=ref, status=sim.status, version=None)
    delivery = HttpAlertDelivery(secrets=SecretReader(environ={"PD_ROUTING_KEY": ROUTING_KEY}))
    dispatcher = AlertDispatcher(delivery=delivery, store_for=lambda _: store, clock=SystemClock())
    try:
        dispatcher.maintain(policy=policy, ref=ref, status=store.load(policy=ref).status)
        assert dispatcher.wait_idle(10)
        # Nothing more is sent while the rollout stays rolled back: the incident stays open by itself.
        dispatcher.maintain(policy=policy, ref=ref, status=store.load(policy=ref).status)
        assert dispatcher.wait_idle(10)
        saved = store.load(policy=ref).status
        assert [(r.sink, r.result) for r in saved.alert_log] == [("pager/pagerduty", "sent")]
        assert [f.route for f in saved.firing_alerts] == ["pager"]
        assert [request.json()["event_action"] for request in pagerduty.requests] == ["trigger"]

        promoted = saved.model_copy(update={"phase": Phase.PROMOTED, "run_id": "later-run"})
        dispatcher.maintain(policy=policy, ref=ref, status=promoted)
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.shutdown()

    trigger, resolve = (request.json() for request in pagerduty.requests)
    assert event_errors(trigger) == event_errors(resolve) == []
    assert trigger["dedup_key"] == f"canary-controller/{policy.metadata.namespace}/tcp-echo/{sim.status.run_id}"
    assert trigger["payload"]["custom_details"]["alert"] == "CanaryRolledBack"
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": trigger["dedup_key"]}
    assert store.load(policy=ref).status.firing_alerts == []


def _lint(route: dict[str, Any]) -> list[tuple[str, str]]:
    doc = policy_doc()
    doc["spec"]["alerts"] = [{"name": "pager", **route}]
    _, problems = validate_policy(doc)
    return [(problem.dotted, problem.message) for problem in problems]


def test_a_pagerduty_route_refuses_canary_promoted_and_names_the_field() -> None:
    problems = _lint({"pagerduty": {"routingKey": {"env": "PD"}}, "on": ["CanaryRolledBack", "CanaryPromoted"]})

    assert [path for path, _ in problems] == ["spec.alerts[0].on"]
    assert "cannot take CanaryPromoted" in problems[0][1]


def test_a_routing_key_written_inline_is_refused_with_how_to_reference_it_without_echoing_it() -> None:
    problems = _lint({"pagerduty": {"routingKey": ROUTING_KEY}})

    assert [path for path, _ in problems] == ["spec.alerts[0].pagerduty.routingKey"]
    assert "{env: VARIABLE}" in problems[0][1]
    assert ROUTING_KEY not in problems[0][1]


def test_the_shipped_json_schema_agrees_with_the_policy_model_on_pagerduty_routes() -> None:
    schema = json.loads((REPO / "policies" / "canarypolicy.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    good, bad = policy_doc(), policy_doc()
    good["spec"]["alerts"] = [{"name": "pager", "pagerduty": {"routingKey": {"env": "PD"}}}]
    bad["spec"]["alerts"] = [{"name": "pager", "pagerduty": {"routingKey": {"env": "PD"}}, "on": ["CanaryPromoted"]}]

    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors(bad)) != []
    assert _lint(good["spec"]["alerts"][0]) == []


def test_a_tenant_policy_cannot_take_its_routing_key_from_the_controllers_environment() -> None:
    from controller.core.admission import TenantRules, refusals  # noqa: PLC0415

    policy = _policy_paging("https://events.pagerduty.com/v2/enqueue")

    assert [refusal.field for refusal in refusals(policy, TenantRules())] == ["spec.alerts[0].pagerduty.routingKey.env"]
    assert refusals(policy, TenantRules(env_names=frozenset({"PD_ROUTING_KEY"}))) == []
