"""plan_ternary: gates read by one gate computed inside their reader (three-input truth tables,
AVX-512's vpternlogq in the host engine). Checked on any CPU by running the programs in numpy,
and through the engine on whichever path this CPU's library takes."""
import numpy as np
import pytest

from gatec.engine import Engine
from gatec.ir.logic import TRUTH
from gatec.ir.netlist import Netlist, plan, plan_ternary


def run_program(p, bits: np.ndarray, gate_by_gate: bool = False) -> np.ndarray:
    """A Program (plan's or plan_ternary's) run group by group in numpy (a group's gates read
    before any of them writes), or gate by gate in order as the engine runs them: class counts
    (N, k)."""
    slots = np.zeros((p.n_slots, len(bits)), bool)
    slots[:p.n_inputs] = bits.T.astype(bool)
    counts = np.zeros((len(bits), p.k), np.int64)
    start = 0
    runs = [(op, 1, cls) for op, count, cls in zip(p.group_op.tolist(), p.group_count.tolist(), p.group_class.tolist())
            for _ in range(count)] if gate_by_gate else zip(p.group_op.tolist(), p.group_count.tolist(),
                                                            p.group_class.tolist())
    for op, count, cls in runs:
        part = slice(start, start + count)
        x, y = slots[p.a_slot[part]].astype(int), slots[p.b_slot[part]].astype(int)
        if p.c_slot is None:
            value = TRUTH[op][2 * x + y].astype(bool)
        else:
            value = ((op >> (4 * x + 2 * y + slots[p.c_slot[part]].astype(int))) & 1).astype(bool)
        if cls >= 0:
            counts[:, cls] += value.sum(0)
        else:
            slots[p.out_slot[part]] = value
        start += count
    for c in range(p.k):
        counts[:, c] += slots[p.rest_slot[p.rest_start[c]:p.rest_start[c + 1]]].sum(0)
    return counts + p.class_ones


