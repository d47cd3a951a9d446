"""The controller's own metrics (prometheus_client), on a registry of their own.

Issue 6 serves them on ``/metrics``; this module only defines and counts them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class ControllerMetrics:
    """Counters the daemon updates."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.alerts_sent = Counter(
            "canary_alerts_sent",
            "Alerts delivered or given up on, per sink kind and final result (after retries).",
            ["sink", "result"],
            registry=self.registry,
        )

    def alert_outcome(self, sink: str, result: str) -> None:
        """Count one final delivery outcome."""
        self.alerts_sent.labels(sink=sink, result=result).inc()
