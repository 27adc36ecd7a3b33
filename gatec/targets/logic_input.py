"""Shared by the targets that run logic networks natively (c, the cpu engine): the IR's
logic chain as a Netlist, for graphs whose logic layers read the graph input directly."""
from __future__ import annotations

from ..errors import GatecError
from ..ir import IR, LOGIC_DOMAIN
from ..netlist import Netlist


def logic_netlist(ir: IR) -> Netlist:
    from ..logic import network_of_model
    if ir.kind != "logic":
        raise GatecError("this target compiles logic-gate networks only; the model has no logic layers")
    graph = ir.model.graph
    first = next(n for n in graph.node if n.domain == LOGIC_DOMAIN)
    inputs = {s.name: s for s in ir.inputs}
    if len(ir.inputs) != 1 or first.input[0] not in inputs:
        other = next((n for n in graph.node if n.domain != LOGIC_DOMAIN), None)
        raise GatecError(f"this target needs the logic layers to read the model's input bits directly; "
                         f"node '{other.name if other else first.name}' ({other.op_type if other else first.op_type}) "
                         f"comes first")
    tail = [n for n in graph.node if n.domain != LOGIC_DOMAIN]
    if tail:
        raise GatecError(f"node '{tail[0].name}' ({tail[0].op_type}) is not a logic layer; this target needs "
                         f"a graph of LogicLayer nodes and a final GroupSum")
    net = network_of_model(ir.model)
    k, tau = net.group_sum or (1, 1.0)
    n_inputs = ir.inputs[0].shape[-1]
    return Netlist.from_layers(n_inputs, [(l.in_a, l.in_b, l.ops) for l in net.layers], k, tau)
