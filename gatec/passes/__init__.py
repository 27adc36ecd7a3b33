"""Passes: each a function in its own file, `run(ir) -> (ir, stats)`, registered by name.

`stats` is `{"before": {...}, "after": {...}}` with the counts the pass changes (nodes, gates,
parameters, MACs); `apply` appends `{"name", "before", "after"}` to the IR's pass log, which
lands in the artifact's manifest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import GatecError
from ..ir import IR


@dataclass(frozen=True)
class Pass:
    name: str
    help: str
    run: Callable[[IR], tuple[IR, dict]]


REGISTRY: dict[str, Pass] = {}


def register(name: str, help: str):
    def wrap(fn):
        REGISTRY[name] = Pass(name, help, fn)
        return fn
    return wrap


def load_all() -> dict[str, Pass]:
    """Import every pass module (each import registers its pass)."""
    import importlib
    import pkgutil
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY


def apply(ir: IR, names: list[str]) -> IR:
    passes = load_all()
    for name in names:
        if name not in passes:
            raise GatecError(f"unknown pass '{name}'; passes: {', '.join(sorted(passes))}")
        ir, stats = passes[name].run(ir.copy())
        ir.passes.append({"name": name, "before": stats["before"], "after": stats["after"]})
    return ir
