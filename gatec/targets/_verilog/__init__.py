"""Shared by targets `fpga` and `asic`: a logic network as synthesizable Verilog.

The artifact holds `model.v` (the top module `gatec_model`: one `assign` per live gate, the
GroupSum as a compressor tree per class, class counts as output ports; for `fpga` each counter
is an instance of a small module, `gatec_count<n>`, that LUT mapping sees alone, and the gates
only the GroupSum reads are computed inside the counters), `testbench.v` (reads
vectors with $readmemb, writes the counts), a Yosys script, `resources.json` and
`resources.png`. The Verilog takes the input bits; an input encoder that compares features
with thresholds stays outside the Verilog (`encoder.json`, applied by the runner) and any
other encoder is refused. The float score of class c is count_c / tau, done outside too.

The runner simulates the Verilog with Icarus Verilog on the emulator's inputs (thousands of
vectors per vvp run), so verification is by real simulation, bit for bit.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...errors import GatecError
from ...ir import IR
from ...ir.logic import READS_A, READS_B, bitwise_expressions
from ...ir.netlist import CONSTANT_OPS, Netlist, fold
from .. import Tolerance
from ..logic_input import network_and_encoder

MODULE = "gatec_model"
CHUNK = 4096  # vectors per simulation run (the testbench's memory depth)
EXPR = bitwise_expressions("1'b0", "1'b1")  # Verilog for each op id on operands {a}, {b}
# GroupSum compressors read this many bits each: a 6:3 popcount is three LUT6 (one per output
# bit), a full adder (3:2) is the classic ASIC cell.
COMPRESSOR_INPUTS = {"fpga": 6, "asic": 3}
PLAIN = -1  # a compressor term that is a signal itself, not a gate on two signals


def pipeline_of(options: dict) -> int:
    value = options.get("pipeline", 0)
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise GatecError(f"--pipeline {value}: give a whole number of logic levels (0: combinational)") from None
    if n < 0 or n != value and str(n) != str(value):
        raise GatecError(f"--pipeline {value}: give a whole number of logic levels >= 0 (0: combinational)")
    return n


def network(ir: IR):
    """(netlist, encoder or None): the encoder is (feature, threshold) per input bit."""
    return network_and_encoder(ir, " (the Verilog takes input bits: only threshold/thermometer encoders are "
                                   "supported, applied outside the Verilog)")


def check(ir: IR) -> None:
    network(ir)


class Design:
    """A logic network lowered to bit signals: live gates, then one compressor tree per class,
    with each signal's logic level (gates and compressors count one level each) and, when
    pipelined, the register stage it is computed in."""

    def __init__(self, net: Netlist, compressor_inputs: int = 6, pipeline: int = 0, fuse: bool = False):
        self.net, self.pipeline, self.fuse = net, pipeline, fuse
        n_in, n_nodes = net.n_inputs, net.n_inputs + net.n_gates
        folded = fold(net)
        a, b, outputs = folded.a, folded.b, folded.outputs
        self.gates = np.flatnonzero(folded.live).tolist()

        # signals: name (a Verilog bit expression), level; ids 0..n_nodes-1 are the netlist's nodes
        self.name = [f"x[{i}]" for i in range(n_in)] + [f"g{n_in + g}" for g in range(net.n_gates)]
        self.level = [0] * n_nodes
        self.constant = [False] * n_nodes
        self.assigns: list[tuple[int, str, list[int]]] = []  # (id, op template, operand ids)
        for g in self.gates:
            node, op = n_in + g, int(net.op[g])
            if op in CONSTANT_OPS:
                self.name[node], self.constant[node] = ("1'b1" if op == 15 else "1'b0"), True
                continue
            reads = [x for x, r in ((int(a[g]), READS_A[op]), (int(b[g]), READS_B[op])) if r]
            self.level[node] = 1 + max(self.level[x] for x in reads)
            self.assigns.append((node, op, [int(a[g]), int(b[g])]))
        self.live_gates = len(self.assigns)
        self.live_levels = [self.level[node] for node, _, _ in self.assigns]

        # GroupSum: per class, columns of terms by weight, reduced by compressors until one bit
        # per column; the earliest terms are grouped first so the tree stays shallow. A term is
        # (node, op, a, b): op PLAIN counts signal `node` itself, else the gate op(a, b) inside the
        # compressor. With `fuse` (LUT targets), gates only the GroupSum reads move into the
        # compressors that count them: an inverter costs nothing inside a counter's LUT, and three
        # gates on six signals shared with the rest of the network are counted by two LUT6 (sum
        # and carry) instead of three gate LUTs feeding the counters; the count of 2 x signal is
        # signal in the next column, and constant zeros are dropped.
        self.compressors: list[tuple[int, int, list[tuple], list[int]]] = []  # (index, width, terms, output ids)
        groups = outputs.reshape(net.k, -1)
        self.count_width = int(groups.shape[1]).bit_length()
        fused = self.fused_terms(outputs) if fuse else {}
        self.assigns = [t for t in self.assigns if t[0] not in fused]
        self.count_bits: list[list[int]] = []
        for group in groups:
            if fuse:
                uses = np.bincount(group, minlength=n_nodes)
                columns = [[] for _ in range(self.count_width)]
                for s in np.flatnonzero(uses).tolist():
                    if self.name[s] == "1'b0":
                        continue
                    for w in range(int(uses[s]).bit_length()):
                        if uses[s] >> w & 1:
                            columns[w].append(fused.get(s, (s, PLAIN, s, s)))
                # three two-input gates per counter, each LUT reading their six operands
                # (one or two left over: a counter of one, which is the gate's own LUT)
                pairs = [t for t in columns[0] if t[1] != PLAIN and READS_A[t[1]] and READS_B[t[1]]]
                chosen = set(t[0] for t in pairs)
                columns[0] = [t for t in columns[0] if t[0] not in chosen]
                whole = len(pairs) // 3 * 3
                for i in range(0, whole, 3):
                    low, high = self.compress(pairs[i:i + 3])
                    columns[0].append((low, PLAIN, low, low))
                    columns[1].append((high, PLAIN, high, high))
                for t in pairs[whole:]:
                    (out,) = self.compress([t])
                    columns[0].append((out, PLAIN, out, out))
            else:
                columns = [[(int(x), PLAIN, int(x), int(x)) for x in group]] + [[] for _ in range(self.count_width - 1)]
            # column by column from the lowest weight, when all its carries are in: counters on the
            # earliest terms first (a tree, not a chain); each counter of t terms leaves one bit in
            # the column, so t - 1 is taken off and one uneven counter first leaves exactly one bit
            # at the end (a half adder only where a column has two bits left)
            for w in range(self.count_width):
                column = columns[w]
                while len(column) > 1:
                    column.sort(key=lambda t: self.level[t[0]])
                    r = (len(column) - 1) % (compressor_inputs - 1)
                    take = r + 1 if r else compressor_inputs
                    outs = self.compress(column[:take])
                    del column[:take]
                    column.append((outs[0], PLAIN, outs[0], outs[0]))
                    for i, out in enumerate(outs[1:], 1):
                        if w + i < self.count_width:  # the count is below 2**count_width: higher bits are zero
                            columns[w + i].append((out, PLAIN, out, out))
            # a lone gate term still needs its own signal
            columns = [[t if t[1] == PLAIN else (self.compress([t])[0], PLAIN) for t in c] for c in columns]
            # the count is below 2**count_width, so higher columns carry constant zeros
            self.count_bits.append([c[0][0] if c else None for c in columns[:self.count_width]]
                                   + [None] * (self.count_width - len(columns)))
        self.depth = max([self.level[b] for bits in self.count_bits for b in bits if b is not None] + [0])
        self.stages = -(-self.depth // pipeline) if pipeline else 0
        self.registers: dict[tuple[int, int], str] = {}  # (signal, stage) -> reg name

    def fused_terms(self, outputs: np.ndarray) -> dict[int, tuple]:
        """Gates worth computing inside the counters: read by no gate, counted once, and either
        one-operand (an inverter) or reading two signals that exist anyway (inputs, or read
        elsewhere), so that no gate that used to share their LUT needs one of its own. Constant
        ones become terms too (constant zeros are dropped by the caller)."""
        uses = np.bincount(outputs, minlength=len(self.level))  # times the GroupSum counts each signal
        readers = uses.copy()  # ... plus the gates that read it
        for _, op, (x, y) in self.assigns:
            readers[x] += READS_A[op]
            readers[y] += READS_B[op]
        gate = {node: (op, x, y) for node, op, (x, y) in self.assigns}
        terms = {}
        for node, (op, x, y) in gate.items():
            if readers[node] != 1 or uses[node] != 1:
                continue
            operands = [v for v, r in ((x, READS_A[op]), (y, READS_B[op])) if r]
            if len(operands) == 1 or all(v not in gate or readers[v] > 1 for v in operands):
                terms[node] = (node, op, x, y)
        for node, name in enumerate(self.name[:len(self.level)]):
            if name == "1'b1":
                terms[node] = (node, 15, node, node)
        return terms

    def compress(self, terms: list[tuple]) -> list[int]:
        index = len(self.compressors)
        width = len(terms).bit_length()
        ids = list(range(len(self.name), len(self.name) + width))
        self.name += [f"p{index}[{i}]" for i in range(width)]
        level = 1 + max(self.level[t[0]] for t in terms)
        self.level += [level] * width
        self.constant += [False] * width
        self.compressors.append((index, width, terms, ids))
        return ids

    def stage(self, signal: int) -> int:
        """The pipeline stage a signal is computed in (inputs and constants: 0)."""
        return (self.level[signal] - 1) // self.pipeline if self.pipeline and self.level[signal] else 0

    def ref(self, signal: int | None, stage: int) -> str:
        """The signal as seen in `stage`: through one register per stage boundary it crosses."""
        if signal is None:
            return "1'b0"
        if not self.pipeline or self.constant[signal] or self.stage(signal) >= stage:
            return self.name[signal]
        key = (signal, stage)
        if key not in self.registers:
            self.ref(signal, stage - 1)
            self.registers[key] = f"r{stage}_{signal}"
        return self.registers[key]

    def verilog(self, title: str) -> str:
        net, n_in = self.net, self.net.n_inputs
        body: list[str] = []
        for node, op, (x, y) in self.assigns:
            s = self.stage(node)
            body.append(f"assign {self.name[node]} = {EXPR[op].format(a=self.ref(x, s), b=self.ref(y, s))};")
        counters: dict[tuple, int] = {}  # the counter modules, by the ops of their terms
        for index, width, terms, ids in self.compressors:
            s = self.stage(ids[0])
            if not self.fuse:
                body.append(f"assign p{index} = {' + '.join(self.ref(t[0], s) for t in terms)};")
                continue
            terms = sorted(terms, key=lambda t: t[1])
            ops = tuple(t[1] for t in terms)
            number = counters.setdefault(ops, len(counters))
            operands = [self.ref(v, s) for t in terms for v in term_operands(t)] or ["1'b0"]
            body.append(f"gatec_count{number} c{index} (.i({{{', '.join(reversed(operands))}}}), .s(p{index}));")
        outputs = []
        for c, bits in enumerate(self.count_bits):
            refs = [self.ref(b, self.stages) for b in reversed(bits)]
            outputs.append(f"assign count_{c} = {{{', '.join(refs)}}};")
        gate_names = [self.name[node] for node, _, _ in self.assigns]
        decls = [f"wire {', '.join(gate_names[i:i + 16])};" for i in range(0, len(gate_names), 16)]
        decls += [f"wire [{w - 1}:0] p{i};" for i, w, _, _ in self.compressors]
        regs = sorted(self.registers.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        decls += [f"reg {name};" for _, name in regs]
        clocked = []
        for stage in sorted({s for (_, s) in self.registers}):
            clocked.append("always @(posedge clk) begin")
            clocked += [f"    {name} <= {self.ref(sig, stage - 1)};" for (sig, s), name in regs if s == stage]
            clocked.append("end")
        ports = (["input wire clk"] if self.pipeline else []) + [f"input wire [{n_in - 1}:0] x"]
        ports += [f"output wire [{self.count_width - 1}:0] count_{c}" for c in range(net.k)]
        latency = (f"pipelined every {self.pipeline} logic levels: {self.stages} register stages, the counts "
                   f"come {self.stages} clock cycles after the input" if self.pipeline else "purely combinational")
        inside = (f"; {self.live_gates - len(self.assigns)} of them are computed inside the GroupSum's counters"
                  if self.fuse else "")
        header = [f"// Generated by gatec: {title}.",
                  f"// {net.n_gates} gates in the model; {self.live_gates} after wires, constants and unused gates are",
                  f"// folded away{inside}; GroupSum as {len(self.compressors)} compressors; {self.depth} logic levels;",
                  f"// {latency}.",
                  f"// x: {n_in} input bits. count_c: the number of ones in class c's group of {len(net.outputs) // net.k};"
                  f" the class score is count_c / {float(net.tau)!r} (tau).",
                  f"module {MODULE} (", "    " + ",\n    ".join(ports), ");"]
        modules = [counter_module(number, ops) for ops, number in counters.items()]
        return "\n".join(header + decls + body + clocked + outputs + ["endmodule", ""] + modules)


def term_operands(term: tuple) -> list[int]:
    """The signals a compressor term reads: the signal itself, or the operands its gate reads."""
    node, op, a, b = term
    return [node] if op == PLAIN else [v for v, r in ((a, READS_A[op]), (b, READS_B[op])) if r]


def counter_module(number: int, ops: tuple) -> str:
    """A counter: the number of ones among its terms (a signal, or a gate on two), as one module
    so that LUT mapping sees each counter alone (six inputs: one LUT6 per output bit)."""
    exprs, n = [], 0
    for op in ops:
        if op == PLAIN:
            exprs.append(f"i[{n}]")
            n += 1
            continue
        names = {}
        for operand, reads in (("a", READS_A[op]), ("b", READS_B[op])):
            names[operand] = f"i[{n}]" if reads else "1'b0"
            n += reads
        exprs.append(EXPR[op].format(**names))
    width = len(ops).bit_length()
    # {e} is one bit wide whatever the sum's width (a concatenation is self-determined)
    return "\n".join([f"module gatec_count{number} (input wire [{max(n, 1) - 1}:0] i, output wire [{width - 1}:0] s);",
                      f"assign s = {' + '.join(f'{{{e}}}' for e in exprs)};", "endmodule", ""])


def testbench(design: Design) -> str:
    """Reads up to CHUNK vectors (+in=FILE, one line of input bits each, x[n-1] first), +n=N of
    them, and writes one line of class counts per vector to +out=FILE."""
    n_in, k, latency = design.net.n_inputs, design.net.k, design.stages
    counts = ", ".join(f"count_{c}" for c in range(k))
    wires = "\n".join(f"wire [{design.count_width - 1}:0] count_{c};" for c in range(k))
    clock = ["reg clk = 0;"] if latency else []
    connect = (".clk(clk), " if latency else "") + ".x(x), " + ", ".join(f".count_{c}(count_{c})" for c in range(k))
    if latency:
        loop = f"""    for (i = 0; i < n + {latency - 1}; i = i + 1) begin
        if (i < n) x = mem[i];
        #1 clk = 1;
        #1 clk = 0;
        if (i >= {latency - 1}) $fdisplay(fd, "{' '.join(['%0d'] * k)}", {counts});
    end"""
    else:
        loop = f"""    for (i = 0; i < n; i = i + 1) begin
        x = mem[i];
        #1 $fdisplay(fd, "{' '.join(['%0d'] * k)}", {counts});
    end"""
    return "\n".join([
        "// Generated by gatec: simulates gatec_model on vectors from a file (vvp sim.vvp +in=FILE +n=N +out=FILE).",
        "`timescale 1ns/1ns", "module tb;", f"reg [{n_in - 1}:0] mem [0:{CHUNK - 1}];", f"reg [{n_in - 1}:0] x;",
        *clock, wires, "integer i, n, fd;", "reg [1023:0] infile, outfile;",
        f"{MODULE} dut ({connect});", "initial begin",
        '    if (!$value$plusargs("in=%s", infile) || !$value$plusargs("n=%d", n) || !$value$plusargs("out=%s", outfile))',
        '        $fatal(1, "usage: vvp sim.vvp +in=FILE +n=N +out=FILE");',
        "    $readmemb(infile, mem, 0, n - 1);", "    fd = $fopen(outfile, \"w\");",
        loop, "    $fclose(fd);", "    $finish;", "end", "endmodule", ""])


def yosys_script(kind: str) -> str:
    if kind == "fpga":
        return (f"read_verilog model.v\nsynth -lut 6 -top {MODULE}\nflatten\nopt_clean -purge\n"
                f"tee -o yosys_stat.txt stat\ntee -o yosys_ltp.txt ltp -noff\n")
    return (f"read_verilog model.v\nsynth -top {MODULE}\nabc -g NAND\nopt_clean -purge\n"
            f"tee -o yosys_stat.txt stat\ntee -o yosys_ltp.txt ltp -noff\n")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise GatecError(f"{tool} is not installed; `make install` installs yosys and iverilog "
                         f"(apt-get install -y yosys iverilog)")
    return path


def synthesize(verilogs: list[str], kind: str) -> list[dict]:
    """Runs Yosys on each Verilog text, side by side; returns their cell counts and longest
    paths (in cells)."""
    with tempfile.TemporaryDirectory(prefix="gatec-yosys-") as tmp:
        procs = []
        for i, verilog in enumerate(verilogs):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            (folder / "model.v").write_text(verilog)
            (folder / "synth.ys").write_text(yosys_script(kind))
            procs.append(subprocess.Popen([need("yosys"), "-q", "-s", "synth.ys"], cwd=folder, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        outputs = [proc.communicate() for proc in procs]  # all finish before the folder goes
        results = []
        for i, (proc, (out, err)) in enumerate(zip(procs, outputs)):
            if proc.returncode != 0:
                raise GatecError(f"yosys failed on the generated Verilog: {(err or out).strip()[-500:]}")
            stat = (Path(tmp) / str(i) / "yosys_stat.txt").read_text()
            ltp = (Path(tmp) / str(i) / "yosys_ltp.txt").read_text()
            cells = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(\$\S+)\s+(\d+)\s*$", stat, re.M)}
            depth = re.search(r"length=(\d+)", ltp)
            results.append({"cells": cells, "longest_path_cells": int(depth.group(1)) if depth else 0})
    return results


def flip_flops(cells: dict) -> int:
    return sum(n for name, n in cells.items() if "DFF" in name.upper())


# NAND2 equivalents by CMOS transistor count (a NAND2 is 4 transistors): NOT 2 -> 0.5,
# a static master-slave D flip-flop about 24 -> 6.
GE = {"$_NAND_": 1.0, "$_NOT_": 0.5}
GE_FLIP_FLOP = 6.0


def resources(design: Design, kind: str, full: dict, groupsum: dict, original_gates: int) -> dict:
    net = design.net
    if kind == "fpga":
        luts = full["cells"].get("$lut", 0)
        gs_luts = groupsum["cells"].get("$lut", 0)
        synthesized = {"luts": luts, "lut_inputs": 6, "flip_flops": flip_flops(full["cells"]),
                       "lut_depth": full["longest_path_cells"], "cells": full["cells"],
                       "groupsum_luts_alone": gs_luts,
                       "luts_per_original_gate": round(luts / max(original_gates, 1), 4),
                       "luts_per_live_gate": round(luts / max(design.live_gates, 1), 4)}
        main = "luts"
    else:
        cells = full["cells"]
        area = sum(GE.get(c, 0) * n for c, n in cells.items()) + GE_FLIP_FLOP * flip_flops(cells)
        gs_area = sum(GE.get(c, 0) * n for c, n in groupsum["cells"].items())
        synthesized = {"cells": cells, "cell_count": sum(cells.values()), "flip_flops": flip_flops(cells),
                       "gate_depth": full["longest_path_cells"], "nand2_equivalents": area,
                       "groupsum_nand2_equivalents_alone": gs_area,
                       "nand2_equivalents_per_original_gate": round(area / max(original_gates, 1), 4)}
        main = "nand2_equivalents"
    levels = np.bincount(design.live_levels, minlength=1)[1:].tolist()
    return {
        "target": kind, "module": MODULE,
        "synthesized_by_yosys": synthesized,
        "synthesis": ("yosys `synth -lut 6` then `flatten` (generic 6-input LUTs, abc mapping, each GroupSum counter "
                      "a module mapped on its own; no vendor carry chains or DSPs); LUTs counted on the flattened design"
                      if kind == "fpga" else
                      "yosys `synth` + `abc -g NAND` (generic NAND2/NOT cells, no liberty file); NAND2 equivalents "
                      "by transistor count: NAND2 1, NOT 0.5, D flip-flop 6"),
        "groupsum_alone": "the GroupSum compressor trees synthesized on their own (inputs free), for the breakdown; "
                          "in the whole design Yosys may share logic across the boundary",
        "network": {"gates_in_model": original_gates, "gates_in_compiled_netlist": int(net.n_gates),
                    "live_gates": design.live_gates, "gates_inside_counters": design.live_gates - len(design.assigns),
                    "input_bits": int(net.n_inputs), "classes": int(net.k),
                    "group_size": int(len(net.outputs) // net.k), "tau": float(net.tau),
                    "count_bits": design.count_width, "compressors": len(design.compressors),
                    "live_gates_per_level": levels},
        "estimated": {"logic_levels": design.depth, "pipeline_every_levels": design.pipeline,
                      "latency_cycles": design.stages, "register_bits": len(design.registers),
                      "fmax": "not known without vendor place-and-route",
                      "note": "logic levels count two-input gates and GroupSum compressors one level each; latency is "
                              "the number of pipeline register stages (0: combinational)"},
        "headline": main,
    }


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s, kind = res["synthesized_by_yosys"], res["target"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    if kind == "fpga":
        total, gs, unit = s["luts"], s["groupsum_luts_alone"], "LUT6"
    else:
        total, gs, unit = s["nand2_equivalents"], s["groupsum_nand2_equivalents_alone"], "NAND2 equivalents"
    bars = {"whole design": total, "GroupSum alone": gs, "gates (difference)": max(total - gs, 0)}
    left.bar(list(bars), list(bars.values()), color=["C0", "C1", "C2"])
    for i, v in enumerate(bars.values()):
        left.text(i, v, f"{v:g}", ha="center", va="bottom", fontsize=8)
    left.set_ylabel(unit)
    left.set_title(f"{kind}: synthesized by yosys ({res['network']['gates_in_model']} gates in model)", fontsize=9)
    per_level = res["network"]["live_gates_per_level"]
    right.bar(np.arange(1, len(per_level) + 1), per_level, color="C2")
    right.set_xlabel("logic level")
    right.set_ylabel("live gates")
    right.set_title("live gates per logic level (netlist, not synthesized)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def groupsum_only(design: Design) -> Netlist:
    """The GroupSum alone: its inputs free bits, for the resource breakdown."""
    net = design.net
    n = len(net.outputs)
    return Netlist(n, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8), np.arange(n), net.k, net.tau)


def original_gate_count(ir: IR, net: Netlist) -> int:
    """Gates in the model before gatec's passes (the first pass's 'before'), else the netlist's."""
    for p in ir.passes:
        before = p.get("before")
        if isinstance(before, dict) and "gates" in before:
            return int(before["gates"])
    return int(net.n_gates)


