"""Activations: hls4ml Activation layers (sigmoid/tanh/ELU/SELU read tables: their sizes are set
in gatec/targets/_hls4ml/__init__.py), LeakyReLU, ELU, PReLU (a slope per element), the hard
activations and Clip, and a 'stable' Softmax over any axis."""
from __future__ import annotations

import numpy as np

from ....ir import attributes
from ..act import Act
from . import lookup
from .registry import handles

SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875  # ONNX's defaults (float32)


def activation(conv, node, kind: str, **extra) -> str:
    a = conv.act(node, node.input[0])
    name = conv.add({"name": conv.new_name(kind.lower()), "class_name": extra.pop("class_name", "Activation"),
                     "activation": kind, "inputs": [a.layer], **extra})
    conv.values[node.output[0]] = conv.same_layout(a, a.shape, layer=name, rnn=None if a.rnn == "seq" else a.rnn)
    return name


@handles("Sigmoid", "Tanh", "Relu")
def elementwise(conv, node):
    activation(conv, node, node.op_type.lower())  # hls4ml's names: sigmoid, tanh, relu


@handles("LeakyRelu")
def leaky_relu(conv, node):
    alpha = attributes(node).get("alpha", 0.01)
    activation(conv, node, "leaky_relu", class_name="LeakyReLU", activ_param=alpha)


@handles("Elu")
def elu(conv, node):
    # hls4ml's table holds exp(x) - 1 over [-8, 0] (4096 entries: step 2**-9), times alpha
    activation(conv, node, "elu", class_name="ELU", activ_param=float(attributes(node).get("alpha", 1.0)))


@handles("Selu")
def selu(conv, node):
    attrs = attributes(node)
    if not (np.isclose(attrs.get("alpha", SELU_ALPHA), SELU_ALPHA) and np.isclose(attrs.get("gamma", SELU_GAMMA),
                                                                                   SELU_GAMMA)):
        raise conv.fail(node, "hls4ml's selu has the standard alpha and gamma only")
    activation(conv, node, "selu")


@handles("PRelu")
def prelu(conv, node):
    a = conv.act(node, node.input[0])
    slope = conv.const(node.input[1])
    if slope is None:
        raise conv.fail(node, "the slope must be a constant")
    # hls4ml's PReLU takes a slope per element: the per-channel slope broadcast to the tensor, in memory order
    activation(conv, node, "prelu", class_name="PReLU", param_data=a.physical(np.asarray(slope, dtype=np.float64)))


@handles("HardSigmoid")
def hard_sigmoid(conv, node):
    attrs = attributes(node)
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if not (0 <= alpha < 1 and beta * 4 == int(beta * 4) and 0 <= beta < 1):
        # hls4ml's types: slope ap_ufixed<16,0>, shift ap_ufixed<2,0> (0, 0.25, 0.5 or 0.75)
        raise conv.fail(node, f"hls4ml's hard sigmoid takes 0 <= alpha < 1 and beta in 0, 0.25, 0.5, 0.75, not "
                              f"alpha {alpha}, beta {beta}")
    activation(conv, node, "hard_sigmoid", class_name="HardActivation", slope=alpha, shift=beta)


@handles("Clip")
def clip(conv, node):
    lo, hi = lookup.clip_bounds(conv, node)
    if (lo, hi) == (-1.0, 1.0):  # hls4ml's hard_tanh: 2 * clip(x / 2 + 1 / 2, 0, 1) - 1, exact
        activation(conv, node, "hard_tanh", class_name="HardActivation", slope=0.5, shift=0.5)
    elif (lo, hi) == (0.0, 6.0):
        activation(conv, node, "relu6")
    elif lo == 0.0 and hi == np.inf:
        activation(conv, node, "relu")
    else:
        lookup.clip(conv, node, lo, hi)


