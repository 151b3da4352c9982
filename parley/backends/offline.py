"""The offline default: answers from the site's own documents without a language model.

It quotes the sentences of the retrieved passages that best answer the question, with
links to their sources; lists the sections that only look related as links, when none is
sure; and says plainly that it does not know when no passage matches. It also does
arithmetic, answers greetings and thanks, says what the site is (``KNOWLEDGE["ABOUT"]``),
and explains how to connect a model.
"""

from __future__ import annotations

import ast
import asyncio
import operator
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..knowledge.excerpts import excerpts_for, excerpts_lead
from ..knowledge.text import STOPWORDS, text_terms
from .base import (
    About,
    AssistantBackend,
    AssistantRequest,
    BackendEvent,
    Finish,
    Passage,
    TextDelta,
)
from .prompt import markdown_link, passages_sources, sources_markdown, withheld_markdown
from .scripted import split_words

INTRO = (
    "I am Parley's built-in offline assistant: no language model is connected, so I answer "
    "from this site's documents, quoting them with links to the sources. I call no tools: "
    "I cannot look anything up or do anything on the site for you."
)

UNKNOWN = (
    "I don't know: I found nothing about that in this site's documents, and without a "
    "language model I don't guess. Try asking in other words."
)

HELP = """To connect a real model, set these environment variables and restart the server:

- `PARLEY_BACKEND=openai`
- `OPENAI_BASE_URL`: any OpenAI-compatible server, for example `http://127.0.0.1:11434/v1` \
for Ollama, `http://127.0.0.1:8080/v1` for llama.cpp's server, `http://127.0.0.1:1234/v1` \
for LM Studio, or leave it unset for OpenAI itself
- `OPENAI_API_KEY`: the key (any text for local servers)
- `PARLEY_MODEL`: the model name, for example `gpt-4o-mini` or `llama3.2`

docs/configuration.md lists every setting."""

MAX_QUOTED = 2
# Below this match (Passage.match) a passage is not quoted as an answer: the best one is
# offered with the others as related instead, and a second one is not quoted.
SURE_MATCH = 0.55
MAX_RELATED = 3

_GREETING = re.compile(
    r"^(hello|hi|hiya|hey|howdy|greetings|good (morning|afternoon|evening|day)|yo)\b"
)
_THANKS = re.compile(r"^(thanks|thank you|thx|ty|cheers|much appreciated|great,? thanks)\b")
# Words that, with stop words, make a message small talk rather than a question.
_SMALL_TALK_TEXT = """
    hello hi hiya hey howdy greetings good morning afternoon evening day yo there all
    everyone everybody folks parley bot assistant thanks thank thx ty cheers much
    appreciated great lot helped helpful help works worked perfect awesome nice cool ok
    okay got it again really very so
"""
_SMALL_TALK = frozenset(_SMALL_TALK_TEXT.split())
# Whole messages only: "what can I do when the socket closes with 4429?" is a question.
_ABOUT = re.compile(
    r"^(?:(what|who)('s| is| are)? (this|it|parley|you|this (site|thing|chat|bot|app|assistant))"
    r"( (about|for))?"
    r"|what (can|could|do) (you|i) (do|ask( you)?|help( me)? with|know( about)?)( here)?"
    r"|what are you (able to help|good) (with|for|at)"
    r"|how (can|could|do) you help( me)?"
    r"|(tell me )?about (you|yourself|parley|this (site|assistant))"
    r"|help|\?)\W*$"
)
_ABOUT_MODELS = re.compile(r"\b(models?|llms?|openai|gpt|language model|api key)\b")

