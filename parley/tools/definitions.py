"""A tool: a function of the site's own code that the assistant may ask to run, with the
JSON Schema of its parameters derived from their type hints (docs/tools.md)."""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

import pydantic

from ..exceptions import ParleyError

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, _User

__all__ = ["Tool", "ToolArgumentsError", "ToolContext", "ToolError", "tool"]

# The names OpenAI's API accepts for a function (other servers accept at least these).
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# The longest validation message the model is sent about its arguments.
MAX_ERROR_CHARS = 500

F = TypeVar("F", bound=Callable[..., Any])


class ToolError(ParleyError):
    """Raised by a tool to tell the model why it could not do what was asked ("no order
    numbered 12"): the message goes to the model as the call's result, and no traceback to
    the log. Any other exception is logged, and the model is told only that the tool
    failed."""


class ToolArgumentsError(ParleyError):
    """The arguments the model wrote do not fit the tool's parameters; the message says
    how, for the model to correct them."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who a tool runs for, given to a tool whose function has a parameter annotated
    ``ToolContext`` (it is not one of the parameters the model fills in).

    ``user`` is the member whose question the answer replies to (an ``AnonymousUser`` for
    a visitor), ``room`` the room's public id, ``answer`` the id of the answer calling.
    """

    user: _User | AnonymousUser
    room: str
    answer: int


@dataclass(frozen=True, eq=False)
class Tool:
    """A function the assistant may call; made by :func:`tool`.

    ``permissions`` are the Django permissions (``"shop.view_order"``) the asker must hold,
    ``check`` an object-level test, ``check(user, arguments) -> bool``, called with the
    validated arguments; both are applied when the tool is called, not when it is
    offered. ``confirm`` marks a tool that changes something: a call waits for approval.
    ``personal`` marks a tool whose result depends on who runs it ("my orders"): it is
    refused in a shared room, where every member would read it (docs/tools.md).
    """

    name: str
    description: str
    function: Callable[..., Any]
    arguments: type[pydantic.BaseModel]
    permissions: tuple[str, ...] = ()
    check: Callable[[Any, dict[str, Any]], bool] | None = None
    confirm: bool = False
    personal: bool = False
    # The function's parameter that takes the ToolContext, if it has one.
    context_parameter: str | None = None
    parameters: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        object.__setattr__(self, "parameters", schema)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    def parse(self, text: str) -> dict[str, Any]:
        """The arguments in ``text`` (the JSON the model wrote), validated against the
        parameters and converted to their types. Raises :class:`ToolArgumentsError` with
        what is wrong, never anything else."""
        try:
            parsed = self.arguments.model_validate_json(text.strip() or "{}")
        except pydantic.ValidationError as exc:
            raise ToolArgumentsError(_validation_message(exc)) from None
        except (ValueError, RecursionError):  # pydantic rejects some input before validating
            raise ToolArgumentsError("The arguments are not a JSON object.") from None
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The function itself: a tool stays callable by the site's own code."""
        return self.function(*args, **kwargs)


def _validation_message(error: pydantic.ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        problems.append(f"{where}: {item['msg']}")
    message = "Invalid arguments: " + "; ".join(problems)
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    return message


@overload
def tool(function: F, /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    permissions: str | Iterable[str] = (),
    check: Callable[[Any, dict[str, Any]], bool] | None = None,
    confirm: bool = False,
    personal: bool = False,
) -> Callable[[F], Tool]: ...


def tool(
    function: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    permissions: str | Iterable[str] = (),
    check: Callable[[Any, dict[str, Any]], bool] | None = None,
    confirm: bool = False,
    personal: bool = False,
) -> Tool | Callable[[F], Tool]:
    """Make ``function`` (sync or async) a :class:`Tool`: as ``@tool`` or
    ``@tool(permissions="shop.view_order", confirm=True)``.

    The name is the function's unless given; the description the first paragraph of its
    docstring unless given. Every parameter the model fills in needs a type hint, which
    pydantic turns into the JSON Schema the model is shown and validates the model's
    arguments against; ``Annotated[int, pydantic.Field(description=...)]`` describes one.
    A parameter annotated :class:`ToolContext` gets who the tool runs for instead.
    Raises ``TypeError`` when the function cannot be a tool.
    """

    def make(function: F) -> Tool:
        return _make_tool(
            function,
            name=name or function.__name__,
            description=description,
            permissions=(permissions,) if isinstance(permissions, str) else tuple(permissions),
            check=check,
            confirm=confirm,
            personal=personal,
        )

    return make if function is None else make(function)


def _make_tool(
    function: Callable[..., Any],
    *,
    name: str,
    description: str | None,
    permissions: tuple[str, ...],
    check: Callable[[Any, dict[str, Any]], bool] | None,
    confirm: bool,
    personal: bool,
) -> Tool:
    if not _NAME.match(name):
        raise TypeError(f"Tool name {name!r}: use 1 to 64 letters, digits, '_' or '-'.")
    for permission in permissions:
        if not isinstance(permission, str) or permission.count(".") != 1:
            raise TypeError(
                f"Tool {name!r}: permissions are 'app_label.codename' strings, "
                f"not {permission!r}; an object-level test goes in check="
            )
    doc = inspect.getdoc(function) or ""
    text = description if description is not None else doc.split("\n\n")[0]
    text = " ".join(text.split())
    if not text:
        raise TypeError(f"Tool {name!r} needs a description (or a docstring): the model reads it.")
    fields, context = _fields(function, name)
    arguments = pydantic.create_model(
        f"{name}_arguments",
        __config__=pydantic.ConfigDict(extra="forbid"),
        **fields,
    )
    return Tool(
        name=name,
        description=text,
        function=function,
        arguments=arguments,
        permissions=permissions,
        check=check,
        confirm=confirm,
        personal=personal,
        context_parameter=context,
    )


def _fields(function: Callable[..., Any], name: str) -> tuple[dict[str, Any], str | None]:
    """The pydantic fields of ``function``'s parameters, and the name of the one that takes
    the :class:`ToolContext`, if any."""
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception as exc:  # a hint naming what the function's module cannot resolve
        raise TypeError(f"Tool {name!r}: its type hints cannot be resolved ({exc}).") from exc
    fields: dict[str, Any] = {}
    context = None
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"Tool {name!r}: *args and **kwargs cannot be described to a model.")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise TypeError(f"Tool {name!r}: parameter {parameter.name!r} is positional-only.")
        hint = hints.get(parameter.name)
        if hint is ToolContext:
            context = parameter.name
            continue
        if hint is None:
            raise TypeError(f"Tool {name!r}: parameter {parameter.name!r} needs a type hint.")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hint, default)
    return fields, context


def result_text(value: object) -> str:
    """What the model is sent for a tool's return value: a string as it is, anything else
    as JSON (dates, decimals and other objects by their ``str``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    return json.dumps(value, default=str, ensure_ascii=False)
