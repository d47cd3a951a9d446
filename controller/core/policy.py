"""The CanaryPolicy schema (``canaryctl.dev/v1alpha1``).

One set of pydantic models serves policy files, the published JSON Schema
(``policies/canarypolicy.schema.json``) and, later, the CRD. Field names are the camelCase names users
write in YAML; unknown fields are rejected everywhere.

Validation happens in two passes, both inside ``CanaryPolicy.model_validate``:

1. structure: types, ranges, required and unknown fields, each reported with its own path;
2. meaning: rules that relate fields (strictly increasing steps, exactly one target kind, ...). Every
   violated rule is reported, each with the exact path of the field at fault, through one
   ``PydanticCustomError`` of type ``policy_rules`` whose context carries the list of problems.

``controller.core.problems`` turns either kind of error into ``Problem`` records for ``canaryctl lint``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from controller.core.durations import GO_DURATION_PATTERN, parse_go_duration

API_VERSION = "canaryctl.dev/v1alpha1"
KIND = "CanaryPolicy"
DEFAULT_NAMESPACE = "default"

Path = tuple[str | int, ...]

_DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Hosts are DNS names (short or fully qualified) or IP addresses, as in VirtualService destinations.
_HOST = r"^[A-Za-z0-9]([-A-Za-z0-9_.:]*[A-Za-z0-9])?$"


def _dns_label(value: str) -> str:
    if len(value) > 63 or not re.match(_DNS1123_LABEL, value):
        raise PydanticCustomError(
            "dns_label",
            "must be a DNS-1123 label: at most 63 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit (got '{value}')",
            {"value": value},
        )
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not re.match(_DNS1123_SUBDOMAIN, value):
        raise PydanticCustomError(
            "dns_subdomain",
            "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (got '{value}')",
            {"value": value},
        )
    return value


def _host(value: str) -> str:
    if len(value) > 253 or not re.match(_HOST, value):
        raise PydanticCustomError(
            "host",
            "must be a host name (short or fully qualified) or an IP address (got '{value}')",
            {"value": value},
        )
    return value


def _go_duration(value: str) -> str:
    try:
        seconds = parse_go_duration(value)
    except ValueError:
        raise PydanticCustomError(
            "go_duration",
            "must be a Go-style duration such as 30s, 2m or 1h30m (got '{value}')",
            {"value": value},
        ) from None
    if seconds <= 0:
        raise PydanticCustomError("go_duration", "must be positive (got '{value}')", {"value": value})
    return value


DnsLabel = Annotated[
    StrictStr,
    AfterValidator(_dns_label),
    WithJsonSchema({"type": "string", "maxLength": 63, "pattern": _DNS1123_LABEL}),
]
DnsSubdomain = Annotated[
    StrictStr,
    AfterValidator(_dns_subdomain),
    WithJsonSchema({"type": "string", "maxLength": 253, "pattern": _DNS1123_SUBDOMAIN}),
]
Host = Annotated[
    StrictStr,
    AfterValidator(_host),
    WithJsonSchema({"type": "string", "maxLength": 253, "pattern": _HOST}),
]
GoDuration = Annotated[
    StrictStr,
    AfterValidator(_go_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": GO_DURATION_PATTERN,
            "description": "Go-style duration, e.g. 30s, 2m, 1h30m; must be positive.",
        }
    ),
]
PortNumber = Annotated[StrictInt, Field(ge=1, le=65535)]
Percent = Annotated[StrictInt, Field(ge=0, le=100)]


def _rules_error(problems: list[tuple[Path, str]]) -> PydanticCustomError:
    """One error carrying every violated rule, with paths relative to where it is raised."""
    return PydanticCustomError(
        "policy_rules", "{count} rule(s) violated", {"count": len(problems), "problems": tuple(problems)}
    )


def _strictly_increasing(steps: list[int]) -> list[int]:
    """Steps must strictly increase; each offending step is reported at its index."""
    problems: list[tuple[Path, str]] = [
        ((index,), f"must be greater than the previous step (got {steps[index]} after {steps[index - 1]})")
        for index in range(1, len(steps))
        if steps[index] <= steps[index - 1]
    ]
    if problems:
        raise _rules_error(problems)
    return steps


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
    )


class Metadata(_Model):
    """Kubernetes-style metadata. In files ``namespace`` is optional and defaults to ``default``."""

    name: DnsLabel = Field(description="Policy name, a DNS-1123 label.")
    namespace: DnsLabel = Field(
        DEFAULT_NAMESPACE, description="Namespace of the policy; the default namespace for its target."
    )
    labels: dict[str, str] | None = Field(None, description="Free-form labels, as in Kubernetes.")
    annotations: dict[str, str] | None = Field(None, description="Free-form annotations, as in Kubernetes.")


class ObjectRef(_Model):
    """A namespaced Kubernetes object, by name."""

    name: DnsSubdomain = Field(description="Object name.")
    namespace: DnsLabel | None = Field(None, description="Defaults to the policy's namespace.")


class RouteSelector(_Model):
    """Which route inside the target object. Every selector is optional; all given must hold."""

    protocol: Literal["tcp", "tls", "http"] = Field(
        "tcp", description="Route list of a VirtualService: tcp (default), tls or http. TCPRoute: tcp only."
    )
    port: PortNumber | None = Field(
        None, description="A route is a candidate if any of its match entries has this port."
    )
    index: Annotated[StrictInt, Field(ge=0)] | None = Field(
        None, description="Position in that protocol's route list (TCPRoute: the rule index)."
    )
    name: Annotated[StrictStr, Field(min_length=1)] | None = Field(None, description="Route name; http routes only.")

    def given(self) -> dict[str, Any]:
        """The selectors the user set (protocol is not a selector, it picks the list)."""
        return {
            key: value
            for key, value in (("port", self.port), ("index", self.index), ("name", self.name))
            if value is not None
        }


class Destination(_Model):
    """One traffic destination: a VirtualService destination, or a TCPRoute backendRef (host = Service)."""

    host: Host = Field(description="Destination host (VirtualService) or Service name (TCPRoute backendRef).")
    subset: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None, description="DestinationRule subset; VirtualService only. Must match when given."
    )
    port: PortNumber | None = Field(
        None,
        description="Destination port. Optional; when the canary is added to a route, "
        "it defaults to the stable destination's port.",
    )

    def describe(self) -> str:
        """``host:port/subset`` as used in messages."""
        text = self.host
        if self.port is not None:
            text += f":{self.port}"
        if self.subset is not None:
            text += f"/{self.subset}"
        return text


class Target(_Model):
    """The object and route whose weights the rollout moves."""

    virtual_service: ObjectRef | None = Field(None, description="An Istio VirtualService.")
    tcp_route: ObjectRef | None = Field(None, description="A Gateway API TCPRoute (v1alpha2 or v1).")
    route: RouteSelector = Field(default_factory=RouteSelector, description="Route selectors.")
    stable: Destination = Field(description="The destination that serves traffic today.")
    canary: Destination = Field(description="The destination the rollout moves traffic to.")

    @model_validator(mode="after")
    def _check_rules(self) -> Target:
        problems = _target_rules(self)
        if problems:
            raise _rules_error(problems)
        return self

    @property
    def kind(self) -> Literal["VirtualService", "TCPRoute"]:
        """Kind of the target object."""
        return "TCPRoute" if self.tcp_route is not None else "VirtualService"

    @property
    def ref(self) -> ObjectRef:
        """Reference to the target object."""
        ref = self.tcp_route or self.virtual_service
        assert ref is not None  # guaranteed by validation
        return ref


class Schedule(_Model):
    """The canary weight at each step and how long each step lasts."""

    steps: Annotated[list[Percent], Field(min_length=1), AfterValidator(_strictly_increasing)] = Field(
        description="Canary weight per step, in percent, strictly increasing. A last step below 100 "
        "waits there for a manual promote."
    )
    step_duration: GoDuration = Field(description="Time spent at each step (Go duration).")

    @property
    def step_duration_seconds(self) -> float:
        """``stepDuration`` in seconds."""
        return parse_go_duration(self.step_duration)


class WorkloadRef(_Model):
    """A workload whose pod template is the canary's revision."""

    kind: Literal["Deployment"] = Field("Deployment", description="Only Deployment for now.")
    name: DnsSubdomain = Field(description="Workload name.")
    namespace: DnsLabel | None = Field(None, description="Defaults to the policy's namespace.")


