"""Whole modules pickled with `torch.save(model)`, unpickled with torch's weights_only
unpickler: the only classes allowed are torch.nn's, gatec's and those of the modules the user
names with --import."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pickle
import pkgutil
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import GatecError
from . import logic_pickle
from .source import BY_CONTENT, ModelFile, Source
from .trace import first_line, from_module, torch_reference

if TYPE_CHECKING:  # annotations only: torch is imported where a PyTorch model is loaded
    import torch


def detect(file: ModelFile) -> int | None:
    if file.is_zip:
        found = any(n.endswith("data.pkl") for n in file.members or [])
    else:
        found = file.data[:1] == b"\x80"  # legacy (non-zip) torch.save pickle
    return BY_CONTENT if found else None


def load(path: Path, input_shapes, batch_axis: int, imports: Sequence[str], info: dict) -> Source:
    ir = None if imports else logic_pickle.logic_ir(path, input_shapes, batch_axis, info)
    if ir is not None:  # a plain logic network: its IR without torch, torch only once the reference runs
        return Source(ir, deferred_reference(path))
    return from_module(load_pickled_module(path, imports), input_shapes, batch_axis, info)


def deferred_reference(path: Path):
    """The PyTorch module's reference, the file loaded (and torch imported) on the first call."""
    loaded = []

    def run(arrays):
        if not loaded:
            import gatec.nn
            loaded.append(torch_reference(gatec.nn.adopt(load_pickled_module(path, ())).eval()))
        return loaded[0](arrays)
    return run


def import_user_modules(spec: str) -> list:
    """The modules --import names: a dotted module name; a FILE.py (one inside a package, as part
    of its package, so that its relative imports work); or a package folder, with its submodules
    (their classes are trusted too)."""
    path = Path(spec)
    if not (spec.endswith(".py") or "/" in spec or os.sep in spec or path.is_dir()):
        return [import_named(spec, spec, "cannot import it")]
    if not path.exists():
        raise GatecError(f"--import {spec}: no such file" + ("" if spec.endswith(".py") else " or folder"))
    path = path.resolve()
    if path.is_dir():
        if not (path / "__init__.py").exists():
            raise GatecError(f"--import {spec}: a folder without __init__.py is not a package (name a .py file in it)")
        package = import_in_tree(spec, path / "__init__.py")
        try:
            names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
        except Exception as e:
            raise GatecError(f"--import {spec}: importing it failed ({first_line(e)})") from None
        return [package] + [import_named(spec, n, f"importing {n} failed") for n in names]
    if path.suffix != ".py":
        raise GatecError(f"--import {spec}: neither a .py file nor a package folder")
    if (path.parent / "__init__.py").exists():
        return [import_in_tree(spec, path)]
    name = path.stem
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        raise GatecError(f"--import {spec}: importing it failed ({first_line(e)})") from None
    return [module]


def import_in_tree(spec: str, file: Path):
    """Import `file` of a package by its dotted name, the folder above the top package first on
    sys.path; a package of that name imported from elsewhere is forgotten first, so that the tree
    named is the one trusted."""
    parts, root = ([] if file.name == "__init__.py" else [file.stem]), file.parent
    while (root / "__init__.py").exists():
        parts.insert(0, root.name)
        root = root.parent
    top = sys.modules.get(parts[0])
    if top is not None and not Path(getattr(top, "__file__", None) or root).resolve().is_relative_to(root / parts[0]):
        for n in [n for n in sys.modules if n == parts[0] or n.startswith(parts[0] + ".")]:
            del sys.modules[n]
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    name = ".".join(parts)
    return import_named(spec, name, f"importing it as {name} failed")


def import_named(spec: str, name: str, failed: str):
    try:
        return importlib.import_module(name)
    except Exception as e:
        raise GatecError(f"--import {spec}: {failed} ({first_line(e)})") from None


def trusted_globals(imports: Sequence[str]) -> list:
    """Classes a pickled module may name: torch.nn's and gatec.nn's modules, and the classes of
    the modules the user named with --import (also under `__main__`, where a training script
    that defined them saved them)."""
    import torch
    import gatec.nn.gated  # noqa: F401  (gatec's own modules are trusted: import them first)
    import gatec.nn.logic  # noqa: F401
    import gatec.nn.torchlogix
    import gatec.qat  # noqa: F401  (quantization-aware models pickle gatec.qat's layers)
    allowed = []
    roots = [m for name, m in sys.modules.items()
             if m is not None and name.startswith(("torch.nn.modules", "gatec.nn", "gatec.qat"))]
    roots += [m for s in imports for m in import_user_modules(s)]
    for mod in roots:
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, torch.nn.Module) or obj.__module__ == mod.__name__:
                allowed.append(obj)
                allowed.append((obj, f"__main__.{obj.__name__}"))
                allowed.append((obj, f"{mod.__name__}.{obj.__name__}"))
    allowed += [torch.nn.parameter.Parameter, set, getattr, torch.Size]
    allowed += gatec.nn.torchlogix.unpickling_names()  # torchlogix's classes: stand-ins (it needs Python 3.12)
    return allowed


def load_pickled_module(path: Path, imports: Sequence[str]) -> torch.nn.Module:
    import torch
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
        except Exception as e:  # torch's safe unpickler meets damaged bytes with whatever error they cause
            raise GatecError(f"{path}: corrupt torch.save file ({first_line(e)})") from None
    if isinstance(obj, dict):
        raise GatecError(f"{path}: holds a state_dict, not a model; save the whole module (torch.save(model)), "
                         f"TorchScript (torch.jit.save) or a torch.export program")
    if not isinstance(obj, torch.nn.Module):
        raise GatecError(f"{path}: holds a {type(obj).__name__}, not a torch.nn.Module")
    return obj
