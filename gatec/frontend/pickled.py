"""Whole modules pickled with `torch.save(model)`, unpickled with torch's weights_only
unpickler: the only classes allowed are torch.nn's, gatec's and those of the modules the user
names with --import."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import torch

from ..errors import GatecError
from .source import BY_CONTENT, ModelFile, Source
from .trace import first_line, from_module


def detect(file: ModelFile) -> int | None:
    if file.is_zip:
        found = any(n.endswith("data.pkl") for n in file.members or [])
    else:
        found = file.data[:1] == b"\x80"  # legacy (non-zip) torch.save pickle
    return BY_CONTENT if found else None


def load(path: Path, input_shapes, batch_axis: int, imports: Sequence[str], info: dict) -> Source:
    return from_module(load_pickled_module(path, imports), input_shapes, batch_axis, info)


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
