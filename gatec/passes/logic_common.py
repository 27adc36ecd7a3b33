"""Shared by the logic passes: truth-table algebra on op ids, the IR's logic chain as a flat
Netlist and back, and re-layering a netlist into a chain of LogicLayers.

Op ids pack truth tables: bit 3-(2a+b) of the id is f(a, b) (difflogic's numbering, 0..15).
Passes work on the netlist, where a gate may read any earlier node, so simplifications cross
layer boundaries. Writing back re-layers the netlist: each live gate gets a level, and a value
read more than one layer later is carried by pass-through wires (op 3), counted as
"wires_added"; the C engine and firmware alias such wires for free.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from ..errors import GatecError
from ..ir import IR, LOGIC_DOMAIN
from ..ir.logic import OP_ID, READS_A, READS_B, Layer, layer_of, logic_layer_node
from ..ir.logic import TRUTH as TABLES  # op -> f(0,0), f(0,1), f(1,0), f(1,1)
from ..ir.netlist import Netlist, gate_levels, level_groups, live_nodes

# ---------------------------------------------------------------- truth tables


def op_of(table) -> int:
    t = [int(v) for v in table]
    return 8 * t[0] + 4 * t[1] + 2 * t[2] + t[3]


def _remap(order) -> np.ndarray:
    """A lookup op -> op whose table is the old table read at positions `order`."""
    return np.array([op_of(TABLES[op][list(order)]) for op in range(16)], np.int64)


FLIP_A = _remap((2, 3, 0, 1))  # f(NOT a, b)
FLIP_B = _remap((1, 0, 3, 2))  # f(a, NOT b)
TRANSPOSE = _remap((0, 2, 1, 3))  # f(b, a)
FIX_A = np.stack([_remap((0, 1, 0, 1)), _remap((2, 3, 2, 3))])  # FIX_A[c]: f(c, b)
FIX_B = np.stack([_remap((0, 0, 2, 2)), _remap((1, 1, 3, 3))])  # FIX_B[c]: f(a, c)
SAME_INPUT = _remap((0, 0, 3, 3))  # f(a, a), as a function of a
CONSTANT = ~READS_A & ~READS_B  # ops 0 and 15
PASS_THROUGH = OP_ID["A"]  # f = a


# ---------------------------------------------------------------- IR <-> netlist

def logic_chain(ir: IR) -> tuple[list[onnx.NodeProto], onnx.NodeProto | None]:
    """The IR's LogicLayer nodes (one chain) and its GroupSum node, if any."""
    if ir.kind != "logic":
        raise GatecError("logic passes need a logic network; this model has no LogicLayer nodes")
    nodes = [n for n in ir.model.graph.node if n.domain == LOGIC_DOMAIN]
    layers = [n for n in nodes if n.op_type == "LogicLayer"]
    group_sum = next((n for n in nodes if n.op_type == "GroupSum"), None)
    if not layers:  # a GroupSum after gate layers gatec did not recognise (traced as arithmetic ops)
        name = (group_sum if group_sum is not None else nodes[0]).name
        raise GatecError(f"logic node '{name}': no LogicLayer feeds it; the layers before it were traced as "
                         f"arithmetic, not recognised as logic gates")
    readers: dict[str, int] = {}
    for n in ir.model.graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    outputs = {o.name for o in ir.model.graph.output}
    for prev, node in zip(layers, layers[1:]):
        if node.input[0] != prev.output[0] or readers.get(prev.output[0]) != 1 or prev.output[0] in outputs:
            raise GatecError(f"logic node '{node.name}': logic passes need one chain of LogicLayers, "
                             f"each read only by the next")
    if group_sum is not None and group_sum.input[0] != layers[-1].output[0]:
        raise GatecError(f"GroupSum node '{group_sum.name}' does not read the last LogicLayer")
    return layers, group_sum


def netlist_of_ir(ir: IR) -> Netlist:
    """The logic chain as a Netlist; without GroupSum, outputs are the last layer's bits, each its
    own class of one (the count of a class is its bit)."""
    from ..ir.logic import group_sum_of
    layers, gs = logic_chain(ir)
    gate_lists = [layer_of(n) for n in layers]
    specs = {s.name: s for s in ir.inputs}
    first = layers[0].input[0]
    width = max(int(gate_lists[0].in_a.max(initial=-1)), int(gate_lists[0].in_b.max(initial=-1))) + 1
    if first in specs:  # the graph input's own width, so the netlist matches what targets see
        width = max(width, specs[first].shape[-1])
    else:  # an encoder's output: its width, which bits the pruned layers no longer read keep
        from ..ir.summary import shapes_of
        shape = shapes_of(ir).get(first)
        width = max(width, shape[-1]) if shape and isinstance(shape[-1], int) else width
    k, tau = group_sum_of(gs) if gs is not None else (len(gate_lists[-1]), 1.0)  # as Network.classes
    return Netlist.from_layers(width, [(l.in_a, l.in_b, l.ops) for l in gate_lists], k, tau)


