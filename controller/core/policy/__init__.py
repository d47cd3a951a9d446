"""The CanaryPolicy schema (``canaryctl.dev/v1alpha1``).

One set of pydantic models (:mod:`.models`, their field types in :mod:`.fields`) serves policy files, the
published JSON Schema (``policies/canarypolicy.schema.json``) and the CRD (:mod:`controller.core.crd`). Field
names are the camelCase names users write in YAML; unknown fields are rejected everywhere.

Validation happens in two passes, both inside ``CanaryPolicy.model_validate``:

1. structure: types, ranges, required and unknown fields, each reported with its own path;
2. meaning: rules that relate fields (strictly increasing steps, exactly one target kind, ...). Every
   violated rule is reported, each with the exact path of the field at fault, through one
   ``PydanticCustomError`` of type ``policy_rules`` whose context carries the list of problems.

``controller.core.problems`` turns either kind of error into ``Problem`` records for ``canaryctl lint``.

The rules that relate fields are in :mod:`.rules`, the published JSON Schema in :mod:`.json_schema`; this
package's names are the schema's public interface.
"""

from controller.core.policy.fields import (
    ALERT_NAMES,
    API_VERSION,
    BUILTIN_TEMPLATES,
    DEFAULT_ALERTS_ON,
    DEFAULT_NAMESPACE,
    ERROR_RATIO_TEMPLATES,
    KIND,
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
)
from controller.core.policy.json_schema import (
    policy_json_schema,
)
from controller.core.policy.models import (
    ALERT_SINKS,
    PAGERDUTY_EVENTS_URL,
    AlertmanagerTarget,
    AlertRoute,
    Analysis,
    BasicAuth,
    CanaryPolicy,
    CompareToStable,
    CountTest,
    Destination,
    GenericWebhookTarget,
    Metadata,
    MetricCheck,
    MetricSelector,
    ObjectRef,
    PagerDutyTarget,
    PrometheusSpec,
    RouteSelector,
    Schedule,
    SecretKeySelector,
    SecretRef,
    Spec,
    Target,
    TeamsTarget,
    TrafficShareCheck,
    WebhookUrlTarget,
    Workload,
    WorkloadRef,
)
from controller.core.policy.rules import (
    template_variables,
)

__all__ = [
    "ALERT_NAMES",
    "ALERT_SINKS",
    "API_VERSION",
    "BUILTIN_TEMPLATES",
    "DEFAULT_ALERTS_ON",
    "DEFAULT_NAMESPACE",
    "ERROR_RATIO_TEMPLATES",
    "KIND",
    "PAGERDUTY_EVENTS_URL",
    "AlertRoute",
    "AlertmanagerTarget",
    "Analysis",
    "BasicAuth",
    "CanaryPolicy",
    "ClusterName",
    "CompareToStable",
    "CountOrDuration",
    "CountTest",
    "Destination",
    "DnsLabel",
    "DnsSubdomain",
    "GenericWebhookTarget",
    "GoDuration",
    "Host",
    "HttpUrl",
    "LabelValue",
    "Metadata",
    "MetricCheck",
    "MetricSelector",
    "ObjectRef",
    "PagerDutyTarget",
    "Path",
    "Percent",
    "PortNumber",
    "PrometheusSpec",
    "RouteSelector",
    "Schedule",
    "SecretKeySelector",
    "SecretRef",
    "Spec",
    "Target",
    "TeamsTarget",
    "TrafficShareCheck",
    "WebhookUrlTarget",
    "Workload",
    "WorkloadRef",
    "policy_json_schema",
    "template_variables",
]
