"""QONNX/FINN `MultiThreshold` (y = out_bias + out_scale * #(thresholds[c] <= x), the activations of
FINN's streamlined graphs) as a gatec hls4ml extension layer, `GatecMultiThreshold` (inline C++ for
the Vivado and Vitis backends, the way lookup.py adds its layers).

Per element the C++ counts the thresholds of the element's channel that x meets, comparing in the
layer's input type itself: x of type ap_fixed<W,I> lies on the grid 2**-(W-I), so x >= t exactly
when x's raw integer r = x * 2**(W-I) exceeds ceil(t * 2**(W-I)) - 1. Those integers are computed
here from the thresholds' exact values when the project is written (the input's type is then
known), so the comparison is exact for any threshold, on the input's grid or not: thresholds no
value of the type can reach count always or never, and are not compared. The count then reads a
table of the T + 1 levels out_scale * n + out_bias as qonnx computes them in float32, held in a
result type chosen to hold every level exactly (its fractional bits those the levels need, up to
64 bits in all: beyond that a level is truncated, by less than its LSB: `_round_error`, which
summary.error_bound adds).

So the layer computes exactly what the reference computes whenever its input in the C simulation
equals the reference's input: integer-valued activations (streamlined FINN graphs: integer weights
times the levels of the MultiThreshold before), or the model input itself (held with 40 fractional
bits in a quantized model). A Dense or convolution feeding it gets a result type that keeps its
full sum (ap_fixed<64,24>), so that only a reference sum rounded in float32 (|sum| >= 2**24, or
float inputs) can differ, by float32 rounding; an x within it of a threshold would count one
threshold more or less (one out_scale step), which the verification on the model's inputs shows.

The channel of each element follows the tensor's memory order (Act.physical: channels last after
gatec's channels-last convolutions, first in ONNX's order). io_stream is refused (the layer indexes
whole arrays)."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ....errors import GatecError
from ...cpu.quant import multithreshold_spec
from .registry import handles

BACKENDS = ("Vivado", "Vitis")
MAX_WIDTH = 64  # of the input type (the raw integers are long long) and of the result type
WIDE_SUM = "ap_fixed<64,24>"  # a Dense/convolution result read by a MultiThreshold: its sum kept whole
_registered = False


def raw_bounds(width: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)


def compared(thresholds, width: int, integer: int, signed: bool) -> tuple[list[int], list[list[int]]]:
    """Per channel: how many thresholds every value of ap_(u)fixed<width,integer> meets, and the
    raw integers m with x >= t <=> raw(x) > m for the others that some value meets."""
    lo, hi = raw_bounds(width, signed)
    frac = width - integer
    base, kept = [], []
    for row in np.asarray(thresholds, dtype=np.float64):
        n, ms = 0, []
        for t in row:
            if math.isnan(t) or t == math.inf:
                continue  # x >= NaN, x >= +inf: never
            if t == -math.inf:
                n += 1
                continue
            k = math.ceil(Fraction(float(t)) * Fraction(2) ** frac)  # x >= t <=> raw(x) >= k
            if k <= lo:
                n += 1
            elif k <= hi:
                ms.append(k - 1)
        base.append(n)
        kept.append(sorted(ms))
    return base, kept


def literal(v: int, signed: bool) -> str:
    if signed and v == -(1 << 63):
        return "(-9223372036854775807LL - 1)"
    return f"{v}LL" if signed else f"{v}ULL"


def level_type(levels: np.ndarray) -> tuple[str, float]:
    """(the ap_fixed type holding every level exactly, the most a level is truncated by: 0 unless
    the levels need more than MAX_WIDTH bits)."""
    values = [Fraction(float(v)) for v in np.asarray(levels, dtype=np.float64).reshape(-1)]
    frac = max((max(0, v.denominator.bit_length() - 1) for v in values), default=0)  # denominators: 2**k
    integer = 1
    while not (-(Fraction(2) ** (integer - 1)) <= min(values, default=0) and
               max(values, default=0) <= Fraction(2) ** (integer - 1) - Fraction(1, 2 ** frac)):
        integer += 1
    if integer + frac <= MAX_WIDTH:
        return f"ap_fixed<{integer + frac},{integer}>", 0.0
    frac = MAX_WIDTH - integer
    return f"ap_fixed<{MAX_WIDTH},{integer}>", 2.0 ** -frac


def register() -> None:
    """Register the layer and its template with hls4ml (once per process)."""
    global _registered
    if _registered:
        return
    import hls4ml
    from hls4ml.backends.template import FunctionCallTemplate
    from hls4ml.model.attributes import Attribute
    from hls4ml.model.layers import Layer, register_layer

    class GatecMultiThreshold(Layer):
        _expected_attributes = [Attribute("n_in"), Attribute("n_chan"), Attribute("thresholds", value_type=list),
                                Attribute("channel", value_type=list), Attribute("levels", value_type=list)]

        def initialize(self):
            if self.model.config.get_config_value("IOType") == "io_stream":
                raise GatecError(f"fpga (hls4ml): layer '{self.name}' (GatecMultiThreshold) is written for "
                                 f"io_parallel only, not io_stream")
            self.add_output_variable(self.get_input_variable().shape)

    class MultiThresholdTemplate(FunctionCallTemplate):
        def __init__(self):
            super().__init__(GatecMultiThreshold, include_header=[])

        def format(self, node):
            src, dst = node.get_input_variable(), node.get_output_variable()
            p = src.type.precision
            width, integer, signed = getattr(p, "width", None), getattr(p, "integer", None), getattr(p, "signed", True)
            if width is None or integer is None or width > MAX_WIDTH:
                raise GatecError(f"fpga (hls4ml): layer '{node.name}' (GatecMultiThreshold): its input type {p} is "
                                 f"not a fixed-point type of at most {MAX_WIDTH} bits")
            base, kept = compared(node.get_attr("thresholds"), width, integer, signed)
            n_chan, n = len(base), int(node.get_attr("n_in"))
            lo, hi = raw_bounds(width, signed)
            t = max((len(m) for m in kept), default=0)
            # padded with hi: raw(x) > hi never holds
            flat = [literal(v, signed) for m in kept for v in m + [hi] * (t - len(m))]
            raw = f"ap_{'' if signed else 'u'}int<{width}>"
            levels = node.get_attr("levels")
            lines = ["{",
                     f"    static const {dst.type.name} levels[{len(levels)}] = "
                     f"{{{', '.join(repr(float(v)) for v in levels)}}};"]
            if t:
                lines.append(f"    static const {'long long' if signed else 'unsigned long long'} "
                             f"thr[{n_chan * t}] = {{{', '.join(flat)}}};")
            if any(base):
                lines.append(f"    static const int base[{n_chan}] = {{{', '.join(map(str, base))}}};")
            if n_chan > 1:
                lines.append(f"    static const int ch[{n}] = {{{', '.join(map(str, node.get_attr('channel')))}}};")
            c = "ch[i]" if n_chan > 1 else "0"
            lines += [f"    for (int i = 0; i < {n}; i++) {{",
                      "        #pragma HLS UNROLL",
                      f"        int count = {f'base[{c}]' if any(base) else '0'};"]
            if t:
                lines += [f"        {raw} r = {src.name}[i].range({width - 1}, 0);  // x * 2**{width - integer}",
                          f"        for (int j = 0; j < {t}; j++) {{",
                          "            #pragma HLS UNROLL",
                          f"            count += (r > thr[{c} * {t} + j]);",
                          "        }"]
            lines += [f"        {dst.name}[i] = levels[count];", "    }", "}"]
            return lines

    register_layer("GatecMultiThreshold", GatecMultiThreshold)
    for name in BACKENDS:
        hls4ml.backends.get_backend(name).register_template(MultiThresholdTemplate)
    _registered = True


@handles("MultiThreshold")
def multi_threshold(conv, node):
    a = conv.act(node, node.input[0])
    thresholds = conv.const(node.input[1]) if len(node.input) > 1 else None
    if thresholds is None:
        raise conv.fail(node, "the thresholds must be a constant")
    try:
        axis, thresholds, levels = multithreshold_spec(node, np.asarray(thresholds), len(a.shape), a.shape)
    except GatecError as e:
        raise conv.fail(node, str(e).split(": ", 1)[-1]) from None
    if not np.all(np.isfinite(levels)):
        raise conv.fail(node, f"out_scale * n + out_bias is not finite for n = 0 .. {len(levels) - 1}")
    if axis == a.batch:
        raise conv.fail(node, "its channel axis is the batch axis")
    c = thresholds.shape[0]
    n = int(np.prod(a.phys))
    channel = []
    if c > 1:
        index = np.arange(c).reshape([c if i == axis else 1 for i in range(len(a.shape))])
        channel = a.physical(index).astype(int).tolist()  # each element's channel, in memory order
    producer = conv.layer(a.layer)
    if producer["class_name"] in ("Dense", "Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D") and \
            "result" not in conv.precisions.get(a.layer, {}):
        conv.precisions.setdefault(a.layer, {})["result"] = WIDE_SUM  # the sum compared whole, not truncated
    result, error = level_type(levels)
    register()
    conv.quantized = True  # the quantizers' types: the model input held exactly, sums kept wide
    layer = {"name": conv.new_name("multithreshold"), "class_name": "GatecMultiThreshold", "inputs": [a.layer],
             "n_in": n, "n_chan": int(c), "thresholds": np.asarray(thresholds, dtype=np.float64).tolist(),
             "channel": channel, "levels": [float(v) for v in levels], "_macs": 0}
    if error:
        layer["_round_error"] = error
    name = conv.add(layer)
    conv.precisions[name] = {"result": result}
    conv.values[node.output[0]] = conv.same_layout(a, a.shape, layer=name, rnn=None if a.rnn == "seq" else a.rnn)
