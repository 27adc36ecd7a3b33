"""The input encoder inside the Verilog (--input-format): the module takes fixed-point features and
compares them itself, bit-exact in Icarus against the model on every value the format holds;
values off its grid are refused by name. And gatec.nn's LearnedThermometerEncoder, whose
thresholds train and whose eval() is the plain comparison the targets compile."""
import json
import shutil

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import gatec
from gatec.errors import GatecError
from gatec.nn import LearnedThermometerEncoder
from gatec.nn.logic import GroupSum, LogicLayer, ThermometerEncoder
from gatec.targets._verilog.encoder import InputFormat

pytestmark = pytest.mark.skipif(not (shutil.which("iverilog") and shutil.which("yosys")),
                                reason="needs Icarus Verilog and yosys (make install)")


def digits():
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y


def network(encoder, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(encoder, LogicLayer(encoder.out_features, 200), LogicLayer(200, 100),
                               GroupSum(10, 3.0)).eval()


def test_learned_thresholds_train_and_eval_is_the_comparison():
    x, y = digits()
    enc = LearnedThermometerEncoder(64, 3).fit(torch.from_numpy(x))
    start = enc.thresholds.detach().clone()
    net = network(enc).train()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    xs, ys = torch.from_numpy(x[:256]), torch.from_numpy(y[:256])
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(net(xs), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert enc.thresholds.grad is not None and enc.thresholds.grad.abs().sum() > 0
    assert not torch.equal(enc.thresholds.detach(), start)
    enc.eval()
    hard = (xs.unsqueeze(-1) > enc.thresholds.detach()).float().flatten(1)
    assert torch.equal(enc(xs), hard)


@pytest.mark.parametrize("target", ["fpga", "asic"])
def test_digits_features_compared_in_the_verilog(tmp_path, target):
    """Pixel values 0..16 as u5 codes; thresholds between codes (learned, moved off the grid) and
    on codes (a uniform thermometer on 0..16 puts them at 4, 8, 12: q > 4, not q >= 4)."""
    x, _ = digits()
    learned = LearnedThermometerEncoder(64, 3).fit(torch.from_numpy(x))
    with torch.no_grad():
        learned.thresholds.add_(torch.randn(learned.thresholds.shape, generator=torch.Generator().manual_seed(1)))
    for i, enc in enumerate([learned, ThermometerEncoder(64, 3, "uniform").fit(torch.from_numpy(x))]):
        net = network(enc, seed=i)
        art = gatec.compile(net, target, tmp_path / f"{target}{i}", input_shapes=[[1, 64]], data=[x[:300]],
                            options={"input_format": "u5"})
        assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0
        with torch.no_grad():
            np.testing.assert_array_equal(art.run(x)[0], net(torch.from_numpy(x)).numpy())  # all 1797 images
        text = (art.path / "model.v").read_text()
        assert "input wire [319:0] f" in text and text.count("assign x[") == 192


def test_signed_fraction_format_verifies_on_its_grid(tmp_path):
    """No data: the emulator draws the features on s8.3's grid (multiples of 1/8 in [-16, 15.875])."""
    torch.manual_seed(2)
    enc = LearnedThermometerEncoder(12, 4)
    with torch.no_grad():
        enc.thresholds.copy_(torch.randn(12, 4) * 5)
    net = network(enc, seed=3)
    art = gatec.compile(net, "fpga", tmp_path / "a", input_shapes=[[1, 12]], options={"input_format": "s8.3"})
    assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0
    codes = np.random.default_rng(0).integers(-128, 128, (500, 12))
    xs = (codes / 8).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_array_equal(art.run(xs)[0], net(torch.from_numpy(xs)).numpy())


def test_comparators_cost_luts_and_the_encoder_outside_costs_none(tmp_path):
    x, _ = digits()
    net = network(LearnedThermometerEncoder(64, 3).fit(torch.from_numpy(x)))
    luts = {}
    for fmt in ("", "u5"):
        art = gatec.compile(net, "fpga", tmp_path / (fmt or "outside"), input_shapes=[[1, 64]], data=[x[:200]],
                            options={"input_format": fmt} if fmt else {})
        luts[fmt] = json.loads((art.path / "resources.json").read_text())["synthesized_by_yosys"]["luts"]
    assert luts["u5"] > luts[""]


def test_values_the_format_does_not_hold_are_refused_by_name(tmp_path):
    x, _ = digits()
    net = network(ThermometerEncoder(64, 3).fit(torch.from_numpy(x)))
    art = gatec.compile(net, "fpga", tmp_path / "a", input_shapes=[[1, 64]], data=[x[:100]],
                        options={"input_format": "u5"})
    off = x[:3].copy()
    off[1, 7] = 3.5
    with pytest.raises(GatecError, match=r"input value 3\.5 \(feature 7\) is not one that --input-format u5 holds"):
        art.run(off)
    with pytest.raises(GatecError, match=r"^input value 16\.0 \(feature 12\) is not one that --input-format u4") as e:
        gatec.compile(net, "fpga", tmp_path / "b", input_shapes=[[1, 64]], data=[x[:100]],
                      options={"input_format": "u4"})  # 16 is past u4's 15
    assert "\n" not in str(e.value) and not (tmp_path / "b").exists()


@pytest.mark.parametrize("text", ["u", "x5", "u0", "u40", "s8.30", "5"])
def test_bad_formats_are_one_line(text):
    with pytest.raises(GatecError, match="--input-format") as e:
        InputFormat.parse(text)
    assert "\n" not in str(e.value)


def test_a_network_without_encoder_is_refused(tmp_path):
    net = torch.nn.Sequential(LogicLayer(16, 20), GroupSum(2, 1.0)).eval()
    with pytest.raises(GatecError, match="reads input bits, it has no encoder"):
        gatec.compile(net, "fpga", tmp_path / "a", input_shapes=[[1, 16]], options={"input_format": "u5"})
