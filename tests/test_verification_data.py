"""Verification inputs: bad --data is blamed on the data, fixed-batch models are checked on every
row asked for, and `verify` reports every target even when one refuses the model."""
import json

import numpy as np
import pytest
import torch

from gatec.nn.logic import GroupSum, LogicLayer

ROWS = 30
OUT = 3


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, OUT)).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An MLP as a pickled module (dynamic batch), as ONNX and as .pt2 with a fixed batch of 1,
    and a small logic network."""
    d = tmp_path_factory.mktemp("models")
    model, x = mlp(), torch.randn(1, 8)
    torch.save(model, d / "mlp.pt")
    torch.onnx.export(model, (x,), str(d / "fixed.onnx"), dynamo=False, input_names=["x"])
    torch.export.save(torch.export.export(model, (x,)), d / "fixed.pt2")
    torch.save(torch.nn.Sequential(LogicLayer(12, 40), LogicLayer(40, 30), GroupSum(3)).eval(), d / "logic.pt")
    return d


def one_line_error(code, err, *words):
    assert code == 2, err
    assert err.startswith("gatec: error: ") and err.count("\n") == 1, err
    assert "artifact" not in err and "disagrees" not in err, err
    for w in words:
        assert w in err, (w, err)


def data_file(tmp_path, array, name="x.npy"):
    np.save(tmp_path / name, array)
    return tmp_path / name


def good_rows(n=ROWS, features=8):
    return np.random.default_rng(0).standard_normal((n, features)).astype(np.float32)


@pytest.mark.parametrize("value, words", [(np.nan, ["3 values are NaN"]), (np.inf, ["3 values are infinite"])])
def test_nan_and_inf_data_are_named(cli, files, tmp_path, value, words):
    x = good_rows()
    x[[1, 5, 9], 2] = value
    path = data_file(tmp_path, x)
    code, _, err = cli("verify", files / "mlp.pt", "--input-shape", "1,8", "--data", path)
    one_line_error(code, err, str(path), "input 'input'", *words)
    code, _, err = cli("compile", files / "mlp.pt", "--input-shape", "1,8", "--data", path, "-o", tmp_path / "a")
    one_line_error(code, err, str(path), *words)
    assert not (tmp_path / "a").exists()


def test_non_binary_data_for_a_logic_network(cli, files, tmp_path):
    x = np.random.default_rng(0).integers(0, 2, (ROWS, 12)).astype(np.float32)
    x[0, 0] = 0.5
    path = data_file(tmp_path, x)
    code, _, err = cli("verify", files / "logic.pt", "--input-shape", "1,12", "--data", path)
    one_line_error(code, err, str(path), "values other than 0 and 1", "logic network")


def test_complex_data_is_refused(cli, files, tmp_path):
    path = data_file(tmp_path, good_rows().astype(np.complex64) + 1j)
    code, _, err = cli("verify", files / "mlp.pt", "--input-shape", "1,8", "--data", path)
    one_line_error(code, err, str(path), "complex")


def test_empty_data_is_refused(cli, files, tmp_path):
    path = data_file(tmp_path, np.zeros((0, 8), np.float32))
    code, _, err = cli("verify", files / "mlp.pt", "--input-shape", "1,8", "--data", path)
    one_line_error(code, err, str(path), "no rows")


def test_wrong_feature_count_is_refused(cli, files, tmp_path):
    path = data_file(tmp_path, good_rows(features=7))
    code, _, err = cli("verify", files / "fixed.onnx", "--data", path)
    one_line_error(code, err, str(path), "[30, 7]", "does not fit", "any number of rows")
    import gatec
    with pytest.raises(gatec.GatecError, match=r"data: array of shape \[30, 7\] does not fit input 'input'"):
        gatec.compile(mlp(), "cpu", input_shapes=[[1, 8]], data=[good_rows(features=7)])


def test_the_python_api_checks_data_too(files):
    import gatec
    x = good_rows()
    x[0, 0] = np.nan
    with pytest.raises(gatec.GatecError, match="1 values are NaN") as e:
        gatec.compile(mlp(), "cpu", input_shapes=[[1, 8]], data=[x])
    assert "artifact" not in str(e.value)


@pytest.mark.parametrize("name", ["fixed.onnx", "fixed.pt2"])
def test_fixed_batch_models_are_checked_on_every_row(cli, files, tmp_path, name):
    from gatec.frontend import load
    spec = load(files / name).ir.inputs[0]
    assert spec.shape == [1, 8] and 0 not in spec.dynamic  # the batch of 1 is fixed
    second = (50 // 2 + 1) | 1  # the emulator's second input set: odd-sized, from --samples
    code, stdout, err = cli("verify", files / name, "--samples", 50, "--json", tmp_path / "a.json")
    assert code == 0 and "verification passed" in stdout, err
    (check,) = json.loads((tmp_path / "a.json").read_text())["cpu"]["outputs"]
    assert check["elements"] == (50 + second) * OUT and check["shapes"] == [[[50, 8]], [[second, 8]]]
    code, stdout, err = cli("verify", files / name, "--data", data_file(tmp_path, good_rows()),
                            "--json", tmp_path / "b.json")
    assert code == 0 and "30x8" in stdout, err
    (check,) = json.loads((tmp_path / "b.json").read_text())["cpu"]["outputs"]
    assert check["elements"] == (ROWS + ((256 // 2 + 1) | 1)) * OUT and check["shapes"][0] == [[ROWS, 8]]


def test_a_refusing_target_is_reported_beside_the_others(cli, files, tmp_path):
    code, stdout, err = cli("verify", files / "mlp.pt", "--input-shape", "1,8", "--targets", "cpu,c",
                            "--samples", 20, "--json", tmp_path / "v.json")
    assert code == 1, err
    report = json.loads((tmp_path / "v.json").read_text())
    assert "c" in report and "cpu" in report
    assert report["cpu"]["ok"] is True and report["cpu"]["outputs"][0]["elements"] > 0
    assert report["c"]["ok"] is False and "logic" in report["c"]["outputs"][0]["error"]
    c_row = next(line for line in stdout.splitlines() if line.startswith("c "))
    assert "FAIL" in c_row and "logic" in c_row
    assert "verification FAILED" in stdout
