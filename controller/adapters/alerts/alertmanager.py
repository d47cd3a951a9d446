"""Prometheus Alertmanager (API v2): one alert per message, deduplicated by its labels."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from controller.adapters.alerts.base import HttpSink
from controller.adapters.alerts.formatting import (
    check_line,
    dumps,
    first_graph,
    format_number,
    phase_change,
    rfc3339,
)
from controller.core.alerts import AlertMessage


class AlertmanagerSink(HttpSink):
    """Posts alerts to Prometheus Alertmanager's API v2 (``POST {url}/api/v2/alerts``).

    Each message becomes one alert. Its labels identify it, and Alertmanager dedupes on them: ``alertname``
    (the message name), ``policy``, ``namespace``, ``severity`` and ``run_id``; posting the same labels again
    updates the one alert. Annotations carry ``summary``, ``description``, ``reason``, ``phase``, ``target``,
    ``route``, ``step``, ``weight``, ``checks`` (one line per failing check), ``graph_url`` and, for check
    ``N`` (1-based; annotation names must match ``[a-zA-Z_][a-zA-Z0-9_]*``, check names need not):
    ``check_N_name``, ``check_N_verdict``, ``check_N_reason``, ``check_N_value``, ``check_N_stable_value``,
    ``check_N_threshold``, ``check_N_sample_size``, ``check_N_query`` and ``check_N_graph_url``.

    ``startsAt`` is the message's start; a resolved message sets ``endsAt`` to its end, which resolves the
    alert at once. A firing alert has no ``endsAt``: Alertmanager resolves it by itself five minutes
    (``resolve_timeout``) after the last post unless it is posted again, so the delivery loop re-posts firing
    alerts more often than that. ``generatorURL`` is the message's ``source_url``, else its first graph URL.

    Args:
        client: the HTTP client (timeouts, TLS, auth headers for a proxy in front of Alertmanager).
        url: Alertmanager's base URL, e.g. ``http://alertmanager.monitoring:9093``.
    """

    name = "alertmanager"
    _secret_path = False

    def __init__(self, client: httpx.Client, *, url: str) -> None:
        super().__init__(client, url)
        self._endpoint = url.rstrip("/") + "/api/v2/alerts"

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Post the alert once.

        Args:
            message: the alert.
            timeout: upper bound in seconds on each phase of the request (None: the client's timeouts).

        Raises:
            AlertDeliveryError: not delivered (Alertmanager's 400 says which field it rejected).
        """
        self._post(self._endpoint, dumps([self.render(message)]), timeout=timeout)

    @staticmethod
    def render(message: AlertMessage) -> dict[str, Any]:
        """The alert as Alertmanager API v2 takes it (one element of the posted list)."""
        labels = {
            "alertname": message.name,
            "policy": message.policy,
            "namespace": message.namespace,
            "severity": message.severity,
            "run_id": message.run_id,
        }
        annotations = {
            "summary": message.summary,
            "description": message.description,
            "reason": message.reason,
            "phase": phase_change(message),
            "target": message.target,
            "route": message.route,
            "step": str(message.step),
            "weight": "" if message.weight is None else str(message.weight),
            "checks": "\n".join(check_line(check) for check in message.checks),
            "graph_url": first_graph(message),
        }
        for number, check in enumerate(message.checks, start=1):
            prefix = f"check_{number}_"
            annotations |= {
                prefix + "name": check.name,
                prefix + "verdict": check.verdict,
                prefix + "reason": check.reason,
                prefix + "value": format_number(check.canary_value),
                prefix + "stable_value": format_number(check.stable_value),
                prefix + "threshold": check.threshold,
                prefix + "sample_size": format_number(check.sample_size),
                prefix + "query": "\n".join(check.queries),
                prefix + "graph_url": "\n".join(check.graph_urls),
            }
        alert: dict[str, Any] = {
            # An empty label value is the same as no label to Alertmanager.
            "labels": {key: value for key, value in labels.items() if value},
            "annotations": {key: value for key, value in annotations.items() if value},
            "startsAt": rfc3339(message.started_at),
        }
        if message.state == "resolved":
            ended = message.ended_at or datetime.now(UTC)
            alert["endsAt"] = rfc3339(max(ended, message.started_at, key=_aware))
        generator = message.source_url or first_graph(message)
        if generator:
            alert["generatorURL"] = generator
        return alert


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
