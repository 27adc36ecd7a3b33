"""Logic layers in PyTorch: the 16 ops, the relaxation, training options, LogicConv2d, adopt()."""
import itertools

import numpy as np
import pytest
import torch

import gatec

from gatec.errors import GatecError
from gatec.ir.logic import COEFFS, TRUTH, eval_bits, run
from gatec.nn.logic import (network_of_module, GroupSum, LogicConv2d, LogicLayer, ThermometerEncoder, ThresholdEncoder, adopt,
                            reads_bits)

# The op table of docs/FACTS.md, written out: op id -> (name, truth table f(0,0) f(0,1) f(1,0) f(1,1), relaxation)
TABLE = {
    0: ("0000", lambda a, b: 0 * a), 1: ("0001", lambda a, b: a * b), 2: ("0010", lambda a, b: a - a * b),
    3: ("0011", lambda a, b: a), 4: ("0100", lambda a, b: b - a * b), 5: ("0101", lambda a, b: b),
    6: ("0110", lambda a, b: a + b - 2 * a * b), 7: ("0111", lambda a, b: a + b - a * b),
    8: ("1000", lambda a, b: 1 - a - b + a * b), 9: ("1001", lambda a, b: 1 - a - b + 2 * a * b),
    10: ("1010", lambda a, b: 1 - b), 11: ("1011", lambda a, b: 1 - b + a * b), 12: ("1100", lambda a, b: 1 - a),
    13: ("1101", lambda a, b: 1 - a + a * b), 14: ("1110", lambda a, b: 1 - a * b), 15: ("1111", lambda a, b: 1 + 0 * a),
}


def layer_with_ops(ops, in_a, in_b, in_dim):
    layer = LogicLayer(in_dim, len(ops))
    with torch.no_grad():
        layer.weights.copy_(torch.nn.functional.one_hot(torch.tensor(ops), 16).float() * 10)
        layer.in_a.copy_(torch.tensor(in_a))
        layer.in_b.copy_(torch.tensor(in_b))
    return layer


def test_truth_tables_and_relaxations():
    a, b = np.meshgrid(np.linspace(0, 1, 7), np.linspace(0, 1, 7))
    for op, (table, relax) in TABLE.items():
        assert "".join(map(str, TRUTH[op])) == table
        assert [relax(x, y) for x, y in [(0, 0), (0, 1), (1, 0), (1, 1)]] == [int(t) for t in table]
        c0, c1, c2, c3 = COEFFS[op]
        np.testing.assert_allclose(c0 + c1 * a + c2 * b + c3 * a * b, relax(a, b), atol=1e-12)
    # the numpy gate list and the eval layer give the table on all four input pairs
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    ops = np.arange(16)
    bits = eval_bits([type("L", (), {"in_a": np.zeros(16, int), "in_b": np.ones(16, int), "ops": ops,
                                     "__len__": lambda s: 16})()], x)
    assert np.array_equal(bits.T, TRUTH)
    layer = layer_with_ops(list(range(16)), [0] * 16, [1] * 16, 2).eval()
    assert np.array_equal(layer(torch.tensor(x, dtype=torch.float32)).numpy().T, TRUTH)


def test_training_relaxation_is_softmax_mixture():
    torch.manual_seed(0)
    layer = LogicLayer(5, 7).train()
    x = torch.rand(11, 5)
    a, b = x[:, layer.in_a], x[:, layer.in_b]
    p = torch.softmax(layer.weights, -1)
    expected = sum(p[:, i] * TABLE[i][1](a, b) for i in range(16))
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    layer(x).sum().backward()
    assert layer.weights.grad is not None and layer.weights.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [{}, {"light": True}, {"gumbel": True}, {"light": True, "gumbel": True},
                                     {"residual_init": 5.0}, {"connections": "unique"}])
def test_eval_is_discrete_and_matches_gate_list(options):
    torch.manual_seed(1)
    layer = LogicLayer(12, 40, **options)
    x = torch.randint(0, 2, (300, 12)).float()
    y = layer.eval()(x)
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
    ops = layer.ops.numpy()
    assert np.array_equal(y.numpy(), eval_bits([network_of_module(layer).layers[0]], x.numpy()))
    if options.get("light"):  # the discrete op is the thresholded truth table
        t = (layer.weights.detach() > 0).long().numpy()
        assert np.array_equal(TRUTH[ops], t)
    if options.get("residual_init"):
        assert (ops == 3).all()
    if options.get("connections") == "unique":
        assert (layer.in_a != layer.in_b).all() and len(set(layer.in_a.tolist() + layer.in_b.tolist())) == 12
    layer.train()
    out = layer(x)
    out.sum().backward()
    assert layer.weights.grad.abs().sum() > 0
    if options.get("gumbel"):  # straight-through: the forward value is a hard op on bits
        assert set(torch.unique(out.detach()).tolist()) <= {0.0, 1.0}


def test_bad_arguments_raise_gatec_error():
    with pytest.raises(GatecError):
        LogicLayer(0, 4)
    with pytest.raises(GatecError):
        LogicLayer(4, 4, connections="fancy")
    with pytest.raises(GatecError):
        GroupSum(3)(torch.zeros(2, 10))


