"""The sandbox's seed scenario: Istio's tcp-echo sample before the v1 -> v2 shift, ready to load.

Two variants, shipped as package data beside this module:

* ``istio`` (``istio.yaml``): Gateway ``tcp-echo-gateway`` (TCP 31400), DestinationRule ``tcp-echo``
  (subsets v1/v2 by label ``version``), VirtualService ``tcp-echo`` (all traffic to v1), Service
  ``tcp-echo``, Deployments ``tcp-echo-v1``/``tcp-echo-v2`` (Available). Policy: ``policies/tcp-echo.yaml``.
* ``gateway-api`` (``gateway-api.yaml``): Gateway ``tcp-echo-gateway`` (listener ``tcp-31400``), Services
  ``tcp-echo-v1``/``tcp-echo-v2``, TCPRoute ``tcp-echo`` (all to ``tcp-echo-v1``), the same Deployments.
  Policy: ``policies/tcp-echo-gateway-api.yaml``.

The API emulator serves only built-in kinds until CRDs are registered, so :func:`load_scenario` registers
the ones a variant needs from ``crds/``: the VirtualService, DestinationRule and TCPRoute CRDs are
unchanged copies of the real ones (each file's header names its source); the two Gateway CRDs are
minimal stand-ins written for the sandbox (their headers say so).
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

import yaml

from canary_sandbox.xds import Address, Backend

if TYPE_CHECKING:
    from canary_sandbox.kubeapi import KubeApiEmulator

Variant = Literal["istio", "gateway-api"]
VARIANTS: tuple[Variant, ...] = ("istio", "gateway-api")
NAMESPACE = "istio-io-tcp-traffic-shifting"
GATEWAY_PORT = 31400
SERVICE_PORT = 9000
ROUTE_NAME = "tcp-echo"
CRD_FILES: dict[Variant, tuple[str, ...]] = {
    "istio": (
        "virtualservices.networking.istio.io.yaml",
        "destinationrules.networking.istio.io.yaml",
        "gateways.networking.istio.io.yaml",
    ),
    "gateway-api": (
        "tcproutes.gateway.networking.k8s.io.yaml",
        "gateways.gateway.networking.k8s.io.yaml",
    ),
}
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _parse(*parts: str) -> tuple[dict[str, Any], ...]:
    text = resources.files(__name__).joinpath(*parts).read_text(encoding="utf-8")
    return tuple(doc for doc in yaml.load_all(text, Loader=_LOADER) if isinstance(doc, dict))


def crd_documents(variant: Variant) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions the variant's objects need (fresh copies)."""
    return [copy.deepcopy(doc) for name in CRD_FILES[variant] for doc in _parse("crds", name)]


def manifest_documents(variant: Variant) -> list[dict[str, Any]]:
    """The variant's objects, in apply order, without a namespace (fresh copies)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown scenario variant {variant!r}: one of {', '.join(VARIANTS)}")
    return [copy.deepcopy(doc) for doc in _parse(f"{variant}.yaml")]


def route_kind(variant: Variant) -> Literal["VirtualService", "TCPRoute"]:
    """The kind of the route the rollout edits in this variant."""
    return "VirtualService" if variant == "istio" else "TCPRoute"


def scenario_endpoints(variant: Variant, *, v1: Address, v2: Address) -> dict[Backend, Address]:
    """Where the gateway's backends run: v1's and v2's tcp-echo servers, keyed as the variant's routes name them."""
    if variant == "istio":
        return {Backend("tcp-echo", SERVICE_PORT, "v1"): v1, Backend("tcp-echo", SERVICE_PORT, "v2"): v2}
    return {Backend("tcp-echo-v1", SERVICE_PORT): v1, Backend("tcp-echo-v2", SERVICE_PORT): v2}


def _served(emulator: KubeApiEmulator, crd: dict[str, Any]) -> bool:
    spec = crd["spec"]
    try:
        emulator.resource(f"{spec['names']['plural']}.{spec['group']}")
    except KeyError:
        return False
    return True


def load_scenario(emulator: KubeApiEmulator, variant: Variant, *, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Register the CRDs the variant needs (those not served yet) and create its objects in ``namespace``.

    Objects that exist are replaced, so loading twice resets the scenario.

    Returns:
        The stored objects, in apply order.

    Raises:
        ApiError: an object is invalid (as the real API server would reject it).
    """
    objects = manifest_documents(variant)
    for crd in crd_documents(variant):
        if not _served(emulator, crd):
            emulator.register_crd(crd)
    emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    return emulator.load(objects, namespace=namespace)
