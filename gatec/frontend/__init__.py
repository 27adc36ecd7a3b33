"""Front end: load a model file (or a live module) and trace it into the IR.

A `Source` holds the IR and the reference the emulator checks every target against: the
PyTorch module itself for PyTorch inputs, ONNX Runtime on the original file for ONNX, and
qonnx's executor for QONNX or for graphs with gatec's logic layers.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import io
import pickle
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch

from .errors import GatecError
from .ir import IR, LOGIC_DOMAIN, OPSET, TensorSpec, value_info_specs
from .ir.reference import Reference, lazy, onnx_reference, qonnx_reference  # noqa: F401  (gatec.frontend's API)
from .ir.sampling import example_array, perturbed, variant_shape  # noqa: F401


@dataclass
class Source:
    ir: IR
    reference: Reference
    module: torch.nn.Module | None = None


# ---------------------------------------------------------------- entry point

def load(model, input_shapes: Sequence[Sequence[int]] | None = None, imports: Sequence[str] = (),
         batch_axis: int = 0) -> Source:
    """Load `model` (a path or an nn.Module) into a Source."""
    if isinstance(model, torch.nn.Module):
        return from_module(model, input_shapes, batch_axis, {"path": type(model).__name__, "format": "module",
                                                             "sha256": module_hash(model)})
    path = Path(model)
    if not path.exists():
        raise GatecError(f"{path}: no such file")
    if path.is_dir():
        raise GatecError(f"{path}: is a folder, not a model file")
    data = path.read_bytes()
    info = {"path": path.name, "sha256": hashlib.sha256(data).hexdigest()}
    fmt = detect_format(path, data)
    info["format"] = fmt
    if fmt == "onnx":
        return from_onnx(path, input_shapes, batch_axis, info)
    if fmt == "torchscript":
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise GatecError(f"{path}: corrupt TorchScript archive ({first_line(e)})") from None
    elif fmt == "export":
        return from_exported(path, input_shapes, batch_axis, info)
    else:
        module = load_pickled_module(path, imports)
    return from_module(module, input_shapes, batch_axis, info)


def detect_format(path: Path, data: bytes) -> str:
    if path.suffix == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except zipfile.BadZipFile:
            raise GatecError(f"{path}: corrupt archive") from None
        if any(n.endswith("models/model.json") or n.endswith("archive_format") for n in names):
            return "export"
        if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "pickle"
        raise GatecError(f"{path}: a zip archive that is neither a TorchScript, torch.export nor torch.save file")
    if path.suffix == ".pt2":
        raise GatecError(f"{path}: corrupt torch.export archive (not a zip file)")
    if data[:1] == b"\x80":  # legacy (non-zip) torch.save pickle
        return "pickle"
    try:
        if onnx.load_model_from_string(data).ir_version > 0:  # empty bytes parse as an empty model
            return "onnx"
        raise ValueError
    except Exception:
        raise GatecError(f"{path}: not a model file gatec can read (expected TorchScript or torch.save .pt, "
                         f"torch.export .pt2, or ONNX .onnx); the file may be corrupt") from None


def first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def module_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256(type(module).__qualname__.encode())
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- safe pickle loading

def import_user_module(spec: str):
    """Import MODULE or FILE.py named by --import; returns the module."""
    if spec.endswith(".py") or "/" in spec:
        file = Path(spec)
        if not file.exists():
            raise GatecError(f"--import {spec}: no such file")
        name = file.stem
        if str(file.parent.resolve()) not in sys.path:
            sys.path.insert(0, str(file.parent.resolve()))
        module_spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            raise GatecError(f"--import {spec}: importing it failed ({first_line(e)})") from None
        return module
    try:
        return importlib.import_module(spec)
    except Exception as e:
        raise GatecError(f"--import {spec}: cannot import it ({first_line(e)})") from None


def trusted_globals(imports: Sequence[str]) -> list:
    """Classes a pickled module may name: torch.nn's and gatec.nn's modules, and the classes of
    the modules the user named with --import (also under `__main__`, where a training script
    that defined them saved them)."""
    import gatec.nn.gated  # noqa: F401  (gatec's own modules are trusted: import them first)
    import gatec.nn.logic  # noqa: F401
    import gatec.qat  # noqa: F401  (quantization-aware models pickle gatec.qat's layers)
    allowed = []
    roots = [m for name, m in sys.modules.items()
             if m is not None and name.startswith(("torch.nn.modules", "gatec.nn", "gatec.qat"))]
    roots += [import_user_module(s) for s in imports]
    for mod in roots:
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, torch.nn.Module) or obj.__module__ == mod.__name__:
                allowed.append(obj)
                allowed.append((obj, f"__main__.{obj.__name__}"))
                allowed.append((obj, f"{mod.__name__}.{obj.__name__}"))
    allowed += [torch.nn.parameter.Parameter, set, getattr, torch.Size]
    return allowed


def load_pickled_module(path: Path, imports: Sequence[str]) -> torch.nn.Module:
    with torch.serialization.safe_globals(trusted_globals(imports)):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            import re
            found = re.search(r"GLOBAL ([\w.]+)", str(e))
            culprit = found.group(1) if found else "an unknown global"
            dangerous = culprit.split(".")[0] in ("os", "posix", "nt", "subprocess", "builtins", "sys", "shutil")
            hint = "it would run foreign code" if dangerous else "pass --import with the file or module that defines it"
            raise GatecError(f"{path}: refusing to unpickle {culprit}: not a torch.nn class nor a class from a "
                             f"module named with --import ({hint})") from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
            raise GatecError(f"{path}: corrupt torch.save file ({first_line(e)})") from None
    if isinstance(obj, dict):
        raise GatecError(f"{path}: holds a state_dict, not a model; save the whole module (torch.save(model)), "
                         f"TorchScript (torch.jit.save) or a torch.export program")
    if not isinstance(obj, torch.nn.Module):
        raise GatecError(f"{path}: holds a {type(obj).__name__}, not a torch.nn.Module")
    return obj


# ---------------------------------------------------------------- PyTorch -> IR

def flatten(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flatten(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in flatten(o)]
    raise GatecError(f"the model returns a {type(out).__name__}; gatec needs tensors (or tuples of tensors)")


def torch_reference(module: torch.nn.Module) -> Reference:
    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        return [t.detach().cpu().numpy() for t in flatten(out)]
    return run


def count_forward_inputs(module: torch.nn.Module) -> int | None:
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
    find_dynamic_axes(module, specs)
    ir = trace(module, specs, len(outs), info)
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
    with the model there: an exporter may bake a sequence length into a Reshape (FIELD_NOTES). An
    axis it baked is fixed in the graph's input as well, so another size is refused, not answered wrongly.
    With no reference (an ONNX file is its own reference), the graph has only to run."""
    if any(n.domain not in ("", "ai.onnx") for n in model.graph.node):
        return  # logic or QONNX nodes: ONNX Runtime cannot run the graph as it stands
    if not any(a != s.batch_axis for s in specs for a in s.dynamic):
        return
    from .ir.runtime import ort_session
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


