"""Target fpga (hls4ml) for the structure ops of ordinary PyTorch models: torch.cat on any axis
(convolution channels included), torch.maximum / minimum and ONNX Mean (hls4ml Merge), nn.Linear
over a sequence (a per-position Dense: an hls4ml Conv1D of width 1), crops of any axis (hls4ml
Cropping1D/2D) and flips and strides (a 0/1 selection). Each model is compiled to `fpga`
(verified by hls4ml's C simulation) and run again on fresh inputs against the model within the
artifact's own tolerance; what has no exact form is refused with one line naming the node, the op
and why. `python -m pytest -m slow tests/test_hls_structure.py` runs the larger half."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import gatec
from gatec.errors import GatecError
import hls_models
from test_hls_layers import seeded

SAMPLES = 200


class Branches(nn.Module):
    """Two convolution branches of one input: joined on the channels, their elementwise maximum and
    minimum, a residual with the input (ONNX order against channels-last)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv1d(3, 4, 3, padding=1), nn.Conv1d(3, 4, 5, padding=2)
        self.skip = nn.Conv1d(3, 3, 3, padding=1)
        self.mix = nn.Conv1d(11, 6, 3)
        self.head = nn.Linear(6 * 10 + 4 * 12, 5)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        h = torch.cat([a, b, x + self.skip(x)], dim=1)  # three parts: (N, 11, L)
        h = torch.relu(self.mix(h))
        m = torch.maximum(a, b) - torch.minimum(a, torch.relu(b))
        return self.head(torch.cat([h.flatten(1), m.flatten(1)], dim=1))


class SequenceLinear(nn.Module):
    """nn.Linear over a sequence (N, T, F) -> (N, T, H), then flattened; and a convolution's output
    permuted to (N, L, C) through another Linear."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(5, 8)
        self.conv = nn.Conv1d(8, 6, 3)
        self.per_step = nn.Linear(6, 4)
        self.head = nn.Linear(4 * 4, 3)

    def forward(self, x):  # x: (N, T=6, F=5)
        h = torch.tanh(self.embed(x))  # (N, 6, 8)
        c = self.conv(h.transpose(1, 2))  # (N, 6, 4)
        y = torch.relu(self.per_step(c.permute(0, 2, 1)))  # (N, 4, 4)
        return self.head(y.flatten(1))


class CropFlip1d(nn.Module):
    """x[:, :, 2:-1] crops, torch.flip of the time axis, a stride, between convolutions."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv1d(2, 5, 3), nn.Conv1d(5, 4, 3)
        self.head = nn.Linear(4 * 4 + 2 * 7, 3)

    def forward(self, x):  # (N, 2, 14)
        h = torch.relu(self.c1(x))[:, :, 2:-1]  # (N, 5, 9)
        h = self.c2(torch.flip(h, dims=[2]))  # (N, 4, 7)
        return self.head(torch.cat([h[:, :, ::2].flatten(1), torch.flip(x, dims=[1])[:, :, 3:10].flatten(1)], 1))


class Concat2d(nn.Module):
    """2-D: channels of two convolutions joined, a crop of both spatial axes, a join on the width,
    a flip of the height."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 2, 1)
        self.c = nn.Conv2d(5, 4, 3)
        self.head = nn.Linear(4 * 6 * 12, 4)

    def forward(self, x):  # (N, 2, 8, 8)
        h = torch.cat([self.a(x), torch.relu(self.b(x))], dim=1)[:, :, 1:-1, 1:-1]  # (N, 5, 6, 6)
        h = torch.cat([h, torch.flip(h, dims=[2])], dim=3)  # (N, 5, 6, 12)
        h = self.c(nn.functional.pad(h, (1, 1, 1, 1)))  # (N, 4, 6, 12)
        return self.head(h.flatten(1))


class GluOverSequence(nn.Module):
    """A gated linear unit per time step: Linear(F, 2H) over (N, T, F), chunked on the features."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 8)
        self.head = nn.Linear(5 * 4, 3)

    def forward(self, x):  # (N, 5, 6)
        a, g = self.proj(x).chunk(2, dim=-1)
        return self.head((a * torch.sigmoid(g)).flatten(1))


class Tagger(nn.Module):
    """A GRU's output sequence through a Linear at every step, the first and last steps cut, the
    sequence reversed in time and joined with the tags on the features."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 6, batch_first=True)
        self.tag = nn.Linear(6, 3)

    def forward(self, x):  # (N, 7, 4)
        y, _ = self.rnn(x)
        tags = self.tag(y)[:, 1:-1]  # (N, 5, 3)
        return torch.cat([tags, torch.flip(tags, dims=[1])], dim=2)  # (N, 5, 6)


class TimeConcat(nn.Module):
    """Joins on the time axis of (N, T, F) sequences and on the length of convolution outputs."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.conv = nn.Conv1d(4, 4, 3)

    def forward(self, x):  # (N, 6, 4)
        s = torch.cat([x, self.lin(x), x[:, :2]], dim=1)  # (N, 14, 4)
        c = self.conv(s.transpose(1, 2))  # (N, 4, 12)
        return torch.cat([c, c[:, :, :3]], dim=2).flatten(1)


