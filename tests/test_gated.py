"""Every gated model traces, compiles to `cpu`, passes compile's own verification, and agrees
with PyTorch (max abs error <= 1e-4) at two batch sizes and two sequence lengths checked here."""
import numpy as np
import onnx
import pytest
import torch
from torch import nn

import gatec
from gatec.nn import (GLU, GatedConv1d, GatedConv2d, GatedMultimodalUnit, GatedResidual, MixtureOfExperts,
                      RecurrentClassifier, SwiGLU)

D = 8  # feature size of every model's input
CHECKS = [(3, 50), (17, 23)]  # (batch, sequence length or spatial size) checked against PyTorch


def seq(batch, t):  # (N, T, D)
    return [[batch, t, D]]


def flat(batch, t):  # (N, D): no sequence axis
    return [[batch, D]]


# name: (model factory, shapes(batch, t) -> input shapes, batch axis, expected dynamic axes per input)
CASES = {
    "gru": (lambda: RecurrentClassifier(D, 16, 5, "gru"), seq, 0, [[0, 1]]),
    "gru_2layer_bidirectional": (lambda: RecurrentClassifier(D, 12, 5, "gru", 2, True), seq, 0, [[0, 1]]),
    "gru_time_major": (lambda: RecurrentClassifier(D, 16, 5, "gru", batch_first=False),
                       lambda b, t: [[t, b, D]], 1, [[0, 1]]),
    "lstm": (lambda: RecurrentClassifier(D, 16, 5, "lstm"), seq, 0, [[0, 1]]),
    "lstm_2layer_bidirectional_time_major": (lambda: RecurrentClassifier(D, 12, 5, "lstm", 2, True, False),
                                             lambda b, t: [[t, b, D]], 1, [[0, 1]]),
    "lstm_bidirectional": (lambda: RecurrentClassifier(D, 12, 5, "lstm", 1, True), seq, 0, [[0, 1]]),
    "glu_chunk": (lambda: GLU(D, 16, form="chunk"), flat, 0, [[0]]),
    "glu_nn_module": (lambda: GLU(D, 16, form="nn.GLU"), flat, 0, [[0]]),
    "glu_two_linear_over_sequence": (lambda: GLU(D, 16, form="two_linear"), seq, 0, [[0, 1]]),
    "glu_chunk_over_sequence": (lambda: GLU(D, 16, form="chunk"), seq, 0, [[0, 1]]),
    "swiglu_f_silu": (lambda: SwiGLU(D, 16, form="two_linear"), flat, 0, [[0]]),
    "swiglu_chunk_over_sequence": (lambda: SwiGLU(D, 16, form="chunk"), seq, 0, [[0, 1]]),
    "swiglu_silu_module_over_sequence": (lambda: SwiGLU(D, 16, form="module"), seq, 0, [[0, 1]]),
    "gated_conv1d": (lambda: GatedConv1d(D, 12), lambda b, t: [[b, D, t]], 0, [[0, 2]]),
    "gated_conv2d": (lambda: GatedConv2d(3, 8, 5), lambda b, t: [[b, 3, t // 2, t // 2 + 3]], 0, [[0, 2, 3]]),
    "gated_multimodal_unit": (lambda: GatedMultimodalUnit(D, 6, 16, 4), lambda b, t: [[b, D], [b, 6]], 0,
                              [[0], [0]]),
    "gated_multimodal_unit_over_sequences": (lambda: GatedMultimodalUnit(D, 6, 16), lambda b, t: [[b, t, D], [b, t, 6]],
                                             0, [[0, 1], [0, 1]]),
    "mixture_of_experts_top2": (lambda: MixtureOfExperts(D, 16, experts=4, k=2), flat, 0, [[0]]),
    "mixture_of_experts_top1_over_sequence": (lambda: MixtureOfExperts(D, 16, experts=3, k=1), seq, 0, [[0, 1]]),
    "gated_residual": (lambda: GatedResidual(D, 16, gate_init=0.3), seq, 0, [[0, 1]]),
}


def random_inputs(shapes, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def torch_outputs(model, arrays):
    with torch.no_grad():
        out = model(*[torch.from_numpy(a) for a in arrays])
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("name", CASES)
def test_gated_model_compiles_and_matches_pytorch(name):
    make, shapes, batch_axis, dynamic = CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    art = gatec.compile(model, "cpu", input_shapes=shapes(2, 10), batch_axis=batch_axis, samples=64)
    verification = art.manifest["verification"]
    assert verification["ok"], verification
    assert verification["max_abs_err"] <= 1e-4
    assert [i["dynamic_axes"] for i in art.manifest["inputs"]] == dynamic
    for seed, (batch, t) in enumerate(CHECKS):
        arrays = random_inputs(shapes(batch, t), seed)
        got, want = art.run(arrays), torch_outputs(model, arrays)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            assert np.abs(g - w).max() <= 1e-4, (batch, t)


def test_mixture_of_experts_routes_to_k_experts():
    torch.manual_seed(0)
    moe = MixtureOfExperts(D, 16, experts=5, k=2).eval()
    with torch.no_grad():
        w = moe.gate_weights(torch.randn(40, D))
    assert ((w > 0).sum(-1) == 2).all()
    assert torch.allclose(w.sum(-1), torch.ones(40))


class BakesLength(nn.Module):
    """Runs at any length in PyTorch, but `int()` makes the traced graph keep the example length."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(D, 4)

    def forward(self, x):
        return self.lin(x.reshape(-1, D)).reshape(x.shape[0], int(x.shape[1]), 4).mean(1)


def test_axis_the_traced_graph_baked_is_reported_fixed():
    torch.manual_seed(0)
    model = BakesLength().eval()
    art = gatec.compile(model, "cpu", input_shapes=[[2, 10, D]], samples=64)
    assert art.manifest["inputs"][0]["dynamic_axes"] == [0]
    assert art.manifest["verification"]["ok"]
    checked = [s[0] for o in art.manifest["verification"]["outputs"] for s in o["shapes"]]
    assert {s[1] for s in checked} == {10}  # no second length is claimed
    graph_input = onnx.load(art.path / "model.onnx").graph.input[0]
    assert graph_input.type.tensor_type.shape.dim[1].dim_value == 10
    arrays = random_inputs([[5, 10, D]], 0)
    assert np.abs(art.run(arrays)[0] - torch_outputs(model, arrays)[0]).max() <= 1e-4
    with pytest.raises(Exception):
        art.run(random_inputs([[5, 11, D]], 0))
