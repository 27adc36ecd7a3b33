"""Logic passes: at least half the gates of trained-like networks go at -O1, and no pass or
combination of passes changes any output bit (exhaustive up to 16 inputs, else 100,000 random
inputs on the engine). Pass manager: levels, kinds, arguments, manifest statistics."""
import itertools
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import gatec
from gatec import passes
from gatec.compiler import default_passes
from gatec.engine import Engine
from gatec.errors import GatecError
from gatec.ir import IR, LOGIC_DOMAIN, OPSET, TensorSpec
from gatec.ir.logic import Layer, group_sum_node, logic_layer_node, network_of_model
from gatec.ir.netlist import plan
from gatec.passes import LEVELS
from gatec.passes.logic_common import layered_counts, netlist_of_ir

O1 = LEVELS[1]
HAVE_ABC = shutil.which("yosys-abc") is not None


def trained_like_ops(rng, n, wires=0.40, constants=0.05):
    """Op statistics of trained difflogic networks: ~40% pass-through/inverters
    (3, 5, 10, 12), ~5% constants (0, 15), the rest spread over the ten two-input ops."""
    p = np.full(16, (1 - wires - constants) / 10)
    p[[3, 5, 10, 12]] = wires / 4
    p[[0, 15]] = constants / 2
    return rng.choice(16, n, p=p)


def logic_ir(in_dim, widths, k=None, seed=0, ops=trained_like_ops, tau=1.0):
    """A difflogic-layout network: each layer's inputs drawn so every input of the previous layer
    is read about equally often (difflogic's `random` connections)."""
    rng = np.random.default_rng(seed)
    nodes, prev, dim = [], "input", in_dim
    for i, width in enumerate(widths):
        c = rng.permutation(2 * width) % dim
        c = rng.permutation(dim)[c].reshape(2, width)
        out = "output" if k is None and i == len(widths) - 1 else f"l{i}"
        nodes.append(logic_layer_node(prev, out, Layer(c[0], c[1], ops(rng, width)), f"layer{i}"))
        prev, dim = out, width
    if k is not None:
        nodes.append(group_sum_node(prev, "output", k, tau, "group_sum"))
    outs = k if k is not None else dim
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", in_dim])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", outs])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(LOGIC_DOMAIN, 1)])
    return IR(model, [TensorSpec("input", [1, in_dim], dynamic=[0], values="binary")],
              [TensorSpec("output", [1, outs], dynamic=[0])])


def all_inputs(n):
    return np.array(list(itertools.product((0, 1), repeat=n)), np.uint8).reshape(-1, n)


def assert_same_bits(before: IR, after: IR):
    """Every output bit equal: exhaustively up to 16 inputs, else on 100,000 random inputs through
    the engine (class counts)."""
    a, b = netlist_of_ir(before), netlist_of_ir(after)
    if a.n_inputs <= 16:
        bits = all_inputs(a.n_inputs)
        assert np.array_equal(a.output_bits(bits), b.output_bits(bits))
    else:
        bits = np.random.default_rng(1).integers(0, 2, (100_000, a.n_inputs)).astype(np.uint8)
        assert np.array_equal(Engine(plan(a)).counts(bits), Engine(plan(b)).counts(bits))


def gates_removed(ir: IR, out: IR) -> float:
    """Share of gates gone; the pass-through wires re-layering adds are counted apart (the engine
    and firmware alias them for free)."""
    after = layered_counts(out)
    return 1 - (after["gates"] - after["wires"]) / layered_counts(ir)["gates"]


# ---------------------------------------------------------------- gates removed, bit-exact

@pytest.mark.parametrize("in_dim,widths", [(16, [250] * 6), (784, [2000] * 6)])
def test_O1_removes_half_of_a_difflogic_layout_network(in_dim, widths):
    ir = logic_ir(in_dim, widths, k=10, seed=3)
    out = passes.apply(ir, O1)
    removed = gates_removed(ir, out)
    print(f"{in_dim} inputs, {widths}: {100 * removed:.1f}% of gates removed, "
          f"{out.passes[-1]['after']['wires']} pass-through wires")
    assert removed >= 0.5
    assert [p["name"] for p in out.passes] == O1
    for p in out.passes:
        assert set(p) >= {"name", "before", "after"} and p["after"]["gates"] <= p["before"]["gates"]
    assert_same_bits(ir, out)