class Linear4d(nn.Module):
    """nn.Linear on the last axis of a 2-D feature map (N, C, H, W), as vision code applies it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.lin = nn.Linear(4, 5)

    def forward(self, x):  # (N, 2, 5, 6)
        return torch.tanh(self.lin(self.conv(x))).flatten(1)  # (N, 3, 3, 5)


class TimeMix(nn.Module):
    """A learned matrix mixing the time steps (W @ x, x (N, T, F)), as token-mixing MLPs write it,
    then a Linear over the features."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Parameter(torch.randn(4, 6) * 0.4)
        self.lin = nn.Linear(5, 3)

    def forward(self, x):  # (N, 6, 5)
        return self.lin(torch.relu(self.mix @ x)).flatten(1)  # (N, 4, 3)


class FlipThenDense(nn.Module):
    """A feature map flipped on its width, flattened channels-first into a Linear:
    the flatten reads a permuted memory order (hls4ml's own Transpose -> Flatten -> Dense rewrite
    assumed the channels-last one: off by 1.7)."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 2, 3), nn.Linear(2 * 6 * 6, 4)

    def forward(self, x):  # (N, 3, 8, 8)
        return self.head(torch.flip(self.conv(x), dims=[3]).flatten(1))


class TokenMean(nn.Module):
    """Per-token features averaged over the tokens (N, T, F) -> (N, F), features last, as a bag of
    embeddings or a transformer's mean pooling is written."""

    def __init__(self):
        super().__init__()
        self.embed, self.head = nn.Linear(5, 8), nn.Linear(8, 3)

    def forward(self, x):  # (N, 6, 5)
        return self.head(torch.relu(self.embed(x)).mean(dim=1))


# name -> (model builder, input shape, in the fast part)
MODELS = {
    "mean_over_tokens": (seeded(TokenMean), [1, 6, 5], True),
    "flip_then_dense": (seeded(FlipThenDense), [1, 3, 8, 8], True),
    "cat_channels_max_min_residual": (seeded(Branches), [1, 3, 12], True),
    "linear_over_sequence_and_permuted_conv": (seeded(SequenceLinear), [1, 6, 5], True),
    "crop_flip_stride_1d": (seeded(CropFlip1d), [1, 2, 14], True),
    "concat_crop_flip_2d": (seeded(Concat2d), [1, 2, 8, 8], True),
    "glu_over_sequence": (seeded(GluOverSequence), [1, 5, 6], False),
    "gru_tagger_crop_flip_concat": (seeded(Tagger), [1, 7, 4], False),
    "concat_on_time": (seeded(TimeConcat), [1, 6, 4], False),
    "linear_on_feature_map": (seeded(Linear4d), [1, 2, 5, 6], False),
    "time_mixing_matrix": (seeded(TimeMix), [1, 6, 5], False),
}


def fresh_inputs(shape, n=37, seed=11):
    return np.random.default_rng(seed).standard_normal([n, *shape[1:]]).astype(np.float32)


def check(art, x, wants):
    v = art.manifest["verification"]
    assert v["ok"] and v["max_abs_err"] <= art.tolerance.atol, v
    gots = art.run(x)
    err = 0.0
    for got, want in zip(gots, wants, strict=True):
        assert got.shape == want.shape
        err = max(err, float(np.abs(got.astype(np.float64) - want).max()))
        assert np.abs(want).max() > 0.05  # the check is not trivially passed by zeros
    assert err <= art.tolerance.atol, (err, art.tolerance.atol)
    return {"fpga": "ok", "max abs err": max(err, v["max_abs_err"]), "bound": art.tolerance.atol}


def check_model(name, folder):
    build, shape, _ = MODELS[name]
    model = build()
    art = gatec.compile(model, "fpga", folder / "fpga", input_shapes=[shape], samples=SAMPLES)
    x = fresh_inputs(shape)
    with torch.no_grad():
        wants = model(torch.from_numpy(x))
    wants = [w.numpy() for w in (wants if isinstance(wants, tuple) else (wants,))]
    return {"model": name, **check(art, x, wants)}


@pytest.mark.parametrize("name", [n for n, (_, _, fast) in MODELS.items() if fast])
def test_structure_models_compile_to_fpga_and_match_the_model(name, tmp_path):
    print(check_model(name, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, (_, _, fast) in MODELS.items() if not fast])
