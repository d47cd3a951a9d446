"""The CanaryPolicy schema's vocabulary: names, hosts, durations, URLs and label values as constrained field
types, with their messages; the constants the models and the rules share; and how a rule's problems become one
validation error.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt, StrictStr, WithJsonSchema
from pydantic_core import PydanticCustomError

from controller.core.display import kind_of, shown
from controller.core.durations import MAX_GO_DURATION, POSITIVE_GO_DURATION_PATTERN, parse_go_duration
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
    got = f"the number {value:g}" if isinstance(value, float) else kind_of(value)
    raise PydanticCustomError(
        "count_or_duration",
        "must be a count (a whole number such as 10) or a duration with a unit such as 10m (got {got})",
        {"got": got},
    )


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


def rules_error(problems: list[tuple[Path, str]]) -> PydanticCustomError:
    """One error carrying every violated rule, with paths relative to where it is raised."""
    return PydanticCustomError(
        "policy_rules", "{count} rule(s) violated", {"count": len(problems), "problems": tuple(problems)}
    )


def strictly_increasing(steps: list[int]) -> list[int]:
    """Steps must strictly increase; each offending step is reported at its index."""
    problems: list[tuple[Path, str]] = [
        ((index,), f"must be greater than the previous step (got {steps[index]} after {steps[index - 1]})")
        for index in range(1, len(steps))
        if steps[index] <= steps[index - 1]
    ]
    if problems:
        raise rules_error(problems)
    return steps


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


# Headers whose value is a credential: a literal one in a policy would be readable by anyone who can read it.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

ALERT_NAMES = ("CanaryRolledBack", "CanaryFailed", "CanaryDriftDetected", "CanaryPaused", "CanaryPromoted")
DEFAULT_ALERTS_ON = ("CanaryRolledBack", "CanaryFailed", "CanaryDriftDetected")
