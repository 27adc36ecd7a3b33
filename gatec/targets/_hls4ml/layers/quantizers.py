"""QONNX quantizers in the hls4ml conversion: precisions from `Quant` and `BipolarQuant` nodes.

A quantizer on a constant (weights) is folded with qonnx's own functions, and the weights'
precision follows from it. A quantizer on an activation becomes a cast to an `ap_fixed` type
with the quantizer's rounding and saturation: with zero point 0 and a power-of-two scale
2**-f, `Quant(bits=b, signed)` is exactly ap_fixed<b, b-f, AP_RND_CONV, AP_SAT> (qonnx's ROUND
rounds half to even, as AP_RND_CONV does; narrow range saturates symmetrically: AP_SAT_SYM).
`BipolarQuant` is hls4ml's binary_tanh (x >= 0 -> +1, else -1, as qonnx) times its scale.

Any other scale (a float one, as Brevitas's default quantizers learn, or one per channel) or a zero
point goes as hls4ml's own QONNX flow takes it (QuantToAlphaActivationAlpha): scale, quantize,
unscale, qonnx's y = s * (clip(round(x / s + z), qmin, qmax) - z) as three layers: an ApplyAlpha
x * (1/s) + z (per element: a per-channel s or z broadcast to the tensor in its memory order), a
cast to the integer type ap_fixed<b,b,rounding,AP_SAT> (ap_ufixed unsigned; narrow: AP_SAT_SYM),
and an ApplyAlpha q * s - s * z. Their constants and the scaled value are held with 40 fractional
bits (the scaled value saturating at twice the integer range, so that the cast clips it whatever
the input), and the model default is then gatec's widest (hls_config). This is not bit-exact: the
reference divides by s in float32, so a value within float32 error of a rounding boundary can
round the other way, one step s (summary.error_bound counts it). A weight quantizer with such a
scale is folded with qonnx's function (fold) and the folded values are held in the wide default.
"""
from __future__ import annotations

import copy
import re

import numpy as np
import onnx

from ....errors import GatecError
from ....ir import attributes
from ....ir.graph import consumers
from ..act import MOVES
from .registry import handles
from .activations import activation
from .arithmetic import affine

ROUNDING = {"ROUND": "AP_RND_CONV", "FLOOR": "AP_TRN", "ROUND_TO_ZERO": "AP_TRN_ZERO"}
WIDE_FRACTION = 40  # fractional bits of the constants and values around a float-scale quantizer
WIDE_CONST = f"ap_fixed<{WIDE_FRACTION + 24},24>"  # 1/s, z, s and s*z (gatec's QUANTIZED_INPUT)


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


def powers_of_two(scale) -> bool:
    """Is every element of `scale` a positive power of two?"""
    m, _ = np.frexp(np.asarray(scale, dtype=np.float64).reshape(-1))
    return bool(np.all(m == 0.5))


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
    zero = conv.const(node.input[2]) if node.op_type == "Quant" else None
    if node.op_type == "Quant" and (not powers_of_two(scale) or zero is None or np.any(zero != 0)):
        # folded values off any one ap_fixed grid (or shifted by a zero point): held in the wide default
        conv.float_scales[f"weight {name}"] = None
    if e is None or (zero is not None and np.any(zero != 0)):
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
    signed, narrow, rounding = bool(at.get("signed", 1)), bool(at.get("narrow", 0)), at.get("rounding_mode", "ROUND")
    if bits.size != 1 or float(bits.reshape(-1)[0]) != int(bits.reshape(-1)[0]) or int(bits.reshape(-1)[0]) < 1:
        raise conv.fail(node, f"the bit width must be one whole number >= 1, not {bits.reshape(-1).tolist()}")
    bits = int(bits.reshape(-1)[0])
    if rounding not in ROUNDING:
        raise conv.fail(node, f"rounding mode {rounding}: ap_fixed rounds as ROUND (AP_RND_CONV), FLOOR (AP_TRN) "
                              f"or ROUND_TO_ZERO (AP_TRN_ZERO) only")
    if narrow and not signed:
        raise conv.fail(node, "an unsigned narrow-range quantizer (0 .. 2**b - 2) has no ap_fixed saturation mode")
    if e is not None and np.all(zero == 0):  # exact: the cast to ap_fixed<b, b+e>
        conv.quantized = True
        name = activation(conv, node, "linear")
        conv.precisions.setdefault(name, {})["result"] = fixed_type(bits, e, signed, narrow, rounding, cast=True)
        return
    scale_quantize_unscale(conv, node, np.asarray(scale, dtype=np.float64), np.asarray(zero, dtype=np.float64),
                           bits, signed, narrow, rounding)


