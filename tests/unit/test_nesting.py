"""Depth limits on what clients and marketers send: measured without recursion, parsed to a 4xx."""
from __future__ import annotations

import json

import pytest

from chalicelib.domain.definition_errors import DefinitionError
from chalicelib.domain.nesting import TooDeeplyNested, load_json, nesting_depth
from chalicelib.services.definitions import decode_document


def test_depth_counts_lists_and_mappings_and_stops_past_the_limit():
    assert nesting_depth(1, 5) == 0
    assert nesting_depth({"a": [1, {"b": 2}]}, 5) == 3
    deep = current = []
    for _ in range(100_000):  # far past the recursion limit: measured iteratively
        current.append([])
        current = current[0]
    assert nesting_depth(deep, 64) == 65


def test_load_json_refuses_a_depth_bomb_as_bad_input():
    with pytest.raises(TooDeeplyNested, match="nested more than 64 levels"):
        load_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TooDeeplyNested):
        load_json("[" * 65 + "]" * 65)  # parses, but deeper than allowed
    assert load_json("[" * 64 + "]" * 64) is not None
    with pytest.raises(ValueError):
        load_json("{")
    assert issubclass(TooDeeplyNested, ValueError)


@pytest.mark.parametrize("text", [
    "x: " + "[" * 5000 + "]" * 5000,
    json.dumps({"x": 1}).replace("1", "{\"a\": " * 900 + "1" + "}" * 900),
    "conditions:\n" + "".join(" " * (2 * i + 2) + "not:\n" for i in range(400)) + " " * 802 + "trait: plan\n",
])
def test_decode_document_names_the_depth_instead_of_crashing(text):
    with pytest.raises(DefinitionError, match="nested more than 64 levels"):
        decode_document(text)
