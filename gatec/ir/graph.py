"""Graph helpers every stage shares: node attributes, constants as initializers, who produces
and who reads each tensor, and shapes made static for tools that need them."""
from __future__ import annotations

import onnx


def constants_to_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant nodes (a `value` tensor) become initializers of the same name, in place: passes
    that look for constant weights, and QONNX tools that read a Quant's scale, find them there."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 \
                and node.attribute[0].name == "value" and node.output[0] not in outputs:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return model


def attributes(node: onnx.NodeProto) -> dict:
    """A node's attributes by name, string values decoded."""
    found = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        found[a.name] = value.decode() if isinstance(value, bytes) else value
    return found


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """The node that writes each tensor."""
    return {o: n for n in graph.node for o in n.output if o}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes that read each tensor, in graph order (a node reading a tensor twice is listed twice)."""
    found: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            if i:
                found.setdefault(i, []).append(n)
    return found


def runtime_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs that are not initializers."""
    init_names = {i.name for i in graph.initializer}
    return [v for v in graph.input if v.name not in init_names]


def with_input_shapes(model: onnx.ModelProto, shapes) -> onnx.ModelProto:
    """A copy of `model` with its runtime inputs fixed to `shapes` and every other shape cleared,
    ready for shape inference at those sizes."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]
    for v, shape in zip(runtime_inputs(fixed.graph), shapes):
        del v.type.tensor_type.shape.dim[:]
        for size in shape:
            v.type.tensor_type.shape.dim.add().dim_value = int(size)
    for v in fixed.graph.output:
        v.type.tensor_type.ClearField("shape")
    return fixed


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """elem_type of every value the graph names (inputs, initializers, value_info, outputs)."""
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def prune_initializers(graph: onnx.GraphProto, gone=frozenset()) -> None:
    """Drop the initializers no node or graph output reads, and the graph inputs that name them or
    one in `gone` (initializers a rewrite already removed) that nothing reads: exporters that list
    weights as graph inputs would otherwise leave inputs that feed nothing."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    dropped = {t.name for t in graph.initializer if t.name not in used} | (set(gone) - used)
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs = [v for v in graph.input if v.name not in dropped]
    del graph.input[:]
    graph.input.extend(inputs)
