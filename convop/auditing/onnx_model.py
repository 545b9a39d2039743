"""The convolutions of an ONNX model and the input size each one sees (ONNX shape inference)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .._optional import require
from ..modes import MODES, mode_from_onnx
from .layer import Bounds, LayerRow, Norms
from .lipschitz import (
    SLOPES,
    NoRule,
    Step,
    as_tuple,
    audited,
    graph_bounds,
    matrix_factor,
    per_norm,
    pool_factor,
    scaled,
)

__all__ = ["onnx_layers", "onnx_network_bounds"]



def _onnx() -> Any:
    return require("onnx", "auditing an ONNX model")


def load_onnx(model: Any) -> Any:
    """Return the ``onnx.ModelProto`` of a path or a ModelProto."""
    onnx = _onnx()
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ValueError(f"`model` {path!r} is not a file.")
        return onnx.load(path)
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    raise TypeError(f"`model` must be a torch.nn.Module, an onnx.ModelProto or the path of an "
                    f".onnx file; got {type(model).__name__}.")


class _Graph:
    """An ONNX graph's constants, producers and inferred shapes."""

    def __init__(self, model: Any, input_shape: tuple[int, ...]) -> None:
        onnx = _onnx()
        graph = model.graph
        initializers = {t.name for t in graph.initializer}
        inputs = [v for v in graph.input if v.name not in initializers]
        if len(inputs) != 1:
            raise ValueError(f"`model` must have one input tensor to audit; it has "
                             f"{[v.name for v in inputs]}.")
        self.input_name = inputs[0].name
        dims = inputs[0].type.tensor_type.shape.dim
        if len(dims) and len(dims) != len(input_shape) + 1:
            raise ValueError(f"`input_shape` {input_shape} has {len(input_shape)} axes but the "
                             f"model's input {inputs[0].name!r} takes {len(dims) - 1} after "
                             f"the batch axis.")
        del dims[:]
        for size in (1, *input_shape):
            dims.add().dim_value = size
        self.nodes = list(graph.node)
        self.producer = {out: node for node in graph.node for out in node.output}
        self.constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        # What depends on the model's input (nodes come in topological order); every other
        # computed tensor is a constant.
        self.dynamic = {self.input_name}
        for node in self.nodes:
            if any(name in self.dynamic for name in node.input):
                self.dynamic.update(node.output)
        self.model = model
        self._fold_constant_inputs()
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        self.shapes: dict[str, tuple[int, ...] | None] = {}
        for value in (*inferred.graph.value_info, *inferred.graph.input,
                      *inferred.graph.output):
            shape = value.type.tensor_type.shape
            known = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
            self.shapes[value.name] = None if None in known else tuple(known)  # type: ignore

    def _fold_constant_inputs(self) -> None:
        """Make computed-but-constant inputs (pads, slice bounds, shapes) initializers.

        Exporters compute a Pad's pads or a Slice's bounds with small constant
        subgraphs; shape inference cannot see through them, so sizes after them
        would be unknown.
        """
        onnx = _onnx()
        for node in self.nodes:
            for name in node.input[1:]:
                if not name or name in self.constants or name not in self.producer:
                    continue
                value = self.constant(name)
                if value is not None:
                    self.model.graph.initializer.append(
                        onnx.numpy_helper.from_array(np.asarray(value), name))

    def constant(self, name: str) -> np.ndarray | None:
        """Return a tensor's value when it is a constant (folding a constant subgraph)."""
        if name in self.constants:
            return self.constants[name]
        node = self.producer.get(name)
        if node is None or name in self.dynamic:
            return None
        if node.op_type == "Identity":
            return self.constant(node.input[0])
        self.constants[name] = self._evaluate(name)
        return self.constants[name]

    def _evaluate(self, name: str) -> np.ndarray:
        """Run the input-free subgraph that computes ``name`` (onnx's reference evaluator)."""
        onnx = _onnx()
        from onnx.reference import ReferenceEvaluator

        needed: set[int] = set()
        known: set[str] = set()
        stack = [name]
        while stack:
            tensor = stack.pop()
            if tensor in known or not tensor:
                continue
            known.add(tensor)
            node = self.producer.get(tensor)
            if node is not None and id(node) not in needed:
                needed.add(id(node))
                stack.extend(node.input)
        nodes = [node for node in self.nodes if id(node) in needed]
        inits = [onnx.numpy_helper.from_array(np.asarray(self.constants[t]), t)
                 for t in known if t in self.constants]
        graph = onnx.helper.make_graph(nodes, "constant", [],
                                       [onnx.helper.make_empty_tensor_value_info(name)],
                                       initializer=inits)
        sub = onnx.helper.make_model(graph, opset_imports=self.model.opset_import)
        (value,) = ReferenceEvaluator(sub).run(None, {})
        return np.asarray(value)

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)


