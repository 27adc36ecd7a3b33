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