class Workload(_Model):
    """The canary workload: readiness gates the first weight change, a new pod template starts a run."""

    canary: WorkloadRef | None = Field(
        None,
        description="The canary Deployment. When set, no weight moves before it is Available, and a new pod "
        "template starts a new rollout run.",
    )
    progress_deadline: GoDuration = Field(
        "10m", description="How long the canary may take to become Available before the rollout rolls back."
    )

    @property
    def progress_deadline_seconds(self) -> float:
        """``progressDeadline`` in seconds."""
        return parse_go_duration(self.progress_deadline)


class Spec(_Model):
    """What to roll out and how."""

    target: Target
    schedule: Schedule
    workload: Workload = Field(default_factory=Workload, description="The canary workload (optional).")


class CanaryPolicy(_Model):
    """A rollout policy: ``apiVersion: canaryctl.dev/v1alpha1``, ``kind: CanaryPolicy``."""

    model_config = ConfigDict(title="CanaryPolicy")

    api_version: Literal["canaryctl.dev/v1alpha1"] = Field(description="Always canaryctl.dev/v1alpha1.")
    kind: Literal["CanaryPolicy"] = Field(description="Always CanaryPolicy.")
    metadata: Metadata
    spec: Spec

    @property
    def target_namespace(self) -> str:
        """Namespace of the target object: its own if given, else the policy's."""
        return self.spec.target.ref.namespace or self.metadata.namespace


