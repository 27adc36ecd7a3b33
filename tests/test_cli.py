"""The command line end to end, bad input, safe loading, and atomic, deterministic output."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from gatec.nn import RecurrentClassifier

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def gru_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "gru.pt"
    torch.jit.save(torch.jit.script(RecurrentClassifier(6, 12, 4)), str(path))
    return path


def assert_one_line_error(code, err, *words):
    assert code == 2
    assert err.startswith("gatec: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)


def test_compile_verify_inspect(cli, gru_file, tmp_path):
    out = tmp_path / "art"
    code, stdout, _ = cli("compile", gru_file, "--input-shape", "1,10,6", "-o", out, "--samples", "32")
    assert code == 0 and "PASS" in stdout
    assert sorted(os.listdir(out)) == ["manifest.json", "model.onnx", "verification.png"]
    code, stdout, _ = cli("verify", gru_file, "--input-shape", "1,10,6", "--json", tmp_path / "v.json")
    assert code == 0 and "verification passed" in stdout
    import json
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["cpu"]["ok"] is True and report["cpu"]["max_abs_err"] < 1e-4
    assert report["cpu"]["argmax_agreement"] == 1.0
    code, stdout, _ = cli("inspect", gru_file, "--input-shape", "1,10,6")
    assert code == 0 and "GRU" in stdout and f"{3 * 12} gates" in stdout


def test_console_script_exit_status(tmp_path):
    missing = tmp_path / "nope.pt"
    proc = subprocess.run([sys.executable, "-m", "gatec", "compile", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"gatec: error: {missing}: no such file"
    assert "Traceback" not in proc.stderr


def test_same_input_gives_identical_bytes(cli, gru_file, tmp_path):
    for name in ("a", "b"):
        assert cli("compile", gru_file, "--input-shape", "1,10,6", "-o", tmp_path / name, "--samples", "16")[0] == 0
    for f in ("model.onnx", "manifest.json", "verification.png"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


@pytest.mark.parametrize("content,word", [(b"", "not a model file"), (b"\x00garbage" * 20, "not a model file"),
                                          (b"PK\x03\x04broken zip", "not a model file")])
def test_corrupt_file(cli, tmp_path, content, word):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    code, _, err = cli("compile", path, "--input-shape", "1,4")
    assert_one_line_error(code, err, str(path), word)


def test_truncated_files(cli, gru_file, tmp_path):
    data = gru_file.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    code, _, err = cli("compile", cut, "--input-shape", "1,10,6")
    assert code == 2 and str(cut) in err
    onnx_cut = tmp_path / "cut.onnx"
    model = torch.nn.Linear(4, 3)
    torch.onnx.export(model, (torch.randn(1, 4),), str(tmp_path / "ok.onnx"), dynamo=False)
    onnx_cut.write_bytes((tmp_path / "ok.onnx").read_bytes()[:40])
    code, _, err = cli("compile", onnx_cut)
    assert_one_line_error(code, err, "corrupt or invalid ONNX", str(onnx_cut))


def test_wrong_input_shape(cli, gru_file, tmp_path):
    code, _, err = cli("compile", gru_file, "--input-shape", "1,10,5", "-o", tmp_path / "x")
    assert_one_line_error(code, err, "1x10x5", "does not fit")
    assert not (tmp_path / "x").exists()
    code, _, err = cli("compile", gru_file, "-o", tmp_path / "x")
    assert_one_line_error(code, err, "--input-shape")
    code, _, err = cli("compile", gru_file, "--input-shape", "1,10,6", "--input-shape", "1,10,6")
    assert_one_line_error(code, err, "takes 1 input(s) but 2")


def test_wrong_onnx_input_shape(cli, tmp_path):
    path = tmp_path / "lin.onnx"
    torch.onnx.export(torch.nn.Linear(4, 3), (torch.randn(2, 4),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "n"}})
    code, _, err = cli("compile", path, "--input-shape", "2,5")
    assert_one_line_error(code, err, "'x'", "[2, 5]", "[?,4]")


MODEL_SOURCE = textwrap.dedent("""
    import torch
    class TinyGated(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(4, 8)
            self.b = torch.nn.Linear(4, 8)
        def forward(self, x):
            return self.a(x) * torch.sigmoid(self.b(x))
""")


def save_pickled(tmp_path, name="tinymodels"):
    """Save a whole module whose class lives in a file the loader must be told about."""
    (tmp_path / f"{name}.py").write_text(MODEL_SOURCE)
    script = (f"import sys, torch; sys.path.insert(0, {str(tmp_path)!r}); import {name}; "
              f"torch.save({name}.TinyGated(), {str(tmp_path / 'tiny.pt')!r})")
    subprocess.run([sys.executable, "-c", script], check=True)
    return tmp_path / "tiny.pt"


def test_pickled_module_needs_import(cli, tmp_path):
    path = save_pickled(tmp_path)
    code, _, err = cli("compile", path, "--input-shape", "2,4", "-o", tmp_path / "out")
    assert_one_line_error(code, err, "tinymodels.TinyGated", "--import")
    assert not (tmp_path / "out").exists()
    code, stdout, _ = cli("compile", path, "--input-shape", "2,4", "--import", tmp_path / "tinymodels.py",
                          "-o", tmp_path / "out")
    assert code == 0 and "PASS" in stdout and (tmp_path / "out" / "model.onnx").exists()


def test_import_file_missing(cli, tmp_path):
    path = save_pickled(tmp_path)
    code, _, err = cli("compile", path, "--input-shape", "2,4", "--import", tmp_path / "missing.py")
    assert_one_line_error(code, err, "missing.py", "no such file")


def test_pickle_that_runs_foreign_code_is_refused(cli, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, str(path))
    code, _, err = cli("compile", path, "--input-shape", "1,4")
    assert_one_line_error(code, err, "refusing to unpickle", "system")
    assert not marker.exists()


def test_state_dict_is_not_a_model(cli, tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), str(path))
    code, _, err = cli("compile", path, "--input-shape", "1,4")
    assert_one_line_error(code, err, "state_dict")


def test_unsupported_onnx_op_names_node_and_op(cli, tmp_path):
    node = onnx.helper.make_node("FancyOp", ["x"], ["y"], name="fancy_1", domain="com.example")
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18),
                                                         onnx.helper.make_opsetid("com.example", 1)])
    path = tmp_path / "fancy.onnx"
    onnx.save(model, str(path))
    code, _, err = cli("compile", path, "-o", tmp_path / "out")
    assert_one_line_error(code, err, "fancy_1", "com.example::FancyOp", "supported:")
    assert not (tmp_path / "out").exists()


def test_untraceable_torch_op_is_named(cli, tmp_path):
    class Eigh(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigh(x @ x.transpose(-1, -2))[0]
    path = tmp_path / "eigh.pt"
    torch.jit.save(torch.jit.script(Eigh()), str(path))
    code, _, err = cli("compile", path, "--input-shape", "2,3,3")
    assert_one_line_error(code, err, "eigh")


class BranchOnData(torch.nn.Module):
    """Data-dependent control flow: tracing keeps one branch, so the artifact disagrees."""

    def forward(self, x):
        if float(x.sum()) > 0:
            return x * 2
        return x * 3


def test_disagreeing_artifact_fails_and_writes_nothing(tmp_path):
    import gatec
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("the previous artifact")
    with pytest.raises(gatec.GatecError, match="disagrees"):
        gatec.compile(BranchOnData(), "cpu", out, input_shapes=[[4, 5]], force=True)
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary folder left behind
    assert os.listdir(out) == ["keep.txt"]  # the old artifact is untouched
    art = gatec.compile(BranchOnData(), "cpu", out, input_shapes=[[4, 5]], verify=False, force=True)
    assert art.manifest["verification"] is None and not (out / "keep.txt").exists()


def test_data_file(cli, gru_file, tmp_path):
    good = tmp_path / "d.npy"
    np.save(good, np.random.default_rng(0).standard_normal((20, 7, 6)).astype(np.float32))
    code, stdout, _ = cli("verify", gru_file, "--input-shape", "1,10,6", "--data", good)
    assert code == 0 and "20x7x6" in stdout
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((20, 7, 5), np.float32))
    code, _, err = cli("verify", gru_file, "--input-shape", "1,10,6", "--data", bad)
    assert_one_line_error(code, err, "[20, 7, 5]", "does not fit")


def test_bad_shape_argument(cli, gru_file):
    with pytest.raises(SystemExit) as exc:
        cli("compile", gru_file, "--input-shape", "1,a,3")
    assert exc.value.code == 2


def test_unknown_target(cli, gru_file):
    code, _, err = cli("compile", gru_file, "--input-shape", "1,10,6", "--target", "tpu")
    assert_one_line_error(code, err, "unknown target 'tpu'", "cpu")
