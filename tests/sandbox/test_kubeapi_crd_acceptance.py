"""A CRD is checked as apiextensions-apiserver checks it before accepting it: structural schema and CEL rules.

Each expected message is the real server's text: the field path built by ``ValidateStructural(fldPath.Child(
"openAPIV3Schema"), ...)`` under ``spec.versions[i].schema`` (``pkg/apis/apiextensions/validation/
validation.go``, ``validateCustomResourceDefinitionValidation``), the detail from
``pkg/apiserver/schema/validation.go`` (``validateStructuralInvariants``, ``validateNestedValueValidation``,
``validateStructuralMetadataInvariants``) or ``complete.go``, and the summary from ``NewInvalid``
(``CustomResourceDefinition.apiextensions.k8s.io "<name>" is invalid: <field>: <detail>``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from canary_sandbox.kubeapi import ApiError, KubeApiEmulator

ROOT = Path(__file__).resolve().parents[2]
CANARY_CRD = ROOT / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
ISTIO_DATA = (ROOT / "../shared/data/istio").resolve()
SHARED_CRDS = (
    "virtualservice-crd.yaml",
    "destinationrule-crd.yaml",
    "gateway.networking.k8s.io_tcproutes.yaml",
    "gateway.networking.k8s.io_tcproutes-v1.2.1.yaml",
)
NAME = "canarypolicies.canaryctl.dev"
SCHEMA = "spec.versions[0].schema.openAPIV3Schema"


def _crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CANARY_CRD.read_text(encoding="utf-8"))
    return loaded


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.fixture
def api() -> Iterator[KubeApiEmulator]:
    """A serving emulator with no CRDs: each test posts its own."""
    with KubeApiEmulator() as emulator:
        yield emulator


def _refusal(api: KubeApiEmulator, crd: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    with pytest.raises(ApiError) as caught:
        api.create(crd)
    assert caught.value.code == 422
    assert caught.value.reason == "Invalid"
    return caught.value.message, [(c.field or "", c.message) for c in caught.value.causes]


@pytest.mark.parametrize("file_name", ["helm/crds/canarypolicies.canaryctl.dev.yaml", *SHARED_CRDS])
def test_our_crd_and_the_shared_istio_and_gateway_crds_are_accepted(api: KubeApiEmulator, file_name: str) -> None:
    path = ROOT / file_name if file_name.startswith("helm/") else ISTIO_DATA / file_name
    for crd in (d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d):
        stored = api.create(crd)
        assert [c["type"] for c in stored["status"]["conditions"]] == ["NamesAccepted", "Established"]


def test_a_field_without_a_type_is_refused_over_http_with_the_real_body(api: KubeApiEmulator) -> None:
    crd = _crd()
    del _schema(crd)["properties"]["spec"]["type"]

    with httpx.Client(base_url=api.url, timeout=10) as http:
        answer = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)

    field = f"{SCHEMA}.properties[spec].type"
    detail = "Required value: must not be empty for specified object fields"
    assert answer.status_code == 422
    assert answer.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'CustomResourceDefinition.apiextensions.k8s.io "{NAME}" is invalid: {field}: {detail}',
        "reason": "Invalid",
        "details": {
            "name": NAME,
            "group": "apiextensions.k8s.io",
            "kind": "CustomResourceDefinition",
            "causes": [{"reason": "FieldValueRequired", "message": detail, "field": field}],
        },
        "code": 422,
    }
    assert http_get_status(api, "/apis/canaryctl.dev/v1alpha1") == 404


def http_get_status(api: KubeApiEmulator, path: str) -> int:
    """The HTTP status of a GET on the emulator."""
    return httpx.get(api.url + path, timeout=10).status_code


def test_an_array_without_items_is_refused(api: KubeApiEmulator) -> None:
    crd = _crd()
    steps = _schema(crd)["properties"]["spec"]["properties"]["schedule"]["properties"]["steps"]
    del steps["items"]

    _, causes = _refusal(api, crd)

    assert causes == [
        (
            f"{SCHEMA}.properties[spec].properties[schedule].properties[steps].items",
            "Required value: must be specified",
        )
    ]


def test_metadata_that_constrains_more_than_name_is_refused(api: KubeApiEmulator) -> None:
    crd = _crd()
    _schema(crd)["properties"]["metadata"] = {"type": "object", "properties": {"labels": {"type": "object"}}}

    message, causes = _refusal(api, crd)

    field = f"{SCHEMA}.properties[metadata]"
    detail = (
        "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
    )
    assert causes == [(field, detail)]
    assert message == f'CustomResourceDefinition.apiextensions.k8s.io "{NAME}" is invalid: {field}: {detail}'


def test_metadata_restricting_only_the_name_is_accepted(api: KubeApiEmulator) -> None:
    crd = _crd()
    _schema(crd)["properties"]["metadata"] = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 63}},
    }

    assert api.create(crd)["metadata"]["name"] == NAME


def test_a_type_inside_any_of_is_refused_unless_it_is_the_int_or_string_pattern(api: KubeApiEmulator) -> None:
    crd = _crd()
    spec = _schema(crd)["properties"]["spec"]
    spec["properties"]["port"] = {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    }
    spec["anyOf"] = [{"type": "object", "required": ["target"]}]

    _, causes = _refusal(api, crd)

    assert causes == [(f"{SCHEMA}.properties[spec].anyOf[0].type", "Forbidden: must be empty to be structural")]


def test_a_property_named_only_inside_a_root_value_validation_is_refused(api: KubeApiEmulator) -> None:
    # complete.go checks the root's junctors (validateStructuralCompleteness is called on the root only).
    # Without the status subresource, so that the root-field restriction (not emulated) does not apply.
    crd = _crd()
    del crd["spec"]["versions"][0]["subresources"]
    _schema(crd)["oneOf"] = [{"properties": {"nowhere": {"minLength": 1}}}]

    _, causes = _refusal(api, crd)

    assert causes == [
        (
            f"{SCHEMA}.properties[nowhere]",
            f"Required value: because it is defined in {SCHEMA}.oneOf[0].properties[nowhere]",
        )
    ]


def test_additional_properties_at_the_root_and_a_root_type_other_than_object_are_refused(
    api: KubeApiEmulator,
) -> None:
    crd = _crd()
    _schema(crd)["additionalProperties"] = {"type": "string"}
    _schema(crd)["type"] = "array"
    _schema(crd)["items"] = {"type": "string"}
    del crd["spec"]["versions"][0]["subresources"]

    message, causes = _refusal(api, crd)

    assert (f"{SCHEMA}.additionalProperties", "Forbidden: must not be used at the root") in causes
    assert (f"{SCHEMA}.type", 'Invalid value: "array": must be object at the root') in causes
    assert message.startswith(f'CustomResourceDefinition.apiextensions.k8s.io "{NAME}" is invalid: [')


def test_a_cel_rule_selecting_an_undeclared_field_fails_to_compile_with_cel_gos_text(api: KubeApiEmulator) -> None:
    crd = _crd()
    rules = _schema(crd)["properties"]["spec"]["properties"]["target"]["x-kubernetes-validations"]
    rules[0] = {"rule": "has(self.virtualService) != has(self.tcpRoutes)", "message": "one of them"}

    _, causes = _refusal(api, crd)

    # The message's shape is cel-go's Error.ToDisplayString under cel.Compile's "compilation failed: ".
    assert causes == [
        (
            f"{SCHEMA}.properties[spec].properties[target].x-kubernetes-validations[0].rule",
            'Invalid value: apiextensions.ValidationRule{Rule:"has(self.virtualService) != has(self.tcpRoutes)", '
            'Message:"one of them", MessageExpression:"", Reason:(*apiextensions.FieldValueErrorReason)(nil), '
            'FieldPath:"", OptionalOldSelf:(*bool)(nil)}: compilation failed: '
            "ERROR: <input>:1:37: undefined field 'tcpRoutes'\n"
            " | has(self.virtualService) != has(self.tcpRoutes)\n"
            " | " + "." * 36 + "^",
        )
    ]


def test_a_cel_rule_with_a_syntax_error_fails_to_compile(api: KubeApiEmulator) -> None:
    crd = _crd()
    rules = _schema(crd)["properties"]["spec"]["properties"]["target"]["x-kubernetes-validations"]
    rules[0] = {"rule": "has(self.virtualService) !=", "message": "broken"}

    _, causes = _refusal(api, crd)

    assert len(causes) == 1
    assert causes[0][0] == f"{SCHEMA}.properties[spec].properties[target].x-kubernetes-validations[0].rule"
    assert "compilation failed: ERROR: <input>:1:" in causes[0][1]
    assert "Syntax error: mismatched input" in causes[0][1]


def test_an_empty_rule_is_refused_before_any_compilation(api: KubeApiEmulator) -> None:
    crd = _crd()
    _schema(crd)["properties"]["spec"]["x-kubernetes-validations"] = [{"rule": "  "}]

    _, causes = _refusal(api, crd)

    assert causes == [
        (f"{SCHEMA}.properties[spec].x-kubernetes-validations[0].rule", "Required value: rule is not specified")
    ]


def test_unique_items_and_a_false_preserve_unknown_fields_are_refused(api: KubeApiEmulator) -> None:
    crd = _crd()
    spec = _schema(crd)["properties"]["spec"]
    spec["properties"]["schedule"]["properties"]["steps"]["uniqueItems"] = True
    spec["x-kubernetes-preserve-unknown-fields"] = False

    _, causes = _refusal(api, crd)

    assert sorted(causes) == [
        (
            f"{SCHEMA}.properties[spec].properties[schedule].properties[steps].uniqueItems",
            "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ),
        (
            f"{SCHEMA}.properties[spec].x-kubernetes-preserve-unknown-fields",
            "Invalid value: false: must be true or undefined",
        ),
    ]


def test_a_version_that_is_not_served_is_checked_too(api: KubeApiEmulator) -> None:
    crd = _crd()
    old = copy.deepcopy(crd["spec"]["versions"][0])
    old.update(name="v1alpha0", served=False, storage=False)
    del old["schema"]["openAPIV3Schema"]["properties"]["status"]["type"]
    crd["spec"]["versions"].append(old)

    _, causes = _refusal(api, crd)

    assert causes == [
        (
            "spec.versions[1].schema.openAPIV3Schema.properties[status].type",
            "Required value: must not be empty for specified object fields",
        )
    ]


def test_an_update_to_a_broken_schema_is_refused_and_the_served_resource_stays(api: KubeApiEmulator) -> None:
    stored = api.create(_crd())
    broken = copy.deepcopy(stored)
    del _schema(broken)["properties"]["spec"]["type"]

    with pytest.raises(ApiError) as caught:
        api.put(broken)

    assert caught.value.code == 422
    assert http_get_status(api, "/apis/canaryctl.dev/v1alpha1") == 200
