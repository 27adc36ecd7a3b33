"""Post-training quantization (gatec.passes.ptq_common), Hessian-aware mixed precision
(gatec.quantize.hawq) and the `gatec quantize` command."""
import itertools
import json

import numpy as np
import onnx
import pytest
import torch
from qonnx.custom_op.general.intquant import int_quant

from gatec.passes import ptq_common as ptq
from gatec.quantize import hawq
from gatec.frontend import load
from gatec.ir.reference import onnx_reference


def mlp(sizes=(16, 64, 32, 32, 5), seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).eval()


@pytest.mark.parametrize("bits,signed,narrow", [(b, s, n) for b in (2, 3, 4, 8, 12) for s in (0, 1) for n in (0, 1)])
def test_quant_is_qonnx_quant(bits, signed, narrow):
    x = np.random.default_rng(bits).normal(0, 3, 5000).astype(np.float32)
    x[:4] = [0.5, 1.5, -2.5, 2.5]  # ties: half to even
    scale = np.float32(2.0 ** -2)
    ours = ptq.quant(x, scale, bits, bool(signed), bool(narrow))
    theirs = int_quant(x, scale, np.float32(0), np.float32(bits), signed, narrow, "ROUND")
    np.testing.assert_array_equal(ours, theirs)


def test_quantized_graph_runs_in_qonnx_and_weights_sit_on_their_grid():
    model = mlp()
    x = np.random.default_rng(0).normal(size=(512, 16)).astype(np.float32)
    ir = load(model, [[1, 16]]).ir
    errors = {}
    for bits in (8, 4):
        q, rows = ptq.quantize(ir, bits, 8, [x])
        assert [r["weight_bits"] for r in rows] == [bits] * 4
        quant_nodes = [n for n in q.model.graph.node if n.op_type == "Quant"]
        assert len(quant_nodes) == 4 * 3  # weight, bias, input of each layer
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.model.graph.initializer}
        for n in quant_nodes:
            scale = float(inits[n.input[1]])
            assert np.log2(scale) == np.round(np.log2(scale))  # a power of two
            if n.input[0].endswith("weight"):
                w = inits[n.input[0]]
                wq = ptq.quant(w, scale, bits, True, True)
                assert len(np.unique(wq)) <= 2 ** bits - 1
        y = onnx_reference(q.model)([x])[0]
        ref = model(torch.from_numpy(x)).detach().numpy()
        errors[bits] = np.abs(y - ref).max()
        assert (y.argmax(1) == ref.argmax(1)).mean() > (0.97 if bits == 8 else 0.6)
    assert errors[4] > errors[8] > 0


def test_per_channel_scales_follow_each_output_channel():
    w = np.random.default_rng(1).normal(size=(8, 5)).astype(np.float32) * np.arange(1, 9)[:, None]
    s = ptq.weight_scale(w, 6, 0, True)
    assert s.shape == (8, 1)
    assert (np.diff(s.ravel()) >= 0).all() and s.ravel()[-1] > s.ravel()[0]
    err_channel = ((ptq.quantize_weight(w, 6, 0) - w) ** 2).sum()
    err_tensor = ((ptq.quantize_weight(w, 6, None) - w) ** 2).sum()
    assert err_channel < err_tensor


def test_conv_and_gru_layers_are_found_and_quantized():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(4, 6, 3)
            self.gru = torch.nn.GRU(6, 8, batch_first=True)
            self.fc = torch.nn.Linear(8, 3)

        def forward(self, x):
            h = torch.relu(self.conv(x)).transpose(1, 2)
            return self.fc(self.gru(h)[0][:, -1])
    torch.manual_seed(0)
    model = Net().eval()
    ir = load(model, [[1, 4, 12]]).ir
    layers = ptq.weight_layers(ir)
    assert [l.op for l in layers] == ["Conv", "GRU", "Gemm"]
    assert layers[0].macs == 6 * 10 * 4 * 3
    x = np.random.default_rng(2).normal(size=(64, 4, 12)).astype(np.float32)
    q, rows = ptq.quantize(ir, 8, 8, [x], per_channel=True)
    y = onnx_reference(q.model)([x])[0]
    ref = model(torch.from_numpy(x)).detach().numpy()
    assert 0 < np.abs(y - ref).max() < 0.1
    assert rows[1]["params"] == 3 * 8 * 6 + 3 * 8 * 8


def test_allocation_is_the_exact_optimum():
    rng = np.random.default_rng(3)
    for trial in range(20):
        sens = [hawq.Sensitivity(f"l{i}", f"m{i}", 10, int(rng.integers(10, 1000)), 1.0,
                                 {b: float(rng.random() * 2.0 ** -b) for b in (2, 4, 6, 8)}) for i in range(4)]
        budget = float(rng.uniform(0.4, 1.0)) * sum(hawq.bops(s, 8, 8) for s in sens)
        best = min((sum(s.omega[b] for s, b in zip(sens, combo)), combo)
                   for combo in itertools.product((2, 4, 6, 8), repeat=4)
                   if sum(hawq.bops(s, b, 8) for s, b in zip(sens, combo)) <= budget)
        chosen = hawq.allocate(sens, lambda s, b: hawq.bops(s, b, 8), budget)
        assert sum(s.omega[chosen[s.layer]] for s in sens) == pytest.approx(best[0])


