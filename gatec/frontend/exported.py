"""torch.export programs (`torch.export.save`, `.pt2`), exported to ONNX with the dynamo exporter."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import GatecError
from ..ir import IR, OPSET, value_info_specs
from ..ir.sampling import example_array
from .source import RECORDED, ModelFile, Source
from .trace import find_dynamic_axes, first_line, fix_axes_the_graph_baked, input_specs, run_example, torch_reference


def detect(file: ModelFile) -> int | None:
    if file.is_zip:
        names = file.members or []
        if any(n.endswith("models/model.json") or n.endswith("archive_format") for n in names):
            return RECORDED
        return None
    if file.path.suffix == ".pt2":
        raise GatecError(f"{file.path}: corrupt torch.export archive (not a zip file)")
    return None


def load(path: Path, input_shapes, batch_axis: int, imports, info: dict) -> Source:
    try:
        ep = torch.export.load(str(path))
    except Exception as e:
        raise GatecError(f"{path}: corrupt torch.export archive ({first_line(e)})") from None
    example = getattr(ep, "example_inputs", None)
    if not input_shapes and example:
        input_shapes = [list(t.shape) for t in example[0]]
    module = ep.module()
    if not input_shapes:
        raise GatecError(f"{path}: records no example inputs; give --input-shape")
    specs = input_specs(input_shapes, batch_axis)
    run_example(module, specs, "program")
    arrays = [example_array(s) for s in specs]
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
