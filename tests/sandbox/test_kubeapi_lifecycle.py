"""Starting and stopping the emulator: ports, kubeconfig, clean shutdown, and the process mode."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client, config

from canary_sandbox.kubeapi import KubeApiEmulator
from tests.sandbox.conftest import ISTIO, ISTIO_DATA, BackgroundWatch, close_api_client, make_api

REPO = Path(__file__).resolve().parents[2]


def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_each_emulator_listens_on_its_own_free_loopback_port() -> None:
    with KubeApiEmulator() as first, KubeApiEmulator() as second:
        assert first.url.startswith("http://127.0.0.1:")
        assert first.port != second.port
        assert first.running
        assert second.running
    assert not first.running


def test_the_written_kubeconfig_is_loadable_by_the_official_client(tmp_path: Path) -> None:
    with KubeApiEmulator() as emulator:
        path = emulator.write_kubeconfig(tmp_path / "kubeconfig", context_name="sandbox")
        configuration = client.Configuration()
        cast(Any, config.load_kube_config)(config_file=str(path), context="sandbox", client_configuration=configuration)
        api = client.ApiClient(configuration)
        try:
            names = {ns.metadata.name for ns in make_api(client.CoreV1Api, api).list_namespace().items}
        finally:
            close_api_client(api)

    assert configuration.host == emulator_url_of(path)
    assert {"default", "kube-system"} <= names


def emulator_url_of(kubeconfig: Path) -> str:
    for line in kubeconfig.read_text(encoding="utf-8").splitlines():
        if "server:" in line:
            return line.split("server:", 1)[1].strip()
    raise AssertionError("no server in kubeconfig")


def test_stopping_ends_watches_and_leaves_no_threads_or_listening_socket() -> None:
    before = set(threading.enumerate())
    emulator = KubeApiEmulator().start()
    port = emulator.port
    api = client.ApiClient(emulator.client_configuration())
    make_api(client.CoreV1Api, api).list_namespace()
    stream = BackgroundWatch(emulator, lambda c: make_api(client.CoreV1Api, c).list_namespaced_config_map, "default")
    wait_until(lambda: emulator.open_connections >= 2)

    emulator.stop()

    assert stream.finished.wait(5)
    stream.close()
    close_api_client(api)
    assert emulator.open_connections == 0
    leftover = [t.name for t in threading.enumerate() if t not in before and t.name.startswith("kubeapi")]
    assert leftover == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def read_first_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError("the emulator process printed nothing")
    return process.stdout.readline().strip()


def test_the_process_mode_prints_its_url_serves_loaded_objects_and_stops_on_sigterm(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "canary_sandbox.kubeapi",
        "--port",
        "0",
        "--crd",
        str(ISTIO_DATA / "virtualservice-crd.yaml"),
        str(ISTIO_DATA / "destinationrule-crd.yaml"),
        "--load",
        str(ISTIO_DATA / "tcp-echo-all-v1.yaml"),
        "--namespace",
        "demo",
        "--kubeconfig",
        str(tmp_path / "kubeconfig"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            url = read_first_line(process, timeout=20)
            api = client.ApiClient(client.Configuration(host=url))
            try:
                vs = make_api(client.CustomObjectsApi, api).get_namespaced_custom_object(
                    *ISTIO, "demo", "virtualservices", "tcp-echo"
                )
            finally:
                close_api_client(api)
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        errors = process.stderr.read() if process.stderr else ""

    assert url.startswith("http://127.0.0.1:")
    assert vs["spec"]["tcp"][0]["route"][0]["destination"]["subset"] == "v1"
    assert emulator_url_of(tmp_path / "kubeconfig") == url
    assert code == 0, errors
    assert "skipped" in errors
    assert "Gateway" in errors
