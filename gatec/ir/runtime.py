"""ONNX Runtime sessions, made one way everywhere: quiet, threads as asked, the CPU provider unless
a caller names others."""
from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort

from ..errors import GatecError

ort.set_default_logger_severity(4)  # errors reach the user as gatec's one line, not ORT's log


def ort_session(model: onnx.ModelProto | str | Path, threads: int = 0, failure: str | None = None,
                providers: tuple[str, ...] = ("CPUExecutionProvider",), optimize: bool = True):
    """A CPU session for `model` (a ModelProto or a file). When it cannot be made, raises
    GatecError("<failure>: <ORT's first line>"), or returns None when `failure` is None.
    optimize=False: ONNX Runtime runs each op as the graph says (no fusions, no integer kernels)."""
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    try:
        return ort.InferenceSession(source, opts, providers=list(providers))
    except Exception as e:
        if failure is None:
            return None
        raise GatecError(f"{failure}: {(str(e).strip() or type(e).__name__).splitlines()[0]}") from None


def run_session(session, feeds: dict, failure: str, outputs: list[str] | None = None) -> list:
    """session.run, with ONNX Runtime's failures (a shape it cannot broadcast, an index out of
    range: the model's own faults) raised as GatecError("<failure>: <ORT's first line>")."""
    try:
        return session.run(outputs, feeds)
    except (ort.capi.onnxruntime_pybind11_state.Fail, ort.capi.onnxruntime_pybind11_state.InvalidArgument,
            ort.capi.onnxruntime_pybind11_state.RuntimeException) as e:
        raise GatecError(f"{failure}: {(str(e).strip() or type(e).__name__).splitlines()[0]}") from None
