"""The gpu target's engine graph: a strongly typed ONNX model, the precision explicit in it.

TensorRT 11 builds strongly typed networks only (no FP16/INT8 builder flags): every tensor's
type comes from the graph. fp32 is the traced graph; fp16 is gatec's rewrite
(fp16.py: fp32 inputs and outputs, casts at the edges) with fp32 islands where fp16 would change
results (below); int8 is the QONNX graph with its quantizers as symmetric QuantizeLinear/
DequantizeLinear pairs (zero point 0, int8), the float ops between them fp32. Shape inference
then writes every intermediate tensor's type into value_info, and a tensor it cannot type is
refused.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ...errors import GatecError
from ...ir.fixed_point import int_range
from ...ir.graph import producers, tensor_types
from ..cpu.quant import Lowering, attributes, channel_axis, describe

FP16_MAX = 65504.0

# Kept fp32 in an fp16 engine: accumulations over a whole axis (softmax, normalization, reductions),
# recurrences (their state is fed back every step, so its rounding compounds) and control flow.
FP32_OPS = {"Softmax", "LogSoftmax", "LayerNormalization", "GroupNormalization", "InstanceNormalization",
            "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceL1", "ReduceLogSumExp", "ReduceProd",
            "GRU", "LSTM", "RNN", "Loop", "Scan", "If", "CumSum"}
# Ops whose result is a choice (which experts, which class, which branch, which integer a quantizer
# rounds to): the arithmetic that feeds them stays fp32 back to its last matrix product, so that fp16
# rounding does not flip a near tie into another route (a mixture of experts' router) or another
# quantization step (a QONNX model's activations: so a quantized model's fp16 graph is mostly fp32;
# --precision int8 is its engine).
DECISION_OPS = {"TopK", "ArgMax", "ArgMin", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal", "Round",
                "Floor", "Ceil"}
MATRIX_OPS = {"Gemm", "MatMul", "Conv", "ConvTranspose", "Einsum"}
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Neg", "Abs", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid",
               "Softplus", "Exp", "Log", "Sqrt", "Pow", "Clip", "Identity", "Reshape", "Flatten", "Squeeze",
               "Unsqueeze", "Transpose", "Slice", "Gather", "Concat", "Cast", "BatchNormalization", "Max", "Min"}


def named(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every node named uniquely (the fp32 islands and the manifest go by name)."""
    seen = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return model


def decision_feeders(graph: onnx.GraphProto) -> set[str]:
    """Names of the nodes that compute a decision op's inputs: back through elementwise ops, up to
    and including the first matrix product on each path."""
    made_by = producers(graph)
    found, todo = set(), [i for n in graph.node if n.op_type in DECISION_OPS for i in n.input]
    while todo:
        node = made_by.get(todo.pop())
        if node is None or node.name in found:
            continue
        if node.op_type in MATRIX_OPS:
            found.add(node.name)
        elif node.op_type in ELEMENTWISE:
            found.add(node.name)
            todo += list(node.input)
    return found


def float16_graph(model: onnx.ModelProto, fp32_outputs: set[str] = frozenset()) -> onnx.ModelProto:
    """fp16 with fp32 islands: FP32_OPS, what feeds a decision, and the nodes writing `fp32_outputs`."""
    from .fp16 import convert
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            big = np.abs(numpy_helper.to_array(init)).max(initial=0)
            if big > FP16_MAX:
                raise GatecError(f"initializer '{init.name}' holds {big:.4g}, beyond fp16's range (65504); "
                                 f"use --precision fp32")
    model = named(model)
    keep = decision_feeders(model.graph) | {n.name for n in model.graph.node if set(n.output) & fp32_outputs}
    return convert(model, lambda node: node.op_type in FP32_OPS or node.name in keep)