def test_O1_on_a_trained_digits_network_keeps_the_encoder_and_every_bit(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
    import digits_logic as D
    from gatec.nn.logic import ThermometerEncoder
    torch.manual_seed(0)
    torch.set_num_threads(1)
    train_set, test_set = D.data(0)
    net = D.model(ThermometerEncoder(64, 2, "uniform").fit(train_set[0]), 500, 6, 2.7)
    D.train(net, train_set, 4, 0.02)
    source = gatec.load(net, [[1, 64]])
    out = passes.apply(source.ir, O1)
    removed = gates_removed(source.ir, out)
    print(f"trained digits 6 x 500: {100 * removed:.1f}% of gates removed")
    assert removed >= 0.5
    assert any(n.op_type == "Greater" for n in out.model.graph.node)  # the thermometer encoder stays
    assert_same_bits(source.ir, out)
    for options in ({}, {"engine": "onnxruntime"}):  # engine and ORT bit-packed form, verified vs torch
        art = gatec.compile(net, "cpu", tmp_path / f"a{len(options)}", input_shapes=[[1, 64]],
                            data=[test_set[0].numpy()], options=options)
        assert art.manifest["verification"]["ok"]
        gates = art.manifest["gates"]
        assert gates["before"] == 3000 and gates["after"] - gates["pass_through_wires"] <= 1500
        expected = net(test_set[0]).detach().numpy()
        assert np.array_equal(art.run(test_set[0].numpy())[0], expected)


def test_c_target_runs_the_optimized_network(tmp_path):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    ir = logic_ir(12, [64, 64, 40], k=4, seed=5)
    from gatec.frontend import Source
    from gatec.ir.logic import run as run_network
    ref = network_of_model(ir.model)
    source = Source(ir, lambda arrays: [run_network(ref, arrays[0])], None)
    art = gatec.compile(None, "c", tmp_path / "c", source=source, opt_level=2)
    assert art.manifest["verification"]["ok"] and art.manifest["gates"]["after"] < art.manifest["gates"]["before"]


# ---------------------------------------------------------------- no pass changes an output

def random_ops(draw_rng, n):
    return trained_like_ops(draw_rng, n, wires=0.5, constants=0.15)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 10), st.lists(st.integers(1, 24), min_size=1, max_size=5), st.integers(1, 4),
       st.booleans(), st.integers(0, 2 ** 31), st.permutations(["constants", "wires", "merge", "dead-gates",
                                                                 "simplify"] + (["abc"] if HAVE_ABC else [])),
       st.integers(1, 6))
def test_no_pass_changes_any_output(in_dim, widths, k, use_group_sum, seed, order, n_passes):
    widths[-1] = widths[-1] * k if use_group_sum else widths[-1]
    ir = logic_ir(in_dim, widths, k=k if use_group_sum else None, seed=seed, ops=random_ops, tau=2.0)
    bits = all_inputs(in_dim)
    expected = netlist_of_ir(ir).output_bits(bits)
    for name in order[:n_passes]:  # each pass alone would be checked by the first step of the chain
        ir = passes.apply(ir, [name])
        assert np.array_equal(netlist_of_ir(ir).output_bits(bits), expected), ir.passes
    out_layer = network_of_model(ir.model).layers[-1]
    assert len(out_layer) == len(expected[0])
    # relayer picks its levels by the counted size: the count is what laying out builds
    from gatec.passes.logic_common import _layers_at, canonical_inputs, layered_size, live_gates
    net = canonical_inputs(netlist_of_ir(ir))
    live, depth = live_gates(net), len(network_of_model(ir.model).layers)
    level = np.zeros(net.n_inputs + net.n_gates, np.int64)
    for g in np.flatnonzero(live):
        level[net.n_inputs + g] = 1 if net.op[g] in (0, 15) else 1 + max(level[net.a[g]], level[net.b[g]])
    depth = max(1, int(level[net.outputs].max(initial=0)))
    assert layered_size(net, live, level, depth) == sum(map(len, _layers_at(net, live, level, depth)[0]))


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 6), st.integers(6, 10), st.lists(st.integers(1, 12), min_size=1, max_size=3),
       st.integers(0, 2 ** 31), st.floats(0.0, 0.9), st.permutations(["constants", "wires", "merge", "dead-gates",
                                                                      "simplify"]))
