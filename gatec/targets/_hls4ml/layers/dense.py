"""Gemm and MatMul with a constant right operand: an hls4ml Dense (kernel (n_in, n_out))."""
from __future__ import annotations

import numpy as np

from ....ir import attributes
from ..act import Act
from .registry import handles
from .quantizers import precision_of


def dense(conv, node, a: Act, weight: np.ndarray, bias: np.ndarray | None, weight_precision=None) -> None:
    if len(a.sample_shape) != 1 or not a.in_order:
        raise conv.fail(node, f"a dense layer needs one feature axis per sample (got {list(a.sample_shape)})")
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
    a = conv.act(node, node.input[0])
    w, wp = weight(conv, node, node.input[1])
    if w.ndim != 2:
        raise conv.fail(node, "only a 2-D constant right operand is supported")
    dense(conv, node, a, w, None, wp)
