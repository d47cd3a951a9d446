"""The CanaryPolicy schema (``canaryctl.dev/v1alpha1``).

One set of pydantic models serves policy files, the published JSON Schema
(``policies/canarypolicy.schema.json``) and the CRD (:mod:`controller.core.crd`). Field names are the
camelCase names users write in YAML; unknown fields are rejected everywhere.

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
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from controller.core.display import shown
from controller.core.durations import MAX_GO_DURATION, POSITIVE_GO_DURATION_PATTERN, parse_go_duration
from controller.core.promql import NUMERIC_VARIABLES, placeholder_problems
from controller.core.url_rules import credentials_in_url

API_VERSION = "canaryctl.dev/v1alpha1"
KIND = "CanaryPolicy"
DEFAULT_NAMESPACE = "default"

Path = tuple[str | int, ...]

_DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Hosts are DNS names (short or fully qualified) or IP addresses, as in VirtualService destinations.
_HOST = r"^[A-Za-z0-9]([-A-Za-z0-9_.:]*[A-Za-z0-9])?$"


# Names, hosts and durations are matched whole (``re.fullmatch``): with ``re.match`` a ``$`` also accepts a
# trailing newline, which ``name: |`` in YAML produces and which the API server then refuses (422).
def _dns_label(value: str) -> str:
    if len(value) > 63 or not re.fullmatch(_DNS1123_LABEL, value):
        raise PydanticCustomError(
            "dns_label",
            "must be a DNS-1123 label: at most 63 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit (got {value})",
            {"value": shown(value)},
        )
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        raise PydanticCustomError(
            "dns_subdomain",
            "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (got {value})",
            {"value": shown(value)},
        )
    return value


def _host(value: str) -> str:
    if len(value) > 253 or not re.fullmatch(_HOST, value):
        raise PydanticCustomError(
            "host",
            "must be a host name (short or fully qualified) or an IP address (got {value})",
            {"value": shown(value)},
        )
    return value


def _duration_type(value: Any) -> Any:
    """A bare number is the most common duration mistake (``interval: 30``): say which unit to add."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        example = f"{value:g}s" if value > 0 else "30s"
        raise PydanticCustomError(
            "go_duration_type",
            "must be a duration with a unit, such as {example} (got the number {value})",
            {"example": example, "value": f"{value:g}"},
        )
    return value


def _go_duration(value: str) -> str:
    try:
        seconds = parse_go_duration(value)
    except ValueError as exc:
        too_long = str(exc).startswith("longer")
        raise PydanticCustomError(
            "go_duration",
            "must be at most {limit} (about 292 years), the longest Go duration (got {value})"
            if too_long
            else "must be a Go-style duration such as 30s, 2m or 1h30m (got {value})",
            {"value": shown(value), "limit": MAX_GO_DURATION},
        ) from None
    if seconds <= 0:
        raise PydanticCustomError("go_duration", "must be positive (got {value})", {"value": shown(value)})
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
    BeforeValidator(_duration_type),
    AfterValidator(_go_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": POSITIVE_GO_DURATION_PATTERN,
            "description": f"Go-style duration, e.g. 30s, 2m, 1h30m; positive, at most {MAX_GO_DURATION}.",
        }
    ),
]


