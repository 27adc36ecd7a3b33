"""What several formats share: running a PyTorch module on example inputs, finding which input
axes are dynamic, and tracing the module to ONNX."""
from __future__ import annotations

import inspect
import io
import itertools
import warnings
from typing import TYPE_CHECKING

import numpy as np
import onnx

from ..errors import GatecError
from ..ir import IR, LOGIC_DOMAIN, OPSET, TensorSpec, value_info_specs
from ..ir.reference import Reference
from ..ir.sampling import example_array, perturbed
from .source import Source

if TYPE_CHECKING:  # annotations only: torch is imported where a PyTorch model is loaded
    import torch


# bytes one ONNX model can hold (a protobuf message); gatec's IR is one ONNX model, weights inside
PROTOBUF_LIMIT = 2 ** 31


def check_size(module: torch.nn.Module) -> None:
    """Refuse, before tracing, a model whose weights alone do not fit in one ONNX model."""
    import torch
    tensors = {t.data_ptr(): t.numel() * t.element_size() for t in module.state_dict().values()
               if isinstance(t, torch.Tensor)}  # tied weights once
    size = sum(tensors.values())
    if size >= PROTOBUF_LIMIT:
        raise GatecError(too_large(f"its weights take {size / 2 ** 30:.2f} GiB"))


def too_large(what: str) -> str:
    return (f"the model is too large: {what}, and gatec's IR is one ONNX model, which holds at most 2 GiB "
            f"(protobuf's limit)")


def first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def flatten(out) -> list[torch.Tensor]:
    import torch
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flatten(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in flatten(o)]
    raise GatecError(f"the model returns a {type(out).__name__}; gatec needs tensors (or tuples of tensors)")


def torch_reference(module: torch.nn.Module) -> Reference:
    import torch
    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        return [t.detach().cpu().numpy() for t in flatten(out)]
    return run


def count_forward_inputs(module: torch.nn.Module) -> int | None:
    import torch
    if isinstance(module, torch.jit.ScriptModule):
        return sum(1 for a in module.forward.schema.arguments[1:] if not a.has_default_value())
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return None
    return sum(1 for p in params if p.default is p.empty)


def try_forward(module, arrays):
    try:
        return torch_reference(module)(arrays), None
    except GatecError:
        raise
    except Exception as e:
        return None, e


def from_module(module: torch.nn.Module, input_shapes, batch_axis: int, info: dict) -> Source:
    import gatec.nn
    module = gatec.nn.adopt(module).eval()
    check_size(module)
    if not input_shapes:
        raise GatecError("this model does not record its input shape: give --input-shape (e.g. 1,50,16; "
                         "repeat it for several inputs)")
    n_args = count_forward_inputs(module)
    if n_args is not None and n_args != len(input_shapes):
        raise GatecError(f"the model's forward takes {n_args} input(s) but {len(input_shapes)} --input-shape "
                         f"were given")
    specs = input_specs(input_shapes, batch_axis)
    mark_binary_inputs(module, specs)
    outs = run_example(module, specs, "model")
    find_batch_axes(module, specs)
    find_dynamic_axes(module, specs)
    ir = trace_to_ir(module, specs, len(outs), info)
    return Source(ir, torch_reference(module), module)


def input_specs(input_shapes, batch_axis: int) -> list[TensorSpec]:
    specs = [TensorSpec(f"input_{i}" if len(input_shapes) > 1 else "input", [int(d) for d in s],
                        batch_axis=batch_axis) for i, s in enumerate(input_shapes)]
    for s in specs:
        if any(d <= 0 for d in s.shape) or not (0 <= batch_axis < max(len(s.shape), 1)):
            raise GatecError(f"bad input shape {s.shape} (batch axis {batch_axis})")
    return specs


def run_example(module, specs: list[TensorSpec], what: str) -> list[np.ndarray]:
    """The module's outputs at the example shapes; a shape it refuses is the user's mistake."""
    outs, err = try_forward(module, [example_array(s) for s in specs])
    if err is not None:
        shapes = ", ".join("x".join(map(str, s.shape)) for s in specs)
        raise GatecError(f"input shape {shapes} does not fit the {what}: {first_line(err)}")
    return outs


def mark_binary_inputs(module, specs):
    """A network whose first layer is a logic layer reads bits: the emulator draws 0/1 inputs;
    one that starts with a threshold encoder gets inputs drawn across its thresholds."""
    from gatec.nn import input_range, reads_bits
    span = input_range(module)
    for s in specs:
        if reads_bits(module):
            s.values = "binary"
        elif span is not None:
            s.range = list(span)


def find_batch_axes(module, specs: list[TensorSpec]) -> None:
    """Each input's batch axis: the one given, where the model runs with the batch resized there in
    every input; else, in the inputs after the first, the axes of the batch's size that do (a GRU's
    initial state h0 holds its batch on axis 1)."""
    if len(specs) < 2 or not specs[0].shape:
        return
    first = specs[0]
    size = first.shape[first.batch_axis]
    choices = [[s.batch_axis] + [a for a, d in enumerate(s.shape) if d == size and a != s.batch_axis]
               for s in specs[1:]]
    for axes in itertools.islice(itertools.product(*choices), 64):
        arrays = []
        for j, (s, axis) in enumerate(zip(specs, (first.batch_axis, *axes))):
            shape = list(s.shape)
            if axis < len(shape):  # not a scalar
                shape[axis] = perturbed(size)
            arrays.append(example_array(s, shape, j))
        if try_forward(module, arrays)[1] is None:
            for s, axis in zip(specs[1:], axes):
                s.batch_axis = axis
            return


