"""LUTLayer (k-input learned truth tables): its relaxation, its discrete eval, its decomposition into
two-input gates, and LUT networks compiled to cpu, c, fpga and asic bit-exactly."""
import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import gatec
from gatec.errors import GatecError
from gatec.ir.logic import TRUTH, eval_bits
from gatec.nn import LUTLayer
from gatec.nn.logic import GroupSum, LogicLayer, ThermometerEncoder, connections, network_of_module, reads_bits
from gatec.nn.lut import decompose, expected_output, lut_connections


def all_inputs(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.uint8)


def lookup(inputs: np.ndarray, tables: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The table lookup itself: node g's output is tables[g, sum_i x[inputs[g, i]] 2**(k-1-i)]."""
    k = inputs.shape[1]
    address = (bits[:, inputs].astype(np.int64) << np.arange(k - 1, -1, -1)).sum(-1)
    return tables[np.arange(len(tables))[None], address].astype(np.uint8)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4), st.integers(0, 2), st.integers(0, 2 ** 31))
def test_decomposition_equals_the_table_on_every_input(k, nodes, spare_inputs, seed):
    rng = np.random.default_rng(seed)
    in_dim = k + spare_inputs
    inputs = rng.integers(0, in_dim, (nodes, k))  # repeated inputs allowed, as connections="random" draws
    inputs[0] = rng.permutation(in_dim)[:k]  # and one node with k distinct inputs: every table entry reached
    tables = rng.integers(0, 2, (nodes, 2 ** k))
    layers = decompose(inputs, tables)
    assert len(layers) == 2 * k - 3 and len(layers[-1]) == nodes
    bits = all_inputs(in_dim)
    assert np.array_equal(eval_bits(layers, bits), lookup(inputs, tables, bits))


def test_two_input_lut_is_one_gate_with_the_op_id_of_its_table():
    inputs = np.array([[0, 1]] * 16)
    tables = TRUTH  # op id -> its table f(0,0) f(0,1) f(1,0) f(1,1)
    (layer,) = decompose(inputs, tables)
    assert layer.ops.tolist() == list(range(16))
    assert layer.in_a.tolist() == [0] * 16 and layer.in_b.tolist() == [1] * 16


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("kind", ["random", "unique"])
def test_eval_is_the_discrete_table_lookup(k, kind):
    torch.manual_seed(k)
    layer = LUTLayer(9, 13, k=k, connections=kind).eval()
    bits = all_inputs(9)
    y = layer(torch.from_numpy(bits).float())
    tables = (layer.logits.detach().numpy() > 0).astype(np.int64)  # entries thresholded at sigmoid 0.5
    assert np.array_equal(y.numpy(), lookup(layer.inputs.numpy(), tables, bits))
    assert np.array_equal(eval_bits(network_of_module(layer).layers, bits), y.numpy())
    if kind == "unique":
        idx = layer.inputs.numpy()
        assert all(len(set(row)) == k for row in idx.tolist()) and set(idx.reshape(-1).tolist()) == set(range(9))


@pytest.mark.parametrize("kind", ["random", "unique"])
def test_two_input_connections_are_drawn_as_logic_layers_draw_them(kind):
    torch.manual_seed(3)
    a, b = lut_connections(10, 7, 2, kind).T
    torch.manual_seed(3)
    in_a, in_b = connections(10, 7, kind)
    assert torch.equal(a, in_a) and torch.equal(b, in_b)


def test_training_is_the_expectation_over_the_table_and_differentiable():
    torch.manual_seed(0)
    k, nodes = 3, 5
    layer = LUTLayer(6, nodes, k=k).train()
    x = torch.rand(7, 6, requires_grad=True)
    y = layer(x)
    p = x[:, layer.inputs]  # (N, G, k)
    t = torch.sigmoid(layer.logits)
    expected = torch.zeros(7, nodes)
    for j, bits in enumerate(itertools.product([0, 1], repeat=k)):  # entry j: input 0 most significant
        weight = torch.ones(7, nodes)
        for i, bit in enumerate(bits):
            weight = weight * (p[..., i] if bit else 1 - p[..., i])
        expected = expected + weight * t[:, j]
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)
    y.sum().backward()
    assert layer.logits.grad is not None and layer.logits.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients pass to the layer below
    # on 0/1 inputs with saturated logits the relaxation is the discrete layer
    with torch.no_grad():
        layer.logits.copy_(torch.where(layer.logits > 0, 30.0, -30.0))
    bits = torch.from_numpy(all_inputs(6)).float()
    torch.testing.assert_close(layer.train()(bits), layer.eval()(bits), rtol=0, atol=1e-6)


