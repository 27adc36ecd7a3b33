"""Target asic for arithmetic networks: an hls4ml Catapult project for an ASIC library, verified by
its C simulation (g++ over the Algorithmic C types hls4ml bundles); what the Catapult backend lacks
is refused by the layer's name."""
from __future__ import annotations

import json

import onnx
import pytest
import torch
import yaml

import gatec
from gatec.errors import GatecError
from gatec.nn import GLU, GatedConv2d, GatedMultimodalUnit, RecurrentClassifier
from test_hls import GatedConvChunkFlatten, GatedConvLastStep

SAMPLES = 200


def seeded(make):
    torch.manual_seed(0)
    return make().eval()


def quantized_mlp(tmp_path):
    """A post-training-quantized MLP (QONNX Quant nodes, power-of-two scales), as `gatec quantize` writes."""
    from gatec import frontend
    from gatec.passes import apply
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5)).eval()
    ir = apply(frontend.load(model, [[1, 16]]).ir, ["quantize"], None)
    path = tmp_path / "mlp_q.onnx"
    onnx.save(ir.model, str(path))
    return str(path), None


VERIFIED = {
    "glu_chunk": lambda tmp: (seeded(lambda: GLU(16, 32, 5, form="chunk")), [[1, 16]]),
    "gmu": lambda tmp: (seeded(lambda: GatedMultimodalUnit(12, 8, 16, 5)), [[1, 12], [1, 8]]),
    "gated_conv2d_pool": lambda tmp: (seeded(lambda: GatedConv2d(3, 8, 5)), [[1, 3, 6, 6]]),
    "gated_conv1d_chunk_flatten": lambda tmp: (seeded(GatedConvChunkFlatten), [[1, 4, 10]]),
    "mlp_quantized": quantized_mlp,
}
SLOW = {"gmu", "gated_conv1d_chunk_flatten"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in VERIFIED])
def test_gated_suite_compiles_for_an_asic_library_and_verifies(name, tmp_path):
    model, shapes = VERIFIED[name](tmp_path)
    art = gatec.compile(model, "asic", tmp_path / name, input_shapes=shapes, samples=SAMPLES)
    v = art.manifest["verification"]
    assert v["ok"] and v["max_abs_err"] <= art.tolerance.atol, v
    config = yaml.safe_load((tmp_path / name / "hls4ml_prj" / "hls4ml_config.yml").read_text())
    assert (config["Backend"], config["Technology"], config["ASICLibs"]) == ("Catapult", "asic", "nangate-45nm")
    assert (tmp_path / name / "hls4ml_prj" / "firmware" / "ac_types").is_dir()  # Algorithmic C types, not ap_
    assert not (tmp_path / name / "hls4ml_prj.tar.gz").exists()  # the writer's archive is not an artifact file
    summary = json.loads((tmp_path / name / "hls_summary.json").read_text())
    assert summary["configured"]["backend"] == "Catapult"
    if name == "glu_chunk":  # the same input writes the same bytes
        again = gatec.compile(model, "asic", tmp_path / "again", input_shapes=shapes, samples=SAMPLES)
        files = sorted(p.relative_to(art.path) for p in art.path.rglob("*") if p.is_file()
                       and p.name not in ("verification.png", "manifest.json"))
        assert [(art.path / f).read_bytes() == (again.path / f).read_bytes() for f in files] == [True] * len(files)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_layers_are_refused_by_name(cell, tmp_path):
    model = seeded(lambda: RecurrentClassifier(16, 32, 5, cell=cell))
    with pytest.raises(GatecError) as e:
        gatec.compile(model, "asic", tmp_path / cell, input_shapes=[[1, 8, 16]])
    message = str(e.value)
    assert message.startswith("asic (hls4ml): layer") and cell.upper() in message and "Catapult" in message
    assert "\n" not in message and not (tmp_path / cell).exists()


def test_a_layer_the_backend_has_no_template_for_is_refused_not_left_out(tmp_path):
    """hls4ml 1.3's Catapult backend has no cropping: its project would silently skip the layer
    (measured: off by 4.6). fpga (Vitis) builds the same model and verifies."""
    model = seeded(GatedConvLastStep)
    with pytest.raises(GatecError, match=r"^asic \(hls4ml\): layer '\w+' \(Cropping1D\): hls4ml's Catapult backend "
                                         r"has no implementation of it$"):
        gatec.compile(model, "asic", tmp_path / "asic", input_shapes=[[1, 4, 10]])
    with pytest.raises(GatecError, match=r"^fpga \(hls4ml\): layer '\w+' \(Cropping1D\): hls4ml's Catapult"):
        gatec.compile(model, "fpga", tmp_path / "catapult", input_shapes=[[1, 4, 10]], options={"backend": "catapult"})
    art = gatec.compile(model, "fpga", tmp_path / "vitis", input_shapes=[[1, 4, 10]], samples=SAMPLES)
    assert art.manifest["verification"]["ok"]


def test_asic_options_are_its_own(tmp_path, cli):
    model = seeded(lambda: GLU(16, 32, 5, form="chunk"))
    torch.save(model, tmp_path / "glu.pt")
    code, _, err = cli("compile", tmp_path / "glu.pt", "--target", "asic", "--input-shape", "1,16",
                       "--backend", "vitis", "-o", tmp_path / "out")
    assert code != 0 and "--backend is an option of target fpga, not of target asic" in err
    code, out, err = cli("compile", tmp_path / "glu.pt", "--target", "asic", "--input-shape", "1,16",
                         "--asic-library", "nangate-15nm", "--reuse-factor", "2", "-o", tmp_path / "out")
    assert code == 0, err
    config = yaml.safe_load((tmp_path / "out" / "hls4ml_prj" / "hls4ml_config.yml").read_text())
    assert config["ASICLibs"] == "nangate-15nm" and config["HLSConfig"]["Model"]["ReuseFactor"] == 2