def _count_or_duration(value: Any) -> Any:
    """One clear message for a value that is neither branch of ``count | duration`` (not one per branch)."""
    if isinstance(value, str):
        return _go_duration(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise PydanticCustomError("count", "must be at least 1 (got {value})", {"value": value})
        return value
    got = f"the number {value:g}" if isinstance(value, float) else _type_name(value)
    raise PydanticCustomError(
        "count_or_duration",
        "must be a count (a whole number such as 10) or a duration with a unit such as 10m (got {got})",
        {"got": got},
    )


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


CountOrDuration = Annotated[
    Annotated[StrictInt, Field(ge=1)] | GoDuration,
    BeforeValidator(_count_or_duration),
]


def _no_credentials(value: str) -> str:
    problem = credentials_in_url(value)  # user:password@ would reach every alert and log
    if problem:
        raise PydanticCustomError("url_credentials", problem)
    return value


HttpUrl = Annotated[StrictStr, Field(pattern=r"^https?://\S+$"), AfterValidator(_no_credentials)]
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


BUILTIN_TEMPLATES = ("istio-tcp-connect-error-ratio", "istio-tcp-connections", "envoy-tcp-connect-error-ratio")
ERROR_RATIO_TEMPLATES = ("istio-tcp-connect-error-ratio", "envoy-tcp-connect-error-ratio")
_LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.:/]*[A-Za-z0-9])?$"
LabelValue = Annotated[
    StrictStr,
    Field(min_length=1, max_length=253, pattern=_LABEL_VALUE),
]
# Envoy cluster names as Istio writes them: outbound|9000|v2|tcp-echo.shop.svc.cluster.local (an empty
# subset gives "||"). Values are inserted as quoted, escaped PromQL strings, so "|" is harmless.
_CLUSTER_NAME = r"^[A-Za-z0-9]([-A-Za-z0-9_.:/|]*[A-Za-z0-9])?$"
ClusterName = Annotated[
    StrictStr,
    Field(min_length=1, max_length=253, pattern=_CLUSTER_NAME),
]


