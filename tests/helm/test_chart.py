"""The chart as Helm installs it: lint, security, probes, settings, RBAC, and the optional objects.

Each values combination of ``conftest.CASES`` is installed once per session by the real Helm engine;
these tests read the manifests Helm sent to the (emulated) cluster.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from controller import __version__
from controller.adapters.policy_files import lint_paths
from controller.settings import Settings
from tests.helm.conftest import ALERT_ROUTES, CASES, CHART, LINT_ERROR, Outcome, deep_merge

REFUSED = {"two-without-election", "wrong-type"}
INSTALLED = [name for name in CASES if name not in REFUSED]
LINTED = [name for name, case in CASES.items() if case.lint and name != "wrong-type"]
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
POLICY_DIR = "/etc/canary-controller/policies"

# A rule as a comparable value: (apiGroups, resources, verbs, resourceNames).
Rule = tuple[tuple[str, ...], tuple[str, ...], frozenset[str], tuple[str, ...]]


def rule(group: str, resource: str, verbs: str, names: tuple[str, ...] = ()) -> Rule:
    return ((group,), (resource,), frozenset(verbs.split()), names)


CRD_RULES = {
    rule("canaryctl.dev", "canarypolicies", "get list watch"),
    rule("canaryctl.dev", "canarypolicies/status", "update"),
}
ROUTE_RULES = {
    rule("networking.istio.io", "virtualservices", "get list watch patch"),
    rule("gateway.networking.k8s.io", "tcproutes", "get list watch patch"),
}
WORKLOAD_AND_EVENT_RULES = {rule("apps", "deployments", "get list watch"), rule("", "events", "create")}
SECRET_RULE = rule("", "secrets", "get")
POLICY_RULES = CRD_RULES | ROUTE_RULES | WORKLOAD_AND_EVENT_RULES
CONFIGMAP_RULE = rule("", "configmaps", "get list watch create update")


def lease_rules(lease: str) -> set[Rule]:
    return {
        rule("coordination.k8s.io", "leases", "create"),
        rule("coordination.k8s.io", "leases", "get update", (lease,)),
    }


# ---------------------------------------------------------------------------------------------- helpers


def installed(results: dict[str, Outcome], case: str) -> Outcome:
    outcome = results[case]
    assert outcome.error is None, f"helm install of case {case!r} failed: {outcome.error}"
    return outcome


def objects(outcome: Outcome, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in outcome.objects if obj["kind"] == kind]


def only(outcome: Outcome, kind: str) -> dict[str, Any]:
    found = objects(outcome, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def fullname(outcome: Outcome) -> str:
    return f"{outcome.release}-canary-controller"


def pod_spec(outcome: Outcome) -> dict[str, Any]:
    spec: dict[str, Any] = only(outcome, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(outcome: Outcome) -> dict[str, Any]:
    containers = pod_spec(outcome)["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def env(outcome: Outcome) -> dict[str, dict[str, Any]]:
    entries = container(outcome)["env"]
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"an environment variable is set twice: {names}"
    return {entry["name"]: entry for entry in entries}


def env_values(outcome: Outcome) -> dict[str, str]:
    return {name: entry["value"] for name, entry in env(outcome).items() if "value" in entry}


def rules_of(obj: dict[str, Any]) -> set[Rule]:
    found = set()
    for entry in obj["rules"]:
        assert set(entry) <= {"apiGroups", "resources", "verbs", "resourceNames"}, entry
        assert len(entry["apiGroups"]) == 1, entry
        assert len(entry["resources"]) == 1, entry
        found.add(
            (
                tuple(entry["apiGroups"]),
                tuple(entry["resources"]),
                frozenset(entry["verbs"]),
                tuple(entry.get("resourceNames", ())),
            )
        )
    assert len(found) == len(obj["rules"]), f"duplicate rules in {obj['metadata']['name']}"
    return found


def role(outcome: Outcome, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    matches = [
        obj
        for obj in objects(outcome, kind)
        if obj["metadata"]["name"] == name and obj["metadata"].get("namespace") == namespace
    ]
    assert len(matches) == 1, f"expected one {kind} {namespace}/{name}, got {len(matches)}"
    return matches[0]


def assert_bound(outcome: Outcome, binding_kind: str, role_kind: str, name: str, namespace: str | None) -> None:
    binding = role(outcome, binding_kind, name, namespace)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": fullname(outcome), "namespace": outcome.namespace}
    ]


# ---------------------------------------------------------------------------------------------- lint, schema


@pytest.mark.parametrize("case", LINTED)
def test_helm_lint_finds_no_error_and_no_warning(helm_results: dict[str, Outcome], case: str) -> None:
    report = helm_results[case].lint
    assert report is not None
    # Helm's JSON drops the message texts (Go errors marshal to {}); severity and path remain.
    # The only expected message is the INFO "icon is recommended" on Chart.yaml.
    serious = [m for m in report["Messages"] if m["Severity"] >= 2]
    assert serious == [], f"lint of case {case!r} reported warnings or errors at {[m['Path'] for m in serious]}"
    assert not report["Errors"]


def test_helm_lint_reports_values_that_break_the_schema(helm_results: dict[str, Outcome]) -> None:
    report = helm_results["wrong-type"].lint
    assert report is not None
    assert {"Severity": LINT_ERROR, "Path": "values.yaml", "Err": {}} in report["Messages"]


def test_install_refuses_a_wrong_type_and_names_the_field(helm_results: dict[str, Outcome]) -> None:
    error = helm_results["wrong-type"].error
    assert error is not None
    assert "/replicaCount" in error
    assert "got string, want integer" in error
    assert helm_results["wrong-type"].in_cluster["deployments"] == []


def test_schema_accepts_every_supported_combination_and_rejects_unknown_or_mistyped_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    validator = jsonschema.Draft7Validator(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    for name in INSTALLED:
        assert list(validator.iter_errors(deep_merge(defaults, CASES[name].values))) == [], name

    def errors(override: dict[str, Any]) -> list[str]:
        return [
            f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
            for error in validator.iter_errors(deep_merge(defaults, override))
        ]

    assert errors({"replicaCount": "two"}) == ["replicaCount: 'two' is not of type 'integer'"]
    assert any(e.startswith("image: Additional properties") and "'tagg'" in e for e in errors({"image": {"tagg": "1"}}))
    assert any("replicas" in e for e in errors({"replicas": 2}))
    assert errors({"logLevel": "TRACE"})[0].startswith("logLevel:")
    assert errors({"httpPort": 80})[0].startswith("httpPort:")  # a non-root process cannot bind below 1024
    assert errors({"watchNamespaces": ["Not_A_Namespace"]})[0].startswith("watchNamespaces/0:")
    assert errors({"secretEnv": [{"name": "X", "secretName": "s"}]})[0].startswith("secretEnv/0:")
    assert errors({"securityContext": {"runAsUser": 0}})[0].startswith("securityContext/runAsUser:")
    assert errors({"policyLimits": {"prometheusUrls": ["http://u:p@prom:9090"]}})[0].startswith("policyLimits/")
    assert errors({"policyLimits": {"envAllowed": ["NOT-A-NAME"]}})[0].startswith("policyLimits/envAllowed/0:")
    assert errors({"rbac": {"secretNamespaces": ["Not_A_Namespace"]}})[0].startswith("rbac/secretNamespaces/0:")


def test_chart_metadata() -> None:
    assert CHART_META["apiVersion"] == "v2"
    assert CHART_META["name"] == "canary-controller"
    assert re.fullmatch(r"\d+\.\d+\.\d+", CHART_META["version"]), "the chart's own version is SemVer"


def test_chart_app_version_is_the_package_version() -> None:
    # appVersion is Helm's copy (the default image tag); the package metadata is the source it must match.
    assert CHART_META["appVersion"] == __version__


# ---------------------------------------------------------------------------------------------- install


@pytest.mark.parametrize("case", INSTALLED)
def test_every_rendered_object_reaches_the_cluster(helm_results: dict[str, Outcome], case: str) -> None:
    outcome = installed(helm_results, case)
    assert len(outcome.in_cluster["deployments"]) == 1
    for plural, kind in [
        ("serviceaccounts", "ServiceAccount"),
        ("roles", "Role"),
        ("rolebindings", "RoleBinding"),
        ("clusterroles", "ClusterRole"),
        ("clusterrolebindings", "ClusterRoleBinding"),
        ("poddisruptionbudgets", "PodDisruptionBudget"),
        ("servicemonitors", "ServiceMonitor"),
    ]:
        assert len(outcome.in_cluster[plural]) == len(objects(outcome, kind)), kind


def test_refuses_several_replicas_without_leader_election(helm_results: dict[str, Outcome]) -> None:
    outcome = helm_results["two-without-election"]
    assert outcome.error is not None
    assert (
        "replicaCount is 2 but leaderElection.enabled is false: several replicas would all write rollouts. "
        "Set leaderElection.enabled=true, or replicaCount=1." in outcome.error
    )
    assert outcome.in_cluster["deployments"] == []


@pytest.mark.parametrize("case", INSTALLED)
def test_pod_runs_as_numeric_non_root_with_a_read_only_root_and_no_privileges(
    helm_results: dict[str, Outcome], case: str
) -> None:
    outcome = installed(helm_results, case)
    pod = pod_spec(outcome)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(outcome)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert isinstance(security["runAsUser"], int)
    assert security["runAsUser"] > 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container(outcome)["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container(outcome)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "args" not in container(outcome)
    assert "command" not in container(outcome)


def test_probes_use_the_health_endpoints_on_the_named_http_port(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "default")
    main = container(outcome)
    assert main["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert env_values(outcome)["CANARY_HTTP_PORT"] == "8080"
    service = only(outcome, "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == only(outcome, "Deployment")["spec"]["selector"]["matchLabels"]


def test_image_defaults_to_the_app_version(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "default")
    assert container(outcome)["image"] == f"canary-controller:{CHART_META['appVersion']}"
    assert container(outcome)["imagePullPolicy"] == "IfNotPresent"
    assert pod_spec(outcome)["serviceAccountName"] == fullname(outcome)
    assert only(outcome, "ServiceAccount")["metadata"]["name"] == fullname(outcome)


# ---------------------------------------------------------------------------------------------- settings


def test_default_environment(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "default")
    variables = env(outcome)
    assert variables["CANARY_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert variables["CANARY_IDENTITY"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env_values(outcome) == {
        "CANARY_WATCH_CRDS": "true",
        "CANARY_TICK_SECONDS": "5",
        "CANARY_WORKERS": "8",
        "CANARY_RESYNC_SECONDS": "300",
        "CANARY_WATCH_CACHE": "true",
        "CANARY_LOG_LEVEL": "INFO",
        "CANARY_HTTP_PORT": "8080",
        "CANARY_LEADER_ELECT": "true",
        "CANARY_LEASE_NAME": fullname(outcome),
        "CANARY_LEASE_DURATION_SECONDS": "15",
        "CANARY_RENEW_DEADLINE_SECONDS": "10",
        "CANARY_RETRY_PERIOD_SECONDS": "2",
    }
    deployment = only(outcome, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"


def test_without_leader_election_one_replica_is_recreated_and_no_lease_is_used(
    helm_results: dict[str, Outcome],
) -> None:
    outcome = installed(helm_results, "single")
    deployment = only(outcome, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    values = env_values(outcome)
    assert values["CANARY_LEADER_ELECT"] == "false"
    assert not {"CANARY_LEASE_NAME", "CANARY_IDENTITY", "CANARY_RETRY_PERIOD_SECONDS"} & set(env(outcome))
    # No Lease and no file policies: the controller keeps nothing in its own namespace.
    assert objects(outcome, "Role") == []
    assert objects(outcome, "RoleBinding") == []


def test_credentials_come_from_secrets_and_alert_routes_are_json(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "credentials")
    variables = env(outcome)
    assert variables["PROM_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "prometheus-token", "key": "token"}}
    assert variables["SLACK_URL"]["valueFrom"] == {"secretKeyRef": {"name": "canary-alerts", "key": "slack-url"}}
    values = env_values(outcome)
    assert values["CANARY_PROMETHEUS_URL"] == "http://prometheus.istio-system:9090"
    assert values["CANARY_PROMETHEUS_BEARER_TOKEN_ENV"] == "PROM_TOKEN"
    assert json.loads(values["CANARY_ALERTS"]) == ALERT_ROUTES
    assert values["CANARY_POLICY_SELECTOR"] == "shard=a"
    assert values["CANARY_WATCH_NAMESPACES"] == "shop"
    assert values["CANARY_API_TIMEOUT_SECONDS"] == "20"  # extraEnv
    assert (values["CANARY_TICK_SECONDS"], values["CANARY_WORKERS"], values["CANARY_LOG_LEVEL"]) == (
        "2.5",
        "4",
        "DEBUG",
    )
    assert "SLACK_URL" not in values
    assert "PROM_TOKEN" not in values


# Settings the leader-election work adds; asserted like every other so that the chart and the controller
# cannot drift apart.
NEW_SETTINGS = {
    "CANARY_LEADER_ELECT",
    "CANARY_LEASE_NAME",
    "CANARY_LEASE_DURATION_SECONDS",
    "CANARY_RENEW_DEADLINE_SECONDS",
    "CANARY_RETRY_PERIOD_SECONDS",
    "CANARY_IDENTITY",
    "CANARY_POLICY_SELECTOR",
}


def test_every_canary_variable_the_chart_sets_is_a_controller_setting(helm_results: dict[str, Outcome]) -> None:
    fields = {f"CANARY_{name.upper()}" for name in Settings.model_fields}
    assert fields >= NEW_SETTINGS
    seen: set[str] = set()
    for case in INSTALLED:
        names = {name for name in env(installed(helm_results, case)) if name.startswith("CANARY_")}
        assert names <= fields, f"case {case!r} sets unknown settings {sorted(names - fields)}"
        seen |= names
    # Every value mapping of the chart was exercised by some case.
    assert seen >= NEW_SETTINGS | {
        "CANARY_NAMESPACE",
        "CANARY_WATCH_CRDS",
        "CANARY_WATCH_NAMESPACES",
        "CANARY_POLICY_DIR",
        "CANARY_TICK_SECONDS",
        "CANARY_WORKERS",
        "CANARY_PROMETHEUS_URL",
        "CANARY_PROMETHEUS_BEARER_TOKEN_ENV",
        "CANARY_ALERTS",
        "CANARY_LOG_LEVEL",
        "CANARY_HTTP_PORT",
        "CANARY_MESH_KUBECONFIG",
        "CANARY_MESH_CONTEXT",
    }


@pytest.mark.parametrize("case", INSTALLED)
def test_the_controller_accepts_the_rendered_settings(
    helm_results: dict[str, Outcome], case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = installed(helm_results, case)
    stand_ins = {"metadata.namespace": outcome.namespace, "metadata.name": "canary-controller-7d9f-x2x"}
    for name in [name for name in os.environ if name.startswith("CANARY_")]:
        monkeypatch.delenv(name)
    for name, entry in env(outcome).items():
        if "value" in entry:
            monkeypatch.setenv(name, entry["value"])
        elif "fieldRef" in entry["valueFrom"]:
            monkeypatch.setenv(name, stand_ins[entry["valueFrom"]["fieldRef"]["fieldPath"]])
        else:
            monkeypatch.setenv(name, "secret-value")
    settings = Settings()
    values = deep_merge(yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8")), CASES[case].values)
    assert settings.namespace == outcome.namespace
    assert settings.watch_namespaces == values["watchNamespaces"]
    assert settings.watch_crds is values["watchCrds"]
    assert settings.leader_elect is values["leaderElection"]["enabled"]
    assert settings.tick_seconds == values["tickSeconds"]
    assert settings.workers == values["workers"]
    assert settings.http_port == values["httpPort"]
    assert [route.name for route in settings.alerts] == [route["name"] for route in values["alerts"]["routes"]]
    assert (settings.policy_dir is not None) == bool(values["policies"])
    assert settings.separate_mesh == bool(values["meshKubeconfig"]["secretName"])
    if settings.leader_elect:
        assert settings.lease_name == fullname(outcome)
        assert settings.identity == stand_ins["metadata.name"]


# ---------------------------------------------------------------------------------------------- RBAC


@pytest.mark.parametrize("case", INSTALLED)
def test_rbac_has_no_wildcards_and_never_lists_secrets(helm_results: dict[str, Outcome], case: str) -> None:
    outcome = installed(helm_results, case)
    for kind in ("Role", "ClusterRole"):
        for obj in objects(outcome, kind):
            for group, resources, verbs, _ in rules_of(obj):
                assert "*" not in group + resources, obj["metadata"]["name"]
                assert "*" not in verbs, obj["metadata"]["name"]
                if resources == ("secrets",):
                    assert verbs == {"get"}
                # The controller's own state lives only in the release namespace, by Role.
                if resources in {("leases",), ("configmaps",)}:
                    assert kind == "Role", f"{resources} granted by a ClusterRole"
                    assert obj["metadata"]["namespace"] == outcome.namespace
                    assert obj["metadata"]["name"] == f"{fullname(outcome)}-state"


def test_default_rbac_is_a_cluster_role_with_exactly_what_the_controller_calls(
    helm_results: dict[str, Outcome],
) -> None:
    outcome = installed(helm_results, "default")
    name = fullname(outcome)
    assert rules_of(role(outcome, "ClusterRole", name)) == POLICY_RULES
    assert_bound(outcome, "ClusterRoleBinding", "ClusterRole", name, None)
    assert rules_of(role(outcome, "Role", f"{name}-state", outcome.namespace)) == lease_rules(name)
    assert_bound(outcome, "RoleBinding", "Role", f"{name}-state", outcome.namespace)
    assert len(objects(outcome, "Role")) == 1


def test_watched_namespaces_get_roles_and_nothing_is_cluster_wide(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "namespaced")
    name = fullname(outcome)
    assert objects(outcome, "ClusterRole") == []
    assert objects(outcome, "ClusterRoleBinding") == []
    for namespace in ("shop", "payments"):
        assert rules_of(role(outcome, "Role", name, namespace)) == POLICY_RULES
        assert_bound(outcome, "RoleBinding", "Role", name, namespace)
    assert rules_of(role(outcome, "Role", f"{name}-state", "canary-ns")) == lease_rules(name)
    assert len(objects(outcome, "Role")) == 3
    assert env_values(outcome)["CANARY_WATCH_NAMESPACES"] == "shop,payments"


def test_file_mode_grants_status_configmaps_and_drops_the_crd_rules(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "files")
    name = fullname(outcome)
    assert rules_of(role(outcome, "ClusterRole", name)) == POLICY_RULES - CRD_RULES
    assert rules_of(role(outcome, "Role", f"{name}-state", outcome.namespace)) == lease_rules(name) | {CONFIGMAP_RULE}


def test_without_watch_caches_routes_deployments_and_status_configmaps_are_only_read(
    helm_results: dict[str, Outcome],
) -> None:
    outcome = installed(helm_results, "nocache")
    name = fullname(outcome)
    rules = rules_of(role(outcome, "ClusterRole", name))
    assert rule("networking.istio.io", "virtualservices", "get patch") in rules
    assert rule("gateway.networking.k8s.io", "tcproutes", "get patch") in rules
    assert rule("apps", "deployments", "get") in rules
    state = rules_of(role(outcome, "Role", f"{name}-state", outcome.namespace))
    assert rule("", "configmaps", "get create update") in state
    assert env_values(outcome)["CANARY_WATCH_CACHE"] == "false"


def test_a_separate_mesh_api_server_takes_the_route_rules_off_the_main_cluster(
    helm_results: dict[str, Outcome],
) -> None:
    outcome = installed(helm_results, "mesh")
    assert rules_of(role(outcome, "ClusterRole", fullname(outcome))) == POLICY_RULES - ROUTE_RULES


def test_secrets_are_not_readable_unless_turned_on(helm_results: dict[str, Outcome]) -> None:
    """A policy author could have the controller read any Secret it may read (issue 13): off by default."""
    for case in ("default", "namespaced", "files", "mesh"):
        outcome = installed(helm_results, case)
        for kind in ("Role", "ClusterRole"):
            for obj in objects(outcome, kind):
                assert all(resources != ("secrets",) for _, resources, _, _ in rules_of(obj)), (case, kind)


def test_secret_access_can_be_limited_by_name(helm_results: dict[str, Outcome]) -> None:
    limited = installed(helm_results, "credentials")
    rules = rules_of(role(limited, "Role", fullname(limited), "shop"))
    assert rules == POLICY_RULES | {rule("", "secrets", "get", ("prometheus-token", "canary-alerts"))}


def test_secret_access_can_be_limited_to_chosen_namespaces(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "secrets-by-namespace")
    name = fullname(outcome)
    assert rules_of(role(outcome, "ClusterRole", name)) == POLICY_RULES, "no Secret access cluster-wide"
    assert rules_of(role(outcome, "Role", f"{name}-secrets", "shop")) == {SECRET_RULE}
    assert_bound(outcome, "RoleBinding", "Role", f"{name}-secrets", "shop")
    secret_roles = [o for o in objects(outcome, "Role") if any(r == ("secrets",) for _, r, _, _ in rules_of(o))]
    assert [o["metadata"]["namespace"] for o in secret_roles] == ["shop"]


def test_network_policy_admits_only_the_http_port_from_the_chosen_namespaces(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "secrets-by-namespace")
    policy = only(outcome, "NetworkPolicy")
    selector = only(outcome, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"] == {"matchLabels": selector}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "canary-secrets"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        {"ipBlock": {"cidr": "10.0.0.0/8"}},
    ]


def test_policy_limits_become_the_controllers_settings(helm_results: dict[str, Outcome]) -> None:
    values = env_values(installed(helm_results, "credentials"))
    assert values["CANARY_POLICY_PROMETHEUS_URLS"] == "http://prometheus.{namespace}:9090"
    assert values["CANARY_POLICY_ENV_ALLOWED"] == "TEAM_TOKEN"
    assert "CANARY_POLICY_PROMETHEUS_URLS" not in env_values(installed(helm_results, "default"))


def test_rbac_matches_the_crd_group_and_plural(helm_results: dict[str, Outcome]) -> None:
    crd = yaml.safe_load((CHART / "crds" / "canarypolicies.canaryctl.dev.yaml").read_text(encoding="utf-8"))
    assert (crd["spec"]["group"], crd["spec"]["names"]["plural"]) == ("canaryctl.dev", "canarypolicies")
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


# ---------------------------------------------------------------------------------------------- files, mesh


def test_inline_policies_are_mounted_as_files_the_controller_accepts(
    helm_results: dict[str, Outcome], tmp_path: Path
) -> None:
    outcome = installed(helm_results, "files")
    config_map = only(outcome, "ConfigMap")
    assert config_map["metadata"]["name"] == f"{fullname(outcome)}-policies"
    assert sorted(config_map["data"]) == ["payments.tcp-echo-gw.yaml", "shop.tcp-echo.yaml"]
    assert yaml.safe_load(config_map["data"]["shop.tcp-echo.yaml"]) == CASES["files"].values["policies"][0]
    for key, text in config_map["data"].items():
        (tmp_path / key).write_text(text, encoding="utf-8")
    report = lint_paths([str(tmp_path)])
    assert report.ok, report.findings
    assert len(report.policies) == 2
    volumes = {volume["name"]: volume for volume in pod_spec(outcome)["volumes"]}
    mount = next(m for m in container(outcome)["volumeMounts"] if m["mountPath"] == POLICY_DIR)
    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["configMap"] == {"name": config_map["metadata"]["name"]}
    values = env_values(outcome)
    assert values["CANARY_POLICY_DIR"] == POLICY_DIR
    assert values["CANARY_WATCH_CRDS"] == "false"


def test_mesh_kubeconfig_is_a_read_only_secret_file(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "mesh")
    volumes = {volume["name"]: volume for volume in pod_spec(outcome)["volumes"]}
    mount = next(m for m in container(outcome)["volumeMounts"] if m["mountPath"] == "/etc/canary-controller/mesh")
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "asm-kubeconfig"
    assert secret["items"] == [{"key": "config", "path": "config"}]
    values = env_values(outcome)
    assert values["CANARY_MESH_KUBECONFIG"] == "/etc/canary-controller/mesh/config"
    assert values["CANARY_MESH_CONTEXT"] == "asm-admin"
    assert only(outcome, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1  # explicitly enabled at 1 replica


# ---------------------------------------------------------------------------------------------- optional objects


def test_monitoring_disruption_budget_and_scheduling(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "observability")
    selector = only(outcome, "Deployment")["spec"]["selector"]["matchLabels"]
    monitor = only(outcome, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == selector
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "honorLabels": True, "interval": "15s", "scrapeTimeout": "10s"}
    ]
    budget = only(outcome, "PodDisruptionBudget")  # two replicas: a budget without asking
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    deployment = only(outcome, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    pod = pod_spec(outcome)
    values = CASES["observability"].values
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod[key] == values[key], key
    template = deployment["spec"]["template"]["metadata"]
    assert template["annotations"] == values["podAnnotations"]
    assert template["labels"]["team"] == "mesh"
    assert template["labels"].items() >= selector.items()


def test_optional_objects_are_off_by_default(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "default")
    assert objects(outcome, "ServiceMonitor") == []
    assert objects(outcome, "PodDisruptionBudget") == []
    assert objects(outcome, "ConfigMap") == []
    assert objects(outcome, "NetworkPolicy") == []
    pod = pod_spec(outcome)
    assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"} & set(pod)


def test_grafana_dashboard_configmap_carries_the_chart_dashboard(
    helm_results: dict[str, Outcome], dashboard_file: Path
) -> None:
    outcome = installed(helm_results, "dashboard")
    config_map = only(outcome, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["labels"]["team"] == "mesh"
    content = config_map["data"]["canary-controller.json"]
    assert content.strip() == dashboard_file.read_text(encoding="utf-8").strip()
    assert isinstance(json.loads(content), dict)


def test_notes_say_what_to_do_next(helm_results: dict[str, Outcome]) -> None:
    notes = installed(helm_results, "default").notes
    assert "kubectl apply -f" in notes
    assert "canaryctl status --watch" in notes
    assert "/metrics" in notes
    assert "port-forward service/cc-default-canary-controller 8080" in notes
