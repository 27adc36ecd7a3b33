"""Passes: each in its own file, a function `run(ir, ...) -> (ir, stats)` registered by name with
`@register`, which declares what the pass is: its kind, the program it needs, whether it reads
calibration data, its short help and its one parameter (long help: the function's docstring,
else its module's).

    @register("magnitude-prune", "zero the smallest MatMul/Gemm weights ...", kind="arithmetic",
              reads_data=True, param=Param("sparsity", float, 0.5, 0.0, 1.0))
    def run(ir, data, sparsity): ...

`apply` calls `run(ir, data=..., sparsity=...)`: `data` (a list of input arrays, or None for
random inputs from the IR's specs) when the pass reads data, the parameter always, from
`name:value` (e.g. `magnitude-prune:0.8`, checked against its type and range) or its default.

`stats` is `{"before": {...}, "after": {...}}` with the counts the pass changes (nodes, gates,
parameters, MACs), plus anything else it reports (what it removed, the error it caused);
`apply` appends `{"name", "before", "after", ...}` to the IR's pass log, which lands in the
artifact's manifest.
"""
from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Callable

from .. import progress
from ..errors import GatecError
from ..ir import IR


@dataclass(frozen=True)
class Param:
    """A pass's parameter, written `pass:value`: an int or float in [low, high]."""
    name: str
    type: type
    default: int | float
    low: int | float
    high: int | float

    def range(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"

    def parse(self, pass_name: str, text: str) -> int | float:
        try:
            value = self.type(text)
        except ValueError:
            what = "an integer" if self.type is int else "a number"
            raise GatecError(f"pass '{pass_name}': {self.name} '{text}' is not {what} "
                             f"(like {pass_name}:{self.default:g})") from None
        if not self.low <= value <= self.high:
            raise GatecError(f"pass '{pass_name}': {self.name} {value:g} must lie in {self.range()}")
        return value


@dataclass(frozen=True)
class Pass:
    name: str
    help: str
    run: Callable[..., tuple[IR, dict]]
    kind: str = "any"  # "logic", "arithmetic" or "any"
    needs: str | None = None  # an external program the pass runs (it is skipped by -O levels when missing)
    reads_data: bool = False  # calibration data (--data, else random inputs from the specs)
    param: Param | None = None
    long_help: str = ""

    def describe(self) -> str:
        """What `gatec passes NAME` prints: the long help, then what the pass takes."""
        lines = [f"{self.name}: {self.help}", "", self.long_help, ""]
        lines.append(f"works on: {self.kind} networks")
        if self.needs:
            lines.append(f"needs: {self.needs} on PATH")
        if self.reads_data:
            lines.append("reads: calibration data (--data, else random inputs from the input specs)")
        if self.param:
            p = self.param
            lines.append(f"parameter: {p.name} ({p.type.__name__}, default {p.default:g}, in {p.range()}), "
                         f"written {self.name}:VALUE")
        else:
            lines.append("parameter: none")
        return "\n".join(lines)


REGISTRY: dict[str, Pass] = {}


def register(name: str, help: str, kind: str = "any", needs: str | None = None, reads_data: bool = False,
             param: Param | None = None):
    def wrap(fn):
        long_help = inspect.getdoc(fn) or inspect.getdoc(sys.modules[fn.__module__]) or help
        REGISTRY[name] = Pass(name, help, fn, kind, needs, reads_data, param, long_help)
        return fn
    return wrap


def load_all() -> dict[str, Pass]:
    """Import every pass module (each import registers its pass)."""
    import importlib
    import pkgutil
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY


def get(name: str) -> Pass:
    passes = load_all()
    if name not in passes:
        raise GatecError(f"unknown pass '{name}'; passes: {', '.join(sorted(passes))}")
    return passes[name]


def available(p: Pass) -> bool:
    import shutil
    return p.needs is None or shutil.which(p.needs) is not None


def apply(ir: IR, names: list[str], data=None) -> IR:
    for spec in names:
        name, _, arg = spec.partition(":")
        p = get(name)
        if p.kind != "any" and p.kind != ir.kind:
            raise GatecError(f"pass '{name}' works on {p.kind} networks; this model is {ir.kind}")
        if arg and p.param is None:
            raise GatecError(f"pass '{name}' takes no argument (got '{spec}')")
        kwargs = {"data": data} if p.reads_data else {}
        if p.param:
            kwargs[p.param.name] = p.param.parse(name, arg) if arg else p.param.default
        with progress.stage(f"pass {spec}"):
            ir, stats = p.run(ir.copy(), **kwargs)
        ir.passes.append({"name": spec, **stats})
    return ir


# -O levels, one set for every target. A model runs the passes of its kind (logic or arithmetic;
# `gatec passes` says which), and a level skips a pass whose external program is missing (abc
# needs yosys-abc). -O1, the default: the exact logic simplifications. -O2 adds ABC resynthesis
# (kept only when proven equivalent) and simplify again after it, and, for gated networks,
# pruning of gates that are off (sigmoid < 1e-6) on calibration data.
LEVELS: dict[int, list[str]] = {
    0: [],
    1: ["simplify"],
    2: ["simplify", "abc", "simplify", "prune-gates"],
}


def default_passes(ir: IR, level: int = 1) -> list[str]:
    """The passes -O<level> runs on this IR (those of its kind, tools present)."""
    if level not in LEVELS:
        raise GatecError(f"unknown optimization level -O{level}; levels: {', '.join(f'-O{l}' for l in LEVELS)}")
    registry = load_all()
    return [n for n in LEVELS[level] if registry[n].kind in ("any", ir.kind) and available(registry[n])]
