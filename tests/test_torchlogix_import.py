"""torchlogix 0.2.2 models, made by torchlogix itself and saved with torch.save as a user would,
load in gatec without torchlogix (its circuit.py needs Python 3.12; gatec runs on 3.11) and compile
to every logic target bit-exactly against torchlogix's own eval output.

The models come from tests/torchlogix_side_models.py, run in torchlogix's Python 3.12 venv
(benchmarks/bench_logic.py's, set up there on first use: ~/.cache/gatec/torchlogix-py312 or
$GATEC_TORCHLOGIX_VENV), which also writes torchlogix's outputs and its Circuit's gate counts.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gatec
from gatec.errors import GatecError
from gatec.nn.logic import GroupSum

REPO = Path(__file__).resolve().parents[1]
SHAPES = {"dense": [1, 64], "conv": [1, 1, 8, 8], "thermometer": [1, 16]}


def torchlogix_python():
    spec = importlib.util.spec_from_file_location("bench_logic", REPO / "benchmarks" / "bench_logic.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.torchlogix_venv()  # (python, record) or (None, why not)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    python, why = torchlogix_python()
    if python is None:
        pytest.skip(f"no torchlogix venv on this machine: {why}")
    folder = tmp_path_factory.mktemp("torchlogix")
    subprocess.run([str(python), str(REPO / "tests" / "torchlogix_side_models.py"), str(folder)],
                   check=True, capture_output=True, timeout=600)
    return folder


def expected(saved, name):
    return np.load(saved / f"{name}_x.npy"), np.load(saved / f"{name}_y.npy")


@pytest.mark.parametrize("target", ["cpu", "c", "fpga"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_compiles_bit_exact_against_torchlogix(saved, tmp_path, name, target):
    art = gatec.compile(saved / f"{name}.pt", target, tmp_path / target, input_shapes=[SHAPES[name]])
    assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0
    x, y = expected(saved, name)
    np.testing.assert_array_equal(art.run(x)[0], y)
    assert "torchlogix" not in sys.modules  # read by class name and attributes, never imported


def test_adopted_layers_are_gatec_logic_layers(saved):
    from gatec.frontend.pickled import load_pickled_module
    from gatec.nn import adopt
    from gatec.nn.logic import LogicLayer
    model = adopt(load_pickled_module(saved / "conv.pt", [])).eval()
    assert all(type(m).__module__.startswith(("torch.", "gatec.")) for m in model.modules())
    assert sum(isinstance(m, LogicLayer) for m in model.modules()) == 2 + 2 + 3 + 2 + 1  # conv, pool, conv, pool, dense
    x, y = expected(saved, "conv")
    with torch.no_grad():
        np.testing.assert_array_equal(model(torch.from_numpy(x)).numpy(), y)


def test_gate_counts_against_torchlogix_circuit(saved, tmp_path):
    """gatec -O1 computes no more gates than torchlogix's Circuit.simplify() leaves, on the same
    networks (printed: -s). Both fold constant outputs into the class sums' offset."""
    circuits = json.loads((saved / "circuits.json").read_text())
    for name in ("dense", "conv"):
        gates = gatec.compile(saved / f"{name}.pt", "cpu", tmp_path / name, input_shapes=[SHAPES[name]],
                              opt_level=1).manifest["gates"]
        print(f"{name}: gatec -O1 {gates['before']} -> {gates['computed']} gates computed ({gates['two_input']} "
              f"two-input, {gates['inverters']} inverters; {gates['constant_outputs']} constant outputs); "
              f"torchlogix Circuit {circuits[name]}")
        assert gates["computed"] == gates["two_input"] + gates["inverters"]
        assert gates["computed"] <= circuits[name]["simplified"] < circuits[name]["traced"]


def bench_simplify():
    spec = importlib.util.spec_from_file_location("bench_simplify", REPO / "benchmarks" / "bench_simplify.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.parametrize("conv", [0, 8])
def test_networks_torchlogix_trained_compile_and_count_fewer_gates(tmp_path, conv):
    """Digits networks torchlogix trained itself (benchmarks/bench_simplify.py's, small; dense, and
    with a LogicConv2d and OR pooling first): each compiles at -O1 and -O2 to cpu, c and fpga,
    verified, with class counts equal to torchlogix's eval output on the test split, and gatec -O1
    computes no more gates than Circuit.simplify() leaves."""
    python, why = torchlogix_python()
    if python is None:
        pytest.skip(f"no torchlogix venv on this machine: {why}")
    bench = bench_simplify()
    row = bench.compare(python, bench.digits_bits(), 2 if not conv else 1, 500, 10, tmp_path / "net", conv=conv,
                        targets=("cpu", "c", "fpga"))
    theirs, ours = row["torchlogix_simplified"], row["gatec_O1"]
    print(f"torchlogix simplify {theirs}; gatec -O1 {ours}")
    assert ours["equals_torchlogix_eval"] and row["gatec_O2"]["equals_torchlogix_eval"]
    assert row["test_accuracy"] > 0.5  # trained, not random: many wires and inverters to remove
    assert 0 < ours["computed"] <= theirs["two_input"] + theirs["inverters"] < row["torchlogix_traced"]["gates"]


def test_residual_block_is_refused_by_name(saved, tmp_path):
    with pytest.raises(GatecError, match="torchlogix ResidualLogicBlock: gatec does not map residual blocks") as e:
        gatec.compile(saved / "residual.pt", "cpu", tmp_path / "out", input_shapes=[[1, 2, 8, 8]])
    assert "\n" not in str(e.value)


def test_group_sum_without_logic_layers_is_one_line(tmp_path):
    """A GroupSum after layers traced as arithmetic (how torchlogix's layers traced before gatec
    knew them) made -O1's logic passes fail with an IndexError; now one line names the node."""
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), GroupSum(2, 1.0)).eval()
    with pytest.raises(GatecError, match="no LogicLayer feeds it") as e:
        gatec.compile(model, "cpu", tmp_path / "out", input_shapes=[[1, 8]], opt_level=1)
    assert "\n" not in str(e.value)
