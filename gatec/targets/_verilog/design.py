"""A logic network as one Verilog module, `gatec_model`: one `assign` per live gate, the
GroupSum as a compressor tree per class, class counts as output ports, optional pipeline
registers; for `fpga` each counter is an instance of a small module, `gatec_count<n>`, that LUT
mapping sees alone, and the gates only the GroupSum reads are computed inside the counters.
"""
from __future__ import annotations

import numpy as np

from ...ir.logic import CONSTANTS, READS_A, READS_B, bitwise_expressions
from ...ir.netlist import Netlist, fold
from .encoder import Inside

MODULE = "gatec_model"
EXPR = bitwise_expressions("1'b0", "1'b1")  # Verilog for each op id on operands {a}, {b}
# GroupSum compressors read this many bits each: a 6:3 popcount is three LUT6 (one per output
# bit), a full adder (3:2) is the classic ASIC cell.
COMPRESSOR_INPUTS = {"fpga": 6, "asic": 3}
PLAIN = -1  # a compressor term that is a signal itself, not a gate on two signals


class Design:
    """A logic network lowered to bit signals: live gates, then one compressor tree per class,
    with each signal's logic level (gates and compressors count one level each) and, when
    pipelined, the register stage it is computed in."""

    def __init__(self, net: Netlist, compressor_inputs: int = 6, pipeline: int = 0, fuse: bool = False,
                 encoder: Inside | None = None):
        self.net, self.pipeline, self.fuse = net, pipeline, fuse
        # with the encoder inside (encoder.py) the module takes the features, and x, the logic's
        # input bits, is a wire of comparisons
        self.encoder = encoder
        self.port = ("f", encoder.port_width) if encoder else ("x", net.n_inputs)
        n_in, n_nodes = net.n_inputs, net.n_inputs + net.n_gates
        folded = fold(net)
        a, b, outputs = folded.a, folded.b, folded.outputs
        self.gates = np.flatnonzero(folded.live).tolist()

        # signals: name (a Verilog bit expression), level; ids 0..n_nodes-1 are the netlist's nodes
        self.name = [f"x[{i}]" for i in range(n_in)] + [f"g{n_in + g}" for g in range(net.n_gates)]
        self.level = [0] * n_nodes
        self.constant = [False] * n_nodes
        self.assigns: list[tuple[int, int, list[int]]] = []  # (id, op, operand ids)
        for g in self.gates:
            node, op = n_in + g, int(net.op[g])
            if op in CONSTANTS:
                self.name[node], self.constant[node] = EXPR[op], True
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
            if name == "1'b1":  # a constant-one gate: counted through its own op, which reads nothing
                terms[node] = (node, int(self.net.op[node - self.net.n_inputs]), node, node)
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
        ports = (["input wire clk"] if self.pipeline else []) + [f"input wire [{self.port[1] - 1}:0] {self.port[0]}"]
        if self.encoder:
            decls = [f"wire [{n_in - 1}:0] x;"] + decls
            body = self.encoder.lines + body
        ports += [f"output wire [{self.count_width - 1}:0] count_{c}" for c in range(net.k)]
        latency = (f"pipelined every {self.pipeline} logic levels: {self.stages} register stages, the counts "
                   f"come {self.stages} clock cycles after the input" if self.pipeline else "purely combinational")
        inside = (f"; {self.live_gates - len(self.assigns)} of them are computed inside the GroupSum's counters"
                  if self.fuse else "")
        header = [f"// Generated by gatec: {title}.",
                  f"// {net.n_gates} gates in the model; {self.live_gates} after wires, constants and unused gates are",
                  f"// folded away{inside}; GroupSum as {len(self.compressors)} compressors; {self.depth} logic levels;",
                  f"// {latency}.",
                  (f"// f: the features, {self.encoder.about}; x: the {n_in} input bits, compared in here. " if self.encoder
                   else f"// x: {n_in} input bits. ") +
                  f"count_c: the number of ones in class c's group of {len(net.outputs) // net.k};"
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


def groupsum_only(design: Design) -> Netlist:
    """The GroupSum alone: its inputs free bits, for the resource breakdown."""
    net = design.net
    n = len(net.outputs)
    return Netlist(n, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8), np.arange(n), net.k, net.tau)
