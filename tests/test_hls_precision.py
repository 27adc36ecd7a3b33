"""fpga (hls4ml) `--precision auto`, the default for float models: per-layer types from the values
each layer takes on the calibration data, checked through hls4ml's C simulation."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import gatec
from gatec import frontend
from gatec.errors import GatecError
from gatec.ir.fixed_point import width_and_integer
from gatec.targets import _hls4ml as hls


class ConvFlattenLinear(torch.nn.Module):
    """A float Conv2d(3->8) -> ReLU -> Flatten -> Linear(288->5): one sum over 288 inputs, where a
    single ap_fixed<16,6> for every layer fails (its truncations add up)."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(288, 5)

    def forward(self, x):
        return self.head(torch.flatten(torch.relu(self.conv(x)), 1))


class LargeValues(torch.nn.Module):
    """An MLP whose hidden values reach a few hundred (past ap_fixed<16,6>'s +-32), as an
    unnormalised regression model has."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 16), torch.nn.Linear(16, 3)
        with torch.no_grad():
            self.a.weight.mul_(60.0)

    def forward(self, x):
        return self.b(torch.relu(self.a(x))) / 50.0


def seeded(cls):
    torch.manual_seed(0)
    return cls().eval()


def width_and_integer_of(hls4ml_type: str) -> tuple[int, int]:
    """hls4ml's spelling in the summary (fixed<16,5,RND,SAT,0>) -> (16, 5)."""
    width, integer = re.match(r"u?fixed<(\d+),(-?\d+)", hls4ml_type).groups()
    return int(width), int(integer)


def summary_layers(art) -> dict:
    return {l["name"]: l for l in json.loads((art.path / "hls_summary.json").read_text())["layers"]}


@pytest.mark.parametrize("cls, shape", [(ConvFlattenLinear, [1, 3, 8, 8]), (LargeValues, [1, 8])])
def test_auto_verifies_where_one_type_for_every_layer_does_not(cls, shape, tmp_path):
    model = seeded(cls)
    with pytest.raises(GatecError, match="disagrees with the model"):
        gatec.compile(model, "fpga", tmp_path / "fixed", input_shapes=[shape], options={"precision": "ap_fixed<16,6>"})
    art = gatec.compile(model, "fpga", tmp_path / "auto", input_shapes=[shape])
    v = art.manifest["verification"]
    assert v["ok"] and v["max_abs_err"] < art.tolerance.atol / 2
    layers = summary_layers(art)
    profiled = [l for l in layers.values() if "observed_max_abs" in l]
    assert len(profiled) >= 4
    for layer in profiled:  # every profiled value fits twice over in its chosen type
        width, integer = width_and_integer_of(layer["result"])
        assert 2.0 ** (integer - 1) >= 2 * layer["observed_max_abs"], layer
        assert width == 16 or width == integer + 4
        assert "RND,SAT" in layer["result"]
    assert max(l["observed_max_abs"] for l in profiled) > (100 if cls is LargeValues else 1)


def test_the_profile_follows_the_data_given(tmp_path):
    model = seeded(LargeValues)
    rng = np.random.default_rng(1)
    large = rng.uniform(-40, 40, (200, 8)).astype(np.float32)
    art = gatec.compile(model, "fpga", tmp_path / "large", input_shapes=[[1, 8]], data=[large])
    default = gatec.compile(model, "fpga", tmp_path / "default", input_shapes=[[1, 8]])
    ins = [next(l for l in summary_layers(a).values() if l["class"] in ("Input", "InputLayer")) for a in (art, default)]
    assert ins[0]["observed_max_abs"] == pytest.approx(float(np.abs(large).max()), rel=1e-5)
    # larger inputs: more integer bits, fewer fractional ones, and a wider bound
    assert width_and_integer_of(ins[0]["result"])[1] > width_and_integer_of(ins[1]["result"])[1]
    assert art.manifest["verification"]["ok"] and art.tolerance.atol > default.tolerance.atol


def test_auto_width_and_bad_values_are_checked():
    source = frontend.load(seeded(LargeValues), [[1, 8]])
    narrow = hls.plan(source.ir, {"precision": "auto<12>"})
    types = narrow.settings["layer_types"]
    assert types and all(width_and_integer(t["result"])[0] in (12, width_and_integer(t["result"])[1] + 4)
                         for t in types.values())
    assert hls.tolerance(narrow).atol > hls.tolerance(hls.plan(source.ir, {})).atol  # fewer bits, a wider bound
    for bad in ("auto<2>", "auto16", "automatic"):
        with pytest.raises(GatecError, match="--precision") as e:
            hls.plan(source.ir, {"precision": bad})
        assert "\n" not in str(e.value)


def test_quantized_models_keep_their_quantizers_types(tmp_path):
    from gatec.passes import apply
    model = seeded(LargeValues)
    source = frontend.load(model, [[1, 8]])
    quantized = apply(source.ir, ["quantize"], None)
    p = hls.plan(quantized, {})
    assert p.converted.quantized and "auto" not in p.settings and "layer_types" not in p.settings


def test_a_fixed_batch_model_is_profiled_on_every_row_the_emulator_checks(tmp_path):
    """A tf2onnx file with a fixed batch of 1: the emulator checks 256 + 129 drawn rows, one at a
    time; the profile sees them all, not one row per set (which saturated the layers: off by 0.96)."""
    import corpus
    import onnx
    onnx.save(corpus.tf2onnx_mlp_fixed_batch(), str(tmp_path / "tf.onnx"))
    observed = hls.plan(frontend.load(str(tmp_path / "tf.onnx")).ir, {}).settings["observed"]
    assert observed["in0_x"] > 2.5  # the largest |x| of 385 standard normal draws of 10 values
