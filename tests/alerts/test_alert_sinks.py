"""Alert sinks against a real Alertmanager and a local receiver standing in for Slack, Teams, Discord and webhooks.

Payload shapes are checked against what each service documents (required keys, types, limits); failures are
checked for what the delivery does about them (retry or not, how long, what the error says and hides).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from controller.adapters.alerts import (
    SINK_KINDS,
    AlertmanagerSink,
    DiscordSink,
    SlackSink,
    TeamsSink,
    WebhookSink,
    deliver,
    embed_size,
    make_sink,
    verify_signature,
)
from controller.core.alerts import AlertMessage
from controller.errors import AlertDeliveryError
from tests.alerts.conftest import (
    ERROR_RATE_QUERY,
    AlertmanagerServer,
    Close,
    Hang,
    Receiver,
    Reply,
    alert_message,
    many_checks,
)
from tests.prom.servers import wait_until
from tests.support.clock import FakeClock

SLACK_TOKEN = "XkT3PqR8vLmN2sW9yZa4bC7d"
SLACK_PATH = f"/services/T0ABCDEFG/B0HIJKLMN/{SLACK_TOKEN}"
DISCORD_TOKEN = "mZ4qL9xT2vR7wK3pN8sJ5hF1gD6cB0aYuE-iO_tQ3rW8eX2zV7nM5kL1jH4gF9dS"
DISCORD_PATH = f"/api/webhooks/123456789012345678/{DISCORD_TOKEN}"
TEAMS_PATH = (
    "/webhookb2/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9@11111111-2222-3333-4444-555555555555"
    "/IncomingWebhook/9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
)
HMAC_SECRET = "whsec-9f8e7d6c5b4a3f2e1d0c"


def run_filter(message: AlertMessage) -> tuple[str, str]:
    """Alertmanager matchers selecting this message's alert."""
    return 'alertname="CanaryRolledBack"', f'run_id="{message.run_id}"'


def no_wait() -> tuple[list[float], Callable[[float], None]]:
    """A ``sleep`` that records the waits instead of waiting."""
    waits: list[float] = []
    return waits, waits.append


class AlwaysFailing:
    """A sink whose every attempt fails after ``cost`` seconds of (fake) time."""

    name = "fake"

    def __init__(
        self, clock: FakeClock, *, cost: float = 0.0, retryable: bool = True, retry_after: float | None = None
    ):
        self.clock = clock
        self.cost = cost
        self.retryable = retryable
        self.retry_after = retry_after
        self.timeouts: list[float | None] = []

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        self.timeouts.append(timeout)
        self.clock.now += self.cost if timeout is None else min(self.cost, timeout)
        raise AlertDeliveryError(
            ["fake sink: HTTP 503"], sink=self.name, status=503, retryable=self.retryable, retry_after=self.retry_after
        )


# ------------------------------------------------------------------------------------------------ Alertmanager


def test_a_firing_rollback_is_stored_by_alertmanager_with_its_labels_and_failing_measurement(
    alertmanager: AlertmanagerServer, http: httpx.Client
) -> None:
    message = alert_message()

    outcome = deliver(AlertmanagerSink(http, url=alertmanager.url + "/"), message)

    assert (outcome.result, outcome.attempts, outcome.error) == ("sent", 1, None)
    [alert] = wait_until(
        lambda: [a for a in alertmanager.alerts(*run_filter(message)) if a["status"]["state"] == "active"] or None,
        timeout=5,
        message="the alert never became active",
    )
    assert alert["labels"] == {
        "alertname": "CanaryRolledBack",
        "policy": "tcp-echo",
        "namespace": "shop",
        "severity": "critical",
        "run_id": message.run_id,
    }
    annotations = alert["annotations"]
    assert annotations["summary"] == message.summary
    assert annotations["description"] == message.description
    assert annotations["check_1_name"] == "error-rate"
    assert annotations["check_1_value"] == "0.05"
    assert annotations["check_1_stable_value"] == "0.001"
    assert annotations["check_1_threshold"] == "<= 0.012"
    assert annotations["check_1_sample_size"] == "1200"
    assert annotations["check_1_query"] == ERROR_RATE_QUERY
    assert annotations["check_1_graph_url"] == message.checks[0].graph_urls[0]
    assert "error-rate: fail (canary 0.05, stable 0.001, threshold <= 0.012" in annotations["checks"]
    assert alert["generatorURL"] == message.source_url
    assert datetime.fromisoformat(alert["startsAt"]) == message.started_at