def test_no_pass_changes_a_lut_network(k, in_dim, widths, seed, degenerate, order):
    """LUTLayer networks (k = 2..6, decomposed into gates on export) through the passes in any
    order: every output bit equal to the torch module's eval on every input. `degenerate`: the
    share of nodes whose table ignores some inputs or is constant, as trained tables often are."""
    from gatec.nn import LUTLayer
    from gatec.nn.logic import GroupSum
    torch.manual_seed(seed % 1000)
    layers, dim = [], in_dim
    for w in widths:
        layer = LUTLayer(dim, w * 2, k=k)
        with torch.no_grad():
            rows = torch.rand(w * 2) < degenerate
            cut = torch.randint(0, k, (1,)).item()  # the table read with input `cut` fixed: it ignores it
            entries = torch.arange(2 ** k)
            fixed = entries & ~(1 << (k - 1 - cut))
            layer.logits[rows] = layer.logits[rows][:, fixed]
            layer.logits[rows & (torch.rand(w * 2) < 0.3)] = 1.0  # some constant one
        layers.append(layer)
        dim = w * 2
    net = torch.nn.Sequential(*layers, GroupSum(2, 1.0)).eval()
    bits = all_inputs(in_dim)
    with torch.no_grad():
        expected = net(torch.from_numpy(bits.astype(np.float32))).numpy()
    ir = gatec.load(net, [[1, in_dim]]).ir
    for name in order:
        ir = passes.apply(ir, [name])
    assert np.array_equal(netlist_of_ir(ir).evaluate(bits).astype(np.float32), expected), ir.passes


def test_each_pass_alone_on_wires_and_constants_everywhere():
    rng = np.random.default_rng(0)
    ir = logic_ir(8, [40, 40, 40, 20], k=5, seed=1, ops=lambda r, n: rng.choice([0, 3, 5, 10, 12, 15, 6, 1], n))
    bits = all_inputs(8)
    expected = netlist_of_ir(ir).output_bits(bits)
    for name in ["constants", "wires", "merge", "dead-gates", "simplify"] + (["abc"] if HAVE_ABC else []):
        out = passes.apply(ir, [name])
        assert np.array_equal(netlist_of_ir(out).output_bits(bits), expected), name
        assert out.passes[-1]["after"]["gates"] <= out.passes[-1]["before"]["gates"], name


# ---------------------------------------------------------------- pass manager

def test_levels_per_target_and_kind():
    logic = logic_ir(8, [16, 8], k=2)
    assert default_passes("cpu", logic, 0) == []
    assert default_passes("cpu", logic, 1) == O1 and default_passes("c", logic, 1) == O1
    assert "abc" in default_passes("cpu", logic, 2) or not HAVE_ABC
    gated = gatec.load(gatec.nn.GLU(4, 8, form="two_linear").eval(), [[1, 4]]).ir
    assert default_passes("cpu", gated, 1) == [] and default_passes("cpu", gated, 2) == ["prune-gates"]
    with pytest.raises(GatecError, match="-O3"):
        default_passes("cpu", logic, 3)


def test_pass_errors_are_one_line():
    logic = logic_ir(8, [16, 8], k=2)
    gated = gatec.load(gatec.nn.GLU(4, 8, form="two_linear").eval(), [[1, 4]]).ir
    for ir, names, match in [(logic, ["nope"], "unknown pass"), (gated, ["wires"], "logic networks"),
                             (logic, ["prune-gates"], "arithmetic"), (logic, ["wires:3"], "takes no argument"),
                             (gated, ["magnitude-prune:2"], r"\[0, 1\]"), (gated, ["magnitude-prune:x"], "not a number")]:
        with pytest.raises(GatecError, match=match) as e:
            passes.apply(ir, names)
        assert "\n" not in str(e.value)


def test_a_parameter_out_of_range_names_the_pass_the_parameter_and_the_range():
    gated = gatec.load(gatec.nn.GLU(4, 8, form="two_linear").eval(), [[1, 4]]).ir
    for spec, message in [("quantize:40", "pass 'quantize': bits 40 must lie in [2, 32]"),
                          ("quantize:1", "pass 'quantize': bits 1 must lie in [2, 32]"),
                          ("quantize:8.5", "pass 'quantize': bits '8.5' is not an integer (like quantize:8)"),
                          ("prune-gates:-1", "pass 'prune-gates': threshold -1 must lie in [0, 1]"),
                          ("magnitude-prune:1.5", "pass 'magnitude-prune': sparsity 1.5 must lie in [0, 1]")]:
        with pytest.raises(GatecError) as e:
            passes.apply(gated, [spec])
        assert str(e.value) == message


