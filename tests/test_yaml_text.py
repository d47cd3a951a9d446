"""The fast block-YAML emitter of plan output reads back as exactly the data it was given."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.yaml_text import block_yaml
from tests.support.paths import SHARED_ISTIO

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.sampled_from(["on", "Off", "y", "N", "null", "~", "1e3", "0x1F", "2024-05-01", "*", "- a", "a: b", "#x", ""]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(), children, max_size=4)),
    max_leaves=30,
)


@settings(max_examples=400)
@given(st.one_of(st.dictionaries(st.text(), JSON_VALUES, min_size=1), st.lists(JSON_VALUES, min_size=1)))
def test_reads_back_as_the_same_data(value: Any) -> None:
    text = block_yaml(value)
    assert text is not None
    assert yaml.safe_load(text) == value


def test_every_real_istio_and_gateway_api_document_reads_back_unchanged() -> None:
    count = 0
    for path in sorted(SHARED_ISTIO.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                assert yaml.safe_load(block_yaml(document) or "") == document, path.name
                count += 1
    assert count > 20


def test_control_characters_and_line_breaks_are_escaped_never_raw() -> None:
    text = block_yaml({"name": "a\nb\x1b[31m\u2028\x85\u202e"})
    assert text == 'name: "a\\x0ab\\x1b[31m\\u2028\\x85\\u202e"\n'


def test_nan_and_infinities_read_back() -> None:
    loaded = yaml.safe_load(block_yaml({"a": [math.nan, math.inf, -math.inf, 1e-05]}) or "")
    assert math.isnan(loaded["a"][0])
    assert loaded["a"][1:] == [math.inf, -math.inf, 1e-05]


@pytest.mark.parametrize(
    "value",
    [{"at": datetime.date(2024, 5, 1)}, {"blob": b"\x00"}, {1: "a"}, {"s": {1, 2}}, "scalar", {}, []],
)
def test_data_outside_json_is_left_to_pyyaml(value: Any) -> None:
    assert block_yaml(value) is None
