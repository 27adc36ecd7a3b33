"""All netlist simplifications (constants, wires, merge, dead gates) repeated until the gate
count stops falling, then written back once: what -O2 runs."""
from __future__ import annotations

from ..netlist import Netlist
from . import register
from .constants import fold_constants
from .dead_gates import remove_dead
from .logic_common import run_logic_pass
from .merge import merge_gates
from .wires import collapse_wires


def simplify(net: Netlist) -> tuple[Netlist, dict]:
    changed, rounds = {}, 0
    while True:
        size = net.n_gates
        for step in (fold_constants, collapse_wires, merge_gates, remove_dead):
            net, c = step(net)
            for key, v in c.items():
                changed[key] = changed.get(key, 0) + v
        rounds += 1
        if net.n_gates >= size or rounds >= 20:
            break
    changed["rounds"] = rounds
    return net, changed


@register("simplify", "constants, wires, merge and dead gates repeated to a fixed point", kind="logic")
def run(ir):
    return run_logic_pass(ir, simplify)