class SecretKeySelector(_Model):
    """A key of a Kubernetes Secret in the policy's namespace."""

    name: DnsSubdomain = Field(description="Secret name.")
    key: Annotated[StrictStr, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = Field(
        description="Key inside the Secret."
    )


class SecretRef(_Model):
    """A secret value by reference, never inline: a Secret key or an environment variable of the controller."""

    secret_key_ref: SecretKeySelector | None = Field(None, description="A key of a Secret in the policy's namespace.")
    env: Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = Field(
        None, description="Name of an environment variable of the controller."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.secret_key_ref is None) == (self.env is None):
            raise _rules_error([((), "exactly one of secretKeyRef or env must be set")])
        return self


class BasicAuth(_Model):
    """HTTP basic authentication."""

    username: Annotated[StrictStr, Field(min_length=1)] = Field(description="User name (not secret).")
    password: SecretRef = Field(description="Password, by reference.")


# Headers whose value is a credential: a literal one in a policy would be readable by anyone who can read it.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


class PrometheusSpec(_Model):
    """How to reach Prometheus. Unset fields fall back to the controller's settings."""

    url: HttpUrl | None = Field(None, description="Base URL, e.g. http://prometheus.istio-system:9090.")
    bearer_token: SecretRef | None = Field(None, description="Bearer token, by reference.")
    basic_auth: BasicAuth | None = Field(None, description="Basic authentication.")
    headers: dict[str, str] | None = Field(None, description="Extra (non-secret) HTTP headers, e.g. X-Scope-OrgID.")
    ca_bundle: SecretRef | None = Field(None, description="PEM CA bundle to verify the server, by reference.")
    insecure_skip_verify: bool = Field(False, description="Skip TLS verification (explicit opt-in; avoid).")
    timeout: GoDuration = Field("10s", description="Per-query timeout.")

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusSpec:
        problems: list[tuple[Path, str]] = []
        if self.bearer_token is not None and self.basic_auth is not None:
            problems.append((("bearerToken",), "use bearerToken or basicAuth, not both"))
        problems.extend(
            (("headers", name), "must not carry credentials in the policy: use bearerToken or basicAuth, by reference")
            for name in self.headers or {}
            if name.strip().lower() in _CREDENTIAL_HEADERS
        )
        if problems:
            raise _rules_error(problems)
        return self


class CountTest(_Model):
    """One-sided count test of the canary's error rate against the stable baseline."""

    method: Literal["binomial", "poisson"] = Field(
        "binomial", description="binomial (conditional exact test on connection counts) or poisson."
    )
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = Field(
        0.99, description="Confidence that the canary is worse before the check fails (0.5..1, default 0.99)."
    )


class CompareToStable(_Model):
    """Fail when canary > stable x factor + margin."""

    factor: Annotated[float, Field(ge=0)] = Field(1.0, description="Multiplier of the stable value.")
    margin: Annotated[float, Field(ge=0)] = Field(0.0, description="Added to the scaled stable value.")


class MetricCheck(_Model):
    """One measurement and how to judge it."""

    name: DnsLabel = Field(description="Name of the check (unique in the policy), used in status and alerts.")
    template: Literal[BUILTIN_TEMPLATES] | None = Field(  # type: ignore[valid-type]
        None, description="A built-in measurement: " + ", ".join(BUILTIN_TEMPLATES) + "."
    )
    query: Annotated[StrictStr, Field(min_length=1, max_length=4096)] | None = Field(
        None,
        description="A custom PromQL template returning one value. Variables in {{ }}: workload (the side "
        "measured), namespace, canary_workload, stable_workload, canary_cluster, stable_cluster, "
        "canary_service, stable_service, window, step_start; add '| regex' inside the braces to escape for =~.",
    )
    window: GoDuration | None = Field(
        None, description="Look-back window; default analysis.interval. Never reaches back before the step began."
    )
    max: float | None = Field(None, description="Fail when the canary's value is above this.")
    min: float | None = Field(None, description="Fail when the canary's value is below this.")
    compare_to_stable: CompareToStable | None = Field(None, description="Judge against the stable version.")
    count_test: CountTest | None = Field(None, description="Error ratios: one-sided count test against stable.")
    min_connections: Annotated[StrictInt, Field(ge=0)] | None = Field(
        None,
        description="Error ratios: canary connections needed in the window before the check can pass (default 100).",
    )
    on_no_data: Literal["hold", "fail", "pass"] = Field(
        "hold", description="When the query returns nothing: hold (inconclusive, default), fail or pass."
    )

    @property
    def is_error_ratio(self) -> bool:
        """True for the built-in error ratios (they carry counts)."""
        return self.template in ERROR_RATIO_TEMPLATES


class MetricSelector(_Model):
    """How the canary and stable versions appear in metrics (label values)."""

    canary_workload: LabelValue | None = Field(
        None, description="destination_workload of the canary; default spec.workload.canary.name."
    )
    stable_workload: LabelValue | None = Field(None, description="destination_workload of the stable version.")
    canary_service: LabelValue | None = Field(
        None, description="destination_service (FQDN) of the canary when it has its own Service (host split)."
    )
    stable_service: LabelValue | None = Field(None, description="destination_service (FQDN) of the stable Service.")
    canary_cluster: ClusterName | None = Field(
        None,
        description="envoy_cluster_name of the canary (Envoy metrics): outbound|9000|v2|tcp-echo.ns.svc.cluster.local",
    )
    stable_cluster: ClusterName | None = Field(None, description="envoy_cluster_name of the stable version.")
    cluster_label: Literal["envoy_cluster_name", "cluster_name"] = Field(
        "envoy_cluster_name",
        description="The label holding the cluster name in Envoy's stats: envoy_cluster_name (Envoy's default "
        "tags) or cluster_name (Istio's proxies and gateways).",
    )
    namespace: DnsLabel | None = Field(
        None, description="destination_workload_namespace; default the policy's namespace."
    )


class TrafficShareCheck(_Model):
    """Whether the canary gets the share of new connections its weight says (docs/analysis.md)."""

    check: Literal["hold", "fail", "off"] = Field(
        "hold",
        description="When the canary's share of new connections is far from the written weight: hold the step "
        "(inconclusive, default), fail (roll back), or off (only show the share).",
    )
    tolerance: Annotated[float, Field(ge=0, le=100)] = Field(
        5.0,
        description="Percentage points the share may stray from the weight (default 5); it is off only when its "
        "whole 99.9 % binomial interval lies outside weight +- tolerance.",
    )


class Analysis(_Model):
    """Prometheus checks during and at the end of every step."""

    interval: GoDuration = Field("30s", description="How often the checks run during a step (fail fast).")
    prometheus: PrometheusSpec | None = Field(None, description="Prometheus connection; default from settings.")
    selector: MetricSelector = Field(default_factory=MetricSelector, description="Label values of the versions.")
    metrics: Annotated[list[MetricCheck], Field(min_length=1)] = Field(description="The checks.")
    failure_limit: Annotated[StrictInt, Field(ge=1)] = Field(
        1, description="Consecutive FAIL verdicts that roll back (default 1: fail fast)."
    )
    max_inconclusive: CountOrDuration | None = Field(
        None,
        description="Consecutive inconclusive verdicts (a count) or time inconclusive (a duration) after which "
        "onInconclusive applies. Unset: wait forever.",
    )
    on_inconclusive: Literal["pause", "rollback"] = Field("pause", description="pause (default) or rollback.")
    traffic_share: TrafficShareCheck | None = Field(
        None,
        description="The canary's share of new connections tested against the written weight; default: hold "
        "the step when it is far off, tolerance 5 percentage points.",
    )
    scrape_interval: GoDuration | None = Field(
        None,
        description="How often Prometheus scrapes the counters the checks read; default learned from the samples' "
        "spacing (or the controller's setting). A check waits until its window holds two scrapes.",
    )

    @property
    def interval_seconds(self) -> float:
        """``interval`` in seconds."""
        return parse_go_duration(self.interval)

    @property
    def scrape_interval_seconds(self) -> float | None:
        """``scrapeInterval`` in seconds, None when the controller learns it."""
        return parse_go_duration(self.scrape_interval) if self.scrape_interval is not None else None


ALERT_NAMES = ("CanaryRolledBack", "CanaryFailed", "CanaryDriftDetected", "CanaryPaused", "CanaryPromoted")
DEFAULT_ALERTS_ON = ("CanaryRolledBack", "CanaryFailed", "CanaryDriftDetected")


class AlertmanagerTarget(_Model):
    """An Alertmanager (API v2)."""

    url: HttpUrl = Field(description="Base URL of Alertmanager.")


class WebhookUrlTarget(_Model):
    """A chat webhook (Slack, Microsoft Teams, Discord): its URL is a secret, so it comes by reference."""

    webhook_url: SecretRef = Field(description="The webhook URL, from a Secret key or an environment variable.")


class GenericWebhookTarget(_Model):
    """A generic JSON webhook, signed with HMAC-SHA256 when a secret is given."""

    url: SecretRef = Field(description="The receiver's URL, by reference.")
    secret: SecretRef | None = Field(None, description="Shared secret for the X-Canary-Signature header.")


class AlertRoute(_Model):
    """Where alerts about this policy go: exactly one sink per entry."""

    name: DnsLabel = Field(description="Name of this route, unique in the policy.")
    alertmanager: AlertmanagerTarget | None = None
    slack: WebhookUrlTarget | None = None
    teams: WebhookUrlTarget | None = None
    discord: WebhookUrlTarget | None = None
    webhook: GenericWebhookTarget | None = None
    on: list[Literal[ALERT_NAMES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(DEFAULT_ALERTS_ON),
        description="Which alerts: " + ", ".join(ALERT_NAMES) + ". Default: rollbacks (every path), failures "
        "and drift.",
    )
    severity: dict[str, Literal["critical", "warning", "info"]] | None = Field(
        None, description="Severity per alert name (" + ", ".join(ALERT_NAMES) + "), overriding the defaults."
    )

    @model_validator(mode="after")
    def _one_sink(self) -> AlertRoute:
        sinks = [name for name in ("alertmanager", "slack", "teams", "discord", "webhook") if getattr(self, name)]
        if len(sinks) != 1:
            raise _rules_error(
                [
                    (
                        (),
                        "exactly one of alertmanager, slack, teams, discord or webhook must be set"
                        + (f" (got {', '.join(sinks)})" if sinks else ""),
                    )
                ]
            )
        return self

    @property
    def sink(self) -> str:
        """Which kind of sink this route uses."""
        return next(name for name in ("alertmanager", "slack", "teams", "discord", "webhook") if getattr(self, name))


class Spec(_Model):
    """What to roll out and how."""

    target: Target
    schedule: Schedule
    workload: Workload = Field(default_factory=Workload, description="The canary workload (optional).")
    analysis: Analysis | None = Field(None, description="Prometheus analysis; without it no step advances alone.")
    alerts: list[AlertRoute] = Field(
        default_factory=list, description="Alert routes, in addition to Kubernetes Events (always recorded)."
    )

    @model_validator(mode="after")
    def _check_analysis(self) -> Spec:
        problems = _analysis_rules(self)
        if problems:
            raise _rules_error(problems)
        return self


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


_TEMPLATE_VARIABLES = {
    "workload",
    "namespace",
    "canary_workload",
    "stable_workload",
    "canary_cluster",
    "stable_cluster",
    "canary_service",
    "stable_service",
    "window",
    "step_start",
}
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*(?:\|\s*([a-z]+)\s*)?\}\}")


