"""The ONNX graphs dense retrieval runs on ONNX Runtime: BERT's forward pass, written over a
model's weights (:func:`bert_graph`), and the scan of every passage's vector
(:class:`Similarities`). The one module that imports ``onnx`` and ``onnxruntime``, loaded
only when an embedder or stored vectors need it: a process with ``EMBEDDINGS: None``
never pays their import (over a second and 36 MiB).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime

logger = logging.getLogger("parley.knowledge")

# The int8 levels a quantized matrix uses on either side of zero: 7 bits, not 8, since
# ONNX Runtime's AVX2 kernel adds pairs of uint8 × int8 products in 16 bits, which 8-bit
# levels overflow (cosines off by 0.03 instead of 0.004; its own quantizer's reduce_range).
LEVELS = 63
# How many rows are quantized at once: the float copies a quantization makes are of this
# many rows, never of a whole index's vectors.
CHUNK = 8192
# The ONNX version the graphs are written for: opset 17 (LayerNormalization) and its IR
# version, 8, which the oldest ONNX Runtime Parley allows reads, whatever onnx release
# writes the graph (each writes its own newest IR by default).
OPSET = 17
IR_VERSION = 8


def bert_graph(
    weights: dict[str, np.ndarray], *, heads: int, eps: float, quantized: bool
) -> onnx.ModelProto:
    """The ONNX graph of a BERT encoder over ``weights`` (the tensors of a Hugging Face
    ``BertModel``, by their names): inputs ``input_ids`` (batch × length), ``positions``
    (0 to length - 1) and ``bias`` (batch × 1 × 1 × length: 0, or -1e9 where padding is),
    output ``hidden`` (batch × length × width), the last layer's states. With ``quantized``,
    each layer's linear maps are int8, one scale per output column, and multiply the
    activations quantized on the fly (one scale for the whole batch: a text's vector then
    depends on the texts it is run with, so :class:`~parley.knowledge.embeddings.MiniLM`
    runs one text at a time)."""
    graph = _Graph()
    w = {name: value.astype(np.float32, copy=False) for name, value in weights.items()}
    width = w["embeddings.word_embeddings.weight"].shape[1]
    layers = 1 + max(int(key.split(".")[2]) for key in w if key.startswith("encoder.layer."))

    def norm(x: str, name: str) -> str:
        scale, shift = graph.constant(w[f"{name}.weight"]), graph.constant(w[f"{name}.bias"])
        return graph.node("LayerNormalization", x, scale, shift, axis=-1, epsilon=eps)

    def linear(x: str, *names: str) -> str:
        """x @ W + b with the matrices and biases of ``names`` side by side: a layer's
        query, key and value projections as one product instead of three."""
        rows = [w.pop(f"{name}.weight") for name in names]  # out × in, as PyTorch keeps them
        bias = graph.constant(np.concatenate([w.pop(f"{name}.bias") for name in names]))
        if not quantized:
            matrix = graph.constant(np.ascontiguousarray(np.concatenate(rows).T))
            return graph.node("Add", graph.node("MatMul", x, matrix), bias)
        return graph.node("Add", _int8_product(graph, x, *_quantized(rows)), bias)

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
        "bert",
        inputs=[
            ("input_ids", onnx.TensorProto.INT64, ["batch", "length"]),
            ("positions", onnx.TensorProto.INT64, ["length"]),
            ("bias", onnx.TensorProto.FLOAT, ["batch", 1, 1, "length"]),
        ],
        output=(x, "hidden", ["batch", "length", width]),
    )


class Similarities:
    """The cosine similarities of a query's unit vector to each row of ``matrices`` (unit
    vectors, or zeros: similar to nothing; the rows of one matrix, then of the next), for an
    index's every passage at each search.

    The rows are kept as int8, each with its own scale, packed once in the layout ONNX
    Runtime's kernel multiplies fastest, and the query is quantized on the fly: a scan
    reads a quarter of float32's bytes, in a third of NumPy's float32 time on one core, for
    cosines within 0.005 of exact. Reading the vectors is what a scan costs: at 100,000
    passages, float32 scans were most of a search's time (bench/README.md)."""

    def __init__(self, matrices: Sequence[np.ndarray]) -> None:
        self.rows = sum(len(matrix) for matrix in matrices)
        # What the process holds: ONNX Runtime's packed int8 matrix (it drops the unpacked
        # one; the growth of the process's memory says so) and each row's scale.
        self.nbytes = 0
        self._session: onnxruntime.InferenceSession | None = None
        if not self.rows:
            return
        dimensions = matrices[0].shape[1]
        graph = _Graph()
        product = _int8_product(graph, "query", *_quantized(matrices))
        self._session = session_of(
            graph.model(
                "similarities",
                inputs=[("query", onnx.TensorProto.FLOAT, [1, dimensions])],
                output=(product, "similarity", [1, self.rows]),
            ),
            threads=1,
        )
        self.nbytes = self.rows * dimensions + 4 * self.rows

    def __call__(self, vector: np.ndarray) -> np.ndarray:
        """One similarity per row, float32, in row order."""
        if self._session is None:
            return np.zeros(0, dtype=np.float32)
        query = np.asarray(vector, dtype=np.float32)[None, :]
        result: np.ndarray = self._session.run(["similarity"], {"query": query})[0][0]
        return result


