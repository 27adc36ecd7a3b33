"""Target `fpga`: a logic network as one Verilog module, an arithmetic network as an hls4ml project
(gatec/targets/_hardware.py)."""
from __future__ import annotations

from .. import Option, _hls4ml, _verilog
from .._hardware import HardwareTarget


class FpgaTarget(HardwareTarget):
    name = "fpga"
    options = (
        *_verilog.OPTIONS,
        Option("backend", "fpga, arithmetic networks: the hls4ml backend (default vitis)",
               choices=("vivado", "vitis", "quartus", "catapult"), default="vitis"),
        *_hls4ml.OPTIONS,
        Option("part", "fpga, hls4ml: the FPGA part (default: the backend's)"),
    )

    def describe(self) -> str:
        return ("Verilog for FPGAs from a logic network (simulated with Icarus Verilog, LUT6 counted by yosys); "
                "an hls4ml project from an arithmetic network (verified by hls4ml's C simulation)")


TARGET = FpgaTarget()