def write_back(ir: IR, net: Netlist) -> tuple[IR, int]:
    """Replace the IR's logic chain by `net`, re-layered; returns (ir, wires added)."""
    layers, gs = logic_chain(ir)
    new_layers, wires = relayer(net)
    first_in, last_out = layers[0].input[0], layers[-1].output[0]
    names = [f"{layers[0].name or 'logic'}/opt_{i}" for i in range(len(new_layers))]
    tensors = [first_in] + [f"{n}_output" for n in names[:-1]] + [last_out]
    new_nodes = [logic_layer_node(tensors[i], tensors[i + 1], layer, names[i]) for i, layer in enumerate(new_layers)]
    old = {n.output[0] for n in layers}  # node outputs are unique names
    nodes = []
    for n in graph_nodes(ir):
        if n.output and n.output[0] == layers[0].output[0]:
            nodes += new_nodes
        elif not (n.output and n.output[0] in old):
            nodes.append(n)
    graph = ir.model.graph
    del graph.node[:]
    graph.node.extend(nodes)
    stale = {n.output[0] for n in layers[:-1]}
    value_info = [v for v in graph.value_info if v.name not in stale and v.name != last_out]
    del graph.value_info[:]
    graph.value_info.extend(value_info)
    return ir, wires


def graph_nodes(ir: IR) -> list[onnx.NodeProto]:
    """Copies of the graph's nodes (safe to keep while the graph is rewritten)."""
    out = []
    for n in ir.model.graph.node:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        out.append(c)
    return out


def layered_counts(ir: IR) -> dict:
    """Gates in the IR's LogicLayers: all of them, and pass-through wires (ops 3, 5) among them."""
    layers, _ = logic_chain(ir)
    ops = np.concatenate([layer_of(n).ops for n in layers])
    return {"gates": int(len(ops)), "wires": int(np.isin(ops, (3, 5)).sum()), "layers": len(layers)}


# ---------------------------------------------------------------- netlist helpers

def gate_kinds(net: Netlist) -> dict:
    """What the targets compute: live two-input gates and inverters ("computed"); pass-through
    wires resolve to the value they carry and cost nothing; constant outputs are GroupSum's
    per-class offset (the engine adds them as a constant, the Verilog as constant terms that
    synthesis folds), so they are counted apart, as outputs rather than gates."""
    from ..ir.netlist import fold
    folded = fold(net)
    ops = net.op[folded.live]
    constant = CONSTANT[ops]
    inverters = np.isin(ops, (OP_ID["NOT_A"], OP_ID["NOT_B"])) & ~constant
    gate_outputs = folded.outputs[folded.outputs >= net.n_inputs] - net.n_inputs
    constant_outputs = int(CONSTANT[net.op[gate_outputs]].sum())
    return {"computed": int((~constant).sum()), "two_input": int((~constant & ~inverters).sum()),
            "inverters": int(inverters.sum()), "constant_outputs": constant_outputs}


def live_gates(net: Netlist) -> np.ndarray:
    """Per gate: does some output depend on it (through the inputs its op really reads)?"""
    return live_nodes(net.n_inputs, net.a, net.b, net.op, net.outputs)[net.n_inputs:]


def canonical_inputs(net: Netlist) -> Netlist:
    """Inputs an op ignores point at the one it reads (or node 0 for constants): fewer false edges."""
    a, b = net.a.copy(), net.b.copy()
    ra, rb = READS_A[net.op], READS_B[net.op]
    b[ra & ~rb] = a[ra & ~rb]
    a[~ra & rb] = b[~ra & rb]
    a[~ra & ~rb] = 0
    b[~ra & ~rb] = 0
    return Netlist(net.n_inputs, a, b, net.op.copy(), net.outputs.copy(), net.k, net.tau)


def compact(net: Netlist, keep: np.ndarray, alias: np.ndarray | None = None) -> Netlist:
    """Keep the gates where `keep` is set; reads of any node go through `alias` (node -> node, an
    earlier node carrying the same value) first. Gate order (topological) is kept."""
    net = canonical_inputs(net)  # ignored inputs may point at removed gates
    n_in, n_nodes = net.n_inputs, net.n_inputs + net.n_gates
    alias = np.arange(n_nodes) if alias is None else alias
    new_id = np.full(n_nodes, -1, np.int64)
    new_id[:n_in] = np.arange(n_in)
    kept = np.flatnonzero(keep)
    new_id[n_in + kept] = n_in + np.arange(len(kept))
    target = new_id[alias]
    a, b, outputs = target[net.a[kept]], target[net.b[kept]], target[net.outputs]
    op = net.op[kept].astype(np.uint8)
    a = np.where(CONSTANT[op], 0, a)  # constants read nothing
    b = np.where(CONSTANT[op], 0, b)
    if (a < 0).any() or (b < 0).any() or (outputs < 0).any():
        raise AssertionError("compact: a kept gate reads a removed one")
    return canonical_inputs(Netlist(n_in, a, b, op, outputs, net.k, net.tau))


