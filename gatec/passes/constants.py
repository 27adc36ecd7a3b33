"""Constant propagation: gates whose op ignores its inputs (0, 15), gates reading constants and
gates reading one node twice get the op they reduce to; one constant input makes a gate a
wire, an inverter or a constant, which the other passes then remove."""
from __future__ import annotations

import numpy as np

from ..ir.netlist import Netlist, by_level
from . import register
from .logic_common import CONSTANT, FIX_A, FIX_B, READS_A, READS_B, SAME_INPUT, TABLES, canonical_inputs, run_logic_pass


def fold_constants(net: Netlist) -> tuple[Netlist, dict]:
    net = canonical_inputs(net)
    n_in = net.n_inputs
    value = np.full(n_in + net.n_gates, -1, np.int64)  # -1: not constant
    op = net.op.astype(np.int64)
    # level by level: a gate reads only earlier levels, whose constants are known by then
    for gates in by_level(n_in, net.a, net.b, net.op):
        o, a, b = op[gates], net.a[gates], net.b[gates]
        o = np.where((a == b) & READS_A[o] & READS_B[o], SAME_INPUT[o], o)
        va = value[a]
        o = np.where(READS_A[o] & (va >= 0), FIX_A[np.maximum(va, 0), o], o)
        vb = value[b]
        o = np.where(READS_B[o] & (vb >= 0), FIX_B[np.maximum(vb, 0), o], o)
        op[gates] = o
        value[n_in + gates] = np.where(CONSTANT[o], TABLES[o, 0], -1)
    folded = int((op != net.op).sum())
    out = canonical_inputs(Netlist(n_in, net.a, net.b, op.astype(np.uint8), net.outputs, net.k, net.tau))
    return out, {"gates_folded": folded, "constants": int(CONSTANT[op].sum())}


@register("constants", "constant propagation: fold constant gates (ops 0, 15) into the gates that read them", kind="logic")
def run(ir):
    return run_logic_pass(ir, fold_constants)
