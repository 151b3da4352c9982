"""A function as a tool: its schema from its type hints, and the model's arguments
checked against it."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.tools import ToolContext, tool
from parley.tools.definitions import ToolArgumentsError, result_text
from tests.tools import sample


def test_the_schema_comes_from_the_type_hints_and_the_description_from_the_docstring():
    assert sample.order_status.name == "order_status"
    assert sample.order_status.description == (
        "Look up the status of one of the shop's orders by its number."
    )
    assert sample.order_status.parameters == {
        "type": "object",
        "properties": {
            "number": {
                "type": "integer",
                "minimum": 1,
                "description": "The order's number.",
                "title": "Number",
            },
            "detail": {
                "enum": ["short", "full"],
                "type": "string",
                "default": "short",
                "title": "Detail",
            },
        },
        "required": ["number"],
        "additionalProperties": False,
    }


def test_the_context_parameter_is_not_shown_to_the_model():
    assert sample.audit_size.context_parameter == "context"
    assert sample.audit_size.parameters["properties"] == {}
    assert sample.order_status.context_parameter is None


def test_name_description_and_rights_can_be_given():
    @tool(name="lookup", description="Find a thing.", permissions=["a.b", "c.d"], confirm=True)
    async def find(context: ToolContext, what: str) -> str:
        return what

    assert (find.name, find.description, find.permissions) == (
        "lookup",
        "Find a thing.",
        ("a.b", "c.d"),
    )
    assert find.confirm and find.is_async and not find.personal
    assert find.parameters["required"] == ["what"]


def test_a_tool_stays_callable_as_the_function():
    assert sample.order_status(number=3) == {"number": 3, "status": "shipped"}


@pytest.mark.parametrize(
    ("text", "arguments"),
    [
        ('{"number": 12}', {"number": 12, "detail": "short"}),
        ('{"number": "12", "detail": "full"}', {"number": 12, "detail": "full"}),
        ('  {"number": 1}\n', {"number": 1, "detail": "short"}),
    ],
)
def test_arguments_that_fit_are_parsed_to_their_types(text, arguments):
    assert sample.order_status.parse(text) == arguments


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"number": 0}', "number: Input should be greater than or equal to 1"),
        ('{"number": "twelve"}', "number: Input should be a valid integer"),
        ('{"number": 1, "detail": "all"}', "detail: Input should be 'short' or 'full'"),
        ('{"number": 1, "sudo": true}', "sudo: Extra inputs are not permitted"),
        ("{}", "number: Field required"),
        ("", "number: Field required"),
        ("[1]", "Input should be an object"),
        ('{"number": 1', "Invalid JSON"),
        ("null", "Input should be an object"),
    ],
)
def test_arguments_that_do_not_fit_say_what_is_wrong(text, says):
    with pytest.raises(ToolArgumentsError) as raised:
        sample.order_status.parse(text)
    assert str(raised.value).startswith("Invalid arguments: ")
    assert says in str(raised.value)


def test_a_long_validation_message_is_cut():
    many = json.dumps({f"field{i}": i for i in range(200)} | {"number": 1})
    with pytest.raises(ToolArgumentsError) as raised:
        sample.order_status.parse(many)
    assert len(str(raised.value)) <= 500


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.text(max_size=200) | JSON.map(json.dumps))
def test_whatever_the_model_writes_is_parsed_or_refused_never_raised(text):
    try:
        parsed = sample.order_status.parse(text)
    except ToolArgumentsError:
        return
    assert isinstance(parsed["number"], int) and parsed["number"] >= 1
    assert parsed["detail"] in ("short", "full")


@given(st.integers(min_value=1, max_value=10**12), st.sampled_from(["short", "full"]))
def test_every_value_the_schema_allows_is_accepted(number, detail):
    text = json.dumps({"number": number, "detail": detail})
    assert sample.order_status.parse(text) == {"number": number, "detail": detail}


def _no_hint(x):  # type: ignore[no-untyped-def]
    """Has a parameter without a type hint."""


def _star(*args: int) -> None:
    """Takes *args."""


def _undescribed(x: int) -> None:
    pass


def _positional(x: int, /) -> None:
    """Takes a positional-only parameter."""


@pytest.mark.parametrize(
    ("function", "options", "says"),
    [
        (_no_hint, {}, "parameter 'x' needs a type hint"),
        (_star, {}, "*args and **kwargs"),
        (_undescribed, {}, "needs a description"),
        (_positional, {}, "positional-only"),
        (_star, {"name": "has space"}, "use 1 to 64 letters"),
        (_undescribed, {"description": "ok", "permissions": "view_order"}, "'app_label.codename'"),
    ],
)
def test_what_cannot_be_a_tool_is_refused_when_it_is_made(function, options, says):
    with pytest.raises(TypeError) as raised:
        tool(**options)(function)
    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain words", "plain words"),
        (
            {"when": datetime.date(2026, 12, 2), "n": 1},
            '{"when": "2026-12-02", "n": 1}',
        ),
        (["ü"], '["ü"]'),
        (None, "null"),
    ],
)
def test_a_result_is_sent_as_text_or_json(value: Any, text: str):
    assert result_text(value) == text
