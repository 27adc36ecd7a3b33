"""Passes: each a function in its own file, `run(ir) -> (ir, stats)`, registered by name.

`stats` is `{"before": {...}, "after": {...}}` with the counts the pass changes (nodes, gates,
parameters, MACs), plus anything else it reports (what it removed, the error it caused);
`apply` appends `{"name", "before", "after", ...}` to the IR's pass log, which lands in the
artifact's manifest.

A pass is for logic networks, arithmetic ones, or any (`kind`). Passes that read calibration
data take `data=` (a list of input arrays, or None for random inputs from the IR's specs); a
pass may take one argument, written `name:value` (e.g. `magnitude-prune:0.8`).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from ..errors import GatecError
from ..ir import IR


@dataclass(frozen=True)
class Pass:
    name: str
    help: str
    run: Callable[..., tuple[IR, dict]]
    kind: str = "any"  # "logic", "arithmetic" or "any"
    needs: str | None = None  # an external program the pass runs (it is skipped by -O levels when missing)


REGISTRY: dict[str, Pass] = {}


def register(name: str, help: str, kind: str = "any", needs: str | None = None):
    def wrap(fn):
        REGISTRY[name] = Pass(name, help, fn, kind, needs)
        return fn
    return wrap


def load_all() -> dict[str, Pass]:
    """Import every pass module (each import registers its pass)."""
    import importlib
    import pkgutil
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY


def available(p: Pass) -> bool:
    import shutil
    return p.needs is None or shutil.which(p.needs) is not None


def apply(ir: IR, names: list[str], data=None) -> IR:
    passes = load_all()
    for spec in names:
        name, _, arg = spec.partition(":")
        if name not in passes:
            raise GatecError(f"unknown pass '{name}'; passes: {', '.join(sorted(passes))}")
        p = passes[name]
        if p.kind != "any" and p.kind != ir.kind:
            raise GatecError(f"pass '{name}' works on {p.kind} networks; this model is {ir.kind}")
        params = inspect.signature(p.run).parameters
        kwargs = {"data": data} if "data" in params else {}
        if arg:
            if "arg" not in params:
                raise GatecError(f"pass '{name}' takes no argument (got '{spec}')")
            kwargs["arg"] = arg
        ir, stats = p.run(ir.copy(), **kwargs)
        ir.passes.append({"name": spec, **stats})
    return ir
