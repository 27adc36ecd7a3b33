"""Fixed-point QAT (gatec.qat.prepare_fixed): the model's forward is what hls4ml's C simulation
computes, bit for bit. Each model is compiled to `fpga` with no precision option (the model
declares its types), verified by compile with tolerance zero, and run again on 1,000 fresh
inputs at another sequence length, where every output must equal the PyTorch forward."""
import itertools

import numpy as np
import pytest
import torch
from torch import nn

import gatec
from gatec.qat import FixedConfig, prepare_fixed
from gatec.qat.fixed import FixedType

SAT8 = "ap_fixed<8,4,AP_RND,AP_SAT>"


class Recurrent(nn.Module):
    """A GRU or LSTM read at its last step by a Linear, or its whole output sequence."""

    def __init__(self, cell, layers, output, n_in=4, hidden=8, classes=3):
        super().__init__()
        self.rnn = (nn.GRU if cell == "gru" else nn.LSTM)(n_in, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)
        self.output = output

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[:, -1]) if self.output == "last" else y


def fixed_model(cell, layers, output, precision, seed=0):
    torch.manual_seed(seed)
    model = prepare_fixed(Recurrent(cell, layers, output), FixedConfig(precision))
    return model.eval()


def check_equal_to_csim(cell, layers, output, precision, backend, tmp_path):
    model = fixed_model(cell, layers, output, precision)
    art = gatec.compile(model, "fpga", tmp_path / "fpga", input_shapes=[[1, 6, 4]], samples=200,
                        options={"backend": backend})
    v = art.manifest["verification"]
    assert v["ok"] and v["max_abs_err"] == 0 and art.tolerance.exact, v
    x = np.random.default_rng(7).standard_normal((1000, 9, 4)).astype(np.float32) * 2
    got = art.run(x)[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want)) > 4 and want.std() > 0.02  # not a constant or saturated output


DEFAULT = [("gru", 1, "last", "ap_fixed<16,6>", "vitis"), ("lstm", 2, "sequence", SAT8, "vivado"),
           ("gru", 2, "sequence", SAT8, "vitis")]
MATRIX = [c for c in itertools.product(("gru", "lstm"), (1, 2), ("last", "sequence"), ("ap_fixed<16,6>", SAT8),
                                       ("vivado", "vitis")) if c not in DEFAULT]