def scale_quantize_unscale(conv, node, scale: np.ndarray, zero: np.ndarray, bits: int, signed: bool, narrow: bool,
                           rounding: str) -> None:
    """A Quant with a float or per-channel scale or a zero point, as hls4ml's QONNX flow builds it:
    ApplyAlpha (1/s, z) -> cast to the integer type -> ApplyAlpha (s, -s*z)."""
    a = conv.act(node, node.input[0])
    for what, c in (("scale", scale), ("zero point", zero)):
        if np.broadcast_shapes(c.shape, a.shape_with_batch(1)) != a.shape_with_batch(1):
            # (also one that differs along the batch axis: not per sample)
            raise conv.fail(node, f"a {what} of shape {list(c.shape)} does not broadcast to one sample of "
                                  f"{list(a.shape)}")
    if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
        raise conv.fail(node, "the scale must be positive")
    if not np.all(np.isfinite(zero)):
        raise conv.fail(node, "the zero point must be finite")
    conv.quantized = True
    s, z = a.physical(scale), a.physical(zero)  # per element, in the tensor's memory order (flat)
    n = s.size
    const = {"scale": WIDE_CONST, "bias": WIDE_CONST}
    scaled = conv.add({"name": conv.new_name("qscale"), "class_name": "ApplyAlpha", "inputs": [a.layer],
                       "n_in": n, "n_filt": -1, "scale_data": 1.0 / s, "bias_data": z, "_macs": n})
    # x / s + z, saturating beyond the quantizer's range (the cast then clips it as qonnx does), never wrapping
    conv.precisions[scaled] = {**const, "result": f"ap_fixed<{bits + 2 + WIDE_FRACTION},{bits + 2},AP_TRN,AP_SAT>"}
    cast = conv.add({"name": conv.new_name("quant"), "class_name": "Activation", "activation": "linear",
                     "inputs": [scaled]})
    conv.precisions[cast] = {"result": fixed_type(bits, 0, signed, narrow, rounding, cast=True)}
    unscaled = conv.add({"name": conv.new_name("qunscale"), "class_name": "ApplyAlpha", "inputs": [cast],
                         "n_in": n, "n_filt": -1, "scale_data": s, "bias_data": -s * z, "_macs": n})
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    largest = float(np.max(s * np.maximum(np.abs(low - z), np.abs(high - z))))
    integer = max(1, int(np.ceil(np.log2(largest + 1)))) + 1
    conv.precisions[unscaled] = {**const, "result": f"ap_fixed<{integer + WIDE_FRACTION},{integer}>"}
    conv.float_scales[unscaled] = (scaled, float(np.max(s)))
    conv.values[node.output[0]] = conv.same_layout(a, a.shape, layer=unscaled,
                                                   rnn=None if a.rnn == "seq" else a.rnn)


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


# the largest |f(a) - f(b)| / |a - b| of hls4ml's elementwise activations (Lipschitz constants)
GAINS = {"linear": 1.0, "relu": 1.0, "relu6": 1.0, "sigmoid": 0.25, "tanh": 1.0, "hard_sigmoid": 1.0,
         "hard_tanh": 1.0, "softmax": 1.0, "selu": 1.0507009873554805 * 1.6732632423543772}
TABLES, TABLE_ERROR = ("sigmoid", "tanh", "softmax", "elu", "selu"), 2.0 ** -8  # as summary.error_bound's
PASS = MOVES + ("GatecClip",)  # moves carry a difference unchanged; a clip's slope is at most 1


