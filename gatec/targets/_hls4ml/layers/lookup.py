"""Elementwise functions hls4ml has no exact layer for, as gatec extension layers (inline C++, the
way logic.py adds the logic layers; Vivado and Vitis backends):

- `GatecLookup`: f(x) from a table over [lo, hi] read at the nearest entry (hls4ml's own tables
  truncate the index and clamp outside [-8, 8), so softplus(20) came out as 8), and outside that
  range f's asymptote a * x + b. Erf (GELU's exact form: x * 0.5 * (1 + erf(x / sqrt 2)), as
  PyTorch exports it) and Softplus use it; the error is at most max|f'| * step / 2 plus the
  asymptote's distance (and 2**-22 for the entries), kept under 2**-8 (one table in
  summary.error_bound).
- `GatecClip`: min(max(x, lo), hi) exactly, for the Clip bounds hls4ml has no activation for.
"""
from __future__ import annotations

import math

import numpy as np

from ....ir import attributes
from .registry import handles

BACKENDS = ("Vivado", "Vitis")
WIDE = "ap_fixed<48,20>"  # holds any input type's value and the index arithmetic exactly
ENTRY_BITS = 21  # table entries are integers: f(x) * 2**21 rounded (|f| < 2**10)
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

    class GatecLookup(Layer):
        _expected_attributes = [Attribute("n_in"), Attribute("lo", value_type=float),
                                Attribute("step_bits"), Attribute("table", value_type=list),
                                Attribute("below", value_type=list), Attribute("above", value_type=list)]

        def initialize(self):
            self.add_output_variable(self.get_input_variable().shape)

    class GatecClip(Layer):
        _expected_attributes = [Attribute("n_in"), Attribute("lo", value_type=float),
                                Attribute("hi", value_type=float)]

        def initialize(self):
            self.add_output_variable(self.get_input_variable().shape)

    def line(a: float, b: float) -> str:
        return f"{WIDE}({float(a)!r}) * x + {WIDE}({float(b)!r})"

    class LookupTemplate(FunctionCallTemplate):
        def __init__(self):
            super().__init__(GatecLookup, include_header=[])

        def format(self, node):
            src, dst = node.get_input_variable().name, node.get_output_variable().name
            table, lo, bits = node.get_attr("table"), node.get_attr("lo"), node.get_attr("step_bits")
            hi = lo + (len(table) - 1) * 2.0 ** -bits
            # integers, not ap_fixed literals: g++ took 20 s over 4097 ap_fixed constructors
            entries = ", ".join(str(int(v)) for v in table)
            return ["{",
                    f"    static const int table[{len(table)}] = {{{entries}}};",
                    f"    for (int i = 0; i < {node.get_attr('n_in')}; i++) {{",
                    "        #pragma HLS UNROLL",
                    f"        {WIDE} x = {src}[i];",
                    f"        if (x < {WIDE}({lo!r})) {dst}[i] = {line(*node.get_attr('below'))};",
                    f"        else if (x > {WIDE}({hi!r})) {dst}[i] = {line(*node.get_attr('above'))};",
                    # the nearest entry: (x - lo) / step rounded, step a power of two (exact)
                    f"        else {dst}[i] = ap_fixed<64,32>(table[((x - {WIDE}({lo!r})) * {2 ** bits} + {WIDE}(0.5))"
                    f".to_int()]) >> {ENTRY_BITS};",
                    "    }",
                    "}"]

    class ClipTemplate(FunctionCallTemplate):
        def __init__(self):
            super().__init__(GatecClip, include_header=[])

        def format(self, node):
            src, dst = node.get_input_variable().name, node.get_output_variable().name
            lo, hi = node.get_attr("lo"), node.get_attr("hi")
            return ["{",
                    f"    for (int i = 0; i < {node.get_attr('n_in')}; i++) {{",
                    "        #pragma HLS UNROLL",
                    f"        {WIDE} x = {src}[i];",
                    f"        if (x < {WIDE}({lo!r})) x = {WIDE}({lo!r});",
                    f"        if (x > {WIDE}({hi!r})) x = {WIDE}({hi!r});",
                    f"        {dst}[i] = x;",
                    "    }",
                    "}"]

    register_layer("GatecLookup", GatecLookup)
    register_layer("GatecClip", GatecClip)
    for name in BACKENDS:
        backend = hls4ml.backends.get_backend(name)
        backend.register_template(LookupTemplate)
        backend.register_template(ClipTemplate)
    _registered = True


def elementwise_layer(conv, node, layer: dict) -> None:
    a = conv.act(node, node.input[0])
    layer = {"name": conv.new_name(layer["class_name"][5:].lower()), "inputs": [a.layer],
             "n_in": int(np.prod(a.phys)), **layer}
    name = conv.add(layer)
    conv.custom = True
    conv.values[node.output[0]] = conv.same_layout(a, a.shape, layer=name, rnn=None if a.rnn == "seq" else a.rnn)


# f, the table's range (lo, hi), step 2**-bits, and the asymptotes (a, b) below lo and above hi:
# erf: |erf'| <= 1.13, half a step 2**-10 -> 0.0011; 1 - erf(4) = 1.5e-8.
# softplus: slope <= 1, half a step 2**-9 -> 0.002; softplus(-8) = softplus(8) - 8 = 3.4e-4.
FUNCTIONS = {
    "Erf": (np.vectorize(math.erf), -4.0, 4.0, 9, (0.0, -1.0), (0.0, 1.0)),
    "Softplus": (lambda x: np.logaddexp(0.0, x), -8.0, 8.0, 8, (0.0, 0.0), (1.0, 0.0)),
}


@handles(*FUNCTIONS)
def lookup(conv, node):
    f, lo, hi, bits, below, above = FUNCTIONS[node.op_type]
    x = lo + np.arange(int((hi - lo) * 2 ** bits) + 1) * 2.0 ** -bits
    table = np.round(f(x) * 2.0 ** ENTRY_BITS).astype(np.int64)
    elementwise_layer(conv, node, {"class_name": "GatecLookup", "lo": lo, "step_bits": bits,
                                   "table": table.tolist(), "below": list(below), "above": list(above)})


def clip_bounds(conv, node) -> tuple[float, float]:
    attrs = attributes(node)
    bounds = [attrs.get("min", -np.inf), attrs.get("max", np.inf)]
    for i in (1, 2):  # Clip-11+: the bounds are inputs
        if len(node.input) > i and node.input[i]:
            value = conv.const(node.input[i])
            if value is None:
                raise conv.fail(node, "the bounds must be constants")
            bounds[i - 1] = float(value)
    return float(bounds[0]), float(bounds[1])


def clip(conv, node, lo: float, hi: float) -> None:
    """Clip bounds no hls4ml activation has: exact in C++ (the bounds rounded to 2**-28)."""
    # an infinite bound: one past any value the types hold (WIDE holds +-2**19)
    elementwise_layer(conv, node, {"class_name": "GatecClip", "lo": max(lo, -2.0 ** 18), "hi": min(hi, 2.0 ** 18)})
