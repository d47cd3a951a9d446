"""One value for each job: every variable from a Secret is declared in ``secretEnv`` (``alerts.secretEnv`` did
the same job for alert routes), and ``httpPort`` is the container's and the Service's port (``service.port``
repeated it). The removed values are refused by the schema, naming them, instead of being ignored."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import yaml

from tests.helm.conftest import CHART, Outcome, deep_merge
from tests.helm.test_chart import installed, only


def _errors(override: dict[str, Any]) -> list[str]:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(deep_merge(defaults, override))
    ]


def test_the_removed_duplicates_are_refused_by_name() -> None:
    (alerts,) = _errors({"alerts": {"secretEnv": [{"name": "SLACK_URL", "secretName": "s", "key": "k"}]}})
    assert alerts.startswith("alerts: Additional properties")
    assert "'secretEnv'" in alerts
    (service,) = _errors({"service": {"port": 9090}})
    assert service.startswith("service: Additional properties")
    assert "'port'" in service


def test_alert_route_secrets_come_from_secret_env(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "credentials")
    env = {e["name"]: e for e in only(outcome, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SLACK_URL"]["valueFrom"]["secretKeyRef"] == {"name": "canary-alerts", "key": "slack-url"}
    assert env["PROM_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "prometheus-token", "key": "token"}


def test_the_service_and_the_container_share_http_port(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "default")
    (container,) = only(outcome, "Deployment")["spec"]["template"]["spec"]["containers"]
    http = next(p for p in container["ports"] if p["name"] == "http")
    service = next(p for p in only(outcome, "Service")["spec"]["ports"] if p["name"] == "http")
    assert service["port"] == http["containerPort"] == 8080
    assert service["targetPort"] == "http"
