"""Dead-gate elimination: gates no output (GroupSum input) depends on, through the inputs each
op really reads, across layer boundaries."""
from __future__ import annotations

from ..ir.netlist import Netlist
from . import register
from .logic_common import compact, live_gates, run_logic_pass


def remove_dead(net: Netlist) -> tuple[Netlist, dict]:
    live = live_gates(net)
    return compact(net, live), {"gates_removed": int((~live).sum())}


@register("dead-gates", "dead-gate elimination: drop gates no output depends on", kind="logic")
def run(ir):
    return run_logic_pass(ir, remove_dead)