def test_straight_through_forward_is_the_discrete_layer_with_gradients():
    torch.manual_seed(2)
    layer = LUTLayer(8, 6, k=4, straight_through=True)
    bits = torch.from_numpy(all_inputs(8)).float().requires_grad_()
    y = layer.train()(bits)
    torch.testing.assert_close(y, layer.eval()(bits), rtol=0, atol=1e-6)
    y.sum().backward()
    assert layer.logits.grad.abs().sum() > 0 and bits.grad.abs().sum() > 0


def test_expected_output_shapes():
    p = torch.rand(4, 3, 6)
    assert expected_output(p, torch.rand(3, 64)).shape == (4, 3)


def test_bad_arguments_are_named():
    with pytest.raises(GatecError, match="k must lie in 2..6"):
        LUTLayer(10, 4, k=7)
    with pytest.raises(GatecError, match="unknown connections"):
        LUTLayer(10, 4, connections="dense")
    with pytest.raises(GatecError, match="at least k=6 inputs"):
        LUTLayer(4, 4, k=6, connections="unique")


def lut_network(k: int, in_dim: int = 24, encoder: bool = False, seed: int = 0) -> torch.nn.Module:
    """Random tables and connections; a LogicLayer in the middle when k is odd (both layer kinds mix)."""
    torch.manual_seed(seed)
    head = [ThermometerEncoder(in_dim // 3, 3).fit(torch.rand(50, in_dim // 3) * 16)] if encoder else []
    middle = LogicLayer(30, 30) if k % 2 else LUTLayer(30, 30, k=k, connections="unique")
    return torch.nn.Sequential(*head, LUTLayer(in_dim, 30, k=k), middle, LUTLayer(30, 20, k=k), GroupSum(4, 2.0)).eval()


def check_targets(net, targets, tmp_path, in_features: int) -> dict:
    figures = {}
    for target in targets:
        art = gatec.compile(net, target, tmp_path / target, input_shapes=[[1, in_features]], samples=200)
        v = art.manifest["verification"]
        assert v["ok"] and v["max_abs_err"] == 0, (target, v)
        if target == "fpga":
            figures = json.loads((art.path / "resources.json").read_text())["synthesized_by_yosys"]
    return figures


CI_TARGETS = {2: ["cpu", "c"], 3: ["c", "fpga"], 4: ["cpu", "asic"], 5: ["cpu"], 6: ["c", "fpga", "asic"]}  # all four: slow test


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_random_lut_networks_compile_bit_exactly(k, tmp_path):
    net = lut_network(k, encoder=k in (4, 6))
    assert reads_bits(net) == (k not in (4, 6))  # the emulator draws bits for it, or values across the encoder
    check_targets(net, CI_TARGETS[k], tmp_path, 8 if k in (4, 6) else 24)


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_random_lut_networks_compile_bit_exactly_everywhere(k, tmp_path):
    for encoder in (False, True):
        check_targets(lut_network(k, encoder=encoder, seed=k), ["cpu", "c", "fpga", "asic"],
                      tmp_path / str(encoder), 8 if encoder else 24)


def test_a_six_input_lut_is_one_lut6_after_synthesis(tmp_path):
    """yosys packs each decomposed node back into one LUT6 (the counters of GroupSum aside)."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(LUTLayer(40, 40, k=6, connections="unique"), GroupSum(40, 1.0)).eval()
    figures = check_targets(net, ["fpga"], tmp_path, 40)
    assert figures["luts"] - figures["groupsum_luts_alone"] <= 40


def trained_digits_network(epochs: int):
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x[:600], dtype=torch.float32), torch.tensor(y[:600])
    torch.manual_seed(0)
    enc = ThermometerEncoder(64, 2).fit(x)
    net = torch.nn.Sequential(enc, LUTLayer(128, 120, k=6, connections="unique"), LUTLayer(120, 60, k=4),
                              GroupSum(10, 1.5))
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x).argmax(-1) == y).float().mean().item()
    return net.eval(), x, accuracy


def test_briefly_trained_network_compiles_bit_exactly(tmp_path):
    net, x, accuracy = trained_digits_network(epochs=4)
    assert accuracy > 0.5  # it learned something (chance is 0.1)
    art = gatec.compile(net, "cpu", tmp_path / "cpu", input_shapes=[[1, 64]], data=[x.numpy()[:200]], samples=100)
    assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0
    scores = art.run(x.numpy())[0]
    with torch.no_grad():
        assert np.array_equal(scores, net(x).numpy())


@pytest.mark.slow
def test_trained_network_compiles_bit_exactly_to_every_target(tmp_path):
    net, x, _ = trained_digits_network(epochs=10)
    for target in ("cpu", "c", "fpga", "asic"):
        art = gatec.compile(net, target, tmp_path / target, input_shapes=[[1, 64]], data=[x.numpy()[:300]])
        assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0, target


def test_pickled_lut_network_loads_and_verifies(tmp_path, cli):
    path = tmp_path / "lut.pt"
    torch.save(lut_network(5), path)  # a whole pickled module: loaded with weights_only=True
    code, out, err = cli("verify", path, "--targets", "cpu", "--input-shape", "1,24", "--samples", "64")
    assert code == 0, err


@pytest.mark.slow
def test_digits_lut_example_quick(tmp_path):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
    try:
        import digits_lut
    finally:
        sys.path.pop(0)
    results = digits_lut.main(["--quick", "--out", str(tmp_path / "out"), "--results", str(tmp_path / "res")])
    assert len(results["rows"]) == 3 and all(r["verified_bit_exact"] for r in results["rows"])
    assert all(r["fpga_accuracy"] == pytest.approx(r["test_accuracy"], abs=1e-6) for r in results["rows"])  # float32 mean in torch
    assert (tmp_path / "res.md").exists() and (tmp_path / "res.json").exists()


@pytest.mark.parametrize("k", [2, 4, 6])
def test_learned_connections_train_choose_and_compile_bit_exactly(k, tmp_path):
    """connections="learned": the candidates' weights get gradients and training moves the choice;
    eval() reads each input's heaviest candidate, a fixed input, and compiles bit-exactly."""
    torch.manual_seed(k)
    net = torch.nn.Sequential(LUTLayer(24, 30, k=k, connections="learned", candidates=3), GroupSum(3, 2.0))
    layer = net[0]
    x = (torch.rand(256, 24) > 0.5).float()
    y = (x[:, 0] + 2 * x[:, 5]).long() % 3  # a target some candidates explain and others do not
    before = layer.chosen_inputs().clone()
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net.train()
    for step in range(30):
        layer.straight_through = step >= 20
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        assert layer.connection_logits.grad.abs().sum() > 0
        opt.step()
    net.eval()
    chosen = layer.chosen_inputs()
    assert not torch.equal(chosen, before) and torch.equal(layer.inputs, chosen)
    assert bool((layer.candidates == chosen[..., None]).any(-1).all())  # each choice is one of its candidates
    address = (x[:, chosen] * 2 ** torch.arange(k - 1, -1, -1)).sum(-1).long()
    with torch.no_grad():
        np.testing.assert_array_equal(layer(x).numpy(), layer.tables.gather(1, address.T).T.float().numpy())
    for target in ("cpu", "c", "fpga"):
        art = gatec.compile(net, target, tmp_path / target, input_shapes=[[1, 24]], data=[x.numpy()])
        assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0
        with torch.no_grad():
            np.testing.assert_array_equal(art.run(x.numpy())[0], net(x).numpy())