def _target_rules(target: Target) -> list[tuple[Path, str]]:
    """Rules relating the fields of ``spec.target``, each with the path of the field at fault."""
    problems: list[tuple[Path, str]] = []
    if (target.virtual_service is None) == (target.tcp_route is None):
        got = "both" if target.virtual_service is not None else "neither"
        problems.append(((), f"exactly one of virtualService or tcpRoute must be set (got {got})"))
    selector = target.route
    if selector.name is not None and selector.protocol != "http":
        problems.append(
            (
                ("route", "name"),
                f"the name selector applies to http routes only (protocol is {selector.protocol})",
            )
        )
    if target.tcp_route is not None:
        if selector.protocol != "tcp":
            problems.append((("route", "protocol"), f"a TCPRoute has tcp rules only (got {selector.protocol})"))
        if selector.port is not None:
            problems.append(
                (
                    ("route", "port"),
                    "a TCPRoute's rules have no match ports; select the rule with index instead",
                )
            )
        for role, destination in (("stable", target.stable), ("canary", target.canary)):
            if destination.subset is not None:
                problems.append(
                    (
                        (role, "subset"),
                        "subsets belong to VirtualServices; a TCPRoute backendRef is a Service (host) and port",
                    )
                )
    if (target.stable.host, target.stable.subset) == (target.canary.host, target.canary.subset):
        problems.append((("canary",), "must differ from stable (same host and subset)"))
    return problems


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a CanaryPolicy document (published as policies/canarypolicy.schema.json).

    Rules that relate fields (increasing steps, exactly one target kind, ...) are enforced by
    ``canaryctl lint`` and the controller; the schema carries what JSON Schema can express.
    """
    schema = CanaryPolicy.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://canaryctl.dev/schemas/v1alpha1/canarypolicy.schema.json",
        **schema,
    }
