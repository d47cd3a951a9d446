"""The dashboard's data: statuses, CanaryPolicy specs, live routes and Prometheus series, read for the API.

Reads through the adapters the CLI uses (``controller.adapters.kubernetes.control`` lists the statuses,
``KubernetesTrafficRouter`` reads the live route, ``policy_from_resource`` validates a spec) and turns what
it finds into the JSON documents of docs/dashboard.md with the pure functions of
``controller.core.dashboard_view``. Actions record commands with the same code as ``canaryctl pause`` etc.

File-mode policies (policy files read by the controller) have their status here but no spec: the files live
with the controller, so their rollout page has no plan, checks' thresholds or series.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from controller.adapters.kubernetes.api import KubeApi, as_dict
from controller.adapters.kubernetes.control import (
    StoredStatus,
    list_statuses,
    record_command,
)
from controller.adapters.kubernetes.status import CANARYPOLICIES
from controller.adapters.kubernetes.traffic import KubernetesTrafficRouter
from controller.adapters.policy_sources.resources import policy_from_resource
from controller.core import dashboard_view
from controller.core.analysis_pass import variables_for
from controller.core.policy import CanaryPolicy
from controller.core.promql import Side, Variables, envoy_selectors, istio_selectors
from controller.core.status import CommandKind, Phase, RolloutStatus
from controller.core.status_view import pending_commands, preview_command
from controller.errors import CanaryError, NotFoundError
from controller.ports import PolicySource, SourcedPolicy

MAX_SERIES_POINTS = 720
"""Most points a series has; the step grows to keep a long range under it."""


class DashboardError(Exception):
    """A request the dashboard answers with an HTTP error: ``status`` and a message for the JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def destination_name(item: Any) -> str:
    """A destination of a VirtualService route (``host/subset:port``) or a TCPRoute backendRef (``name:port``)."""
    if not isinstance(item, dict):
        return str(item)
    dest = item.get("destination")
    if isinstance(dest, dict):
        host = str(dest.get("host", "?"))
        subset = f"/{dest['subset']}" if dest.get("subset") else ""
        port = dest.get("port") or {}
        number = port.get("number") if isinstance(port, dict) else None
        return f"{host}{subset}" + (f":{number}" if number else "")
    name = str(item.get("name", "?"))
    return name + (f":{item['port']}" if item.get("port") else "")


def _policy_destination(dest: Any) -> str:
    subset = f"/{dest.subset}" if dest.subset else ""
    return f"{dest.host}{subset}" + (f":{dest.port}" if dest.port else "")


def counter_selectors(template: str, variables: Variables, side: Side) -> tuple[list[str], list[str]]:
    """The counter series a built-in error-ratio template reads for one side: (failures, attempts).

    The check's own selectors (``controller.core.promql``), read raw so that a range query returns every
    sample and each step's increase is counted exactly (``dashboard_view.increments``).
    """
    try:
        if template == "envoy-tcp-connect-error-ratio":
            return envoy_selectors(variables, side)
        return istio_selectors(variables, side)
    except ValueError as exc:
        raise DashboardError(400, f"the policy's analysis.selector has {exc}") from exc


def _threshold(metric: Any) -> dict[str, Any]:
    return {
        "max": metric.max,
        "min": metric.min,
        "minConnections": metric.min_connections,
        "countTest": metric.count_test.model_dump(mode="json", by_alias=True) if metric.count_test else None,
    }


@dataclass(frozen=True)
class _Found:
    stored: StoredStatus
    policy: CanaryPolicy | None
    raw: dict[str, Any] | None


