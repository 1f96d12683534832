"""The committed OpenAPI document equals what the app generates; the route table in
docs/rest-api.md lists exactly the document's operations; cursor parsing (client input)
never crashes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fotakit.api.common import decode_cursor, encode_cursor, value_from_json, value_json
from fotakit.api.openapi import openapi_document, openapi_json
from fotakit.api.problems import ApiProblem
from fotakit.lwm2m.model import ResourceType

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_openapi_is_current() -> None:
    committed = (DOCS / "openapi.json").read_text()
    assert committed == openapi_json(), (
        "docs/openapi.json is stale: python -m fotakit.api.openapi > docs/openapi.json"
    )


def test_module_prints_the_document() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fotakit.api.openapi"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert json.loads(out) == openapi_document()


def test_rest_api_doc_lists_every_operation() -> None:
    doc = openapi_document()
    operations = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    text = (DOCS / "rest-api.md").read_text()
    rows = set(re.findall(r"^\| (GET|POST|PUT|DELETE) \| `([^`]+)` \|", text, re.M))
    assert rows == operations, {"missing": operations - rows, "extra": rows - operations}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            role = op["x-min-role"] or "none"
            assert re.search(
                rf"^\| {method.upper()} \| `{re.escape(path)}` \| {role} \|", text, re.M
            ), (method, path, role)


@given(st.lists(st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False))))
def test_cursor_round_trip(key: list[object]) -> None:
    assert decode_cursor(encode_cursor(key)) == key


@given(st.text(max_size=200))
def test_decode_cursor_refuses_garbage_precisely(text: str) -> None:
    try:
        decoded = decode_cursor(text)
    except ApiProblem as problem:
        assert problem.status == 400
    else:
        assert isinstance(decoded, list)


@pytest.mark.parametrize("bad", ["", "!!", "bnVsbA", "eyJhIjoxfQ", "W3RydWVd"])
def test_decode_cursor_examples(bad: str) -> None:
    with pytest.raises(ApiProblem):
        decode_cursor(bad)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


@given(_JSON, st.sampled_from([None, *ResourceType]))
def test_write_values_convert_or_refuse_precisely(value: object, rtype: object) -> None:
    try:
        converted = value_from_json(value, rtype)  # type: ignore[arg-type]
    except ApiProblem as problem:
        assert problem.status == 422 and problem.detail.startswith("value:")
    else:
        assert converted is not None


@given(st.binary(max_size=64))
def test_opaque_values_round_trip(data: bytes) -> None:
    assert value_from_json(value_json(data), ResourceType.OPAQUE) == data
