"""Alert sinks: where an ``AlertMessage`` goes (Alertmanager, Slack, Microsoft Teams, Discord, a webhook, PagerDuty).

Each sink takes an ``httpx.Client`` and one destination, renders the message in the format that service
documents, and POSTs it once: ``send`` either returns (delivered) or raises ``AlertDeliveryError`` saying
whether retrying can help. ``deliver`` retries retryable failures with exponential backoff and full jitter,
bounded in attempts and in total time, and reports a ``DeliveryResult``; it never raises.

Modules:

- ``base``: the HTTP sink base (one POST, failures classified, URLs and secrets kept out of messages and of
  httpx's logs).
- ``retry``: the ``AlertSink`` protocol and ``deliver``, the retry loop.
- ``formatting``: times, numbers, JSON bodies and the words and links every sink shows.
- ``alertmanager``, ``slack``, ``teams``, ``discord``, ``webhook``, ``pagerduty``: one module per sink;
  ``webhook`` documents the generic payload (a public contract) and ``verify_signature`` for receivers.
- ``delivery``: ``make_sink`` and ``HttpAlertDelivery``, the ``AlertDelivery`` port: a route's secrets
  resolved, its sink built, the message delivered with retries.
"""

from controller.adapters.alerts.alertmanager import AlertmanagerSink
from controller.adapters.alerts.delivery import SINK_KINDS, HttpAlertDelivery, SinkKind, make_sink
from controller.adapters.alerts.discord import DiscordSink, embed_size
from controller.adapters.alerts.pagerduty import PagerDutySink
from controller.adapters.alerts.retry import AlertSink, deliver
from controller.adapters.alerts.slack import SlackSink
from controller.adapters.alerts.teams import TeamsSink
from controller.adapters.alerts.webhook import WebhookSink, verify_signature

__all__ = [
    "SINK_KINDS",
    "AlertSink",
    "AlertmanagerSink",
    "DiscordSink",
    "HttpAlertDelivery",
    "PagerDutySink",
    "SinkKind",
    "SlackSink",
    "TeamsSink",
    "WebhookSink",
    "deliver",
    "embed_size",
    "make_sink",
    "verify_signature",
]
