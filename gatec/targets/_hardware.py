"""What `fpga` and `asic` share: a logic network becomes one Verilog module (gatec/targets/_verilog),
an arithmetic network (gated, recurrent, quantized) an hls4ml project verified by hls4ml's C
simulation (gatec/targets/_hls4ml); a logic network mixed with arithmetic layers that the Verilog
flow does not take goes to hls4ml too (hls4ml runs the logic layers as extension layers). Each
target says which hls4ml options it fixes (`asic`: the Catapult backend for an ASIC library)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ..errors import GatecError
from ..ir import IR
from . import Plan, Target, Tolerance, _hls4ml, _verilog


class HardwareTarget(Target):
    hls4ml_fixed: dict = {}  # hls4ml options the target sets itself

    def plan(self, ir: IR, options: dict, data=None) -> Plan:
        if ir.kind != "logic":
            return Plan(ir, options, self.hls4ml_plan(ir, options, data))
        try:
            verilog = _verilog.plan(ir, options, self.name, data)
            return Plan(verilog.ir, options, verilog)  # its ir: the inputs the hardware takes
        except _verilog.NetworkRefused as verilog_refused:  # a bad --pipeline is not a reason to try hls4ml
            try:
                return Plan(ir, options, self.hls4ml_plan(ir, options, data))
            except GatecError:
                raise verilog_refused from None

    def hls4ml_plan(self, ir: IR, options: dict, data):
        with self.refusals_named():
            return _hls4ml.plan(ir, {**options, **self.hls4ml_fixed}, data=data)

    @contextmanager
    def refusals_named(self):
        """The hls4ml flow's refusals name the fpga target: say which target refused."""
        try:
            yield
        except GatecError as e:
            if self.name == "fpga":
                raise
            raise GatecError(str(e).replace("fpga (hls4ml)", f"{self.name} (hls4ml)", 1)) from None

    def flow(self, plan: Plan):
        return _verilog if isinstance(plan.parts, _verilog.VerilogPlan) else _hls4ml

    def build(self, plan: Plan, folder: Path) -> list[str]:
        with self.refusals_named():
            return self.flow(plan).build(plan.parts, folder)

    def load(self, folder: Path, options: dict):
        if (Path(folder) / _hls4ml.CONFIG_FILE).exists():
            return _hls4ml.load(folder, {**options, **self.hls4ml_fixed})
        return _verilog.load(folder, options)

    def tolerance(self, plan: Plan) -> Tolerance:
        return self.flow(plan).tolerance(plan.parts)
