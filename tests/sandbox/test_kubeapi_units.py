"""The emulator's building blocks without HTTP: schema dialect, patches, selectors, version priority."""

from __future__ import annotations

from typing import Any

import pytest

from canary_sandbox.kubeapi import ApiError
from canary_sandbox.kubeapi.patch import MalformedPatchError, PatchError, json_patch, merge_patch
from canary_sandbox.kubeapi.resources import Registry, builtin_resources, version_priority
from canary_sandbox.kubeapi.schema import StructuralSchema
from canary_sandbox.kubeapi.selectors import SelectorError, parse_field_selector, parse_label_selector
from canary_sandbox.kubeapi.server import route


def schema_of(spec_properties: dict[str, Any], **spec: Any) -> StructuralSchema:
    return StructuralSchema(
        {"type": "object", "properties": {"spec": {"type": "object", "properties": spec_properties, **spec}}}
    )


def fields(schema: StructuralSchema, spec: dict[str, Any]) -> list[str | None]:
    return [cause.field for cause in schema.validate({"spec": spec})]


def test_nullable_admits_null_and_other_fields_do_not() -> None:
    schema = schema_of(
        {"a": {"type": "integer", "nullable": True}, "b": {"type": "array", "items": {"type": "integer"}}}
    )

    assert fields(schema, {"a": None}) == []
    assert fields(schema, {"b": [None]}) == ["spec.b[0]"]


def test_null_in_a_non_nullable_property_is_dropped_or_defaulted() -> None:
    schema = schema_of({"a": {"type": "integer"}, "b": {"type": "integer", "default": 7}})
    obj: dict[str, Any] = {"spec": {"a": None, "b": None}}

    schema.apply_defaults(obj)

    assert obj == {"spec": {"b": 7}}


def test_int_or_string_admits_both_and_nothing_else() -> None:
    schema = schema_of(
        {"port": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}}
    )

    assert fields(schema, {"port": 80}) == []
    assert fields(schema, {"port": "http"}) == []
    assert fields(schema, {"port": 1.5}) == ["spec.port"]


@pytest.mark.parametrize(("fmt", "value"), [("int32", 2**31), ("int64", 2**63), ("int32", -(2**40))])
def test_integer_formats_do_not_bound_the_value_as_formats_apply_to_strings_only(fmt: str, value: int) -> None:
    schema = schema_of({"n": {"type": "integer", "format": fmt}})

    assert fields(schema, {"n": value}) == []


def test_a_date_time_format_is_checked_on_strings() -> None:
    schema = schema_of({"t": {"type": "string", "format": "date-time"}})

    assert fields(schema, {"t": "yesterday"}) == ["spec.t"]
    assert fields(schema, {"t": "2026-12-03T18:59:26Z"}) == []


def test_a_float_is_not_an_integer() -> None:
    assert fields(schema_of({"n": {"type": "integer"}}), {"n": 1.0}) == ["spec.n"]


def test_preserve_unknown_fields_stops_pruning_below_it() -> None:
    schema = StructuralSchema(
        {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {"known": {"type": "string"}}},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    )
    obj: dict[str, Any] = {"spec": {"known": "a", "extra": 1}, "status": {"anything": {"deep": 1}}, "top": 1}

    pruned = schema.prune(obj)

    assert pruned == ["spec.extra", "top"]
    assert obj == {"spec": {"known": "a"}, "status": {"anything": {"deep": 1}}}


def test_list_map_keys_reject_duplicates() -> None:
    schema = schema_of(
        {
            "items": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            }
        }
    )

    assert fields(schema, {"items": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}) == ["spec.items[2]"]


def test_merge_patch_deletes_nulls_and_replaces_lists() -> None:
    target = {"a": {"b": 1, "c": 2}, "list": [1, 2, 3]}

    patched = merge_patch(target, {"a": {"b": None, "d": 4}, "list": [9]})

    assert patched == {"a": {"c": 2, "d": 4}, "list": [9]}
    assert target == {"a": {"b": 1, "c": 2}, "list": [1, 2, 3]}