_BINOPS: dict[type[ast.operator], Callable[[float, float], float]] = {
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


def knowledge_answer(request: AssistantRequest) -> str | None:
    """The answer quoted from ``request.passages``, ending with their sources; ``None``
    when no passage has text to quote."""
    passages = list(request.passages)
    if not passages:
        return None
    quoted: list[tuple[Passage, str]] = []
    covered: set[str] = set()
    wanted = set(text_terms(request.question))
    for passage, excerpt in zip(
        passages,
        excerpts_for(request.question, [p.text for p in passages], [p.focus for p in passages]),
        strict=True,
    ):
        # Another passage is quoted only if it scores close to the best one and holds
        # words of the question that the quotes so far (and their titles) do not.
        terms = set(text_terms(excerpt)) & wanted
        if excerpt and (not quoted or (passage.match >= SURE_MATCH and terms - covered)):
            quoted.append((passage, excerpt))
            covered |= terms | set(text_terms(passage.title))
        if len(quoted) >= MAX_QUOTED:
            break
    if not quoted:
        return None
    used = [passage for passage, _ in quoted]
    numbers = {(s.title, s.url): s.number for s in passages_sources(used)}
    blocks = [
        f"From *{passage.title}* [{numbers[(passage.title, passage.url)]}]:\n\n{excerpt}"
        for passage, excerpt in quoted
    ]
    text = "\n\n".join(blocks)
    return text + sources_markdown(used, answer=text)


def compose_answer(request: AssistantRequest) -> str:
    """The offline answer to the last question of ``request`` (see :func:`reply`), ending
    with the withheld note when passages were withheld."""
    return reply(request)[1] + withheld_markdown(request)


def reply_kind(request: AssistantRequest) -> str:
    """What the offline assistant does with ``request``: :func:`reply`'s kind."""
    return reply(request)[0]


def reply(request: AssistantRequest) -> tuple[str, str]:
    """The kind of the offline answer, and its text. The kinds, in the order they are
    tried: ``compute`` (arithmetic), ``greet`` and ``thank`` (small talk alone, before any
    passage: "hello" is not a question about the protocol's hello frame), ``about`` (what
    is this, what can you do: ``request.about``, the site's introduction), ``quote`` (the
    passages that surely answer it), ``related`` (sections that look related, when none is
    sure), ``refuse`` (plainly: it does not know)."""
    question = request.question.strip()
    plain = _plain(question)
    result = calculate(question.split(":", 1)[-1]) if question else None
    if result:
        return "compute", f"{result}\n\n_({INTRO})_"
    small_talk = not (set(re.findall(r"[a-z']+", plain)) - _SMALL_TALK - STOPWORDS)
    if _THANKS.match(plain) and small_talk:
        return (
            "thank",
            f"You're welcome! Ask me anything else the site's documents cover. _({INTRO})_",
        )
    if _GREETING.match(plain) and small_talk:
        name = f", {request.user}" if request.user else ""
        return "greet", f"Hello{name}! {INTRO} Ask me anything they cover."
    if _ABOUT.match(plain):
        return "about", _about(request.about)
    passages = request.passages
    if passages and passages[0].match < SURE_MATCH:
        return "related", _related(passages)
    answer = knowledge_answer(request)
    if answer:
        return "quote", answer
    if passages:
        return "related", _related(passages)
    if _ABOUT_MODELS.search(plain):
        return "refuse", f"{UNKNOWN}\n\n{INTRO}\n\n{HELP}"
    return "refuse", f"{UNKNOWN}\n\n_({INTRO})_"


def _plain(question: str) -> str:
    return " ".join(question.lower().replace("’", "'").split()).strip(" .!")


def _about(about: About | None) -> str:
    if about is None:
        return f"{INTRO} Ask me anything they cover."
    lines = [INTRO, "", f"From *{about.title}* [1]:", "", excerpts_lead(about.text)]
    if about.documents:
        covered = ", ".join(f"*{title}*" for title in about.documents)
        lines += ["", f"The documents I answer from: {covered}."]
    text = "\n".join(lines)
    source = Passage(title=about.title, text=about.text, url=about.url)
    return text + sources_markdown([source], answer=text)


def _related(passages: tuple[Passage, ...]) -> str:
    """The sections found, offered as links: close to the question, but none surely its
    answer, so none is quoted as if it were."""
    sources = passages_sources(list(passages))[:MAX_RELATED]
    lines = [f"- {markdown_link(s.title, s.url)}" for s in sources]
    return (
        "I'm not sure which of the site's documents answers that, but these sections look "
        "related:\n\n" + "\n".join(lines) + f"\n\n_({INTRO})_"
    )


class OfflineBackend(AssistantBackend):
    """Needs no network and no model: answers with :func:`compose_answer`, streamed word
    by word, ``delay`` seconds apart, like a model's answer. It reports no :class:`Usage`:
    it reads and writes no tokens."""

    uses_tokens = False

    def __init__(self, *, delay: float = 0.02, **options: Any) -> None:
        super().__init__(**options)
        self.delay = delay

    @property
    def model_name(self) -> str:
        return "offline assistant"

    async def stream(self, request: AssistantRequest) -> AsyncIterator[BackendEvent]:
        for piece in split_words(compose_answer(request)):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield TextDelta(piece)
        yield Finish("stop")