def test_a_firing_alert_without_end_resolves_five_minutes_after_its_last_post(
    alertmanager: AlertmanagerServer, http: httpx.Client
) -> None:
    message = alert_message()

    AlertmanagerSink(http, url=alertmanager.url).send(message)

    [alert] = alertmanager.alerts(*run_filter(message))
    updated, ends = datetime.fromisoformat(alert["updatedAt"]), datetime.fromisoformat(alert["endsAt"])
    assert abs((ends - updated).total_seconds() - 300) < 1


def test_a_resolved_message_resolves_the_alert_in_alertmanager(
    alertmanager: AlertmanagerServer, http: httpx.Client
) -> None:
    sink = AlertmanagerSink(http, url=alertmanager.url)
    firing = alert_message()
    sink.send(firing)
    assert len(alertmanager.alerts(*run_filter(firing))) == 1
    resolved_before = alertmanager.received("resolved")

    sink.send(replace(firing, state="resolved", ended_at=datetime.now(UTC)))

    assert alertmanager.received("resolved") == resolved_before + 1
    # Alertmanager 0.25 lists resolved alerts under no combination of the state flags.
    for active in (True, False):
        assert alertmanager.alerts(*run_filter(firing), active=active) == []
        assert alertmanager.alerts(*run_filter(firing), active=active, silenced=False, inhibited=False) == []
        assert alertmanager.alerts(*run_filter(firing), active=active, unprocessed=False) == []


def test_posting_the_same_alert_again_updates_it_instead_of_adding_another(
    alertmanager: AlertmanagerServer, http: httpx.Client
) -> None:
    sink = AlertmanagerSink(http, url=alertmanager.url)
    message = alert_message()
    sink.send(message)
    [first] = alertmanager.alerts(*run_filter(message))

    sink.send(replace(message, description="still rolled back"))

    [again] = alertmanager.alerts(*run_filter(message))
    assert again["fingerprint"] == first["fingerprint"]
    assert again["annotations"]["description"] == "still rolled back"


def test_alertmanager_gets_one_alert_whose_annotation_names_it_accepts_whatever_the_check_names(
    alertmanager: AlertmanagerServer, http: httpx.Client
) -> None:
    message = alert_message(checks=many_checks(3, query_length=200), weight=None, from_phase=None)

    AlertmanagerSink(http, url=alertmanager.url).send(message)

    [alert] = alertmanager.alerts(*run_filter(message))
    assert alert["annotations"]["check_3_name"].startswith("check-02-")
    assert "weight" not in alert["annotations"]
    assert alert["annotations"]["phase"] == "(start) → RolledBack"


def test_alertmanager_sink_posts_a_list_of_one_v2_alert(receiver: Receiver, http: httpx.Client) -> None:
    message = alert_message(state="resolved", ended_at=datetime.now(UTC))

    AlertmanagerSink(http, url=receiver.url("/am/")).send(message)

    assert receiver.last.path == "/am/api/v2/alerts"
    [alert] = receiver.last.json()
    assert set(alert) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert datetime.fromisoformat(alert["endsAt"]) > datetime.fromisoformat(alert["startsAt"])


# ----------------------------------------------------------------------------------------------------- Slack


def check_slack_limits(payload: dict[str, Any]) -> None:
    """What Slack documents for incoming webhooks with Block Kit."""
    assert isinstance(payload["text"], str)
    assert payload["text"]
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        assert block["type"] in {"header", "section", "context", "divider"}
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert 1 <= len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn"
            assert 1 <= len(block["text"]["text"]) <= 3000
            assert len(block.get("fields", [])) <= 10
            for item in block.get("fields", []):
                assert item["type"] == "mrkdwn"
                assert 1 <= len(item["text"]) <= 2000
        if block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                assert element["type"] == "mrkdwn"
                assert 1 <= len(element["text"]) <= 3000


