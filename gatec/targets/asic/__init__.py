"""Target `asic`: a logic network as one Verilog module (gatec/targets/_verilog has the code)."""
from __future__ import annotations

from pathlib import Path

from ...ir import IR
from .. import Plan, Target, Tolerance, _verilog


class AsicTarget(Target):
    name = "asic"
    options = _verilog.OPTIONS

    def describe(self) -> str:
        return "Verilog for ASICs from a logic network: simulated with Icarus Verilog, NAND2 cells counted by yosys"

    def plan(self, ir: IR, options: dict, data=None) -> Plan:
        return Plan(ir, options, _verilog.plan(ir, options, self.name))

    def build(self, plan: Plan, folder: Path) -> list[str]:
        return _verilog.build(plan.parts, folder)

    def load(self, folder: Path, options: dict):
        return _verilog.load(folder, options)

    def tolerance(self, plan: Plan) -> Tolerance:
        return _verilog.tolerance(plan.parts)


TARGET = AsicTarget()