def _attributes(node: Any) -> dict[str, Any]:
    onnx = _onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def text_attribute(attrs: dict[str, Any], name: str, default: str) -> str:
    """Return a string attribute (onnx gives bytes) as str."""
    value = attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _folded_padding(graph: _Graph, source: str, pairs: tuple[tuple[int, int], ...]
                    ) -> tuple[str, tuple[tuple[int, int], ...], str, str]:
    """Fold a ``Pad`` node (or PyTorch's circular Slice/Concat) feeding a convolution.

    Returns the tensor before the padding, the padding pairs, the padding mode
    and a note ("" when nothing was folded).
    """
    node = graph.producer.get(source)
    ndim = len(pairs)
    if node is not None and node.op_type == "Pad":
        mode = text_attribute(_attributes(node), "mode", "constant")
        pads = graph.constant(node.input[1]) if len(node.input) > 1 else None
        value = graph.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        axes = node.input[3] if len(node.input) > 3 else ""
        if pads is None or axes or (value is not None and np.any(value != 0)):
            return source, pairs, "zeros", "input padded by a Pad node convop cannot read"
        rank = len(pads) // 2
        begins, ends = pads[:rank], pads[rank:]
        if rank != ndim + 2 or any(begins[:2]) or any(ends[:2]) or min(pads) < 0:
            return source, pairs, "zeros", "input padded on the batch or channel axis"
        extra = tuple((int(b), int(e)) for b, e in zip(begins[2:], ends[2:]))
        if mode == "constant":
            return node.input[0], tuple((a + c, b + d) for (a, b), (c, d) in zip(
                pairs, extra)), "zeros", ""
        folded = mode_from_onnx(mode)
        if folded is not None and MODES[folded].folds and not any(
                p for pair in pairs for p in pair):
            return node.input[0], extra, folded, ""
        return source, pairs, "zeros", f"input padded by a {mode!r} Pad convop cannot fold"
    if node is not None and node.op_type == "Concat" and not any(
            p for pair in pairs for p in pair):
        circular = _circular_concat(graph, source, ndim)
        if circular is not None:
            return circular[0], circular[1], "circular", ""
    return source, pairs, "zeros", ""


def _circular_concat(graph: _Graph, source: str, ndim: int
                     ) -> tuple[str, tuple[tuple[int, int], ...]] | None:
    """Recognize PyTorch's export of circular padding: per axis, Concat(x[-p:], x, x[:q])."""
    pairs = [(0, 0)] * ndim
    name = source
    while (node := graph.producer.get(name)) is not None and node.op_type == "Concat":
        axis = int(_attributes(node)["axis"])
        inner = _wrapped(graph, node, axis)
        if inner is None:
            break
        name, lo, hi = inner
        shape = graph.shape(name)
        rank = len(shape) if shape else ndim + 2
        spatial = (axis % rank) - 2
        if not 0 <= spatial < ndim or pairs[spatial] != (0, 0):
            return None
        pairs[spatial] = (lo, hi)
    return (name, tuple(pairs)) if name != source else None


def _wrapped(graph: _Graph, node: Any, axis: int) -> tuple[str, int, int] | None:
    """``(x, p, q)`` when ``node`` is ``Concat(x[-p:], x, x[:q])`` along ``axis``."""
    parts = list(node.input)
    if len(parts) != 3:
        return None
    middle = parts[1]
    shape = graph.shape(middle)
    if shape is None:
        return None
    n = shape[axis]
    sizes = []
    for part, want_start in ((parts[0], None), (parts[2], 0)):
        producer = graph.producer.get(part)
        if producer is None or producer.op_type != "Slice" or producer.input[0] != middle:
            return None
        starts = graph.constant(producer.input[1])
        part_shape = graph.shape(part)
        if starts is None or part_shape is None:
            return None
        size = part_shape[axis]
        start = int(np.ravel(starts)[0])
        start = start + n if start < 0 else start
        if start != (n - size if want_start is None else want_start):
            return None
        sizes.append(size)
    return middle, sizes[0], sizes[1]


