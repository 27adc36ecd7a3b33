"""Pickled logic networks read without torch (gatec/frontend/logic_pickle.py): the same IR as
tracing, byte for byte; anything else left to torch's path; a first result with no torch import."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gatec
from gatec.frontend import logic_pickle, pickled
from gatec.frontend.trace import from_module
from gatec.ir.logic import network_of_model
from gatec.nn.logic import GroupSum, LogicLayer

ROOT = Path(__file__).resolve().parent.parent


def traced_ir(path: Path, shape):
    return from_module(pickled.load_pickled_module(path, ()), [shape], 0, {"path": path.name}).ir


def same_ir(a, b) -> bool:
    return (a.model.SerializeToString() == b.model.SerializeToString()
            and [vars(s) for s in a.inputs] == [vars(s) for s in b.inputs]
            and [vars(s) for s in a.outputs] == [vars(s) for s in b.outputs])


@pytest.mark.parametrize("flatten, group_sum, light", list(itertools.product([False, True], repeat=3)))
def test_the_ir_is_the_traced_one_byte_for_byte(tmp_path, flatten, group_sum, light):
    torch.manual_seed(int(flatten) + 2 * int(group_sum) + 4 * int(light))
    widths = [20, 33, 17, 30]
    layers = [LogicLayer(i, o, light=light, connections="unique" if light else "random")
              for i, o in zip(widths, widths[1:])]
    model = nn_sequential(([torch.nn.Flatten()] if flatten else []) + layers + ([GroupSum(5, 3.0)] if group_sum else []))
    model.train(bool(group_sum))  # a model saved in training mode still compiles its eval form
    path = tmp_path / "m.pt"
    torch.save(model, path)
    ir = logic_pickle.logic_ir(path, [[4, 20]], 0, {"path": path.name})
    assert ir is not None
    assert same_ir(ir, traced_ir(path, [4, 20]))
    # and the gates are the model's: eval's ops, read from the IR
    net = network_of_model(ir.model)
    assert [list(layer.ops) for layer in net.layers] == [m.eval().ops.tolist() for m in layers]


def nn_sequential(modules):
    return torch.nn.Sequential(*modules)


class Wrapped(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(LogicLayer(8, 8), GroupSum(2))

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("case", ["nested", "custom_module", "other_width", "three_axes", "relu", "state_dict"])
def test_other_files_take_torchs_path(tmp_path, case):
    torch.manual_seed(0)
    shape = [1, 8]
    obj = torch.nn.Sequential(LogicLayer(8, 8), GroupSum(2))
    if case == "nested":
        obj = torch.nn.Sequential(torch.nn.Sequential(LogicLayer(8, 8)), GroupSum(2))
    elif case == "custom_module":
        obj = Wrapped()
    elif case == "other_width":
        shape = [1, 9]  # the first layer reads 8 of 9 features: torch's tracing decides what that means
    elif case == "three_axes":
        shape = [1, 2, 4]
        obj = torch.nn.Sequential(torch.nn.Flatten(), LogicLayer(8, 8), GroupSum(2))
    elif case == "relu":
        obj = torch.nn.Sequential(LogicLayer(8, 8), torch.nn.ReLU())
    elif case == "state_dict":
        obj = obj.state_dict()
    path = tmp_path / "m.pt"
    torch.save(obj, path)
    assert logic_pickle.logic_ir(path, [shape], 0, {}) is None


def test_reference_is_the_pytorch_module_and_verification_uses_it(tmp_path):
    torch.manual_seed(3)
    model = torch.nn.Sequential(LogicLayer(16, 40), LogicLayer(40, 30), GroupSum(3, 2.0)).eval()
    path = tmp_path / "m.pt"
    torch.save(model, path)
    source = gatec.load(str(path), input_shapes=[[1, 16]])
    bits = np.random.default_rng(0).integers(0, 2, (64, 16)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(bits)).numpy()
    assert np.array_equal(source.reference([bits])[0], want)
    art = gatec.compile(str(path), "cpu", tmp_path / "out", input_shapes=[[1, 16]])  # verifies against the module
    assert np.array_equal(art.run(bits.astype(np.uint8))[0], want)


def test_first_result_from_a_pt_file_imports_no_torch(tmp_path, monkeypatch):
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Flatten(), LogicLayer(24, 64), LogicLayer(64, 60), GroupSum(6)).eval()
    path = tmp_path / "m.pt"
    torch.save(model, path)
    bits = np.random.default_rng(1).integers(0, 2, (50, 24)).astype(np.uint8)
    np.save(tmp_path / "bits.npy", bits)
    script = ("import sys, numpy as np, gatec\n"
              "art = gatec.compile(sys.argv[1], 'cpu', sys.argv[2], input_shapes=[[1, 24]], verify=False)\n"
              "np.save(sys.argv[3], art.run(np.load(sys.argv[4]))[0])\n"
              "print('torch' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "a"), str(tmp_path / "y.npy"),
                          str(tmp_path / "bits.npy")], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False"]
    with torch.no_grad():
        want = model(torch.from_numpy(bits.astype(np.float32))).numpy()
    assert np.array_equal(np.load(tmp_path / "y.npy"), want)
    # the artifact is the one torch's path builds from the same file, byte for byte
    monkeypatch.setattr(logic_pickle, "logic_ir", lambda *args: None)
    gatec.compile(str(path), "cpu", tmp_path / "b", input_shapes=[[1, 24]], verify=False)
    files = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    assert files and files == {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*")
                               if p.is_file()}


def test_netlist_output_bits_equal_gate_by_gate_evaluation():
    """output_bits works on 64 samples per word: sample counts around word edges, every op."""
    rng = np.random.default_rng(5)
    from gatec.ir.logic import TRUTH
    from gatec.ir.netlist import Netlist
    for n_in, gates, n in [(3, 16, 1), (6, 50, 63), (6, 50, 64), (9, 120, 65), (12, 300, 200)]:
        a = np.array([rng.integers(0, n_in + g) for g in range(gates)])
        b = np.array([rng.integers(0, n_in + g) for g in range(gates)])
        op = np.arange(gates, dtype=np.uint8) % 16
        net = Netlist(n_in, a, b, op, rng.integers(0, n_in + gates, 11))
        bits = rng.integers(0, 2, (n, n_in)).astype(np.uint8)
        values = [list(row) for row in bits]
        for row in values:
            for g in range(gates):
                row.append(int(TRUTH[op[g], 2 * row[a[g]] + row[b[g]]]))
        want = np.array([[row[o] for o in net.outputs] for row in values], np.uint8)
        assert np.array_equal(net.output_bits(bits), want)


def test_a_tensor_larger_than_its_storage_is_left_to_torch(tmp_path):
    """The reader's strided views check their bounds (numpy's as_strided does not): a file whose
    tensor claims more elements than its storage holds is not read past the storage's end."""
    assert logic_pickle.rebuild_tensor(np.arange(6, dtype=np.float32), 0, (2, 3), (3, 1)).tolist() == \
        [[0, 1, 2], [3, 4, 5]]
    assert logic_pickle.rebuild_tensor(np.arange(6, dtype=np.int64), 1, (2, 2), (1, 2)).tolist() == [[1, 3], [2, 4]]
    for args in [(0, (2, 4), (4, 1)), (5, (2,), (1,)), (0, (2,), (-1,)), (0, (2, 2), (1,))]:
        with pytest.raises(logic_pickle.Unknown):
            logic_pickle.rebuild_tensor(np.arange(6, dtype=np.float32), *args)
    torch.manual_seed(0)
    path = tmp_path / "m.pt"
    torch.save(torch.nn.Sequential(LogicLayer(8, 8), GroupSum(2)), path)
    import zipfile
    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data/0"):  # the first storage (the weights) cut short
                data = data[: len(data) // 2]
            dst.writestr(item, data)
    assert logic_pickle.logic_ir(damaged, [[1, 8]], 0, {}) is None