def test_hutchinson_trace_matches_the_closed_form():
    # loss = mean((x W^T - y)^2) over B samples and N outputs: H = (2 / (B N)) I_N (x) X^T X,
    # so trace(H) / (N K) = 2 sum ||x_b||^2 / (B N K)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4, bias=False))
    x = np.random.default_rng(4).normal(size=(200, 6)).astype(np.float32)
    y = np.random.default_rng(5).normal(size=(200, 4)).astype(np.float32)
    traces = hawq.hessian_traces(model, [x], y, {"0": [model[0].weight]}, iterations=200)
    exact = 2 * (x.astype(np.float64) ** 2).sum() / (200 * 4 * 6)
    assert traces["0"] == pytest.approx(exact, rel=0.1)


def test_quantize_command_mixed_precision(cli, tmp_path):
    model = mlp()
    rng = np.random.default_rng(6)
    x = rng.normal(size=(600, 16)).astype(np.float32)
    labels = model(torch.from_numpy(x)).argmax(1).numpy()
    torch.save(model, tmp_path / "mlp.pt")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    out = tmp_path / "mlp_q.onnx"
    code, stdout, stderr = cli("quantize", tmp_path / "mlp.pt", "--input-shape", "1,16", "--data", tmp_path / "x.npy",
                               "--labels", tmp_path / "y.npy", "--budget-bops", "70%", "-o", out)
    assert code == 0, stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert report["bops"] <= 0.7 * report["bops_uniform8"]
    bits = [l["weight_bits"] for l in report["layers"]]
    assert len(set(bits)) > 1 and all("hessian_trace" in l for l in report["layers"])
    assert report["evaluation"]["accuracy_float"] == 1.0  # the labels are the float model's own
    assert report["evaluation"]["accuracy_quantized"] > 0.9
    assert "of uniform 8 bits" in stdout
    q = onnx.load(str(out))
    assert sum(n.op_type == "Quant" for n in q.graph.node) == 12


def test_quantize_command_errors(cli, tmp_path):
    torch.save(mlp(), tmp_path / "mlp.pt")
    code, _, stderr = cli("quantize", tmp_path / "mlp.pt", "--input-shape", "1,16", "--budget-bops", "lots",
                          "-o", tmp_path / "q.onnx")
    assert code == 2 and "bad BOPs budget 'lots'" in stderr
    code, _, stderr = cli("quantize", tmp_path / "mlp.pt", "--input-shape", "1,16", "--budget-bops", "1",
                          "-o", tmp_path / "q.onnx")
    assert code == 2 and "below the cheapest allocation" in stderr
    assert not (tmp_path / "q.onnx").exists()


