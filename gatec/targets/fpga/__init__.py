"""Target `fpga`: a logic network as one Verilog module (gatec/targets/_verilog), an arithmetic
network (gated, quantized) as an hls4ml project verified by hls4ml's C simulation
(gatec/targets/_hls4ml)."""
from __future__ import annotations

from pathlib import Path

from ...errors import GatecError
from ...ir import IR
from .. import Option, Plan, Target, Tolerance, _hls4ml, _verilog

class FpgaTarget(Target):
    name = "fpga"
    options = (
        *_verilog.OPTIONS,
        Option("backend", "fpga, arithmetic networks: the hls4ml backend (default vitis)",
               choices=("vivado", "vitis", "quartus", "catapult"), default="vitis"),
        Option("io_type", "fpga, hls4ml: (default io_parallel)", choices=("io_parallel", "io_stream"),
               default="io_parallel"),
        Option("strategy", "fpga, hls4ml: (default latency)", choices=("latency", "resource"), default="latency"),
        Option("reuse_factor", "fpga, hls4ml: multipliers shared N ways (default 1)", type=int, default=1,
               metavar="N"),
        Option("precision", "fpga, hls4ml: auto (default: each layer's types from the values it takes on --data "
                            "or the emulator's inputs, 16 bits; auto<W> for W bits), or one type for every layer, "
                            "e.g. ap_fixed<16,6> (quantizers set their own)", metavar="TYPE"),
        Option("part", "fpga, hls4ml: the FPGA part (default: the backend's)"),
    )

    def describe(self) -> str:
        return ("Verilog for FPGAs from a logic network (simulated with Icarus Verilog, LUT6 counted by yosys); "
                "an hls4ml project from an arithmetic network (verified by hls4ml's C simulation)")

    def plan(self, ir: IR, options: dict, data=None) -> Plan:
        """Verilog for logic networks; hls4ml for arithmetic ones and for logic layers mixed with
        arithmetic layers that the Verilog flow does not take (hls4ml runs the logic layers as
        extension layers)."""
        if ir.kind != "logic":
            return Plan(ir, options, _hls4ml.plan(ir, options, data=data))
        try:
            return Plan(ir, options, _verilog.plan(ir, options, self.name))
        except _verilog.NetworkRefused as verilog_refused:  # a bad --pipeline is not a reason to try hls4ml
            try:
                return Plan(ir, options, _hls4ml.plan(ir, options, data=data))
            except GatecError:
                raise verilog_refused from None

    def flow(self, plan: Plan):
        return _verilog if isinstance(plan.parts, _verilog.VerilogPlan) else _hls4ml

    def build(self, plan: Plan, folder: Path) -> list[str]:
        return self.flow(plan).build(plan.parts, folder)

    def load(self, folder: Path, options: dict):
        if (Path(folder) / _hls4ml.CONFIG_FILE).exists():
            return _hls4ml.load(folder, options)
        return _verilog.load(folder, options)

    def tolerance(self, plan: Plan) -> Tolerance:
        return self.flow(plan).tolerance(plan.parts)


TARGET = FpgaTarget()
