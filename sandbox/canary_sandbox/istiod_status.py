"""istiod's status writer, modelled for the sandbox: reports route generations as distributed.

With ``PILOT_ENABLE_STATUS=true`` and ``PILOT_ENABLE_CONFIG_DISTRIBUTION_TRACKING=true`` istiod writes, through
the status subresource, ``status.conditions[type=Reconciled]`` and ``status.observedGeneration`` on Istio
config (False with reason ``stillPropagating`` and ``N/M complete`` until every proxy has the generation),
and as a Gateway API implementation it writes ``status.parents[]`` with ``Accepted`` and ``ResolvedRefs``
conditions at the route's generation. This writer does the same against the emulator, so the controller's
data-plane confirmation (``controller.core.dataplane``) is exercised on both paths.

``confirm(obj)`` says whether the data plane has the object's current generation (the sandbox's Envoy
gateway can answer from its config_dump); by default every generation is confirmed once seen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from canary_sandbox.kubeapi import KubeApiEmulator

ROUTES = (
    ("virtualservices.networking.istio.io", "networking.istio.io", "virtualservices"),
    ("tcproutes.gateway.networking.k8s.io", "gateway.networking.k8s.io", "tcproutes"),
)
CONTROLLER_NAME = "istio.io/gateway-controller"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def istio_status(generation: int, *, distributed: bool, proxies: int = 1) -> dict[str, Any]:
    """The status istiod writes on Istio config for ``generation``."""
    done = proxies if distributed else 0
    return {
        "conditions": [
            {
                "type": "Reconciled",
                "status": "True" if distributed else "False",
                "reason": "" if distributed else "stillPropagating",
                "message": f"{done}/{proxies} complete",
                "lastTransitionTime": _now(),
                "lastProbeTime": None,
            }
        ],
        "observedGeneration": generation,
    }


def gateway_api_status(obj: dict[str, Any], generation: int) -> dict[str, Any]:
    """The ``status.parents`` istiod writes on a route, one entry per parentRef, at ``generation``."""
    parents = []
    for ref in obj.get("spec", {}).get("parentRefs") or []:
        conditions = [
            {
                "type": kind,
                "status": "True",
                "reason": kind,
                "message": "Route was valid" if kind == "Accepted" else "All references resolved",
                "observedGeneration": generation,
                "lastTransitionTime": _now(),
            }
            for kind in ("Accepted", "ResolvedRefs")
        ]
        parents.append({"parentRef": ref, "controllerName": CONTROLLER_NAME, "conditions": conditions})
    return {"parents": parents}


class IstiodStatusWriter:
    """A thread that writes route status into the emulator as istiod does (status subresource, merge patch).

    Args:
        emulator: the API emulator holding the routes.
        confirm: whether the data plane has an object's current generation; None confirms on sight.
        interval: seconds between looks.
    """

    def __init__(
        self,
        emulator: KubeApiEmulator,
        *,
        confirm: Callable[[dict[str, Any]], bool] | None = None,
        interval: float = 0.2,
    ) -> None:
        self._emulator = emulator
        self._confirm = confirm or (lambda obj: True)
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._api_client = client.ApiClient(emulator.client_configuration())
        self._custom = client.CustomObjectsApi(self._api_client)
        self.writes = 0

    def start(self) -> IstiodStatusWriter:
        self._thread = threading.Thread(target=self._run, name="istiod-status", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        closable: Any = self._api_client
        closable.close()

    def __enter__(self) -> IstiodStatusWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sync()
            except Exception:  # a sandbox component: keep reporting on the next look
                continue

    def sync(self) -> int:
        """One look at every route: write the status of each that changed. Returns the writes made."""
        made = 0
        for resource, group, plural in ROUTES:
            try:
                objects = self._emulator.list(resource)
            except LookupError:
                continue
            for obj in objects:
                wanted = self._wanted(obj, plural)
                if wanted is None or _comparable(wanted) == _comparable(obj.get("status")):
                    continue
                version = str(obj["apiVersion"]).split("/")[1]
                meta = obj["metadata"]
                self._custom.patch_namespaced_custom_object_status(
                    group, version, meta["namespace"], plural, meta["name"], {"status": wanted}
                )
                made += 1
        self.writes += made
        return made

    def _wanted(self, obj: dict[str, Any], plural: str) -> dict[str, Any] | None:
        generation = int(obj["metadata"].get("generation") or 0)
        if plural == "virtualservices":
            return istio_status(generation, distributed=self._confirm(obj))
        if not self._confirm(obj):
            return None  # parents keep reporting the generation they last accepted
        return gateway_api_status(obj, generation)


def _comparable(status: Any) -> dict[str, Any] | None:
    """The status without its timestamps, to tell a change of substance."""
    if not isinstance(status, dict):
        return None

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items() if k not in {"lastTransitionTime", "lastProbeTime"}}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    result: dict[str, Any] = scrub(status)
    return result
