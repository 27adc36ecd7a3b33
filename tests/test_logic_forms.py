"""Every form of a discrete logic network agrees bit for bit: PyTorch eval, the numpy gate lists,
qonnx's executor on the compact ONNX form, and ONNX Runtime on the float and bit-packed forms."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import gatec
from gatec import emulator
from gatec.ir import LOGIC_DOMAIN
from gatec.ir.logic import network_of_model, run
from gatec.ir.reference import run_qonnx
from gatec.nn.logic import network_of_module, GroupSum, LogicConv2d, LogicLayer, ThermometerEncoder
from gatec.targets import get
from gatec.targets.cpu.bitpacked import lower_logic, lower_logic_float


def random_network(depth: int, in_dim: int, width: int, k: int, seed: int, group_sum: bool = True):
    """Layers with uniformly random ops (training would skew them; every op must be covered)."""
    torch.manual_seed(seed)
    layers, dim = [], in_dim
    for _ in range(depth):
        layers.append(LogicLayer(dim, width, connections="random" if seed % 2 else "unique"))
        dim = width
    if group_sum:
        layers.append(GroupSum(k, tau=0.5 + seed))
    return torch.nn.Sequential(*layers).eval()


def ort_run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 8])
def test_all_forms_agree_bit_for_bit(depth):
    in_dim, width = 37, 60 + 10 * depth
    net = random_network(depth, in_dim, width, k=5, seed=depth)
    ir = gatec.load(net, [[1, in_dim]]).ir
    assert ir.kind == "logic" and ir.inputs[0].values == "binary"
    nodes = [n for n in ir.model.graph.node if n.domain == LOGIC_DOMAIN]
    assert [n.op_type for n in nodes] == ["LogicLayer"] * depth + ["GroupSum"]
    ops = np.concatenate([l.ops for l in network_of_model(ir.model).layers])
    assert len(np.unique(ops)) == 16  # the test covers every op
    packed, anf, dense = lower_logic(ir), lower_logic(ir, grouped=False), lower_logic_float(ir)
    assert not any(n.domain for m in (packed, anf, dense) for n in m.graph.node)  # standard ONNX only
    x_all = np.random.default_rng(depth).integers(0, 2, (10_000, in_dim)).astype(np.float32)
    for batch in (1, 63, 65, 1000, 10_000):
        x = x_all[:batch]
        expected = net(torch.from_numpy(x)).numpy()
        assert expected.shape == (batch, 5)
        forms = {"gate lists": run(network_of_module(net), x), "compact ONNX (qonnx)": run_qonnx(ir.model, [x])[0],
                 "float ONNX (ORT)": ort_run(dense, x), "bit-packed ONNX (ORT)": ort_run(packed, x),
                 "bit-packed normal form (ORT)": ort_run(anf, x)}
        for name, got in forms.items():
            assert got.dtype == np.float32 and np.array_equal(got, expected), (name, batch)


def test_forms_without_group_sum_and_with_encoder_and_conv():
    torch.manual_seed(5)
    enc = ThermometerEncoder(2 * 9 * 9, 2).fit(np.random.default_rng(0).normal(size=(200, 2 * 9 * 9)))
    net = torch.nn.Sequential(enc, torch.nn.Unflatten(1, (4, 9, 9)), LogicConv2d((4, 9, 9), 6, depth=2),
                              LogicLayer(6 * 3 * 3, 50)).eval()
    ir = gatec.load(net, [[1, 2 * 9 * 9]]).ir
    assert ir.inputs[0].values == "real"  # the encoder reads real numbers
    x = np.random.default_rng(1).normal(size=(130, 2 * 9 * 9)).astype(np.float32)
    expected = net(torch.from_numpy(x)).numpy()
    assert set(np.unique(expected)) == {0.0, 1.0}
    for form in (lower_logic, lambda ir: lower_logic(ir, grouped=False), lower_logic_float):
        assert np.array_equal(ort_run(form(ir), x), expected)
    assert np.array_equal(run_qonnx(ir.model, [x])[0], expected)


def test_compile_logic_network_cpu_is_verified_bit_exact(tmp_path):
    net = random_network(3, 64, 120, k=10, seed=7)
    for options in ({}, {"engine": "onnxruntime"}, {"engine": "onnxruntime", "logic_form": "float"}):
        art = gatec.compile(net, "cpu", input_shapes=[[1, 64]], options=options)
        assert art.manifest["kind"] == "logic" and art.manifest["inputs"][0]["values"] == "binary"
        assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0
        x = np.random.default_rng(0).integers(0, 2, (333, 64)).astype(np.float32)
        assert np.array_equal(art.run(x)[0], net(torch.from_numpy(x)).numpy())
    with pytest.raises(gatec.GatecError, match="logic_form"):
        gatec.compile(net, "cpu", input_shapes=[[1, 64]], options={"logic_form": "analog", "engine": "onnxruntime"})


def test_flipped_gate_fails_verification(tmp_path):
    net = random_network(2, 30, 40, k=4, seed=3)
    source = gatec.load(net, [[1, 30]])
    target = get("cpu")
    for options in ({"engine": "onnxruntime"}, {}):
        flipped = source.ir.copy()
        last = [n for n in flipped.model.graph.node if n.op_type == "LogicLayer"][-1]
        ops = next(a for a in last.attribute if a.name == "ops")
        ops.ints[0] = 15 - ops.ints[0]  # the complement: this gate's output flips on every input
        folder = tmp_path / f"art{len(options)}"
        folder.mkdir()
        target.build(target.plan(flipped, options), folder)
        runner = target.load(folder, options)
        checks = emulator.verify(source.ir, source.reference,
                                 {"cpu": (runner.run, target.tolerance(target.plan(source.ir, {})))})
        assert not checks[0].ok and checks[0].mismatches > 0
        assert "FAIL" in emulator.format_table(checks)
        # and unflipped, the same path passes
        good = tmp_path / f"good{len(options)}"
        good.mkdir()
        plan = target.plan(source.ir, options)
        target.build(plan, good)
        checks = emulator.verify(source.ir, source.reference, {"cpu": (target.load(good, options).run,
                                                                       target.tolerance(plan))})
        assert checks[0].ok


def test_same_model_gives_identical_onnx_bytes():
    a = gatec.load(random_network(2, 16, 30, k=3, seed=4), [[1, 16]]).ir
    b = gatec.load(random_network(2, 16, 30, k=3, seed=4), [[1, 16]]).ir
    assert a.to_bytes() == b.to_bytes()
    for form in (lower_logic, lower_logic_float):
        assert form(a).SerializeToString(deterministic=True) == form(b).SerializeToString(deterministic=True)


def test_qonnx_finds_the_custom_ops():
    from qonnx.custom_op.registry import getCustomOp
    import gatec.custom_op as ops
    ir = gatec.load(random_network(1, 8, 6, k=2, seed=1), [[1, 8]]).ir
    layer, gs = [n for n in ir.model.graph.node if n.domain == LOGIC_DOMAIN]
    assert isinstance(getCustomOp(layer), ops.LogicLayer) and isinstance(getCustomOp(gs), ops.GroupSum)
    assert getCustomOp(layer).verify_node()[0] == "LogicLayer with 6 gates"
    assert getCustomOp(gs).get_nodeattr("k") == 2
    bad = onnx.helper.make_node("LogicLayer", ["x"], ["y"], domain=LOGIC_DOMAIN, in_a=[0, 1], in_b=[1], ops=[3, 16])
    assert "wrong" in getCustomOp(bad).verify_node()[0]


def test_bitwise_expressions_compute_each_ops_truth_table():
    """The one op table every generator formats (Verilog, hls4ml's C++) against TRUTH."""
    from gatec.ir.logic import TRUTH, bitwise_expressions
    for op, expr in bitwise_expressions("0", "1").items():
        got = [eval(expr.format(a=a, b=b)) & 1 for a in (0, 1) for b in (0, 1)]  # f(0,0), f(0,1), f(1,0), f(1,1)
        assert got == TRUTH[op].tolist(), op