def onnx_layers(model: Any, input_shape: tuple[int, ...]
                ) -> tuple[str, list[LayerRow], Bounds]:
    """Return an ONNX model's convolutions, each with the input size it sees.

    Also its name, and the function that bounds the network from the audited
    norms (:func:`onnx_network_bounds`).

    Layers sharing a weight, geometry and input size are one row with their
    ``calls`` counted; a node convop cannot read is a row that says why.
    """
    from ..onnx import auto_pad_pairs

    graph = _Graph(load_onnx(model), input_shape)
    rows: dict[tuple[Any, ...], LayerRow] = {}
    folded: dict[str, str] = {}  # a convolution's padded input -> the tensor before it
    conv_keys: dict[str, tuple[str, tuple[int, ...]]] = {}  # its output -> its row
    for index, node in enumerate(graph.nodes):
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        transposed = node.op_type == "ConvTranspose"
        weight_name = node.input[1]
        name = (weight_name[:-len(".weight")] if weight_name.endswith(".weight")
                else node.name or f"{node.op_type}_{index}")
        weight = graph.constant(weight_name)
        size = graph.shape(node.input[0])
        if weight is None or size is None:
            why = ("its weight is computed, not a constant" if weight is None
                   else "its input size is unknown after shape inference")
            rows[("refused", index)] = LayerRow(name, node.op_type, None, (), {}, transposed,
                                                note=f"refused: {why}")
            conv_keys[node.output[0]] = (name, ())
            continue
        weight = np.asarray(weight, dtype=np.float64)
        ndim = weight.ndim - 2
        attrs = _attributes(node)
        stride = tuple(int(s) for s in attrs.get("strides", (1,) * ndim))
        dilation = tuple(int(d) for d in attrs.get("dilations", (1,) * ndim))
        groups = int(attrs.get("group", 1))
        auto_pad = text_attribute(attrs, "auto_pad", "NOTSET")
        spatial = tuple(size[2:])
        note = ""
        if transposed:
            if auto_pad != "NOTSET" or "output_shape" in attrs:
                rows[("refused", index)] = LayerRow(
                    name, node.op_type, None, spatial, {}, True,
                    note="refused: a ConvTranspose with auto_pad or output_shape (export it "
                         "with explicit pads)")
                conv_keys[node.output[0]] = (name, ())
                continue
            pads = tuple(int(p) for p in attrs.get("pads", (0,) * 2 * ndim))
            pairs = tuple(zip(pads[:ndim], pads[ndim:]))
            layer: dict[str, Any] = dict(
                stride=stride, dilation=dilation, groups=groups, padding=pairs,
                output_padding=tuple(int(o) for o in attrs.get("output_padding", (0,) * ndim)))
        else:
            pairs = auto_pad_pairs(auto_pad, spatial, tuple(weight.shape[2:]), stride=stride,
                                   dilation=dilation, pads=attrs.get("pads"))
            source, pairs, mode, note = _folded_padding(graph, node.input[0], pairs)
            if source != node.input[0]:
                folded[node.input[0]] = source
            before = graph.shape(source)
            if before is not None:
                spatial = tuple(before[2:])
            layer = dict(stride=stride, dilation=dilation, groups=groups, padding=pairs,
                         padding_mode=mode)
        kind = f"{node.op_type}{ndim}d"
        key = (weight_name, spatial, repr(sorted(layer.items())))
        if key in rows:
            rows[key].calls += 1
        else:
            rows[key] = LayerRow(name, kind, weight, spatial, layer, transposed, note=note)
        conv_keys[node.output[0]] = (rows[key].name, spatial)
    graph_name = graph.model.graph.name or "onnx model"
    if isinstance(model, (str, os.PathLike)):
        graph_name = os.path.basename(os.fspath(model))

    def bounds(norms: Norms) -> tuple[dict[str, float] | None, str]:
        return onnx_network_bounds(graph, folded, graph.input_name, norms, conv_keys)
    return graph_name, list(rows.values()), bounds


# Lipschitz rules of ONNX nodes ------------------------------------------------------------


def onnx_network_bounds(graph: Any, folded: dict[str, str], input_name: str,
                        norms: Norms,
                        conv_keys: dict[str, tuple[str, tuple[int, ...]]]
                        ) -> tuple[dict[str, float] | None, str]:
    """Return ``{field: bound}`` of an ONNX graph (see :func:`network_bounds`).

    ``graph`` is the audit's parsed graph (constants, producers, shapes);
    ``folded`` maps a convolution's padded input to the tensor before the
    padding it folded (its norm includes that padding); ``conv_keys`` maps a
    convolution's output to its row's ``(name, input size)``.
    """
    steps: dict[Any, Step | NoRule] = {input_name: Step("input")}
    for name in graph.constants:
        steps[name] = Step("constant")
    for node in graph.nodes:
        step: Step | NoRule
        try:
            step = _onnx_step(node, graph, folded, norms, conv_keys)
        except NoRule as why:
            step = why
        for out in node.output:
            steps[out] = step
    outputs = [v.name for v in graph.model.graph.output]
    if len(outputs) != 1:
        return None, f"no network bound: the model has {len(outputs)} outputs"
    return graph_bounds(steps, outputs[0], norms)


