"""gatec.qat: the fake quantizer is QONNX `Quant` exactly, prepare() swaps what it should,
QAT at 8 bits keeps the digits accuracy, and fake-quantized PyTorch, qonnx's executor on the
exported QONNX and ONNX Runtime on the cpu target's lowering agree on 1,000 inputs."""
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from qonnx.custom_op.general.quant import quant as qonnx_quant
from torch import nn

import gatec
import gatec.qat as qat
from gatec.nn import GLU, GatedConv1d, GatedResidual, MixtureOfExperts, RecurrentClassifier, SwiGLU

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("bits,signed,narrow", [(2, True, False), (4, False, False), (8, True, True),
                                                (8, False, True), (12, True, False), (1, True, False)])
def test_fake_quant_is_qonnx_quant(bits, signed, narrow):
    rng = np.random.default_rng(bits)
    for scale, zeropt in [(2.0 ** -5, 0.0), (0.0371, 0.0), (0.05, 3.0 if not signed else -2.0)]:
        x = rng.standard_normal(4000).astype(np.float32) * 2
        x[:200] = (np.arange(200, dtype=np.float32) - 100 + 0.5) * np.float32(scale)  # ties: half to even
        want = qonnx_quant(x, np.float32(scale), np.float32(zeropt), np.float32(bits), signed, narrow, "ROUND")
        got = qat.fake_quant(torch.from_numpy(x), scale, bits, signed, narrow, zeropt).numpy()
        np.testing.assert_array_equal(got, want.astype(np.float32))


def test_straight_through_gradient_stops_where_clipped():
    x = torch.tensor([-3.0, -0.3, 0.0, 0.26, 0.9, 5.0], requires_grad=True)
    qat.fake_quant(x, 0.25, 3, signed=True).sum().backward()  # range [-4, 3] * 0.25 = [-1, 0.75]
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_scales_are_powers_of_two_that_do_not_clip():
    for max_abs in [0.01, 0.3, 1.0, 1.7, 100.0]:
        for bits, signed in [(4, True), (8, False), (6, True)]:
            s = qat.pow2_scale(max_abs, bits, signed)
            top = qat.int_range(bits, signed, False)[1]
            assert np.log2(s) == int(np.log2(s)) and max_abs / s <= top < 2 * max_abs / s
    act = qat.ActQuant(8, momentum=0.5).train()
    act(torch.tensor([0.5, 1.0]))
    act(torch.tensor([0.5, 3.0]))
    assert float(act.running_max) == 2.0 and not bool(act.signed)  # EMA of the max; never negative
    assert act.scale() == 2.0 ** -6  # 2 / 255 rounded up to a power of two


def quantizers(model):
    return {n: m.bits for n, m in model.named_modules() if isinstance(m, qat.ActQuant)}


def test_prepare_swaps_layers_and_honours_overrides():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), GLU(16, 8, form="two_linear"), MixtureOfExperts(16, 8),
                          GatedResidual(16, 8), nn.Linear(16, 4))
    config = qat.QATConfig(weight_bits=6, act_bits=7, layers={"5": {"weight_bits": 3, "act_bits": 5},
                                                              "4.*": None})
    q = qat.prepare(model, config)
    assert type(model[0]) is nn.Linear  # the original is left as it was
    assert isinstance(q[0], qat.QuantLinear) and isinstance(q[1], qat.QuantAct)
    assert isinstance(q[2].value, qat.QuantLinear) and isinstance(q[3].experts[1][0], qat.QuantLinear)
    assert isinstance(q[3].experts[1][1], qat.QuantAct) and isinstance(q[3].router, qat.QuantLinear)
    assert type(q[4].f[0]) is nn.Linear and type(q[4].f[1]) is nn.GELU  # left in float by the override
    assert q[5].weight_bits == 3 and quantizers(q)["5.output_quant"] == 5
    assert q[0].weight_bits == 6 and quantizers(q)["0.input_quant"] == 7
    torch.testing.assert_close(q[0].weight, model[0].weight)
    x = torch.randn(32, 8)
    q.train()(x)
    q.eval()
    w = q[5].qweight(q[5].weight)  # 3-bit narrow weights: at most 7 levels
    assert len(torch.unique(w)) <= 7
    lsb = qat.output_scales(q)["5.output_quant"]
    y = q(x)
    assert torch.equal(torch.round(y / lsb) * lsb, y)  # the output is on the quantizer's grid


