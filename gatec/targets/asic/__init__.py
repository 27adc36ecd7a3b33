"""Target `asic`: a logic network as one Verilog module, an arithmetic network as an hls4ml
Catapult project for an ASIC library (gatec/targets/_hardware.py)."""
from __future__ import annotations

from .. import Option, _hls4ml, _verilog
from .._hardware import HardwareTarget


class AsicTarget(HardwareTarget):
    name = "asic"
    options = (
        *_verilog.OPTIONS,
        *_hls4ml.OPTIONS,
        Option("asic_library", "asic, hls4ml Catapult: the ASIC library (default nangate-45nm)",
               default="nangate-45nm"),
    )
    hls4ml_fixed = {"backend": "catapult", "technology": "asic"}

    def describe(self) -> str:
        return ("Verilog for ASICs from a logic network: simulated with Icarus Verilog, NAND2 cells counted by "
                "yosys; an hls4ml Catapult project from an arithmetic network, verified by its C simulation")


TARGET = AsicTarget()