def test_more_structure_models_compile_to_fpga_and_match_the_model(name, tmp_path):
    print(check_model(name, tmp_path))


# ---------------------------------------------------------------- ONNX Mean, Max/Min of several

def merges_onnx(path):
    """An ONNX model with what torch does not export: Mean of two and of three tensors, Max and Min
    of three, Max and Min with a constant scalar (a ReLU and gatec's Clip)."""
    rng = np.random.default_rng(3)
    inits, nodes = [], []
    for i in range(3):
        inits += [numpy_helper.from_array(rng.standard_normal((6, 8)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.3, f"b{i}")]
        nodes.append(helper.make_node("Gemm", ["x", f"w{i}", f"b{i}"], [f"h{i}"], name=f"gemm{i}"))
    inits += [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
              numpy_helper.from_array(np.array(0.25, np.float32), "quarter")]
    nodes += [helper.make_node("Mean", ["h0", "h1"], ["mean2"], name="mean2"),
              helper.make_node("Mean", ["h0", "h1", "h2"], ["mean3"], name="mean3"),
              helper.make_node("Max", ["h0", "h1", "h2"], ["max3"], name="max3"),
              helper.make_node("Min", ["h2", "h0", "h1"], ["min3"], name="min3"),
              helper.make_node("Max", ["h2", "zero"], ["relu"], name="max_zero"),
              helper.make_node("Min", ["quarter", "h1"], ["low"], name="min_quarter"),
              helper.make_node("Concat", ["mean2", "mean3", "max3", "min3", "relu", "low"], ["y"], axis=1,
                               name="join")]
    graph = helper.make_graph(nodes, "merges", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 48])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return model


def test_onnx_mean_max_min_of_several_and_with_a_scalar(tmp_path):
    from onnx.reference import ReferenceEvaluator
    model = merges_onnx(tmp_path / "merges.onnx")
    from gatec.targets._hls4ml.convert import convert
    layers = convert(gatec.load(tmp_path / "merges.onnx").ir).layers
    ops = [l.get("op") for l in layers if l["class_name"] == "Merge"]
    assert ops.count("average") == 1 and ops.count("maximum") == 2 and ops.count("minimum") == 2
    assert ops.count("add") == 2  # the mean of three: two adds and one scale
    assert {"GatecClip", "Activation"} <= {l["class_name"] for l in layers}
    art = gatec.compile(tmp_path / "merges.onnx", "fpga", tmp_path / "fpga", samples=SAMPLES)
    x = fresh_inputs([1, 6])
    print(check(art, x, ReferenceEvaluator(model).run(None, {"x": x})))


# ---------------------------------------------------------------- the layer lists (no C compile)

def layer_list(build, shape):
    from gatec.targets._hls4ml.convert import convert
    return convert(gatec.load(build(), [shape]).ir).layers


def test_structure_ops_map_to_the_hls4ml_layers_named():
    seq = layer_list(*MODELS["linear_over_sequence_and_permuted_conv"][:2])
    pointwise = [l for l in seq if l["class_name"] == "Conv1D" and l["filt_width"] == 1]
    assert [(l["in_width"], l["n_chan"], l["n_filt"]) for l in pointwise] == [(6, 5, 8), (4, 6, 4)]
    # the convolution's channels-last output permuted to (N, L, C) is read as it lies: no Transpose
    # between the convolution and the per-position Linear
    conv = next(l for l in seq if l["class_name"] == "Conv1D" and l["filt_width"] == 3)
    assert pointwise[1]["inputs"] == [conv["name"]]
    branches = layer_list(*MODELS["cat_channels_max_min_residual"][:2])
    cats = [l for l in branches if l["class_name"] == "Concatenate"]
    # channels of (N, C, L) convolution outputs: the last axis in memory of (L, C)
    assert [(l["op"], l["axis"]) for l in cats[:2]] == [("concatenate2d", -1)] * 2
    assert {l["op"] for l in branches if l["class_name"] == "Merge"} == {"add", "maximum", "minimum", "subtract"}
    two_d = layer_list(*MODELS["concat_crop_flip_2d"][:2])
    # x[:, :, 1:-1, 1:-1] exports as two Slices: the height (outermost in memory) a Cropping1D over
    # (H, W * C), the width a Cropping2D over (H, W, C); the flip of the height a Transpose and a
    # 0/1 selection of width 1 (6 x 6 weights)
    crops = [(l["class_name"], l.get("crop_top"), l.get("crop_bottom"), l["crop_left"], l["crop_right"])
             for l in two_d if l["class_name"].startswith("Cropping")]
    assert crops == [("Cropping1D", None, None, 1, 1), ("Cropping2D", 0, 0, 1, 1)]
    (flip,) = [l for l in two_d if l["name"].startswith("select")]
    assert flip["class_name"] == "Conv1D" and flip["weight_data"].shape == (1, 6, 6)
    assert any(l["class_name"] == "Concatenate" and l["op"] == "concatenate3d" and l["axis"] == -2 for l in two_d)
    one_d = layer_list(*MODELS["crop_flip_stride_1d"][:2])
    assert any(l["class_name"] == "Cropping1D" and (l["crop_left"], l["crop_right"]) == (2, 1) for l in one_d)
    glu = layer_list(*MODELS["glu_over_sequence"][:2])
    # the chunk cuts the per-position Dense in two (no selection)
    assert [l["n_filt"] for l in glu if l["class_name"] == "Conv1D"] == [4, 4]