def test_slack_gets_a_text_fallback_and_blocks_with_every_fact_of_the_rollback(
    receiver: Receiver, http: httpx.Client
) -> None:
    message = alert_message()

    SlackSink(http, webhook_url=receiver.url(SLACK_PATH)).send(message)

    request = receiver.last
    assert request.header("Content-Type") == "application/json"
    payload = request.json()
    check_slack_limits(payload)
    header, facts, check, links = payload["blocks"]
    assert header["text"]["text"] == ":red_circle: FIRING: CanaryRolledBack: shop/tcp-echo"
    fields = "\n".join(item["text"] for item in facts["fields"])
    for fact in ("shop/tcp-echo", "VirtualService shop/tcp-echo", "tcp port 31400", "step 2, weight 20%"):
        assert fact in fields
    assert "Progressing → RolledBack" in fields
    assert message.run_id in fields
    assert "check error-rate failed at step 2" in fields
    assert "canary 0.05, stable 0.001, threshold &lt;= 0.012, sample size 1200" in check["text"]["text"]
    assert 'destination_workload="tcp-echo-v2"' in check["text"]["text"]
    assert f"<{message.checks[0].graph_urls[0]}|error-rate>" in [e["text"] for e in links["elements"]]
    assert payload["text"].startswith("[FIRING] CanaryRolledBack: shop/tcp-echo")


def test_slack_payload_stays_within_block_kit_limits_however_many_checks_fail(
    receiver: Receiver, http: httpx.Client
) -> None:
    message = alert_message(checks=many_checks(60), description="d" * 5000, summary="s" * 400)

    SlackSink(http, webhook_url=receiver.url(SLACK_PATH)).send(message)

    payload = receiver.last.json()
    check_slack_limits(payload)
    assert len(payload["blocks"]) == 50
    assert "and 14 more failing checks" in payload["blocks"][-2]["text"]["text"]


def test_a_resolved_message_shows_as_resolved_in_slack(receiver: Receiver, http: httpx.Client) -> None:
    SlackSink(http, webhook_url=receiver.url(SLACK_PATH)).send(
        alert_message(state="resolved", ended_at=datetime.now(UTC))
    )

    assert receiver.last.json()["blocks"][0]["text"]["text"].startswith(":white_check_mark: RESOLVED:")


# ----------------------------------------------------------------------------------------------------- Teams


def check_message_card(card: dict[str, Any]) -> None:
    """What Teams documents for connector MessageCards."""
    assert card["@type"] == "MessageCard"
    assert card["@context"] == "https://schema.org/extensions"
    assert isinstance(card["summary"], str)
    assert card["summary"]
    assert len(card["themeColor"]) == 6
    int(card["themeColor"], 16)
    for section in card["sections"]:
        for fact in section.get("facts", []):
            assert set(fact) == {"name", "value"}
            assert all(isinstance(value, str) and value for value in fact.values())
    actions = card.get("potentialAction", [])
    assert len(actions) <= 4
    for action in actions:
        assert action["@type"] == "OpenUri"
        assert action["targets"][0]["os"] == "default"
        assert action["targets"][0]["uri"].startswith("http")
    assert len(json.dumps(card).encode()) <= 28 * 1024


def test_teams_asked_for_a_message_card_gets_one_coloured_by_severity_with_facts_and_graph_buttons(
    receiver: Receiver, http: httpx.Client
) -> None:
    receiver.default = Reply(body=b"1")
    sink = TeamsSink(http, webhook_url=receiver.url(TEAMS_PATH), card_format="messageCard")

    sink.send(alert_message())
    critical = receiver.last.json()
    sink.send(alert_message(severity="warning"))
    warning = receiver.last.json()
    sink.send(alert_message(state="resolved", ended_at=datetime.now(UTC)))
    resolved = receiver.last.json()

    for card in (critical, warning, resolved):
        check_message_card(card)
    assert [critical["themeColor"], warning["themeColor"], resolved["themeColor"]] == ["D70000", "FFA500", "2EB886"]
    facts = {fact["name"]: fact["value"] for fact in critical["sections"][0]["facts"]}
    assert facts["Policy"] == "shop/tcp-echo"
    assert facts["Step / weight"] == "step 2, weight 20%"
    check_facts = {fact["name"]: fact["value"] for fact in critical["sections"][1]["facts"]}
    assert check_facts["Canary value"] == "0.05"
    assert check_facts["Sample size"] == "1200"
    assert "istio\\_tcp\\_connections\\_closed\\_total" in check_facts["Query"]
    assert [action["name"] for action in critical["potentialAction"]] == ["Graph: controller", "Graph: error-rate"]


