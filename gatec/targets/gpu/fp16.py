"""An fp32 ONNX graph rewritten to compute in fp16, with fp32 islands.

Node by node, in order: a node that computes in fp16 gets its float inputs as fp16 wherever its
ONNX schema allows fp16 for that input (Resize's scales, say, stay fp32), and its float outputs
become fp16; a node kept fp32 gets fp32 inputs. Where a tensor's type and the reader's differ, one
Cast per tensor and type is inserted (an initializer is converted instead). The graph's inputs and
outputs stay fp32, with casts at the edges. Constant, ConstantOfShape and Cast nodes in fp16 parts
make fp16 values themselves.

onnxconverter-common's float16 converter does the same in principle; on graphs with fp32 islands
around lowered quantizers it writes casts whose types contradict the graph (shape inference
refuses them), so gatec keeps this small rewrite whose result it checks.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...ir.graph import prune_initializers, tensor_types

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
HALF_TYPE = "tensor(float16)"


def input_allows_half(schema, index: int) -> bool:
    formal = schema.inputs[min(index, len(schema.inputs) - 1)]
    return HALF_TYPE in allowed(schema, formal.type_str)


def allowed(schema, type_str: str) -> set[str]:
    for c in schema.type_constraints:
        if c.type_param_str == type_str:
            return set(c.allowed_type_strs)
    return {type_str}


def output_follows_half(schema, index: int, half_vars: set[str]) -> bool:
    """Does output `index` take fp16 when the type variables in `half_vars` are bound to fp16?"""
    formal = schema.outputs[min(index, len(schema.outputs) - 1)]
    return formal.type_str in half_vars


def convert(model: onnx.ModelProto, keep_fp32) -> onnx.ModelProto:
    """`keep_fp32(node) -> bool`: the nodes that compute in fp32."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    elem = tensor_types(inferred)
    inits = {t.name: t for t in g.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)

    current = dict(elem)  # each tensor's type in the rewritten graph
    casts: dict[tuple[str, int], str] = {}
    new_inits, nodes = [], []

    def as_type(name: str, want: int) -> str:
        if current.get(name) == want or not name:
            return name
        key = (name, want)
        if key not in casts:
            cast = f"{name}__as_{'fp16' if want == HALF else 'fp32'}"
            if name in inits:
                value = numpy_helper.to_array(inits[name]).astype(np.float16 if want == HALF else np.float32)
                new_inits.append(numpy_helper.from_array(value, cast))
            else:
                nodes.append(helper.make_node("Cast", [name], [cast], to=want, name=cast))
            current[cast] = want
            casts[key] = cast
        return casts[key]

    for node in g.node:
        out = onnx.NodeProto()
        out.CopyFrom(node)
        float_outputs = [o for o in node.output if elem.get(o) == FLOAT]
        if node.domain not in ("", "ai.onnx") or keep_fp32(node):
            for i, name in enumerate(node.input):
                if current.get(name) == HALF:
                    out.input[i] = as_type(name, FLOAT)
            nodes.append(out)
            continue
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
        half_vars = set()
        for i, name in enumerate(node.input):
            if elem.get(name) in (FLOAT, HALF) and input_allows_half(schema, i):
                out.input[i] = as_type(name, HALF)
                half_vars.add(schema.inputs[min(i, len(schema.inputs) - 1)].type_str)
            elif current.get(name) == HALF:
                out.input[i] = as_type(name, FLOAT)
        to = next((a for a in out.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to is not None and to.i == FLOAT:
            to.i = HALF
            half_vars.add(schema.outputs[0].type_str)
        elif node.op_type in ("Constant", "ConstantOfShape"):
            for a in out.attribute:
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
                    half_vars.add(schema.outputs[0].type_str)
        for i, o in enumerate(node.output):
            current[o] = HALF if o in float_outputs and output_follows_half(schema, i, half_vars) else elem.get(o)
        nodes.append(out)

    outputs = {o.name for o in g.output}
    final = []  # graph outputs computed in fp16: the producer writes a renamed tensor, cast back
    for node in nodes:
        for i, o in enumerate(node.output):
            if o in outputs and current.get(o) == HALF:
                node.output[i] = f"{o}__fp16"
                final.append(helper.make_node("Cast", [node.output[i]], [o], to=FLOAT, name=f"{o}__as_fp32"))
    result = onnx.ModelProto()
    result.CopyFrom(model)
    del result.graph.node[:], result.graph.value_info[:]
    result.graph.node.extend(nodes + final)
    result.graph.initializer.extend(new_inits)
    prune_initializers(result.graph)  # the fp32 weights converted away
    return result
