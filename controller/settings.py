"""Controller settings, from environment variables prefixed ``CANARY_`` (or a ``.env``-style file).

Every field says its unit and default; ``canaryctl run`` refuses to start on an invalid value and names
the setting. Only ``controller.runtime`` reads settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from controller.core.policy import AlertRoute
from controller.core.url_rules import ANY_URL, credentials_in_url, strip_userinfo


class Settings(BaseSettings):
    """All settings of the controller daemon."""

    model_config = SettingsConfigDict(env_prefix="CANARY_", extra="forbid", env_file=None)

    namespace: str = Field(
        "canary-system",
        description="The controller's own namespace: file-mode status ConfigMaps and leader-election leases live "
        "here. Default canary-system.",
    )
    policy_dir: Path | None = Field(
        None,
        description="Directory of policy files (file mode; the Helm chart mounts a ConfigMap here). Unset: no "
        "file policies.",
    )
    watch_crds: bool = Field(True, description="Serve CanaryPolicy resources (CRD mode). Default true.")
    watch_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated namespaces whose CanaryPolicy resources this controller serves. Empty (the "
        "default): all namespaces.",
    )
    kubeconfig: str | None = Field(
        None, description="Kubeconfig file for the main cluster. Unset: KUBECONFIG, ~/.kube/config, in-cluster."
    )
    context: str | None = Field(None, description="Kubeconfig context for the main cluster. Unset: current.")
    mesh_kubeconfig: str | None = Field(
        None,
        description="Kubeconfig of the API server holding VirtualServices and TCPRoutes when it is not the main "
        "one (Alibaba ASM keeps Istio config on its own control plane). Unset: the main cluster.",
    )
    mesh_context: str | None = Field(None, description="Kubeconfig context for the mesh API server.")
    tick_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Seconds between two looks at the policy sources; also how often a rollout under way without "
        "analysis gets a pass (with analysis: every spec.analysis.interval, and at once on a watch event). Default 5.",
    )
    resync_seconds: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="Seconds between two full resyncs, when every policy gets a pass whatever the watches said "
        "(a safety net). 0: none. Default 300.",
    )
    status_refresh_writes_per_second: float = Field(
        20.0,
        ge=0,
        le=10000,
        description="Most status writes a second that only refresh healthy rollouts' last measurements (a "
        "decision, a failing or inconclusive check, a command is always written at once). Each rollout's "
        "refresh is once a minute up to this many times 60 rollouts, then every rollouts/this seconds "
        "(10,000 rollouts: every 500 s). 0: no limit. Default 20.",
    )
    gc_threshold: int = Field(
        50_000,
        ge=0,
        le=10_000_000,
        description="Allocations between two young-generation garbage collections of the daemon (Python's "
        "default is 700, which at thousands of rollouts spends a sixth of the controller's time collecting). "
        "0: Python's default. Default 50000.",
    )
    watch_cache: bool = Field(
        True,
        description="Read routes, canary Deployments and status from watch caches (list and watch, kept in memory) "
        "instead of the API at every pass. false needs only get RBAC, at the cost of API reads. Default true.",
    )
    workers: int = Field(
        8, ge=1, le=256, description="Reconcile passes run in parallel (a slow one never delays others). Default 8."
    )
    api_timeout_seconds: float = Field(10.0, gt=0, le=300, description="Per-request Kubernetes API timeout, s.")
    prometheus_url: str | None = Field(
        None,
        description="Default Prometheus base URL for policies whose spec.analysis.prometheus sets none "
        "(e.g. http://prometheus.istio-system:9090). Unset: such policies' checks are inconclusive.",
    )
    prometheus_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Default per-query Prometheus timeout, s. Default 10."
    )
    prometheus_group_seconds: float = Field(
        5.0,
        ge=0,
        le=60,
        description="Seconds one grouped Prometheus answer is fresh for every rollout checking the same built-in "
        "template over the same window (at most half the window); for as long again it still serves while one "
        "refresh is fetched in the background, so queries do not grow with the number of rollouts and no pass "
        "waits for them. 0: every rollout queries alone. Default 5.",
    )
    scrape_interval_seconds: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="How often Prometheus scrapes the counters the checks read, s. A check waits until its window "
        "holds two scrapes. Unset (default): learned from the spacing of the samples; a policy's "
        "spec.analysis.scrapeInterval overrides both.",
    )
    prometheus_bearer_token_env: str | None = Field(
        None, description="Name of an environment variable holding the default Prometheus bearer token."
    )
    prometheus_basic_auth_username: str | None = Field(None, description="Default Prometheus basic-auth user.")
    prometheus_basic_auth_password_env: str | None = Field(
        None, description="Name of an environment variable holding the default basic-auth password."
    )
    prometheus_headers: dict[str, str] = Field(
        default_factory=dict, description='Default extra headers for Prometheus, as JSON ({"X-Scope-OrgID": "a"}).'
    )
    prometheus_ca_bundle_env: str | None = Field(
        None, description="Name of an environment variable holding a PEM CA bundle for Prometheus."
    )
    prometheus_insecure_skip_verify: bool = Field(False, description="Skip TLS verification of Prometheus (avoid).")
    policy_prometheus_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Prometheus base URLs that CanaryPolicy resources may name in "
        "spec.analysis.prometheus.url besides the default (CANARY_PROMETHEUS_URL); {namespace} stands for the "
        "policy's namespace (http://prometheus.{namespace}:9090 lets each namespace use its own), * for any URL. "
        "Empty (the default): the default URL only. Policy files are the operator's and are not limited.",
    )
    policy_env_allowed: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated environment variables of the controller that CanaryPolicy resources may "
        "name in {env: NAME} references. Empty (the default): none; policy files may name any.",
    )
    alerts: list[AlertRoute] = Field(
        default_factory=list,
        description="Alert routes every policy's alerts also go to, as JSON in the policy's spec.alerts form "
        '(e.g. [{"name": "oncall", "alertmanager": {"url": "http://alertmanager:9093"}}]). Secrets by {env: NAME}.',
    )
    leader_elect: bool = Field(
        False,
        description="Elect a leader among replicas with a coordination.k8s.io/v1 Lease in CANARY_NAMESPACE; only "
        "the leader writes. Default false (one replica; the Helm chart turns it on).",
    )
    lease_name: str = Field(
        "canary-controller",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
        description="Name of the leader-election Lease; one per shard. Default canary-controller.",
    )
    lease_duration_seconds: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="Seconds a standby waits after the Lease last changed before taking over (client-go's "
        "LeaseDuration). Default 15.",
    )
    renew_deadline_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds the leader keeps leading without a successful renewal (client-go's RenewDeadline); "
        "must be below the lease duration. Default 10.",
    )
    retry_period_seconds: float = Field(
        2.0,
        gt=0,
        le=600,
        description="Seconds between attempts to acquire or renew the Lease (client-go's RetryPeriod); must be "
        "below the renew deadline. Default 2.",
    )
    identity: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="This replica's name in the Lease (the chart sets the pod name). Unset: hostname plus a "
        "random suffix.",
    )
    policy_selector: str | None = Field(
        None,
        description="Kubernetes label selector on CanaryPolicy resources (e.g. shard=a); only matching ones are "
        "served, for sharding. Unset: all.",
    )
    http_host: str = Field("0.0.0.0", description="Address of the /healthz, /readyz and /metrics server.")
    http_port: int = Field(8080, ge=0, le=65535, description="Port of that server (0: a free one). Default 8080.")
    dashboard: bool = Field(
        False,
        description="Serve the read-only web dashboard (docs/dashboard.md) on dashboard_port; every request needs "
        "a bearer token that passes a TokenReview, and a SubjectAccessReview for get canarypolicies in the "
        "namespace shown. Default false.",
    )
    dashboard_port: int = Field(
        3100, ge=0, le=65535, description="Port of the dashboard, on http_host (0: a free one). Default 3100."
    )
    http_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Seconds a client of that server has to send its request, and to take the answer; slower "
        "connections are closed. Default 5.",
    )
    http_max_connections: int = Field(
        256,
        ge=4,
        le=4096,
        description="Connections that server keeps open at once; beyond it the idlest one is closed (keep it well "
        "below the process's open-file limit). Default 256.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level. Default INFO.")

    @field_validator("watch_namespaces", "policy_prometheus_urls", "policy_env_allowed", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("policy_prometheus_urls")
    @classmethod
    def _allowed_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if url == ANY_URL:
                continue
            if not re.fullmatch(r"https?://\S+", url):
                raise ValueError(f"{url!r} is not an http(s) URL (nor *)")
            if credentials_in_url(url):
                raise ValueError(f"{strip_userinfo(url)}: credentials inside the URL (user:password@) are refused")
        return value

    @field_validator("policy_env_allowed")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _prometheus_auth(self) -> Settings:
        if self.prometheus_bearer_token_env and self.prometheus_basic_auth_username:
            raise ValueError("set CANARY_PROMETHEUS_BEARER_TOKEN_ENV or the basic-auth settings, not both")
        if bool(self.prometheus_basic_auth_username) != bool(self.prometheus_basic_auth_password_env):
            raise ValueError(
                "CANARY_PROMETHEUS_BASIC_AUTH_USERNAME and CANARY_PROMETHEUS_BASIC_AUTH_PASSWORD_ENV go together"
            )
        return self

    @model_validator(mode="after")
    def _election_timing(self) -> Settings:
        if not self.retry_period_seconds < self.renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError(
                "CANARY_RETRY_PERIOD_SECONDS < CANARY_RENEW_DEADLINE_SECONDS < CANARY_LEASE_DURATION_SECONDS must "
                f"hold (got {self.retry_period_seconds}, {self.renew_deadline_seconds}, "
                f"{self.lease_duration_seconds})"
            )
        return self

    @property
    def separate_mesh(self) -> bool:
        """True when mesh config lives on another API server."""
        return bool(self.mesh_kubeconfig or self.mesh_context)
