"""Target `fpga`: a logic network as one Verilog module (gatec/targets/rtl), an arithmetic
network (gated, quantized) as an hls4ml project verified by hls4ml's C simulation
(gatec/targets/hls)."""
from __future__ import annotations

from pathlib import Path

from ...errors import GatecError
from ...ir import IR
from .. import Tolerance
from .. import hls, rtl

NAME = "fpga"


def describe() -> str:
    return ("Verilog for FPGAs from a logic network (simulated with Icarus Verilog, LUT6 counted by yosys); "
            "an hls4ml project from an arithmetic network (verified by hls4ml's C simulation)")


def flow(ir: IR):
    """rtl for logic networks; hls for arithmetic ones and for logic layers mixed with arithmetic
    layers that the Verilog flow does not take (hls4ml runs the logic layers as extension layers)."""
    if ir.kind != "logic":
        return hls
    try:
        rtl.check(ir)
        return rtl
    except GatecError as verilog_refused:
        try:
            hls.check(ir)
        except GatecError:
            raise verilog_refused from None
        return hls


def check(ir: IR) -> None:
    flow(ir).check(ir)


def build(ir: IR, folder: Path, options: dict) -> list[str]:
    if flow(ir) is rtl:
        return rtl.build(ir, folder, options, NAME)
    return hls.build(ir, folder, options)


def load(folder: Path, options: dict):
    if (Path(folder) / hls.CONFIG_FILE).exists():
        return hls.load(folder, options)
    return rtl.load(folder, options)


def tolerance(ir: IR, options: dict | None = None) -> Tolerance:
    return flow(ir).tolerance(ir, options)
