"""TorchScript archives (`torch.jit.save`)."""
from __future__ import annotations

from pathlib import Path


from ..errors import GatecError
from .source import BY_CONTENT, ModelFile, Source
from .trace import first_line, from_module


def detect(file: ModelFile) -> int | None:
    names = file.members or []
    if any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names):
        return BY_CONTENT
    return None


def load(path: Path, input_shapes, batch_axis: int, imports, info: dict) -> Source:
    import torch
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise GatecError(f"{path}: corrupt TorchScript archive ({first_line(e)})") from None
    return from_module(module, input_shapes, batch_axis, info)