def test_json_patch_supports_every_operation() -> None:
    doc = {"a": [1, 2], "b": {"c": "x"}}
    operations = [
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "add", "path": "/a/0", "value": 0},
        {"op": "remove", "path": "/a/1"},
        {"op": "replace", "path": "/b/c", "value": "y"},
        {"op": "copy", "from": "/b/c", "path": "/d"},
        {"op": "move", "from": "/d", "path": "/e~1f"},
        {"op": "test", "path": "/e~1f", "value": "y"},
    ]

    assert json_patch(doc, operations) == {"a": [0, 2, 3], "b": {"c": "y"}, "e/f": "y"}


def test_a_json_patch_test_does_not_take_true_for_one() -> None:
    with pytest.raises(PatchError, match="testing value /n failed"):
        json_patch({"n": 1}, [{"op": "test", "path": "/n", "value": True}])


def test_a_json_patch_is_all_or_nothing() -> None:
    doc = {"a": 1}

    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "replace", "path": "/a", "value": 2}, {"op": "remove", "path": "/missing"}])

    assert doc == {"a": 1}


def test_a_json_patch_that_is_not_a_list_is_malformed() -> None:
    with pytest.raises(MalformedPatchError):
        json_patch({}, {"op": "add"})


def test_label_selectors_parse_like_the_api_server() -> None:
    canary = {"metadata": {"labels": {"track": "canary", "app": "echo"}}}
    bare: dict[str, Any] = {"metadata": {}}

    assert parse_label_selector("track notin (stable),app")(canary)
    assert parse_label_selector("track!=stable")(bare)
    assert not parse_label_selector("app")(bare)
    with pytest.raises(SelectorError):
        parse_label_selector("track=(canary")


def test_field_selectors_support_name_and_namespace_only() -> None:
    obj = {"metadata": {"name": "a", "namespace": "ns"}}

    assert parse_field_selector("metadata.name=a,metadata.namespace!=other")(obj)
    with pytest.raises(SelectorError, match=r"field label not supported: spec\.x"):
        parse_field_selector("spec.x=1")


def test_versions_sort_by_kubernetes_priority() -> None:
    versions = ["v1alpha3", "v1beta1", "v2", "v1", "v10beta1", "foo"]

    assert sorted(versions, key=version_priority) == ["v2", "v1", "v10beta1", "v1beta1", "v1alpha3", "foo"]


def test_resource_names_resolve_like_kubectl() -> None:
    registry = Registry(builtin_resources())

    assert registry.resolve("cm").plural == "configmaps"
    assert registry.resolve("Deployment").group == "apps"
    assert registry.resolve("events").group == ""
    assert registry.resolve("events.events.k8s.io").group == "events.k8s.io"
    with pytest.raises(KeyError):
        registry.resolve("widgets")


@pytest.mark.parametrize(("query", "verb"), [({"watch": "true"}, "WATCH"), ({"watch": "1"}, "WATCH"), ({}, "LIST")])
def test_a_collection_get_is_a_watch_with_watch_true_or_1(query: dict[str, str], verb: str) -> None:
    routed = route("GET", "/api/v1/namespaces/demo/configmaps", query, Registry(builtin_resources()))

    assert (routed.info.verb, routed.info.namespace, routed.info.plural) == (verb, "demo", "configmaps")


def test_urls_route_to_objects_and_subresources_like_the_api_server() -> None:
    registry = Registry(builtin_resources())

    namespace_status = route("PUT", "/api/v1/namespaces/demo/status", {}, registry).info
    deployment = route("PATCH", "/apis/apps/v1/namespaces/demo/deployments/web/status", {}, registry).info

    assert (namespace_status.plural, namespace_status.name, namespace_status.subresource) == (
        "namespaces",
        "demo",
        "status",
    )
    assert (deployment.namespace, deployment.name, deployment.subresource) == ("demo", "web", "status")
    with pytest.raises(ApiError) as unknown:
        route("GET", "/apis/apps/v2/deployments", {}, registry)
    with pytest.raises(ApiError) as no_collection_delete:
        route("DELETE", "/api/v1/namespaces/demo/configmaps", {}, registry)
    assert (unknown.value.code, no_collection_delete.value.code) == (404, 405)
