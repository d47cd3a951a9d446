"""The Helm chart, linted and installed by the real Helm engine (PyPI ``helm-sdkpy``, Helm 4 as a library).

``helm-sdkpy`` has no offline ``template`` action, and its ``Install`` has no dry-run; so every values
combination is really installed, with ``helm install``, into the project's Kubernetes API emulator (which
stands in for a cluster: discovery, namespaces, creates). The manifest Helm reports back is what a cluster
would receive. Helm keeps its release records in memory (``HELM_DRIVER=memory``): Go reads its environment
once, when the library loads, so Helm runs in one subprocess per session, started with that variable.
Lint runs there too, on a copy of the chart whose ``values.yaml`` holds the combination's values (lint
takes no values of its own).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary_sandbox.kubeapi import KubeApiEmulator
from canary_sandbox.kubeapi.resources import resource_type
from tests.support.paths import REPO
from tests.support.policies import policy_doc

CHART = REPO / "helm"
LINT_ERROR = 3  # Helm's support.ErrorSev; WarningSev is 2, InfoSev 1


@dataclass(frozen=True)
class Case:
    """One values combination: the values given to ``helm install`` and the release namespace."""

    values: dict[str, Any]
    namespace: str = "canary-system"
    lint: bool = True  # a combination the chart refuses is not linted (lint mode turns ``fail`` into a log line)
    extra_namespaces: tuple[str, ...] = ()


ALERT_ROUTES = [
    {"name": "oncall", "alertmanager": {"url": "http://alertmanager.monitoring:9093"}},
    {"name": "team-chat", "slack": {"webhookUrl": {"env": "SLACK_URL"}}},
]

CASES: dict[str, Case] = {
    "default": Case({}),
    "namespaced": Case(
        {"watchNamespaces": ["shop", "payments"]}, namespace="canary-ns", extra_namespaces=("shop", "payments")
    ),
    "single": Case({"leaderElection": {"enabled": False}, "replicaCount": 1}, namespace="canary-single"),
    "two-without-election": Case(
        {"leaderElection": {"enabled": False}, "replicaCount": 2}, namespace="canary-bad", lint=False
    ),
    "files": Case(
        {
            "watchCrds": False,
            "policies": [policy_doc(namespace="shop"), policy_doc(name="tcp-echo-gw", namespace="payments")],
        },
        namespace="canary-files",
    ),
    "nocache": Case(
        {"watchCache": False, "policies": [policy_doc(namespace="shop")]},
        namespace="canary-nocache",
    ),
    "observability": Case(
        {
            "replicaCount": 2,
            "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kube-prometheus"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus"}},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "mesh", "effect": "NoSchedule"}],
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "canary-controller"}},
                            },
                        }
                    ]
                }
            },
            "podAnnotations": {"example.com/owner": "mesh-team"},
            "podLabels": {"team": "mesh"},
            "priorityClassName": "system-cluster-critical",
        },
        namespace="canary-obs",
    ),
    "dashboard": Case(
        {"grafanaDashboard": {"enabled": True, "labels": {"grafana_dashboard": "1", "team": "mesh"}}},
        namespace="canary-dash",
    ),
    "mesh": Case(
        {
            "meshKubeconfig": {"secretName": "asm-kubeconfig", "key": "config", "context": "asm-admin"},
            "podDisruptionBudget": {"enabled": True},
        },
        namespace="canary-mesh",
    ),
    "credentials": Case(
        {
            "prometheus": {"url": "http://prometheus.istio-system:9090", "bearerTokenEnv": "PROM_TOKEN"},
            "secretEnv": [
                {"name": "PROM_TOKEN", "secretName": "prometheus-token", "key": "token"},
                {"name": "SLACK_URL", "secretName": "canary-alerts", "key": "slack-url"},
            ],
            "alerts": {"routes": ALERT_ROUTES},
            "extraEnv": [{"name": "CANARY_API_TIMEOUT_SECONDS", "value": "20"}],
            "rbac": {"readSecrets": True, "secretNames": ["prometheus-token", "canary-alerts"]},
            "policyLimits": {"prometheusUrls": ["http://prometheus.{namespace}:9090"], "envAllowed": ["TEAM_TOKEN"]},
            "policySelector": "shard=a",
            "watchNamespaces": ["shop"],
            "tickSeconds": 2.5,
            "workers": 4,
            "logLevel": "DEBUG",
        },
        namespace="canary-creds",
        extra_namespaces=("shop",),
    ),
    "secrets-by-namespace": Case(
        {
            "rbac": {"readSecrets": True, "secretNamespaces": ["shop"]},
            "networkPolicy": {
                "enabled": True,
                "ingressNamespaces": ["monitoring"],
                "ingressFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
            },
        },
        namespace="canary-secrets",
        extra_namespaces=("shop",),
    ),
    "web-dashboard": Case(
        {"dashboard": {"enabled": True, "port": 3101}, "watchNamespaces": ["shop"], "networkPolicy": {"enabled": True}},
        namespace="canary-web",
        extra_namespaces=("shop",),
    ),
    "wrong-type": Case({"replicaCount": "two"}, namespace="canary-wrong"),
}


@dataclass
class Outcome:
    """What Helm did with one case."""

    release: str
    namespace: str
    manifest: str = ""
    notes: str = ""
    error: str | None = None
    lint: dict[str, Any] | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)
    hooks: list[dict[str, Any]] = field(default_factory=list)  # hook objects (helm test pods), not installed
    in_cluster: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by plural, as the API holds them


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base`` as Helm coalesces values: maps merge, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# Kinds the chart installs that the emulator does not serve by default.
EXTRA_KINDS = (
    resource_type("", "v1", "serviceaccounts", "ServiceAccount"),
    resource_type("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    resource_type("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    resource_type("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    resource_type("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    resource_type("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    resource_type("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor"),
    resource_type("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule"),
    resource_type("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
)
DEPLOYMENTS = resource_type("apps", "v1", "deployments", "Deployment")


def helm_worker() -> None:
    """Subprocess entry: run the jobs in ``argv[1]`` (JSON) with Helm, write the results to ``argv[2]``."""
    import helm_sdkpy  # type: ignore[import-untyped]  # noqa: PLC0415 - only the subprocess loads Helm

    jobs: list[dict[str, Any]] = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))

    async def run(job: dict[str, Any]) -> dict[str, Any]:
        if job["action"] == "lint":
            return {"lint": await helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(job["chart"])}
        config = helm_sdkpy.Configuration(namespace=job["namespace"], kubeconfig=job["kubeconfig"])
        try:
            release = await helm_sdkpy.Install(config).run(
                job["release"], job["chart"], values=job["values"], wait=False, timeout=30
            )
        except helm_sdkpy.HelmError as exc:
            return {"error": str(exc)}
        return {
            "manifest": release.get("manifest") or "",
            "notes": (release.get("info") or {}).get("notes") or "",
            "hooks": [hook.get("manifest") or "" for hook in release.get("hooks") or []],
        }

    async def run_all() -> list[dict[str, Any]]:
        return [await run(job) for job in jobs]

    Path(sys.argv[2]).write_text(json.dumps(asyncio.run(run_all())), encoding="utf-8")


@pytest.fixture(scope="session")
def helm_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    """Every case linted and installed once per session; the emulator is the cluster."""
    work = tmp_path_factory.mktemp("helm")
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    with KubeApiEmulator() as cluster:
        for kind in EXTRA_KINDS:
            cluster.store.registry.add(kind)
        namespaces = {ns for case in CASES.values() for ns in (case.namespace, *case.extra_namespaces)}
        for namespace in sorted(namespaces):
            cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        kubeconfig = cluster.write_kubeconfig(work / "kubeconfig")
        jobs: list[dict[str, Any]] = []
        outcomes: dict[str, Outcome] = {}
        for name, case in CASES.items():
            outcome = Outcome(release=f"cc-{name}", namespace=case.namespace)
            outcomes[name] = outcome
            jobs.append(
                {
                    "action": "install",
                    "case": name,
                    "release": outcome.release,
                    "namespace": case.namespace,
                    "chart": str(CHART),
                    "values": case.values,
                    "kubeconfig": str(kubeconfig),
                }
            )
            if case.lint:
                # Lint reads only the chart's own values.yaml: lint a copy holding this combination's values.
                copy_dir = work / name / "canary-controller"
                shutil.copytree(CHART, copy_dir)
                (copy_dir / "values.yaml").write_text(
                    yaml.safe_dump(deep_merge(defaults, case.values), sort_keys=False), encoding="utf-8"
                )
                jobs.append({"action": "lint", "case": name, "chart": str(copy_dir)})
        jobs_file, results_file = work / "jobs.json", work / "results.json"
        jobs_file.write_text(json.dumps(jobs), encoding="utf-8")
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from tests.helm.conftest import helm_worker; helm_worker()",
                str(jobs_file),
                str(results_file),
            ],
            cwd=REPO,
            env={
                **os.environ,
                "HELM_DRIVER": "memory",
                **{f"HELM_{kind}_HOME": str(work / f"helm-{kind.lower()}") for kind in ("CACHE", "CONFIG", "DATA")},
            },
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"the Helm subprocess failed ({done.returncode}):\n{done.stderr[-3000:]}")
        results = json.loads(results_file.read_text(encoding="utf-8"))
        for job, result in zip(jobs, results, strict=True):
            outcome = outcomes[job["case"]]
            if job["action"] == "lint":
                outcome.lint = result["lint"]
                continue
            outcome.error = result.get("error")
            outcome.manifest = result.get("manifest", "")
            outcome.notes = result.get("notes", "")
            outcome.objects = [doc for doc in yaml.safe_load_all(outcome.manifest) if isinstance(doc, dict)]
            outcome.hooks = [
                doc for text in result.get("hooks", []) for doc in yaml.safe_load_all(text) if isinstance(doc, dict)
            ]
            for kind in (*EXTRA_KINDS, DEPLOYMENTS):
                outcome.in_cluster[kind.plural] = [
                    obj
                    for obj in cluster.list(f"{kind.plural}.{kind.group}" if kind.group else kind.plural)
                    if obj["metadata"].get("annotations", {}).get("meta.helm.sh/release-name") == outcome.release
                ]
        yield outcomes


@pytest.fixture(scope="session")
def dashboard_file() -> Path:
    """The Grafana dashboard the chart ships."""
    return CHART / "dashboards" / "canary-controller.json"
