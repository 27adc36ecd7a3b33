"""Targets, found by folder: each subpackage of gatec/targets (a folder whose name does not start
with "_"; those are generators the targets share) defines `TARGET`, an instance of `Target`:

    name, describe()                     what `gatec targets` and manifests show
    options: tuple[Option, ...]          the CLI builds each target's flags from these
    plan(ir, options) -> Plan            checks the IR once (raises GatecError naming the first
                                         node it cannot build) and decides what build needs
    build(plan, folder) -> list[str]     writes the artifact's files into `folder`
    load(folder, options) -> Runner      Runner.run(list[np.ndarray]) -> list[np.ndarray]
    tolerance(plan) -> Tolerance         how close the artifact must come to the reference

A folder added to `gatec.targets.__path__` is searched too (how a target outside the package,
or a test's, registers itself).
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import GatecError
from ..ir import IR


DEFAULT = "cpu"  # the target `gatec compile` builds when none is named


def integer_at_least(low: int):
    """An argument type for a whole number >= low (a thread count: 0, the runtime's own; a sample
    count: 1): the CLI refuses -1 by name."""
    def parse(text) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got '{text}'") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"  # what argparse names in its own messages
    return parse


non_negative_int = integer_at_least(0)


@dataclass(frozen=True)
class Tolerance:
    atol: float = 0.0
    rtol: float = 0.0
    exact: bool = False  # logic networks: every output equal, bit for bit
    scale_rtol: float = 0.0  # relative to the output's scale: adds scale_rtol * max|ref| to atol

    def describe(self) -> str:
        if self.exact:
            return "bit-exact"
        scaled = f" + {self.scale_rtol:.3g}*max|ref|" if self.scale_rtol else ""
        return f"|err| <= {self.atol:g}{scaled} + {self.rtol:.3g}*|ref|"


@dataclass(frozen=True)
class Option:
    """One target option: `name` in options dicts and manifests, `--name-with-dashes` on the CLI."""
    name: str
    help: str
    type: Callable = str
    choices: tuple = ()
    default: Any = None  # what the target assumes when the option is not given
    metavar: str | None = None
    cli: bool = True  # False: set by gatec itself (e.g. no synthesis while only verifying)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass
class Plan:
    """What a target decided about one IR, once: `parts` is the target's own (a netlist and its
    encoder, an hls4ml conversion, a lowered graph); `details` go into the artifact's manifest,
    `notes` are lines compile prints (what this machine could not build, say)."""
    ir: IR
    options: dict
    parts: Any = None
    details: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


class Target:
    name = ""
    options: tuple[Option, ...] = ()

    def describe(self) -> str:
        raise NotImplementedError

    def plan(self, ir: IR, options: dict, data: list | None = None) -> Plan:
        """`data`: the calibration inputs (the user's --data) or None; a target that fits itself to
        the values a model takes (fpga's --precision auto) reads them, others ignore them."""
        raise NotImplementedError

    def build(self, plan: Plan, folder) -> list[str]:
        raise NotImplementedError

    def load(self, folder, options: dict):
        raise NotImplementedError

    def tolerance(self, plan: Plan) -> Tolerance:
        raise NotImplementedError

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def check_options(self, options: dict) -> dict:
        """`options` itself, once every name is one this target declares (values are the target's
        to check, in plan)."""
        for name in options:
            if self.option(name) is None:
                flag = Option(name, "").flag
                owners = [t for t in names() if t != self.name and get(t).option(name) is not None]
                where = f"an option of target {', '.join(owners)}" if owners else "no option of any target"
                takes = ", ".join(o.flag for o in self.options if o.cli) or "none"
                raise GatecError(f"{flag} is {where}, not of target {self.name} (its options: {takes})")
        return options

    def settings(self, options: dict) -> dict:
        """Every declared option with its value: the given one, else the default."""
        return {o.name: options.get(o.name, o.default) for o in self.options}


def names() -> list[str]:
    """The targets, in the order `gatec targets` lists them: the default first, then by name."""
    found = {m.name for m in pkgutil.iter_modules(__path__) if m.ispkg and not m.name.startswith("_")}
    return sorted(found, key=lambda n: (n != DEFAULT, n))


def get(name: str) -> Target:
    if name not in names():
        raise GatecError(f"unknown target '{name}'; targets: {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{name}").TARGET