def test_teams_message_card_stays_under_28_kb_however_many_checks_fail(receiver: Receiver, http: httpx.Client) -> None:
    receiver.default = Reply(body=b"1")

    sink = TeamsSink(http, webhook_url=receiver.url(TEAMS_PATH), card_format="messageCard")
    sink.send(alert_message(checks=many_checks(60)))

    card = receiver.last.json()
    check_message_card(card)
    assert card["sections"][-1]["activityTitle"].endswith("more failing checks (see the controller's status)")


def test_teams_reporting_a_failure_inside_a_200_is_a_failure_with_the_embedded_status(
    receiver: Receiver, http: httpx.Client
) -> None:
    throttled = (
        b"Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId"
    )
    gone = throttled.replace(b"429", b"400")
    receiver.script(Reply(body=throttled), Reply(body=gone))
    sink = TeamsSink(http, webhook_url=receiver.url(TEAMS_PATH))

    with pytest.raises(AlertDeliveryError) as first:
        sink.send(alert_message())
    with pytest.raises(AlertDeliveryError) as second:
        sink.send(alert_message())

    assert (first.value.status, first.value.retryable) == (429, True)
    assert (second.value.status, second.value.retryable) == (400, False)
    assert "teams sink: http://127.0.0.1:" in str(first.value)
    assert "reported HTTP error 429" in str(first.value)


# --------------------------------------------------------------------------------------------------- Discord


def check_discord_limits(payload: dict[str, Any]) -> None:
    """What Discord documents for webhook messages with embeds."""
    assert isinstance(payload["content"], str)
    assert len(payload["content"]) <= 2000
    assert 1 <= len(payload["embeds"]) <= 10
    total = 0
    for embed in payload["embeds"]:
        assert len(embed["title"]) <= 256
        assert len(embed["description"]) <= 4096
        assert isinstance(embed["color"], int)
        assert 0 <= embed["color"] <= 0xFFFFFF
        datetime.fromisoformat(embed["timestamp"])
        assert len(embed["fields"]) <= 25
        for item in embed["fields"]:
            assert 1 <= len(item["name"]) <= 256
            assert 1 <= len(item["value"]) <= 1024
            assert isinstance(item["inline"], bool)
        assert len(embed["footer"]["text"]) <= 2048
        total += embed_size(embed)
    assert total <= 6000
    assert payload["allowed_mentions"] == {"parse": []}


def test_discord_gets_content_and_an_embed_with_colour_fields_and_timestamp(
    receiver: Receiver, http: httpx.Client
) -> None:
    receiver.default = Reply(status=204, body=b"")
    message = alert_message()

    DiscordSink(http, webhook_url=receiver.url(DISCORD_PATH)).send(message)

    payload = receiver.last.json()
    check_discord_limits(payload)
    [embed] = payload["embeds"]
    assert embed["title"] == "FIRING: CanaryRolledBack: shop/tcp-echo"
    assert embed["color"] == 0xD70000
    assert datetime.fromisoformat(embed["timestamp"]) == message.started_at
    assert embed["url"] == message.source_url
    fields = {item["name"]: item["value"] for item in embed["fields"]}
    assert fields["Policy"] == "shop/tcp\\-echo"
    assert fields["Run id"] == message.run_id.replace("-", "\\-")
    assert "canary 0.05, stable 0.001" in fields["Check error-rate: fail"]
    assert ERROR_RATE_QUERY in fields["Check error-rate: fail"]
    assert f"({message.checks[0].graph_urls[0]})" in fields["Graphs"]


def test_discord_payload_is_cut_to_25_fields_of_1024_characters_and_6000_in_all(
    receiver: Receiver, http: httpx.Client
) -> None:
    receiver.default = Reply(status=204, body=b"")
    message = alert_message(checks=many_checks(40), description="d" * 9000, summary="s" * 3000)

    DiscordSink(http, webhook_url=receiver.url(DISCORD_PATH)).send(message)

    payload = receiver.last.json()
    check_discord_limits(payload)
    names = [item["name"] for item in payload["embeds"][0]["fields"]]
    assert "More checks" in names


