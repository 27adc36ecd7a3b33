"""Targets fpga and asic: Verilog simulated with Icarus Verilog bit-exact against the reference,
synthesized with yosys; pipelining, a wrong gate caught, bad options refused."""
import json
import re

import numpy as np
import pytest
import torch

import gatec
from gatec import emulator
from gatec.compiler import Artifact
from gatec.frontend import load
from gatec.ir.netlist import Netlist
from gatec.nn.logic import GroupSum, LogicLayer, ThermometerEncoder
from gatec.targets import Tolerance
from gatec.targets._verilog import Design, Runner, testbench, yosys
from test_c_target import logic_onnx, random_layers



@pytest.fixture(scope="module")
def network(tmp_path_factory):
    rng = np.random.default_rng(2)
    layers = random_layers(rng, 20, [80, 80, 40])
    path = logic_onnx(tmp_path_factory.mktemp("rtl") / "net.onnx", 20, layers, 4, 2.5)
    return path, Netlist.from_layers(20, [(l.in_a, l.in_b, l.ops) for l in layers], 4, 2.5)


@pytest.fixture(scope="module")
def digits_style():
    """ThermometerEncoder + two LogicLayers + GroupSum(10), untrained (random ops)."""
    torch.manual_seed(0)
    x = torch.rand(200, 64) * 16
    return torch.nn.Sequential(ThermometerEncoder(64, 3).fit(x), LogicLayer(192, 300), LogicLayer(300, 200),
                               GroupSum(10, 2.0)).eval()


