"""Targets: each a subpackage with the same entry points.

    NAME: str
    describe() -> str                          one line for `gatec compile --help` and manifests
    check(ir) -> None                          raises GatecError naming the first node it cannot build
    build(ir, folder, options) -> list[str]    writes the artifact's files into `folder`
    load(folder, options) -> Runner            Runner.run(list[np.ndarray]) -> list[np.ndarray]
    tolerance(ir, options) -> Tolerance        how close the artifact must come to the reference
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import GatecError

TARGETS = {"cpu": "gatec.targets.cpu", "c": "gatec.targets.c", "fpga": "gatec.targets.fpga",
           "asic": "gatec.targets.asic"}


@dataclass(frozen=True)
class Tolerance:
    atol: float = 0.0
    rtol: float = 0.0
    exact: bool = False  # logic networks: every output equal, bit for bit

    def describe(self) -> str:
        return "bit-exact" if self.exact else f"|err| <= {self.atol:g} + {self.rtol:g}*|ref|"


def get(name: str):
    if name not in TARGETS:
        raise GatecError(f"unknown target '{name}'; targets: {', '.join(TARGETS)}")
    return importlib.import_module(TARGETS[name])
