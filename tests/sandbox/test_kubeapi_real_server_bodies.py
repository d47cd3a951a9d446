"""The emulator answers body for body as kube-apiserver does (issue 14, item 2).

Each test quotes the real server's response and names the upstream source it comes from
(kubernetes/kubernetes unless another repository is named). Requests go over raw HTTP so that the bytes
the server compares (a JSON patch's number literals) are exactly the ones sent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from canary_sandbox.kubeapi import KubeApiEmulator
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.leases import LeaseLock, LeaseRecord
from tests.sandbox.conftest import document

VS_PATH = "/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/tcp-echo"
JSON_PATCH = "application/json-patch+json"

# staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go, jsonPatcher.applyJSPatch: a failed
# patchObj.Apply becomes errors.NewGenericServerResponse(422, "", schema.GroupResource{}, "", "", 0, false)
# (apimachinery/pkg/api/errors/errors.go), whose StatusDetails has only empty fields and no causes.
# Field report of the same body: operator-framework/java-operator-sdk#2759.
REAL_FAILED_TEST_BODY = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "the server rejected our request due to an error in our request",
    "reason": "Invalid",
    "details": {},
    "code": 422,
}


@pytest.fixture
def http(emulator: KubeApiEmulator) -> Any:
    with httpx.Client(base_url=emulator.url, timeout=10) as session:
        yield session


def _create_tcp_echo(http: httpx.Client, namespace: str, **spec_overrides: Any) -> dict[str, Any]:
    body = document("tcp-echo-20-v2.yaml", "VirtualService")
    body["metadata"] = {"name": "tcp-echo", "namespace": namespace, "annotations": {"note": "a<b"}}
    created = http.post(f"/apis/networking.istio.io/v1/namespaces/{namespace}/virtualservices", json=body)
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


def _json_patch(http: httpx.Client, namespace: str, raw: str) -> httpx.Response:
    return http.patch(VS_PATH.format(ns=namespace), content=raw, headers={"Content-Type": JSON_PATCH})


def test_a_failed_json_patch_test_gets_the_real_generic_422_body_without_causes(
    http: httpx.Client, namespace: str
) -> None:
    _create_tcp_echo(http, namespace)

    answer = _json_patch(http, namespace, '[{"op":"test","path":"/spec/tcp/0/route/0/weight","value":55}]')

    assert answer.status_code == 422
    assert answer.json() == REAL_FAILED_TEST_BODY


def test_a_json_patch_on_a_missing_path_gets_the_same_generic_422_body(http: httpx.Client, namespace: str) -> None:
    _create_tcp_echo(http, namespace)

    answer = _json_patch(http, namespace, '[{"op":"replace","path":"/spec/tcp/7/route/0/weight","value":1}]')

    assert answer.status_code == 422
    assert answer.json() == REAL_FAILED_TEST_BODY


def test_a_json_patch_test_of_20_point_0_fails_against_a_stored_20_as_the_bytes_differ(
    http: httpx.Client, namespace: str
) -> None:
    # evanphx/json-patch lazyNode.equal: scalars are bytes.Equal(n.compact(), o.compact()); the stored 80
    # is written by Go as "80", the patch says "80.0".
    _create_tcp_echo(http, namespace)

    answer = _json_patch(http, namespace, '[{"op":"test","path":"/spec/tcp/0/route/0/weight","value":80.0}]')

    assert answer.status_code == 422
    assert answer.json() == REAL_FAILED_TEST_BODY


def test_a_json_patch_test_with_the_same_literal_passes_and_the_replace_lands(
    http: httpx.Client, namespace: str
) -> None:
    _create_tcp_echo(http, namespace)
    raw = (
        '[{"op":"test","path":"/spec/tcp/0/route/0/weight","value": 80},'
        ' {"op":"test","path":"/spec/tcp/0/route/0/destination","value":'
        ' {"subset":"v1","host":"tcp-echo","port":{"number":9000}}},'
        ' {"op":"replace","path":"/spec/tcp/0/route/0/weight","value":50},'
        ' {"op":"replace","path":"/spec/tcp/0/route/1/weight","value":50}]'
    )

    answer = _json_patch(http, namespace, raw)

    assert answer.status_code == 200, answer.text
    assert [d["weight"] for d in answer.json()["spec"]["tcp"][0]["route"]] == [50, 50]


def test_a_json_patch_test_of_a_string_with_an_html_character_fails_as_go_escapes_the_stored_one(
    http: httpx.Client, namespace: str
) -> None:
    # Go's encoding/json writes the stored "a<b" as "a\u003cb"; json.Compact keeps the patch's "a<b".
    _create_tcp_echo(http, namespace)

    answer = _json_patch(
        http, namespace, json.dumps([{"op": "test", "path": "/metadata/annotations/note", "value": "a<b"}])
    )

    assert answer.status_code == 422


def test_an_unknown_path_gets_the_real_404_body_with_empty_details(http: httpx.Client) -> None:
    # apiserver's NotFoundHandler: errors.NewNotFound(schema.GroupResource{}, "") has empty StatusDetails.
    answer = http.get("/apis/no.such.group/v1/things")

    assert answer.status_code == 404
    assert answer.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server could not find the requested resource",
        "reason": "NotFound",
        "details": {},
        "code": 404,
    }


def _lease(namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "canary-leader", "namespace": namespace},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15, **spec},
    }


def _post_lease(http: httpx.Client, namespace: str, **spec: Any) -> httpx.Response:
    return http.post(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases", json=_lease(namespace, **spec))


def test_a_lease_renew_time_without_microseconds_is_a_bad_request(http: httpx.Client, namespace: str) -> None:
    # apimachinery meta/v1/micro_time.go, MicroTime.UnmarshalJSON: time.Parse(RFC3339Micro, str), which
    # needs six fractional digits; the decoding error is a 400 (handlers/rest.go, transformDecodeError).
    answer = _post_lease(http, namespace, renewTime="2026-12-03T18:59:26+00:00")

    assert answer.status_code == 400
    assert answer.json()["reason"] == "BadRequest"
    assert answer.json()["message"].startswith(
        'Lease in version "v1" cannot be handled as a Lease: parsing time "2026-12-03T18:59:26+00:00"'
    )


def test_a_lease_with_microsecond_times_is_created(http: httpx.Client, namespace: str) -> None:
    answer = _post_lease(
        http, namespace, renewTime="2026-12-03T18:59:26.000000Z", acquireTime="2026-12-03T18:59:26.123456+00:00"
    )

    assert answer.status_code == 201, answer.text
    assert answer.json()["spec"]["renewTime"] == "2026-12-03T18:59:26.000000Z"


def test_a_lease_duration_that_is_not_an_int32_is_a_bad_request(http: httpx.Client, namespace: str) -> None:
    answer = _post_lease(http, namespace, leaseDurationSeconds="fifteen")

    assert answer.status_code == 400
    assert answer.json()["message"] == (
        'Lease in version "v1" cannot be handled as a Lease: json: cannot unmarshal string into Go struct field '
        "LeaseSpec.spec.leaseDurationSeconds of type int32"
    )


def test_the_leader_election_lock_writes_microseconds_even_on_a_whole_second(
    emulator: KubeApiEmulator, api_client: Any, namespace: str
) -> None:
    whole_second = datetime(2026, 12, 3, 18, 59, 26, tzinfo=UTC)
    lock = LeaseLock(KubeApi(api_client, timeout_seconds=5.0), namespace=namespace, name="canary-leader")

    lock.create(LeaseRecord("pod-a", 15, whole_second, whole_second, 0))

    stored = emulator.get("leases", "canary-leader", namespace=namespace)
    assert stored is not None
    assert stored["spec"]["renewTime"] == "2026-12-03T18:59:26.000000Z"
    assert stored["spec"]["acquireTime"] == "2026-12-03T18:59:26.000000Z"
    record, _ = lock.get() or (None, "")
    assert record is not None
    assert record.renew_time == whole_second
