"""Post-training quantization: QONNX `Quant` nodes inserted into the IR's graph (what the
`quantize` pass and the `gatec quantize` command run: `quantize()`).

Every weight layer (MatMul, Gemm, Conv with a constant weight; GRU and LSTM with constant W and
R) gets its weight quantized (signed, narrow range: symmetric around zero), its input
activation quantized (unsigned when calibration never saw a negative value), and its bias
quantized on the grid of input scale x weight scale with enough bits never to clip, the form
integer and fixed-point hardware computes exactly. Scales are powers of two by default (what
hls4ml maps exactly onto `ap_fixed`), from the max |value| (min/max calibration) or a percentile
of |value| of the calibration data. The values follow qonnx's `Quant` exactly: x / scale,
clipped to the integer range, rounded half to even, times scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import helper, numpy_helper

from ..errors import GatecError
from ..ir import IR, QONNX_DOMAIN, attributes, constants_to_initializers
from ..ir.graph import consumers
from ..ir.fixed_point import int_range, quant, scale_for, weight_scale
from ..ir.sampling import input_sets
from .prune_common import run_ort

CALIBRATIONS = ("minmax", "percentile")


@dataclass
class WeightLayer:
    node: str  # the ONNX node's name (or its first output)
    op: str
    weights: list[str]  # W (and R for GRU/LSTM): initializer names
    bias: str | None  # an initializer added to the layer's output
    bias_reader: str | None  # the node that reads it: the layer, or the Add after a MatMul
    input: str  # the activation the layer reads
    channel_axis: int  # the output-channel axis of the weights (per-channel scales)
    macs: int = 0  # per sample, at the example shape


def weight_layers(ir: IR) -> list[WeightLayer]:
    """The layers that multiply by a constant weight, in graph order."""
    from ..ir.summary import node_macs, shapes_of
    graph = ir.model.graph
    inits = {i.name for i in graph.initializer}
    readers = consumers(graph)
    shapes = shapes_of(ir)
    batch = max(1, ir.inputs[0].shape[ir.inputs[0].batch_axis]) if ir.inputs else 1
    layers = []
    for n in graph.node:
        name = n.name or n.output[0]
        if n.op_type in ("MatMul", "Gemm", "Conv") and len(n.input) > 1 and n.input[1] in inits:
            bias = n.input[2] if len(n.input) > 2 and n.input[2] in inits else None
            reader = name
            if n.op_type == "MatMul":
                after = readers.get(n.output[0], [])
                if len(after) == 1 and after[0].op_type == "Add":
                    other = [i for i in after[0].input if i != n.output[0]]
                    bias = other[0] if other and other[0] in inits else None
                    reader = after[0].name or after[0].output[0]
            axis = {"MatMul": -1, "Gemm": 0 if attributes(n).get("transB", 0) else -1, "Conv": 0}[n.op_type]
            layers.append(WeightLayer(name, n.op_type, [n.input[1]], bias, reader, n.input[0], axis))
        elif n.op_type in ("GRU", "LSTM") and n.input[1] in inits and n.input[2] in inits:
            layers.append(WeightLayer(name, n.op_type, [n.input[1], n.input[2]], None, None, n.input[0], 1))
        else:
            continue
        layers[-1].macs = node_macs(n, shapes) // batch
    return layers


# ---------------------------------------------------------------- the quantizer

def quantize_weight(w: np.ndarray, bits: int, axis: int | None, pow2: bool = True) -> np.ndarray:
    return quant(w, weight_scale(w, bits, axis, pow2), bits, True, True).astype(w.dtype)


# ---------------------------------------------------------------- calibration

def calibrate(ir: IR, data, tensors: list[str], method: str = "minmax", percentile: float = 99.99) -> dict:
    """{tensor: (min, max_abs)} over the calibration inputs (the data when given, else random
    draws from the input specs); max_abs is the percentile of |x| with method 'percentile'."""
    if method not in CALIBRATIONS:
        raise GatecError(f"unknown calibration '{method}' (use {' or '.join(CALIBRATIONS)})")
    sets = [data] if data is not None else input_sets(ir, 256)
    graph_inputs = {s.name for s in ir.inputs}
    extra = [t for t in tensors if t not in graph_inputs]
    runs = run_ort(ir, sets, extra)
    n_out = len(ir.model.graph.output)
    values: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    for inputs, outs in zip(sets, runs):
        named = dict(zip([s.name for s in ir.inputs], inputs))
        named.update(zip(extra, outs[n_out:]))
        for t in tensors:
            values[t].append(np.asarray(named[t], dtype=np.float64).ravel())
    stats = {}
    for t, parts in values.items():
        x = np.concatenate(parts)
        top = np.percentile(np.abs(x), percentile) if method == "percentile" else np.abs(x).max(initial=0.0)
        stats[t] = (float(x.min(initial=0.0)), float(top))
    return stats


# ---------------------------------------------------------------- rewriting the graph

def quantize(ir: IR, weight_bits, act_bits=8, data=None, method: str = "minmax", per_channel: bool = False,
             pow2: bool = True, percentile: float = 99.99) -> tuple[IR, list[dict]]:
    """Insert Quant nodes; `weight_bits`/`act_bits` are one width for all or {layer node: bits}.
    Returns the new IR and one row per layer (bits, scales, MACs)."""
    if ir.kind != "arithmetic" or ir.is_qonnx:
        raise GatecError("post-training quantization takes a float arithmetic model (this one is "
                         + ("a logic network)" if ir.kind == "logic" else "already quantized)"))
    ir = ir.copy()
    constants_to_initializers(ir.model)
    layers = weight_layers(ir)
    if not layers:
        raise GatecError("the model has no layer with constant weights (MatMul, Gemm, Conv, GRU, LSTM) to quantize")
    wbits = per_layer(weight_bits, layers, "weight")
    abits = per_layer(act_bits, layers, "activation")
    stats = calibrate(ir, data, sorted({l.input for l in layers}), method, percentile)
    graph = ir.model.graph
    inits = {i.name: i for i in graph.initializer}
    new_inits, quant_nodes, rename, rows = [], {}, {}, []

    def const(name, value):
        new_inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def quant_node(x, scale, bits, signed, narrow, out):
        inputs = [x, const(f"{out}_scale", scale), const(f"{out}_zeropt", 0.0), const(f"{out}_bitwidth", bits)]
        return helper.make_node("Quant", inputs, [out], name=out, domain=QONNX_DOMAIN, signed=int(signed),
                                narrow=int(narrow), rounding_mode="ROUND")

    act_scale = {}
    for layer in layers:
        bits_a = max(abits[l.node] for l in layers if l.input == layer.input)  # a tensor read twice: its widest
        lo, top = stats[layer.input]
        signed = lo < 0
        if layer.input not in act_scale:
            scale = scale_for(top, int_range(bits_a, signed, False)[1], pow2)
            act_scale[layer.input] = scale
            out = f"{layer.input}_quant"
            quant_nodes.setdefault(layer.input, []).append(quant_node(layer.input, scale, bits_a, signed, False, out))
        w_scales = []
        for w_name in layer.weights:
            w = numpy_helper.to_array(inits[w_name])
            s = weight_scale(w, wbits[layer.node], layer.channel_axis if per_channel else None, pow2)
            w_scales.append(s)
            out = f"{w_name}_quant"
            quant_nodes.setdefault(None, []).append(quant_node(w_name, s, wbits[layer.node], True, True, out))
            rename[(layer.node, w_name)] = out
        rename[(layer.node, layer.input)] = f"{layer.input}_quant"
        if layer.bias is not None:
            b = numpy_helper.to_array(inits[layer.bias])
            s = act_scale[layer.input] * w_scales[0]
            s = s.reshape(b.shape) if s.size == b.size and s.size > 1 else s.reshape(())
            bias_bits = int(min(32, max(8, np.ceil(np.log2(np.abs(b / s).max(initial=0.0) + 1)) + 1)))
            out = f"{layer.bias}_quant"
            quant_nodes.setdefault(None, []).append(quant_node(layer.bias, s, bias_bits, True, False, out))
            rename[(layer.bias_reader, layer.bias)] = out
        rows.append({"layer": layer.node, "op": layer.op, "weight_bits": wbits[layer.node], "act_bits": bits_a,
                     "act_signed": bool(signed), "macs": layer.macs,
                     "bops": layer.macs * wbits[layer.node] * bits_a,
                     "params": int(sum(np.prod(inits[w].dims) for w in layer.weights)),
                     "act_scale": float(act_scale[layer.input]),
                     "weight_scale": [float(np.max(s)) for s in w_scales]})

    nodes = list(quant_nodes.get(None, []))  # weights and biases first: they read only initializers
    for n in graph.node:
        name = n.name or n.output[0]
        for i, x in enumerate(n.input):
            nodes.extend(quant_nodes.pop(x, []))  # an activation's Quant just before its first reader
            n.input[i] = rename.get((name, x), x)
        nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    if not any(o.domain == QONNX_DOMAIN for o in ir.model.opset_import):
        ir.model.opset_import.append(helper.make_opsetid(QONNX_DOMAIN, 1))
    return ir, rows


def per_layer(bits, layers: list[WeightLayer], what: str) -> dict[str, int]:
    if isinstance(bits, dict):
        unknown = sorted(set(bits) - {l.node for l in layers})
        if unknown:
            raise GatecError(f"{what} bits given for '{unknown[0]}', which is not a weight layer; layers: "
                             + ", ".join(l.node for l in layers))
        out = {l.node: int(bits.get(l.node, 8)) for l in layers}
    else:
        out = {l.node: int(bits) for l in layers}
    for node, b in out.items():
        if not 2 <= b <= 32:
            raise GatecError(f"{what} bits {b} for layer '{node}': use 2 to 32")
    return out