def test_discord_rate_limit_is_retried_after_the_time_discord_asks_for(receiver: Receiver, http: httpx.Client) -> None:
    body = b'{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}'
    receiver.script(Reply(status=429, body=body, content_type="application/json"))
    waits, sleep = no_wait()

    outcome = deliver(DiscordSink(http, webhook_url=receiver.url(DISCORD_PATH)), alert_message(), sleep=sleep)

    assert (outcome.result, outcome.attempts) == ("sent", 2)
    assert waits[0] >= 1.5


# --------------------------------------------------------------------------------------------------- webhook


def test_webhook_payload_carries_every_field_of_the_message_in_camel_case(
    receiver: Receiver, http: httpx.Client
) -> None:
    message = alert_message()

    WebhookSink(http, url=receiver.url(), secret=None).send(message)

    payload = receiver.last.json()
    assert payload == {
        "apiVersion": "canaryctl.dev/v1alpha1",
        "kind": "CanaryAlert",
        "version": 1,
        "key": message.key,
        "name": "CanaryRolledBack",
        "title": "CanaryRolledBack: shop/tcp-echo",
        "severity": "critical",
        "state": "firing",
        "policy": "tcp-echo",
        "namespace": "shop",
        "runId": message.run_id,
        "target": "VirtualService shop/tcp-echo",
        "route": "tcp port 31400",
        "step": 2,
        "weight": 20,
        "fromPhase": "Progressing",
        "toPhase": "RolledBack",
        "reason": message.reason,
        "summary": message.summary,
        "description": message.description,
        "startedAt": message.started_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "endedAt": None,
        "sourceUrl": message.source_url,
        "checks": [
            {
                "name": "error-rate",
                "verdict": "fail",
                "reason": message.checks[0].reason,
                "canaryValue": 0.05,
                "stableValue": 0.001,
                "sampleSize": 1200,
                "threshold": "<= 0.012",
                "queries": [ERROR_RATE_QUERY],
                "graphUrls": list(message.checks[0].graph_urls),
            }
        ],
    }
    assert receiver.last.header("X-Canary-Delivery") == message.key
    assert receiver.last.header("X-Canary-Signature") is None


def test_webhook_values_json_cannot_carry_become_null(receiver: Receiver, http: httpx.Client) -> None:
    check = replace(alert_message().checks[0], canary_value=float("nan"), stable_value=float("inf"))

    WebhookSink(http, url=receiver.url(), secret=None).send(alert_message(checks=(check,)))

    [sent] = receiver.last.json()["checks"]
    assert (sent["canaryValue"], sent["stableValue"]) == (None, None)


def test_a_signed_webhook_verifies_with_the_secret_and_not_with_another(receiver: Receiver, http: httpx.Client) -> None:
    before = int(time.time())

    WebhookSink(http, url=receiver.url(), secret=HMAC_SECRET).send(alert_message())

    request = receiver.last
    timestamp, signature = request.header("X-Canary-Timestamp"), request.header("X-Canary-Signature")
    assert timestamp is not None
    assert before <= int(timestamp) <= time.time()
    assert signature is not None
    assert signature.startswith("sha256=")
    assert verify_signature(HMAC_SECRET, timestamp, request.body, signature)
    assert not verify_signature("another-secret", timestamp, request.body, signature)
    assert not verify_signature(HMAC_SECRET, str(int(timestamp) + 1), request.body, signature)
    assert not verify_signature(HMAC_SECRET, timestamp, request.body.replace(b"critical", b"info"), signature)
    assert not verify_signature(HMAC_SECRET, timestamp, request.body, None)
    assert not verify_signature(HMAC_SECRET, timestamp, request.body, signature.removeprefix("sha256="))


def test_each_retry_of_a_webhook_has_the_same_delivery_key_and_a_valid_signature(
    receiver: Receiver, http: httpx.Client
) -> None:
    receiver.script(Reply(status=503, body=b"busy"))
    message = alert_message()
    _, sleep = no_wait()

    outcome = deliver(WebhookSink(http, url=receiver.url(), secret=HMAC_SECRET), message, sleep=sleep)

    assert (outcome.result, outcome.attempts) == ("sent", 2)
    assert [request.header("X-Canary-Delivery") for request in receiver.requests] == [message.key] * 2
    for request in receiver.requests:
        assert verify_signature(
            HMAC_SECRET, request.header("X-Canary-Timestamp") or "", request.body, request.header("X-Canary-Signature")
        )


