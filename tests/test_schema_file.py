"""The published JSON Schema is generated from the models and agrees with them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from controller.core.policy import policy_json_schema
from tests.support.paths import REPO
from tests.support.policies import policy_doc

SCHEMA_FILE = REPO / "policies" / "canarypolicy.schema.json"


def test_committed_schema_is_up_to_date() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == policy_json_schema(), "policies/canarypolicy.schema.json is stale: run `make schema`"


@pytest.mark.parametrize("path", sorted((REPO / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_policies_satisfy_the_schema(path: Path) -> None:
    jsonschema.Draft202012Validator(policy_json_schema()).validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "schedule", "steps"), [0, 200]),
        (("spec", "schedule", "stepDuration"), "2 minutes"),
        (("metadata", "name"), "Bad_Name"),
        (("spec", "target", "route", "protocol"), "udp"),
        (("spec", "target", "extra"), 1),
    ],
)
def test_schema_rejects_what_lint_rejects(path: tuple[str, ...], value: object) -> None:
    doc = policy_doc()
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(policy_json_schema()).validate(doc)
