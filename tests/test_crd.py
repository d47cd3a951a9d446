"""The CanaryPolicy CRD: generated from the models, structural, and accepting what the controller accepts."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
import yaml
from kubernetes import client
from pydantic import BaseModel

from controller.core.crd import CRD_NAME, GROUP, PLURAL, VERSION, canarypolicy_crd, structural_schema
from controller.core.policy import CanaryPolicy, Spec
from controller.core.status import Counters, HistoryEntry, Phase, RolloutStatus, RouteSnapshot, Verdict, with_conditions
from tests.rollout_sim import T0, Sim
from tests.support.paths import REPO, SHARED_ISTIO
from tests.support.policies import policy_doc

if TYPE_CHECKING:
    from canary_sandbox.kubeapi import KubeApiEmulator

CRD_FILE = REPO / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
HEADER = "# Generated from controller/core models by `make schema`; do not edit."
POLICY_FILES = sorted((REPO / "policies").glob("*.yaml"))
SEED_POLICY = REPO / "policies" / "tcp-echo.yaml"
CUSTOM = (GROUP, VERSION)

# What a node of a structural schema may say (apiextensions.k8s.io/v1 JSONSchemaProps, minus what the
# structural rules forbid: $ref, definitions, allOf/anyOf/oneOf/not outside int-or-string, uniqueItems...).
STRUCTURAL_KEYWORDS = frozenset(
    {
        "description",
        "type",
        "format",
        "nullable",
        "enum",
        "default",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "properties",
        "additionalProperties",
        "items",
        "required",
        "example",
        "externalDocs",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)
TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


# ---------------------------------------------------------------------------------------------- helpers


def crd_schema() -> dict[str, Any]:
    """The generated CRD's ``openAPIV3Schema``."""
    schema: dict[str, Any] = canarypolicy_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def is_of_type(value: Any, kind: str) -> bool:
    """Whether a JSON value has an OpenAPI type (booleans are not integers)."""
    if isinstance(value, bool):
        return kind == "boolean"
    return isinstance(value, TYPES[kind])


def structural_violations(node: Any, path: str = "") -> list[str]:
    """Every way a schema node and its children break the structural-schema rules, each with its path."""
    where = path or "<root>"
    if not isinstance(node, dict):
        return [f"{where}: a schema node must be an object, got {node!r}"]
    problems = [
        f"{where}: {key!r} is not allowed in a structural schema" for key in node if key not in STRUCTURAL_KEYWORDS
    ]
    free_form = node.get("x-kubernetes-preserve-unknown-fields") is True or node.get("x-kubernetes-int-or-string")
    kind = node.get("type")
    if kind is None and not free_form:
        problems.append(f"{where}: has no type")
    elif kind is not None and kind not in TYPES:
        problems.append(f"{where}: unknown type {kind!r}")
    if "nullable" in node and node["nullable"] is not True:
        problems.append(f"{where}: nullable is written only as true")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
    if "additionalProperties" in node and not isinstance(node["additionalProperties"], dict):
        problems.append(f"{where}: additionalProperties must be a schema, not {node['additionalProperties']!r}")
    if ("properties" in node or "additionalProperties" in node) and kind != "object":
        problems.append(f"{where}: has properties but is of type {kind!r}")
    if kind == "array" and "items" not in node:
        problems.append(f"{where}: an array needs an items schema")
    if "items" in node and kind != "array":
        problems.append(f"{where}: has items but is of type {kind!r}")
    for value in node.get("enum", []):
        if kind in TYPES and not is_of_type(value, kind):
            problems.append(f"{where}: enum value {value!r} is not of type {kind}")
    for name in node.get("required", []):
        if name not in node.get("properties", {}) and not free_form:
            problems.append(f"{where}: required property {name!r} is not declared")
    if "default" in node and "$ref" not in node:  # a $ref is reported above and cannot be resolved here
        problems.extend(default_violations(node, where))
    for rule in node.get("x-kubernetes-validations", []):
        if set(rule) - {"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"}:
            problems.append(f"{where}: unknown key in CEL rule {rule!r}")
        if not isinstance(rule.get("rule"), str) or not isinstance(rule.get("message"), str):
            problems.append(f"{where}: a CEL rule needs a rule and a message: {rule!r}")
    for name, child in node.get("properties", {}).items():
        problems.extend(structural_violations(child, f"{path}.{name}"))
    if isinstance(node.get("items"), dict):
        problems.extend(structural_violations(node["items"], f"{path}[*]"))
    if isinstance(node.get("additionalProperties"), dict):
        problems.extend(structural_violations(node["additionalProperties"], f"{path}.*"))
    return problems