@pytest.mark.parametrize("kind,pipeline", [("fpga", 0), ("fpga", 2), ("asic", 0), ("asic", 1)])
def test_random_network_simulates_bit_exact(network, tmp_path, kind, pipeline):
    path, net = network
    art = gatec.compile(path, kind, tmp_path / "hw", options={"pipeline": pipeline}, samples=150)
    assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0
    for n in (1, 333, 4097):  # one vector, an odd batch, one past a simulation chunk
        bits = np.random.default_rng(n).integers(0, 2, (n, 20)).astype(np.uint8)
        np.testing.assert_array_equal(art.run(bits)[0], net.evaluate(bits).astype(np.float32) / np.float32(2.5))
    res = json.loads((tmp_path / "hw" / "resources.json").read_text())
    assert res["estimated"]["latency_cycles"] == (0 if pipeline == 0 else -(-res["estimated"]["logic_levels"] // pipeline))
    synth = res["synthesized_by_yosys"]
    if kind == "fpga":
        assert synth["luts"] > 0 and synth["luts_per_original_gate"] > 0 and synth["lut_depth"] > 0
    else:
        assert synth["cells"].get("$_NAND_", 0) > 0 and synth["nand2_equivalents"] > 0
    assert (synth["flip_flops"] > 0) == (pipeline > 0)
    assert (tmp_path / "hw" / "resources.png").stat().st_size > 0


def test_digits_style_network_with_encoder(digits_style, tmp_path):
    x = (np.random.default_rng(0).random((77, 64)) * 16).astype(np.float32)
    for pipeline in (0, 3):
        art = gatec.compile(digits_style, "fpga", tmp_path / f"hw{pipeline}", input_shapes=[[1, 64]],
                            options={"pipeline": pipeline}, samples=100)
        assert art.manifest["verification"]["ok"]
        with torch.no_grad():
            np.testing.assert_array_equal(art.run(x)[0], digits_style(torch.from_numpy(x)).numpy())
    res = json.loads((tmp_path / "hw0" / "resources.json").read_text())
    assert res["network"]["gates_in_model"] == 500 and res["synthesized_by_yosys"]["luts"] > 0
    assert "x" in (tmp_path / "hw0" / "encoder.json").read_text()


def test_output_is_deterministic(network, tmp_path):
    path, _ = network
    for name in ("a", "b"):
        gatec.compile(path, "fpga", tmp_path / name, options={"pipeline": 2}, verify=False)
    for f in ("model.v", "testbench.v", "resources.json", "resources.png"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_a_flipped_gate_is_caught(network, tmp_path):
    path, net = network
    art = gatec.compile(path, "fpga", tmp_path / "hw", samples=64)
    model_v = tmp_path / "hw" / "model.v"
    text = model_v.read_text()
    # a gate a GroupSum counter reads: inverting it changes its class's count
    gate = re.search(r"^gatec_count\d+ c\d+ \(\.i\(\{.*?\b(g\d+)\b", text, re.M).group(1)
    model_v.write_text(re.sub(rf"^assign {gate} = (.*);$", rf"assign {gate} = ~(\1);", text, flags=re.M))
    bits = np.random.default_rng(0).integers(0, 2, (50, 20)).astype(np.uint8)
    got = Artifact.open(tmp_path / "hw").run(bits)[0]
    assert not np.array_equal(got, art.run(bits)[0])
    source = load(path)
    checks = emulator.verify(source.ir, source.reference,
                             {"fpga": (Artifact.open(tmp_path / "hw").runner.run, Tolerance(exact=True))}, samples=64)
    assert not all(c.ok for c in checks)


@pytest.mark.parametrize("pipeline", [-1, 1.5, "x"])
def test_bad_pipeline_option(network, tmp_path, pipeline):
    path, _ = network
    with pytest.raises(gatec.GatecError, match="--pipeline"):
        gatec.compile(path, "fpga", tmp_path / "hw", options={"pipeline": pipeline})
    assert not (tmp_path / "hw").exists()


def test_unsupported_encoder_is_refused(tmp_path):
    class Projection(torch.nn.Module):  # bits from a linear map: not a per-feature threshold
        def forward(self, x):
            return (x @ torch.ones(8, 16) > 0).float()
    model = torch.nn.Sequential(Projection(), LogicLayer(16, 40), GroupSum(2, 1.0)).eval()
    with pytest.raises(gatec.GatecError, match="Verilog takes input bits"):
        gatec.compile(model, "asic", tmp_path / "hw", input_shapes=[[1, 8]])


def test_groupsum_is_exact_for_any_group_size(tmp_path):
    """The compressor trees alone, simulated: 2 classes of 1..70 bits, 6- and 3-input compressors."""
    rng = np.random.default_rng(0)
    for size in (1, 2, 3, 7, 70):
        net = Netlist(2 * size, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8),
                      np.arange(2 * size), 2, 1.0)
        for fan_in, pipeline in ((6, 0), (3, 2)):
            design = Design(net, fan_in, pipeline)
            (tmp_path / "model.v").write_text(design.verilog("GroupSum"))
            (tmp_path / "testbench.v").write_text(testbench.testbench(design))
            bits = rng.integers(0, 2, (100, 2 * size)).astype(np.uint8)
            bits[0], bits[1] = 0, 1
            np.testing.assert_array_equal(Runner(tmp_path).counts(bits), bits.reshape(100, 2, size).sum(2))


@pytest.mark.parametrize("pipeline", [0, 2])
def test_counters_with_gates_inside_are_exact(tmp_path, pipeline):
    """GroupSum counters that compute the gates only they read (inverters, gates on shared
    signals), signals counted twice, constants: simulated against the netlist."""
    rng = np.random.default_rng(pipeline)
    n_in, n_gates = 8, 60
    a = np.concatenate([rng.integers(0, n_in + g, 1) for g in range(n_gates)])
    b = np.concatenate([rng.integers(0, n_in + g, 1) for g in range(n_gates)])
    op = rng.integers(0, 16, n_gates).astype(np.uint8)
    op[:4] = [0, 15, 12, 10]  # constants and inverters among the counted gates
    outputs = np.concatenate([rng.permutation(np.arange(n_in, n_in + n_gates))[:40], [n_in + 2, n_in + 1, 5, 5]])
    net = Netlist(n_in, a, b, op, rng.permutation(outputs), 2, 1.0)
    design = Design(net, 6, pipeline, fuse=True)
    assert design.live_gates - len(design.assigns) > 3  # some gates moved into the counters
    (tmp_path / "model.v").write_text(design.verilog("fused GroupSum"))
    (tmp_path / "testbench.v").write_text(testbench.testbench(design))
    bits = rng.integers(0, 2, (300, n_in)).astype(np.uint8)
    np.testing.assert_array_equal(Runner(tmp_path).counts(bits), net.evaluate(bits))


def test_synthesis_can_be_skipped(network, tmp_path, cli, monkeypatch):
    path, _ = network
    art = gatec.compile(path, "fpga", tmp_path / "hw", options={"synthesize": False}, samples=40)
    assert art.manifest["verification"]["ok"] and not (tmp_path / "hw" / "resources.json").exists()

    def no_yosys(*args):
        raise AssertionError("verification ran yosys")
    monkeypatch.setattr(yosys, "synthesize", no_yosys)  # `gatec verify` only simulates
    code, out, err = cli("verify", path, "--targets", "fpga,asic", "--samples", "40")
    assert code == 0 and out.count("PASS") == 2, err


def test_cli_pipeline_option(network, cli, tmp_path):
    path, _ = network
    code, out, err = cli("compile", path, "--target", "fpga", "--pipeline", "3", "-o", tmp_path / "hw", "--samples", "50")
    assert code == 0 and "PASS" in out, err
    assert json.loads((tmp_path / "hw" / "manifest.json").read_text())["options"] == {"pipeline": 3}
    assert "always @(posedge clk)" in (tmp_path / "hw" / "model.v").read_text()
    code, _, err = cli("compile", path, "--target", "asic", "--pipeline", "-1", "-o", tmp_path / "bad")
    assert code == 2 and "--pipeline -1" in err and len(err.strip().splitlines()) == 1