def test_mixed_precision_on_the_jet_shaped_mlp_saves_30_percent_bops_within_half_a_point(tmp_path):
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("mlp_mixed_precision", Path(__file__).parent.parent / "examples"
                                                  / "mlp_mixed_precision.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.run(quick=True, budget=70, out=tmp_path, log=lambda *a: None)
    rows = {r["variant"]: r for r in result["rows"]}
    for name in ("PTQ mixed (HAWQ)", "QAT mixed (HAWQ)"):
        assert rows[name]["bops_percent"] <= 70.0
        assert len(set(rows[name]["weight_bits"])) > 1
    assert rows["QAT mixed (HAWQ)"]["loss_points"] <= 0.5
    assert rows["PTQ w8a8"]["loss_points"] <= 1.0
    # the allocation beats spending the same bits blindly: uniform 4-bit weights lose more
    assert rows["PTQ w4a8"]["loss_points"] > rows["PTQ mixed (HAWQ)"]["loss_points"]
    assert (tmp_path / "mixed_precision.png").stat().st_size > 0


def test_quantized_model_compiles_to_cpu_and_matches_qonnx(cli, tmp_path):
    torch.save(mlp(), tmp_path / "mlp.pt")
    x = np.random.default_rng(7).normal(size=(300, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, _, stderr = cli("quantize", tmp_path / "mlp.pt", "--input-shape", "1,16", "--data", tmp_path / "x.npy",
                          "--bits", "6", "--per-channel", "-o", tmp_path / "q.onnx")
    assert code == 0, stderr
    code, stdout, stderr = cli("compile", tmp_path / "q.onnx", "--target", "cpu", "-o", tmp_path / "cpu",
                               "--data", tmp_path / "x.npy")
    assert code == 0, stderr
    # the same model quantized by the pass inside compile: held to the quantized graph
    code, stdout, stderr = cli("compile", tmp_path / "mlp.pt", "--input-shape", "1,16", "--passes", "quantize:6",
                               "--target", "cpu", "-o", tmp_path / "cpu_pass", "--data", tmp_path / "x.npy")
    assert code == 0, stderr
    manifest = json.loads((tmp_path / "cpu_pass" / "manifest.json").read_text())
    assert manifest["passes"][0]["name"] == "quantize:6" and manifest["passes"][0]["max_abs_err"] > 0
    assert manifest["verification"]["max_abs_err"] < manifest["passes"][0]["max_abs_err"] / 10



def test_mixed_precision_covers_recurrent_layers():
    from gatec.nn import RecurrentClassifier
    from gatec.quantize import quantize_model
    torch.manual_seed(0)
    model = RecurrentClassifier(8, 16, 4).eval()
    x = np.random.default_rng(9).normal(size=(200, 6, 8)).astype(np.float32)
    source = load(model, [[1, 6, 8]])
    qir, report = quantize_model(source, [x], budget_bops="60%")
    ops = [l["op"] for l in report["layers"]]
    assert ops == ["GRU", "Gemm"]
    assert report["layers"][0]["params"] == 3 * 16 * (8 + 16) and report["layers"][0]["hessian_trace"] > 0
    assert report["bops"] <= 0.6 * report["bops_uniform8"]
    assert report["evaluation"]["argmax_agreement"] > 0.9


def test_mixed_precision_names_weights_autograd_cannot_reach(tmp_path):
    from gatec.errors import GatecError
    from gatec.nn import RecurrentClassifier
    from gatec.quantize import quantize_model
    torch.jit.save(torch.jit.script(RecurrentClassifier(8, 16, 4).eval()), tmp_path / "gru.pt")
    x = np.random.default_rng(9).normal(size=(50, 6, 8)).astype(np.float32)
    with pytest.raises(GatecError, match="does not reach the weights of 'rnn'"):
        quantize_model(load(tmp_path / "gru.pt", [[1, 6, 8]]), [x], budget_bops="60%")


def test_mixed_precision_qonnx_goes_to_hls4ml(cli, tmp_path):
    # power-of-two scales and a quantized bias: every tensor maps onto an ap_fixed type
    model = mlp()
    x = np.random.default_rng(8).normal(size=(400, 16)).astype(np.float32)
    torch.save(model, tmp_path / "mlp.pt")
    np.save(tmp_path / "x.npy", x)
    code, _, stderr = cli("quantize", tmp_path / "mlp.pt", "--input-shape", "1,16", "--data", tmp_path / "x.npy",
                          "--budget-bops", "65%", "-o", tmp_path / "q.onnx")
    assert code == 0, stderr
    code, _, stderr = cli("compile", tmp_path / "q.onnx", "--target", "fpga", "-o", tmp_path / "fpga",
                          "--data", tmp_path / "x.npy")
    assert code == 0, stderr
    manifest = json.loads((tmp_path / "fpga" / "manifest.json").read_text())
    assert manifest["verification"]["ok"] and manifest["verification"]["max_abs_err"] <= 1e-4
    assert manifest["verification"]["argmax_agreement"] == 1.0


def test_quant_form_option_writes_quantize_linear(cli, tmp_path):
    torch.save(mlp(), tmp_path / "mlp.pt")
    x = np.random.default_rng(10).normal(size=(200, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert cli("quantize", tmp_path / "mlp.pt", "--input-shape", "1,16", "--data", tmp_path / "x.npy",
               "-o", tmp_path / "q.onnx")[0] == 0
    for form, op in (("float", "Round"), ("qdq", "QuantizeLinear")):
        code, _, stderr = cli("compile", tmp_path / "q.onnx", "--target", "cpu", "--quant-form", form,
                              "-o", tmp_path / form, "--data", tmp_path / "x.npy")
        assert code == 0, stderr
        model = onnx.load(str(tmp_path / form / "model.onnx"))
        ops = {n.op_type for n in model.graph.node}
        assert op in ops and "Quant" not in ops
        assert json.loads((tmp_path / form / "manifest.json").read_text())["verification"]["max_abs_err"] == 0
    # int8 weights within +-64 (larger ones as uint8): no CPU's u8 x s8 kernel can saturate their pair sums,
    # as AVX2 without VNNI did (vpmaddubsw), which put this model 0.023 off there
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and all(np.abs(w.astype(np.int64)).max() <= 64 for w in weights)
    assert any(t.data_type == onnx.TensorProto.UINT8 and t.dims for t in model.graph.initializer)


def test_inspect_counts_a_quantized_model_like_its_float_model():
    from gatec.ir.summary import inspect_ir
    x = np.random.default_rng(11).normal(size=(100, 16)).astype(np.float32)
    ir = load(mlp(), [[1, 16]]).ir
    q, _ = ptq.quantize(ir, 6, 8, [x])
    a, b = inspect_ir(ir), inspect_ir(q)
    assert (b["parameters"], b["macs"]) == (a["parameters"], a["macs"]) and a["macs"] == 16 * 64 + 64 * 32 + 32 * 32 + 32 * 5