def test_gather_in_place_and_crop_match_numpy():
    # the 0/1 selection and the crops against numpy, without hls4ml: run the layer list's
    # selections on a tensor laid out as the converter lays it
    from gatec.targets._hls4ml.layers.structure import crop, gather_in_place
    from gatec.targets._hls4ml.act import Act

    class Recorder:
        def __init__(self):
            self.layers, self.values = [{"name": "src", "class_name": "InputLayer"}], {}

        def new_name(self, kind):
            return f"{kind}{len(self.layers)}"

        def add(self, layer):
            self.layers.append(layer)
            return layer["name"]

        def shaped(self, a, phys):
            return a.layer

    x = np.arange(3 * 4 * 5, dtype=np.float64).reshape(1, 3, 4, 5)  # ONNX (N, C, H, W)
    order = (2, 3, 1)  # channels last in memory
    mem = np.transpose(x[0], (1, 2, 0)).reshape(-1)
    a = Act("src", x.shape, 0, order, (4, 5, 3))
    rec = Recorder()
    picks = {2: np.array([3, 1, 0]), 3: np.arange(5)[::-2]}
    gather_in_place(rec, None, a, picks, "y")
    got = mem @ rec.layers[-1]["weight_data"]
    want = np.take(np.take(x, picks[2], axis=2), picks[3], axis=3)
    assert np.array_equal(got, np.transpose(want[0], (1, 2, 0)).reshape(-1))
    rec = Recorder()
    crop(rec, None, a, {2: (1, 3), 3: (2, 5)}, "z")
    (layer,) = rec.layers[1:]
    assert layer["class_name"] == "Cropping2D" and (layer["in_height"], layer["in_width"], layer["n_chan"]) == (4, 5, 3)
    assert (layer["crop_top"], layer["crop_bottom"], layer["crop_left"], layer["crop_right"]) == (1, 1, 2, 0)
    rec = Recorder()
    crop(rec, None, a, {1: (1, 2)}, "c")  # the channels, innermost: (H * W, C, 1)
    (layer,) = rec.layers[1:]
    assert (layer["class_name"], layer["in_height"], layer["in_width"], layer["n_chan"]) == ("Cropping2D", 20, 3, 1)


# ---------------------------------------------------------------- refusals

class MaxConstTensor(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("floor", torch.linspace(-1, 1, 4))

    def forward(self, x):
        return torch.maximum(self.lin(x), self.floor)


class MaxBroadcast(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 3)

    def forward(self, x):
        h = self.conv(x)
        return torch.maximum(h, h.amax(dim=2, keepdim=True)).flatten(1)


class CatConstant(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("extra", torch.ones(1, 2))

    def forward(self, x):
        return torch.cat([self.lin(x), self.extra.expand(x.shape[0], -1)], dim=1)


REFUSED = {
    "cat_with_a_constant": (seeded(CatConstant), [1, 4], "Concat", "is not computed per sample"),
    "max_with_a_constant_tensor": (seeded(MaxConstTensor), [1, 4], "Max", "only a constant scalar bound"),
    "max_broadcasting": (seeded(MaxBroadcast), [1, 2, 8], "Max", "broadcasting"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_structure_ops_without_an_exact_form_are_refused_by_name(name):
    build, shape, op, why = REFUSED[name]
    from gatec.targets.fpga import TARGET as fpga
    with pytest.raises(GatecError) as refused:
        fpga.plan(gatec.load(build(), [shape]).ir, {})
    message = str(refused.value)
    assert "\n" not in message and f"({op}): " in message and why in message, message
    assert message.startswith("fpga (hls4ml): node '")


@pytest.mark.parametrize("build", [hls_models.keras_conv1d_flatten_axis0, hls_models.channels_last_upsample])
def test_exporters_layouts_keras_flatten_from_axis_0_and_a_channels_last_resize(build, tmp_path):
    onnx.save(build(), str(tmp_path / "m.onnx"))
    art = gatec.compile(str(tmp_path / "m.onnx"), "fpga", tmp_path / "fpga", samples=SAMPLES)
    v = art.manifest["verification"]
    assert v["ok"] and v["max_abs_err"] <= art.tolerance.atol
