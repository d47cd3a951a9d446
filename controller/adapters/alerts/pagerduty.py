"""PagerDuty through the Events API v2: an incident per policy and run, triggered and later resolved.

One event per alert, POSTed as JSON to the Events API v2 endpoint (``https://events.pagerduty.com/v2/enqueue``
unless the route names another, e.g. the EU service region's). A firing alert is a ``trigger`` event; a
resolved one (a later run of the policy was promoted) a ``resolve`` event with the same ``dedup_key``, so
PagerDuty resolves the incident the trigger opened. The dedup key is per policy and run
(``canary-controller/<namespace>/<policy>/<run id>``): a retry of the same alert, or a second alert of the same
run (drift, then a rollback), lands in the same incident instead of opening another.

The routing key (the service's integration key) is a secret: it is in the body only, and never in a message,
a log line or a remote error body repeated in one.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from controller.adapters.alerts.base import HttpSink
from controller.adapters.alerts.formatting import (
    clip,
    dumps,
    graph_links,
    json_number,
    phase_change,
    rfc3339,
    step_text,
)
from controller.core.alerts import AlertMessage
from controller.core.policy import PAGERDUTY_EVENTS_URL

PAGERDUTY_SUMMARY = 1024
PAGERDUTY_DEDUP_KEY = 255
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")


def dedup_key(message: AlertMessage) -> str:
    """The incident's key: one per policy and run (hashed when it would pass PagerDuty's 255 characters)."""
    key = f"canary-controller/{message.namespace}/{message.policy}/{message.run_id}"
    if len(key) <= PAGERDUTY_DEDUP_KEY:
        return key
    return "canary-controller/sha256:" + hashlib.sha256(key.encode()).hexdigest()


class PagerDutySink(HttpSink):
    """Sends Events API v2 ``trigger`` and ``resolve`` events to one PagerDuty service.

    A ``trigger`` carries ``routing_key``, ``event_action``, ``dedup_key``, ``payload`` (``summary`` up to 1024
    characters, ``source``: the target object, ``severity``: the alert's, ``timestamp``: when the event
    happened, ``component``: the policy, ``group``: its namespace, ``class``: the alert name, and
    ``custom_details`` with every fact and failing check), ``links`` to the graphs, and ``client``/
    ``client_url``. A ``resolve`` carries ``routing_key``, ``event_action`` and ``dedup_key``.

    PagerDuty answers ``202`` with ``{"status": "success", ...}``; ``400`` (an invalid event, a wrong routing
    key) is not retried, ``429`` and ``5xx`` are.

    Args:
        client: the HTTP client.
        routing_key: the service's integration key (a secret).
        url: the Events API v2 endpoint.
    """

    name = "pagerduty"
    _secret_path = False

    def __init__(self, client: httpx.Client, *, routing_key: str, url: str = PAGERDUTY_EVENTS_URL) -> None:
        if not routing_key.strip():
            raise ValueError("pagerduty sink: the routing key is empty")
        super().__init__(client, url, extra_secrets=[routing_key])
        self._routing_key = routing_key

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Post the event once.

        Args:
            message: the alert (``resolved``: a resolve event).
            timeout: upper bound in seconds on each phase of the request (None: the client's timeouts).

        Raises:
            AlertDeliveryError: not accepted.
        """
        self._post(self._url, dumps(self.render(message, routing_key=self._routing_key)), timeout=timeout)

    @staticmethod
    def render(message: AlertMessage, *, routing_key: str) -> dict[str, Any]:
        """The Events API v2 event for ``message``."""
        key = dedup_key(message)
        if message.state == "resolved":
            return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
        severity = message.severity if message.severity in PAGERDUTY_SEVERITIES else "critical"
        checks = [
            {
                "name": check.name,
                "verdict": check.verdict,
                "reason": check.reason,
                "canaryValue": json_number(check.canary_value),
                "stableValue": json_number(check.stable_value),
                "threshold": check.threshold,
                "sampleSize": json_number(check.sample_size),
                "queries": list(check.queries),
            }
            for check in message.checks
        ]
        event: dict[str, Any] = {
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {
                "summary": clip(f"{message.title}: {message.summary}", PAGERDUTY_SUMMARY),
                "source": message.target,
                "severity": severity,
                "timestamp": rfc3339(message.started_at),
                "component": f"{message.namespace}/{message.policy}",
                "group": message.namespace,
                "class": message.name,
                "custom_details": {
                    "policy": f"{message.namespace}/{message.policy}",
                    "target": message.target,
                    "route": message.route,
                    "step": step_text(message),
                    "weight": message.weight,
                    "phase": phase_change(message),
                    "reason": message.reason,
                    "runId": message.run_id,
                    "alert": message.name,
                    "key": message.key,
                    "description": message.description,
                    "failingChecks": checks,
                },
            },
            "client": "canary-controller",
            "links": [{"href": url, "text": f"Graph: {label}"} for label, url in graph_links(message)],
        }
        if message.source_url:
            event["client_url"] = message.source_url
        return event
