"""The interfaces the service layer needs from the outside world (implemented in ``controller.adapters``).

Each method takes keyword-only arguments and raises only the project's own errors
(``controller.errors``), so the service never sees a library exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from controller.core.alerts import AlertMessage
from controller.core.measurement import QueryOutcome, VectorOutcome
from controller.core.policy import AlertRoute, CanaryPolicy
from controller.core.status import AnalysisResult, Command, RolloutStatus
from controller.core.writers import WriterStamp


@dataclass(frozen=True)
class PolicyRef:
    """Where a policy came from: a CanaryPolicy resource or a file."""

    namespace: str
    name: str
    source: str  # "crd" or "file"
    location: str = ""  # file:line for files, uid for resources
    generation: int | None = None


@dataclass(frozen=True)
class LoadedStatus:
    """A persisted status and the version to write against (resourceVersion)."""

    status: RolloutStatus
    version: str | None
    commands: list[Command]
    writer: WriterStamp | None = None  # who wrote the status last (None: never, or a version without stamps)


@dataclass(frozen=True)
class CanaryWorkload:
    """The canary workload's readiness and pod template (None when the policy names no workload)."""

    ready: bool
    message: str
    template: dict[str, Any] | None


@dataclass(frozen=True)
class InvolvedObject:
    """The object an Event is about."""

    kind: str
    api_version: str
    namespace: str
    name: str


class TrafficRouter(Protocol):
    """Reads and writes VirtualServices and TCPRoutes (possibly on a separate mesh API server)."""

    def get(self, *, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        ...

    def replace_route(
        self, *, kind: str, namespace: str, name: str, pointer: str, expect: list[Any], destinations: list[Any]
    ) -> None:
        """Replace the list at ``pointer`` only if it still equals ``expect`` (else ConflictError)."""
        ...


class StatusStore(Protocol):
    """Persists rollout status (CR status subresource or a ConfigMap) and the manual commands."""

    def load(self, *, policy: PolicyRef) -> LoadedStatus:
        """The status (a fresh one if none was saved) with its version and pending commands."""
        ...

    def save(self, *, policy: PolicyRef, status: RolloutStatus, version: str | None) -> str:
        """Write conditionally on ``version``; returns the new version (ConflictError when stale)."""
        ...


class StampingStatusStore(StatusStore, Protocol):
    """A StatusStore whose writes can record their writer (``status.writer``), read back by ``load``."""

    def save(
        self, *, policy: PolicyRef, status: RolloutStatus, version: str | None, writer: WriterStamp | None = None
    ) -> str:
        """Write conditionally on ``version``, stamped with ``writer``; returns the new version."""
        ...


class WorkloadReader(Protocol):
    """Reads the canary Deployment."""

    def canary(self, *, namespace: str, name: str) -> CanaryWorkload:
        """Readiness and pod template of a Deployment (not ready when missing)."""
        ...


class EventRecorder(Protocol):
    """Records Kubernetes Events."""

    def record(self, *, involved: InvolvedObject, reason: str, message: str, event_type: str) -> None:
        """Record one event about ``involved``; failures are logged by the adapter, never raised."""
        ...


class AnalysisSource(Protocol):
    """Supplies the analysis verdict of the current step."""

    def verdict(self, *, policy: CanaryPolicy, status: RolloutStatus, now: datetime) -> AnalysisResult | None:
        """The verdict for ``status.run_id`` / ``status.step_index``, or None when not evaluated yet."""
        ...


class Clock(Protocol):
    """Time, injected so tests control it."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


@dataclass(frozen=True)
class SourcedPolicy:
    """A valid policy and where it came from."""

    policy: CanaryPolicy
    ref: PolicyRef


@dataclass(frozen=True)
class SourceProblem:
    """A policy that could not be used, and why (lint's message, a name clash...)."""

    source: str  # "crd" or "file"
    location: str  # file:line, or namespace/name of the resource
    message: str
    namespace: str | None = None
    name: str | None = None
    reason: str = "InvalidPolicy"  # the Event's reason: InvalidPolicy, or PolicyRefused (core.admission)


@dataclass(frozen=True)
class PolicySnapshot:
    """The policies of one source at one moment, and the ones it had to skip."""

    policies: tuple[SourcedPolicy, ...] = ()
    problems: tuple[SourceProblem, ...] = ()


class PolicySource(Protocol):
    """Where policies come from: a directory of YAML files, or CanaryPolicy resources."""

    def snapshot(self) -> PolicySnapshot:
        """The current valid policies and problems. Cheap: sources cache and refresh in the background."""
        ...

    def synced(self) -> bool:
        """True once the source has read everything at least once (no pass runs before all sources are)."""
        ...

    def close(self) -> None:
        """Stop background work (watches, threads)."""
        ...


class MetricsSource(Protocol):
    """Instant queries against Prometheus."""

    def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
        """Evaluate ``query`` at ``at`` with the policy's ``spec.analysis.prometheus`` (or the defaults)."""
        ...


@runtime_checkable
class GroupedMetricsSource(MetricsSource, Protocol):
    """A MetricsSource that also answers grouped queries, so many rollouts can share one query."""

    def query_vector(
        self, *, query: str, at: datetime, labels: tuple[str, ...], connection: CanaryPolicy | None = None
    ) -> VectorOutcome:
        """Evaluate ``sum by (labels) (...)`` at ``at``: a value per group (keyed by ``labels``' values)."""
        ...


@dataclass(frozen=True)
class DeliveryResult:
    """What became of one alert at one route (or sink), after the adapter's retries.

    Attributes:
        result: ``sent`` or ``failed``.
        attempts: requests made (1 = no retry; 0 = none, e.g. the route's secret could not be read).
        error: the last error's message when failed, else None.
        sink: the sink's name (``slack``, ``alertmanager``...), when known.
        duration_seconds: time spent, waits included.
        retryable: for a failure, whether a later delivery could still succeed (the last error was
            retryable and only attempts or time ran out).
    """

    result: Literal["sent", "failed"]
    attempts: int
    error: str | None = None
    sink: str = ""
    duration_seconds: float = 0.0
    retryable: bool = False


class AlertDelivery(Protocol):
    """Delivers alert messages to a policy's alert routes."""

    def deliver(self, *, policy: CanaryPolicy, route: AlertRoute, message: AlertMessage) -> DeliveryResult:
        """Send ``message`` to ``route``, retrying as the adapter sees fit; never raises."""
        ...
