"""The in-cluster dashboard (the daemon with ``CANARY_DASHBOARD=true``) refuses whoever the API server does.

The daemon runs as ``canaryctl run`` in a subprocess against the API emulator, whose TokenReview and
SubjectAccessReview answers come from its review table: ``alice-token`` is alice, who may ``get
canarypolicies`` in the tcp-echo namespace; ``bob-token`` is bob, who may not; any other token is rejected.
Requests go through the browser's own HTTP stack (Playwright's ``APIRequestContext``), and the page itself
is opened by contexts with and without the header, as an authenticating proxy in front of it would send.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import APIRequestContext, Browser, expect

from canary_sandbox.demo import POLICY_NAME, DemoOptions, demo_policy
from canary_sandbox.kubeapi import KubeApiEmulator
from canary_sandbox.scenario import NAMESPACE, load_scenario
from controller.core.crd import canarypolicy_crd
from tests.browser.world import Process, wait_for

pytestmark = pytest.mark.timeout(180)

ROLLOUT = f"api/rollouts/{NAMESPACE}/{POLICY_NAME}"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
FORGED = {"Authorization": "Bearer not-a-token-the-api-server-knows"}
SERVING = re.compile(r"serving the read-only dashboard on (http://127\.0\.0\.1:\d+)")


class Cluster:
    """The emulator with the policy and its review table, and the daemon serving the dashboard."""

    def __init__(self, emulator: KubeApiEmulator, daemon: Process, url: str) -> None:
        self.emulator = emulator
        self.daemon = daemon
        self.url = url


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[Cluster]:
    del chromium  # without a browser the module skips before starting anything
    workdir = tmp_path_factory.mktemp("browser-cluster")
    emulator = KubeApiEmulator().start()
    try:
        load_scenario(emulator, "istio")
        emulator.register_crd(canarypolicy_crd())
        emulator.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "canary-system"}})
        # Prometheus is not needed to show the page: nothing listens on the discard port.
        policy = demo_policy(
            DemoOptions(step_seconds=60), prometheus_url="http://127.0.0.1:9", alertmanager_url="http://127.0.0.1:9"
        )
        emulator.put(policy)
        (workdir / "policy.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
        emulator.reviews.add_token("alice-token", "alice", groups=["shop-team"])
        emulator.reviews.grant(
            "alice", verb="get", group="canaryctl.dev", resource="canarypolicies", namespace=NAMESPACE
        )
        emulator.reviews.add_token("bob-token", "bob")
        # bob may list pods there, and get canarypolicies elsewhere: neither is the verb on this namespace.
        emulator.reviews.grant("bob", verb="get", group="", resource="pods", namespace=NAMESPACE)
        emulator.reviews.grant("bob", verb="get", group="canaryctl.dev", resource="canarypolicies", namespace="other")
        kubeconfig = emulator.write_kubeconfig(workdir / "kubeconfig", context_name="cluster")
        daemon = Process(
            "daemon",
            [sys.executable, "-m", "controller", "run"],
            {
                **{key: value for key, value in os.environ.items() if not key.startswith("CANARY_")},
                "KUBECONFIG": str(kubeconfig),
                "CANARY_NAMESPACE": "canary-system",
                "CANARY_DASHBOARD": "true",
                "CANARY_DASHBOARD_PORT": "0",
                "CANARY_HTTP_HOST": "127.0.0.1",
                "CANARY_HTTP_PORT": "0",
                "CANARY_TICK_SECONDS": "0.5",
                "CANARY_PROMETHEUS_URL": "http://127.0.0.1:9",
            },
        )
        try:
            found = wait_for(
                "the daemon logs its dashboard's URL",
                lambda: (
                    daemon.process.poll() is None
                    and next((m for line in daemon.lines if (m := SERVING.search(line))), None)
                ),
                30,
                explain=daemon.output,
            )
            yield Cluster(emulator, daemon, found.group(1).rstrip("/") + "/")
        finally:
            daemon.stop()
    finally:
        emulator.stop()


@pytest.fixture
def http(browser: Browser) -> Iterator[APIRequestContext]:
    """The browser's HTTP stack without cookies or default headers."""
    context = browser.new_context()
    try:
        yield context.request
    finally:
        context.close()


def _error(response: Any) -> str:
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str), body
    return str(body["error"])


@pytest.mark.parametrize("path", ["api/rollouts", ROLLOUT, "api/config"])
def test_a_request_without_a_token_is_refused_with_401(cluster: Cluster, http: APIRequestContext, path: str) -> None:
    response = http.get(cluster.url + path)
    assert response.status == 401, response.text()
    assert "Bearer" in (response.headers.get("www-authenticate") or "")
    assert _error(response)


