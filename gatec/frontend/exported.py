"""torch.export programs (`torch.export.save`, `.pt2`), exported to ONNX with the dynamo exporter."""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path


from ..errors import GatecError
from ..ir import IR, OPSET, value_info_specs
from ..ir.sampling import example_array
from .source import RECORDED, ModelFile, Source
from .trace import (check_size, find_batch_axes, find_dynamic_axes, first_line, fix_axes_the_graph_baked, input_specs,
                    run_example, torch_reference)


def detect(file: ModelFile) -> int | None:
    if file.is_zip:
        names = file.members or []
        if any(n.endswith("models/model.json") or n.endswith("archive_format") for n in names):
            return RECORDED
        return None
    if file.path.suffix == ".pt2":
        raise GatecError(f"{file.path}: corrupt torch.export archive (not a zip file)")
    return None


@contextlib.contextmanager
def torch_logs_caught():
    """torch.export.load logs the real error as a traceback on stderr (torch's loggers have their
    own handlers), then raises "check the warnings above": keep its records here instead."""
    records: list[logging.LogRecord] = []
    keep = logging.Handler()
    keep.emit = records.append
    saved = [(lg, lg.handlers) for name, lg in list(logging.root.manager.loggerDict.items())
             if name.split(".")[0] == "torch" and isinstance(lg, logging.Logger) and lg.handlers]
    for lg, _ in saved:
        lg.handlers = [keep]
    try:
        yield records
    finally:
        for lg, handlers in saved:
            lg.handlers = handlers


def load(path: Path, input_shapes, batch_axis: int, imports, info: dict) -> Source:
    import torch
    with torch_logs_caught() as records:
        try:
            ep = torch.export.load(str(path))
        except Exception as e:
            logged = [r.exc_info[1] for r in records if r.exc_info and r.exc_info[1] is not None]
            cause = first_line(logged[-1] if logged else e)
            raise GatecError(f"{path}: corrupt torch.export archive ({cause})") from None
    example = getattr(ep, "example_inputs", None)
    if not input_shapes and example:
        input_shapes = [list(t.shape) for t in example[0]]
    module = ep.module()
    check_size(module)
    if not input_shapes:
        raise GatecError(f"{path}: records no example inputs; give --input-shape")
    specs = input_specs(input_shapes, batch_axis)
    run_example(module, specs, "program")
    arrays = [example_array(s) for s in specs]
    find_batch_axes(module, specs)
    find_dynamic_axes(module, specs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            prog = torch.onnx.export(ep, tuple(torch.from_numpy(a) for a in arrays), dynamo=True, verbose=False,
                                     input_names=[s.name for s in specs], opset_version=OPSET)
        except Exception as e:
            raise GatecError(f"{path}: ONNX export of the torch.export program failed: {first_line(e)}") from None
    model = prog.model_proto
    for s, v in zip(specs, model.graph.input):  # the program fixes what it specialised
        s.dynamic = [a for a in s.dynamic if not v.type.tensor_type.shape.dim[a].HasField("dim_value")]
    fix_axes_the_graph_baked(model, specs, torch_reference(module))
    return Source(IR(model, specs, value_info_specs(model.graph.output), info), torch_reference(module), module)
