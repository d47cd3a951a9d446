"""The AlertDelivery port on the HTTP sinks: resolve a route's secrets, build its sink, deliver with retries."""

from __future__ import annotations

from typing import Literal

import httpx

from controller.adapters.alerts.alertmanager import AlertmanagerSink
from controller.adapters.alerts.discord import DiscordSink
from controller.adapters.alerts.pagerduty import PagerDutySink
from controller.adapters.alerts.retry import AlertSink, deliver
from controller.adapters.alerts.slack import SlackSink
from controller.adapters.alerts.teams import TeamsFormat, TeamsSink
from controller.adapters.alerts.webhook import WebhookSink
from controller.adapters.kubernetes.secrets import SecretReader
from controller.core.alerts import AlertMessage
from controller.core.policy import AlertRoute, CanaryPolicy
from controller.errors import CanaryError
from controller.ports import DeliveryResult

SinkKind = Literal["alertmanager", "slack", "teams", "discord", "webhook", "pagerduty"]
SINK_KINDS: tuple[SinkKind, ...] = ("alertmanager", "slack", "teams", "discord", "webhook", "pagerduty")


def make_sink(
    kind: SinkKind,
    client: httpx.Client,
    *,
    url: str,
    secret: str | None = None,
    routing_key: str | None = None,
    teams_format: TeamsFormat = "adaptiveCard",
) -> AlertSink:
    """The sink of ``kind`` for ``url`` (resolve URLs and secrets from a ``SecretRef`` with ``SecretReader``).

    Args:
        kind: one of ``SINK_KINDS``.
        client: the HTTP client.
        url: Alertmanager's base URL, the webhook URL, or PagerDuty's Events API v2 endpoint.
        secret: the HMAC key (``webhook`` only).
        routing_key: the PagerDuty service's integration key (``pagerduty`` only, required there).
        teams_format: ``adaptiveCard`` (Workflows) or ``messageCard`` (legacy connectors), ``teams`` only.

    Raises:
        ValueError: an unknown kind, a URL that is not absolute http(s), a secret for a sink that signs
            nothing, a routing key for another sink than PagerDuty or none for PagerDuty. The message never
            contains the URL or a secret.
    """
    if secret is not None and kind != "webhook":
        raise ValueError(f"{kind} sink: only the webhook sink takes a signing secret")
    if (routing_key is not None) != (kind == "pagerduty"):
        raise ValueError(
            "pagerduty sink: a routing key is required"
            if kind == "pagerduty"
            else f"{kind} sink: only the pagerduty sink takes a routing key"
        )
    if kind == "alertmanager":
        return AlertmanagerSink(client, url=url)
    if kind == "slack":
        return SlackSink(client, webhook_url=url)
    if kind == "teams":
        return TeamsSink(client, webhook_url=url, card_format=teams_format)
    if kind == "discord":
        return DiscordSink(client, webhook_url=url)
    if kind == "webhook":
        return WebhookSink(client, url=url, secret=secret)
    if kind == "pagerduty":
        assert routing_key is not None
        return PagerDutySink(client, routing_key=routing_key, url=url)
    raise ValueError(f"unknown alert sink kind {kind!r} (known: {', '.join(SINK_KINDS)})")


class HttpAlertDelivery:
    """Delivers to Alertmanager, Slack, Teams, Discord, generic webhooks and PagerDuty over one HTTP client.

    Args:
        secrets: resolves webhook URLs, signing secrets and routing keys (Secret keys in the policy's namespace, or
            environment variables of the controller).
        timeout_seconds: per-request timeout.
        attempts: tries per delivery (backoff with jitter between them).
        deadline_seconds: bound on one delivery, retries included.
    """

    def __init__(
        self,
        *,
        secrets: SecretReader,
        timeout_seconds: float = 5.0,
        attempts: int = 5,
        deadline_seconds: float = 30.0,
    ) -> None:
        self.secrets = secrets
        self.attempts = attempts
        self.deadline_seconds = deadline_seconds
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_seconds), follow_redirects=False)

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def deliver(self, *, policy: CanaryPolicy, route: AlertRoute, message: AlertMessage) -> DeliveryResult:
        """Send ``message`` to ``route``; never raises (a configuration problem is a failed delivery)."""
        namespace = policy.metadata.namespace
        try:
            secret = routing_key = None
            teams_format: TeamsFormat = "adaptiveCard"
            if route.alertmanager is not None:
                url = route.alertmanager.url
            elif route.webhook is not None:
                url = self.secrets.read(route.webhook.url, namespace=namespace).strip()
                if route.webhook.secret is not None:
                    secret = self.secrets.read(route.webhook.secret, namespace=namespace).strip()
            elif route.pagerduty is not None:
                url = route.pagerduty.url
                routing_key = self.secrets.read(route.pagerduty.routing_key, namespace=namespace).strip()
            else:
                target = route.slack or route.teams or route.discord
                assert target is not None
                url = self.secrets.read(target.webhook_url, namespace=namespace).strip()
                if route.teams is not None:
                    teams_format = route.teams.format
            sink = make_sink(
                route.sink,  # type: ignore[arg-type]
                self._client,
                url=url,
                secret=secret,
                routing_key=routing_key,
                teams_format=teams_format,
            )
        except (CanaryError, ValueError) as exc:
            return DeliveryResult(result="failed", attempts=0, error=f"{route.name}: {exc}", sink=route.sink)
        return deliver(sink, message, attempts=self.attempts, deadline_seconds=self.deadline_seconds)