def session_of(graph: onnx.ModelProto, *, threads: int) -> onnxruntime.InferenceSession:
    """ONNX Runtime's session of ``graph`` on the CPU, using ``threads`` cores per call.

    Loaded from a file, deleted once loaded (ONNX Runtime reads it whole): a session made
    from bytes keeps them, a copy of every weight, for as long as it lives. Where no
    temporary folder can be written (a read-only file system), from bytes all the same."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Threads that wait for work spin by default, burning a core between calls.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    try:
        folder = tempfile.TemporaryDirectory(prefix="parley-onnx-", ignore_cleanup_errors=True)
    except OSError as exc:
        logger.warning("no temporary folder for ONNX models (%s): loading from memory", exc)
        return onnxruntime.InferenceSession(graph.SerializeToString(), options, providers)
    with folder:
        path = Path(folder.name) / "model.onnx"
        onnx.save_model(graph, path)
        return onnxruntime.InferenceSession(str(path), options, providers)


def _quantized(matrices: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``matrices``, one matrix after another, as int8 :data:`LEVELS`, each row
    with its own scale: the levels transposed (row *i* of the input is column *i*), as
    ``x @ levels`` wants them, and the scales. :data:`CHUNK` rows at a time."""
    rows = sum(len(matrix) for matrix in matrices)
    levels = np.empty((matrices[0].shape[1], rows), dtype=np.int8)
    scales = np.empty(rows, dtype=np.float32)
    start = 0
    for matrix in matrices:
        for first in range(0, len(matrix), CHUNK):
            chunk = np.asarray(matrix[first : first + CHUNK], dtype=np.float32)
            end = start + len(chunk)
            scale = np.maximum(np.abs(chunk).max(axis=1), 1e-12) / LEVELS
            levels[:, start:end] = np.round(chunk / scale[:, None]).T
            scales[start:end] = scale
            start = end
    return levels, scales


def _int8_product(graph: _Graph, x: str, levels: np.ndarray, scales: np.ndarray) -> str:
    """``x @ matrix`` in int8, ``matrix`` given as its int8 ``levels`` and a scale per
    column (:func:`_quantized`), ``x`` quantized on the fly (uint8, with its own scale and
    zero point), the integer product scaled back to float32. ONNX Runtime fuses the nodes
    into one kernel."""
    q, q_scale, q_zero = graph.nodes("DynamicQuantizeLinear", x, outputs=3)
    product = graph.node("MatMulInteger", q, graph.constant(levels), q_zero)
    unscaled = graph.node("Cast", product, to=onnx.TensorProto.FLOAT)
    return graph.node("Mul", unscaled, graph.node("Mul", q_scale, graph.constant(scales)))


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
        name: str,
        *,
        inputs: list[tuple[str, int, list[str | int]]],
        output: tuple[str, str, list[str | int]],
    ) -> onnx.ModelProto:
        """The model of the nodes written (once: the graph is emptied of its constants),
        ``output``'s node giving the graph's output under its own name (through an Identity
        node: a node's output is named when written)."""
        value, output_name, shape = output
        nodes = [*self._nodes, onnx.helper.make_node("Identity", [value], [output_name])]
        graph = onnx.helper.make_graph(
            nodes,
            name,
            [onnx.helper.make_tensor_value_info(*spec) for spec in inputs],
            [onnx.helper.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, shape)],
        )
        model = onnx.helper.make_model(
            graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
        )
        # Protocol buffers copy what they are given: the constants move into the model one
        # at a time, so that the weights are never held twice (or three times) at once.
        while self._constants:
            model.graph.initializer.append(self._constants.pop())
        return model
