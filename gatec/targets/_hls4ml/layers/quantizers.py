"""QONNX quantizers in the hls4ml conversion: precisions from `Quant` and `BipolarQuant` nodes.

A quantizer on a constant (weights) is folded with qonnx's own functions, and the weights'
precision follows from it. A quantizer on an activation becomes a cast to an `ap_fixed` type
with the quantizer's rounding and saturation: with zero point 0 and a power-of-two scale
2**-f, `Quant(bits=b, signed)` is exactly ap_fixed<b, b-f, AP_RND_CONV, AP_SAT> (qonnx's ROUND
rounds half to even, as AP_RND_CONV does; narrow range saturates symmetrically: AP_SAT_SYM).
`BipolarQuant` is hls4ml's binary_tanh (x >= 0 -> +1, else -1, as qonnx) times its scale.
"""
from __future__ import annotations

import copy

import numpy as np
import onnx

from ....ir import attributes
from ....ir.graph import consumers
from .registry import handles
from .activations import activation
from .arithmetic import affine

ROUNDING = {"ROUND": "AP_RND_CONV", "FLOOR": "AP_TRN", "ROUND_TO_ZERO": "AP_TRN_ZERO"}


def fold(node, args: list) -> np.ndarray:
    """A quantizer applied to a constant, with qonnx's reference functions."""
    if node.op_type == "BipolarQuant":
        from qonnx.custom_op.general.bipolar_quant import binary_quant
        return np.asarray(binary_quant(args[0], args[1]), dtype=np.float32)
    if node.op_type == "Quant":
        from qonnx.custom_op.general.quant import quant
        a = attributes(node)
        return np.asarray(quant(args[0], args[1], args[2], args[3], a.get("signed", 1), a.get("narrow", 0),
                                a.get("rounding_mode", "ROUND")), dtype=np.float32)
    raise NotImplementedError(node.op_type)


def power_of_two_exponent(scale) -> int | None:
    """e with scale == 2**e for one scalar scale, else None."""
    s = np.asarray(scale, dtype=np.float64).reshape(-1)
    if s.size == 0 or np.any(s != s[0]) or s[0] <= 0:
        return None
    e = int(np.round(np.log2(s[0])))
    return e if 2.0 ** e == s[0] else None


def fixed_type(bits: int, exponent: int, signed: bool, narrow: bool = False, rounding: str = "ROUND",
               cast: bool = False) -> str | None:
    """The ap_fixed type holding q * 2**exponent for the quantizer's integer q."""
    integer = bits + exponent
    base = f"ap_fixed<{bits},{integer}" if signed else f"ap_ufixed<{bits},{integer}"
    if not cast:
        return base + ">"
    if rounding not in ROUNDING or (narrow and not signed):
        return None
    return f"{base},{ROUNDING[rounding]},{'AP_SAT_SYM' if narrow else 'AP_SAT'}>"


def precision_of(conv, name: str) -> str | None:
    """The precision of a constant made by a quantizer (weights), when its scale is a power of two."""
    node = conv.producers.get(name)
    if node is None or node.op_type not in ("Quant", "BipolarQuant"):
        return None
    scale = conv.const(node.input[1])
    e = power_of_two_exponent(scale)
    if e is None:
        return None
    conv.quantized = True
    if node.op_type == "BipolarQuant":
        return fixed_type(2, e, True)
    bits = int(conv.const(node.input[3]))
    return fixed_type(bits, e, bool(attributes(node).get("signed", 1)))


@handles("Quant")
def activation_quant(conv, node) -> None:
    """Quant on an activation: a cast (linear activation) to the quantizer's fixed-point type."""
    conv.act(node, node.input[0])  # checks the input is computed per sample
    scale, zero, bits = (conv.const(n) for n in node.input[1:4])
    if scale is None or zero is None or bits is None:
        raise conv.fail(node, "scale, zero point and bit width must be constants")
    e = power_of_two_exponent(scale)
    at = attributes(node)
    ptype = None if e is None or np.any(zero != 0) else \
        fixed_type(int(bits), e, bool(at.get("signed", 1)), bool(at.get("narrow", 0)),
                   at.get("rounding_mode", "ROUND"), cast=True)
    if ptype is None:
        raise conv.fail(node, "only per-tensor power-of-two scales with zero point 0 and ROUND/FLOOR/ROUND_TO_ZERO "
                              "rounding map exactly to ap_fixed")
    conv.quantized = True
    name = activation(conv, node, "linear")
    conv.precisions.setdefault(name, {})["result"] = ptype


@handles("BipolarQuant")
def activation_bipolar(conv, node) -> None:
    """BipolarQuant on an activation: binary_tanh, then the scale."""
    scale = conv.const(node.input[1])
    if scale is None:
        raise conv.fail(node, "the scale must be a constant")
    conv.quantized = True
    a = conv.act(node, node.input[0])
    producer = conv.layer(a.layer)
    if producer["class_name"] == "ApplyAlpha" and conv.single_use(node.input[0]) and np.all(producer["scale_data"]):
        # sign(s*x + b) == sign(sign(s)*x + b/|s|) (with sign(0) = +1 on both sides): the scale
        # becomes +-1, exact, and only the threshold b/|s| is rounded (a batch norm before a
        # binarizer, as in binarized networks)
        s, b = producer["scale_data"], producer["bias_data"]
        producer["scale_data"], producer["bias_data"] = np.sign(s), b / np.abs(s)
    name = activation(conv, node, "binary_tanh")
    conv.precisions.setdefault(name, {})["result"] = "ap_int<2>"
    if np.any(scale != 1):
        out = node.output[0]
        a = conv.values[out]
        fake = onnx.helper.make_node("Mul", [out, ""], [out], name=node.name + "_scale")
        affine(conv, fake, a, np.asarray(scale, dtype=np.float64), 0.0)


def gather_before_quant(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` where Quant -> Gather (a Quant read only by a Gather, as QAT exports an
    RNN's quantized output sequence before taking its last step) becomes Gather -> Quant: the
    quantizer is elementwise, so the two commute exactly, and hls4ml then quantizes one step."""
    model = copy.deepcopy(model)
    nodes = list(model.graph.node)
    readers = consumers(model.graph)
    outputs = {o.name for o in model.graph.output}
    for q in nodes:
        after = readers.get(q.output[0], [])
        if q.op_type != "Quant" or q.output[0] in outputs or len(after) != 1 or after[0].op_type != "Gather" \
                or after[0].input[0] != q.output[0]:
            continue
        g = after[0]
        x, gathered = q.input[0], g.output[0]
        g.input[0], g.output[0] = x, q.output[0]  # Gather reads the Quant's input...
        q.input[0], q.output[0] = q.output[0], gathered  # ...and the Quant reads the gathered step
        i, j = nodes.index(q), nodes.index(g)
        nodes[i], nodes[j] = g, q
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