# ---------------------------------------------------------------- re-layering

def relayer(net: Netlist) -> tuple[list[Layer], int]:
    """Layers (each reading the previous one) computing the same outputs, in order; live gates
    only. Levels as soon as possible and as late as possible are both tried; the one needing
    fewer pass-through wires wins. Returns (layers, wires added)."""
    net = canonical_inputs(net)
    live = live_gates(net)
    n_in = net.n_inputs
    # canonical inputs: an operand an op ignores is the one it reads, so the levels are the ASAP ones
    asap = gate_levels(n_in, net.a, net.b, net.op, live)
    depth = max(1, int(asap[net.outputs].max(initial=0)))
    alap = np.full(n_in + net.n_gates, depth, np.int64)
    alap[:n_in] = 0
    for gates in reversed(level_groups(asap[n_in:], live)):  # a gate's readers are at later levels
        gates = gates[~CONSTANT[net.op[gates]]]
        latest = alap[n_in + gates] - 1
        for d in (net.a[gates], net.b[gates]):
            np.minimum.at(alap, d[d >= n_in], latest[d >= n_in])
    level = asap if layered_size(net, live, asap, depth) <= layered_size(net, live, alap, depth) else alap
    return _layers_at(net, live, level, depth)


@dataclass
class LayerReads:
    """What laying out the live gates at `level` reads (layer_reads): constants are level 0 (made
    where they are read), each computed gate reads the layer before its own, an output below the
    last layer is carried to the layer before last."""
    const: np.ndarray  # per node: a constant gate
    level: np.ndarray  # per node, constants at 0
    gates: np.ndarray  # the live gates that are not constants, in order
    read: np.ndarray  # the nodes they read, gate by gate, a gate's two operands in its set order
    at: np.ndarray  # per read, the layer whose output holds it
    order: np.ndarray  # per read, its place in the order reads come in
    carried_out: np.ndarray  # per output: carried to the layer before last
    need: np.ndarray  # per node: the last layer whose output must hold it, or -1


def layer_reads(net: Netlist, live: np.ndarray, level: np.ndarray, depth: int) -> LayerReads:
    n_in, n_nodes = net.n_inputs, net.n_inputs + net.n_gates
    const = np.zeros(n_nodes, bool)
    const[n_in:] = CONSTANT[net.op]
    level = np.where(const, 0, level)
    gates = np.flatnonzero(live & ~CONSTANT[net.op])
    gate_level = level[n_in + gates]
    a, b = net.a[gates], net.b[gates]
    other = b != a
    b_first = other & set_order_swaps(a, b)
    read = np.concatenate([np.where(b_first, b, a), np.where(b_first, a, b)[other]])
    at = np.concatenate([gate_level, gate_level[other]]) - 1
    order = np.concatenate([2 * np.arange(len(gates)), 2 * np.flatnonzero(other) + 1])
    outputs = net.outputs
    carried_out = ~const[outputs] & (level[outputs] < depth)
    need = np.full(n_nodes, -1, np.int64)
    np.maximum.at(need, read[~const[read]], at[~const[read]])
    np.maximum.at(need, outputs[carried_out], depth - 1)
    return LayerReads(const, level, gates, read, at, order, carried_out, need)


def layered_size(net: Netlist, live: np.ndarray, level: np.ndarray, depth: int) -> int:
    """The gates _layers_at(net, live, level, depth) lays out, counted without building them (a
    few array operations instead of a walk over every gate): each live gate below the last layer,
    a pass-through for every layer a value is carried across, a copy of a constant per layer that
    reads it, and the last layer's outputs."""
    r = layer_reads(net, live, level, depth)
    held = r.need >= 0
    # a constant is copied into each layer 1 .. depth-1 that reads it; the last layer's rows are the outputs
    copied = r.const[r.read] & (r.at >= 1) & (r.at < depth)
    const_reads = np.unique(r.read[copied] * (depth + 1) + r.at[copied])
    return int((r.level[net.n_inputs + r.gates] < depth).sum() + np.maximum(r.need[held] - r.level[held], 0).sum()
               + len(const_reads) + len(net.outputs))