def chain_net(seed, n_in=30, widths=(60, 50, 40, 30), k=3, ops=None) -> Netlist:
    """Layers that read each earlier node about once (so many gates have one reader), with
    duplicates, operands read twice and constants mixed in."""
    rng = np.random.default_rng(seed)
    layers, prev = [], n_in
    for w in widths:
        a = rng.permutation(np.resize(np.arange(prev), w))
        b = rng.permutation(np.resize(np.arange(prev), w))
        b[: w // 10] = a[: w // 10]  # the same operand twice
        op = rng.integers(0, 16, w) if ops is None else rng.choice(ops, w)
        layers.append((a, b, op.astype(np.uint8)))
        prev = w
    return Netlist.from_layers(n_in, layers, k, 2.0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("min_group", [0, 1, 4, 16])
def test_fused_programs_count_what_the_netlist_counts(seed, min_group):
    net = chain_net(seed, ops=None if seed % 2 else [1, 6, 7, 8, 14, 0, 15, 3, 12])
    bits = np.random.default_rng(seed).integers(0, 2, (300, net.n_inputs)).astype(np.uint8)
    want = net.evaluate(bits)
    plain, fused = plan(net), plan_ternary(net, min_group)
    assert np.array_equal(run_program(plain, bits), want)
    assert np.array_equal(run_program(fused, bits), want)
    assert fused.gates_executed <= plain.gates_executed
    if min_group <= 1:  # each layer's gates are mostly read once: many are absorbed
        assert fused.gates_executed < 0.9 * plain.gates_executed


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("planner", [plan, lambda net, **kw: plan_ternary(net, 1, **kw)])
def test_slots_reused_gate_by_gate_count_the_same_in_fewer_slots(seed, planner):
    """reuse "gate": a slot is written again right after its last reader, within the level; run
    gate by gate in order (as the engine does), the program counts what the netlist counts."""
    net = chain_net(seed, widths=(81, 72, 60, 51, 45)) if seed % 2 else \
        Netlist.from_layers(20, [(np.random.default_rng(seed).integers(0, w_in, w), np.random.default_rng(seed + 9)
                                  .integers(0, w_in, w), np.random.default_rng(seed + 5).integers(0, 16, w))
                                 for w_in, w in [(20, 90), (90, 90), (90, 60)]], 2, 1.0)
    bits = np.random.default_rng(seed).integers(0, 2, (200, net.n_inputs)).astype(np.uint8)
    by_level, by_gate = planner(net, reuse="level"), planner(net, reuse="gate")
    want = net.evaluate(bits)
    assert np.array_equal(run_program(by_gate, bits, gate_by_gate=True), want)
    assert np.array_equal(run_program(by_level, bits, gate_by_gate=True), want)
    assert by_gate.gates_executed == by_level.gates_executed
    assert by_gate.n_slots < by_level.n_slots


def test_a_fusion_shared_by_too_few_gates_is_not_made():
    net = chain_net(1)
    fused, every = plan_ternary(net, 10 ** 6), plan_ternary(net, 0)
    assert fused.gates_executed == plan(net).gates_executed
    assert every.gates_executed < fused.gates_executed


def test_outputs_and_gates_read_twice_are_never_absorbed():
    # every gate of the first layer is read by two of the next, or is an output too (gate 1)
    layers = [([0, 1, 2], [1, 2, 3], [1, 6, 7]), ([0, 0, 1], [2, 1, 2], [7, 1, 6])]
    net = Netlist.from_layers(4, layers, 1, 1.0)
    net.outputs = np.r_[net.outputs, 4 + 1]
    bits = np.array([[(i >> j) & 1 for j in range(4)] for i in range(16)], np.uint8)
    fused = plan_ternary(net, 0)
    assert np.array_equal(run_program(fused, bits), net.evaluate(bits))
    assert fused.gates_executed == plan(net).gates_executed


@pytest.mark.parametrize("threads", [1, 2])
def test_the_engine_agrees_on_either_program(threads):
    net = chain_net(7, n_in=50, widths=(400, 300, 300, 240), k=4)
    bits = np.random.default_rng(3).integers(0, 2, (3000, net.n_inputs)).astype(np.uint8)
    want = net.evaluate(bits)
    program = plan(net)
    eng = Engine(program, threads=threads)
    assert np.array_equal(eng.counts(bits), want)
    ternary_library = bool(eng.lib.gatec_host_ternary())
    assert (eng.host_program()[0].c_slot is not None) == ternary_library  # AVX-512: the fused program
    program.source = None  # a program without its netlist: the library's generic loops run it
    bare = Engine(program, threads=threads)
    assert bare.host_program()[0] is program
    assert np.array_equal(bare.counts(bits), want)
    assert np.array_equal(bare.run(bits), (want / np.float32(2.0)).astype(np.float32))


def test_the_engines_switch_cases_are_the_canonical_tables():
    """gatec_host.c's HOST_TERNARY_OPS lists a loop per table plan_ternary emits; a table outside it
    runs through a slower generic path, so the two lists must agree."""
    import re
    from pathlib import Path

    import gatec.engine
    from gatec.ir.netlist import CANONICAL, PERMS, permuted_table
    source = Path(gatec.engine.SOURCE).read_text()
    body = source[source.index("#define HOST_TERNARY_OPS(X)"):].split("\n\n")[0]
    listed = [int(v) for v in re.findall(r"X\((\d+)\)", body)]
    assert listed == sorted(set(CANONICAL.tolist()))
    for imm in range(256):  # each table's canonical form is one of its reorderings, and the least
        forms = {permuted_table(imm, p) for p in PERMS}
        assert CANONICAL[imm] == min(forms)


def test_tables_outside_the_switch_run_through_the_generic_path(monkeypatch):
    """Operands left in their first order give tables the switch does not list: the engine's
    generic loop (a vpternlogq per minterm) must count the same."""
    import gatec.engine
    net = chain_net(11, n_in=40, widths=(300, 250, 200, 160), k=4)
    bits = np.random.default_rng(4).integers(0, 2, (1500, net.n_inputs)).astype(np.uint8)
    from gatec.ir.netlist import CANONICAL
    raw = plan_ternary(net, 0, canonical=False)
    assert set(raw.group_op.tolist()) - set(CANONICAL.tolist())  # some tables are not canonical
    assert np.array_equal(run_program(raw, bits), net.evaluate(bits))
    monkeypatch.setattr(gatec.engine, "plan_ternary", lambda n, **kw: plan_ternary(n, 0, canonical=False, **kw))
    eng = Engine(plan(net))
    assert np.array_equal(eng.counts(bits), net.evaluate(bits))
