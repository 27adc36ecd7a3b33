"""gatec's logic layers (gatec.custom_op LogicLayer / GroupSum) as hls4ml extension layers, so
that a network mixing logic layers with arithmetic layers goes through hls4ml as one design.

`GatecLogicLayer` reads its input as bits (x != 0, as gatec.custom_op does) and writes one bit
per gate (ap_uint<1>): each gate is one C++ assignment of its two-input op (the truth-table ids
documented in gatec/ir/logic.py). `GatecGroupSum` counts the set bits of each of k groups and
scales the count by 1/tau. Both are emitted inline into the top function (no library code), for
the Vivado and Vitis backends, whose C simulation runs them.
"""
from __future__ import annotations

import math

import numpy as np

from ....ir.logic import bitwise_expressions, group_sum_of, layer_of
from ..act import Act
from .registry import handles

BACKENDS = ("Vivado", "Vitis")
EXPR = bitwise_expressions("0", "1")  # C++ for each op id on the bits a, b
_registered = False


def register() -> None:
    """Register the two layers and their templates with hls4ml (once per process)."""
    global _registered
    if _registered:
        return
    import hls4ml
    from hls4ml.backends.template import FunctionCallTemplate
    from hls4ml.model.attributes import Attribute
    from hls4ml.model.layers import Layer, register_layer

    class GatecLogicLayer(Layer):
        _expected_attributes = [Attribute("n_in"), Attribute("n_out"), Attribute("in_a", value_type=list),
                                Attribute("in_b", value_type=list), Attribute("ops", value_type=list)]

        def initialize(self):
            self.add_output_variable([self.attributes["n_out"]])

    class GatecGroupSum(Layer):
        _expected_attributes = [Attribute("n_in"), Attribute("k"), Attribute("tau", value_type=float)]

        def initialize(self):
            self.add_output_variable([self.attributes["k"]])

    class LogicLayerTemplate(FunctionCallTemplate):
        def __init__(self):
            super().__init__(GatecLogicLayer, include_header=[])

        def format(self, node):
            x, y = node.get_input_variable().name, node.get_output_variable().name
            lines = ["{"]
            for i, (a, b, op) in enumerate(zip(node.get_attr("in_a"), node.get_attr("in_b"), node.get_attr("ops"))):
                expr = EXPR[int(op)].format(a=f"ap_uint<1>({x}[{a}] != 0)", b=f"ap_uint<1>({x}[{b}] != 0)")
                lines.append(f"    {y}[{i}] = ap_uint<1>({expr});")
            return lines + ["}"]

    class GroupSumTemplate(FunctionCallTemplate):
        def __init__(self):
            super().__init__(GatecGroupSum, include_header=[])

        def format(self, node):
            x, y = node.get_input_variable().name, node.get_output_variable().name
            n, k, tau = node.get_attr("n_in"), node.get_attr("k"), node.get_attr("tau")
            group = n // k
            bits = max(1, group.bit_length())
            # the count and tau both fit this type's integer part; 16 fraction bits for the quotient
            integer = max(bits, int(math.ceil(float(tau))).bit_length()) + 1
            wide = f"ap_fixed<{integer + 16},{integer}>"
            return ["{",
                    f"    for (int c = 0; c < {k}; c++) {{",
                    "        #pragma HLS UNROLL",
                    f"        ap_uint<{bits}> count = 0;",
                    f"        for (int j = 0; j < {group}; j++) {{",
                    "            #pragma HLS UNROLL",
                    f"            count += ({x}[c * {group} + j] != 0);",
                    "        }",
                    # the count is an integer; dividing in the output type keeps it exact when
                    # tau is a power of two (otherwise rounded to the output type's LSB)
                    f"        {y}[c] = {wide}(count) / {wide}({float(tau)!r});",
                    "    }",
                    "}"]

    register_layer("GatecLogicLayer", GatecLogicLayer)
    register_layer("GatecGroupSum", GatecGroupSum)
    for name in BACKENDS:
        backend = hls4ml.backends.get_backend(name)
        backend.register_template(LogicLayerTemplate)
        backend.register_template(GroupSumTemplate)
    _registered = True


@handles("LogicLayer")
def logic_layer(conv, node):
    a = conv.act(node, node.input[0])
    src, n_in = conv.flat(node, a)
    layer = layer_of(node)
    in_a, in_b, ops = (np.asarray(v).astype(int).tolist() for v in (layer.in_a, layer.in_b, layer.ops))
    if max(in_a + in_b, default=0) >= n_in:
        raise conv.fail(node, f"reads input {max(in_a + in_b)} of {n_in}")
    name = conv.add({"name": conv.new_name("logic"), "class_name": "GatecLogicLayer", "inputs": [src],
                     "n_in": n_in, "n_out": len(ops), "in_a": in_a, "in_b": in_b, "ops": ops})
    conv.precisions[name] = {"result": "ap_uint<1>"}
    conv.logic = True
    shape = list(a.shape)
    shape[-1] = len(ops)
    conv.values[node.output[0]] = Act(name, tuple(shape), a.batch, a.order, (len(ops),))


@handles("GroupSum")
def group_sum(conv, node):
    a = conv.act(node, node.input[0])
    src, n_in = conv.flat(node, a)
    k, tau = group_sum_of(node)
    if n_in % k:
        raise conv.fail(node, f"{n_in} inputs do not split into {k} groups")
    name = conv.add({"name": conv.new_name("groupsum"), "class_name": "GatecGroupSum", "inputs": [src],
                     "n_in": n_in, "k": int(k), "tau": float(tau)})
    integer = int(np.ceil(np.log2(n_in // k / tau + 1))) + 1
    conv.precisions[name] = {"result": f"ap_fixed<{integer + 16},{integer}>"}  # the count / tau, 16 fraction bits
    conv.logic = True
    shape = list(a.shape)
    shape[-1] = int(k)
    conv.values[node.output[0]] = Act(name, tuple(shape), a.batch, a.order, (int(k),))
