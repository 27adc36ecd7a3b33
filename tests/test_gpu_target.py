"""Target `gpu` on a machine without one: the gated model suite compiles at fp32 and fp16 to a
strongly typed engine graph and verifies through the emulated runner (which rounds like fp16,
not silently fp32), int8 builds from QONNX scales, logic networks run bit for bit through the
Triton kernels under the interpreter."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

import gatec
from gatec.ir.netlist import Netlist
from gatec.targets.gpu.logic import TritonLogicRunner, level_plan
from gatec.targets.gpu.typed import tensor_types, untyped_tensors
from test_c_target import logic_onnx, random_dag, random_layers
from test_gated import CASES, random_inputs, torch_outputs

ROOT = Path(__file__).resolve().parents[1]


def compile_gated(name, precision, tmp_path=None):
    make, shapes, batch_axis, _ = CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    out = None if tmp_path is None else tmp_path / f"{name}_{precision}"
    art = gatec.compile(model, "gpu", out, input_shapes=shapes(2, 10), batch_axis=batch_axis, samples=64,
                        options={"precision": precision})
    return model, art


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", CASES)
def test_gated_suite_builds_a_strongly_typed_engine_graph_and_verifies(name, precision):
    model, art = compile_gated(name, precision)
    v, details = art.manifest["verification"], art.manifest["details"]
    assert v["ok"], v
    assert details["precision"] == precision and details["runner"] == "emulated" and art.label == f"emulated {precision}"
    assert all(o["runner"] == f"emulated {precision}" for o in v["outputs"])
    graph = onnx.load(str(art.path / "engine.onnx"))
    onnx.checker.check_model(graph, full_check=True)
    assert untyped_tensors(graph) == []
    types = tensor_types(graph)
    assert all(types[i.name] == TensorProto.FLOAT for i in graph.graph.input)  # the interface stays fp32
    half = [n for n in graph.graph.node if n.op_type in ("Gemm", "MatMul", "Conv") and types[n.output[0]] == 10]
    if precision == "fp16":
        assert half or name.startswith(("gru", "lstm")), "no matrix product runs in fp16"
        assert TensorProto.FLOAT16 in set(types.values())
    else:
        assert TensorProto.FLOAT16 not in set(types.values())
    batch_axis = CASES[name][2]
    for spec in art.manifest["inputs"]:
        p = details["profile"][spec["name"]]
        assert p["opt"] == spec["shape"] and p["min"][batch_axis] == 1 and p["max"][batch_axis] == 4096
    assert "--stronglyTyped" in (art.path / "README.md").read_text()
    # the stated tolerance holds on new inputs too, against PyTorch itself
    _, shapes, _, _ = CASES[name]
    arrays = random_inputs(shapes(5, 13), 7)
    for got, want in zip(art.run(arrays), torch_outputs(model, arrays)):
        t = art.tolerance
        assert np.all(np.abs(got - want) <= t.atol + t.scale_rtol * np.abs(want).max() + t.rtol * np.abs(want))


def test_fp16_tolerance_is_derived_and_the_emulation_is_not_fp32():
    _, art16 = compile_gated("glu_two_linear_over_sequence", "fp16")
    _, art32 = compile_gated("glu_two_linear_over_sequence", "fp32")
    t16, t32 = art16.tolerance, art32.tolerance
    assert 2.0 ** -11 < t16.scale_rtol < 0.05 and t32.scale_rtol < 1e-5  # from the unit roundoff and the depth
    e16, e32 = art16.manifest["verification"]["max_abs_err"], art32.manifest["verification"]["max_abs_err"]
    assert e16 > 50 * e32  # fp16 rounding really happens in the emulated run


def test_emulated_fp16_rounds_each_op_like_fp16():
    """x * w + b: the engine stores x, x*w and the sum in fp16; the emulation must give numpy's
    fp16 arithmetic (each op correctly rounded) bit for bit."""
    class Affine(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.linspace(-3.1, 2.7, 16))
            self.b = torch.nn.Parameter(torch.linspace(0.013, 1.9, 16))

        def forward(self, x):
            return x * self.w + self.b
    model = Affine().eval()
    art = gatec.compile(model, "gpu", input_shapes=[[1, 16]], options={"precision": "fp16"})
    x = np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32) * 3
    w, b = (p.detach().numpy().astype(np.float16) for p in (model.w, model.b))
    want = (x.astype(np.float16) * w + b).astype(np.float32)
    np.testing.assert_array_equal(art.run(x)[0], want)
    assert not np.array_equal(want, x * model.w.detach().numpy() + model.b.detach().numpy())


def test_router_of_a_mixture_of_experts_stays_fp32():
    _, art = compile_gated("mixture_of_experts_top2", "fp16")
    graph = onnx.load(str(art.path / "engine.onnx"))
    types = tensor_types(graph)
    producers = {o: n for n in graph.graph.node for o in n.output}
    topk = next(n for n in graph.graph.node if n.op_type == "TopK")
    router = producers[topk.input[0]]
    while router.op_type == "Cast":  # the conversion's casts at the edges of fp32 islands
        router = producers[router.input[0]]
    assert router.op_type == "Gemm" and types[router.output[0]] == TensorProto.FLOAT
    assert router.name in art.manifest["details"]["fp32_nodes"]


def brevitas_mlp(path):
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    torch.manual_seed(0)
    model = torch.nn.Sequential(qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
                                qnn.QuantLinear(16, 24, bias=True, weight_bit_width=8),
                                qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
                                qnn.QuantLinear(24, 5, bias=True, weight_bit_width=6)).eval()
    x = torch.randn(1, 16)
    export_qonnx(model, x, str(path), dynamo=False, input_names=["x"], output_names=["y"],
                 dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    return model


def test_int8_engine_from_brevitas_qonnx(tmp_path):
    model = brevitas_mlp(tmp_path / "mlp.onnx")
    art = gatec.compile(str(tmp_path / "mlp.onnx"), "gpu", tmp_path / "int8", options={"precision": "int8"})
    assert art.manifest["verification"]["ok"]
    graph = onnx.load(str(art.path / "engine.onnx"))
    onnx.checker.check_model(graph, full_check=True)
    assert untyped_tensors(graph) == [] and not any(n.domain for n in graph.graph.node)
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.graph.initializer}
    q = [n for n in graph.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(q) >= 4
    for n in q:  # symmetric int8: zero point 0 everywhere
        assert consts[n.input[2]].dtype == np.int8 and not consts[n.input[2]].any()
    x = np.random.default_rng(3).standard_normal((300, 16)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(art.run(x)[0] - want).max() <= 1e-4 * (1 + np.abs(want).max())  # Brevitas's own forward
    # at fp16 the quantizers, and the products they round, stay fp32 (an fp16 sum would move values
    # across rounding steps); what no quantizer reads runs in fp16
    art16 = gatec.compile(str(tmp_path / "mlp.onnx"), "gpu", tmp_path / "fp16", options={"precision": "fp16"})
    assert art16.manifest["verification"]["ok"]
    graph = onnx.load(str(art16.path / "engine.onnx"))
    types = tensor_types(graph)
    assert all(types[n.output[0]] == TensorProto.FLOAT for n in graph.graph.node if n.op_type == "Round")
    assert any(types[n.output[0]] == TensorProto.FLOAT16 for n in graph.graph.node if n.op_type == "Gemm")


def test_int8_from_gatec_quantize_and_its_refusals(cli, tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    torch.save(model, tmp_path / "mlp.pt")
    x = np.random.default_rng(0).standard_normal((256, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    for bits in (7, 8):
        code, _, err = cli("quantize", str(tmp_path / "mlp.pt"), "--input-shape", "1,12", "--data", str(tmp_path / "x.npy"),
                           "--act-bits", str(bits), "-o", str(tmp_path / f"q{bits}.onnx"))
        assert code == 0, err
    code, out, err = cli("compile", str(tmp_path / "q7.onnx"), "--target", "gpu", "--precision", "int8",
                         "-o", str(tmp_path / "gpu7"))
    assert code == 0, err
    assert "emulated int8" in out and "PASS" in out
    # 8-bit unsigned activations (after the ReLU) do not fit int8: refused by name, in one line
    code, _, err = cli("compile", str(tmp_path / "q8.onnx"), "--target", "gpu", "--precision", "int8",
                       "-o", str(tmp_path / "gpu8"))
    assert code == 2 and "unsigned 8-bit" in err and "--act-bits 7" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("compile", str(tmp_path / "mlp.pt"), "--input-shape", "1,12", "--target", "gpu",
                       "--precision", "int8", "-o", str(tmp_path / "f"))
    assert code == 2 and "needs a quantized model" in err
    code, _, err = cli("compile", str(tmp_path / "mlp.pt"), "--input-shape", "1,12", "--target", "gpu",
                       "--precision", "bf16", "-o", str(tmp_path / "f"))
    assert code == 2 and "fp32, fp16, int8" in err
    assert not (tmp_path / "gpu8").exists() and not (tmp_path / "f").exists()


# ------------------------------------------------------------ logic networks: the Triton kernels

@pytest.mark.parametrize("seed", range(3))
def test_triton_kernels_on_unlayered_netlists(seed):
    """Pruned netlists (wires, constants, dead gates, gates reading any earlier node)."""
    net = random_dag(np.random.default_rng(seed), 20, 300, 4)
    bits = np.random.default_rng(seed + 10).integers(0, 2, (200 + 37 * seed, 20)).astype(np.uint8)
    runner = TritonLogicRunner(level_plan(net))
    np.testing.assert_array_equal(runner.counts(bits), net.evaluate(bits))


def test_logic_network_compiles_and_verifies_bit_exactly(tmp_path):
    rng = np.random.default_rng(1)
    layers = random_layers(rng, 30, [200, 200, 120])
    path = logic_onnx(tmp_path / "net.onnx", 30, layers, 4, 3.0)
    art = gatec.compile(str(path), "gpu", tmp_path / "gpu", samples=300)
    v = art.manifest["verification"]
    assert v["ok"] and v["max_abs_err"] == 0 and art.tolerance.exact
    assert v["outputs"][0]["runner"] == "Triton interpreter"
    net = Netlist.from_layers(30, [(l.in_a, l.in_b, l.ops) for l in layers], 4, 3.0)
    bits = rng.integers(0, 2, (129, 30)).astype(np.float32)
    np.testing.assert_array_equal(art.run(bits)[0], np.divide(net.evaluate(bits.astype(np.uint8)), np.float32(3.0), dtype=np.float32))


def test_logic_network_with_an_encoder(tmp_path):
    from test_c_target import encoder_model
    model, fit = encoder_model("thermometer")
    art = gatec.compile(model, "gpu", tmp_path / "gpu", input_shapes=[[1, 16]], data=[fit])
    assert art.manifest["verification"]["ok"]
    with torch.no_grad():
        want = model(torch.from_numpy(fit)).numpy()
    np.testing.assert_array_equal(art.run(fit)[0], want)


# ------------------------------------------------------------ commands

def test_targets_lists_gpu_with_what_this_machine_does(cli):
    code, out, _ = cli("targets")
    line = next(l for l in out.splitlines() if l.startswith("gpu"))
    assert code == 0 and "this machine:" in line and ("no GPU" in line or "NVIDIA GPU" in line)


def test_verify_and_bench_cpu_and_gpu_side_by_side(cli, tmp_path):
    torch.manual_seed(0)
    torch.save(CASES["gated_residual"][0]().eval(), tmp_path / "m.pt")
    code, out, err = cli("verify", str(tmp_path / "m.pt"), "--input-shape", "1,10,8", "--targets", "cpu,gpu",
                         "--samples", "32")
    assert code == 0, err
    rows = [l for l in out.splitlines() if l.startswith(("cpu", "gpu"))]
    assert len(rows) == 2 and rows[1].startswith("gpu (emulated fp16)") and all("PASS" in r for r in rows)
    code, out, err = cli("bench", str(tmp_path / "m.pt"), "--input-shape", "1,10,8", "--targets", "cpu,gpu")
    assert code == 0, err
    assert any(l.startswith("gpu (emulated fp16)") for l in out.splitlines())


def test_gpu_benchmark_needs_a_gpu_and_says_so():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the benchmark would run in full (benchmarks/bench_gpu.py)")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")], capture_output=True, text=True)
    assert done.returncode == 0 and "needs a GPU" in done.stdout + done.stderr
