"""The CanaryPolicy models (``canaryctl.dev/v1alpha1``): metadata, target, schedule, workload, analysis and
alert routes. Field types come from :mod:`.fields`; rules that relate fields from :mod:`.rules`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator
from pydantic.alias_generators import to_camel

from controller.core.durations import parse_go_duration
from controller.core.policy.fields import (
    ALERT_NAMES,
    BUILTIN_TEMPLATES,
    CREDENTIAL_HEADERS,
    DEFAULT_ALERTS_ON,
    DEFAULT_NAMESPACE,
    ERROR_RATIO_TEMPLATES,
    ClusterName,
    CountOrDuration,
    DnsLabel,
    DnsSubdomain,
    GoDuration,
    Host,
    HttpUrl,
    LabelValue,
    Path,
    Percent,
    PortNumber,
    rules_error,
    strictly_increasing,
)
from controller.core.policy.rules import analysis_rules, target_rules
from controller.core.status import Severity


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
        problems = target_rules(self)
        if problems:
            raise rules_error(problems)
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

    steps: Annotated[list[Percent], Field(min_length=1), AfterValidator(strictly_increasing)] = Field(
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
            raise rules_error([((), "exactly one of secretKeyRef or env must be set")])
        return self


class BasicAuth(_Model):
    """HTTP basic authentication."""

    username: Annotated[StrictStr, Field(min_length=1)] = Field(description="User name (not secret).")
    password: SecretRef = Field(description="Password, by reference.")


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
            if name.strip().lower() in CREDENTIAL_HEADERS
        )
        if problems:
            raise rules_error(problems)
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


class AlertmanagerTarget(_Model):
    """An Alertmanager (API v2)."""

    url: HttpUrl = Field(description="Base URL of Alertmanager.")


class WebhookUrlTarget(_Model):
    """A chat webhook (Slack, Microsoft Teams, Discord): its URL is a secret, so it comes by reference."""

    webhook_url: SecretRef = Field(description="The webhook URL, from a Secret key or an environment variable.")


class TeamsTarget(_Model):
    """A Microsoft Teams webhook: a Workflows webhook (an Adaptive Card) or a legacy connector (a MessageCard)."""

    webhook_url: SecretRef = Field(description="The webhook URL, from a Secret key or an environment variable.")
    format: Literal["adaptiveCard", "messageCard"] = Field(
        "adaptiveCard",
        description="adaptiveCard (default): an Adaptive Card 1.4 in the message envelope Teams Workflows "
        "webhooks take. messageCard: the legacy connector card, only for an Office 365 connector webhook "
        "still in service (Microsoft retired those connectors; Workflows refuse MessageCards).",
    )


PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyTarget(_Model):
    """A PagerDuty service through the Events API v2: an incident per policy and run, resolved by a promotion."""

    routing_key: SecretRef = Field(
        description="The service's Events API v2 integration key (routing key), by reference: it is a secret."
    )
    url: HttpUrl = Field(
        PAGERDUTY_EVENTS_URL,
        description="The Events API v2 endpoint. Default: " + PAGERDUTY_EVENTS_URL + " (EU service region: "
        "https://events.eu.pagerduty.com/v2/enqueue).",
    )


class GenericWebhookTarget(_Model):
    """A generic JSON webhook, signed with HMAC-SHA256 when a secret is given."""

    url: SecretRef = Field(description="The receiver's URL, by reference.")
    secret: SecretRef | None = Field(None, description="Shared secret for the X-Canary-Signature header.")


ALERT_SINKS = ("alertmanager", "slack", "teams", "discord", "webhook", "pagerduty")
"""The kinds of sink an alert route can name, one per route."""


class AlertRoute(_Model):
    """Where alerts about this policy go: exactly one sink per entry."""

    name: DnsLabel = Field(description="Name of this route, unique in the policy.")
    alertmanager: AlertmanagerTarget | None = None
    slack: WebhookUrlTarget | None = None
    teams: TeamsTarget | None = None
    discord: WebhookUrlTarget | None = None
    webhook: GenericWebhookTarget | None = None
    pagerduty: PagerDutyTarget | None = None
    on: list[Literal[ALERT_NAMES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(DEFAULT_ALERTS_ON),
        description="Which alerts: " + ", ".join(ALERT_NAMES) + ". Default: rollbacks (every path), failures "
        "and drift.",
    )
    severity: dict[str, Severity] | None = Field(
        None, description="Severity per alert name (" + ", ".join(ALERT_NAMES) + "), overriding the defaults."
    )

    @model_validator(mode="after")
    def _one_sink(self) -> AlertRoute:
        sinks = [name for name in ALERT_SINKS if getattr(self, name)]
        if len(sinks) != 1:
            raise rules_error(
                [
                    (
                        (),
                        f"exactly one of {', '.join(ALERT_SINKS[:-1])} or {ALERT_SINKS[-1]} must be set"
                        + (f" (got {', '.join(sinks)})" if sinks else ""),
                    )
                ]
            )
        if self.pagerduty is not None and "CanaryPromoted" in self.on:
            raise rules_error(
                [
                    (
                        ("on",),
                        "a pagerduty route cannot take CanaryPromoted (it would page someone for a success): "
                        "a promotion resolves the incidents of the policy's earlier runs by itself",
                    )
                ]
            )
        return self

    @property
    def sink(self) -> str:
        """Which kind of sink this route uses."""
        return next(name for name in ALERT_SINKS if getattr(self, name))


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
        problems = analysis_rules(self)
        if problems:
            raise rules_error(problems)
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
