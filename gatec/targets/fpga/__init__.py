"""Target `fpga`: a logic network as one Verilog module (gatec/targets/rtl has the code)."""
from __future__ import annotations

from pathlib import Path

from ...ir import IR
from ..rtl import check, load, tolerance  # noqa: F401  (the target protocol)
from ..rtl import build as build_rtl

NAME = "fpga"


def describe() -> str:
    return "Verilog for FPGAs from a logic network: simulated with Icarus Verilog, LUT6 counted by yosys"


def build(ir: IR, folder: Path, options: dict) -> list[str]:
    return build_rtl(ir, folder, options, NAME)
