"""The offline default: answers without a language model, and says so."""

from __future__ import annotations

import ast
import asyncio
import operator
import re
from collections.abc import AsyncIterator
from typing import Any

from .base import AssistantBackend, AssistantRequest
from .scripted import split_words

INTRO = (
    "I am Parley's built-in offline assistant: no language model is connected, so I answer "
    "only a few things myself."
)

HELP = """To connect a real model, set these environment variables and restart the server:

- `PARLEY_BACKEND=openai`
- `OPENAI_BASE_URL`: any OpenAI-compatible server, for example `http://127.0.0.1:11434/v1` \
for Ollama, `http://127.0.0.1:8080/v1` for llama.cpp's server, `http://127.0.0.1:1234/v1` \
for LM Studio, or leave it unset for OpenAI itself
- `OPENAI_API_KEY`: the key (any text for local servers)
- `PARLEY_MODEL`: the model name, for example `gpt-4o-mini` or `llama3.2`

docs/configuration.md lists every setting."""

_BINOPS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_ARITHMETIC = re.compile(r"^[\d\s.+\-*/%()]+$")


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _BINOPS[type(node.op)](left, right)
    raise ValueError("not arithmetic")


def calculate(expression: str) -> str | None:
    """Evaluate plain arithmetic safely (no names, no calls); ``None`` if it is not that."""
    expression = expression.strip().rstrip("=?").strip()
    if not expression or len(expression) > 200 or not _ARITHMETIC.match(expression):
        return None
    if not any(ch.isdigit() for ch in expression):
        return None
    try:
        value = _evaluate(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{expression} = {value}"


def compose_answer(request: AssistantRequest) -> str:
    """The offline answer to the last question of ``request``."""
    question = request.question.strip()
    lowered = question.lower()
    result = calculate(question.split(":", 1)[-1]) if question else None
    if result:
        return f"{result}\n\n_({INTRO})_"
    if re.search(r"\b(hello|hi|hey|good (morning|afternoon|evening))\b", lowered):
        name = f", {request.user}" if request.user else ""
        return f"Hello{name}! {INTRO}\n\n{HELP}"
    earlier = sum(1 for turn in request.turns if turn.role == "user") - 1
    words = len(question.split())
    summary = (
        f"You asked: “{question[:200]}{'…' if len(question) > 200 else ''}” "
        f"({words} word{'s' if words != 1 else ''}"
        + (
            f"; {earlier} earlier question{'s' if earlier != 1 else ''} in this room"
            if earlier > 0
            else ""
        )
        + ")."
    )
    return (
        f"{INTRO} I can do arithmetic (try `2 * (3 + 4)`), and I can tell you how to connect "
        f"a model.\n\n{summary}\n\n{HELP}"
    )


class OfflineBackend(AssistantBackend):
    """Needs no network and no model. Streams word by word, ``delay`` seconds apart, so the
    streaming path of the UI is exercised even without a model."""

    def __init__(self, *, delay: float = 0.02, **options: Any) -> None:
        super().__init__(**options)
        self.delay = delay

    async def stream(self, request: AssistantRequest) -> AsyncIterator[str]:
        for piece in split_words(compose_answer(request)):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield piece