def conv_by_loops(conv: LogicConv2d, x: np.ndarray) -> np.ndarray:
    """Direct evaluation: per image, output channel and position, walk the tree, then 2x2 max (OR)."""
    C, H, W = conv.in_shape
    k = int(round((conv.tree[0].in_dim // C) ** 0.5))
    ch = conv.out_shape[0]
    Ho, Wo = H - k + 1, W - k + 1
    x = x.reshape(-1, C, H, W)
    depth = len(conv.tree)

    def gate(op, a, b):
        return int(TRUTH[op][2 * a + b])

    out = np.zeros((len(x), ch, Ho, Wo), dtype=np.int64)
    for n, o, py, px in itertools.product(range(len(x)), range(ch), range(Ho), range(Wo)):
        patch = x[n, :, py:py + k, px:px + k].reshape(-1).astype(int)
        leaves = 2 ** (depth - 1)
        level = conv.tree[0]
        vals = [gate(int(level.ops[g]), patch[level.in_a[g]], patch[level.in_b[g]])
                for g in range(o * leaves, (o + 1) * leaves)]
        for level in conv.tree[1:]:
            below, half = o * len(vals), len(vals) // 2  # this channel's gates in the level below / here
            vals = [gate(int(level.ops[g]), vals[int(level.in_a[g]) - below], vals[int(level.in_b[g]) - below])
                    for g in range(o * half, (o + 1) * half)]
        out[n, o, py, px] = vals[0]
    pooled = out[:, :, :Ho // 2 * 2, :Wo // 2 * 2].reshape(len(x), ch, Ho // 2, 2, Wo // 2, 2).max((3, 5))
    return pooled.reshape(len(x), -1)


def test_logic_conv2d_equals_loops():
    torch.manual_seed(2)
    conv = LogicConv2d((2, 6, 7), channels=3, kernel_size=3, depth=3).eval()
    x = torch.randint(0, 2, (4, 2, 6, 7)).float()
    expected = conv_by_loops(conv, x.numpy())
    got = conv(x)
    assert conv.out_shape == (3, 2, 2) and got.shape == (4, 12)
    assert np.array_equal(got.numpy(), expected)
    # the gate-list form (the one exported) gives the same
    assert np.array_equal(run(network_of_module(conv), x.flatten(1).numpy()), expected)
    # training mode runs and learns through the shared tree weights
    conv.train()
    conv(x).sum().backward()
    assert all(level.weights.grad is not None for level in conv.tree)


def test_encoders_fit_and_encode():
    x = np.random.default_rng(0).uniform(0, 16, (500, 3)).astype(np.float32)
    therm = ThermometerEncoder(3, 3, "uniform").fit(x)
    t = therm.thresholds.numpy()
    lo, hi = x.min(0), x.max(0)
    np.testing.assert_allclose(t, lo[:, None] + (hi - lo)[:, None] * np.array([0.25, 0.5, 0.75]), rtol=1e-6)
    bits = therm(torch.from_numpy(x)).numpy().reshape(500, 3, 3)
    assert np.array_equal(bits, (x[:, :, None] > t[None]).astype(np.float32))
    assert (np.diff(bits, axis=2) <= 0).all()  # a thermometer code: ones, then zeros
    q = ThermometerEncoder(3, 4, "quantile").fit(x)
    share = q(torch.from_numpy(x)).numpy().reshape(500, 3, 4).mean(0)
    np.testing.assert_allclose(share, np.tile([0.8, 0.6, 0.4, 0.2], (3, 1)), atol=0.01)
    thr = ThresholdEncoder(3).fit(x)
    assert abs(thr(torch.from_numpy(x)).numpy().mean() - 0.5) < 0.01


def test_adopt_difflogic_layout_nested():
    from difflogic_standin import GroupSum as DGroupSum, LogicLayer as DLogicLayer
    torch.manual_seed(3)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Flatten(), DLogicLayer(20, 30), DLogicLayer(30, 40))
            self.head = DGroupSum(4, 2.5)

        def forward(self, x):
            return self.head(self.body(x))

    net = Net().eval()
    x = torch.randint(0, 2, (200, 20)).float()
    expected = net(x)
    assert reads_bits(net)
    adopted = adopt(net)
    kinds = [type(m) for m in adopted.modules()]
    assert kinds.count(LogicLayer) == 2 and kinds.count(GroupSum) == 1
    assert not any(type(m).__module__ == "difflogic_standin" for m in adopted.modules())
    assert torch.equal(adopted(x), expected)
    own = torch.nn.Sequential(LogicLayer(4, 4))
    assert adopt(own) is own and adopt(own)[0] is own[0]
    top = adopt(DGroupSum(2, 1.0))
    assert isinstance(top, GroupSum) and top.k == 2
    assert not reads_bits(torch.nn.Sequential(ThermometerEncoder(3, 2), LogicLayer(6, 4)))


@pytest.mark.parametrize("target", ["cpu", "c", "fpga", "gpu"])
def test_a_network_without_group_sum_outputs_its_bits_on_every_target(target, tmp_path):
    """Logic layers alone (a learned encoder, a feature extractor): each output bit is a class of
    one, so the artifact gives the bits themselves (it summed them into one count before)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(LogicLayer(16, 32), LogicLayer(32, 8)).eval()
    art = gatec.compile(model, target, tmp_path / target, input_shapes=[[1, 16]])
    x = (np.random.default_rng(1).random((40, 16)) > 0.5).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = art.run([x])[0]
    assert got.shape == (40, 8) and set(np.unique(want)) <= {0.0, 1.0}
    np.testing.assert_array_equal(got, want)