def template_variables(query: str) -> list[tuple[str, str | None]]:
    """(variable, filter) of every ``{{ variable | filter }}`` in a custom query."""
    return [(m.group(1), m.group(2)) for m in _PLACEHOLDER.finditer(query)]


def _alert_rules(spec: Spec) -> list[tuple[Path, str]]:
    problems: list[tuple[Path, str]] = []
    names: dict[str, int] = {}
    for index, route in enumerate(spec.alerts):
        if route.name in names:
            problems.append(
                (("alerts", index, "name"), f"duplicate alert route {route.name!r} (also alerts[{names[route.name]}])")
            )
        names.setdefault(route.name, index)
        for alert in route.severity or {}:
            if alert not in ALERT_NAMES:
                problems.append(
                    (
                        (("alerts", index, "severity", alert)),
                        f"unknown alert {alert!r}; known: " + ", ".join(ALERT_NAMES),
                    )
                )
    return problems


def _analysis_rules(spec: Spec) -> list[tuple[Path, str]]:
    analysis = spec.analysis
    if analysis is None:
        return _alert_rules(spec)
    problems: list[tuple[Path, str]] = _alert_rules(spec)
    seen: dict[str, int] = {}
    selector = analysis.selector
    for index, check in enumerate(analysis.metrics):
        at: Path = ("analysis", "metrics", index)
        if check.name in seen:
            problems.append(((*at, "name"), f"duplicate check name {check.name!r} (also metrics[{seen[check.name]}])"))
        seen.setdefault(check.name, index)
        if (check.template is None) == (check.query is None):
            problems.append((at, "exactly one of template or query must be set"))
            continue
        if check.count_test is not None and not check.is_error_ratio:
            problems.append(((*at, "countTest"), "a count test needs connection counts: use an error-ratio template"))
        if check.min_connections is not None and not check.is_error_ratio:
            problems.append(((*at, "minConnections"), "applies to the built-in error-ratio templates only"))
        if check.max is not None and check.min is not None and check.min > check.max:
            problems.append(((*at, "min"), f"min {check.min} is above max {check.max}"))
        if check.query is not None:
            stripped = _PLACEHOLDER.sub("", check.query)
            if "{{" in stripped or "}}" in stripped:
                problems.append(((*at, "query"), "malformed {{ }} placeholder"))
            for variable, flt in template_variables(check.query):
                if variable not in _TEMPLATE_VARIABLES:
                    problems.append(
                        (
                            (*at, "query"),
                            f"unknown variable {variable!r}; known: " + ", ".join(sorted(_TEMPLATE_VARIABLES)),
                        )
                    )
                if flt not in (None, "regex"):
                    problems.append(((*at, "query"), f"unknown filter {flt!r} (only 'regex')"))
            problems.extend(((*at, "query"), message) for message in placeholder_problems(check.query))
            if check.compare_to_stable is not None and "workload" not in {
                v for v, _ in template_variables(check.query)
            }:
                problems.append(
                    ((*at, "compareToStable"), "the query must use {{ workload }} so it can be measured for stable too")
                )
        needs: list[tuple[str, object]] = []
        if check.template in {"istio-tcp-connect-error-ratio", "istio-tcp-connections"}:
            canary = selector.canary_workload or (spec.workload.canary.name if spec.workload.canary else None)
            needs.append(("canaryWorkload", canary))
            if check.compare_to_stable is not None or check.count_test is not None:
                needs.append(("stableWorkload", selector.stable_workload))
        if check.template == "envoy-tcp-connect-error-ratio":
            needs.append(("canaryCluster", selector.canary_cluster))
            if check.compare_to_stable is not None or check.count_test is not None:
                needs.append(("stableCluster", selector.stable_cluster))
        for field, value in needs:
            if value is None:
                problems.append(
                    (
                        (*at, "template"),
                        f"{check.template} needs analysis.selector.{field}"
                        + (" (or spec.workload.canary)" if field == "canaryWorkload" else ""),
                    )
                )
    return problems