def find_dynamic_axes(module, specs: list[TensorSpec]) -> None:
    """An axis is dynamic when the model also runs with another size there (batch, time,
    spatial axes); feature and channel axes fail and stay fixed. An axis that inputs share
    (the time axis of two streams that are concatenated) is changed in all of them at once."""
    for i, s in enumerate(specs):
        s.dynamic = [s.batch_axis]
        for axis in range(len(s.shape)):
            if axis == s.batch_axis:
                continue
            if any(try_forward(module, arrays_with_axis_changed(specs, i, axis, joint))[1] is None
                   for joint in ((False, True) if len(specs) > 1 else (False,))):
                s.dynamic.append(axis)
        s.dynamic.sort()


def arrays_with_axis_changed(specs: list[TensorSpec], i: int, axis: int, joint: bool,
                             among=lambda t, axis: True) -> list[np.ndarray]:
    """Example inputs with `axis` of input `i` resized; with `joint`, also that axis of every other
    input (for which `among` holds) where it has the same size and is not the batch axis."""
    arrays = []
    for j, t in enumerate(specs):
        shape = list(t.shape)
        if j == i or (joint and axis < len(shape) and axis != t.batch_axis and shape[axis] == specs[i].shape[axis]
                      and among(t, axis)):
            shape[axis] = perturbed(shape[axis])
        arrays.append(example_array(t, shape, j))
    return arrays


def fix_axes_the_graph_baked(model: onnx.ModelProto, specs: list[TensorSpec], reference: Reference | None) -> None:
    """Keep a non-batch axis dynamic only where the exported graph runs at another size and agrees
    with the model there: an exporter may bake a sequence length into a Reshape. An axis it baked
    is fixed in the graph's input as well, so another size is refused, not answered wrongly.
    With no reference (an ONNX file is its own reference), the graph has only to run."""
    if any(n.domain not in ("", "ai.onnx") for n in model.graph.node):
        return  # logic or QONNX nodes: ONNX Runtime cannot run the graph as it stands
    if not any(a != s.batch_axis for s in specs for a in s.dynamic):
        return
    from ..ir.runtime import ort_session
    session = ort_session(model)
    if session is None:
        return  # the target's own checks report a graph ONNX Runtime cannot load
    names = [v.name for v in session.get_inputs()]
    for i, s in enumerate(specs):
        for axis in [a for a in s.dynamic if a != s.batch_axis]:
            arrays = arrays_with_axis_changed(specs, i, axis, True, among=lambda t, a: a in t.dynamic)
            try:
                got = session.run(None, dict(zip(names, arrays)))
                want = got if reference is None else reference(arrays)
                ok = len(got) == len(want) and all(
                    g.shape == w.shape and np.abs(g - w).max(initial=0) <= 1e-3 * (1 + np.abs(w).max(initial=0))
                    for g, w in zip(got, want))
            except Exception:
                ok = False
            if not ok:
                s.dynamic.remove(axis)
                dim = next(v for v in model.graph.input if v.name == s.name).type.tensor_type.shape.dim[axis]
                dim.Clear()
                dim.dim_value = s.shape[axis]


def trace_to_ir(module, specs: list[TensorSpec], n_outputs: int, info: dict) -> IR:
    import torch
    out_names = ["output"] if n_outputs == 1 else [f"output_{i}" for i in range(n_outputs)]
    dynamic = {s.name: {a: f"{s.name}_d{a}" for a in s.dynamic} for s in specs}
    args = tuple(torch.from_numpy(example_array(s)) for s in specs)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # dynamo=False: the TorchScript exporter keeps recurrent models' time axis dynamic
            torch.onnx.export(module, args, buf, dynamo=False, opset_version=OPSET,
                              input_names=[s.name for s in specs], output_names=out_names,
                              dynamic_axes=dynamic, do_constant_folding=True,
                              custom_opsets={LOGIC_DOMAIN: 1} if has_logic_layers(module) else None)
        except Exception as e:
            if "2GiB limit" in str(e):  # the exporter's advice (to write a file) does not apply to gatec's IR
                raise GatecError(too_large("its ONNX graph is over 2 GiB")) from None
            raise GatecError(f"tracing to ONNX failed: {first_line(e)}") from None
    model = onnx.load_model_from_string(buf.getvalue())
    fixed = getattr(module, "gatec_fixed_point", None)  # gatec.qat's fixed-point models declare their types
    if fixed:
        import json
        from ..ir.fixed_point import FIXED_POINT_KEY
        model.metadata_props.add(key=FIXED_POINT_KEY, value=json.dumps(fixed, sort_keys=True))
    fix_axes_the_graph_baked(model, specs, torch_reference(module))
    outputs = value_info_specs(model.graph.output)
    for o, spec in zip(outputs, specs[:1] * len(outputs)):
        o.batch_axis = spec.batch_axis if spec.batch_axis < len(o.shape) else 0
    return IR(model, specs, outputs, info)


def has_logic_layers(module) -> bool:
    return any(type(m).__module__ == "gatec.nn.logic" for m in module.modules())
