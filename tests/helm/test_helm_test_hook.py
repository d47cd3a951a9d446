"""``helm test``: the chart's test hook asks the release's Service for ``/readyz`` from a pod of the controller's
own image, locked down like the controller, and its script is valid Python that fails on anything but 200."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helm.conftest import Outcome
from tests.helm.test_chart import installed, only


def _hook(outcome: Outcome) -> dict[str, Any]:
    (pod,) = [h for h in outcome.hooks if h["kind"] == "Pod"]
    return pod


def test_the_test_hook_asks_the_services_readyz_with_the_controllers_image(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "default")
    pod = _hook(outcome)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = only(outcome, "Service")
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
    (container,) = pod["spec"]["containers"]
    deployment = only(outcome, "Deployment")
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    script = container["command"][-1]
    assert f"http://{service['metadata']['name']}.{outcome.namespace}.svc:{port}/readyz" in script
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["restartPolicy"] == "Never"
    assert all(h["metadata"]["annotations"].get("helm.sh/hook") == "test" for h in outcome.hooks)
    assert not [o for o in outcome.objects if o["kind"] == "Pod"]  # a hook, never part of the release


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()
        self.wfile.write(b"ok" if self.status == 200 else b"not ready: prometheus")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def readyz() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Readyz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1)])
def test_the_hook_script_passes_only_on_200(
    helm_results: dict[str, Outcome], readyz: http.server.HTTPServer, status: int, exit_code: int
) -> None:
    outcome = installed(helm_results, "default")
    service = only(outcome, "Service")
    script = _hook(outcome)["spec"]["containers"][0]["command"][-1]
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
    local = script.replace(
        f"{service['metadata']['name']}.{outcome.namespace}.svc:{port}", f"127.0.0.1:{readyz.server_port}"
    )
    _Readyz.status = status
    done = subprocess.run([sys.executable, "-c", local], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == exit_code, done.stdout + done.stderr
