"""Merging of identical gates: the same op on the same inputs, also with the inputs swapped
(the op's table transposed), so symmetric ops match either way round. A gate that computes the
complement of an earlier one (op 15 - op on the same inputs) becomes an inverter of it, which
the wires pass then folds into its readers."""
from __future__ import annotations

import numpy as np

from ..ir.logic import OP_ID
from ..ir.netlist import Netlist, by_level
from . import register
from .logic_common import CONSTANT, READS_A, READS_B, SAME_INPUT, TRANSPOSE, canonical_inputs, run_logic_pass


NOT_A = OP_ID["NOT_A"]


def merge_gates(net: Netlist) -> tuple[Netlist, dict]:
    net = canonical_inputs(net)
    n_in, n_nodes = net.n_inputs, net.n_inputs + net.n_gates
    rep = np.arange(n_nodes)  # node -> the first node computing the same function of the same inputs
    a, b, op = net.a.copy(), net.b.copy(), net.op.astype(np.int64)
    merged = inverted = 0
    counted = np.zeros(n_nodes, bool)  # GroupSum's inputs: an inverter there would stay, one level deeper
    counted[net.outputs] = True
    # Level by level (by_level keeps gate order within a level): the nodes a gate reads are
    # merged by then, and gates with the same (op, inputs), or complementary ones, share a level
    for gates in by_level(n_in, net.a, net.b, net.op):
        o, x, y = op[gates], rep[a[gates]], rep[b[gates]]
        both, reads_nothing = READS_A[o] & READS_B[o], CONSTANT[o]
        swap = (both & (x > y)) | (~READS_A[o] & ~reads_nothing)  # a function of b alone is read as a
        o = np.where(both & (x == y), SAME_INPUT[o], o)
        x, y, o = np.where(swap, y, x), np.where(swap & both, x, y), np.where(swap, TRANSPOSE[o], o)
        y = np.where(READS_B[o], y, x)
        x, y = np.where(reads_nothing, 0, x), np.where(reads_nothing, 0, y)
        constant = CONSTANT[o]
        a[gates], b[gates], op[gates] = x, y, o
        key = (o * n_nodes + x) * n_nodes + y
        keys, first, which = np.unique(key, return_index=True, return_inverse=True)
        first_gate = gates[first]  # per distinct key, the first gate that has it
        repeat = first[which] != np.arange(len(gates))
        rep[n_in + gates[repeat]] = n_in + first_gate[which[repeat]]
        merged += int(repeat.sum())
        # a first gate whose complement (15 - op on the same inputs) came before it in the level
        complement_key = ((15 - o) * n_nodes + x) * n_nodes + y
        at = np.minimum(np.searchsorted(keys, complement_key), len(keys) - 1)
        complement = (~repeat & ~constant & ~counted[n_in + gates] & (keys[at] == complement_key)
                      & (first[at] < np.arange(len(gates))))
        g = gates[complement]
        a[g] = b[g] = n_in + first_gate[at[complement]]
        op[g] = NOT_A
        inverted += int(complement.sum())
    out = canonical_inputs(Netlist(n_in, a, b, op.astype(np.uint8), rep[net.outputs], net.k, net.tau))
    return out, {"gates_merged": int(merged), "complements_inverted": int(inverted)}


@register("merge", "merge identical gates (same op on the same inputs, either order); complements become inverters", kind="logic")
def run(ir):
    return run_logic_pass(ir, merge_gates)
