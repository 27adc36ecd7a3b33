"""Constant propagation: gates whose op ignores its inputs (0, 15), gates reading constants and
gates reading one node twice get the op they reduce to; one constant input makes a gate a
wire, an inverter or a constant, which the other passes then remove."""
from __future__ import annotations

import numpy as np

from ..ir.netlist import Netlist
from . import register
from .logic_common import CONSTANT, FIX_A, FIX_B, READS_A, READS_B, SAME_INPUT, TABLES, canonical_inputs, run_logic_pass


def fold_constants(net: Netlist) -> tuple[Netlist, dict]:
    net = canonical_inputs(net)
    n_in = net.n_inputs
    value = np.full(n_in + net.n_gates, -1, np.int64)  # -1: not constant
    op = net.op.astype(np.int64)
    folded = 0
    for g in range(net.n_gates):
        o = old = int(op[g])
        if net.a[g] == net.b[g] and READS_A[o] and READS_B[o]:
            o = int(SAME_INPUT[o])
        if READS_A[o] and value[net.a[g]] >= 0:
            o = int(FIX_A[value[net.a[g]], o])
        if READS_B[o] and value[net.b[g]] >= 0:
            o = int(FIX_B[value[net.b[g]], o])
        folded += o != old
        op[g] = o
        if CONSTANT[o]:
            value[n_in + g] = TABLES[o, 0]
    out = canonical_inputs(Netlist(n_in, net.a, net.b, op.astype(np.uint8), net.outputs, net.k, net.tau))
    return out, {"gates_folded": int(folded), "constants": int(CONSTANT[op].sum())}


@register("constants", "constant propagation: fold constant gates (ops 0, 15) into the gates that read them", kind="logic")
def run(ir):
    return run_logic_pass(ir, fold_constants)
