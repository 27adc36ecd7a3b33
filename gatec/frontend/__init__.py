"""Front end: load a model file (or a live module) and trace it into the IR.

A `Source` holds the IR and the reference the emulator checks every target against: the
PyTorch module itself for PyTorch inputs, ONNX Runtime on the original file for ONNX, and
qonnx's executor for QONNX or for graphs with gatec's logic layers.

Each file format is one module of this package, with `detect(file)` and `load(...)`, and one row
of FORMATS: adding a format is adding both.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .. import progress
from ..errors import GatecError
from ..ir.reference import onnx_reference, qonnx_reference  # noqa: F401  (gatec.frontend's API)
from ..ir.sampling import example_array, variant_shape  # noqa: F401
from . import exported, onnx_file, pickled, torchscript
from .source import ModelFile, Source
from .trace import from_module

if TYPE_CHECKING:  # annotations only: torch is imported where a PyTorch model is loaded
    import torch


@dataclass(frozen=True)
class Format:
    shown: str  # the format as messages name it
    suffix: str  # the extension its files are saved with
    detect: Callable[[ModelFile], int | None]  # BY_NAME, RECORDED or BY_CONTENT when the file is of this format
    load: Callable[..., Source]  # (path, input_shapes, batch_axis, imports, info) -> Source


FORMATS = {  # in the order messages list them; of two rows equally sure of a file, the earlier wins
    "torchscript": Format("TorchScript", ".pt", torchscript.detect, torchscript.load),
    "pickle": Format("torch.save", ".pt", pickled.detect, pickled.load),
    "export": Format("torch.export", ".pt2", exported.detect, exported.load),
    "onnx": Format("ONNX", ".onnx", onnx_file.detect, onnx_file.load),
}


def load(model, input_shapes: Sequence[Sequence[int]] | None = None, imports: Sequence[str] = (),
         batch_axis: int = 0) -> Source:
    """Load `model` (a path or an nn.Module) into a Source. torch is imported only for PyTorch
    models: an ONNX file loads without it (its first result comes sooner)."""
    if not isinstance(model, (str, os.PathLike)):
        import torch
    if not isinstance(model, (str, os.PathLike)) and isinstance(model, torch.nn.Module):
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
    with progress.stage(f"loading {path.name} ({FORMATS[fmt].shown})"):
        return FORMATS[fmt].load(path, input_shapes, batch_axis, imports, info)


def detect_format(path: Path, data: bytes) -> str:
    """The name of the FORMATS row whose `detect` is surest of the file."""
    file = ModelFile(path, data)
    found: dict[int, str] = {}
    for name, fmt in FORMATS.items():
        level = fmt.detect(file)
        if level:
            found.setdefault(level, name)
    if found:
        return found[min(found)]
    if file.is_zip and file.members is None:
        raise GatecError(f"{path}: corrupt archive")
    if file.is_zip:
        raise GatecError(f"{path}: a zip archive that is neither a TorchScript, torch.export nor torch.save file")
    raise GatecError(f"{path}: not a model file gatec can read (expected {expected_formats()}); "
                     f"the file may be corrupt")


def expected_formats() -> str:
    """The formats by extension: 'TorchScript or torch.save .pt, torch.export .pt2, or ONNX .onnx'."""
    by_suffix: dict[str, list[str]] = {}
    for fmt in FORMATS.values():
        by_suffix.setdefault(fmt.suffix, []).append(fmt.shown)
    kinds = [f"{' or '.join(shown)} {suffix}" for suffix, shown in by_suffix.items()]
    return kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + ", or " + kinds[-1]


def module_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256(type(module).__qualname__.encode())
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
