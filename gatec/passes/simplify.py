"""All netlist simplifications (constants, wires, merge, dead gates) repeated until a round
changes nothing, then written back once: what -O1 and -O2 run."""
from __future__ import annotations

from ..ir.netlist import Netlist
from . import register
from .constants import fold_constants
from .dead_gates import remove_dead
from .logic_common import run_logic_pass
from .merge import merge_gates
from .wires import collapse_wires


def state(net: Netlist) -> tuple:
    return tuple(x.tobytes() for x in (net.a, net.b, net.op, net.outputs))


def simplify(net: Netlist) -> tuple[Netlist, dict]:
    changed, rounds = {}, 0
    while True:
        before = state(net)
        for step in (fold_constants, collapse_wires, merge_gates, remove_dead):
            net, c = step(net)
            for key, v in c.items():
                changed[key] = changed.get(key, 0) + v
        rounds += 1
        if state(net) == before or rounds >= 20:
            break
    changed["rounds"] = rounds
    return net, changed


@register("simplify", "constants, wires, merge and dead gates repeated to a fixed point", kind="logic")
def run(ir):
    return run_logic_pass(ir, simplify)