def test_every_pass_declares_what_its_run_takes():
    import inspect
    for p in passes.load_all().values():
        kwargs = ({"data": None} if p.reads_data else {}) | ({p.param.name: p.param.default} if p.param else {})
        inspect.signature(p.run).bind(None, **kwargs)  # what apply passes it
        assert p.kind in ("logic", "arithmetic", "any") and p.help and p.long_help
        if p.param:
            assert p.param.low <= p.param.default <= p.param.high and isinstance(p.param.default, p.param.type)


def test_cli_describes_one_pass(cli):
    code, out, _ = cli("passes", "magnitude-prune")
    assert code == 0
    assert out.startswith("magnitude-prune: zero the smallest MatMul/Gemm weights")
    assert "Magnitude pruning: the smallest weights" in out  # the long help
    assert "parameter: sparsity (float, default 0.5, in [0, 1]), written magnitude-prune:VALUE" in out
    code, out, _ = cli("passes", "abc")
    assert code == 0 and "needs: yosys-abc on PATH" in out and "parameter: none" in out
    code, _, err = cli("passes", "nope")
    assert code == 2 and "unknown pass 'nope'" in err and "\n" not in err.strip()


def test_cli_levels_and_passes_listing(cli, tmp_path):
    code, out, _ = cli("passes")
    assert code == 0
    for name in ["constants", "wires", "merge", "dead-gates", "simplify", "abc", "prune-gates", "magnitude-prune"]:
        assert name in out
    torch.manual_seed(0)
    from gatec.nn.logic import GroupSum, LogicLayer
    path = tmp_path / "net.pt"
    torch.save(torch.nn.Sequential(LogicLayer(10, 60), LogicLayer(60, 60), GroupSum(3)).eval(), path)
    gates = {}
    for level in (0, 1, 2):
        code, out, err = cli("compile", path, "--input-shape", "1,10", f"-O{level}", "-o", tmp_path / f"O{level}")
        assert code == 0, err
        manifest = json.loads((tmp_path / f"O{level}" / "manifest.json").read_text())
        gates[level] = manifest["gates"]["after"] - manifest["gates"]["pass_through_wires"]
        assert manifest["gates"]["before"] == 120 and manifest["verification"]["ok"]
        if level < 2:
            assert [p["name"] for p in manifest["passes"]] == (O1 if level == 1 else [])
    assert gates[0] > gates[1] >= gates[2]
    code, out, err = cli("verify", path, "--input-shape", "1,10", "-O2", "--passes", "wires,dead-gates")
    assert code == 0 and "passed" in out
    code, _, err = cli("compile", path, "--input-shape", "1,10", "--passes", "bogus")
    assert code == 2 and "unknown pass 'bogus'" in err


def test_a_complement_becomes_an_inverter_folded_into_its_readers():
    """g1 = NAND(a, b) is NOT g0 = AND(a, b): g1 goes, and its readers read g0 with their op
    adjusted."""
    nodes = [logic_layer_node("input", "l0", Layer([0, 0, 2], [1, 1, 3], [1, 14, 6]), "layer0"),
             logic_layer_node("l0", "l1", Layer([1, 1, 2], [2, 0, 0], [7, 1, 6]), "layer1"),
             group_sum_node("l1", "output", 3, 1.0, "group_sum")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(LOGIC_DOMAIN, 1)])
    ir = IR(model, [TensorSpec("input", [1, 4], dynamic=[0], values="binary")], [TensorSpec("output", [1, 3], dynamic=[0])])
    out = passes.apply(ir, ["simplify"])
    assert out.passes[-1]["changed"]["complements_inverted"] >= 1
    assert layered_counts(out)["gates"] - layered_counts(out)["wires"] < layered_counts(ir)["gates"]
    assert_same_bits(ir, out)


@pytest.mark.parametrize("seed", [0, 1])
def test_O1_on_four_layer_difflogic_layout_networks(seed):
    ir = logic_ir(784, [2000] * 4, k=10, seed=seed)
    out = passes.apply(ir, O1)
    print(f"4 x 2000, seed {seed}: {100 * gates_removed(ir, out):.1f}% removed")
    assert gates_removed(ir, out) >= 0.45
    assert_same_bits(ir, out)
