"""ONNX and QONNX files; graphs of opsets older than 13 are upgraded to gatec's opset."""
from __future__ import annotations

from pathlib import Path

import onnx

from ..errors import GatecError
from ..ir import IR, LOGIC_DOMAIN, OPSET, TensorSpec, value_info_specs
from ..ir.graph import consumers, runtime_inputs
from ..ir.reference import lazy, onnx_reference
from .source import BY_CONTENT, BY_NAME, ModelFile, Source
from .trace import first_line, fix_axes_the_graph_baked


MIN_IR_VERSION = 7  # the first with which the checker takes custom-domain opset imports and training-free graphs


def detect(file: ModelFile) -> int | None:
    if file.path.suffix == ".onnx":
        return BY_NAME
    if file.is_zip:
        return None
    try:  # ONNX has no magic bytes: a file is ONNX when it parses as one (empty bytes parse as an empty model)
        return BY_CONTENT if onnx.load_model_from_string(file.data).ir_version > 0 else None
    except Exception:
        return None


def repaired(model: onnx.ModelProto) -> list[str]:
    """What qonnx's and FINN's tools leave out, put back in place (as their own loaders tolerate
    it): opset imports for the custom domains the nodes use, and an IR version recent enough for
    the checker to take the file. Returns what was repaired."""
    done = []
    imported = {o.domain for o in model.opset_import}
    for domain in sorted({n.domain for n in model.graph.node} - imported - {"", "ai.onnx"}):
        model.opset_import.add(domain=domain, version=1)
        done.append(f"opset import for {domain}")
    if model.ir_version < MIN_IR_VERSION:
        done.append(f"IR version {model.ir_version} -> {MIN_IR_VERSION}")
        model.ir_version = MIN_IR_VERSION
    return done


def qcdq_as_quant(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """QuantizeLinear -> (Clip ->) DequantizeLinear chains (the QCDQ form Brevitas's
    export_onnx_qcdq and ONNX Runtime's tools write) as the QONNX Quant nodes of gatec's IR, by
    qonnx's own QCDQToQuant; the reference still runs the file as it is."""
    pairs = sum(n.op_type == "DequantizeLinear" for n in model.graph.node)
    if not pairs or not any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        return model, []
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.qcdq_to_qonnx import QCDQToQuant
    try:
        out = ModelWrapper(model).transform(QCDQToQuant()).model
    except Exception:  # what qonnx cannot read as QCDQ stays standard ONNX (the targets name what they refuse)
        return model, []
    # exporters that list weights as graph inputs: the ones qonnx folded away are no inputs either
    weights = {t.name for t in model.graph.initializer}
    used = {i for n in out.graph.node for i in n.input} | {t.name for t in out.graph.initializer}
    kept = [v for v in out.graph.input if v.name not in weights or v.name in used]
    del out.graph.input[:]
    out.graph.input.extend(kept)
    left = sum(n.op_type == "DequantizeLinear" for n in out.graph.node)
    return (out, [f"{pairs - left} QuantizeLinear/DequantizeLinear chain(s) as QONNX Quant"]) if left < pairs \
        else (model, [])


def load(path: Path, input_shapes, batch_axis: int, imports, info: dict) -> Source:
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise GatecError(f"{path}: corrupt or invalid ONNX file ({first_line(e)})") from None
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        fixes = repaired(model)
        try:
            if not fixes:
                raise
            onnx.checker.check_model(model)
        except Exception:
            raise GatecError(f"{path}: corrupt or invalid ONNX file ({first_line(e)})") from None
        info["repaired"] = fixes
    original = model
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    if opset < 13:
        try:
            model = onnx.version_converter.convert_version(model, OPSET)
        except Exception as e:
            raise GatecError(f"{path}: cannot upgrade opset {opset} to {OPSET}: {first_line(e)}") from None
    model, normalised = qcdq_as_quant(model)
    if normalised:
        info["normalised"] = normalised
    specs = value_info_specs(runtime_inputs(model.graph))
    if input_shapes:
        if len(input_shapes) != len(specs):
            raise GatecError(f"{path} has {len(specs)} input(s) but {len(input_shapes)} --input-shape were given")
        for s, shape in zip(specs, input_shapes):
            fixed = [a for a in range(len(s.shape)) if a not in s.dynamic]
            if len(shape) != len(s.shape) or any(shape[a] != s.shape[a] for a in fixed):
                raise GatecError(f"input '{s.name}': shape {list(shape)} does not fit the model's {describe_dims(s)}")
            s.shape = [int(d) for d in shape]
    readers = consumers(model.graph)
    for s in specs:
        s.batch_axis = batch_axis if s.dynamic and batch_axis in s.dynamic else (s.dynamic[0] if s.dynamic else 0)
        if any(n.domain == LOGIC_DOMAIN for n in readers.get(s.name, [])):
            s.values = "binary"
    model = onnx.ModelProto.FromString(model.SerializeToString())  # the reference keeps the file's graph
    fix_axes_the_graph_baked(model, specs, None)
    ir = IR(model, specs, value_info_specs(model.graph.output), info)
    return Source(ir, lazy(lambda: onnx_reference(original if opset >= 13 else model)))


def describe_dims(s: TensorSpec) -> str:
    return "[" + ",".join("?" if a in s.dynamic else str(d) for a, d in enumerate(s.shape)) + "]"
