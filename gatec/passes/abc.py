"""Resynthesis with ABC (yosys-abc; `apt-get install -y yosys`): the netlist is written as BLIF,
restructured (strash; dc2 x2) and mapped back to two-input gates (if -K 2). The result is kept
only when proven equivalent (exhaustive simulation up to 16 inputs, else ABC's `cec`) and smaller."""
from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import GatecError
from ..ir.logic import OP_ID
from ..ir.netlist import Netlist
from . import register
from .logic_common import READS_A, READS_B, SAME_INPUT, PASS_THROUGH, TABLES, canonical_inputs, live_gates, op_of, run_logic_pass

ABC = "yosys-abc"
SCRIPT = "read_blif {src}; strash; dc2; dc2; if -K 2; write_blif {dst}"


def to_blif(net: Netlist) -> str:
    name = lambda n: f"i{n}" if n < net.n_inputs else f"n{n}"  # noqa: E731
    lines = [".model gatec", ".inputs " + " ".join(name(i) for i in range(net.n_inputs)),
             ".outputs " + " ".join(f"o{i}" for i in range(len(net.outputs)))]
    for g in np.flatnonzero(live_gates(net)):
        o, t = net.op[g], TABLES[net.op[g]]
        reads = [(name(net.a[g]), 0)] * bool(READS_A[o]) + [(name(net.b[g]), 1)] * bool(READS_B[o])
        if len(reads) == 2 and reads[0][0] == reads[1][0]:  # ABC rejects a node reading one signal twice
            reads, t = reads[:1], TABLES[SAME_INPUT[o]]
        if t.min() == t.max():  # constant (XOR of a signal with itself, say): ABC wants no fanins
            reads = []
        lines.append(".names " + " ".join([r for r, _ in reads] + [name(net.n_inputs + g)]))
        if len(reads) == 2:
            lines += [f"{x}{y} 1" for x, y in itertools.product((0, 1), repeat=2) if t[2 * x + y]]
        elif reads:  # f of one input v: the table at a=v (or b=v)
            lines += [f"{v} 1" for v in (0, 1) if t[2 * v if reads[0][1] == 0 else v]]
        elif t[0]:
            lines.append("1")
    for i, o in enumerate(net.outputs.tolist()):
        lines += [f".names {name(o)} o{i}", "1 1"]
    return "\n".join(lines + [".end", ""])


def from_blif(text: str, net: Netlist) -> Netlist:
    """ABC's mapped BLIF (covers of at most two inputs) back to a netlist."""
    text = text.replace("\\\n", " ")
    covers, order = {}, []
    current = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == ".names":
            current = (words[1:-1], [])
            covers[words[-1]] = current
            order.append(words[-1])
        elif not words[0].startswith("."):
            current[1].append(words)
        else:
            current = None
    node = {f"i{i}": i for i in range(net.n_inputs)}
    a, b, op = [], [], []

    def build(name: str) -> int:  # depth-first, so every gate follows the gates it reads
        if name in node:
            return node[name]
        inputs, rows = covers[name]
        if len(inputs) > 2:
            raise GatecError(f"ABC returned a {len(inputs)}-input node; expected two-input gates")
        srcs = [build(x) for x in inputs]
        table = []
        for x, y in itertools.product((0, 1), repeat=2):
            bits = [x, y][:len(inputs)]
            on = [all(c == "-" or int(c) == v for c, v in zip(r[0], bits)) for r in rows if len(r) == 2]
            offset = bool(rows) and len(rows[0]) == 2 and rows[0][1] == "0"
            value = int(any(on)) if len(inputs) else int(bool(rows) and rows[0][0] == "1")
            table.append(1 - value if offset and len(inputs) else value)
        if len(inputs) == 1:
            srcs = srcs * 2
            table = [table[0], table[0], table[2], table[2]]  # a function of a only
        elif not inputs:
            srcs = [0, 0]
        a.append(srcs[0]), b.append(srcs[1]), op.append(op_of(table))
        node[name] = net.n_inputs + len(op) - 1
        return node[name]

    outputs = [build(f"o{i}") for i in range(len(net.outputs))]
    return canonical_inputs(Netlist(net.n_inputs, np.array(a, np.int64), np.array(b, np.int64),
                                    np.array(op, np.uint8), np.array(outputs, np.int64), net.k, net.tau))


def real_gates(net: Netlist) -> int:
    live = live_gates(net)
    return int((live & (net.op != PASS_THROUGH) & (net.op != OP_ID["B"])).sum())


def resynthesize(net: Netlist) -> tuple[Netlist, dict]:
    if shutil.which(ABC) is None:
        raise GatecError("pass 'abc' needs yosys-abc on PATH (apt-get install -y yosys)")
    with tempfile.TemporaryDirectory(prefix="gatec-abc-") as tmp:
        src, dst = Path(tmp) / "in.blif", Path(tmp) / "out.blif"
        src.write_text(to_blif(net))
        proc = subprocess.run([ABC, "-c", SCRIPT.format(src=src, dst=dst)], capture_output=True, text=True)
        if proc.returncode != 0 or not dst.exists():
            raise GatecError(f"yosys-abc failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        new = from_blif(dst.read_text(), net)
        if net.n_inputs <= 16:
            bits = np.array(list(itertools.product((0, 1), repeat=net.n_inputs)), np.uint8).reshape(-1, net.n_inputs)
            proven = np.array_equal(net.output_bits(bits), new.output_bits(bits))
        else:
            check = subprocess.run([ABC, "-c", f"cec {src} {dst}"], capture_output=True, text=True)
            proven = "Networks are equivalent" in check.stdout
    before, after = real_gates(net), real_gates(new)
    kept = proven and after < before
    return (new if kept else net), {"proven_equivalent": bool(proven), "kept": bool(kept), "gates_before": before,
                                    "gates_abc": after}


@register("abc", "resynthesis with ABC (yosys-abc), kept only when proven equivalent and smaller", kind="logic",
          needs=ABC)
def run(ir):
    return run_logic_pass(ir, resynthesize)
