"""Shared by the pruning passes on gated (arithmetic) networks: calibration inputs, running an
IR in ONNX Runtime with extra outputs, initializer edits, dead-node removal, and the counts
each pass reports (nodes, parameters, MACs dense and over nonzero weights, error caused)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..ir import IR


def calibration_sets(ir: IR, data=None) -> list[list[np.ndarray]]:
    """The inputs the emulator checks (the user's --data or random draws from the input specs),
    so the error a pass reports covers what verification will see at the default sample count."""
    from ..ir.sampling import input_sets
    return input_sets(ir, 256, data)


def run_ort(ir: IR, sets, extra: list[str] = ()) -> list[list[np.ndarray]]:
    """The graph's outputs followed by the tensors named in `extra`, per input set."""
    from ..ir.runtime import ort_session, run_session
    model = onnx.ModelProto()
    model.CopyFrom(ir.model)
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in extra if n not in have)
    failure = "pruning needs the model to run in ONNX Runtime"
    session = ort_session(model, failure=failure)
    names = [i.name for i in session.get_inputs()]
    wanted = [o.name for o in ir.model.graph.output] + list(extra)
    return [run_session(session, dict(zip(names, inputs)), failure, wanted) for inputs in sets]


def output_error(before: IR, after: IR, sets) -> float:
    a, b = run_ort(before, sets), run_ort(after, sets)
    return float(max((np.abs(x.astype(np.float64) - y).max(initial=0.0) for ra, rb in zip(a, b)
                      for x, y in zip(ra, rb)), default=0.0))


def initializer(ir: IR, name: str) -> np.ndarray | None:
    for init in ir.model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def set_initializer(ir: IR, name: str, value: np.ndarray) -> None:
    for init in ir.model.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value), name))
            return
    raise KeyError(name)


def remove_dead_nodes(ir: IR) -> int:
    """Drop nodes no graph output depends on, and initializers nothing reads; returns nodes dropped."""
    graph = ir.model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    dropped = len(graph.node) - len(keep)
    nodes = [onnx.NodeProto() for _ in keep]
    for dst, src in zip(nodes, keep):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(nodes)
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return dropped


def counts(ir: IR) -> dict:
    """nodes, parameters, nonzero parameters, MACs at the example shape, and MACs over the nonzero
    weights of MatMul/Gemm (what a sparse implementation such as hls4ml's skips to)."""
    from ..ir.summary import count_parameters, node_macs, shapes_of
    shapes = shapes_of(ir)
    macs = nonzero = 0
    for node in ir.model.graph.node:
        m = node_macs(node, shapes)
        macs += m
        w = initializer(ir, node.input[1]) if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 else None
        nonzero += m if w is None or w.size == 0 else int(round(m * np.count_nonzero(w) / w.size))
    floats = [numpy_helper.to_array(i) for i in ir.model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    return {"nodes": len(ir.model.graph.node), "parameters": count_parameters(ir.model),
            "nonzero_parameters": int(sum(np.count_nonzero(a) for a in floats)), "macs": int(macs),
            "nonzero_macs": int(nonzero)}