@pytest.fixture(scope="module")
def digits_rows():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train_qat_digits
    finally:
        sys.path.remove(str(EXAMPLES))
    return train_qat_digits


def test_qat_digits_8_bits_keeps_accuracy_and_three_engines_agree(digits_rows, tmp_path):
    rows = digits_rows.main(["--bits", "8", "--out", str(tmp_path), "--json", str(tmp_path / "qat.json")])
    assert [r["model"] for r in rows] == ["gru", "mlp"]
    for r in rows:
        assert r["float"] > 0.9, r
        assert r["bits"][8] >= r["float"] - 0.01, r  # loses at most one point
        a = r["agreement_8bit"]
        assert a["inputs"] == 1000
        assert a["torch_vs_qonnx_lsb"] <= 1 and a["qonnx_vs_ort_lsb"] <= 1 and a["torch_vs_ort_lsb"] <= 1, a
        assert a["argmax_agreement"] >= 0.99
    art = gatec.compile(str(tmp_path / "gru_qat8.onnx"), target="cpu", output=str(tmp_path / "gru_cpu"),
                        input_shapes=[[1, 8, 8]])
    v = art.manifest["verification"]
    assert v["ok"] and v["max_abs_err"] <= rows[0]["agreement_8bit"]["output_lsb"]
    shapes = {tuple(s[0]) for c in art.checks for s in c.shapes}
    assert any(s[1] != 8 for s in shapes)  # also checked at another sequence length


class GatedMix(nn.Module):
    """Gated convolution, an LSTM and a SwiGLU head: Conv1d, LSTM, Linear and SiLU quantized."""

    def __init__(self):
        super().__init__()
        self.conv = GatedConv1d(4, 8)
        self.rnn = RecurrentClassifier(8, 12, 6, cell="lstm", layers=2)
        self.ffn = SwiGLU(6, 8, form="module")

    def forward(self, x):  # x: (N, 4, T)
        return self.ffn(self.rnn(self.conv(x).transpose(1, 2)))


@pytest.mark.parametrize("bits", [8, 4])
def test_gated_blocks_export_and_compile_exactly(bits, tmp_path):
    torch.manual_seed(bits)
    q = qat.prepare(GatedMix(), qat.QATConfig(weight_bits=bits, act_bits=bits))
    q.train()
    for _ in range(3):
        q(torch.randn(16, 4, 10))
    q.eval()
    path = tmp_path / "mix.onnx"
    model = qat.export(q, path, torch.randn(2, 4, 10), dynamic_axes={"input": {0: "n", 2: "t"}, "output": {0: "n"}})
    quant_nodes = [n for n in model.graph.node if n.op_type == "Quant"]
    assert quant_nodes and all(n.domain == "qonnx.custom_op.general" for n in quant_nodes)
    inits = {t.name for t in model.graph.initializer}
    assert all(i in inits for n in quant_nodes for i in n.input[1:])  # scale, zero point, bit width
    assert {"LSTM", "Conv"} <= {n.op_type for n in model.graph.node}
    art = gatec.compile(str(path), target="cpu", output=str(tmp_path / "cpu"), input_shapes=[[3, 4, 10]])
    assert art.manifest["verification"]["ok"]
    x = np.random.default_rng(0).standard_normal((50, 4, 7)).astype(np.float32)
    with torch.no_grad():
        want = q(torch.from_numpy(x)).numpy()
    (got,) = art.run(x)
    lsb = qat.output_scales(q)["ffn.w2.output_quant"]
    assert np.abs(got - want).max() <= lsb