def trace(module, specs: list[TensorSpec], n_outputs: int, info: dict) -> IR:
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
                              custom_opsets={LOGIC_DOMAIN: 1} if reads_or_has_logic(module) else None)
        except Exception as e:
            raise GatecError(f"tracing to ONNX failed: {first_line(e)}") from None
    model = onnx.load_model_from_string(buf.getvalue())
    fix_axes_the_graph_baked(model, specs, torch_reference(module))
    outputs = value_info_specs(model.graph.output)
    for o, spec in zip(outputs, specs[:1] * len(outputs)):
        o.batch_axis = spec.batch_axis if spec.batch_axis < len(o.shape) else 0
    return IR(model, specs, outputs, info)


def reads_or_has_logic(module) -> bool:
    return any(type(m).__module__ == "gatec.nn.logic" for m in module.modules())


def from_exported(path: Path, input_shapes, batch_axis, info) -> Source:
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


# ---------------------------------------------------------------- ONNX -> IR

def from_onnx(path: Path, input_shapes, batch_axis, info) -> Source:
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:
        raise GatecError(f"{path}: corrupt or invalid ONNX file ({first_line(e)})") from None
    original = model
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    if opset < 13:
        try:
            model = onnx.version_converter.convert_version(model, OPSET)
        except Exception as e:
            raise GatecError(f"{path}: cannot upgrade opset {opset} to {OPSET}: {first_line(e)}") from None
    init_names = {i.name for i in model.graph.initializer}
    graph_inputs = [v for v in model.graph.input if v.name not in init_names]
    specs = value_info_specs(graph_inputs)
    if input_shapes:
        if len(input_shapes) != len(specs):
            raise GatecError(f"{path} has {len(specs)} input(s) but {len(input_shapes)} --input-shape were given")
        for s, shape in zip(specs, input_shapes):
            fixed = [a for a in range(len(s.shape)) if a not in s.dynamic]
            if len(shape) != len(s.shape) or any(shape[a] != s.shape[a] for a in fixed):
                raise GatecError(f"input '{s.name}': shape {list(shape)} does not fit the model's {describe_dims(s)}")
            s.shape = [int(d) for d in shape]
    for s in specs:
        s.batch_axis = batch_axis if s.dynamic and batch_axis in s.dynamic else (s.dynamic[0] if s.dynamic else 0)
        if any(n.domain == LOGIC_DOMAIN and s.name in n.input for n in model.graph.node):
            s.values = "binary"
    model = onnx.ModelProto.FromString(model.SerializeToString())  # the reference keeps the file's graph
    fix_axes_the_graph_baked(model, specs, None)
    ir = IR(model, specs, value_info_specs(model.graph.output), info)
    return Source(ir, lazy(lambda: onnx_reference(original if opset >= 13 else model)))


def describe_dims(s: TensorSpec) -> str:
    return "[" + ",".join("?" if a in s.dynamic else str(d) for a, d in enumerate(s.shape)) + "]"


