"""Shared by targets `fpga` and `asic`: a logic network as synthesizable Verilog.

The artifact holds `model.v` (the top module `gatec_model`, design.py), `testbench.v` (reads
vectors with $readmemb, writes the counts; testbench.py), a Yosys script, `resources.json` and
`resources.png` (yosys.py). The Verilog takes the input bits; an input encoder that compares
features with thresholds stays outside the Verilog (`encoder.json`, applied by the runner), or,
with --input-format, comes inside it as comparators on fixed-point features (encoder.py); any
other encoder is refused. The float score of class c is count_c / tau, done outside too.

The runner (simulate.py) simulates the Verilog with Icarus Verilog on the emulator's inputs
(thousands of vectors per vvp run), so verification is by real simulation, bit for bit.

    plan(ir, options, kind) -> VerilogPlan   checks the network, its encoder and --pipeline once
                                             (NetworkRefused when the Verilog cannot take the network)
    build(plan, folder) -> list[str]         writes the artifact's files
    load(folder, options) -> Runner
    tolerance(plan) -> Tolerance             bit-exact
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ...errors import GatecError
from ...ir import IR
from ...ir.netlist import Netlist
from .. import Option, Tolerance
from ..logic_input import network_and_encoder
from . import testbench, yosys
from .design import COMPRESSOR_INPUTS, Design, groupsum_only
from .encoder import InputFormat, inside
from .simulate import Runner


# the options of every target built on this flow
OPTIONS = (
    Option("pipeline", "fpga/asic: a register stage every N logic levels (default 0: combinational)", type=int,
           default=0, metavar="N"),
    Option("input_format", "fpga/asic, logic networks with a threshold/thermometer encoder: the features' "
           "fixed-point format, uW or sW (W-bit unsigned/signed integers), uW.F or sW.F (F fraction bits), so that "
           "the Verilog takes the features and compares them itself (default: the encoder stays outside, "
           "encoder.json)", metavar="FORMAT"),
    Option("synthesize", "fpga/asic: run yosys for resources (off while only verifying)", type=bool, default=True,
           cli=False),
)


@dataclass
class VerilogPlan:
    ir: IR
    options: dict
    kind: str  # "fpga" or "asic"
    net: Netlist
    encoder: tuple[np.ndarray, np.ndarray] | None  # (feature, threshold) per input bit, or None
    pipeline: int  # logic levels per register stage (0: combinational)
    input_format: InputFormat | None = None  # the encoder inside the Verilog, on features of this format


def pipeline_of(options: dict) -> int:
    value = options.get("pipeline", 0)
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise GatecError(f"--pipeline {value}: give a whole number of logic levels (0: combinational)") from None
    if n < 0 or n != value and str(n) != str(value):
        raise GatecError(f"--pipeline {value}: give a whole number of logic levels >= 0 (0: combinational)")
    return n


class NetworkRefused(GatecError):
    """The network or its input encoder is not one the Verilog takes: target fpga then tries
    hls4ml, which it does not for a bad --pipeline."""


def network(ir: IR):
    """(netlist, encoder or None): the encoder is (feature, threshold) per input bit."""
    try:
        return network_and_encoder(ir, " (the Verilog takes input bits: only threshold/thermometer encoders are "
                                       "supported, applied outside the Verilog)")
    except GatecError as e:
        raise NetworkRefused(*e.args) from None


def plan(ir: IR, options: dict, kind: str, data: list | None = None) -> VerilogPlan:
    """Refuses what the Verilog cannot take (NetworkRefused: the logic layers not last, an encoder
    that is not a comparison with thresholds), then a bad --pipeline or --input-format, or data
    the input format does not hold (GatecError)."""
    net, encoder = network(ir)
    pipeline = pipeline_of(options)
    if not options.get("input_format"):
        return VerilogPlan(ir, options, kind, net, encoder, pipeline)
    fmt = InputFormat.parse(options["input_format"])
    if encoder is None:
        raise GatecError(f"--input-format {fmt}: this network reads input bits, it has no encoder to compare features")
    if data is not None:
        fmt.codes(np.asarray(data[0], np.float32).reshape(len(data[0]), -1))  # refused by name, before building
    # the features the hardware can be given: the emulator draws them on the format's grid
    ir = ir.copy()
    ir.inputs = [replace(ir.inputs[0], grid=(fmt.step, *fmt.value_range))] + ir.inputs[1:]
    return VerilogPlan(ir, options, kind, net, encoder, pipeline, fmt)


def original_gate_count(ir: IR, net: Netlist) -> int:
    """Gates in the model before gatec's passes (the first pass's 'before'), else the netlist's."""
    for p in ir.passes:
        before = p.get("before")
        if isinstance(before, dict) and "gates" in before:
            return int(before["gates"])
    return int(net.n_gates)


def build(plan: VerilogPlan, folder: Path) -> list[str]:
    folder, kind = Path(folder), plan.kind
    fan_in = COMPRESSOR_INPUTS[kind]
    n_features = int(np.prod(plan.ir.inputs[0].shape[1:]))
    fmt = plan.input_format
    encoder = inside(fmt, *plan.encoder, n_features) if fmt is not None else None
    design = Design(plan.net, fan_in, plan.pipeline, fuse=kind == "fpga", encoder=encoder)
    verilog = design.verilog(f"a logic network for target {kind}")
    files = {"model.v": verilog, "testbench.v": testbench.testbench(design), "synth.ys": yosys.yosys_script(kind)}
    if plan.encoder is not None:
        features, thresholds = plan.encoder
        about = (f"the model's input encoder, inside the Verilog: the module takes the features as {fmt} codes "
                 f"(value * 2^{fmt.frac}) and compares them itself" if fmt else
                 "the model's input encoder, outside the Verilog: bit j of x = feature[feature_index[j]] > "
                 "threshold[j] in float32")
        files["encoder.json"] = json.dumps({
            "about": about, "features": n_features, "feature_index": features.tolist(),
            "threshold": [float(t) for t in thresholds], **({"input_format": str(fmt)} if fmt else {})},
            indent=1) + "\n"
    for name, text in files.items():
        (folder / name).write_text(text)
    if not plan.options.get("synthesize", True):  # verification needs only the simulation
        return sorted(files)
    gs = Design(groupsum_only(design), fan_in, 0, fuse=kind == "fpga")
    full, groupsum = yosys.synthesize([verilog, gs.verilog("GroupSum alone")], kind)
    res = yosys.resources(design, kind, full, groupsum, original_gate_count(plan.ir, plan.net))
    (folder / "resources.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    yosys.plot(res, folder / "resources.png")
    return sorted(files) + ["resources.json", "resources.png"]


def load(folder: Path, options: dict) -> Runner:
    return Runner(folder)


def tolerance(plan: VerilogPlan) -> Tolerance:
    return Tolerance(exact=True)