def _layers_at(net: Netlist, live: np.ndarray, level: np.ndarray, depth: int) -> tuple[list[Layer], int]:
    """The layers of the live gates at `level` (1..depth): layer lv computes the gates of level lv,
    then carries (pass-through wires) the values later layers read, then copies the constants it
    reads (constants are made where they are read); the last layer's rows are the outputs. Carried
    values and constants come in the order they are first read (gate by gate, then the outputs),
    as gatec has always laid them out, so that a network compiles to the same bytes."""
    n_in, n_nodes = net.n_inputs, net.n_inputs + net.n_gates
    r = layer_reads(net, live, level, depth)
    const, level, gates, read, at, need, outputs = r.const, r.level, r.gates, r.read, r.at, r.need, net.outputs
    gate_level = level[n_in + gates]
    first_read = np.full(n_nodes, np.iinfo(np.int64).max)
    np.minimum.at(first_read, read, r.order)
    np.minimum.at(first_read, outputs[r.carried_out], 2 * len(gates) + np.flatnonzero(r.carried_out))
    held = np.flatnonzero(need > level)
    held = held[np.argsort(first_read[held], kind="stable")]
    const_read = np.unique(read[const[read]] * (depth + 1) + at[const[read]])  # (node, layer) pairs
    const_node, const_layer = const_read // (depth + 1), const_read % (depth + 1)
    by_first = np.argsort(first_read[const_node], kind="stable")
    const_node, const_layer = const_node[by_first], const_layer[by_first]

    gate_a, gate_b, gate_op = (np.r_[x, 0] for x in (net.a, net.b, net.op))
    row = np.full(n_nodes, -1, np.int64)  # node -> row in the previous layer's output
    row[:n_in] = np.arange(n_in)
    layers, wires = [], 0
    for lv in range(1, depth + 1):
        if lv < depth:
            computed = n_in + gates[gate_level == lv]
            carried = held[(level[held] < lv) & (need[held] >= lv)]
            consts = const_node[const_layer == lv]
            nodes = np.concatenate([computed, carried, consts])
            kind = np.repeat([0, 1, 2], [len(computed), len(carried), len(consts)])  # gate, wire, constant
        else:
            nodes = outputs
            kind = np.where(const[nodes], 2, np.where(level[nodes] == depth, 0, 1))
        g = np.maximum(nodes - n_in, 0)  # (an index into gate_* for every row, gates or not)
        in_a = np.where(kind == 0, row[gate_a[g]], np.where(kind == 1, row[nodes], 0))
        in_b = np.where(kind == 0, row[gate_b[g]], np.where(kind == 1, row[nodes], 0))
        if (in_a < 0).any() or (in_b < 0).any():
            raise AssertionError("relayer: a row reads a value the previous layer does not hold")
        layers.append(Layer(in_a, in_b, np.where(kind == 1, PASS_THROUGH, gate_op[g])))
        wires += int((kind == 1).sum())
        row[:] = -1
        unique, first_row = np.unique(nodes, return_index=True)  # a node's first row (outputs may repeat)
        row[unique] = first_row
    return layers, wires


def set_order_swaps(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per pair (x != y, non-negative): does Python's set {x, y} iterate y first? The layering
    gatec has always done read a gate's operands in that order, so the order is kept to keep the
    bytes: CPython puts x at slot x & 7 of the set's 8 slots and probes for y from y & 7 (on a
    clash: perturb = y >> 5, slot = 5 slot + 1 + perturb, each mod 8); a set iterates by slot."""
    home = x & 7
    slot, perturb = y & 7, y.copy()
    clash = slot == home
    while clash.any():
        perturb = np.where(clash, perturb >> 5, perturb)
        slot = np.where(clash, (5 * slot + 1 + perturb) & 7, slot)
        clash = slot == home
    return slot < home


# ---------------------------------------------------------------- running a logic pass

def run_logic_pass(ir: IR, transform) -> tuple[IR, dict]:
    """netlist -> transform(net) -> (net, {what changed}) -> re-layered IR, with before/after
    counts of the layered form. A self-check on random inputs guards every rewrite."""
    before = layered_counts(ir)
    net = netlist_of_ir(ir)
    new, changed = transform(net)
    ir, wires = write_back(ir, new)
    after = layered_counts(ir)
    after["wires_added"] = wires
    bits = np.random.default_rng(0).integers(0, 2, (256, net.n_inputs)).astype(np.uint8)
    if not np.array_equal(net.output_bits(bits), netlist_of_ir(ir).output_bits(bits)):
        raise GatecError("a logic pass changed the network's outputs (a bug in gatec; please report it)")
    return ir, {"before": before, "after": after, "changed": changed}
