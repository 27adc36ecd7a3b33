"""`--precision auto` (the default for float models): each layer's fixed-point types from the
values it takes on the emulator's inputs (--data, else drawn ones, and its second, drawn set), as hls4ml's
per-layer (`granularity='name'`) configuration, but computed.

- result: ap_fixed<W,I,AP_RND,AP_SAT>, I the bits of the largest |value| seen with a factor 2 of
  headroom and the sign; the rest of the W bits fractional. Rounding, not hls4ml's default
  truncation: truncation's errors all have one sign, so a sum over a wide layer adds them up (a
  Conv2d -> Flatten -> Linear(288) was off by 0.048 at ap_fixed<16,6>); rounded ones partly
  cancel. Saturation: a value past the headroom is clipped, never wrapped around.
- weights and biases: W bits, the integer bits their own largest |value| needs.
- a matrix product's accumulator: every product exact (the weight's and the input's fractional
  bits), the result's integer bits (the sum wraps in two's complement, so only the final sum has
  to fit).

Layers no graph value maps to (gatec's own helper layers) keep the model default; recurrent
layers keep their tables and state types (layers/recurrent.py)."""
from __future__ import annotations

import math

import numpy as np
import onnx

from ...errors import GatecError
from ...ir import IR
from ...ir.fixed_point import width_and_integer
from ...ir.graph import tensor_types
from ...ir.sampling import checked_sets, row_chunks
from .act import MOVES, RECURRENT

WIDTH = 16
SAMPLES = 256  # the emulator's default sample count
MAX_ACCUM = 64
# layers that move or pick values: the type of their input
HOLDS_INPUTS = MOVES + ("MaxPooling1D", "MaxPooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D")


def parse(text: str | None) -> int | None:
    """The total width of `auto` / `auto<W>`, or None when `text` names no automatic precision."""
    if text is None:
        return None
    text = str(text).replace(" ", "")
    if text == "auto":
        return WIDTH
    if text.startswith("auto<") and text.endswith(">") and text[5:-1].isdigit() and 4 <= int(text[5:-1]) <= 64:
        return int(text[5:-1])
    if text.startswith("auto"):
        raise GatecError(f"--precision {text}: give auto, or auto<W> with a total width W from 4 to 64")
    return None


def integer_bits(largest: float, headroom: float = 1.0) -> int:
    """Bits left of the point (sign included) for values up to `largest` * `headroom`."""
    if not largest > 0 or not np.isfinite(largest):
        return 1
    return max(1, math.floor(math.log2(largest * headroom)) + 2)


def fixed(width: int, integer: int, modes: str = "") -> str:
    width = max(width, integer + 4)  # values this large still get 4 fractional bits
    return f"ap_fixed<{width},{integer}{modes}>"


def observed(ir: IR, graph: onnx.GraphProto, tensors: dict[str, list[str]], data) -> dict[str, float]:
    """Per layer, the largest |value| of the graph values it holds, over the calibration sets."""
    model = onnx.ModelProto()
    model.CopyFrom(ir.model)
    model.graph.CopyFrom(graph)
    types = tensor_types(onnx.shape_inference.infer_shapes(model))
    known = {o.name for o in model.graph.output}
    values = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output}
    tensors = {layer: [t for t in ts if t in values] for layer, ts in tensors.items()}
    tensors = {layer: ts for layer, ts in tensors.items() if ts}
    names = sorted({t for ts in tensors.values() for t in ts})
    for name in names:
        if name not in known:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name) or 1, None))
    from ...ir.runtime import ort_session, run_session
    failure = "fpga (hls4ml): --precision auto: ONNX Runtime cannot run the model to profile it"
    session = ort_session(model, failure=failure, optimize=False)
    feeds = [i.name for i in session.get_inputs()]
    largest = dict.fromkeys(names, 0.0)
    sets, size = checked_sets(ir, SAMPLES, data)  # what the emulator runs: the data (or drawn inputs), a second set
    per_row = sum(int(np.prod(a.shape)) // max(1, a.shape[s.batch_axis]) for a, s in zip(sets[0], ir.inputs))
    for arrays in sets:
        n = arrays[0].shape[ir.inputs[0].batch_axis]
        # a fixed batch: that many rows at a time; else as many as keep every value of a row's
        # layers (a few times its inputs) within about 2**24 values (a 512 x 512 image: 2 rows)
        step = size or max(1, min(n, 2 ** 21 // max(1, per_row)))
        for chunk in row_chunks(arrays, ir, step):
            for name, v in zip(names, run_session(session, dict(zip(feeds, chunk)), failure, names)):
                largest[name] = max(largest[name], float(np.abs(np.asarray(v, dtype=np.float64)).max(initial=0.0)))
    return {layer: max(largest[t] for t in ts) for layer, ts in tensors.items()}


def choose(layers: list[dict], ranges: dict[str, float], width: int) -> dict[str, dict]:
    """hls4ml's per-layer Precision entries for `layers` (in graph order) from the observed ranges."""
    types: dict[str, dict] = {}
    fraction: dict[str, int] = {}  # per layer, its result's fractional bits
    # an average pooling's input keeps the default (truncating, wrapping) modes: hls4ml's Catapult
    # average is written for those alone, and otherwise sums in the input's own saturating type
    averaged = {i for l in layers if "AveragePooling" in l["class_name"] for i in l.get("inputs", [])}
    for layer in layers:
        name, kind = layer["name"], layer["class_name"]
        if kind in RECURRENT:
            continue
        inputs = [i for i in layer.get("inputs", []) if i in fraction]
        if name in ranges:
            integer = integer_bits(ranges[name], 2.0)
        elif kind in HOLDS_INPUTS and inputs:  # holds its input's values
            integer = max(width - fraction[i] for i in inputs)
        else:
            continue
        entry = {"result": fixed(width, integer, "" if name in averaged else ",AP_RND,AP_SAT")}
        fraction[name] = max(width, integer + 4) - integer
        for key in sorted(k for k in layer if k.endswith("_data") and isinstance(layer[k], np.ndarray)):
            entry[key[:-5]] = fixed(width, integer_bits(float(np.abs(layer[key]).max(initial=0.0))))
        if "weight_data" in layer and inputs:
            w_integer = integer_bits(float(np.abs(layer["weight_data"]).max(initial=0.0)))
            frac = max(width, w_integer + 4) - w_integer + fraction[inputs[0]]
            frac = min(frac, MAX_ACCUM - integer)
            entry["accum"] = f"ap_fixed<{integer + frac},{integer}>"
        types[name] = entry
    return types


def fewest_fraction_bits(layers: list[dict], types: dict[str, dict], default: int = 10) -> int:
    """The fewest fractional bits of any layer's result (the error bound's LSB): a chosen type's,
    or the model default's (`default`) for a computing layer that got none."""
    bits = [w - i for w, i in (width_and_integer(t["result"]) for t in types.values())]
    if any(l["name"] not in types and l["class_name"] not in HOLDS_INPUTS for l in layers):
        bits.append(default)
    return min(bits, default=default)
