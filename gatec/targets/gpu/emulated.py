"""The engine graph run on a CPU at its own precision, for machines without a GPU.

ONNX Runtime's CPU kernels do not cover fp16 and silently run what they lack in fp32, so the
fp16 graph is not run as it is. It is rewritten: each fp16 tensor becomes an fp32 tensor that
holds only fp16 values, rounded (Cast to fp16 and back) wherever an op writes it. Every op thus
computes in fp32 from fp16 operands and stores its result rounded to fp16, as a GPU engine's
fp16 kernels do (products and sums in fp32, the stored result in fp16). ONNX Runtime's graph
optimizations are off for these runs, so that no fusion skips a rounding, and int8 Q/DQ pairs
stay fp32 arithmetic on the quantized values rather than the CPU's integer kernels (whose
results depend on the CPU: docs/FACTS.md).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...errors import GatecError
from ...ir.graph import attributes, tensor_types
from .typed import MATRIX_OPS

# ops whose fp16 result needs no rounding: they move, select or compare fp16 values
EXACT_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Gather", "GatherElements",
             "Slice", "Concat", "Split", "Expand", "Tile", "Pad", "Relu", "MaxPool", "GlobalMaxPool", "ReduceMax",
             "ReduceMin", "Max", "Min", "Neg", "Abs", "Where", "TopK", "ScatterElements", "DepthToSpace",
             "SpaceToDepth", "Resize"}
UNIT_ROUNDOFF = {"fp32": 2.0 ** -24, "fp16": 2.0 ** -11}


def fp16_attribute(node) -> bool:
    return any((a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT16)
               or (a.name in ("to", "dtype") and a.type == onnx.AttributeProto.INT and a.i == TensorProto.FLOAT16)
               for a in node.attribute)


def emulated_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The typed fp16 graph as fp32 ops with each stored fp16 result rounded explicitly."""
    types = tensor_types(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    nodes = []
    for node in g.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        node = copy
        rounds = [o for o in node.output if types.get(o) == TensorProto.FLOAT16] if node.op_type not in EXACT_OPS else []
        if node.op_type in ("Constant", "ConstantOfShape"):
            for a in node.attribute:
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT16:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float32), a.t.name))
            rounds = []  # fp16 constants are exact in fp32
        elif node.op_type == "Cast" and attributes(node).get("to") == TensorProto.FLOAT16:
            rounds = []  # the Cast to fp16 is itself the rounding: followed by one back to fp32
            tmp = node.output[0] + "__fp16"
            nodes += [node, helper.make_node("Cast", [tmp], [node.output[0]], to=TensorProto.FLOAT)]
            node.output[0] = tmp
            continue
        elif fp16_attribute(node):
            raise GatecError(f"node '{node.name}' ({node.op_type}) has an fp16 attribute the emulated runner "
                             f"cannot rewrite")
        renamed = {}
        for i, o in enumerate(node.output):
            if o in rounds:
                renamed[o] = o + "__fp32"
                node.output[i] = renamed[o]
        nodes.append(node)
        for o, tmp in renamed.items():
            half = o + "__fp16"
            nodes += [helper.make_node("Cast", [tmp], [half], to=TensorProto.FLOAT16),
                      helper.make_node("Cast", [half], [o], to=TensorProto.FLOAT)]
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    for v in [*g.input, *g.output]:
        if v.type.tensor_type.elem_type == TensorProto.FLOAT16:
            v.type.tensor_type.elem_type = TensorProto.FLOAT
    return out


def rounding_depth(model: onnx.ModelProto, precision: str) -> tuple[int, int]:
    """(most roundings on a path from an input to an output, the longest reduction feeding a matrix
    product): what the tolerance grows with."""
    types = tensor_types(model)
    kept = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
    inits = {t.name: t for t in model.graph.initializer}
    depth, longest = {}, 1
    for node in model.graph.node:
        d = max((depth.get(i, 0) for i in node.input), default=0)
        if node.op_type not in EXACT_OPS and any(types.get(o) == kept for o in node.output):
            d += 1
        for o in node.output:
            depth[o] = d
        if node.op_type in MATRIX_OPS and len(node.input) > 1 and node.input[1] in inits:
            dims = list(inits[node.input[1]].dims)
            if node.op_type == "Gemm":
                k = dims[1] if attributes(node).get("transB", 0) else dims[0]
            elif node.op_type == "MatMul":
                k = dims[-2] if len(dims) >= 2 else dims[0]
            else:
                k = int(np.prod(dims[1:])) if len(dims) > 1 else 1
            longest = max(longest, int(k))
    return max((depth.get(o.name, 0) for o in model.graph.output), default=0), longest


def scale_rtol(model: onnx.ModelProto, precision: str) -> float:
    """The bound on |engine - model| relative to the output's scale (its largest magnitude): one
    unit roundoff per rounding on the deepest path, and log2(K) more for a K-term sum that an
    engine may accumulate pairwise at the precision, times 2 for the gain of the layers between
    a rounding and the output (on the gated model suite the error stays under a third of it)."""
    depth, k = rounding_depth(model, precision)
    return 2 * UNIT_ROUNDOFF[precision] * (depth + math.ceil(math.log2(max(k, 2))))
