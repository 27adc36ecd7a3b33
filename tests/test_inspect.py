"""`gatec inspect`: parameters, MACs and gate counts against figures computed from the torch modules."""
import json

import pytest
import torch
from torch import nn

import gatec
from gatec.nn import GLU, GatedConv1d, GatedMultimodalUnit, GatedResidual, MixtureOfExperts, RecurrentClassifier, SwiGLU
from gatec.ir.summary import inspect_ir


def summary(model, shapes, batch_axis=0):
    return inspect_ir(gatec.load(model.eval(), shapes, batch_axis=batch_axis).ir)


def recurrent_macs(rnn, steps, batch):
    """Multiply-accumulates of nn.GRU/nn.LSTM: per step, sample, layer and direction, each gate's
    input and hidden matrices."""
    gates = 3 if isinstance(rnn, nn.GRU) else 4
    dirs = 2 if rnn.bidirectional else 1
    total = 0
    for layer in range(rnn.num_layers):
        inputs = rnn.input_size if layer == 0 else rnn.hidden_size * dirs
        total += steps * batch * dirs * gates * rnn.hidden_size * (inputs + rnn.hidden_size)
    return total


MODELS = {
    "gru": (lambda: RecurrentClassifier(8, 16, 5, "gru"), [[3, 20, 8]], 0),
    "lstm_2layer_bidirectional_time_major": (lambda: RecurrentClassifier(8, 12, 5, "lstm", 2, True, False),
                                             [[20, 3, 8]], 1),
    "glu_chunk": (lambda: GLU(8, 16, form="chunk"), [[3, 8]], 0),
    "swiglu": (lambda: SwiGLU(8, 16, form="module"), [[3, 20, 8]], 0),
    "gated_conv1d": (lambda: GatedConv1d(4, 8), [[3, 4, 20]], 0),
    "gmu": (lambda: GatedMultimodalUnit(6, 10, 16, 4), [[3, 6], [3, 10]], 0),
    "moe": (lambda: MixtureOfExperts(8, 16, 4, 2), [[3, 8]], 0),
    "gated_residual": (lambda: GatedResidual(8, 16), [[3, 20, 8]], 0),
    "batchnorm_mlp": (lambda: nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)),
                      [[3, 8]], 0),
}


@pytest.mark.parametrize("name", MODELS)
def test_parameters_equal_the_torch_count(name):
    make, shapes, batch_axis = MODELS[name]
    torch.manual_seed(0)
    model = make()
    assert summary(model, shapes, batch_axis)["parameters"] == sum(p.numel() for p in model.parameters())


def test_macs_of_linear_layers():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    batch = 3
    expected = sum(batch * m.in_features * m.out_features for m in model if isinstance(m, nn.Linear))
    assert summary(model, [[batch, 8]])["macs"] == expected


@pytest.mark.parametrize("cell, layers, bidirectional", [("gru", 1, False), ("gru", 2, True), ("lstm", 2, False)])
def test_macs_of_recurrent_classifier(cell, layers, bidirectional):
    model = RecurrentClassifier(8, 16, 5, cell, layers, bidirectional)
    batch, steps = 3, 20
    expected = recurrent_macs(model.rnn, steps, batch) + batch * model.head.in_features * model.head.out_features
    assert summary(model, [[batch, steps, 8]])["macs"] == expected


@pytest.mark.parametrize("cell, per_unit", [("gru", 3), ("lstm", 4)])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_recurrent_gate_counts(cell, per_unit, layers, bidirectional):
    hidden = 12
    info = summary(RecurrentClassifier(8, hidden, 5, cell, layers, bidirectional), [[3, 20, 8]])
    dirs = 2 if bidirectional else 1
    rows = [g for g in info["gated_layers"] if g["type"] == cell.upper()]
    assert [g["gates"] for g in rows] == [per_unit * hidden * dirs] * layers


@pytest.mark.parametrize("model, shapes, kind, gates", [
    (GLU(8, 16, form="chunk"), [[3, 8]], "sigmoid gate", 16),
    (GLU(8, 24, form="nn.GLU"), [[3, 20, 8]], "sigmoid gate", 24),
    (SwiGLU(8, 16, form="two_linear"), [[3, 8]], "SiLU gate", 16),
    (GatedConv1d(4, 12), [[3, 4, 20]], "sigmoid gate", 12),
    (GatedResidual(8, 16), [[3, 8]], "sigmoid gate", 8),
    (MixtureOfExperts(8, 16, experts=5, k=2), [[3, 8]], "top-k router", 5),
])
def test_gated_layers_of_feed_forward_blocks(model, shapes, kind, gates):
    rows = summary(model, shapes)["gated_layers"]
    assert [(g["type"], g["gates"]) for g in rows] == [(kind, gates)]


def test_plain_silu_is_not_a_gate():
    info = summary(nn.Sequential(nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 4)), [[3, 8]])
    assert info["gated_layers"] == []


def test_ops_and_output_shape():
    info = summary(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), [[3, 8]])
    assert info["ops"] == {"Gemm": 2, "Relu": 1}
    assert info["outputs"][0]["shape"] == [3, 4]


def test_cli_inspect_writes_json(cli, tmp_path):
    model = RecurrentClassifier(8, 16, 5, "gru")
    path = tmp_path / "gru.pt"
    torch.jit.save(torch.jit.script(model), path)
    code, out, _ = cli("inspect", path, "--input-shape", "2,20,8", "--json", tmp_path / "info.json")
    assert code == 0
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert f"{info['parameters']:,}" in out and "GRU" in out