def float_scale_error(conv) -> float:
    """The most the outputs can move when float-scale quantizers round differently from the reference.

    The reference (qonnx's executor, float32) computes x / s + z in float32; the C simulation computes
    x * (1/s) + z with 40 fractional bits. Where x / s + z lies within float32 error of a rounding
    boundary the two round to neighbouring integers: the quantizer's output differs by one step s
    (per channel: at most max s). Downstream, |Q(a) - Q(b)| <= |a - b| + s for any quantizer (round
    and clip), so the difference e (the largest over a tensor's elements) propagates layer by layer:
    a Dense or convolution multiplies it by its largest absolute row sum, max_j sum_i |W_ij| (over
    input channels and kernel positions for a convolution), an ApplyAlpha by max |scale|, an
    activation by its largest slope (ReLU, tanh 1, sigmoid 1/4, LeakyReLU/ELU/PReLU max(1, alpha)),
    pooling, moves and concatenation by 1, an add/subtract adds its inputs' e (average: half), a
    max/min takes the larger; a float-scale quantizer adds its step, a power-of-two one (exact for
    equal inputs) its LSB once its input differs, a binarizer 2 (times its scale after it); a
    sigmoid/tanh/softmax/ELU table adds its own error (2**-8, as error_bound counts it), which a
    quantizer after it may turn into a step. For a
    chain quantizer -> Dense W1 -> ... -> Dense Wn -> output: s * |W1|_inf * ... * |Wn|_inf. A
    worst case (every element of a tensor flipped the same way at once); such flips are rare (a
    value within ~2**-24 relative of a boundary), so measured errors are mostly float32 rounding.
    A layer through which no bound is derived here (recurrent layers, products of two tensors, logic
    layers) after a float-scale quantizer is refused with its name."""
    if not any(v is not None for v in conv.float_scales.values()):
        return 0.0
    steps = {k: v for k, v in conv.float_scales.items() if v is not None}
    by_name = {layer["name"]: layer for layer in conv.layers}
    inner = set()  # each quantizer's scaling ApplyAlpha and cast: e is carried in the input's units
    for unscaled, (scaled, _) in steps.items():
        if unscaled in by_name:
            inner.update({scaled, by_name[unscaled]["inputs"][0]})
    err: dict[str, float] = {}
    for layer in conv.layers:
        name, kind = layer["name"], layer["class_name"]
        ins = [err.get(i, 0.0) for i in layer.get("inputs", [])]
        e = max(ins, default=0.0)
        if name in steps:
            err[name] = e + steps[name][1]
            continue
        if name in inner or kind in PASS or "Pooling" in kind:
            err[name] = e
            continue
        table = TABLE_ERROR if kind == "GatecLookup" or layer.get("activation") in TABLES else 0.0
        if e == 0.0:
            err[name] = table  # a table's own error: a quantizer after it may round it the other way
            continue
        cast = conv.precisions.get(name, {}).get("result") if kind == "Activation" else None
        if kind in ("Dense", "Conv1D", "Conv2D"):
            w = np.abs(np.asarray(layer["weight_data"], dtype=np.float64))
            e *= float(np.max(w.reshape(-1, w.shape[-1]).sum(axis=0)))
        elif kind.startswith("DepthwiseConv"):
            w = np.abs(np.asarray(layer["depthwise_data"], dtype=np.float64))
            e *= float(np.max(w.reshape(-1, w.shape[-2] * w.shape[-1]).sum(axis=0)))
        elif kind == "ApplyAlpha":
            e *= float(np.max(np.abs(layer["scale_data"])))
        elif kind == "Activation" and layer["activation"] == "binary_tanh":
            e = 2.0
        elif kind == "Activation" and cast is not None:  # a power-of-two quantizer's cast: one LSB more
            width, integer = (int(v) for v in re.match(r"ap_u?fixed<(\d+),(-?\d+)", cast).groups())
            e += 2.0 ** (integer - width)
        elif kind in ("Activation", "HardActivation", "Softmax") and layer.get("activation") in GAINS:
            e *= GAINS[layer["activation"]]
        elif kind in ("LeakyReLU", "ELU"):
            e *= max(1.0, abs(float(layer["activ_param"])))
        elif kind == "PReLU":
            e *= max(1.0, float(np.max(np.abs(layer["param_data"]))))
        elif kind == "Merge" and layer["op"] in ("add", "subtract"):
            e = float(sum(ins))
        elif kind == "Merge" and layer["op"] == "average":
            e = float(sum(ins)) / 2
        elif kind == "Merge" and layer["op"] in ("maximum", "minimum"):
            pass
        else:
            raise GatecError(f"fpga (hls4ml): layer '{name}' ({kind}{' ' + layer['op'] if kind == 'Merge' else ''}) "
                             f"reads values a float-scale quantizer rounded: no error bound is derived through it, "
                             f"so the C simulation cannot be verified (use power-of-two scales)")
        err[name] = e + table
    return max((err.get(o, 0.0) for o in conv.outputs), default=0.0)