# ----------------------------------------------------------------------------------------- secrets stay secret


def test_errors_and_logs_name_the_sink_and_status_but_never_the_webhook_url(
    receiver: Receiver, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"no_service: nothing at {SLACK_PATH} ({receiver.url(SLACK_PATH)})".encode()
    receiver.script(Reply(status=404, body=echo))

    outcome = deliver(SlackSink(http, webhook_url=receiver.url(SLACK_PATH)), alert_message())

    assert (outcome.result, outcome.attempts, outcome.retryable) == ("failed", 1, False)
    assert outcome.error is not None
    assert outcome.error.startswith(f"slack sink: http://127.0.0.1:{receiver.port}/… answered HTTP 404: no_service")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for text in (outcome.error, logged):
        assert SLACK_TOKEN not in text
        assert "T0ABCDEFG" not in text
        assert "/services/" not in text


def test_httpx_request_logs_show_webhook_urls_only_as_scheme_and_host(
    receiver: Receiver, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")

    DiscordSink(http, webhook_url=receiver.url(DISCORD_PATH)).send(alert_message())

    [line] = [record.getMessage() for record in caplog.records if record.name == "httpx"]
    assert f"POST http://127.0.0.1:{receiver.port}/… " in line
    assert DISCORD_TOKEN not in line


def test_a_receiver_echoing_the_secret_or_signature_does_not_leak_them_into_the_error(
    receiver: Receiver, http: httpx.Client
) -> None:
    receiver.script(Reply(status=401, body=f"bad signature for secret {HMAC_SECRET}".encode()))

    with pytest.raises(AlertDeliveryError) as failure:
        WebhookSink(http, url=receiver.url("/hooks/tenant-0123456789abcdef"), secret=HMAC_SECRET).send(alert_message())

    assert HMAC_SECRET not in str(failure.value)
    assert "0123456789abcdef" not in str(failure.value)
    assert (
        str(failure.value)
        == f"webhook sink: http://127.0.0.1:{receiver.port}/… answered HTTP 401: bad signature for secret ***"
    )


def test_sinks_show_only_scheme_and_host_of_a_webhook_url_in_repr(http: httpx.Client) -> None:
    sinks = [
        SlackSink(http, webhook_url="https://hooks.slack.com" + SLACK_PATH),
        TeamsSink(http, webhook_url="https://contoso.webhook.office.com" + TEAMS_PATH),
        DiscordSink(http, webhook_url="https://discord.com" + DISCORD_PATH),
        WebhookSink(http, url="https://hooks.example.com/in/" + SLACK_TOKEN, secret=HMAC_SECRET),
        AlertmanagerSink(http, url="https://admin:hunter2-password@alertmanager.monitoring:9093"),
    ]

    assert [repr(sink) for sink in sinks] == [
        "SlackSink(target='https://hooks.slack.com/…')",
        "TeamsSink(target='https://contoso.webhook.office.com/…')",
        "DiscordSink(target='https://discord.com/…')",
        "WebhookSink(target='https://hooks.example.com/…')",
        "AlertmanagerSink(target='https://alertmanager.monitoring:9093')",
    ]


def test_a_url_that_is_not_http_is_refused_without_repeating_it(http: httpx.Client) -> None:
    with pytest.raises(ValueError, match="slack sink: the URL must be an absolute") as failure:
        SlackSink(http, webhook_url="hooks.slack.com" + SLACK_PATH)

    assert SLACK_TOKEN not in str(failure.value)


def test_make_sink_builds_each_kind(http: httpx.Client) -> None:
    sinks = [
        make_sink(kind, http, url="https://example.com/x", routing_key="r" * 32 if kind == "pagerduty" else None)
        for kind in SINK_KINDS
    ]

    assert [sink.name for sink in sinks] == ["alertmanager", "slack", "teams", "discord", "webhook", "pagerduty"]
    with pytest.raises(ValueError, match="only the webhook sink takes a signing secret"):
        make_sink("slack", http, url="https://example.com/x", secret="s3cret-value")
    with pytest.raises(ValueError, match="only the pagerduty sink takes a routing key"):
        make_sink("webhook", http, url="https://example.com/x", routing_key="r" * 32)
    with pytest.raises(ValueError, match="pagerduty sink: a routing key is required"):
        make_sink("pagerduty", http, url="https://example.com/x")


# ------------------------------------------------------------------------------------------------ failure modes


def test_a_500_then_a_200_is_sent_after_two_attempts(receiver: Receiver, http: httpx.Client) -> None:
    receiver.script(Reply(status=500, body=b"internal error"))
    waits, sleep = no_wait()

    outcome = deliver(SlackSink(http, webhook_url=receiver.url(SLACK_PATH)), alert_message(), sleep=sleep)

    assert (outcome.sink, outcome.result, outcome.attempts, outcome.error) == ("slack", "sent", 2, None)
    assert len(receiver.requests) == 2
    assert len(waits) == 1


def test_a_429_is_retried_and_its_retry_after_respected(receiver: Receiver, http: httpx.Client) -> None:
    receiver.script(Reply(status=429, body=b"rate_limited", headers={"Retry-After": "3"}))
    waits, sleep = no_wait()

    outcome = deliver(SlackSink(http, webhook_url=receiver.url(SLACK_PATH)), alert_message(), sleep=sleep)

    assert (outcome.result, outcome.attempts) == ("sent", 2)
    assert waits == [3.0]


def test_a_400_is_not_retried_and_fails_after_one_attempt(receiver: Receiver, http: httpx.Client) -> None:
    receiver.script(Reply(status=400, body=b"invalid_payload"))
    waits, sleep = no_wait()

    outcome = deliver(SlackSink(http, webhook_url=receiver.url(SLACK_PATH)), alert_message(), sleep=sleep)

    assert (outcome.result, outcome.attempts, outcome.retryable, waits) == ("failed", 1, False, [])
    assert outcome.error == f"slack sink: http://127.0.0.1:{receiver.port}/… answered HTTP 400: invalid_payload"


def test_a_long_remote_error_body_is_cut_to_about_200_characters(receiver: Receiver, http: httpx.Client) -> None:
    receiver.script(Reply(status=400, body=b"x" * 5000))

    with pytest.raises(AlertDeliveryError) as failure:
        WebhookSink(http, url=receiver.url(), secret=None).send(alert_message())

    assert str(failure.value).endswith("answered HTTP 400: " + "x" * 197 + "...")


def test_a_hanging_receiver_times_out_and_is_retried_then_fails_within_the_deadline(
    receiver: Receiver, impatient_http: httpx.Client
) -> None:
    receiver.default = Hang()
    started = time.monotonic()

    outcome = deliver(
        WebhookSink(impatient_http, url=receiver.url(), secret=None),
        alert_message(),
        attempts=10,
        base_delay=0.05,
        max_delay=0.1,
        deadline_seconds=1.0,
    )

    elapsed = time.monotonic() - started
    assert outcome.result == "failed"
    assert outcome.retryable
    assert 2 <= outcome.attempts < 10
    assert outcome.error is not None
    assert "unreachable: no answer in time (read timeout)" in outcome.error
    # Without cutting the last attempt short it would end up to one client timeout (0.2 s) late.
    assert outcome.duration_seconds <= 1.0 + 0.1
    assert elapsed <= 1.0 + 0.5


def test_an_attempt_is_cut_short_to_the_time_left_before_the_deadline(receiver: Receiver, http: httpx.Client) -> None:
    receiver.default = Hang()
    started = time.monotonic()

    outcome = deliver(WebhookSink(http, url=receiver.url(), secret=None), alert_message(), deadline_seconds=0.4)

    assert time.monotonic() - started < 0.4 + 0.5  # the client's own timeout is 5 s
    assert (outcome.result, outcome.attempts) == ("failed", 1)


def test_connection_refused_is_retried_then_fails(refused_url: str, http: httpx.Client) -> None:
    waits, sleep = no_wait()

    outcome = deliver(WebhookSink(http, url=refused_url, secret=None), alert_message(), attempts=3, sleep=sleep)

    assert (outcome.result, outcome.attempts, outcome.retryable, len(waits)) == ("failed", 3, True, 2)
    assert outcome.error is not None
    assert outcome.error.endswith("/… unreachable: connection refused")


def test_a_closed_connection_is_retried_then_sent(receiver: Receiver, http: httpx.Client) -> None:
    receiver.script(Close())
    _, sleep = no_wait()

    outcome = deliver(TeamsSink(http, webhook_url=receiver.url(TEAMS_PATH)), alert_message(), sleep=sleep)

    assert (outcome.result, outcome.attempts) == ("sent", 2)


def test_a_closed_connection_error_says_the_server_did_not_answer(receiver: Receiver, http: httpx.Client) -> None:
    receiver.default = Close()

    with pytest.raises(AlertDeliveryError) as failure:
        SlackSink(http, webhook_url=receiver.url(SLACK_PATH)).send(alert_message())

    assert failure.value.retryable
    assert str(failure.value).endswith("unreachable: the server closed the connection without answering")


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (500, True),
        (502, True),
        (503, True),
        (429, True),
        (408, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (410, False),
    ],
)
def test_5xx_429_and_408_are_retryable_and_other_4xx_are_not(
    receiver: Receiver, http: httpx.Client, status: int, retryable: bool
) -> None:
    receiver.script(Reply(status=status, body=b"nope"))

    with pytest.raises(AlertDeliveryError) as failure:
        DiscordSink(http, webhook_url=receiver.url(DISCORD_PATH)).send(alert_message())

    assert (failure.value.status, failure.value.retryable) == (status, retryable)
    assert f"answered HTTP {status}: nope" in str(failure.value)


# ------------------------------------------------------------------------------------------------------ backoff


def test_backoff_waits_grow_exponentially_up_to_max_delay() -> None:
    clock = FakeClock(0.0)
    waits, sleep = no_wait()

    outcome = deliver(
        AlwaysFailing(clock),
        alert_message(),
        attempts=6,
        base_delay=0.5,
        max_delay=3.0,
        sleep=sleep,
        rand=lambda: 1.0,
        clock=clock,
    )

    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert (outcome.result, outcome.attempts) == ("failed", 6)


def test_backoff_waits_are_jittered_between_zero_and_the_exponential_step() -> None:
    clock = FakeClock(0.0)
    waits, sleep = no_wait()
    draws = iter([0.0, 0.25, 0.5, 0.999])

    deliver(AlwaysFailing(clock), alert_message(), attempts=5, sleep=sleep, rand=lambda: next(draws), clock=clock)

    assert waits == [0.0, 0.25, 1.0, 0.999 * 4.0]


def test_a_retry_after_longer_than_max_delay_is_capped() -> None:
    clock = FakeClock(0.0)
    waits, sleep = no_wait()

    deliver(
        AlwaysFailing(clock, retry_after=60.0), alert_message(), attempts=2, max_delay=8.0, sleep=sleep, clock=clock
    )

    assert waits == [8.0]


def test_delivery_stops_when_the_next_attempt_would_start_past_the_deadline() -> None:
    clock = FakeClock(0.0)
    sink = AlwaysFailing(clock, cost=2.0)

    outcome = deliver(
        sink,
        alert_message(),
        attempts=100,
        base_delay=1.0,
        max_delay=1.0,
        deadline_seconds=10.0,
        sleep=clock.sleep,
        rand=lambda: 1.0,
        clock=clock,
    )

    assert outcome.result == "failed"
    # Attempts at 0, 3, 6 and 9 s (2 s each, 1 s waits); the fourth is cut to the 1 s left; a fifth would start late.
    assert outcome.attempts == 4
    assert outcome.duration_seconds <= 10.0
    assert outcome.error is not None
    assert outcome.error.endswith("(gave up: the next attempt would start past the 10s deadline)")
    assert sink.timeouts == [10.0, 7.0, 4.0, 1.0]


def test_a_sink_failing_unexpectedly_is_reported_as_a_failure_not_raised() -> None:
    class Broken:
        name = "broken"

        def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
            raise KeyError("bug")

    outcome = deliver(Broken(), alert_message())

    assert (outcome.result, outcome.attempts, outcome.retryable) == ("failed", 1, False)
    assert outcome.error == "broken sink failed unexpectedly: KeyError"


def test_a_message_resolved_before_it_started_still_ends_after_its_start(
    receiver: Receiver, http: httpx.Client
) -> None:
    message = alert_message()
    early = replace(message, state="resolved", ended_at=message.started_at - timedelta(minutes=1))

    AlertmanagerSink(http, url=receiver.url()).send(early)

    [alert] = receiver.last.json()
    assert alert["endsAt"] == alert["startsAt"]