@pytest.mark.parametrize("cell, layers, output, precision, backend", DEFAULT)
def test_fixed_point_recurrent_model_equals_hls4ml_c_simulation(cell, layers, output, precision, backend, tmp_path):
    check_equal_to_csim(cell, layers, output, precision, backend, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cell, layers, output, precision, backend", MATRIX)
def test_fixed_point_matrix_equals_hls4ml_c_simulation(cell, layers, output, precision, backend, tmp_path):
    check_equal_to_csim(cell, layers, output, precision, backend, tmp_path)


def test_fixed_point_cnn_equals_hls4ml_c_simulation(tmp_path):
    """Conv1d (padding, groups, stride) with max pooling, then Conv2d (dilation) models, as a
    CNN before a GRU would be written."""
    torch.manual_seed(0)
    cnn1 = nn.Sequential(nn.Conv1d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
                         nn.Conv1d(6, 4, 3, stride=2, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    cnn2 = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, dilation=2), nn.Flatten(),
                         nn.Linear(16, 3))
    for i, (model, shape) in enumerate(((cnn1, [1, 3, 12]), (cnn2, [1, 2, 6, 6]))):
        fixed = prepare_fixed(model.eval(), FixedConfig("ap_fixed<12,5,AP_RND,AP_SAT>")).eval()
        art = gatec.compile(fixed, "fpga", tmp_path / f"cnn{i}", input_shapes=[shape], samples=100)
        assert art.tolerance.exact and art.manifest["verification"]["ok"]
        x = np.random.default_rng(i).standard_normal([500, *shape[1:]]).astype(np.float32)
        with torch.no_grad():
            want = fixed(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(art.run(x)[0], want)
        assert len(np.unique(want)) > 50


def test_fixed_point_sigmoid_and_tanh_layers_equal_hls4ml_c_simulation(tmp_path):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 8), nn.Sigmoid(), nn.Linear(8, 3)).eval()
    fixed = prepare_fixed(mlp, FixedConfig("ap_fixed<10,4,AP_RND,AP_SAT>")).eval()
    art = gatec.compile(fixed, "fpga", tmp_path / "mlp", input_shapes=[[1, 6]], samples=200)
    assert art.tolerance.exact and art.manifest["verification"]["ok"]
    x = np.random.default_rng(1).standard_normal([1000, 6]).astype(np.float32) * 3  # past the tables' range too
    with torch.no_grad():
        want = fixed(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(art.run(x)[0], want)
    assert len(np.unique(want)) > 20


def test_float_targets_refuse_a_fixed_point_model(cli, tmp_path):
    model = fixed_model("gru", 1, "last", "ap_fixed<16,6>")
    for target in ("cpu", "gpu"):
        with pytest.raises(gatec.GatecError, match="fixed point.*--target fpga"):
            gatec.compile(model, target, input_shapes=[[1, 6, 4]])


def test_ap_fixed_casts():
    t = FixedType.parse("ap_fixed<8,3>")  # 5 fractional bits, range [-4, 4)
    x = torch.tensor([1.3, -1.3, 4.5, -4.25, 3.99])
    assert str(t) == "ap_fixed<8,3>" and t.frac == 5
    np.testing.assert_array_equal(t.to_float(t.from_float(x)).numpy(), [41 / 32, -42 / 32, -3.5, 3.75, 127 / 32])
    rs = FixedType.parse("ap_fixed<8,3,AP_RND,AP_SAT>")
    np.testing.assert_array_equal(rs.to_float(rs.from_float(x)).numpy(), [42 / 32, -42 / 32, 127 / 32, -4.0, 4 - 1 / 32])
    assert str(rs) == "ap_fixed<8,3,AP_RND,AP_SAT>"
    for bad in ("ap_fixed<8>", "ap_fixed<8,3,AP_RND_ZERO>", "float"):
        with pytest.raises(ValueError):
            FixedType.parse(bad)


def test_training_is_straight_through_and_keeps_values_on_the_grid():
    model = fixed_model("gru", 1, "last", "ap_fixed<10,4,AP_RND,AP_SAT>")
    model.train()
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(128, 6, 4, generator=rng)
    y = x.mean(1)[:, :3].argmax(1)  # which of three features is largest on average: learnable
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.9 * losses[0]
    out = model(x).detach()
    assert out.dtype == torch.float64 and torch.equal(torch.round(out * 64) / 64, out)  # on the 2^-6 grid


def test_what_is_not_emulated_is_refused():
    with pytest.raises(ValueError, match="Conv1d"):
        prepare_fixed(nn.Sequential(nn.Conv1d(2, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten()))
    with pytest.raises(ValueError, match="AvgPool1d"):
        prepare_fixed(nn.Sequential(nn.Conv1d(2, 2, 3), nn.AvgPool1d(2)))
    with pytest.raises(ValueError, match="Softmax"):
        prepare_fixed(nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=-1)))
    with pytest.raises(ValueError, match="forward layers"):
        prepare_fixed(nn.GRU(4, 4, bidirectional=True))

    class FloatBetween(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(self.a(x) * 1.3)
    with pytest.raises(ValueError, match="not on the fixed-point grid"):
        prepare_fixed(FloatBetween())(torch.randn(3, 4))
    gru = prepare_fixed(Recurrent("gru", 1, "sequence")).model.rnn
    with pytest.raises(ValueError, match="zero state"):
        gru(torch.zeros(1, 3, 4), torch.zeros(1, 1, 8))


def test_pickled_model_compiles_with_no_precision_option_and_another_precision_is_not_exact(cli, tmp_path):
    from gatec.nn import RecurrentClassifier
    torch.manual_seed(0)
    model = prepare_fixed(RecurrentClassifier(4, 8, 3, "lstm"), FixedConfig("ap_fixed<12,5,AP_RND,AP_SAT>")).eval()
    torch.save(model, tmp_path / "fixed_lstm.pt")
    code, out, err = cli("compile", tmp_path / "fixed_lstm.pt", "--input-shape", "1,5,4", "--target", "fpga",
                         "-o", tmp_path / "a", "--samples", "64")
    assert code == 0, err
    assert "bit-exact" in out and "PASS" in out
    code, out, err = cli("compile", tmp_path / "fixed_lstm.pt", "--input-shape", "1,5,4", "--target", "fpga",
                         "-o", tmp_path / "b", "--samples", "64", "--precision", "ap_fixed<16,6>")
    assert code == 0, err
    assert "bit-exact" not in out  # other types than the model's: held to the derived bound
