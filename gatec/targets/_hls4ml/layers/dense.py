"""Gemm and MatMul with a constant right operand: an hls4ml Dense (kernel (n_in, n_out)); on the
last axis of a tensor with more axes per sample (nn.Linear over a sequence (N, T, F), or after a
permute), the same Dense at every position: an hls4ml Conv1D of width 1, channels last (exact: the
same products and sums per position)."""
from __future__ import annotations

import numpy as np

from ....ir import attributes
from ..act import Act
from .registry import handles
from .quantizers import precision_of


def dense(conv, node, a: Act, weight: np.ndarray, bias: np.ndarray | None, weight_precision=None) -> None:
    last = len(a.shape) - 1
    if a.batch == last:
        raise conv.fail(node, "a matrix product over the batch axis is not per sample")
    if len(a.sample_shape) != 1 and int(np.prod(a.sample_shape)) != a.shape[last]:
        per_position(conv, node, a, weight, bias, weight_precision)
        return
    src, n_in = conv.flat(node, a)
    n_out = weight.shape[1]
    name = conv.add({"name": conv.new_name("dense"), "class_name": "Dense", "inputs": [src], "n_in": n_in,
                     "n_out": n_out, "weight_data": np.ascontiguousarray(weight, dtype=np.float64),
                     "bias_data": np.zeros(n_out) if bias is None else
                     np.broadcast_to(bias, (n_out,)).astype(np.float64).copy(),
                     "use_bias": True, "activation": "linear", "_macs": n_in * n_out})
    if weight_precision:
        conv.precisions.setdefault(name, {})["weight"] = weight_precision
    shape = list(a.shape)
    shape[-1] = n_out
    conv.values[node.output[0]] = Act(name, tuple(shape), a.batch, a.order, (n_out,))


def weight(conv, node, name: str) -> tuple[np.ndarray, str | None]:
    w = conv.const(name)
    if w is None:
        raise conv.fail(node, "the weight matrix must be a constant")
    return w, precision_of(conv, name)


@handles("Gemm")
def gemm(conv, node):
    attrs = attributes(node)
    if attrs.get("transA", 0):
        raise conv.fail(node, "transA=1 is not supported")
    a = conv.act(node, node.input[0])
    w, wp = weight(conv, node, node.input[1])
    w = (w.T if attrs.get("transB", 0) else w) * attrs.get("alpha", 1.0)
    c = conv.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and c is None:
        raise conv.fail(node, "the bias must be a constant")
    dense(conv, node, a, w, None if c is None else c.reshape(-1) * attrs.get("beta", 1.0), wp)


@handles("MatMul")
def matmul(conv, node):
    left = conv.const(node.input[0])
    if left is not None:
        # W @ x with x (..., K, F) per sample: mixes axis -2 at every position of the others
        a = conv.act(node, node.input[1])
        if left.ndim != 2 or len(a.shape) < 3:
            raise conv.fail(node, "a constant left operand is supported only as a 2-D matrix times a tensor of "
                                  "rank 3 or more")
        per_position(conv, node, a, np.ascontiguousarray(left.T), None, precision_of(conv, node.input[0]),
                     len(a.shape) - 2)
        return
    a = conv.act(node, node.input[0])
    w, wp = weight(conv, node, node.input[1])
    if w.ndim != 2:
        raise conv.fail(node, "only a 2-D constant right operand is supported")
    dense(conv, node, a, w, None, wp)


def per_position(conv, node, a: Act, weight: np.ndarray, bias, weight_precision, last: int | None = None) -> None:
    """y[..., :] = x[..., :] @ W (+ b) at every position of the other per-sample axes: the features
    (the last ONNX axis, or axis `last`) last in memory, the positions before them in whatever order
    they lie (a convolution's channels-last output permuted to (N, L, C) needs no Transpose), as an
    hls4ml Conv1D with a kernel of width 1 over (positions, features)."""
    last = len(a.shape) - 1 if last is None else last
    if last == a.batch:
        raise conv.fail(node, "a matrix product over the batch axis is not per sample")
    if a.order[-1] != last:
        a = conv.laid_out(a, tuple(x for x in a.order if x != last) + (last,))
    n_in, n_out = a.shape[last], weight.shape[1]
    positions = int(np.prod(a.sample_shape)) // n_in
    src = conv.shaped(a, (positions, n_in))
    name = conv.add({"name": conv.new_name("dense"), "class_name": "Conv1D", "inputs": [src],
                     "data_format": "channels_last", "n_chan": int(n_in), "n_filt": int(n_out),
                     "filt_width": 1, "stride_width": 1, "in_width": positions, "out_width": positions,
                     "pad_left": 0, "pad_right": 0,
                     "weight_data": np.ascontiguousarray(weight, dtype=np.float64).reshape(1, n_in, n_out),
                     "bias_data": np.zeros(n_out) if bias is None else
                     np.broadcast_to(bias, (n_out,)).astype(np.float64).copy(),
                     "use_bias": True, "_macs": positions * n_in * n_out})
    if weight_precision:
        conv.precisions.setdefault(name, {})["weight"] = weight_precision
    shape = list(a.shape)
    shape[last] = n_out
    conv.values[node.output[0]] = Act(name, tuple(shape), a.batch, a.order, (positions, n_out))


def fold_transpose_into_dense(layers: list[dict], outputs: list[str]) -> list[dict]:
    """Transpose -> flatten (Reshape to 1-D) -> Dense, each read once, becomes flatten -> Dense
    with the weight rows permuted (exact). hls4ml does this rewrite itself (its
    remove_transpose_before_flatten), but assumes the channels-last-to-first permutation whatever
    the Transpose's own: after a flip or any other permutation its Dense read the wrong inputs."""
    readers: dict[str, int] = {name: 1 for name in outputs}
    for layer in layers:
        for name in layer.get("inputs", []):
            readers[name] = readers.get(name, 0) + 1
    by_name = {layer["name"]: layer for layer in layers}
    gone = set()
    for dense in layers:
        flat = by_name.get(dense.get("inputs", [None])[0]) if dense["class_name"] == "Dense" else None
        if flat is None or flat["class_name"] != "Reshape" or len(flat["target_shape"]) != 1 \
                or readers.get(flat["name"]) != 1:
            continue
        transpose = by_name.get(flat["inputs"][0])
        if transpose is None or transpose["class_name"] != "Transpose" or readers.get(transpose["name"]) != 1 \
                or "_in_shape" not in transpose:
            continue
        # output position k of the Transpose holds input element source[k]: the Dense's row k moves there
        source = np.arange(int(np.prod(transpose["_in_shape"]))).reshape(transpose["_in_shape"])
        source = source.transpose(transpose["perm"]).reshape(-1)
        weight = np.empty_like(dense["weight_data"])
        weight[source] = dense["weight_data"]
        dense["weight_data"] = weight
        flat["inputs"] = list(transpose["inputs"])
        gone.add(transpose["name"])
    return [layer for layer in layers if layer["name"] not in gone]
