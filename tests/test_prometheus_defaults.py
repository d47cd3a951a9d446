"""Controller-wide Prometheus defaults (settings) merged with a policy's own connection."""

from __future__ import annotations

import pytest

from controller.adapters.kubernetes.secrets import SecretReader
from controller.adapters.prometheus import PrometheusMetricsSource
from controller.core.policy import CanaryPolicy
from controller.runtime.composition import default_prometheus
from controller.settings import Settings
from tests.prom.test_analysis_live import _policy


def _source(settings: Settings, environ: dict[str, str]) -> PrometheusMetricsSource:
    return PrometheusMetricsSource(
        default_url="http://prometheus:9090",
        secrets=SecretReader(environ=environ),
        default_spec=default_prometheus(settings),
    )


def test_settings_give_every_policy_the_default_token_and_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_PROMETHEUS_BEARER_TOKEN_ENV", "PROM_TOKEN")
    monkeypatch.setenv("CANARY_PROMETHEUS_HEADERS", '{"X-Scope-OrgID": "team-a"}')
    source = _source(Settings(), {"PROM_TOKEN": "s3cret\n"})
    connection = source.connection(_policy("shop"))
    assert connection.headers["Authorization"] == "Bearer s3cret"
    assert connection.headers["X-Scope-OrgID"] == "team-a"
    assert "s3cret" not in repr(connection)
    source.close()


def test_a_policy_overrides_the_defaults_field_by_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_PROMETHEUS_BEARER_TOKEN_ENV", "PROM_TOKEN")
    monkeypatch.setenv("CANARY_PROMETHEUS_HEADERS", '{"X-Scope-OrgID": "team-a"}')
    doc = _policy("shop").model_dump(mode="json", exclude_none=True)
    doc["spec"]["analysis"]["prometheus"] = {"basicAuth": {"username": "u", "password": {"env": "PASS"}}}
    source = _source(Settings(), {"PROM_TOKEN": "t", "PASS": "p"})
    connection = source.connection(CanaryPolicy.model_validate(doc))
    assert connection.auth == ("u", "p")
    assert "Authorization" not in connection.headers, "the policy's credentials replace the default token"
    assert connection.headers["X-Scope-OrgID"] == "team-a"
    source.close()


def test_contradictory_auth_settings_stop_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_PROMETHEUS_BEARER_TOKEN_ENV", "PROM_TOKEN")
    monkeypatch.setenv("CANARY_PROMETHEUS_BASIC_AUTH_USERNAME", "u")
    monkeypatch.setenv("CANARY_PROMETHEUS_BASIC_AUTH_PASSWORD_ENV", "PASS")
    with pytest.raises(ValueError, match="not both"):
        Settings()


def test_canaryctl_run_refuses_invalid_settings_naming_them() -> None:
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from tests.support.paths import REPO  # noqa: PLC0415

    env = {
        **os.environ,
        "CANARY_TICK_SECONDS": "-3",
        "CANARY_PROMETHEUS_BEARER_TOKEN_ENV": "T",
        "CANARY_PROMETHEUS_BASIC_AUTH_USERNAME": "u",
    }
    done = subprocess.run(
        [sys.executable, "-m", "controller"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "invalid setting CANARY_TICK_SECONDS: Input should be greater than 0" in done.stderr
