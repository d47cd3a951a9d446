"""What a CanaryPolicy resource may make the controller reach: Prometheus servers and environment variables.

Whoever may create a CanaryPolicy in a namespace is not, in general, the operator of the controller. A
policy file (file mode) is the operator's own and is trusted; a CanaryPolicy resource (CRD mode) is a
tenant's, and ``refusals`` says why one is refused, each reason naming the field at fault:

* ``spec.analysis.prometheus.url`` must be the controller's default Prometheus URL or match one of the
  allowed patterns (``TenantRules.prometheus_urls``: URLs where ``{namespace}`` stands for the policy's
  namespace, or ``*`` for any). The default credentials go only to the default URL in any case (the
  Prometheus adapter sees to that); this rule keeps a policy from sending the controller, with a Secret
  of its namespace as credentials, to a server of its author's.
* Every ``{env: NAME}`` reference (Prometheus credentials and CA bundle, alert sink URLs and secrets) must
  name a variable in ``TenantRules.env_names``: the controller's environment holds the operator's
  secrets (the default token, the chat webhook URLs of ``CANARY_ALERTS``), never a tenant's.

Pure: no I/O, no settings; the composition root builds ``TenantRules`` from the settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from controller.core.policy import CanaryPolicy, SecretRef
from controller.core.url_rules import same_url, strip_userinfo, url_allowed

REFUSED_REASON = "PolicyRefused"
"""The reason of the Event and of the ``Ready`` condition of a refused CanaryPolicy."""


@dataclass(frozen=True)
class TenantRules:
    """What CanaryPolicy resources may reference.

    Attributes:
        default_prometheus_url: the controller's default Prometheus (always allowed); None when unset.
        prometheus_urls: other Prometheus base URLs allowed: URLs with ``{namespace}`` for the policy's
            namespace, or ``*`` for any URL.
        env_names: environment variables of the controller a policy may name in ``{env: NAME}``.
    """

    default_prometheus_url: str | None = None
    prometheus_urls: tuple[str, ...] = ()
    env_names: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Refusal:
    """One reason to refuse a policy: the field at fault (``spec.analysis.prometheus.url``) and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _secret_refs(policy: CanaryPolicy) -> Iterator[tuple[str, SecretRef]]:
    """Every secret reference of a policy with the dotted path of its field."""
    analysis = policy.spec.analysis
    prometheus = analysis.prometheus if analysis is not None else None
    if prometheus is not None:
        if prometheus.bearer_token is not None:
            yield "spec.analysis.prometheus.bearerToken", prometheus.bearer_token
        if prometheus.basic_auth is not None:
            yield "spec.analysis.prometheus.basicAuth.password", prometheus.basic_auth.password
        if prometheus.ca_bundle is not None:
            yield "spec.analysis.prometheus.caBundle", prometheus.ca_bundle
    for index, route in enumerate(policy.spec.alerts):
        where = f"spec.alerts[{index}]"
        for sink in (route.slack, route.teams, route.discord):
            if sink is not None:
                yield f"{where}.{route.sink}.webhookUrl", sink.webhook_url
        if route.webhook is not None:
            yield f"{where}.webhook.url", route.webhook.url
            if route.webhook.secret is not None:
                yield f"{where}.webhook.secret", route.webhook.secret
        if route.pagerduty is not None:
            yield f"{where}.pagerduty.routingKey", route.pagerduty.routing_key


def refusals(policy: CanaryPolicy, rules: TenantRules) -> list[Refusal]:
    """Why a CanaryPolicy resource may not run under ``rules`` (empty: it may).

    Args:
        policy: a policy from a CanaryPolicy resource (file policies are the operator's and not checked).
        rules: what such policies may reference.

    Returns:
        One refusal per field at fault, in the order of the policy's fields. Messages never hold a secret.
    """
    found: list[Refusal] = []
    analysis = policy.spec.analysis
    url = analysis.prometheus.url if analysis is not None and analysis.prometheus is not None else None
    namespace = policy.metadata.namespace
    if url is not None and not (
        same_url(url, rules.default_prometheus_url) or url_allowed(url, rules.prometheus_urls, namespace=namespace)
    ):
        allowed = ["the default Prometheus"] if rules.default_prometheus_url else []
        allowed += [f"{pattern.replace('{namespace}', namespace)}" for pattern in rules.prometheus_urls]
        found.append(
            Refusal(
                "spec.analysis.prometheus.url",
                f"{strip_userinfo(url)} is not a Prometheus this controller lets CanaryPolicy resources use "
                f"(allowed: {', '.join(allowed) or 'none'}; the operator allows more with "
                "CANARY_POLICY_PROMETHEUS_URLS)",
            )
        )
    for path, ref in _secret_refs(policy):
        if ref.env is not None and ref.env not in rules.env_names:
            found.append(
                Refusal(
                    f"{path}.env",
                    f"environment variable {ref.env} of the controller is not available to CanaryPolicy "
                    "resources (use a secretKeyRef in the policy's namespace; the operator allows variables "
                    "with CANARY_POLICY_ENV_ALLOWED)",
                )
            )
    return found
