"""Rules that relate the fields of a CanaryPolicy, each violation reported with the path of the field at fault.

The models run them in their validators (:func:`target_rules` for ``spec.target``, :func:`analysis_rules` for
``spec.analysis`` and ``spec.alerts``); JSON Schema can express only some of them (:mod:`.json_schema`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from controller.core.policy.fields import ALERT_NAMES, Path
from controller.core.promql import placeholder_problems

if TYPE_CHECKING:
    from controller.core.policy.models import Spec, Target


def target_rules(target: Target) -> list[tuple[Path, str]]:
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


TEMPLATE_VARIABLES = {
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
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*(?:\|\s*([a-z]+)\s*)?\}\}")


def template_variables(query: str) -> list[tuple[str, str | None]]:
    """(variable, filter) of every ``{{ variable | filter }}`` in a custom query."""
    return [(m.group(1), m.group(2)) for m in PLACEHOLDER.finditer(query)]


def alert_rules(spec: Spec) -> list[tuple[Path, str]]:
    """Rules of ``spec.alerts``: unique route names, severities keyed by known alert names."""
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


def analysis_rules(spec: Spec) -> list[tuple[Path, str]]:
    """Rules of ``spec.analysis`` (checks, custom queries, what each template needs) and of ``spec.alerts``."""
    analysis = spec.analysis
    if analysis is None:
        return alert_rules(spec)
    problems: list[tuple[Path, str]] = alert_rules(spec)
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
            stripped = PLACEHOLDER.sub("", check.query)
            if "{{" in stripped or "}}" in stripped:
                problems.append(((*at, "query"), "malformed {{ }} placeholder"))
            for variable, flt in template_variables(check.query):
                if variable not in TEMPLATE_VARIABLES:
                    problems.append(
                        (
                            (*at, "query"),
                            f"unknown variable {variable!r}; known: " + ", ".join(sorted(TEMPLATE_VARIABLES)),
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
