"""A logic network as a flat netlist, and its plan for the C interpreter (gatec/csrc).

Netlist: nodes 0..n_inputs-1 are the input bits; gate g is node n_inputs+g and reads nodes
a[g], b[g] (earlier nodes) through op[g] (truth-table id, gatec/ir/logic.py); `outputs` lists
the nodes GroupSum counts, class by class (k equal groups). A layered network is the special
case where each layer reads only the one before; pruned networks need not be layered.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .logic import CONSTANTS, OP_ID, READS_A, READS_B, TRUTH

WIRE_A, WIRE_B = OP_ID["A"], OP_ID["B"]  # ops that pass one input through unchanged
MAX_SWEEPS = 64  # gate_levels' vectorized sweeps before it walks gate by gate
MIN_FUSED_GROUP = 8  # plan_ternary's: gates that must share a fused truth table (4 to 16 measured alike)
CONSTANT_OPS = CONSTANTS


@dataclass
class Netlist:
    n_inputs: int
    a: np.ndarray  # int64, per gate
    b: np.ndarray
    op: np.ndarray  # uint8, per gate
    outputs: np.ndarray  # node ids, class by class
    k: int = 1
    tau: float = 1.0

    @property
    def n_gates(self) -> int:
        return len(self.op)

    @classmethod
    def from_layers(cls, n_inputs: int, layers, k: int = 1, tau: float = 1.0) -> "Netlist":
        """layers: [(in_a, in_b, ops)], each layer indexing the previous layer's outputs."""
        a, b, op = [], [], []
        offset, width, next_node = 0, n_inputs, n_inputs  # the previous layer's first node and width
        for in_a, in_b, ops in layers:
            in_a, in_b = np.asarray(in_a, np.int64), np.asarray(in_b, np.int64)
            if len(in_a) and (max(in_a.max(), in_b.max()) >= width or min(in_a.min(), in_b.min()) < 0):
                raise ValueError("a logic layer reads an index outside the previous layer")
            a.append(in_a + offset)
            b.append(in_b + offset)
            op.append(np.asarray(ops, np.uint8))
            offset, width, next_node = next_node, len(ops), next_node + len(ops)
        n_gates = sum(len(x) for x in op)
        outputs = np.arange(n_inputs + n_gates - width, n_inputs + n_gates) if layers else np.arange(n_inputs)
        cat = (lambda xs, t: np.concatenate(xs).astype(t) if xs else np.zeros(0, t))
        return cls(n_inputs, cat(a, np.int64), cat(b, np.int64), cat(op, np.uint8), outputs, k, tau)

    def output_bits(self, bits: np.ndarray) -> np.ndarray:
        """Reference evaluation in numpy, level by level (every gate of a level at once) on 64
        samples per uint64 word: unpacked bits (N, n_inputs) -> the output bits (N, n_outputs) as uint8."""
        n = bits.shape[0]
        packed = np.packbits(np.asarray(bits).T.astype(bool), axis=1, bitorder="little")
        words = np.zeros((self.n_inputs, -(-n // 64) * 8), np.uint8)
        words[:, :packed.shape[1]] = packed
        values = np.zeros((self.n_inputs + self.n_gates, words.shape[1] // 8), np.uint64)
        values[: self.n_inputs] = words.view(np.uint64)
        # per op, each truth-table row as a mask of all ones or zeros: f = OR of row & minterm
        rows = np.where(TRUTH.astype(bool), ~np.uint64(0), np.uint64(0))  # (16, 4): f(0,0), f(0,1), f(1,0), f(1,1)
        for gates in by_level(self.n_inputs, self.a, self.b, self.op):
            x, y = values[self.a[gates]], values[self.b[gates]]
            t = rows[self.op[gates]][:, :, None]
            values[self.n_inputs + gates] = (t[:, 0] & ~(x | y)) | (t[:, 1] & ~x & y) | (t[:, 2] & x & ~y) | (t[:, 3] & x & y)
        out = np.unpackbits(values[self.outputs].view(np.uint8), axis=1, count=n, bitorder="little")
        return np.ascontiguousarray(out.T)

    def evaluate(self, bits: np.ndarray) -> np.ndarray:
        """Class counts (N, k): GroupSum of the output bits before the division by tau."""
        out = self.output_bits(bits)
        return out.reshape(len(out), self.k, -1).sum(-1).astype(np.int32)


@dataclass
class Folded:
    """A netlist with its wires resolved and its live gates marked."""
    a: np.ndarray  # per gate: the node each operand really carries (wires resolved)
    b: np.ndarray
    outputs: np.ndarray
    live: np.ndarray  # per gate: computed (not a wire) and needed by some output


def fold(net: Netlist) -> Folded:
    """Wires (ops 3 and 5) become aliases of the node they pass through, a gate identical to an
    earlier one (the same op on the same nodes) an alias of that one, and a gate is live when an
    output depends on it through inputs that ops actually read (constants read none).

    Identical gates come from layering: an output GroupSum counts twice is one gate in the
    netlist, but the last layer holds a gate for each position."""
    n_in, n_nodes = net.n_inputs, net.n_inputs + net.n_gates
    source = np.arange(n_nodes)
    op = net.op
    wire = (op == WIRE_A) | (op == WIRE_B)
    # By levels where a wire is as deep as the node it passes on: gates with the same op on the
    # same (resolved) nodes share a level, so the first of them in gate order is the first in its
    # level; a wire reads its own level (chains of wires are followed until they settle)
    for gates in by_level(n_in, net.a, net.b, op, free=wire):
        g, w = gates[~wire[gates]], gates[wire[gates]]
        x = np.where(READS_A[op[g]], source[net.a[g]], -1) + 1
        y = np.where(READS_B[op[g]], source[net.b[g]], -1) + 1
        _, first, which = np.unique((op[g].astype(np.int64) * (n_nodes + 1) + x) * (n_nodes + 1) + y,
                                    return_index=True, return_inverse=True)
        source[n_in + g] = n_in + g[first[which]]
        passed = np.where(op[w] == WIRE_A, net.a[w], net.b[w])
        while len(w) and not np.array_equal(source[n_in + w], source[passed]):
            source[n_in + w] = source[passed]
    a, b, outputs = source[net.a], source[net.b], source[net.outputs]
    computed = source[n_in:] == np.arange(n_in, n_nodes)
    live = live_nodes(n_in, a, b, net.op, outputs, computed)
    return Folded(a, b, outputs, live[n_in:] & computed)


def gate_levels(n_inputs: int, a, b, op, live=None, free=None) -> np.ndarray:
    """Per node (inputs, then gates): 0 for the inputs and for the gates not `live` (all are, when
    None), else 1 + the deepest level of the nodes its op reads (an operand the truth table ignores
    does not count); a gate marked `free` (per gate, bool) is as deep as what it reads."""
    a, b, op = np.asarray(a), np.asarray(b), np.asarray(op)
    gates = np.arange(len(op)) if live is None else np.flatnonzero(live)
    n_nodes = n_inputs + len(op)
    step = np.ones(len(gates), np.int32) if free is None else 1 - np.asarray(free, np.int32)[gates]
    level = np.zeros(n_nodes + 1, np.int32)  # the last, always 0: what an operand the op ignores reads
    ra, rb = READS_A[op[gates]].astype(bool), READS_B[op[gates]].astype(bool)
    ia, ib = np.where(ra, a[gates], n_nodes), np.where(rb, b[gates], n_nodes)
    at = slice(n_inputs, n_nodes) if live is None else n_inputs + gates
    # relaxed all at once, one sweep per level: from 0 the levels only grow and are exact after
    # depth + 1 sweeps (a gate reads earlier nodes); a network deeper than the sweeps allow is
    # walked gate by gate instead
    for _ in range(MAX_SWEEPS):
        new = np.maximum(level[ia], level[ib])
        new += step
        if np.array_equal(new, level[at]):
            return level[:n_nodes].astype(np.int64)
        level[at] = new
    step = np.ones(len(op), np.int64) if free is None else 1 - np.asarray(free, np.int64)
    out = [0] * (n_inputs + len(op))
    al, bl, ral, rbl, sl = a.tolist(), b.tolist(), READS_A[op].tolist(), READS_B[op].tolist(), step.tolist()
    for g in gates.tolist():
        out[n_inputs + g] = sl[g] + max(out[al[g]] if ral[g] else 0, out[bl[g]] if rbl[g] else 0)
    return np.asarray(out, dtype=np.int64)


def by_level(n_inputs: int, a, b, op, live=None, free=None) -> list[np.ndarray]:
    """The (live) gates grouped by level (gate_levels), in order: a level reads only earlier ones
    (and, for `free` gates, their own), so each is one vectorized step; gate order within a level."""
    return level_groups(gate_levels(n_inputs, a, b, op, live, free)[n_inputs:], live)


def level_groups(gate_level: np.ndarray, live=None) -> list[np.ndarray]:
    """by_level's groups from the gates' levels (gate_levels' past the inputs)."""
    if live is not None:
        gate_level = np.where(live, gate_level, -1)
    low = 0 if (gate_level == 0).any() else 1  # level 0: free gates that read the inputs
    order = np.argsort(gate_level, kind="stable")
    bounds = np.searchsorted(gate_level[order], np.arange(low, int(gate_level.max(initial=0)) + 2))
    return [order[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]


def live_nodes(n_inputs: int, a, b, op, outputs, computed=None) -> np.ndarray:
    """Per node (inputs, then gates): does some output depend on it through the inputs that ops
    really read? Gates not `computed` (aliases of another node) pass nothing on. Walked back level
    by level (a gate reads only earlier levels)."""
    a, b, op = np.asarray(a), np.asarray(b), np.asarray(op)
    live = np.zeros(n_inputs + len(op), bool)
    live[outputs] = True
    reads_a, reads_b = READS_A.astype(bool), READS_B.astype(bool)
    for gates in reversed(by_level(n_inputs, a, b, op)):
        on = gates[live[n_inputs + gates] & (True if computed is None else computed[gates])]
        live[a[on[reads_a[op[on]]]]] = True
        live[b[on[reads_b[op[on]]]]] = True
    return live


@dataclass
class Program:
    """The interpreter's program: gates grouped by (level, op), slots reused."""
    n_inputs: int
    n_slots: int
    group_op: np.ndarray  # uint8
    group_count: np.ndarray  # uint32
    a_slot: np.ndarray  # uint32, per executed gate
    b_slot: np.ndarray
    out_slot: np.ndarray
    output_slot: np.ndarray  # uint32
    k: int
    tau: float
    gates_total: int = 0
    # For the host engine, which counts output gates into their class as it computes them (the
    # firmware ignores these): per group, the class its gates count for, or -1 (gates stored to
    # their slots as usual); the class-counted groups come last. The other outputs, class by
    # class: rest_slot[rest_start[c]:rest_start[c + 1]]; outputs that are the constant 1 gate
    # are counted in class_ones (the constant 0 counts nothing).
    group_class: np.ndarray = None  # int32
    rest_start: np.ndarray = None  # uint32, k + 1
    rest_slot: np.ndarray = None  # uint32
    class_ones: np.ndarray = None  # int32, k
    # plan_ternary's: each gate's third operand; its group_op is then an 8-bit truth table over
    # (a, b, c) slots' words, bit 4a + 2b + c (vpternlogq's immediate), not an op id
    c_slot: np.ndarray = None  # uint32
    source: Netlist = None  # the netlist planned (plan_ternary plans it again for the host engine)

    @property
    def gates_executed(self) -> int:
        return len(self.out_slot)


def plan(net: Netlist, reuse: str = "level") -> Program:
    """Lower a netlist to a Program.

    Wires (ops 3 and 5) and repeated gates become aliases (fold) and gates no output depends on
    are skipped, so they cost nothing (constant gates of one op share one gate: a layered network
    keeps a gate per constant output); the rest run level by level, grouped by op so that each
    group is one tight loop; a slot is reused once the last level that reads it is done, which
    keeps a tile's working set near the width of two layers; with reuse "gate", once the last gate
    that reads it has run (see schedule), near one layer's width. The firmware keeps "level"."""
    folded = fold(net)
    reads = [READS_A[net.op].astype(bool), READS_B[net.op].astype(bool)]
    return schedule(net, folded, folded.live, [folded.a, folded.b], reads, net.op, 16, reuse=reuse)


def permuted_table(imm: int, perm) -> int:
    """A three-input truth table (bit 4x + 2y + z) with its operands reordered: operand j of the
    result is operand perm[j] of the original."""
    out = 0
    for i in range(8):
        old = [0, 0, 0]
        for j, bit in enumerate(((i >> 2) & 1, (i >> 1) & 1, i & 1)):
            old[perm[j]] = bit
        out |= ((imm >> (4 * old[0] + 2 * old[1] + old[2])) & 1) << i
    return out


PERMS = list(itertools.permutations(range(3)))


def _permuted_tables() -> np.ndarray:
    """permuted_table(imm, PERMS[k]) for every k and imm, (6, 256), in a few array operations."""
    bits = (np.arange(8)[:, None] >> np.array([2, 1, 0])) & 1  # row i's operand values
    old = np.zeros((len(PERMS), 8, 3), np.int64)
    for k, perm in enumerate(PERMS):
        old[k][:, list(perm)] = bits  # operand perm[j] of the original is operand j of the result
    index = old @ np.array([4, 2, 1])  # (6, 8): the original row each result row reads
    return (((np.arange(256)[None, :, None] >> index[:, None, :]) & 1) << np.arange(8)).sum(2)


# Each table's least form under reordering its operands, and the order that gives it: the 80
# forms are the engine's switch cases (gatec_host.c: HOST_TERNARY_OPS), fewer cases to build and
# more gates per group than 256 tables
PERMUTED = _permuted_tables()
CANONICAL_PERM = PERMUTED.argmin(0)  # the first order giving the least form, as min() picks
CANONICAL = PERMUTED[CANONICAL_PERM, np.arange(256)].astype(np.uint8)


def plan_ternary(net: Netlist, min_group: int = MIN_FUSED_GROUP, canonical: bool = True,
                 reuse: str = "level") -> Program:
    """plan() for an engine whose gates are three-input functions (AVX-512's vpternlogq): a gate
    whose value only one gate reads (and no output) is computed inside that reader, which then
    reads the gate's two operands and its own other one (x, y, z), so the value is never stored
    and loaded. Each executed gate's op is its 8-bit truth table over (x, y, z), bit 4x + 2y + z;
    a gate that absorbed nothing reads (a, b, a). With `canonical`, each gate's operands are
    reordered to its table's least form (CANONICAL). A fusion is kept only where at least
    `min_group` gates of its level (and class) share its truth table: each group costs the
    interpreter a branch, which a group of a few gates does not repay. Class counting as in plan()."""
    folded = fold(net)
    n_in, op, live = net.n_inputs, net.op, folded.live
    a, b = folded.a, folded.b
    ra, rb = READS_A[op].astype(bool) & live, READS_B[op].astype(bool) & live
    fan = np.bincount(np.r_[a[ra], b[rb]], minlength=n_in + net.n_gates)
    np.add.at(fan, folded.outputs, 2)  # an output is stored whoever reads it
    node = np.arange(n_in, n_in + net.n_gates)
    single = live & (fan[node] == 1) & ~np.isin(op, CONSTANT_OPS)  # per gate: may be absorbed
    absorbs = np.zeros(net.n_gates, np.int64)  # per gate: 0 nothing, 1 its a, 2 its b
    level = gate_levels(n_in, a, b, op, live)
    for gates in level_groups(level[n_in:], live):
        # an operand that absorbed nothing itself (decided at its earlier level) can be absorbed
        can = lambda x, r: r[gates] & (x[gates] >= n_in) & single[np.maximum(x[gates] - n_in, 0)] \
            & (absorbs[np.maximum(x[gates] - n_in, 0)] == 0)  # noqa: E731
        take_a, take_b = can(a, ra), can(b, rb)
        absorbs[gates] = np.where(take_a, 1, np.where(take_b & ~take_a, 2, 0))
    imm = ternary_tables(op, absorbed_gates(a, b, absorbs, n_in), absorbs)
    if canonical:
        imm = CANONICAL[imm]
    out_class = np.full(n_in + net.n_gates, -1, np.int64)
    out_class[folded.outputs] = np.arange(len(folded.outputs)) // max(len(folded.outputs) // max(net.k, 1), 1)
    key = (level[n_in:] * (net.k + 1) + out_class[n_in:] + 1) * 256 + imm
    sizes = np.bincount(key[live & (absorbs > 0)], minlength=int(key.max(initial=0)) + 1)
    absorbs[(absorbs > 0) & (sizes[key] < min_group)] = 0  # the operand is stored instead
    inner = absorbed_gates(a, b, absorbs, n_in)
    imm = ternary_tables(op, inner, absorbs)
    fused = absorbs > 0
    absorbed = np.zeros(net.n_gates, bool)
    absorbed[inner[fused]] = True
    operands = [np.where(fused, a[inner], a), np.where(fused, b[inner], b), np.where(absorbs == 1, b, a)]
    reads = [np.where(fused, READS_A[op[inner]], READS_A[op]).astype(bool),
             np.where(fused, READS_B[op[inner]], READS_B[op]).astype(bool),
             np.where(absorbs == 1, READS_B[op], np.where(absorbs == 2, READS_A[op], 0)).astype(bool)]
    if canonical:
        perm = np.array(PERMS)[CANONICAL_PERM[imm]]  # per gate: operand j is the old perm[j]
        rows = np.arange(len(imm))
        operands = [np.stack(operands, 1)[rows, perm[:, j]] for j in range(3)]
        reads = [np.stack(reads, 1)[rows, perm[:, j]] for j in range(3)]
        imm = CANONICAL[imm]
    return schedule(net, folded, live & ~absorbed, operands, reads, imm, 256, level, reuse)


def absorbed_gates(a, b, absorbs, n_in: int) -> np.ndarray:
    """Per gate, the gate it absorbed (its a or its b, see plan_ternary); 0 where it absorbed none."""
    return np.where(absorbs == 1, a - n_in, np.where(absorbs == 2, b - n_in, 0))


def ternary_tables(op, inner, absorbs) -> np.ndarray:
    """Each gate's truth table over (x, y, z) (see plan_ternary) as vpternlogq's immediate; inner:
    absorbed_gates."""
    i = np.arange(8)
    xi, yi, zi = i >> 2 & 1, i >> 1 & 1, i & 1
    h = TRUTH[op[inner][:, None], 2 * xi + yi]  # the absorbed gate's value at each row
    out = np.where((absorbs == 1)[:, None], TRUTH[op[:, None], 2 * h + zi],
                   np.where((absorbs == 2)[:, None], TRUTH[op[:, None], 2 * zi + h], TRUTH[op[:, None], 2 * xi + yi]))
    return (out << i).sum(1).astype(np.uint8)


def schedule(net: Netlist, folded: Folded, live, operands, reads, gate_op, n_ops: int, level=None,
             reuse: str = "level") -> Program:
    """The Program of the `live` gates, each reading `operands` (node arrays, per gate) where
    `reads` (bool arrays) says it depends on them, through gate_op (n_ops kinds): levels, class
    counting, grouping and slots as plan() says."""
    n_in, n_nodes = net.n_inputs, net.n_inputs + net.n_gates
    outputs = folded.outputs
    if level is None:
        level = gate_levels(n_in, folded.a, folded.b, net.op, live)
    level = level.copy()

    # Class-counted gates: one output each, read by no gate, not constant; they run last, one
    # level after all others.
    per_class = len(outputs) // net.k if net.k else 0
    out_class = np.arange(len(outputs)) // max(per_class, 1)
    uses = np.bincount(outputs, minlength=n_nodes)
    read = np.zeros(n_nodes, bool)
    for operand, r in zip(operands, reads):
        read[operand[live & r]] = True
    gate_class = np.full(n_nodes, -1, np.int64)
    is_gate, node_op = np.r_[np.zeros(n_in, bool), live], np.r_[np.full(n_in, WIRE_A, np.uint8), net.op]
    counted = is_gate[outputs] & (uses[outputs] == 1) & ~read[outputs] & ~np.isin(node_op[outputs], CONSTANT_OPS)
    gate_class[outputs[counted]] = out_class[counted]
    if counted.any():
        level[outputs[counted]] = level.max() + 1

    order = np.flatnonzero(live)
    classes = gate_class[n_in + order]
    order = order[np.lexsort((operands[0][order], gate_op[order], classes, level[n_in + order]))]  # reads in address order

    # When each node's slot is free again: after the last level that reads it (reuse "level"), or
    # right after the last gate that reads it (reuse "gate": the program's gates run one after
    # another, each loading its operands before it stores), so that a gate's result goes to a
    # slot just read, still in the L1 cache, and a tile's slots are about one layer wide
    levels = level[n_in + order]
    when = levels if reuse == "level" else np.arange(len(order))
    step = np.full(n_nodes, -1, np.int64)
    step[n_in + order] = when
    last_read = np.full(n_nodes, -1, np.int64)
    for operand, r in zip(operands, reads):
        readers = order[r[order]]
        np.maximum.at(last_read, operand[readers], step[n_in + readers])
    last_read[outputs] = np.iinfo(np.int64).max

    slot = np.full(n_nodes, -1, np.int64)
    slot[:n_in] = np.arange(n_in)
    free: list[int] = []
    n_slots = n_in
    frees_at: dict[int, list[int]] = {}
    for node in range(n_in):
        frees_at.setdefault(int(last_read[node]), []).append(node)
    current = -1  # step -1 frees what nothing reads
    for g, now in zip(order.tolist(), when.tolist()):
        if now != current:
            for done in range(current, now):  # slots whose last reader ran before this step
                for node in frees_at.pop(done, []):
                    free.append(int(slot[node]))
            current = now
        if free:
            slot[n_in + g] = free.pop()
        else:
            slot[n_in + g] = n_slots
            n_slots += 1
        frees_at.setdefault(int(last_read[n_in + g]), []).append(n_in + g)

    ops_sorted, classes = gate_op[order], gate_class[n_in + order]
    key = (levels * (net.k + 1) + classes + 1) * n_ops + ops_sorted
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(key)])
    u32 = lambda x: np.ascontiguousarray(x, dtype=np.uint32)  # noqa: E731
    # an operand the op ignores: any valid slot
    op_slots = [u32(np.where(r[order], slot[operand[order]], 0)) for operand, r in zip(operands, reads)]

    out_op = node_op[outputs]
    rest = ~counted & ~np.isin(out_op, CONSTANT_OPS)
    rest_start = np.searchsorted(out_class[rest], np.arange(net.k + 1))
    class_ones = np.bincount(out_class[out_op == 15], minlength=net.k)
    return Program(n_in, int(n_slots), np.ascontiguousarray(ops_sorted[starts], np.uint8), u32(counts),
                   op_slots[0], op_slots[1], u32(slot[n_in + order]), u32(slot[outputs]),
                   net.k, net.tau, net.n_gates, np.ascontiguousarray(classes[starts], np.int32),
                   u32(rest_start), u32(slot[outputs[rest]]), np.ascontiguousarray(class_ones, np.int32),
                   op_slots[2] if len(op_slots) > 2 else None, net)