def _onnx_step(node: Any, graph: Any, folded: dict[str, str],
               norms: Norms,
               conv_keys: dict[str, tuple[str, tuple[int, ...]]]) -> Step:
    op, inputs = node.op_type, [i for i in node.input if i]
    if op in ("Conv", "ConvTranspose"):
        name, size = conv_keys[node.output[0]]
        return Step("scale", (folded.get(inputs[0], inputs[0]),), audited(norms, name, size))
    if op == "Constant":
        return Step("constant")
    if op in SLOPES:
        return Step("scale", (inputs[0],), SLOPES[op])
    attrs = _attributes(node)
    if op == "LeakyRelu":
        return Step("scale", (inputs[0],), max(1.0, abs(float(attrs.get("alpha", 0.01)))))
    if op in ("Add", "Sub"):
        return Step("sum", tuple(inputs))
    if op == "Concat":
        return Step("concat", tuple(inputs))
    if op == "Mul":
        constants = [graph.constant(i) for i in inputs]
        scalars = [c for c in constants if c is not None and np.size(c) == 1]
        if len(inputs) == 2 and len(scalars) == 1:
            tensor = next(i for i, c in zip(inputs, constants) if c is None or np.size(c) != 1)
            return Step("scale", (tensor,), abs(float(np.ravel(scalars[0])[0])))
        raise NoRule(f"{node.name or op}: a product of two tensors has no Lipschitz rule")
    if op == "BatchNormalization":
        scale, _, _, var = (graph.constant(i) for i in inputs[1:5])
        if scale is None or var is None:
            raise NoRule(f"{node.name or op}: a batch norm without constant statistics")
        eps = float(attrs.get("epsilon", 1e-5))
        return Step("scale", (inputs[0],), float(np.max(np.abs(scale) / np.sqrt(var + eps))))
    if op in ("Gemm", "MatMul"):
        weight = graph.constant(inputs[1])
        if weight is None:
            raise NoRule(f"{node.name or op}: its weight is not a constant")
        alpha = abs(float(attrs.get("alpha", 1.0)))
        return Step("scale", (inputs[0],),
                    scaled(matrix_factor(_gemm_operator(op, attrs, weight)), alpha))
    if op in ("MaxPool", "AveragePool"):
        kernel = tuple(attrs["kernel_shape"])
        ndim = len(kernel)
        padded = any(attrs.get("pads", ())) or text_attribute(
            attrs, "auto_pad", "NOTSET") not in ("NOTSET", "VALID")
        smallest = 1 if op == "AveragePool" and padded and not attrs.get(
            "count_include_pad", 0) else None
        return Step("scale", (inputs[0],), pool_factor(
            kernel, as_tuple(attrs.get("strides", 1), ndim),
            as_tuple(attrs.get("dilations", 1), ndim), op == "AveragePool", smallest))
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        shape_in = graph.shape(inputs[0])
        if shape_in is None:
            raise NoRule(f"{node.name or op}: its input size is unknown")
        pixels = math.prod(shape_in[2:])
        # A max moves at most as far as its window's largest change; a mean of N pixels
        # by 1/sqrt(N) of their l2 change, 1/N of their l1 change.
        factor: float | Callable[[str], float] = 1.0 if op == "GlobalMaxPool" else per_norm(
            1.0 / math.sqrt(pixels), 1.0 / pixels, 1.0)
        return Step("scale", (inputs[0],), factor)
    if op == "Pad":
        # By position: an absent optional input is an empty name.
        value = (graph.constant(node.input[2]) if len(node.input) > 2 and node.input[2]
                 else None)
        if text_attribute(attrs, "mode", "constant") == "constant" and (
                value is None or not np.any(value)):
            return Step("scale", (inputs[0],))  # zero padding: an isometric embedding
    raise NoRule(f"no Lipschitz rule for the ONNX op {op} ({node.name or 'unnamed'})")


def _gemm_operator(op: str, attrs: dict[str, Any], weight: np.ndarray) -> np.ndarray:
    """Return the matrix a ``Gemm``/``MatMul`` applies to one input vector (a column).

    ``Y = X B'`` row by row is ``y = B'^T x``: ``B'`` is ``B``, or ``B^T`` for a
    Gemm with ``transB`` (PyTorch's export of ``Linear``), so the operator is
    ``B`` with ``transB`` and ``B^T`` without (the l1 and l-infinity norms tell
    the two apart).
    """
    b = np.atleast_2d(weight)
    return b if op == "Gemm" and int(attrs.get("transB", 0)) else b.T