def test_compile_a_prepared_module_directly(tmp_path):
    torch.manual_seed(0)
    q = qat.prepare(RecurrentClassifier(8, 16, 10, cell="gru"))
    q.train()(torch.rand(64, 8, 8))
    art = gatec.compile(q.eval(), target="cpu", output=str(tmp_path / "m"), input_shapes=[[1, 8, 8]])
    assert art.manifest["verification"]["ok"]
    assert art.tolerance.atol == pytest.approx(qat.output_scales(q)["head.output_quant"], rel=1e-5)
    model = onnx.load(str(tmp_path / "m" / "model.onnx"))
    assert not any(n.domain for n in model.graph.node)  # no QONNX nodes left for ONNX Runtime


def test_export_refuses_an_unprepared_model(tmp_path):
    with pytest.raises(ValueError, match="prepare"):
        qat.export(nn.Linear(3, 2), tmp_path / "x.onnx", torch.randn(1, 3))


def test_bidirectional_gru_with_a_given_state_exports_exactly(tmp_path):
    class WithState(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(5, 6, num_layers=2, bidirectional=True, batch_first=True)

        def forward(self, x, h0):
            y, h = self.rnn(x, h0)
            return y, h

    torch.manual_seed(3)
    q = qat.prepare(WithState(), qat.QATConfig(weight_bits=5, act_bits=6, bias_bits=None))
    x, h0 = torch.randn(8, 7, 5), torch.rand(4, 8, 6) - 0.5
    q.train()(x, h0)
    q.eval()
    model = qat.export(q, tmp_path / "gru2.onnx", (x, h0), dynamic_axes={"input_0": {0: "n", 1: "t"},
                                                                       "input_1": {1: "n"}})
    from gatec.ir.reference import qonnx_reference
    from gatec.ir.runtime import ort_session
    from gatec.targets.cpu.quant import lower_qonnx
    xs, hs = np.random.default_rng(0).standard_normal((20, 9, 5)).astype(np.float32), \
        (np.random.default_rng(1).random((4, 20, 6)) - 0.5).astype(np.float32)
    want = qonnx_reference(model)([xs, hs])
    session = ort_session(lower_qonnx(model), failure="lowered")
    got = session.run(None, {"input_0": xs, "input_1": hs})
    with torch.no_grad():
        fake = [t.numpy() for t in q(torch.from_numpy(xs), torch.from_numpy(hs))]
    scales = qat.output_scales(q)
    for w, g, f, lsb in zip(want, got, fake, [scales["rnn.output_quant"], scales["rnn.state_quant"]]):
        assert np.abs(w - g).max() <= lsb and np.abs(w - f).max() <= lsb
        assert np.array_equal(np.round(g / lsb) * lsb, g)


def test_a_saved_qat_lstm_loads_and_compiles(tmp_path):
    torch.manual_seed(1)
    q = qat.prepare(RecurrentClassifier(8, 16, 10, cell="lstm"))
    q.train()(torch.rand(32, 8, 8))
    torch.save(q.eval(), tmp_path / "q.pt")  # gatec.qat's classes are trusted like gatec.nn's
    with pytest.raises(RuntimeError, match="input size"):
        q(torch.rand(2, 8, 5))
    art = gatec.compile(str(tmp_path / "q.pt"), target="cpu", output=str(tmp_path / "cpu"), input_shapes=[[1, 8, 8]])
    assert art.manifest["verification"]["ok"]
    assert art.manifest["inputs"][0]["dynamic_axes"] == [0, 1]  # batch and time, not features


def test_export_takes_a_numpy_example_as_one_input(tmp_path):
    model = qat.prepare(nn.Sequential(nn.Linear(16, 4)))
    model(torch.randn(8, 16))
    exported = qat.export(model, tmp_path / "m.onnx", np.zeros((1, 16), np.float32))
    dims = exported.graph.input[0].type.tensor_type.shape.dim
    assert len(exported.graph.input) == 1 and len(dims) == 2 and dims[1].dim_value == 16