def build(ir: IR, folder: Path, options: dict, kind: str) -> list[str]:
    folder = Path(folder)
    pipeline = pipeline_of(options)
    net, encoder = network(ir)
    fan_in = COMPRESSOR_INPUTS[kind]
    design = Design(net, fan_in, pipeline, fuse=kind == "fpga")
    verilog = design.verilog(f"a logic network for target {kind}")
    files = {"model.v": verilog, "testbench.v": testbench(design), "synth.ys": yosys_script(kind)}
    if encoder is not None:
        files["encoder.json"] = json.dumps({
            "about": "the model's input encoder, outside the Verilog: bit j of x = feature[feature_index[j]] > "
                     "threshold[j] in float32", "features": int(np.prod(ir.inputs[0].shape[1:])),
            "feature_index": encoder[0].tolist(), "threshold": [float(t) for t in encoder[1]]}, indent=1) + "\n"
    for name, text in files.items():
        (folder / name).write_text(text)
    if not options.get("synthesize", True):  # verification needs only the simulation
        return sorted(files)
    gs = Design(groupsum_only(design), fan_in, 0, fuse=kind == "fpga")
    full, groupsum = synthesize([verilog, gs.verilog("GroupSum alone")], kind)
    res = resources(design, kind, full, groupsum, original_gate_count(ir, net))
    (folder / "resources.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    plot(res, folder / "resources.png")
    return sorted(files) + ["resources.json", "resources.png"]


class Runner:
    """Compiles model.v + testbench.v with Icarus Verilog once, then simulates the inputs in
    chunks of CHUNK vectors and returns count / tau as float32."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        text = (self.folder / "model.v").read_text()
        self.n_inputs = int(re.search(r"input wire \[(\d+):0\] x", text).group(1)) + 1
        self.k = len(re.findall(r"output wire \[\d+:0\] count_\d+", text))
        self.tau = np.float32(float(re.search(r"count_c / (\S+) \(tau\)", text).group(1)))
        enc = self.folder / "encoder.json"
        self.encoder = json.loads(enc.read_text()) if enc.exists() else None
        self.tmp = tempfile.TemporaryDirectory(prefix="gatec-sim-")
        self.vvp = Path(self.tmp.name) / "sim.vvp"
        proc = subprocess.run([need("iverilog"), "-g2005", "-s", "tb", "-o", str(self.vvp),
                               str(self.folder / "testbench.v"), str(self.folder / "model.v")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise GatecError(f"iverilog cannot compile the Verilog: {(proc.stderr or proc.stdout).strip()[:500]}")

    def bits(self, x: np.ndarray) -> np.ndarray:
        if self.encoder is None:
            return np.asarray(x).reshape(len(x), -1).astype(np.uint8)
        x = np.asarray(x, np.float32).reshape(len(x), -1)
        return (x[:, self.encoder["feature_index"]] > np.asarray(self.encoder["threshold"], np.float32)).astype(np.uint8)

    def counts(self, bits: np.ndarray) -> np.ndarray:
        out = np.zeros((len(bits), self.k), np.int64)
        tmp = Path(self.tmp.name)
        for start in range(0, len(bits), CHUNK):
            chunk = bits[start:start + CHUNK]
            if chunk.shape[1] != self.n_inputs:
                raise GatecError(f"the Verilog takes {self.n_inputs} input bits per vector, got {chunk.shape[1]}")
            lines = np.where(chunk[:, ::-1] != 0, ord("1"), ord("0")).astype(np.uint8)  # x[n-1] first
            lines = np.concatenate([lines, np.full((len(chunk), 1), ord("\n"), np.uint8)], 1)
            (tmp / "in.mem").write_bytes(lines.tobytes())
            proc = subprocess.run([need("vvp"), "-n", str(self.vvp), f"+in={tmp / 'in.mem'}", f"+n={len(chunk)}",
                                   f"+out={tmp / 'out.txt'}"], capture_output=True, text=True)
            if proc.returncode != 0:
                raise GatecError(f"the simulation failed: {(proc.stderr or proc.stdout).strip()[:500]}")
            got = np.loadtxt(tmp / "out.txt", dtype=np.int64, ndmin=2).reshape(-1, self.k)
            if len(got) != len(chunk):
                raise GatecError(f"the simulation returned {len(got)} vectors of {len(chunk)}")
            out[start:start + len(chunk)] = got
        return out

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return [self.counts(self.bits(arrays[0])).astype(np.float32) / self.tau]


def load(folder: Path, options: dict) -> Runner:
    return Runner(folder)


def tolerance(ir: IR, options: dict | None = None) -> Tolerance:
    return Tolerance(exact=True)
