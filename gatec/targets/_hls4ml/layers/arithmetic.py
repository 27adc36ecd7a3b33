"""Elementwise arithmetic: with a constant, y = scale * x + bias, folded into the Dense or
convolution that made x where it can be, else an hls4ml ApplyAlpha; of two per-sample tensors,
an hls4ml Merge (Add/Sub/Mul, and Max/Min/Mean: maximum, minimum, average). BatchNormalization is
such an affine map per channel."""
from __future__ import annotations

import numpy as np
import onnx

from ....ir import attributes
from ..act import Act
from . import activations, lookup
from .registry import handles

CONVOLUTIONS = ("Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D")
BINARY = {"Add": "add", "Sub": "subtract", "Mul": "multiply", "Div": "div"}  # ONNX op -> hls4ml Merge op


def affine(conv, node, a: Act, scale, bias) -> None:
    """y = scale * x + bias elementwise (constants broadcast to x): folded into the Dense
    that made x when only this node reads it, else one ApplyAlpha layer."""
    scale = a.physical(np.asarray(scale, dtype=np.float64))
    bias = a.physical(np.asarray(bias, dtype=np.float64))
    producer = conv.layer(a.layer)
    if producer["class_name"] == "Dense" and conv.single_use(node.input[0]) and a.rnn is None \
            and np.all(scale == 1) and a.layer not in outputs_so_far(conv):
        producer["bias_data"] = producer["bias_data"] + bias
        conv.values[node.output[0]] = a
        return
    if producer["class_name"] in CONVOLUTIONS and conv.single_use(node.input[0]) \
            and a.layer not in outputs_so_far(conv) and a.layer not in conv.precisions:
        # per channel (a batch norm after a convolution): folded into the kernel and bias (not
        # into quantized weights: their type would no longer hold them)
        per_pos = scale.reshape(-1, producer["n_filt"]), bias.reshape(-1, producer["n_filt"])
        if all(np.all(v == v[:1]) for v in per_pos):
            if "depthwise_data" in producer:  # (K..., C, 1): filter c is channel c's
                producer["depthwise_data"] = producer["depthwise_data"] * per_pos[0][0][:, None]
            else:
                producer["weight_data"] = producer["weight_data"] * per_pos[0][0]
            producer["bias_data"] = producer["bias_data"] * per_pos[0][0] + per_pos[1][0]
            conv.values[node.output[0]] = a
            return
    name = conv.add({"name": conv.new_name("affine"), "class_name": "ApplyAlpha", "inputs": [a.layer],
                     "n_in": scale.size, "n_filt": -1, "scale_data": scale, "bias_data": bias,
                     "_macs": int(np.count_nonzero((scale != 1) & (scale != -1)))})
    conv.values[node.output[0]] = conv.same_layout(a, a.shape, layer=name)


def outputs_so_far(conv) -> set:
    return {v.layer for k, v in conv.values.items() if isinstance(v, Act) and
            any(o.name == k for o in conv.graph.output)}


def merge(conv, node, op: str, x: Act, y: Act) -> Act:
    """An hls4ml Merge (`op`: add, subtract, multiply, average, maximum, minimum) of two per-sample
    tensors of one shape, elementwise: y laid out in memory as x (a Transpose where their orders
    differ, as a convolution's channels-last output and a tensor in ONNX's order do)."""
    if x.shape != y.shape or x.batch != y.batch:
        raise conv.fail(node, f"broadcasting {list(x.shape)} with {list(y.shape)} is not supported")
    y = conv.laid_out(y, x.order)
    src_y = conv.shaped(y, x.phys)
    name = conv.add({"name": conv.new_name(op), "class_name": "Merge", "op": op, "inputs": [x.layer, src_y],
                     "_macs": int(np.prod(x.phys)) if op == "multiply" else 0})
    return conv.same_layout(x, x.shape, layer=name)