@pytest.mark.parametrize("path", ["api/rollouts", ROLLOUT])
def test_a_token_the_token_review_rejects_is_refused_with_401(
    cluster: Cluster, http: APIRequestContext, path: str
) -> None:
    response = http.get(cluster.url + path, headers=FORGED)
    assert response.status == 401, response.text()
    assert _error(response)


def test_a_user_without_get_canarypolicies_in_the_namespace_is_refused_with_403(
    cluster: Cluster, http: APIRequestContext
) -> None:
    response = http.get(cluster.url + ROLLOUT, headers=BOB)
    assert response.status == 403, response.text()
    assert "bob" in _error(response)
    # The fleet is filtered to what bob may see: nothing, not the rollout.
    fleet = http.get(cluster.url + "api/rollouts", headers=BOB)
    names = [f"{row['namespace']}/{row['name']}" for row in fleet.json().get("rollouts", [])] if fleet.ok else []
    assert fleet.status in (200, 403), fleet.text()
    assert f"{NAMESPACE}/{POLICY_NAME}" not in names
    asked = http.get(cluster.url + f"api/rollouts?namespace={NAMESPACE}", headers=BOB)
    assert asked.status == 403, asked.text()


def test_a_user_with_the_verb_sees_the_rollout_and_cannot_act(cluster: Cluster, http: APIRequestContext) -> None:
    fleet = wait_for(
        "the fleet lists the policy for alice",
        lambda: (
            (r := http.get(cluster.url + "api/rollouts", headers=ALICE)).ok
            and any(row["name"] == POLICY_NAME for row in r.json()["rollouts"])
            and r
        ),
        20,
        explain=cluster.daemon.output,
    )
    assert fleet.status == 200
    detail = http.get(cluster.url + ROLLOUT, headers=ALICE)
    assert detail.status == 200, detail.text()
    assert detail.json()["row"]["namespace"] == NAMESPACE
    config = http.get(cluster.url + "api/config", headers=ALICE).json()
    assert config["mode"] == "cluster"
    assert config["actions"] is False
    acted = http.post(
        cluster.url + ROLLOUT + "/pause",
        headers={**ALICE, "X-Canary-Dashboard": "1", "Content-Type": "application/json"},
        data='{"confirm": true}',
    )
    assert acted.status == 405, acted.text()
    assert _error(acted) == "read-only"


def test_the_page_shows_the_rollout_to_a_browser_sending_alice_token_read_only(
    cluster: Cluster, browser: Browser, screenshots: Path
) -> None:
    context = browser.new_context(extra_http_headers=ALICE)
    try:
        page = context.new_page()
        page.goto(cluster.url)
        row = page.locator(f'table#fleet tr[data-rollout="{NAMESPACE}/{POLICY_NAME}"]')
        expect(row).to_have_count(1, timeout=20_000)
        page.goto(f"{cluster.url}#/r/{NAMESPACE}/{POLICY_NAME}")
        expect(page.locator(f'#rollout[data-rollout="{NAMESPACE}/{POLICY_NAME}"]')).to_be_visible()
        expect(page.locator("#plan")).to_contain_text("20")
        # Read-only: the rollout page offers no action.
        expect(page.locator("button[data-action]")).to_have_count(0)
        (screenshots / "rollout-in-cluster.png").write_bytes(page.screenshot(full_page=True))
    finally:
        context.close()


def test_the_page_asks_for_a_token_refuses_a_forged_one_and_shows_bob_nothing(
    cluster: Cluster, browser: Browser
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(cluster.url)
        dialog = page.locator("dialog#token-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#live")).to_have_attribute("data-state", "closed")

        page.locator("#token-input").fill(FORGED["Authorization"].removeprefix("Bearer "))
        page.locator("#token-ok").click()
        expect(dialog).to_be_visible()
        expect(page.locator("#token-error")).to_contain_text("refused")

        page.locator("#token-input").fill("bob-token")
        page.locator("#token-ok").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("table#fleet")).to_be_visible()
        expect(page.locator("table#fleet tr[data-rollout]")).to_have_count(0)
        page.goto(f"{cluster.url}#/r/{NAMESPACE}/{POLICY_NAME}")
        expect(page.locator("main")).to_contain_text("bob may not get canarypolicies")

        page.goto(cluster.url)  # a new load keeps the tab's token
        page.evaluate("sessionStorage.setItem('canary-dashboard-token', 'alice-token')")
        page.reload()
        expect(page.locator(f'table#fleet tr[data-rollout="{NAMESPACE}/{POLICY_NAME}"]')).to_have_count(1)
    finally:
        context.close()
