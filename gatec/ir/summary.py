"""What a model holds, counted on the IR: ops by type, parameters, MACs, and the gates of gated
layers (`gatec inspect` prints it; passes report their before/after with it)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from . import IR, LOGIC_DOMAIN, QONNX_DOMAINS
from .graph import consumers as graph_consumers, producers


def shapes_of(ir: IR) -> dict[str, list[int]]:
    """Static shapes of every tensor at the example input shape (symbolic axes fixed to it)."""
    model = onnx.ModelProto()
    model.CopyFrom(ir.model)
    for n in model.graph.node:
        if n.domain in QONNX_DOMAINS:  # quantizers keep their input's shape: Identity, for inference only
            x = n.input[0]
            n.ClearField("attribute")
            del n.input[:]
            n.input.append(x)
            n.op_type, n.domain = "Identity", ""
    for v, spec in zip([i for i in model.graph.input if i.name in {s.name for s in ir.inputs}], ir.inputs):
        for d, size in zip(v.type.tensor_type.shape.dim, spec.shape):
            d.Clear()
            d.dim_value = size
    try:
        model = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        pass
    shapes = {}
    for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
        shapes[v.name] = dims
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    unknown = [o for n in model.graph.node for o in n.output if o and not all(shapes.get(o) or [0])]
    if unknown:
        shapes.update(run_shapes(ir, unknown))
    return shapes


def run_shapes(ir: IR, names: list[str]) -> dict[str, list[int]]:
    """Shapes that inference could not tell (a chunk's dynamic Slice), by running the graph in
    ONNX Runtime at the example shape; none for graphs it cannot run (logic, QONNX nodes)."""
    if any(n.domain not in ("", "ai.onnx") for n in ir.model.graph.node):
        return {}
    from .runtime import ort_session
    from .sampling import example_array
    model = onnx.ModelProto()
    model.CopyFrom(ir.model)
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    session = ort_session(model)
    try:
        values = session.run(None, {s.name: example_array(s) for s in ir.inputs}) if session else None
    except Exception:
        values = None
    if values is None:
        return {}
    return {n: list(np.shape(v)) for n, v in zip(names, values)}


def node_macs(node, shapes) -> int:
    def shape(name):
        return shapes.get(name, [])
    out = shape(node.output[0]) if node.output else []
    if node.op_type in ("MatMul", "Gemm") and len(node.input) >= 2:
        w = shape(node.input[1])
        a = shape(node.input[0])
        if w and a and all(out):
            k = a[-1] if not (node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)) else a[0]
            return int(np.prod(out)) * k if out else 0
    if node.op_type == "Conv" and len(node.input) >= 2:
        w = shape(node.input[1])
        if w and out and all(out):
            return int(np.prod(out)) * int(np.prod(w[1:]))
    if node.op_type in ("GRU", "LSTM", "RNN"):
        x, w, r = shape(node.input[0]), shape(node.input[1]), shape(node.input[2])
        if x and w and r and all(x):
            steps, batch = x[0], x[1]
            return int(steps * batch * (np.prod(w) + np.prod(r)))
    return 0


GATES_PER_UNIT = {"GRU": 3, "LSTM": 4}


def gated_layers(ir: IR, shapes: dict[str, list[int]] | None = None) -> list[dict]:
    """Recurrent cells (gates per unit x hidden x directions); sigmoid gates that multiply a
    signal (GLU, gated convolutions, gated residuals, GMU) and SiLU gates (SwiGLU), counted as
    gates per position (channels after a Conv, else the last axis); top-k expert routers; logic
    layers with their gate count."""
    shapes = shapes if shapes is not None else shapes_of(ir)
    rows = []
    consumers, producer = graph_consumers(ir.model.graph), producers(ir.model.graph)

    def mul_partner(mul, name):
        return next((i for i in mul.input if i != name), name)

    def units(sigmoid):
        shape = shapes.get(sigmoid.output[0]) or shapes.get(sigmoid.input[0]) or []
        src = producer.get(sigmoid.input[0])
        axis = 1 if src is not None and src.op_type == "Conv" and len(shape) > 2 else -1
        return shape[axis] or None if shape else None

    for n in ir.model.graph.node:
        attrs = {a.name: a for a in n.attribute}
        if n.op_type in GATES_PER_UNIT:
            hidden = attrs["hidden_size"].i
            dirs = 2 if "direction" in attrs and attrs["direction"].s == b"bidirectional" else 1
            rows.append({"node": n.name, "type": n.op_type, "gates": GATES_PER_UNIT[n.op_type] * hidden * dirs,
                         "detail": f"{GATES_PER_UNIT[n.op_type]} gates x {hidden} units x {dirs} direction(s)"})
        elif n.op_type == "Sigmoid":
            muls = [c for c in consumers.get(n.output[0], []) if c.op_type == "Mul"]
            silu = [m for m in muls if mul_partner(m, n.output[0]) == n.input[0]]  # x * sigmoid(x)
            if any(c.op_type == "Mul" for m in silu for c in consumers.get(m.output[0], [])):
                rows.append({"node": n.name, "type": "SiLU gate", "gates": units(n), "detail": "silu(a) * b"})
            elif len(silu) < len(muls):
                rows.append({"node": n.name, "type": "sigmoid gate", "gates": units(n), "detail": "sigmoid(.) * signal"})
        elif n.op_type == "TopK":
            experts = (shapes.get(n.input[0]) or [0])[-1] or None
            k = constant_value(ir.model, n.input[1]) if len(n.input) > 1 else None
            rows.append({"node": n.name, "type": "top-k router", "gates": experts,
                         "detail": f"top-{'?' if k is None else int(k)} of {experts or '?'} experts"})
        elif n.domain == LOGIC_DOMAIN and n.op_type == "LogicLayer":
            ops = next(a.ints for a in n.attribute if a.name == "ops")
            rows.append({"node": n.name, "type": "LogicLayer", "gates": len(ops), "detail": "two-input logic gates"})
    return rows


def constant_value(model, name):
    """The single value of an initializer or Constant node named `name`, else None."""
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init).ravel()[0]
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return next((numpy_helper.to_array(a.t).ravel()[0] for a in n.attribute if a.name == "value"), None)
    return None


def count_parameters(model: onnx.ModelProto) -> int:
    """Floating-point weights: initializers and multi-element Constants. Integer tensors (shapes,
    indices, axes), BatchNormalization's running statistics (buffers in PyTorch) and quantizers' scales and
    bit widths are not parameters."""
    stats = {i for n in model.graph.node if n.op_type == "BatchNormalization" for i in n.input[3:5]}
    stats |= {i for n in model.graph.node if n.domain in QONNX_DOMAINS for i in n.input[1:]}  # scales, bit widths
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    tensors = [(i.name, i) for i in model.graph.initializer]
    tensors += [(n.output[0], a.t) for n in model.graph.node if n.op_type == "Constant"
                for a in n.attribute if a.name == "value" and int(np.prod(a.t.dims)) > 1]
    return sum(int(np.prod(t.dims)) for name, t in tensors if t.data_type in floats and name not in stats)


def inspect_ir(ir: IR) -> dict:
    shapes = shapes_of(ir)
    ops = Counter((f"{n.domain}::{n.op_type}" if n.domain else n.op_type) for n in ir.model.graph.node)
    macs = sum(node_macs(n, shapes) for n in ir.model.graph.node)
    gates = gated_layers(ir, shapes)
    return {"source": ir.source, "kind": ir.kind,
            "inputs": [{"name": s.name, "shape": s.shape, "dynamic_axes": s.dynamic} for s in ir.inputs],
            "outputs": [{"name": s.name, "shape": shapes.get(s.name) if all(shapes.get(s.name) or [0]) else s.shape}
                        for s in ir.outputs],
            "nodes": len(ir.model.graph.node), "ops": dict(sorted(ops.items())),
            "parameters": count_parameters(ir.model), "macs": macs, "gated_layers": gates,
            "logic_gates": sum(g["gates"] for g in gates if g["type"] == "LogicLayer")}


def format_inspect(info: dict) -> str:
    lines = [f"model      {info['source'].get('path')} ({info['source'].get('format')}, {info['kind']})"]
    for s in info["inputs"]:
        lines.append(f"input      {s['name']}: {s['shape']} (dynamic axes {s['dynamic_axes']})")
    for s in info["outputs"]:
        lines.append(f"output     {s['name']}: {s['shape']}")
    lines.append(f"nodes      {info['nodes']}")
    lines.append(f"parameters {info['parameters']:,}")
    lines.append(f"MACs       {info['macs']:,} (at the example input shape)")
    lines.append("ops by type")
    for op, n in info["ops"].items():
        lines.append(f"  {op:<32} {n}")
    if info["gated_layers"]:
        lines.append("gated layers")
        for g in info["gated_layers"]:
            count = "" if g["gates"] is None else f"{g['gates']:>8,} gates  "
            lines.append(f"  {g['type']:<14} {count}{g['detail']}  [{g['node']}]")
    return "\n".join(lines)
