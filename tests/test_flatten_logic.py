"""Logic networks that start with nn.Flatten(), the way difflogic's and torchlogix's examples
build them: the Flatten is no input encoder, so every logic target takes them as it takes the
same network without the Flatten (real bit inputs, the Verilog path for fpga, bit-exact)."""
import subprocess

import numpy as np
import pytest
import torch

import gatec
from gatec.frontend import load
from gatec.nn.logic import GroupSum, LogicLayer, ThermometerEncoder
from gatec.targets.logic_input import split_logic

SHAPE = [1, 8, 8]


def layers():
    torch.manual_seed(0)
    return [LogicLayer(64, 300), LogicLayer(300, 200), GroupSum(10, 2.0)]


@pytest.fixture(scope="module")
def flat():
    return torch.nn.Sequential(torch.nn.Flatten(), *layers()).eval()


def bits(seed, n=100):
    return (np.random.default_rng(seed).random((n, *SHAPE[1:])) > 0.5).astype(np.float32)


def expected(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def assert_exact(art, model, x):
    assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0
    np.testing.assert_array_equal(art.run(x)[0], expected(model, x))


def test_flatten_is_no_encoder(flat):
    """The same netlist as the network without the Flatten, reading the 64 input bits."""
    prefix, net = split_logic(load(flat, [SHAPE]).ir)
    plain = torch.nn.Sequential(*layers()).eval()
    _, plain_net = split_logic(load(plain, [[1, 64]]).ir)
    assert prefix is None and net.n_inputs == 64
    for a, b in zip((net.a, net.b, net.op, net.outputs), (plain_net.a, plain_net.b, plain_net.op, plain_net.outputs)):
        np.testing.assert_array_equal(a, b)


def test_c_firmware_takes_bits(flat, tmp_path):
    art = gatec.compile(flat, "c", tmp_path / "fw", input_shapes=[SHAPE])
    header = (art.path / "model.h").read_text()
    assert "#define GATEC_MODEL_INPUTS 64u" in header and "GATEC_MODEL_FEATURES" not in header
    x = bits(1)
    assert_exact(art, flat, x)
    assert subprocess.run(["make", "-C", str(art.path)], capture_output=True).returncode == 0
    stdin = "\n".join("".join(str(int(v)) for v in row.ravel()) for row in x) + "\n"
    out = subprocess.run([str(art.path / "model")], input=stdin, capture_output=True, text=True, check=True).stdout
    np.testing.assert_array_equal(np.array([[float(v) for v in line.split()] for line in out.splitlines()],
                                           np.float32), expected(flat, x))


@pytest.mark.parametrize("kind", ["fpga", "asic"])
def test_verilog_path(flat, tmp_path, kind):
    """fpga: the Verilog generator, not hls4ml (minutes of C compilation, and not bit-exact)."""
    art = gatec.compile(flat, kind, tmp_path / "hw", input_shapes=[SHAPE], options={"synthesize": kind == "fpga"})
    files = {p.name for p in art.path.iterdir()}
    assert "model.v" in files and "hls4ml_prj" not in files and "encoder.json" not in files
    assert "input wire [63:0] x" in (art.path / "model.v").read_text()
    assert_exact(art, flat, bits(2))


def test_cpu_engine_without_prefix_session(flat, tmp_path):
    art = gatec.compile(flat, "cpu", tmp_path / "cpu", input_shapes=[SHAPE])
    assert (art.path / "logic.npz").exists() and not (art.path / "encoder.onnx").exists()
    assert_exact(art, flat, bits(3))


def test_difflogic_layout_with_flatten(tmp_path):
    import difflogic_standin as dl
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), dl.LogicLayer(64, 300), dl.LogicLayer(300, 200),
                                dl.GroupSum(10, 2.0)).eval()
    x = bits(4)
    for target in ("c", "cpu"):
        assert_exact(gatec.compile(model, target, tmp_path / target, input_shapes=[SHAPE]), model, x)


def test_flatten_then_thermometer_encoder(tmp_path):
    """Flatten before a threshold encoder: the encoder stays, on the flattened features."""
    torch.manual_seed(2)
    fit = (np.random.default_rng(0).random((200, 4, 4)) * 10).astype(np.float32)
    model = torch.nn.Sequential(torch.nn.Flatten(), ThermometerEncoder(16, 3).fit(fit.reshape(200, 16)),
                                LogicLayer(48, 60), GroupSum(4, 2.0)).eval()
    art = gatec.compile(model, "c", tmp_path / "fw", input_shapes=[[1, 4, 4]], data=[fit])
    assert "gatec_model_counts_features" in (art.path / "model.h").read_text()
    assert_exact(art, model, (np.random.default_rng(5).random((50, 4, 4)) * 10).astype(np.float32))


def test_transpose_is_folded_into_the_first_layer(tmp_path):
    """A permutation of the input elements becomes the first layer's input indices."""
    class TransposeFlatten(torch.nn.Module):
        def forward(self, x):
            return x.transpose(1, 2).reshape(x.shape[0], -1)
    torch.manual_seed(3)
    model = torch.nn.Sequential(TransposeFlatten(), LogicLayer(64, 100), GroupSum(10, 2.0)).eval()
    prefix, net = split_logic(load(model, [SHAPE]).ir)
    x = bits(6)
    assert prefix is None
    np.testing.assert_array_equal(net.evaluate(x.reshape(len(x), -1).astype(np.uint8)) / np.float32(2.0),
                                  expected(model, x))
    # the emulator draws real-valued inputs for a custom module (not known to read bits): check here
    art = gatec.compile(model, "c", tmp_path / "fw", input_shapes=[SHAPE], verify=False)
    np.testing.assert_array_equal(art.run(x)[0], expected(model, x))
