"""ONNX and QONNX files; graphs of opsets older than 13 are upgraded to gatec's opset."""
from __future__ import annotations

from pathlib import Path

import onnx

from ..errors import GatecError
from ..ir import IR, LOGIC_DOMAIN, OPSET, TensorSpec, value_info_specs
from ..ir.graph import consumers, prune_initializers, runtime_inputs
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
    # the weights qonnx folded into the Quant nodes (and listed as graph inputs by some exporters)
    prune_initializers(out.graph, {t.name for t in model.graph.initializer} - {t.name for t in out.graph.initializer})
    left = sum(n.op_type == "DequantizeLinear" for n in out.graph.node)
    return (out, [f"{pairs - left} QuantizeLinear/DequantizeLinear chain(s) as QONNX Quant"]) if left < pairs \
        else (model, [])


CHANNELS_LAST = "qonnx.custom_op.channels_last"


def channels_last_as_standard(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """qonnx's channels-last ops (Conv, MaxPool, BatchNormalization in domain
    qonnx.custom_op.channels_last, as its ConvertToChannelsLastAndClean and hls4ml's example
    models write them) as the standard op between two Transposes, which is how qonnx itself
    executes them: the input (and a Conv's weight) to channels first, the output back."""
    nodes = [n for n in model.graph.node if n.domain == CHANNELS_LAST]
    if not nodes:
        return model, []
    from onnx import helper, numpy_helper
    from qonnx.custom_op.channels_last.base_wrapped_op import to_channels_first_args, to_channels_last_args
    out = onnx.ModelProto()
    out.CopyFrom(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
             [*onnx.shape_inference.infer_shapes(model).graph.value_info, *model.graph.input, *model.graph.output]}
    inits = {t.name: t for t in out.graph.initializer}
    rewritten, first_of = [], {}  # a channels-last tensor -> its channels-first copy, made once
    for node in out.graph.node:
        if node.domain != CHANNELS_LAST:
            rewritten.append(node)
            continue
        rank = ranks.get(node.input[0]) or ranks.get(node.output[0])
        if not rank:
            raise GatecError(f"node '{node.name}' ({CHANNELS_LAST}::{node.op_type}): the rank of its input is unknown")
        first, last = list(to_channels_first_args(rank)), list(to_channels_last_args(rank))
        std = onnx.NodeProto()
        std.CopyFrom(node)
        std.domain = ""
        for i in range(2 if node.op_type == "Conv" else 1):  # a channels-last Conv's weight is channels last too
            name = node.input[i]
            if name not in first_of:
                moved = first_of[name] = f"{name}__channels_first"
                if name in inits:
                    value = numpy_helper.to_array(inits[name]).transpose(first)
                    out.graph.initializer.append(numpy_helper.from_array(value, moved))
                else:
                    rewritten.append(helper.make_node("Transpose", [name], [moved], perm=first, name=f"{moved}_t"))
            std.input[i] = first_of[name]
        std.output[0] = first_of[node.output[0]] = f"{node.output[0]}__channels_first"
        rewritten += [std, helper.make_node("Transpose", [std.output[0]], [node.output[0]], perm=last,
                                            name=f"{node.output[0]}_t")]
    del out.graph.node[:]
    out.graph.node.extend(rewritten)
    del out.graph.value_info[:]
    keep = [o for o in out.opset_import if o.domain != CHANNELS_LAST]  # no node of that domain is left
    del out.opset_import[:]
    out.opset_import.extend(keep)
    return out, [f"{len(nodes)} channels-last node(s) as standard ops between Transposes"]


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
    # qonnx executes its channels-last ops as this rewrite does, and cannot infer their shapes in every
    # file it writes: the reference runs the rewritten graph
    model, moved = channels_last_as_standard(model)
    if moved:
        info["normalised"] = moved
    original = model
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    if opset < 13:
        try:
            model = onnx.version_converter.convert_version(model, OPSET)
        except Exception as e:
            raise GatecError(f"{path}: cannot upgrade opset {opset} to {OPSET}: {first_line(e)}") from None
    model, normalised = qcdq_as_quant(model)
    if normalised:
        info["normalised"] = info.get("normalised", []) + normalised
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
