"""difflogic-layout models through the command line, and the digits example as a training smoke test."""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from gatec.compiler import Artifact

REPO = Path(__file__).resolve().parents[1]
STANDIN = REPO / "tests" / "difflogic_standin.py"


def test_difflogic_standin_compiles_and_verifies_from_the_cli(cli, tmp_path):
    import difflogic_standin as dl
    torch.manual_seed(0)
    model = torch.nn.Sequential(dl.LogicLayer(48, 200), dl.LogicLayer(200, 200), dl.LogicLayer(200, 100),
                                dl.GroupSum(10, 3.0)).eval()
    path = tmp_path / "model.pt"
    torch.save(model, path)
    out = tmp_path / "art"
    code, stdout, err = cli("compile", path, "--target", "cpu", "--import", STANDIN, "--input-shape", "1,48",
                            "-o", out, "--samples", "200")
    assert code == 0, err
    assert "PASS" in stdout and "bit-exact" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "logic" and manifest["inputs"][0]["values"] == "binary"
    x = np.random.default_rng(1).integers(0, 2, (1001, 48)).astype(np.float32)
    expected = model(torch.from_numpy(x)).numpy()
    for options in ({}, {"engine": "onnxruntime"}):  # the artifact's runner and its ONNX model alike
        got = Artifact.open(out, options).run(x)[0]
        assert np.array_equal(got, expected), options
    code, stdout, err = cli("verify", path, "--targets", "cpu", "--import", STANDIN, "--input-shape", "1,48",
                            "--json", tmp_path / "v.json")
    assert code == 0 and "verification passed" in stdout, err
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["cpu"]["ok"] and report["cpu"]["max_abs_err"] == 0.0


def test_compact_onnx_file_verifies_against_qonnx(cli, tmp_path):
    """The IR saved as ONNX (LogicLayer/GroupSum nodes) is itself an input: qonnx runs the reference."""
    import gatec
    import difflogic_standin as dl
    torch.manual_seed(1)
    model = torch.nn.Sequential(dl.LogicLayer(20, 60), dl.LogicLayer(60, 30), dl.GroupSum(3, 1.0)).eval()
    ir = gatec.load(model, [[1, 20]]).ir
    ir.save(tmp_path / "net.onnx")
    code, stdout, err = cli("verify", tmp_path / "net.onnx", "--targets", "cpu")
    assert code == 0 and "verification passed" in stdout, err


def test_digits_example_quick_trains_and_compiles(tmp_path):
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import digits_logic
    finally:
        sys.path.pop(0)
    results = digits_logic.main(["--quick", "--out", str(tmp_path), "--epochs", "3", "--width", "600"])
    plain = results["runs"][0]
    assert plain["option"] == "plain" and plain["discrete_accuracy"] > 0.6  # chance is 0.1
    assert {r["option"] for r in results["runs"]} == {"plain", "gumbel", "light", "residual"}
    for r in results["runs"]:
        assert 0 <= r["constants"] <= 1 and 0 <= r["wires"] <= 1 and r["gates"] == 4 * 600
        assert abs(r["gap"] - (r["soft_accuracy"] - r["discrete_accuracy"])) < 1e-9
    assert results["verified"] is True
    assert abs(results["compiled_accuracy"] - plain["discrete_accuracy"]) < 1e-6  # float32 mean in torch
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["runs"] == results["runs"]
    assert (tmp_path / "digits_logic.pt").exists() and (tmp_path / "cpu" / "model.onnx").exists()