def default_violations(node: dict[str, Any], where: str) -> list[str]:
    """A default must be a value the node accepts (null only where nullable)."""
    if node["default"] is None and node.get("nullable") is not True:
        return [f"{where}: default null on a field that is not nullable"]
    errors = list(validator(node).iter_errors(node["default"]))
    return [f"{where}: default {node['default']!r} is invalid: {error.message}" for error in errors]


def as_json_schema(node: Any) -> Any:
    """The plain JSON Schema (draft 4) meaning of a Kubernetes schema node: ``nullable`` admits null."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: as_json_schema(child) for name, child in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = as_json_schema(value)
        else:
            out[key] = value
    return {"anyOf": [{"type": "null"}, out]} if node.get("nullable") is True else out


FORMATS = jsonschema.FormatChecker(formats=())


def is_date_time(value: object) -> bool:
    """RFC 3339 date-time with an offset, as Kubernetes stores timestamps."""
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


FORMATS.checks("date-time", raises=ValueError)(is_date_time)


def validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    """A validator for a Kubernetes schema node (OpenAPI v3 is built on draft 4), checking date-times."""
    return jsonschema.Draft4Validator(as_json_schema(schema), format_checker=FORMATS)


def field_path(parts: Iterable[str | int]) -> str:
    """A path as the API server prints it: ``spec.schedule.steps[1]``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).lstrip(".")


def errors_of(schema: dict[str, Any], instance: Any) -> list[str]:
    """Validation errors as ``path: message``, for readable assertion messages."""
    return [f"{field_path(error.absolute_path)}: {error.message}" for error in validator(schema).iter_errors(instance)]


def seed_target() -> dict[str, Any]:
    """The real tcp-echo VirtualService of Istio's TCP traffic shifting task, all traffic on v1."""
    documents = yaml.safe_load_all((SHARED_ISTIO / "tcp-echo-all-v1.yaml").read_text(encoding="utf-8"))
    found: dict[str, Any] = next(d for d in documents if d and d["kind"] == "VirtualService")
    return found


def realistic_status() -> RolloutStatus:
    """A run at step 2 of 4 (canary at 20), with its history, conditions and the saved original route."""
    now = T0 + timedelta(minutes=5)
    original = seed_target()["spec"]["tcp"][0]["route"]
    status = RolloutStatus(
        phase=Phase.PROGRESSING,
        revision="3f2a9c1d0e4b5a67",
        run_id="3f2a9c1d-1",
        run_number=1,
        step_index=1,
        weight=20,
        step_started_at=now - timedelta(seconds=45),
        pending_since=T0,
        original=RouteSnapshot(pointer="/spec/tcp/0/route", destinations=original),
        expected_weights=[80, 20],
        previous_weights=[100, 0],
        counters=Counters(steps_advanced=1, writes=2, transitions=2),
        history=[
            HistoryEntry(
                time=T0, from_phase=None, to_phase=Phase.PENDING, reason="RolloutStarted", message="run starts"
            ),
            HistoryEntry(
                time=T0 + timedelta(seconds=10),
                from_phase=Phase.PENDING,
                to_phase=Phase.PROGRESSING,
                reason="StepStarted",
                message="step 1/4: canary weight 0",
            ),
            HistoryEntry(
                time=now - timedelta(seconds=50),
                from_phase=Phase.PROGRESSING,
                to_phase=Phase.PROGRESSING,
                reason="StepAdvanced",
                message="step 2/4: canary weight 20",
            ),
        ],
        processed_commands=["c1"],
        last_verdict="pass",
        message="step 2/4: 75s left",
        observed_generation=1,
    )
    return with_conditions(status, now, step_count=4)


