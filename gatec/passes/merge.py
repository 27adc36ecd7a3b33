"""Merging of identical gates: the same op on the same inputs, also with the inputs swapped
(the op's table transposed), so symmetric ops match either way round. A gate that computes the
complement of an earlier one (op 15 - op on the same inputs) becomes an inverter of it, which
the wires pass then folds into its readers."""
from __future__ import annotations

import numpy as np

from ..ir.logic import OP_ID
from ..ir.netlist import Netlist
from . import register
from .logic_common import CONSTANT, READS_A, READS_B, SAME_INPUT, TRANSPOSE, canonical_inputs, run_logic_pass


NOT_A = OP_ID["NOT_A"]


def merge_gates(net: Netlist) -> tuple[Netlist, dict]:
    net = canonical_inputs(net)
    n_in, n_nodes = net.n_inputs, net.n_inputs + net.n_gates
    rep = np.arange(n_nodes)  # node -> the first node computing the same function of the same inputs
    a, b, op = net.a.copy(), net.b.copy(), net.op.astype(np.int64)
    seen: dict[tuple, int] = {}
    merged = inverted = 0
    counted = np.zeros(n_nodes, bool)  # GroupSum's inputs: an inverter there would stay, one level deeper
    counted[net.outputs] = True
    for g in range(net.n_gates):
        o, x, y = int(op[g]), int(rep[a[g]]), int(rep[b[g]])
        if CONSTANT[o]:
            x = y = 0
        else:
            if READS_A[o] and READS_B[o] and x == y:
                o = int(SAME_INPUT[o])
            elif READS_A[o] and READS_B[o] and x > y:
                x, y, o = y, x, int(TRANSPOSE[o])
            elif not READS_A[o]:  # a function of b alone: read it as a
                x, o = y, int(TRANSPOSE[o])
            if not READS_B[o]:
                y = x
        a[g], b[g], op[g] = x, y, o
        key = (o, x, y)
        if key in seen:
            rep[n_in + g] = seen[key]
            merged += 1
        elif not CONSTANT[o] and not counted[n_in + g] and (15 - o, x, y) in seen:
            a[g] = b[g] = seen[(15 - o, x, y)]
            op[g] = NOT_A
            inverted += 1
            seen[key] = n_in + g
        else:
            seen[key] = n_in + g
    out = canonical_inputs(Netlist(n_in, a, b, op.astype(np.uint8), rep[net.outputs], net.k, net.tau))
    return out, {"gates_merged": int(merged), "complements_inverted": int(inverted)}


@register("merge", "merge identical gates (same op on the same inputs, either order); complements become inverters", kind="logic")
def run(ir):
    return run_logic_pass(ir, merge_gates)