class DashboardData:
    """Reads what the dashboard shows.

    Args:
        api: the Kubernetes API holding the policies and their statuses.
        mesh: the API holding the routes (the same one unless the mesh has its own API server).
        controller_namespace: where file-mode statuses live.
        namespaces: the namespaces shown by default; None for every namespace.
        prometheus_url: the Prometheus the series come from; None to use each policy's own URL.
        http: the client for Prometheus range queries.
        file_policies: where file-mode policies are read (a directory of policy files), for their spec;
            None: file-mode rollouts are shown from their status only.
    """

    def __init__(
        self,
        *,
        api: KubeApi,
        mesh: KubeApi | None = None,
        controller_namespace: str,
        namespaces: Sequence[str] | None,
        prometheus_url: str | None,
        http: httpx.Client,
        file_policies: PolicySource | None = None,
    ) -> None:
        self.api = api
        self.router = KubernetesTrafficRouter(mesh or api)
        self.controller_namespace = controller_namespace
        self.namespaces = list(namespaces) if namespaces is not None else None
        self.prometheus_url = prometheus_url.rstrip("/") if prometheus_url else None
        self.http = http
        self.file_policies = file_policies
        self._lock = threading.Lock()
        self._policies: dict[tuple[str, str], tuple[str, CanaryPolicy | None]] = {}

    def close(self) -> None:
        """Close the Prometheus client and the policy files' reader."""
        self.http.close()
        if self.file_policies is not None:
            self.file_policies.close()

    # -- reading ------------------------------------------------------------------------------------------

    def _specs(self, namespace: str | None, name: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        selector = f"metadata.name={name}" if name else None
        try:
            listed = self.api.list_objs(resource=CANARYPOLICIES, namespace=namespace, field_selector=selector)
        except (NotFoundError, CanaryError):
            return {}
        specs: dict[tuple[str, str], dict[str, Any]] = {}
        for item in as_dict(listed).get("items") or []:
            obj = as_dict(item)
            meta = obj.get("metadata") or {}
            specs[(str(meta.get("namespace")), str(meta.get("name")))] = obj
        return specs

    def _found(self, namespaces: Sequence[str] | None, name: str | None = None) -> list[_Found]:
        scopes: list[str | None] = list(namespaces) if namespaces is not None else [None]
        files: dict[tuple[str, str], CanaryPolicy] = {}
        if self.file_policies is not None:
            files = {
                (sourced.ref.namespace, sourced.ref.name): sourced.policy
                for sourced in self.file_policies.snapshot().policies
            }
        found: list[_Found] = []
        for scope in scopes:
            listing = list_statuses(
                self.api, namespace=scope, name=name, controller_namespace=self.controller_namespace
            )
            specs = self._specs(scope, name)
            for stored in listing.statuses:
                raw = specs.get((stored.namespace, stored.name)) if stored.source == "crd" else None
                policy = files.get((stored.namespace, stored.name)) if stored.source == "file" else None
                if raw is not None:
                    policy = self._validated(raw)
                found.append(_Found(stored, policy, raw))
        return found

    def _validated(self, raw: dict[str, Any]) -> CanaryPolicy | None:
        """The resource's spec as a policy (None when invalid), validated once per resourceVersion."""
        meta = raw.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        version = str(meta.get("resourceVersion") or "")
        with self._lock:
            cached = self._policies.get(key)
        if cached is not None and version and cached[0] == version:
            return cached[1]
        entry = policy_from_resource(raw)
        policy = entry.policy if isinstance(entry, SourcedPolicy) else None
        with self._lock:
            if len(self._policies) > 20000:
                self._policies.clear()
            self._policies[key] = (version, policy)
        return policy

    def _row(self, found: _Found, now: datetime) -> dict[str, Any]:
        policy = found.policy
        stored = found.stored
        steps = list(policy.spec.schedule.steps) if policy is not None else None
        step_seconds = policy.spec.schedule.step_duration_seconds if policy is not None else None
        target = None
        if policy is not None:
            ref = policy.spec.target.ref
            kind = "TCPRoute" if policy.spec.target.tcp_route is not None else "VirtualService"
            target = {"kind": kind, "name": ref.name}
        return dashboard_view.fleet_row(
            namespace=stored.namespace,
            name=stored.name,
            source=stored.source,
            status=stored.status,
            commands=stored.commands,
            now=now,
            steps=steps,
            step_seconds=step_seconds,
            target=target,
            problem=stored.problem,
        )

    def rollouts(self, namespaces: Sequence[str] | None, *, now: datetime) -> dict[str, Any]:
        """The body of ``GET /api/rollouts`` for ``namespaces`` (None: every namespace)."""
        rows = [self._row(found, now) for found in self._found(namespaces)]
        return dashboard_view.fleet_document(rows, now=now)

    def _one(self, namespace: str, name: str) -> _Found:
        found = self._found([namespace], name)
        if not found:
            raise DashboardError(404, f"no CanaryPolicy {namespace}/{name}")
        crd = [item for item in found if item.stored.source == "crd"]
        return crd[0] if crd else found[0]

    def _live_route(self, policy: CanaryPolicy | None, status: RolloutStatus | None) -> list[dict[str, Any]] | None:
        if policy is None or status is None or status.original is None:
            return None
        ref = policy.spec.target.ref
        kind = "TCPRoute" if policy.spec.target.tcp_route is not None else "VirtualService"
        try:
            obj = self.router.get(kind=kind, namespace=ref.namespace or policy.metadata.namespace, name=ref.name)
        except CanaryError:
            return None
        if obj is None:
            return None
        node: Any = obj
        for raw in status.original.pointer.strip("/").split("/") if status.original.pointer.strip("/") else []:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return None
        if not isinstance(node, list):
            return None
        return [{"destination": destination_name(item), "weight": (item or {}).get("weight")} for item in node]

    def _policy_summary(self, policy: CanaryPolicy | None) -> dict[str, Any] | None:
        if policy is None:
            return None
        spec = policy.spec
        analysis = spec.analysis
        checks = []
        if analysis is not None:
            checks = [
                {"name": metric.name, "template": metric.template, "query": metric.query, **_threshold(metric)}
                for metric in analysis.metrics
            ]
        ref = spec.target.ref
        return {
            "target": {
                "kind": "TCPRoute" if spec.target.tcp_route is not None else "VirtualService",
                "name": ref.name,
                "namespace": ref.namespace or policy.metadata.namespace,
                "stable": _policy_destination(spec.target.stable),
                "canary": _policy_destination(spec.target.canary),
            },
            "schedule": {"steps": list(spec.schedule.steps), "stepSeconds": spec.schedule.step_duration_seconds},
            "analysis": {
                "intervalSeconds": analysis.interval_seconds if analysis is not None else None,
                "prometheus": self._prometheus_for(policy),
                "checks": checks,
            },
        }

    def _prometheus_for(self, policy: CanaryPolicy | None) -> str | None:
        if self.prometheus_url:
            return self.prometheus_url
        if policy is None or policy.spec.analysis is None or policy.spec.analysis.prometheus is None:
            return None
        url = policy.spec.analysis.prometheus.url
        return str(url).rstrip("/") if url else None

    def _checks(self, policy: CanaryPolicy | None, status: RolloutStatus | None) -> list[dict[str, Any]]:
        if status is None:
            return []
        base = self._prometheus_for(policy)
        checks = []
        for record in status.last_checks:
            links = [f"{base}/graph?{urlencode({'g0.expr': query, 'g0.tab': '0'})}" for query in record.queries]
            checks.append(
                {
                    "name": record.name,
                    "verdict": str(record.verdict) if record.verdict is not None else None,
                    "reason": record.reason,
                    "canaryValue": record.canary_value,
                    "stableValue": record.stable_value,
                    "canaryErrors": record.canary_errors,
                    "canaryConnections": record.canary_connections,
                    "stableErrors": record.stable_errors,
                    "stableConnections": record.stable_connections,
                    "threshold": record.threshold,
                    "queries": list(record.queries),
                    "prometheusLinks": links if base else [],
                }
            )
        return checks

    @staticmethod
    def _failure(status: RolloutStatus | None) -> dict[str, Any] | None:
        if status is None or status.phase not in ("RollingBack", "RolledBack", "Failed"):
            return None
        failed = [record for record in status.last_checks if str(record.verdict) == "fail"]
        first = failed[0] if failed else None
        step = f"{status.step_index + 1}/{len(status.schedule)}" if status.schedule else status.step or None
        ended = [entry for entry in status.history if str(entry.to_phase) in ("RollingBack", "RolledBack", "Failed")]
        return {
            "check": first.name if first else None,
            "value": first.canary_value if first else None,
            "stableValue": first.stable_value if first else None,
            "canaryErrors": first.canary_errors if first else None,
            "canaryConnections": first.canary_connections if first else None,
            "threshold": first.threshold if first else None,
            "step": step,
            "weight": status.weight,
            "at": _iso(ended[0].time) if ended else None,
            "reason": status.rollback_reason or status.last_error or status.message,
            "alerts": [
                {
                    "sink": record.sink,
                    "name": record.name,
                    "result": record.result,
                    "attempts": record.attempts,
                    "error": record.error,
                }
                for record in status.alert_log
            ],
        }

    def rollout(self, namespace: str, name: str, *, now: datetime) -> dict[str, Any]:
        """The body of ``GET /api/rollouts/NS/NAME``.

        Raises:
            DashboardError: 404 when there is no such policy.
            CanaryError: the API server refused or did not answer.
        """
        found = self._one(namespace, name)
        policy, stored = found.policy, found.stored
        status = stored.status
        live = self._live_route(policy, status)
        expected = status.expected_weights if status is not None else None
        share = status.last_traffic_share if status is not None else None
        plan: list[dict[str, Any]] = []
        if policy is not None:
            plan = dashboard_view.plan(
                policy.spec.schedule.steps,
                stable=_policy_destination(policy.spec.target.stable),
                canary=_policy_destination(policy.spec.target.canary),
                step_index=status.step_index if status is not None else -1,
            )
        return {
            "row": self._row(found, now),
            "policy": self._policy_summary(policy),
            "status": status.model_dump(mode="json", by_alias=True, exclude_none=True) if status is not None else None,
            "timeline": dashboard_view.timeline(status, stored.commands),
            "checks": self._checks(policy, status),
            "trafficShare": None
            if share is None
            else {
                "written": share.get("weight"),
                "observed": share.get("share"),
                "connections": share.get("connections"),
                "low": share.get("low"),
                "high": share.get("high"),
            },
            "failure": self._failure(status),
            "route": dashboard_view.route_view(
                live,
                expected_weights=expected,
                restored=_restored(status),
            ),
            "plan": plan,
            "runs": dashboard_view.runs(status),
            # The commands the controller would accept now (the CLI's own preview), so the page offers no other.
            "actions": [
                kind.value
                for kind in CommandKind
                if preview_command(kind, status, pending_commands(stored.commands, status)).accepted
            ],
        }

    # -- series -------------------------------------------------------------------------------------------

    def _range(self, base: str, query: str, start: float, end: float, step: float) -> list[list[tuple[float, float]]]:
        try:
            answer = self.http.get(
                f"{base}/api/v1/query_range",
                params={"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
            )
        except httpx.HTTPError as exc:
            raise DashboardError(503, f"Prometheus at {base} did not answer: {type(exc).__name__}") from None
        if answer.status_code >= 500 or answer.status_code in (401, 403, 404):
            raise DashboardError(503, f"Prometheus at {base} answered HTTP {answer.status_code}")
        try:
            body = answer.json()
        except ValueError:
            raise DashboardError(503, f"Prometheus at {base} did not answer JSON") from None
        if body.get("status") != "success":
            raise DashboardError(502, f"Prometheus refused the query: {str(body.get('error'))[:300]}")
        found: list[list[tuple[float, float]]] = []
        for series in body.get("data", {}).get("result", []):
            points = [(float(at), float(value)) for at, value in series.get("values", [])]
            found.append([(at, value) for at, value in points if not math.isnan(value)])
        return found

    def _counted(self, base: str, selectors: list[str], start: float, end: float, step: float) -> dict[float, float]:
        series = [s for selector in selectors for s in self._range(base, selector, start, end, step)]
        return dashboard_view.increments(series, first_at=start, step=step)

    def series(
        self, namespace: str, name: str, *, check: str, start: datetime | None, end: datetime | None, now: datetime
    ) -> dict[str, Any]:
        """The body of ``GET /api/rollouts/NS/NAME/series``: canary and stable error ratios over time.

        Each point counts the connections and errors of the ``step`` seconds before it, from the counters the
        check's built-in template reads; consecutive points tile the range, so their sums are the range's.

        Raises:
            DashboardError: 404 unknown policy or check, 400 a check without a built-in error-ratio template
                or a bad range, 503 no Prometheus or Prometheus unreachable.
        """
        found = self._one(namespace, name)
        policy = found.policy
        if policy is None or policy.spec.analysis is None:
            raise DashboardError(404, f"CanaryPolicy {namespace}/{name} has no analysis spec here")
        metric = next((m for m in policy.spec.analysis.metrics if m.name == check), None)
        if metric is None:
            raise DashboardError(404, f"CanaryPolicy {namespace}/{name} has no check {check!r}")
        if metric.template not in ("istio-tcp-connect-error-ratio", "envoy-tcp-connect-error-ratio"):
            raise DashboardError(400, f"check {check!r} has no built-in error-ratio template to chart")
        base = self._prometheus_for(policy)
        if base is None:
            raise DashboardError(503, "no Prometheus URL: start the dashboard with --prometheus URL")
        status = found.stored.status
        began = dashboard_view.started_at(status)
        stop = end or now
        first = start or began or datetime.fromtimestamp(stop.timestamp() - 3600, UTC)
        span = stop.timestamp() - first.timestamp()
        if span <= 0:
            raise DashboardError(400, "field end: must be after start")
        interval = policy.spec.analysis.interval_seconds
        step = max(float(interval), span / MAX_SERIES_POINTS, 1.0)
        variables = variables_for(policy, window_seconds=step, step_start=first)
        result: dict[str, Any] = {"step": step, "start": _iso(first), "end": _iso(stop)}
        # The grid starts one step early: its first point is only the base of the second.
        begin = first.timestamp() - step
        for side in ("canary", "stable"):
            errors_selectors, total_selectors = counter_selectors(str(metric.template), variables, side)
            totals = self._counted(base, total_selectors, begin, stop.timestamp(), step)
            errors = self._counted(base, errors_selectors, begin, stop.timestamp(), step)
            times = sorted(totals)
            result[side] = [[at, (errors.get(at, 0.0) / totals[at]) if totals[at] > 0 else None] for at in times]
            result[f"{side}Connections"] = [[at, round(totals[at])] for at in times]
            result[f"{side}Errors"] = [[at, round(errors.get(at, 0.0))] for at in times]
            result[f"{side}Queries"] = [*errors_selectors, *total_selectors]
        result["threshold"] = metric.max
        return result

    # -- actions ------------------------------------------------------------------------------------------

    def act(self, namespace: str, name: str, action: str, *, by: str | None) -> dict[str, Any]:
        """Record ``action`` for the controller, as ``canaryctl ACTION NAME -n NAMESPACE`` does.

        Raises:
            DashboardError: 400 unknown action, 404 no such policy, 409 the rollout's phase refuses it.
        """
        try:
            kind = CommandKind(action)
        except ValueError:
            raise DashboardError(400, f"unknown action {action!r}: pause, resume, promote, abort or retry") from None
        found = self._one(namespace, name)
        stored = found.stored
        preview = None
        if stored.status is not None:
            preview = preview_command(kind, stored.status, pending_commands(stored.commands, stored.status))
            if not preview.accepted:
                raise DashboardError(409, f"{kind} refused for CanaryPolicy {namespace}/{name}: {preview.says}")
        recorded = record_command(
            self.api,
            namespace=namespace,
            name=name,
            kind=kind,
            by=by,
            controller_namespace=self.controller_namespace,
        )
        says = f": {preview.says}" if preview is not None else ""
        return {
            "ok": True,
            "id": recorded.command.id,
            "message": f"{kind} recorded for CanaryPolicy {namespace}/{name} (id {recorded.command.id}); "
            f"the controller applies it on its next pass{says}",
        }


def quote_path(namespace: str, name: str) -> str:
    """The URL path of a rollout's page data."""
    return f"/api/rollouts/{quote(namespace)}/{quote(name)}"


def _restored(status: RolloutStatus | None) -> list[dict[str, Any]] | None:
    """The original destination list a RolledBack or Aborted run restored (what the route should be now)."""
    if status is None or status.original is None or status.phase not in {Phase.ROLLED_BACK, Phase.ABORTED}:
        return None
    return [
        {
            "destination": destination_name(item),
            "weight": (item or {}).get("weight") if isinstance(item, dict) else None,
        }
        for item in status.original.destinations
    ]
