"""The Teams sink's Adaptive Cards (Workflows webhooks) against the official Adaptive Card 1.4 JSON Schema.

The schema is the upstream file, unchanged (tests/alerts/schemas/README.md names its source); the
receiver is a local stand-in for a Workflows webhook, which answers ``202`` with an empty body.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from controller.adapters.alerts import TeamsSink, make_sink
from controller.adapters.alerts.teams import adaptive_card
from tests.alerts.conftest import Receiver, Reply, alert_message, many_checks

SCHEMA_FILE = Path(__file__).parent / "schemas" / "adaptive-card-1.4.0.json"
SCHEMA_SHA256 = "e1750b01c13459b1d937ae0a8792d825314d54ddd22b1c8159cfd809d2caab09"
WORKFLOWS_PATH = "/workflows/0a1b2c3d/triggers/manual/paths/invoke?api-version=1&sig=Zm9vYmFyYmF6cXV4"


@cache
def card_validator() -> jsonschema.protocols.Validator:
    """The Draft 6 validator of the shipped schema, checking formats (``uri``, ``uri-reference``) too."""
    raw = SCHEMA_FILE.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "the shipped Adaptive Card schema was changed"
    schema = json.loads(raw)
    validator_class = jsonschema.validators.validator_for(schema)
    assert validator_class is jsonschema.Draft6Validator
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def schema_errors(card: dict[str, Any]) -> list[str]:
    """Every way ``card`` breaks the Adaptive Card 1.4 schema (the best match of each failing branch)."""
    errors = list(card_validator().iter_errors(card))
    best = jsonschema.exceptions.best_match(errors)
    return [] if best is None else [f"{best.json_path}: {best.message[:300]}"]


def workflows_card(payload: dict[str, Any]) -> dict[str, Any]:
    """The card inside a Workflows message envelope, checking the envelope on the way."""
    assert payload["type"] == "message"
    assert len(payload["attachments"]) == 1
    attachment = payload["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card: dict[str, Any] = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert float(card["version"]) <= 1.4
    return card


def texts(node: Any) -> list[str]:
    """Every TextBlock text and fact (``title: value``) of a card, in order."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "TextBlock":
            found.append(node["text"])
        if node.get("type") == "FactSet":
            found.extend(f"{fact['title']}: {fact['value']}" for fact in node["facts"])
        for key, value in node.items():
            if key not in {"facts"}:
                found.extend(texts(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(texts(item))
    return found


@pytest.fixture
def workflows() -> Any:
    """A local stand-in for a Teams Workflows webhook: ``202 Accepted``, empty body."""
    with Receiver(default=Reply(status=202, body=b"")) as server:
        yield server


def test_the_schema_refuses_a_card_teams_workflows_would_refuse() -> None:
    # The validator is only worth something if it fails: a fact with MessageCard's "name" instead of
    # "title", an unknown element, and a card without its type.
    assert schema_errors(
        {
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [{"type": "FactSet", "facts": [{"name": "a", "value": "b"}]}],
        }
    )
    assert schema_errors({"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "Section", "text": "x"}]})
    assert schema_errors({"version": "1.4", "body": [], "themeColor": "D70000"})


def test_teams_posts_an_adaptive_card_in_the_workflows_envelope_by_default(
    workflows: Receiver, http: httpx.Client
) -> None:
    TeamsSink(http, webhook_url=workflows.url(WORKFLOWS_PATH)).send(alert_message())

    received = workflows.last
    assert received.header("Content-Type") == "application/json"
    card = workflows_card(received.json())
    assert schema_errors(card) == []
    assert "@type" not in card
    assert "MessageCard" not in received.body.decode()


def test_the_adaptive_card_carries_every_fact_the_other_sinks_carry(workflows: Receiver, http: httpx.Client) -> None:
    message = alert_message()

    TeamsSink(http, webhook_url=workflows.url(WORKFLOWS_PATH)).send(message)

    card = workflows_card(workflows.last.json())
    shown = texts(card["body"])
    assert shown[0] == "FIRING: CanaryRolledBack: shop/tcp-echo"
    assert "Policy: shop/tcp-echo" in shown
    assert "Target: VirtualService shop/tcp-echo" in shown
    assert "Route: tcp port 31400" in shown
    assert "Step / weight: step 2, weight 20%" in shown
    assert "Phase: Progressing → RolledBack" in shown
    assert "Reason: check error-rate failed at step 2" in shown
    assert f"Run id: {message.run_id}" in shown
    assert "Check error-rate: fail" in shown
    assert "canary error rate 0.05 is above stable 0.001 x 2 + 0.01" in shown
    assert {"Canary value: 0.05", "Stable value: 0.001", "Threshold: <= 0.012", "Sample size: 1200"} <= set(shown)
    assert any("istio\\_tcp\\_connections\\_closed\\_total" in text for text in shown)
    links = [(action["title"], action["url"]) for action in card["actions"]]
    assert links == [
        ("Graph: controller", message.source_url),
        ("Graph: error-rate", message.checks[0].graph_urls[0]),
    ]
    assert all(action["type"] == "Action.OpenUrl" for action in card["actions"])


def test_the_card_is_coloured_by_severity_and_green_once_resolved(workflows: Receiver, http: httpx.Client) -> None:
    sink = TeamsSink(http, webhook_url=workflows.url(WORKFLOWS_PATH))
    styles = []
    for message in (
        alert_message(),
        alert_message(severity="warning"),
        alert_message(severity="info"),
        alert_message(state="resolved", ended_at=datetime.now(UTC)),
    ):
        sink.send(message)
        card = workflows_card(workflows.last.json())
        assert schema_errors(card) == []
        styles.append(card["body"][0]["style"])

    assert styles == ["attention", "warning", "accent", "good"]
    assert texts(card["body"])[0].startswith("RESOLVED: ")


def test_the_card_stays_valid_and_under_28_kb_however_many_checks_fail(workflows: Receiver, http: httpx.Client) -> None:
    TeamsSink(http, webhook_url=workflows.url(WORKFLOWS_PATH)).send(alert_message(checks=many_checks(60)))

    body = workflows.last.body
    card = workflows_card(json.loads(body))
    assert schema_errors(card) == []
    assert len(body) <= 28 * 1024
    assert texts(card["body"])[-1].endswith("more failing checks (see the controller's status)")
    assert len(card["actions"]) == 4


def test_a_message_without_checks_links_or_description_still_gives_a_valid_card() -> None:
    card = adaptive_card(alert_message(checks=(), source_url="", description=""))

    assert schema_errors(card) == []
    assert "actions" not in card


def test_text_that_looks_like_markdown_is_shown_literally() -> None:
    card = adaptive_card(alert_message(reason="weight *20* on [v2](http://x) `now`"))

    assert "Reason: weight \\*20\\* on \\[v2\\](http://x) \\`now\\`" in texts(card["body"])


def test_message_card_is_sent_only_when_the_route_asks_for_it(workflows: Receiver, http: httpx.Client) -> None:
    make_sink("teams", http, url=workflows.url(WORKFLOWS_PATH), teams_format="messageCard").send(alert_message())
    legacy = workflows.last.json()
    make_sink("teams", http, url=workflows.url(WORKFLOWS_PATH)).send(alert_message())
    current = workflows.last.json()

    assert legacy["@type"] == "MessageCard"
    assert current["type"] == "message"


def test_an_unknown_card_format_is_refused_by_name(http: httpx.Client) -> None:
    with pytest.raises(ValueError, match="teams sink: unknown format 'o365'"):
        TeamsSink(http, webhook_url="https://example.com/x", card_format="o365")  # type: ignore[arg-type]
