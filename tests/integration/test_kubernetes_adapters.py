"""The Kubernetes adapters against the emulator, over real HTTP with the official client."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from canary_sandbox.kubeapi import FaultInjector, KubeApiEmulator
from controller.adapters.kubernetes.api import CONFIGMAPS, KubeApi
from controller.adapters.kubernetes.events import KubernetesEventRecorder
from controller.adapters.kubernetes.informer import Informer
from controller.adapters.kubernetes.status import (
    ConfigMapStatusStore,
    _stored,
    _stored_json,
    configmap_name,
    new_command,
)
from controller.adapters.kubernetes.traffic import KubernetesTrafficRouter
from controller.adapters.kubernetes.workloads import KubernetesWorkloadReader
from controller.core.status import CommandKind, Phase, RolloutStatus
from controller.core.writers import WriterStamp
from controller.errors import ConflictError, ForbiddenError, UnavailableError
from controller.ports import InvolvedObject, PolicyRef
from tests.integration.conftest import stored
from tests.sandbox.conftest import document

POINTER = "/spec/tcp/0/route"


def _seed_vs(emulator: KubeApiEmulator, namespace: str) -> dict[str, Any]:
    vs = copy.deepcopy(document("tcp-echo-all-v1.yaml", "VirtualService"))
    emulator.put(vs, namespace=namespace)
    return vs


def _at_20(route: list[Any]) -> list[Any]:
    return [
        {**route[0], "weight": 80},
        {"destination": {"host": "tcp-echo", "port": {"number": 9000}, "subset": "v2"}, "weight": 20},
    ]


class TestTrafficRouter:
    def test_reads_the_virtualservice_in_the_servers_preferred_version(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str
    ) -> None:
        _seed_vs(emulator, namespace)
        obj = KubernetesTrafficRouter(kube).get(kind="VirtualService", namespace=namespace, name="tcp-echo")
        assert obj is not None
        assert obj["apiVersion"] == "networking.istio.io/v1"
        assert obj["spec"]["tcp"][0]["match"] == [{"port": 31400}]

    def test_a_missing_object_reads_as_none(self, kube: KubeApi, namespace: str) -> None:
        assert KubernetesTrafficRouter(kube).get(kind="TCPRoute", namespace=namespace, name="nope") is None

    def test_replaces_only_the_route_list_and_leaves_other_fields(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str
    ) -> None:
        vs = _seed_vs(emulator, namespace)
        router = KubernetesTrafficRouter(kube)
        route = vs["spec"]["tcp"][0]["route"]
        router.replace_route(
            kind="VirtualService",
            namespace=namespace,
            name="tcp-echo",
            pointer=POINTER,
            expect=route,
            destinations=_at_20(route),
        )
        saved = stored(emulator, "virtualservices.networking.istio.io", "tcp-echo", namespace)
        assert saved["spec"]["tcp"][0]["route"] == _at_20(route)
        assert saved["spec"]["hosts"] == ["*"]
        patches = emulator.history(resource="virtualservices", namespace=namespace, name="tcp-echo", verb="PATCH")
        assert len(patches) == 1

    def test_a_concurrent_edit_of_the_list_makes_the_write_fail_instead_of_overwriting(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str
    ) -> None:
        vs = _seed_vs(emulator, namespace)
        route = vs["spec"]["tcp"][0]["route"]
        edited = copy.deepcopy(vs)
        edited["spec"]["tcp"][0]["route"][0]["weight"] = 100
        edited["metadata"].pop("resourceVersion", None)
        emulator.put(edited, namespace=namespace)
        with pytest.raises(ConflictError, match="conflict"):
            KubernetesTrafficRouter(kube).replace_route(
                kind="VirtualService",
                namespace=namespace,
                name="tcp-echo",
                pointer=POINTER,
                expect=route,
                destinations=_at_20(route),
            )
        saved = stored(emulator, "virtualservices.networking.istio.io", "tcp-echo", namespace)
        assert saved["spec"]["tcp"][0]["route"] == edited["spec"]["tcp"][0]["route"]

    def test_edits_elsewhere_in_the_object_do_not_conflict(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str
    ) -> None:
        vs = _seed_vs(emulator, namespace)
        route = vs["spec"]["tcp"][0]["route"]
        labelled = stored(emulator, "virtualservices.networking.istio.io", "tcp-echo", namespace)
        labelled["metadata"]["labels"] = {"argocd.argoproj.io/instance": "shop"}
        emulator.put(labelled, namespace=namespace)
        KubernetesTrafficRouter(kube).replace_route(
            kind="VirtualService",
            namespace=namespace,
            name="tcp-echo",
            pointer=POINTER,
            expect=route,
            destinations=_at_20(route),
        )
        saved = stored(emulator, "virtualservices.networking.istio.io", "tcp-echo", namespace)
        assert saved["metadata"]["labels"] == {"argocd.argoproj.io/instance": "shop"}
        assert saved["spec"]["tcp"][0]["route"][1]["weight"] == 20

    def test_a_write_the_crd_schema_rejects_is_an_api_error_not_a_silent_change(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str
    ) -> None:
        vs = _seed_vs(emulator, namespace)
        route = vs["spec"]["tcp"][0]["route"]
        bad = [{**route[0], "weight": "eighty"}]
        with pytest.raises(Exception, match="422"):
            KubernetesTrafficRouter(kube).replace_route(
                kind="VirtualService",
                namespace=namespace,
                name="tcp-echo",
                pointer=POINTER,
                expect=route,
                destinations=bad,
            )

    def test_tcproute_backends_are_patched_in_v1alpha2_or_v1(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str
    ) -> None:
        route = copy.deepcopy(document("gateway-api-tcp-echo-all-v1.yaml", "TCPRoute"))
        emulator.put(route, namespace=namespace)
        router = KubernetesTrafficRouter(kube)
        live = router.get(kind="TCPRoute", namespace=namespace, name="tcp-echo")
        assert live is not None
        refs = live["spec"]["rules"][0]["backendRefs"]
        new = [{**refs[0], "weight": 80}, {"name": "tcp-echo-v2", "port": 9000, "weight": 20}]
        router.replace_route(
            kind="TCPRoute",
            namespace=namespace,
            name="tcp-echo",
            pointer="/spec/rules/0/backendRefs",
            expect=refs,
            destinations=new,
        )
        stored = router.get(kind="TCPRoute", namespace=namespace, name="tcp-echo")
        assert stored is not None
        # The API server applies the CRD's defaults (group "", kind Service) to what was written.
        assert [(b["name"], b["weight"], b.get("kind")) for b in stored["spec"]["rules"][0]["backendRefs"]] == [
            ("tcp-echo-v1", 80, "Service"),
            ("tcp-echo-v2", 20, "Service"),
        ]

    def test_forbidden_names_the_missing_rbac_permission(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str, faults: FaultInjector
    ) -> None:
        vs = _seed_vs(emulator, namespace)
        route = vs["spec"]["tcp"][0]["route"]
        faults.add(verb="PATCH", resource="virtualservices", status=403)
        with pytest.raises(ForbiddenError) as caught:
            KubernetesTrafficRouter(kube).replace_route(
                kind="VirtualService",
                namespace=namespace,
                name="tcp-echo",
                pointer=POINTER,
                expect=route,
                destinations=_at_20(route),
            )
        message = caught.value.problems[0]
        assert (
            "RBAC must allow verb 'patch' on resource 'virtualservices' in API group 'networking.istio.io'" in message
        )
        assert f"in namespace {namespace}" in message

    def test_server_errors_and_timeouts_are_unavailable(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str, faults: FaultInjector
    ) -> None:
        vs = _seed_vs(emulator, namespace)
        route = vs["spec"]["tcp"][0]["route"]
        router = KubernetesTrafficRouter(kube)
        faults.add(verb="PATCH", resource="virtualservices", status=500, times=1)
        with pytest.raises(UnavailableError, match="500"):
            router.replace_route(
                kind="VirtualService",
                namespace=namespace,
                name="tcp-echo",
                pointer=POINTER,
                expect=route,
                destinations=_at_20(route),
            )
        faults.add(verb="PATCH", resource="virtualservices", delay_seconds=3.0, times=1)
        with pytest.raises(UnavailableError, match="no answer"):
            router.replace_route(
                kind="VirtualService",
                namespace=namespace,
                name="tcp-echo",
                pointer=POINTER,
                expect=route,
                destinations=_at_20(route),
            )


class TestConfigMapStatusStore:
    def test_round_trips_status_and_rejects_stale_writes(self, kube: KubeApi, namespace: str) -> None:
        store = ConfigMapStatusStore(kube, namespace=namespace)
        ref = PolicyRef(namespace="shop", name="tcp-echo", source="file")
        loaded = store.load(policy=ref)
        assert loaded.version is None
        assert loaded.status == RolloutStatus()
        first = store.save(policy=ref, status=RolloutStatus(phase=Phase.PROGRESSING, run_id="r-1"), version=None)
        again = store.load(policy=ref)
        assert again.version == first
        assert again.status.phase == Phase.PROGRESSING
        store.save(policy=ref, status=again.status.model_copy(update={"step_index": 1}), version=first)
        with pytest.raises(ConflictError):
            store.save(policy=ref, status=again.status, version=first)

    def test_commands_are_appended_durably_and_survive_status_writes(self, kube: KubeApi, namespace: str) -> None:
        store = ConfigMapStatusStore(kube, namespace=namespace)
        ref = PolicyRef(namespace="shop", name="tcp-echo", source="file")
        store.add_command(policy=ref, command=new_command(CommandKind.PAUSE, by="alice"))
        loaded = store.load(policy=ref)
        store.save(policy=ref, status=RolloutStatus(phase=Phase.PAUSED), version=loaded.version)
        store.add_command(policy=ref, command=new_command(CommandKind.RESUME, by="bob"))
        commands = store.load(policy=ref).commands
        assert [(c.kind, c.by) for c in commands] == [(CommandKind.PAUSE, "alice"), (CommandKind.RESUME, "bob")]

    def test_from_a_watch_cache_a_status_is_parsed_once_per_version_and_every_change_is_read(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str
    ) -> None:
        # Passes share the status parsed from one resourceVersion (issue 18); what another writer or a person
        # stores under a new version is read at once, and what this store wrote reads as a fresh store reads it.
        cache = Informer(kube, CONFIGMAPS, namespaces=[namespace])
        try:
            assert cache.wait_synced(5)
            store = ConfigMapStatusStore(kube, namespace=namespace, cache=cache)
            ref = PolicyRef(namespace="shop", name="tcp-echo", source="file")
            written = RolloutStatus(phase=Phase.PROGRESSING, run_id="r-1", step_index=1, weight=20)
            version = store.save(policy=ref, status=written, version=None)
            first = store.load(policy=ref)
            assert first.version == version
            assert first.status == written
            assert first.status == ConfigMapStatusStore(kube, namespace=namespace).load(policy=ref).status
            assert store.load(policy=ref) is first  # same version: not parsed again
            other = ConfigMapStatusStore(kube, namespace=namespace)  # another replica, reading the API
            other.save(policy=ref, status=written.model_copy(update={"weight": 50}), version=version)
            other.add_command(policy=ref, command=new_command(CommandKind.PAUSE, by="alice"))
            deadline = time.monotonic() + 5
            while store.load(policy=ref).status.weight != 50 or not store.load(policy=ref).commands:
                assert time.monotonic() < deadline, "the other writer's status never read"
                time.sleep(0.02)
            assert [c.kind for c in store.load(policy=ref).commands] == [CommandKind.PAUSE]
            assert emulator.delete("configmaps", configmap_name(ref), namespace=namespace)
            while store.load(policy=ref).version is not None:
                assert time.monotonic() < deadline + 5, "the deletion never read"
                time.sleep(0.02)
            assert store.load(policy=ref).status == RolloutStatus()
        finally:
            cache.close()

    def test_configmap_names_stay_valid_for_long_policy_names(self) -> None:
        name = configmap_name(PolicyRef(namespace="n" * 63, name="p" * 253, source="file"))
        assert len(name) <= 253


class TestWorkloadsAndEvents:
    def _deployment(self, namespace: str, *, available: str, replicas: int = 2, ready: int = 2) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "tcp-echo-v2", "namespace": namespace, "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "tcp-echo"}},
                "template": {
                    "metadata": {"labels": {"app": "tcp-echo", "version": "v2"}},
                    "spec": {"containers": [{"name": "tcp-echo", "image": "istio/tcp-echo-server:1.3"}]},
                },
            },
            "status": {
                "observedGeneration": 1,
                "replicas": replicas,
                "updatedReplicas": ready,
                "availableReplicas": ready,
                "conditions": [
                    {"type": "Available", "status": available, "reason": "MinimumReplicasAvailable", "message": "ok"}
                ],
            },
        }

    def test_an_available_deployment_is_ready_and_its_template_is_read(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str
    ) -> None:
        emulator.put(self._deployment(namespace, available="True"), namespace=namespace)
        state = KubernetesWorkloadReader(kube).canary(namespace=namespace, name="tcp-echo-v2")
        assert state.ready
        assert state.template is not None
        assert state.template["spec"]["containers"][0]["image"] == "istio/tcp-echo-server:1.3"

    def test_an_unavailable_or_missing_deployment_is_not_ready(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str
    ) -> None:
        reader = KubernetesWorkloadReader(kube)
        assert not reader.canary(namespace=namespace, name="tcp-echo-v2").ready
        emulator.put(self._deployment(namespace, available="False", ready=0), namespace=namespace)
        state = reader.canary(namespace=namespace, name="tcp-echo-v2")
        assert not state.ready
        assert "not Available" in state.message

    def test_events_are_recorded_on_the_involved_object(
        self, emulator: KubeApiEmulator, kube: KubeApi, namespace: str
    ) -> None:
        recorder = KubernetesEventRecorder(kube)
        recorder.record(
            involved=InvolvedObject("VirtualService", "networking.istio.io/v1", namespace, "tcp-echo"),
            reason="StepAdvanced",
            message="step 2/4: canary weight 20",
            event_type="Normal",
        )
        events = emulator.list("events", namespace=namespace)
        assert [(e["reason"], e["involvedObject"]["name"], e["type"]) for e in events] == [
            ("StepAdvanced", "tcp-echo", "Normal")
        ]

    def test_a_failing_event_write_never_raises(self, kube: KubeApi, namespace: str, faults: FaultInjector) -> None:
        faults.add(verb="POST", resource="events", status=500)
        KubernetesEventRecorder(kube).record(
            involved=InvolvedObject("VirtualService", "networking.istio.io/v1", namespace, "x"),
            reason="R",
            message="m",
            event_type="Normal",
        )


@pytest.mark.parametrize(
    ("version", "annotations", "with_status"),
    [(None, None, True), ("42", {"canaryctl.dev/commands": "[]"}, True), (None, {"a": "b"}, False)],
)
def test_the_status_configmap_body_is_what_the_clients_model_would_send(
    version: str | None, annotations: dict[str, str] | None, with_status: bool
) -> None:
    # The body is built as JSON to spare a pass the model (issue 18); the server must get the same object.
    store = ConfigMapStatusStore(KubeApi(k8s.ApiClient()), namespace="canary-system")
    ref = PolicyRef("shop", "checkout", source="file")
    status = RolloutStatus(phase=Phase.PROGRESSING, weight=20, step_index=1) if with_status else None
    body = store._body(ref, status, annotations, version)
    data = {"status": body["data"]["status"]} if with_status else None
    model = k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(
            name=configmap_name(ref),
            namespace="canary-system",
            resource_version=version,
            labels={
                "canaryctl.dev/policy-name": "checkout",
                "canaryctl.dev/policy-namespace": "shop",
                "app.kubernetes.io/managed-by": "canary-controller",
            },
            annotations=annotations,
        ),
        data=data,
    )
    assert body == k8s.ApiClient().sanitize_for_serialization(model)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    "status",
    [
        RolloutStatus(),
        RolloutStatus(phase=Phase.PROGRESSING, weight=20, step_index=1, message='étape 2/4: canary 20 % "v2"'),
    ],
)
@pytest.mark.parametrize("writer", [None, WriterStamp(identity="canary-0", instance="a1b2", serial=7, elected=True)])
def test_the_stored_status_text_is_the_stored_status_as_json(status: RolloutStatus, writer: WriterStamp | None) -> None:
    # The ConfigMap's status text is serialized by the model (issue 18): it must hold exactly what was stored
    # before, the writer's stamp included, and read back as the same status.
    text = _stored_json(status, writer)
    assert json.loads(text) == _stored(status, writer)
    assert RolloutStatus.model_validate_json(text) == status
