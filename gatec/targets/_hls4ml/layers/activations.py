"""Activations: hls4ml Activation layers (sigmoid/tanh read tables: their sizes are set in
gatec/targets/_hls4ml/__init__.py), LeakyReLU and a 'stable' Softmax."""
from __future__ import annotations

from ....ir import attributes
from .registry import handles


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


@handles("Softmax")
def softmax(conv, node):
    a = conv.act(node, node.input[0])
    axis = attributes(node).get("axis", -1) % len(a.shape)
    if axis != len(a.shape) - 1 or len(a.sample_shape) != 1:
        raise conv.fail(node, "only a softmax over the last axis of a vector per sample is supported")
    src, n = conv.flat(node, a)
    # 'stable' subtracts the maximum before the exp table, so the table's range holds any logits
    name = conv.add({"name": conv.new_name("softmax"), "class_name": "Softmax", "activation": "softmax",
                     "inputs": [src], "axis": -1, "n_in": n, "implementation": "stable"})
    conv.values[node.output[0]] = conv.same_layout(a, a.shape, layer=name)
