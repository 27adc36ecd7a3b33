"""`gatec inspect`: ops by type, parameters, MACs, and the gates of gated layers."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from .ir import IR, LOGIC_DOMAIN


def shapes_of(ir: IR) -> dict[str, list[int]]:
    """Static shapes of every tensor at the example input shape (symbolic axes fixed to it)."""
    model = onnx.ModelProto()
    model.CopyFrom(ir.model)
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
    return shapes


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


GATES_PER_UNIT = {"GRU": 3, "LSTM": 4, "RNN": 0}


def gated_layers(ir: IR) -> list[dict]:
    """Recurrent cells (gates per unit x hidden x directions) and sigmoid gates that multiply a
    signal (GLU, gated convolutions, gated residuals, GMU); logic layers with their gate count."""
    rows = []
    consumers = {}
    for n in ir.model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in ir.model.graph.node:
        attrs = {a.name: a for a in n.attribute}
        if n.op_type in ("GRU", "LSTM"):
            hidden = attrs["hidden_size"].i
            dirs = 2 if "direction" in attrs and attrs["direction"].s == b"bidirectional" else 1
            rows.append({"node": n.name, "type": n.op_type, "gates": GATES_PER_UNIT[n.op_type] * hidden * dirs,
                         "detail": f"{GATES_PER_UNIT[n.op_type]} gates x {hidden} units x {dirs} direction(s)"})
        elif n.op_type == "Sigmoid" and any(c.op_type == "Mul" for c in consumers.get(n.output[0], [])):
            rows.append({"node": n.name, "type": "sigmoid gate", "gates": None, "detail": "sigmoid(.) * signal"})
        elif n.domain == LOGIC_DOMAIN and n.op_type == "LogicLayer":
            ops = next(a.ints for a in n.attribute if a.name == "ops")
            rows.append({"node": n.name, "type": "LogicLayer", "gates": len(ops), "detail": "two-input logic gates"})
    return rows


def inspect_ir(ir: IR) -> dict:
    shapes = shapes_of(ir)
    ops = Counter((f"{n.domain}::{n.op_type}" if n.domain else n.op_type) for n in ir.model.graph.node)
    params = sum(int(np.prod(i.dims)) for i in ir.model.graph.initializer)
    params += sum(numpy_helper.to_array(a.t).size for n in ir.model.graph.node if n.op_type == "Constant"
                  for a in n.attribute if a.name == "value" and a.t.dims and np.prod(a.t.dims) > 1)
    macs = sum(node_macs(n, shapes) for n in ir.model.graph.node)
    gates = gated_layers(ir)
    return {"source": ir.source, "kind": ir.kind,
            "inputs": [{"name": s.name, "shape": s.shape, "dynamic_axes": s.dynamic} for s in ir.inputs],
            "outputs": [{"name": s.name, "shape": s.shape} for s in ir.outputs],
            "nodes": len(ir.model.graph.node), "ops": dict(sorted(ops.items())), "parameters": params,
            "macs": macs, "gated_layers": gates, "logic_gates": sum(g["gates"] for g in gates if g["type"] == "LogicLayer")}


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