def policy_json_schema(*, editor_rules: bool = True) -> dict[str, Any]:
    """The JSON Schema of a CanaryPolicy document (published as policies/canarypolicy.schema.json).

    Rules that relate fields are enforced by ``canaryctl lint`` and the controller; with ``editor_rules``
    the schema also carries the ones JSON Schema can express (see :func:`_add_editor_rules`), so that
    editors catch them. The CRD is built without them: a Kubernetes structural schema cannot hold them.
    """
    schema = CanaryPolicy.model_json_schema(by_alias=True, mode="validation")
    if editor_rules:
        _add_editor_rules(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://canaryctl.dev/schemas/v1alpha1/canarypolicy.schema.json",
        **schema,
    }


def _set(name: str) -> dict[str, Any]:
    """The field is present and not null (an optional field written ``null`` is unset)."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _exactly_one(*names: str) -> dict[str, Any]:
    return {"oneOf": [_set(name) for name in names]}


def _uses_template(*templates: str, also: dict[str, Any] | None = None) -> dict[str, Any]:
    """``analysis.metrics`` holds a check with one of ``templates`` (and matching ``also``)."""
    check: dict[str, Any] = {"required": ["template"], "properties": {"template": {"enum": list(templates)}}}
    return {"properties": {"metrics": {"contains": {**check, **({"allOf": [also]} if also else {})}}}}


def _selector_needs(field: str) -> dict[str, Any]:
    return {"required": ["selector"], "properties": {"selector": _set(field)}}


_ISTIO_TEMPLATES = ("istio-tcp-connect-error-ratio", "istio-tcp-connections")
_JUDGED_AGAINST_STABLE = {"anyOf": [_set("countTest"), _set("compareToStable")]}
_VARIABLES = "|".join(sorted(_TEMPLATE_VARIABLES))
_STRING_VARIABLES = "|".join(sorted(_TEMPLATE_VARIABLES - NUMERIC_VARIABLES))
# Every "{{" opens a known placeholder: ``{{ name }}`` or ``{{ name | regex }}``.
_KNOWN_PLACEHOLDERS = rf"^(?:[^{{}}]|\{{(?!\{{)|\}}(?!\}})|\{{\{{\s*(?:{_VARIABLES})\s*(?:\|\s*regex\s*)?\}}\}})*$"
# A string variable right after a quote is inside the query's own quotes (lint checks the general case).
_QUOTED_PLACEHOLDER = "[\"'`]" + rf"\{{\{{\s*(?:{_STRING_VARIABLES})\s*(?:\|\s*regex\s*)?\}}\}}"
_CREDENTIAL_HEADER = (
    "^\\s*(?:"
    + "|".join("".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in name) for name in sorted(_CREDENTIAL_HEADERS))
    + ")\\s*$"
)


def _editor_rules() -> dict[str, list[dict[str, Any]]]:
    """Per model ($defs name), the rules of ``_target_rules``, ``_analysis_rules`` and the validators that
    JSON Schema can express. Not expressible, so left to lint: increasing order of steps (only repeats are
    caught), canary different from stable, min not above max, unique names, durations' upper bound."""
    return {
        "Target": [
            _exactly_one("virtualService", "tcpRoute"),
            {
                "if": _set("tcpRoute"),
                "then": {
                    "properties": {
                        "route": {"properties": {"protocol": {"const": "tcp"}, "port": {"type": "null"}}},
                        "stable": {"properties": {"subset": {"type": "null"}}},
                        "canary": {"properties": {"subset": {"type": "null"}}},
                    }
                },
            },
        ],
        "RouteSelector": [
            {"if": _set("name"), "then": {"required": ["protocol"], "properties": {"protocol": {"const": "http"}}}}
        ],
        "Schedule": [{"properties": {"steps": {"uniqueItems": True, "maxItems": 101}}}],
        "MetricCheck": [
            _exactly_one("template", "query"),
            *(
                {
                    "if": _set(field),
                    "then": {
                        "required": ["template"],
                        "properties": {"template": {"enum": list(ERROR_RATIO_TEMPLATES)}},
                    },
                }
                for field in ("countTest", "minConnections")
            ),
            {
                "if": {"allOf": [_set("query"), _set("compareToStable")]},
                "then": {"properties": {"query": {"pattern": r"\{\{\s*workload\s*\}\}"}}},
            },
            {"properties": {"query": {"pattern": _KNOWN_PLACEHOLDERS, "not": {"pattern": _QUOTED_PLACEHOLDER}}}},
        ],
        "Analysis": [
            {"properties": {"metrics": {"uniqueItems": True}}},
            {"if": _uses_template("envoy-tcp-connect-error-ratio"), "then": _selector_needs("canaryCluster")},
            {
                "if": _uses_template("envoy-tcp-connect-error-ratio", also=_JUDGED_AGAINST_STABLE),
                "then": _selector_needs("stableCluster"),
            },
            {
                "if": _uses_template(*_ISTIO_TEMPLATES, also=_JUDGED_AGAINST_STABLE),
                "then": _selector_needs("stableWorkload"),
            },
        ],
        "Spec": [
            {"properties": {"alerts": {"uniqueItems": True}}},
            {
                "if": {"required": ["analysis"], "properties": {"analysis": _uses_template(*_ISTIO_TEMPLATES)}},
                "then": {
                    "anyOf": [
                        {"properties": {"analysis": _selector_needs("canaryWorkload")}},
                        {"required": ["workload"], "properties": {"workload": _set("canary")}},
                    ]
                },
            },
        ],
        "AlertRoute": [
            _exactly_one("alertmanager", "slack", "teams", "discord", "webhook"),
            {"properties": {"severity": {"propertyNames": {"enum": list(ALERT_NAMES)}}}},
        ],
        "SecretRef": [_exactly_one("secretKeyRef", "env")],
        "PrometheusSpec": [
            {"not": {"allOf": [_set("bearerToken"), _set("basicAuth")]}},
            {"properties": {"headers": {"propertyNames": {"not": {"pattern": _CREDENTIAL_HEADER}}}}},
        ],
    }


def _whole_match_patterns(node: Any) -> None:
    """``$`` also matches before a final newline in Python's ``re`` (which Python validators use); ECMA-262
    and RE2 anchor at the very end. ``$(?!\\n)`` means the very end in all of them."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str) and value.endswith("$") and not value.endswith("\\$"):
                node[key] = value + "(?!\\n)"
            else:
                _whole_match_patterns(value)
    elif isinstance(node, list):
        for item in node:
            _whole_match_patterns(item)


def _add_editor_rules(schema: dict[str, Any]) -> None:
    for name, rules in _editor_rules().items():
        schema["$defs"][name]["allOf"] = rules
    _whole_match_patterns(schema)
