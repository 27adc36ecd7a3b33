"""Target fpga (hls4ml) for LayerNorm, Softsign, ThresholdedReLU and embeddings, written as people
write them: nn.LayerNorm in an MLP and over a sequence (hls4ml's LayerNormalization behind an exact
halving, layers/normalization.py), nn.Softsign (PyTorch exports x / (1 + |x|)), torch.where(x > t,
x, 0), nn.Embedding of int64 token ids into a Linear (exported to ONNX: a Gather of the table by the
ids, hls4ml's Embedding with an ap_uint input). Each compiles to fpga, is verified by hls4ml's C
simulation within its bound, and runs again on fresh inputs within it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gatec
from corpus import Net
from gatec.errors import GatecError

SAMPLES = 200



def built(build):
    torch.manual_seed(0)
    return build().eval()


def check(art, model, x: np.ndarray, bound_at_most: float | None = None):
    assert art.manifest["verification"]["ok"]
    (y,) = art.run(x)
    ref = model(torch.from_numpy(x)).detach().numpy()
    err = float(np.abs(y - ref).max())
    assert err <= art.tolerance.atol, (err, art.tolerance.atol)
    if bound_at_most is not None:
        assert art.tolerance.atol <= bound_at_most
    return err


def test_layernorm_in_an_mlp(tmp_path):
    model = built(lambda: nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 4)))
    art = gatec.compile(model, "fpga", tmp_path / "a", input_shapes=[[1, 8]], samples=SAMPLES)
    assert any(l["class"] == "LayerNormalization" for l in
               __import__("json").loads((tmp_path / "a" / "hls_summary.json").read_text())["layers"])
    err = check(art, model, np.random.default_rng(5).standard_normal((64, 8)).astype(np.float32), 0.05)
    assert err < 0.01


@pytest.mark.slow
def test_layernorm_over_a_sequence(tmp_path):
    model = built(lambda: Net(lambda m, x: m.out(m.norm(m.lin(x))).flatten(1), lin=nn.Linear(5, 8),
                              norm=nn.LayerNorm(8), out=nn.Linear(8, 2)))
    art = gatec.compile(model, "fpga", tmp_path / "a", input_shapes=[[1, 6, 5]], samples=SAMPLES)
    check(art, model, np.random.default_rng(5).standard_normal((32, 6, 5)).astype(np.float32), 0.05)


def test_layernorm_epsilon_not_a_power_of_ten_is_refused(tmp_path):
    model = built(lambda: nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16, eps=3e-5), nn.Linear(16, 4)))
    with pytest.raises(GatecError, match=r"LayerNormalization\): hls4ml's LayerNormalization takes an epsilon"):
        gatec.compile(model, "fpga", tmp_path / "a", input_shapes=[[1, 8]], samples=SAMPLES)


def test_softsign_and_thresholded_relu(tmp_path):
    for i, act in enumerate([nn.Softsign(), Net(lambda m, x: torch.where(x > 0.3, x, 0.0))]):
        model = built(lambda act=act: nn.Sequential(nn.Linear(8, 16), act, nn.Linear(16, 4)))
        art = gatec.compile(model, "fpga", tmp_path / str(i), input_shapes=[[1, 8]], samples=SAMPLES)
        classes = [l["class"] for l in
                   __import__("json").loads((tmp_path / str(i) / "hls_summary.json").read_text())["layers"]]
        assert ("Activation" if i == 0 else "ParametrizedActivation") in classes
        check(art, model, np.random.default_rng(6).standard_normal((64, 8)).astype(np.float32))


def test_where_of_another_form_is_refused_by_name(tmp_path):
    model = built(lambda: nn.Sequential(nn.Linear(8, 16), Net(lambda m, x: torch.where(x > 0.3, x, 1.0)),
                                        nn.Linear(16, 4)))
    with pytest.raises(GatecError, match=r"\(Greater\): a comparison is supported only in ThresholdedReLU"):
        gatec.compile(model, "fpga", tmp_path / "a", input_shapes=[[1, 8]], samples=SAMPLES)


def test_embedding_flatten_linear_from_onnx(tmp_path):
    model = built(lambda: Net(lambda m, x: m.out(m.emb(x).flatten(1)), emb=nn.Embedding(10, 4),
                              out=nn.Linear(24, 3)))
    path = tmp_path / "emb.onnx"
    torch.onnx.export(model, torch.zeros(1, 6, dtype=torch.int64), path, dynamo=False, opset_version=18,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    art = gatec.compile(path, "fpga", tmp_path / "a", samples=SAMPLES)
    config = (tmp_path / "a" / "hls4ml_prj" / "firmware" / "defines.h").read_text()
    assert "ap_uint<4> input_t" in config
    ids = np.random.default_rng(7).integers(0, 10, (32, 6)).astype(np.int64)  # the whole vocabulary
    (y,) = art.run(ids)
    ref = model(torch.from_numpy(ids)).detach().numpy()
    assert float(np.abs(y - ref).max()) <= art.tolerance.atol
