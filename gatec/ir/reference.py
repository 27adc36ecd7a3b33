"""The reference executors: ONNX Runtime on a standard graph, qonnx's executor on one holding
QONNX quantizers or gatec's logic nodes (gatec.custom_op registers them with qonnx)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx

from . import LOGIC_DOMAIN, QONNX_DOMAINS
from .graph import runtime_inputs, with_input_shapes

Reference = Callable[[list[np.ndarray]], list[np.ndarray]]


def onnx_reference(model: onnx.ModelProto) -> Reference:
    """ONNX Runtime on the file as given (unoptimized for Q/DQ graphs); qonnx's executor when it
    holds QONNX or gatec nodes."""
    if any(n.domain in QONNX_DOMAINS + (LOGIC_DOMAIN,) for n in model.graph.node):
        return qonnx_reference(model)
    from .runtime import ort_session, run_session
    failure = "ONNX Runtime cannot run the model as given"
    # Q/DQ graphs: each op as the file says, not ONNX Runtime's fused integer kernels (their results
    # differ from the ONNX semantics and between CPUs: docs/FACTS.md)
    qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    session = ort_session(model, failure=failure, optimize=not qdq)
    names = [i.name for i in session.get_inputs()]
    return lambda arrays: run_session(session, dict(zip(names, arrays)), failure)


def lazy(make: Callable[[], Reference]) -> Reference:
    """A reference built on first use, so that a target's own check of the graph speaks first."""
    cache = []

    def run(arrays):
        if not cache:
            cache.append(make())
        return cache[0](arrays)
    return run


def qonnx_reference(model: onnx.ModelProto) -> Reference:
    """qonnx's executor needs static shapes: the graph is fixed to each batch's input shapes."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    inputs = runtime_inputs(model.graph)
    outs = [v.name for v in model.graph.output]
    fixed: dict = {}

    def run(arrays):
        shapes = tuple(tuple(a.shape) for a in arrays)
        if shapes not in fixed:
            fixed[shapes] = ModelWrapper(with_input_shapes(model, shapes)).transform(InferShapes())
        result = execute_onnx(fixed[shapes], {v.name: a for v, a in zip(inputs, arrays)})
        return [result[o] for o in outs]
    return run


def run_qonnx(model: onnx.ModelProto, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """qonnx's execute_onnx on `model` at the arrays' shapes, once."""
    return qonnx_reference(model)(arrays)