class SymmetricInt8(Lowering):
    """QONNX quantizers as int8 Q/DQ with zero point 0 (what int8 engines take): weights become
    int8 initializers behind a DequantizeLinear (one scale, or one per output channel),
    activations QuantizeLinear/Clip/DequantizeLinear with one scale. Quantizers of constants
    wider than 8 bits (biases) fold to their float values; BipolarQuant and Trunc become float
    ops as in the cpu target."""

    def quant(self, node) -> None:
        scale = self.constant(node, 1, "scale").astype(np.float32)
        zeropt = self.constant(node, 2, "zero point")
        bits = float(self.constant(node, 3, "bit width"))
        a = attributes(node)
        signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
        constant = node.input[0] in self.consts
        if constant and bits > 8:
            return super().quant(node)  # a bias: its quantized float values
        why = None
        if np.any(zeropt != 0):
            why = "has a zero point other than 0 (int8 engines quantize symmetrically)"
        elif bits != int(bits) or not 2 <= bits <= 8:
            why = f"is {bits:g} bits wide (int8 engines hold 2 to 8)"
        elif not signed and bits > 7:
            why = ("is unsigned 8-bit (0..255), which int8 (-128..127) cannot hold; quantize it signed, or "
                   "unsigned with 7 bits (gatec quantize --act-bits 7)")
        elif a.get("rounding_mode", "ROUND").upper() not in ("ROUND", "HALF_EVEN"):
            why = f"rounds {a.get('rounding_mode')}, QuantizeLinear rounds half to even"
        elif np.any(scale <= 0):
            why = "has a scale that is not positive"
        elif not constant and scale.size != 1:
            why = "quantizes an activation with more than one scale (int8 engines take one per tensor)"
        if why:
            raise GatecError(f"{describe(node)} {why}; --precision int8 cannot build it (fp16 or fp32 can)")
        lo, hi = int_range(int(bits), signed, narrow)
        if not constant:
            self.qdq(node, scale.reshape(()), 0, np.int8, lo, hi)
            return
        x = self.consts[node.input[0]].astype(np.float32)
        axis = channel_axis(scale, x.shape)
        if axis == -1:
            raise GatecError(f"{describe(node)} has a scale of shape {list(scale.shape)}, neither one value nor one "
                             f"per channel; --precision int8 cannot build it")
        ints = np.clip(np.round(x / scale), lo, hi).astype(np.int8)
        self.consts[node.output[0]] = (ints * scale).astype(np.float32)
        s = scale.reshape(()) if axis is None else scale.reshape(-1)
        self.emit("DequantizeLinear", [self.const("weight_int8", ints), self.const("scale", s),
                                       self.const("zero_point", np.zeros(s.shape, np.int8))], node.output[0],
                  **({} if axis is None else {"axis": axis}))


def int8_graph(model: onnx.ModelProto, is_qonnx: bool) -> onnx.ModelProto:
    if not is_qonnx:
        raise GatecError("--precision int8 needs a quantized model (QONNX Quant nodes give the scales): quantize it "
                         "first (gatec quantize MODEL --act-bits 7, or --passes quantize), or use fp16")
    return SymmetricInt8(model).run()


def typed(model: onnx.ModelProto, precision: str, is_qonnx: bool) -> onnx.ModelProto:
    """The engine graph at `precision` (one of gpu.PRECISIONS: the target checks it), with every
    tensor's type in value_info."""
    quantizers = set()
    if is_qonnx and precision != "int8":
        from ..cpu.quant import lower_qonnx
        from ...ir import QONNX_DOMAINS
        kept = {o for n in model.graph.node if n.domain not in QONNX_DOMAINS for o in n.output}
        model = lower_qonnx(model, "float")  # the quantizers as exact float ops, which stay fp32 (their
        quantizers = {o for n in model.graph.node for o in n.output if o not in kept}  # rounding is the model's)
    elif precision == "int8":
        model = int8_graph(model, is_qonnx)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    del work.graph.value_info[:]
    if precision == "fp16":
        work = float16_graph(work, quantizers)
        del work.graph.value_info[:]
    try:
        out = onnx.shape_inference.infer_shapes(work, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:
        raise GatecError(f"the {precision} engine graph does not type-check: {str(e).strip().splitlines()[0]}") from None
    untyped = untyped_tensors(out)
    if untyped:
        raise GatecError(f"the {precision} engine graph leaves {len(untyped)} tensor(s) without a type, e.g. "
                         f"'{untyped[0]}'")
    return out


def untyped_tensors(model: onnx.ModelProto) -> list[str]:
    types = tensor_types(model)
    return [o for n in model.graph.node for o in n.output if o and not types.get(o)]


def fp32_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes of an fp16 engine graph that compute in fp32 (casts aside)."""
    types = tensor_types(model)
    return [n.name for n in model.graph.node
            if n.op_type != "Cast" and any(types.get(o) == TensorProto.FLOAT for o in n.output)]