@handles("Softmax")
def softmax(conv, node):
    a = conv.act(node, node.input[0])
    axis = attributes(node).get("axis", -1) % len(a.shape)
    if axis == a.batch:
        raise conv.fail(node, "a softmax over the batch axis is not per sample")
    # the softmax axis last in memory: hls4ml then takes a softmax over each run of n values
    a = conv.laid_out(a, tuple(x for x in sorted(a.order) if x != axis) + (axis,))
    n_in, n = int(np.prod(a.sample_shape)), a.shape[axis]
    src = conv.shaped(a, (n_in,))
    # 'stable' subtracts the maximum before the exp table, so the table's range holds any logits
    name = conv.add({"name": conv.new_name("softmax"), "class_name": "Softmax", "activation": "softmax",
                     "inputs": [src], "axis": -1, "n_in": n_in, "implementation": "stable",
                     **({"n_outer": n_in // n} if n_in != n else {})})
    conv.values[node.output[0]] = Act(name, a.shape, a.batch, a.order, (n_in,))


# ---------------------------------------------------------------- Softsign and ThresholdedReLU
# hls4ml's softsign reads a table over [-8, 8) at the truncated index (step 16 / table size, slope
# <= 1: 2**-8 with 4096 entries, 16 fractional bits) and clamps outside it, where softsign is up to
# 1/9 from the table's last entry: summary.error_bound counts it as a table (2**-8), which holds for
# inputs inside [-8, 8). ThresholdedReLU compares exactly, but jumps by theta at theta: an input
# within an LSB of theta may fall on the other side than the reference's (the bound adds theta).
SOFTSIGN_TABLE = 4096


def table_type():
    from hls4ml.model.types import FixedPrecisionType
    return FixedPrecisionType(18, 2)  # 16 fractional bits: entries in (-1, 1)


@handles("Softsign")
def softsign(conv, node):
    activation(conv, node, "softsign", table_size=SOFTSIGN_TABLE, table_t=table_type())


def thresholded_relu_layer(conv, node, theta: float, x: str | None = None) -> None:
    """y = x if x > theta else 0 (hls4ml compares strictly, as ONNX's ThresholdedRelu); `x`: the input
    (default node.input[0]), node.output[0] the output."""
    a = conv.act(node, x or node.input[0])
    name = conv.add({"name": conv.new_name("thresholdedrelu"), "class_name": "ThresholdedReLU",
                     "activation": "thresholdedrelu", "inputs": [a.layer], "activ_param": float(theta)})
    conv.values[node.output[0]] = conv.same_layout(a, a.shape, layer=name, rnn=None if a.rnn == "seq" else a.rnn)


@handles("ThresholdedRelu")
def thresholded_relu(conv, node):
    thresholded_relu_layer(conv, node, float(attributes(node).get("alpha", 1.0)))


def constant_value(conv, name: str):
    """A constant input, also one a later Constant node writes (patterns look ahead of the walk)."""
    value = conv.const(name)
    if value is not None:
        return value
    node = conv.producers.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute:
        from onnx import helper, numpy_helper
        attr = node.attribute[0]
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            return np.asarray(helper.get_attribute_value(attr))
    return None


def scalar(value) -> float | None:
    return float(np.asarray(value).reshape(-1)[0]) if value is not None and np.asarray(value).size == 1 else None


@handles("Abs")
def absolute(conv, node):
    """Softsign as PyTorch exports nn.Softsign: x / (1 + |x|), an Abs, an Add of 1 and a Div of x."""
    x = node.input[0]
    conv.act(node, x)
    add = conv.readers.get(node.output[0], [])
    why = "Abs is supported only in softsign, x / (1 + |x|), as PyTorch exports nn.Softsign"
    if len(add) != 1 or add[0].op_type != "Add" or not conv.single_use(node.output[0]):
        raise conv.fail(node, why)
    one = [i for i in add[0].input if i != node.output[0]]
    div = conv.readers.get(add[0].output[0], [])
    if len(one) != 1 or scalar(constant_value(conv, one[0])) != 1.0 or len(div) != 1 or div[0].op_type != "Div" \
            or list(div[0].input) != [x, add[0].output[0]] or not conv.single_use(add[0].output[0]):
        raise conv.fail(node, why)
    activation(conv, div[0], "softsign", table_size=SOFTSIGN_TABLE, table_t=table_type())
    # the Add is read by the Div only: with both outputs known the converter skips the two nodes
    conv.values[add[0].output[0]] = conv.values[x]


@handles("Greater")
def greater(conv, node):
    """ThresholdedReLU as people write it: torch.where(x > theta, x, 0) (Greater, Where)."""
    x, cond = node.input[0], node.output[0]
    conv.act(node, x)
    theta = scalar(conv.const(node.input[1]))
    where = conv.readers.get(cond, [])
    zero = scalar(constant_value(conv, where[0].input[2])) if len(where) == 1 and len(where[0].input) == 3 else None
    if theta is None or len(where) != 1 or where[0].op_type != "Where" or where[0].input[1] != x or zero != 0.0 \
            or not conv.single_use(cond):
        raise conv.fail(node, "a comparison is supported only in ThresholdedReLU, Where(x > theta, x, 0), "
                              "with a constant theta")
    thresholded_relu_layer(conv, where[0], theta, x)  # the Where's output: the converter skips it


@handles("Where")
def where(conv, node):  # reached only where no ThresholdedReLU pattern (`greater`) computed it
    raise conv.fail(node, "Where is supported only as ThresholdedReLU, Where(x > theta, x, 0)")
