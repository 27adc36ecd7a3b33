"""Wire and inverter collapse: pass-through gates (ops 3, 5) become plain connections, and an
inverter (10, 12) is absorbed into each gate that reads it (the reader's truth table flipped
along that input). An output that is an inverter keeps one: GroupSum counts ones."""
from __future__ import annotations

import numpy as np

from ..ir.netlist import Netlist, by_level
from . import register
from .logic_common import FLIP_A, FLIP_B, READS_A, READS_B, canonical_inputs, run_logic_pass

NOT_A, NOT_B, A, B = 12, 10, 3, 5


def reader_counts(net: Netlist) -> np.ndarray:
    """Per node: how many live gates and output slots read it."""
    from .logic_common import live_gates
    n_in = net.n_inputs
    count = np.zeros(n_in + net.n_gates, np.int64)
    live = np.flatnonzero(live_gates(net))
    ops = net.op[live]
    np.add.at(count, net.a[live][READS_A[ops]], 1)
    np.add.at(count, net.b[live][READS_B[ops] & ~(READS_A[ops] & (net.a[live] == net.b[live]))], 1)
    np.add.at(count, net.outputs, 1)
    return count


def collapse_wires(net: Netlist) -> tuple[Netlist, dict]:
    net = canonical_inputs(net)
    n_in, n_nodes = net.n_inputs, net.n_inputs + net.n_gates
    source = np.arange(n_nodes)  # the non-wire node a node's value comes from...
    inverted = np.zeros(n_nodes, bool)  # ...and whether it is that node's complement
    a, b, op = net.a.copy(), net.b.copy(), net.op.astype(np.int64)
    absorbed = 0
    # level by level: the nodes a gate reads are resolved (earlier levels) by the time it is
    for gates in by_level(n_in, net.a, net.b, net.op):
        o, x, y = op[gates], a[gates], b[gates]
        ra = READS_A[o]
        a[gates] = np.where(ra, source[x], x)
        flip = ra & inverted[x]
        o = np.where(flip, FLIP_A[o], o)
        absorbed += int(flip.sum())
        rb = READS_B[o]
        b[gates] = np.where(rb, source[y], y)
        flip = rb & inverted[y]
        o = np.where(flip, FLIP_B[o], o)
        absorbed += int(flip.sum())
        op[gates] = o
        node = n_in + gates
        wire_a, wire_b = (o == A) | (o == NOT_A), (o == B) | (o == NOT_B)
        source[node[wire_a]], inverted[node[wire_a]] = a[gates][wire_a], o[wire_a] == NOT_A
        source[node[wire_b]], inverted[node[wire_b]] = b[gates][wire_b], o[wire_b] == NOT_B
    # an inverted output keeps its own gate (now an inverter reading the source directly), unless
    # that source gate feeds nothing else: then the source itself is complemented (op -> 15 - op)
    outputs = np.where(inverted[net.outputs], net.outputs, source[net.outputs])
    fanout = reader_counts(Netlist(n_in, a, b, op.astype(np.uint8), outputs, net.k, net.tau))
    inverters = outputs[inverted[outputs] & (source[outputs] >= n_in)]
    for o, s in zip(inverters.tolist(), source[inverters].tolist()):
        if fanout[s] == 1 and fanout[o] == np.count_nonzero(outputs == o):
            op[s - n_in] = 15 - op[s - n_in]
            outputs[outputs == o] = s
            fanout[s] = fanout[o]
            absorbed += 1
    wires = int(np.isin(op, (A, B)).sum())
    out = canonical_inputs(Netlist(n_in, a, b, op.astype(np.uint8), outputs, net.k, net.tau))
    return out, {"wires_collapsed": wires, "inverters_absorbed": int(absorbed)}


@register("wires", "wire and inverter collapse: ops 3, 5 become connections; inverters fold into their readers", kind="logic")
def run(ir):
    return run_logic_pass(ir, collapse_wires)