@handles(*BINARY)
def binary(conv, node):
    op = BINARY[node.op_type]
    x, y = (conv.values.get(n) for n in node.input[:2])
    if isinstance(x, Act) and isinstance(y, Act):
        if op == "div":
            raise conv.fail(node, "division of two per-sample tensors is not supported")
        x, y = conv.act(node, node.input[0]), conv.act(node, node.input[1])
        conv.values[node.output[0]] = merge(conv, node, op, x, y)
        return
    if isinstance(x, Act):
        a, c = conv.act(node, node.input[0]), y
        scale, bias = {"add": (1.0, c), "subtract": (1.0, -c), "multiply": (c, 0.0), "div": (1.0 / c, 0.0)}[op]
    else:
        a, c = conv.act(node, node.input[1]), x
        if op == "div":
            raise conv.fail(node, "dividing by a per-sample tensor is not supported")
        scale, bias = {"add": (1.0, c), "subtract": (-1.0, c), "multiply": (c, 0.0)}[op]
    if np.broadcast_shapes(np.shape(c), a.shape_with_batch(1)) != a.shape_with_batch(1):
        raise conv.fail(node, "a constant that widens the tensor is not supported")
    affine(conv, node, a, scale, bias)


@handles("BatchNormalization")
def batch_normalization(conv, node):
    a = conv.act(node, node.input[0])
    gamma, beta, mean, var = (conv.const(n) for n in node.input[1:5])
    eps = attributes(node).get("epsilon", 1e-5)
    scale = gamma / np.sqrt(var + eps)
    shape = [1] * len(a.shape)
    shape[1 if len(a.shape) > 1 else 0] = -1  # ONNX: the channel axis is axis 1
    affine(conv, node, a, scale.reshape(shape), (beta - mean * scale).reshape(shape))


EXTREMA = {"Max": "maximum", "Min": "minimum"}


@handles("Max", "Min", "Mean")
def extremum_or_mean(conv, node):
    """Max/Min (torch.maximum/minimum) of per-sample tensors of one shape: hls4ml Merge maximum or
    minimum (exact), chained for more than two; of one tensor and a constant scalar, a ReLU (max with
    0) or gatec's Clip layer (exact). Mean of two: hls4ml's Merge average ((a + b) * 0.5); of more,
    Merge adds and one scale by 1/n."""
    values = [conv.values.get(n) for n in node.input if n]
    acts = [n for n in node.input if n and isinstance(conv.values.get(n), Act)]
    consts = [v for v in values if isinstance(v, np.ndarray)]
    if len(acts) + len(consts) != len(values):
        raise conv.fail(node, "an input is neither a constant nor computed per sample")
    if consts:
        if node.op_type == "Mean" or len(acts) != 1:
            raise conv.fail(node, "a constant operand is supported only for Max/Min of one per-sample tensor")
        bound = np.asarray(consts[0], dtype=np.float64)
        for c in consts[1:]:
            bound = (np.maximum if node.op_type == "Max" else np.minimum)(bound, c)
        a = conv.act(node, acts[0])
        if bound.size != 1 or np.broadcast_shapes(bound.shape, a.shape_with_batch(1)) != a.shape_with_batch(1):
            raise conv.fail(node, "only a constant scalar bound is supported (hls4ml's Merge takes two per-sample "
                                  "tensors, its activations one bound for all elements)")
        c = float(bound.reshape(-1)[0])
        proxy = onnx.helper.make_node("Clip", [acts[0]], [node.output[0]], name=node.name or node.output[0])
        if node.op_type == "Max" and c == 0.0:
            activations.activation(conv, proxy, "relu")
        elif node.op_type == "Max":
            lookup.clip(conv, proxy, c, np.inf)
        else:
            lookup.clip(conv, proxy, -np.inf, c)
        return
    parts = [conv.act(node, n) for n in acts]
    if len(parts) == 1:
        conv.values[node.output[0]] = parts[0]
        return
    if node.op_type == "Mean" and len(parts) == 2:
        conv.values[node.output[0]] = merge(conv, node, "average", *parts)
        return
    op = EXTREMA.get(node.op_type, "add")
    out = parts[0]
    for p in parts[1:]:
        out = merge(conv, node, op, out, p)
    if node.op_type == "Mean":
        affine(conv, node, out, 1.0 / len(parts), 0.0)  # the sum's ApplyAlpha (a Merge folds nothing)
    else:
        conv.values[node.output[0]] = out
