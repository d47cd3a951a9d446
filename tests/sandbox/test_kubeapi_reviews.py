"""The emulator's TokenReview and SubjectAccessReview answers, from its review table, over real HTTP."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from canary_sandbox.kubeapi import KubeApiEmulator


def _post(emulator: KubeApiEmulator, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{emulator.url}{path}", content=json.dumps(body), timeout=5.0)


def _access(emulator: KubeApiEmulator, user: str, groups: list[str], **attributes: str) -> httpx.Response:
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
    }
    return _post(emulator, "/apis/authorization.k8s.io/v1/subjectaccessreviews", body)


def test_a_known_token_authenticates_as_its_user_and_another_is_rejected(emulator: KubeApiEmulator) -> None:
    token, user = f"t-{uuid.uuid4().hex}", f"alice-{uuid.uuid4().hex[:6]}"
    emulator.reviews.add_token(token, user, groups=["dev"])
    path = "/apis/authentication.k8s.io/v1/tokenreviews"
    known = _post(
        emulator, path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    )
    assert known.status_code == 201
    assert known.json()["status"]["authenticated"] is True
    assert known.json()["status"]["user"]["username"] == user
    assert known.json()["status"]["user"]["groups"] == ["dev", "system:authenticated"]
    assert known.json()["spec"] == {"token": token}
    unknown = _post(emulator, path, {"kind": "TokenReview", "spec": {"token": "nobody"}})
    assert unknown.status_code == 201
    assert "authenticated" not in unknown.json()["status"]
    assert unknown.json()["status"]["user"] == {}
    empty = _post(emulator, path, {"kind": "TokenReview", "spec": {}})
    assert empty.status_code == 400
    assert empty.json()["reason"] == "BadRequest"


def test_access_is_allowed_only_as_granted_to_the_user_or_a_group(emulator: KubeApiEmulator) -> None:
    user, group = f"bob-{uuid.uuid4().hex[:6]}", f"team-{uuid.uuid4().hex[:6]}"
    emulator.reviews.grant(user, verb="get", group="canaryctl.dev", resource="canarypolicies", namespace="shop")
    emulator.reviews.grant(group, verb="*", group="canaryctl.dev", resource="canarypolicies", namespace="payments")
    wanted = {"verb": "get", "group": "canaryctl.dev", "resource": "canarypolicies"}
    assert _access(emulator, user, [], namespace="shop", **wanted).json()["status"]["allowed"] is True
    assert _access(emulator, user, [], namespace="payments", **wanted).json()["status"] == {"allowed": False}
    assert _access(emulator, user, [group], namespace="payments", **wanted).json()["status"]["allowed"] is True
    listing = {**wanted, "verb": "list"}
    assert _access(emulator, user, [], namespace="shop", **listing).json()["status"]["allowed"] is False


def test_an_access_review_without_resource_attributes_is_invalid(emulator: KubeApiEmulator) -> None:
    answer = _post(emulator, "/apis/authorization.k8s.io/v1/subjectaccessreviews", {"spec": {"user": "x"}})
    assert answer.status_code == 422
    assert "resourceAttributes" in answer.json()["message"]