def set_at(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the value at ``path`` replaced."""
    out = copy.deepcopy(doc)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


INVALID_SPECS = [
    pytest.param(("spec", "schedule", "steps"), [0, 200], "spec.schedule.steps[1]", id="a step above 100"),
    pytest.param(("spec", "target", "route", "protocol"), "udp", "spec.target.route.protocol", id="protocol udp"),
    pytest.param(("spec", "schedule", "stepDuration"), "2 minutes", "spec.schedule.stepDuration", id="2 minutes"),
]


# ----------------------------------------------------------------------------------- the committed file


def test_the_committed_crd_file_is_the_generated_crd() -> None:
    committed = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))

    assert committed == canarypolicy_crd(), f"{CRD_FILE.relative_to(REPO)} is stale: run `make schema`"


def test_the_committed_crd_file_says_it_is_generated() -> None:
    assert CRD_FILE.read_text(encoding="utf-8").splitlines()[0] == HEADER


# -------------------------------------------------------------------------------------------- structure


def test_the_crd_names_the_canarypolicy_resource() -> None:
    crd = canarypolicy_crd()
    spec = crd["spec"]

    assert (crd["apiVersion"], crd["kind"], crd["metadata"]["name"]) == (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "canarypolicies.canaryctl.dev",
    )
    assert (spec["group"], spec["scope"]) == ("canaryctl.dev", "Namespaced")
    assert spec["names"] == {
        "kind": "CanaryPolicy",
        "listKind": "CanaryPolicyList",
        "plural": "canarypolicies",
        "singular": "canarypolicy",
        "shortNames": ["cpol"],
        "categories": ["canary"],
    }
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [("v1alpha1", True, True)]
    assert spec["versions"][0]["subresources"] == {"status": {}}


def test_kubectl_get_shows_phase_step_weight_and_age_and_wide_adds_the_message() -> None:
    columns = canarypolicy_crd()["spec"]["versions"][0]["additionalPrinterColumns"]

    assert [(c["name"], c["type"], c["jsonPath"], c.get("priority", 0)) for c in columns] == [
        ("Phase", "string", ".status.phase", 0),
        ("Step", "string", ".status.step", 0),
        ("Weight", "integer", ".status.weight", 0),
        ("Age", "date", ".metadata.creationTimestamp", 0),
        ("Message", "string", ".status.message", 1),
    ]


def test_every_node_of_the_schema_is_structural() -> None:
    assert structural_violations(crd_schema()) == []


def test_the_root_declares_only_what_every_crd_declares_plus_spec_and_status() -> None:
    root = crd_schema()

    assert root["type"] == "object"
    assert list(root["properties"]) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert root["properties"]["apiVersion"]["type"] == root["properties"]["kind"]["type"] == "string"
    assert root["properties"]["metadata"] == {"type": "object"}
    assert root["required"] == ["spec"]


def test_the_structural_checker_catches_what_pydantic_emits() -> None:
    raw = RolloutStatus.model_json_schema(by_alias=True)

    problems = "\n".join(structural_violations(raw))

    for expected in ("'$defs' is not allowed", "'title' is not allowed", "'anyOf' is not allowed", "has no type"):
        assert expected in problems


def test_optional_fields_become_nullable_without_a_null_default() -> None:
    port = crd_schema()["properties"]["spec"]["properties"]["target"]["properties"]["route"]["properties"]["port"]

    assert port == {
        "description": "A route is a candidate if any of its match entries has this port.",
        "type": "integer",
        "nullable": True,
        "minimum": 1,
        "maximum": 65535,
    }


def test_saved_destinations_are_kept_whatever_their_fields() -> None:
    destinations = crd_schema()["properties"]["status"]["properties"]["original"]["properties"]["destinations"]

    assert destinations["items"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_field_descriptions_override_model_descriptions() -> None:
    target = crd_schema()["properties"]["spec"]["properties"]["target"]["properties"]

    assert target["virtualService"]["description"] == "An Istio VirtualService."
    assert target["stable"]["description"] == "The destination that serves traffic today."


def test_exactly_one_target_kind_and_increasing_steps_are_also_cel_rules() -> None:
    spec = crd_schema()["properties"]["spec"]["properties"]
    steps = spec["schedule"]["properties"]["steps"]

    assert [r["rule"] for r in spec["target"]["x-kubernetes-validations"]] == [
        "has(self.virtualService) != has(self.tcpRoute)"
    ]
    assert [r["rule"] for r in steps["x-kubernetes-validations"]] == [
        "self.isSorted() && self.all(x, self.exists_one(y, y == x))"
    ]
    assert steps["maxItems"] == 101, "the CEL rule's cost must be bounded for the API server to accept it"


class _Union(BaseModel):
    value: bool | list[int]


class _Node(BaseModel):
    children: list[_Node]


@pytest.mark.parametrize(
    ("model", "path"),
    [(_Union, ".value"), (_Node, ".children[]")],
    ids=["a union of two types", "a recursive model"],
)
def test_a_model_without_a_structural_equivalent_is_refused_with_its_path(model: type[BaseModel], path: str) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(path)}: "):
        structural_schema(model.model_json_schema())


# ----------------------------------------------------------------------------------------------- values


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_the_shipped_policies_are_valid_canarypolicy_objects(path: Path) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))

    assert errors_of(crd_schema(), doc) == []


def test_a_realistic_rollout_status_is_a_valid_status() -> None:
    status = realistic_status().model_dump(mode="json")

    assert status["original"]["destinations"][0]["destination"]["port"] == {"number": 9000}
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Succeeded", "Reconciling"]
    assert errors_of(crd_schema(), {**policy_doc(), "status": status}) == []


@pytest.mark.parametrize(
    ("verdict", "outcome"),
    [(Verdict.PASS, Phase.PROMOTED), (Verdict.FAIL, Phase.ROLLED_BACK)],
    ids=["promoted", "rolled back"],
)
def test_every_status_of_a_simulated_rollout_is_a_valid_status(verdict: Verdict, outcome: Phase) -> None:
    policy = CanaryPolicy.model_validate(yaml.safe_load(SEED_POLICY.read_text(encoding="utf-8")))
    sim = Sim(policy, seed_target())
    sim.verdict = verdict
    sim.run_until({outcome}, step=30)
    statuses = [with_conditions(d.status, sim.now, step_count=4).model_dump(mode="json") for d in sim.decisions]

    assert statuses[-1]["phase"] == outcome
    for status in statuses:
        assert errors_of(crd_schema()["properties"]["status"], status) == []


@pytest.mark.parametrize(("path", "value", "field"), INVALID_SPECS)
def test_an_invalid_spec_is_rejected(path: tuple[str, ...], value: Any, field: str) -> None:
    errors = errors_of(crd_schema(), set_at(policy_doc(), path, value))

    assert errors
    assert all(error.startswith(f"{field}: ") for error in errors), errors


def test_a_status_with_an_unknown_phase_is_rejected() -> None:
    status = realistic_status().model_dump(mode="json") | {"phase": "Exploded"}

    assert errors_of(crd_schema()["properties"]["status"], status) != []


def test_a_spec_without_a_schedule_is_rejected() -> None:
    doc = policy_doc()
    del doc["spec"]["schedule"]

    assert errors_of(crd_schema(), doc) == ["spec: 'schedule' is a required property"]


# ---------------------------------------------------------------------------- on an emulated API server


@dataclass
class Cluster:
    """The emulator with the generated CRD installed, and the official client's APIs on it."""

    emulator: KubeApiEmulator
    # The official client, typed Any: it is untyped, and types custom objects as ``object``.
    api_client: Any
    extensions: Any
    custom: Any
    core: Any


def close_api_client(api_client: client.ApiClient) -> None:
    """Close a client and its pooled sockets (ApiClient.close alone leaves them to the garbage collector)."""
    closable: Any = api_client
    closable.close()
    closable.rest_client.pool_manager.clear()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """An emulated API server on which ``helm/crds`` was installed through the API, as Helm installs it."""
    kubeapi = pytest.importorskip("canary_sandbox.kubeapi", reason="the Kubernetes API emulator is not there")
    with kubeapi.KubeApiEmulator() as emulator:
        api_client = client.ApiClient(emulator.client_configuration())
        try:
            crd = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
            extensions = client.ApiextensionsV1Api(api_client)
            extensions.create_custom_resource_definition(crd)
            yield Cluster(
                emulator, api_client, extensions, client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
            )
        finally:
            close_api_client(api_client)


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    """A fresh namespace for one test."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    cluster.core.create_namespace({"metadata": {"name": name}})
    return name


def seed_policy_object(namespace: str) -> dict[str, Any]:
    """``policies/tcp-echo.yaml`` placed in the test's namespace."""
    doc: dict[str, Any] = yaml.safe_load(SEED_POLICY.read_text(encoding="utf-8"))
    doc["metadata"]["namespace"] = namespace
    return doc


def create(cluster: Cluster, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = cluster.custom.create_namespaced_custom_object(*CUSTOM, namespace, PLURAL, body)
    return created


def test_the_emulator_serves_canarypolicies_once_the_crd_is_installed(cluster: Cluster) -> None:
    served = cluster.emulator.resource("cpol")

    assert (served.group_resource, served.kind, served.namespaced) == (CRD_NAME, "CanaryPolicy", True)


def test_the_installed_crd_reads_back_unchanged_through_the_official_clients_models(cluster: Cluster) -> None:
    read = cluster.api_client.sanitize_for_serialization(cluster.extensions.read_custom_resource_definition(CRD_NAME))

    assert read["spec"] == canarypolicy_crd()["spec"]
    assert {c["type"]: c["status"] for c in read["status"]["conditions"]}["Established"] == "True"


def test_the_seed_policy_is_created_and_reads_back_as_the_same_policy(cluster: Cluster, namespace: str) -> None:
    created = create(cluster, namespace, seed_policy_object(namespace))
    read = cluster.custom.get_namespaced_custom_object(*CUSTOM, namespace, PLURAL, "tcp-echo")

    assert read == created
    assert Spec.model_validate(read["spec"]) == CanaryPolicy.model_validate(seed_policy_object(namespace)).spec


def test_a_status_written_through_the_status_subresource_reads_back_unchanged(cluster: Cluster, namespace: str) -> None:
    created = create(cluster, namespace, seed_policy_object(namespace))
    status = realistic_status().model_dump(mode="json")

    cluster.custom.replace_namespaced_custom_object_status(
        *CUSTOM, namespace, PLURAL, "tcp-echo", {**created, "status": status}
    )
    read = cluster.custom.get_namespaced_custom_object(*CUSTOM, namespace, PLURAL, "tcp-echo")

    assert read["status"] == status
    assert RolloutStatus.model_validate(read["status"]) == realistic_status()
    assert read["spec"] == created["spec"]


@pytest.mark.parametrize(("path", "value", "field"), INVALID_SPECS)
def test_an_invalid_spec_is_refused_with_422(
    cluster: Cluster, namespace: str, path: tuple[str, ...], value: Any, field: str
) -> None:
    body = set_at(seed_policy_object(namespace), path, value)

    with pytest.raises(client.ApiException) as caught:
        create(cluster, namespace, body)

    assert caught.value.status == 422
    status = json.loads(caught.value.body or "{}")
    assert status["reason"] == "Invalid"
    assert [cause["field"] for cause in status["details"]["causes"]] == [field]


def test_an_unknown_spec_field_is_pruned_not_refused(cluster: Cluster, namespace: str) -> None:
    body = set_at(seed_policy_object(namespace), ("spec", "target", "weightHint"), 42)

    created = create(cluster, namespace, body)

    assert "weightHint" not in created["spec"]["target"]


def test_a_count_or_a_duration_becomes_int_or_string() -> None:
    from controller.core.crd import canarypolicy_crd  # noqa: PLC0415

    schema = canarypolicy_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    node = schema["properties"]["spec"]["properties"]["analysis"]["properties"]["maxInconclusive"]
    assert node["x-kubernetes-int-or-string"] is True
    assert "type" not in node
