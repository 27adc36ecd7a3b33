"""Target fpga (hls4ml) for the layers people put in ordinary PyTorch models: pooling, the
activations, padding and upsampling, depthwise and dilated convolutions. Each model of the corpus
is compiled to `fpga` (verified by hls4ml's C simulation) and to `cpu` (the control), and the
fpga artifact is run again on fresh inputs against the model within its own tolerance. Models
gatec cannot build exactly are refused with one line naming the node, the op and why.

`python tests/test_hls_layers.py` prints the table: model, cpu ok, fpga ok / refused, max abs
err, bound."""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import gatec
from gatec.errors import GatecError
from gatec.nn import RecurrentClassifier

SAMPLES = 200


def seeded(build):
    def make():
        torch.manual_seed(0)
        return build().eval()
    return make


class Functional(nn.Module):
    """A model written with functional calls around one convolution."""

    def __init__(self, forward, conv):
        super().__init__()
        self.conv, self.fn = conv, forward

    def forward(self, x):
        return self.fn(self, x)


class WideRange(nn.Module):
    """Softplus and GELU of values up to about +-15, past the tables (softplus(x) = x, gelu(x) = x or 0
    there), and a clamp with one bound."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 16)
        with torch.no_grad():
            self.layer.weight.mul_(4.0)

    def forward(self, x):
        h = self.layer(x)
        return F.softplus(h), F.gelu(h), torch.clamp(h, max=3.0)


class BiLSTMHidden(nn.Module):
    """A bidirectional LSTM classified from h_n, both directions concatenated, as tutorials write it."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 6, batch_first=True, bidirectional=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.head(torch.cat((h[-2, :, :], h[-1, :, :]), dim=1))


class SequenceOut(nn.Module):
    """A recurrent layer's whole output sequence (a tagger's features), or one step of it."""

    def __init__(self, rnn, step=None):
        super().__init__()
        self.rnn, self.step = rnn, step

    def forward(self, x):
        y, _ = self.rnn(x)
        return y if self.step is None else y[:, self.step]


class ElmanRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.RNN(4, 5, batch_first=True), nn.Linear(5, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def clamp_softmax(m, x):  # torch.clamp to odd bounds, softmax over the channels of (N, C, L)
    return torch.softmax(torch.clamp(m.conv(x), -0.5, 1.25), dim=1)


def pad_interpolate(m, x):  # F.pad on the last axis, F.interpolate by 3
    return F.interpolate(m.conv(F.pad(x, (2, 1))), scale_factor=3, mode="nearest")


def gelu_exact(m, x):
    return F.gelu(m.conv(x)).flatten(1)


# name -> (model builder, input shape, in the fast part); each model one family or a few
MODELS = {
    # pooling
    "cnn_maxpool_avgpool": (seeded(lambda: nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3), nn.ELU(0.5),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(32, 5))), [1, 3, 12, 12], True),
    "maxpool1d_padding_ceil_mode": (seeded(lambda: nn.Sequential(
        nn.Conv1d(4, 6, 3), nn.ReLU(), nn.MaxPool1d(3, 2, padding=1, ceil_mode=True), nn.Flatten(),
        nn.Linear(42, 3))),
        [1, 4, 14], False),
    "avgpool1d_exclude_padding": (seeded(lambda: nn.Sequential(
        nn.Conv1d(4, 6, 3), nn.AvgPool1d(3, 2, padding=1, count_include_pad=False), nn.Flatten(),
        nn.Linear(30, 3))), [1, 4, 12], False),
    "avgpool2d_include_padding_stride": (seeded(lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.AvgPool2d(3, stride=(2, 1), padding=1), nn.Flatten(), nn.Linear(96, 3))),
        [1, 2, 10, 8], False),
    "adaptive_avgpool": (seeded(lambda: nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(24, 4))),
        [1, 3, 8, 8], False),
    "adaptive_avgpool_global": (seeded(lambda: nn.Sequential(
        nn.Conv1d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(6, 4))), [1, 3, 9], False),
    # activations
    "mlp_activations": (seeded(lambda: nn.Sequential(
        nn.Linear(12, 16), nn.SELU(), nn.Linear(16, 16), nn.Softplus(), nn.Linear(16, 16), nn.Hardsigmoid(),
        nn.Linear(16, 16), nn.Hardtanh(), nn.Linear(16, 16), nn.ReLU6(), nn.Linear(16, 16), nn.GELU(),
        nn.Linear(16, 5))), [1, 12], True),
    "conv_prelu_clamp_softmax_channels": (seeded(lambda: Functional(clamp_softmax, nn.Sequential(
        nn.Conv1d(3, 6, 3), nn.PReLU(6), nn.Conv1d(6, 4, 1)))), [1, 3, 10], True),
    "mlp_elu_gelu_tanh": (seeded(lambda: nn.Sequential(
        nn.Linear(10, 16), nn.ELU(), nn.Linear(16, 16), nn.GELU(approximate="tanh"), nn.Linear(16, 16),
        nn.PReLU(), nn.Linear(16, 4), nn.Softmax(dim=-1))), [1, 10], False),
    "conv_gelu": (seeded(lambda: Functional(gelu_exact, nn.Conv1d(3, 4, 3, padding=1))), [1, 3, 8], False),
    "wide_range_softplus_gelu": (seeded(WideRange), [1, 4], True),
    # padding and resizing
    "zeropad_upsample_2d": (seeded(lambda: nn.Sequential(
        nn.ZeroPad2d((1, 2, 0, 1)), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(4, 2, 3),
        nn.Flatten(), nn.Linear(2 * 8 * 12, 3))), [1, 3, 6, 6], True),
    # edge, reflect and non-zero constant padding: 0/1 selections (hls4ml pads with zeros only)
    "reflect_replicate_constant_padding": (seeded(lambda: nn.Sequential(
        nn.Conv1d(3, 4, 3, padding=1, padding_mode="reflect"), nn.ReplicationPad1d((2, 1)), nn.ConstantPad1d(1, 0.5),
        nn.Conv1d(4, 2, 3, padding=1, padding_mode="replicate"), nn.Flatten(), nn.Linear(22, 3))), [1, 3, 6], True),
    "pad_interpolate_1d": (seeded(lambda: Functional(pad_interpolate, nn.Conv1d(2, 3, 3))), [1, 2, 7], False),
    # convolution variants
    "depthwise_separable_dilated_2d": (seeded(lambda: nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1),
        nn.Conv2d(4, 2, 3, dilation=2, padding=2), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))),
        [1, 4, 6, 6], True),
    "depthwise1d_dilated": (seeded(lambda: nn.Sequential(
        nn.Conv1d(3, 3, 3, groups=3, dilation=2), nn.Tanh(), nn.Conv1d(3, 4, 2, padding="same"),
        nn.Conv1d(4, 4, 3, stride=2, padding=(2,)), nn.Flatten(), nn.Linear(4 * 6, 3))), [1, 3, 13], False),
    "conv2d_padding_modes": (seeded(lambda: nn.Sequential(
        nn.Conv2d(2, 4, (3, 2), padding=(1, 0)), nn.Conv2d(4, 4, 4, padding="same"),
        nn.Conv2d(4, 4, 3, stride=2, padding="valid"), nn.Flatten(), nn.Linear(4 * 4 * 3, 3))),
        [1, 2, 10, 9], False),
    # grouped convolutions and depth multipliers: one convolution, its kernel zero between groups
    "grouped_conv1d_depth_multiplier": (seeded(lambda: nn.Sequential(
        nn.Conv1d(4, 8, 3, groups=2), nn.ReLU(), nn.Conv1d(8, 16, 3, groups=8), nn.Flatten(), nn.Linear(64, 3))),
        [1, 4, 8], True),
    "grouped_conv2d_resnext": (seeded(lambda: nn.Sequential(
        nn.Conv2d(4, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.ReLU(), nn.Conv2d(8, 4, 1),
        nn.Flatten(), nn.Linear(4 * 5 * 5, 3))), [1, 4, 5, 5], False),
    # recurrent: bidirectional layers (hls4ml's Bidirectional), one step of a sequence, h_n of both directions
    "bigru_classifier": (seeded(lambda: RecurrentClassifier(5, 6, 3, "gru", 1, True)), [1, 7, 5], True),
    "bilstm_h_n_concat": (seeded(BiLSTMHidden), [1, 6, 5], False),
    "bigru_2layer_sequence": (seeded(lambda: SequenceOut(nn.GRU(4, 5, 2, batch_first=True, bidirectional=True))),
                              [1, 6, 4], False),
    "gru_first_step": (seeded(lambda: SequenceOut(nn.GRU(4, 6, batch_first=True), 0)), [1, 5, 4], False),
}

# name -> (model builder, input shape, the op refused, words of the reason)
REFUSED = {
    "bilinear_upsample": (seeded(lambda: nn.Sequential(nn.Conv2d(2, 2, 1), nn.Upsample(scale_factor=2, mode="bilinear"),
                                                       nn.Flatten(), nn.Linear(32, 3))), [1, 2, 2, 2], "Resize",
                          "linear resizing is not supported"),
    "elman_rnn": (seeded(ElmanRNN), [1, 6, 4], "RNN", "SimpleRNN for its Quartus backend only"),
    "avgpool_ceil_overhang": (seeded(lambda: nn.Sequential(nn.AvgPool1d(2, 2, ceil_mode=True), nn.Flatten(),
                                                           nn.Linear(8, 3))), [1, 2, 7], "AveragePool",
                              "ceil_mode average pooling"),
}

# gatec's tracer finds AdaptiveAvgPool2d((2, 2)) runs at any input size, and torch's exporter then
# cannot write it with dynamic spatial axes: such models come as ONNX files exported at one size
# (where the adaptive pooling is an AveragePool)
EXPORTED_FIRST = {"adaptive_avgpool"}

FAST = [name for name, (_, _, fast) in MODELS.items() if fast]
SLOW = [name for name, (_, _, fast) in MODELS.items() if not fast]


def fresh_inputs(shape, n=37, seed=11):
    return np.random.default_rng(seed).standard_normal([n, *shape[1:]]).astype(np.float32)


def check_model(name, folder):
    """Compiles model `name` to cpu and fpga and checks both; returns its row of the table."""
    build, shape, _ = MODELS[name]
    model = build()
    given, shapes = model, [shape]
    if name in EXPORTED_FIRST:
        given, shapes = folder / f"{name}.onnx", None
        torch.onnx.export(model, torch.zeros(shape), given, dynamo=False, opset_version=18, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}})
    cpu = gatec.compile(given, "cpu", folder / "cpu", input_shapes=shapes, samples=SAMPLES)
    assert cpu.manifest["verification"]["ok"]
    start = time.perf_counter()
    art = gatec.compile(given, "fpga", folder / "fpga", input_shapes=shapes, samples=SAMPLES)
    seconds = time.perf_counter() - start
    v = art.manifest["verification"]
    assert v["ok"] and v["max_abs_err"] <= art.tolerance.atol
    x = fresh_inputs(shape)
    with torch.no_grad():
        wants = model(torch.from_numpy(x))
    wants = [w.numpy() for w in (wants if isinstance(wants, tuple) else (wants,))]
    gots = art.run(x)
    err = 0.0
    for got, want in zip(gots, wants, strict=True):
        assert got.shape == want.shape
        err = max(err, float(np.abs(got.astype(np.float64) - want).max()))
        assert np.abs(want).max() > 0.05  # the check is not trivially passed by zeros
    assert err <= art.tolerance.atol
    return {"model": name, "cpu ok": True, "fpga": "ok", "max abs err": max(err, v["max_abs_err"]),
            "bound": art.tolerance.atol, "seconds": seconds}


@pytest.mark.parametrize("name", FAST)
def test_fast_corpus_compiles_to_fpga_and_matches_the_model(name, tmp_path):
    row = check_model(name, tmp_path)
    print(row)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_slow_corpus_compiles_to_fpga_and_matches_the_model(name, tmp_path):
    row = check_model(name, tmp_path)
    print(row)


def refusal(name):
    build, shape, _, _ = REFUSED[name]
    source = gatec.load(build(), [shape])
    from gatec.targets.fpga import TARGET as fpga
    with pytest.raises(GatecError) as refused:
        fpga.plan(source.ir, {})
    return str(refused.value)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_layers_without_an_exact_hls4ml_form_are_refused_by_name(name):
    _, _, op, why = REFUSED[name]
    message = refusal(name)
    assert "\n" not in message and f"({op}): " in message and why in message, message
    assert message.startswith("fpga (hls4ml): node '")


def converted_layers(name):
    from gatec.targets._hls4ml.convert import convert
    build, shape, _ = MODELS[name]
    return [layer for layer in convert(gatec.load(build(), [shape]).ir).layers]


def test_layers_map_to_the_hls4ml_layers_named():
    # no C compile: the layer list hls4ml is given
    classes = {name: [l["class_name"] for l in converted_layers(name)] for name in
               ("cnn_maxpool_avgpool", "depthwise_separable_dilated_2d", "zeropad_upsample_2d", "pad_interpolate_1d")}
    assert {"MaxPooling2D", "AveragePooling2D", "ELU"} <= set(classes["cnn_maxpool_avgpool"])
    # the batch norm folded into the depthwise kernel; the dilated 3x3 kernel is a 5x5 one
    dw = classes["depthwise_separable_dilated_2d"]
    assert dw.count("DepthwiseConv2D") == 1 and dw.count("Conv2D") == 2 and "ApplyAlpha" not in dw
    dilated_conv = [l for l in converted_layers("depthwise_separable_dilated_2d") if l["class_name"] == "Conv2D"][-1]
    assert (dilated_conv["filt_height"], dilated_conv["filt_width"]) == (5, 5)
    assert {"ZeroPadding2D", "UpSampling2D"} <= set(classes["zeropad_upsample_2d"])
    assert {"ZeroPadding1D", "UpSampling1D"} <= set(classes["pad_interpolate_1d"])
    # ceil_mode: one more window, read from more padding on the right (never the maximum)
    (pool,) = [l for l in converted_layers("maxpool1d_padding_ceil_mode") if l["class_name"] == "MaxPooling1D"]
    assert (pool["n_in"], pool["n_out"], pool["pad_left"], pool["pad_right"]) == (12, 7, 1, 2)
    (avg,) = [l for l in converted_layers("avgpool1d_exclude_padding") if l["class_name"] == "AveragePooling1D"]
    assert avg["count_pad"] is False and (avg["pad_left"], avg["pad_right"]) == (1, 1)
    (avg2,) = [l for l in converted_layers("avgpool2d_include_padding_stride") if "Pooling" in l["class_name"]]
    assert avg2["count_pad"] is True and (avg2["stride_height"], avg2["stride_width"]) == (2, 1)


def test_gatec_lookup_layers_refuse_what_they_are_not_written_for():
    from gatec.targets._hls4ml import plan
    build, shape, _ = MODELS["wide_range_softplus_gelu"]
    ir = gatec.load(build(), [shape]).ir
    assert plan(ir, {}).converted.custom
    with pytest.raises(GatecError, match=r"\(GatecLookup\) is written for io_parallel only"):
        plan(ir, {"io_type": "io_stream"})
    with pytest.raises(GatecError, match="Vivado and Vitis backends, not Quartus"):
        plan(ir, {"backend": "quartus"})


def test_dilated_kernel_and_depthwise_layout_match_torch():
    # the zero-inserted kernel and the (K..., C, M) depthwise layout, against torch without hls4ml
    from gatec.targets._hls4ml.layers.conv import dilated
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 2)
    x = torch.randn(2, 3, 11, 9)
    want = F.conv2d(x, w, dilation=(2, 3))
    got = F.conv2d(x, torch.from_numpy(dilated(w.numpy(), [2, 3])))
    assert got.shape == want.shape and float((got - want).abs().max()) < 1e-5
    assert dilated(w.numpy(), [2, 3]).shape == (4, 3, 5, 4)


def test_lookup_tables_stay_within_their_stated_error():
    # GatecLookup's table read at the nearest entry, with the asymptotes outside: the C++ done in numpy
    from gatec.targets._hls4ml.layers.lookup import ENTRY_BITS, FUNCTIONS
    for op, (f, lo, hi, bits, below, above) in FUNCTIONS.items():
        grid = lo + np.arange(int((hi - lo) * 2 ** bits) + 1) * 2.0 ** -bits
        table = np.round(f(grid) * 2.0 ** ENTRY_BITS) / 2.0 ** ENTRY_BITS
        x = np.linspace(-30, 30, 600001)
        index = np.floor((np.clip(x, lo, hi) - lo) * 2 ** bits + 0.5).astype(int)
        y = np.where(x < lo, below[0] * x + below[1], np.where(x > hi, above[0] * x + above[1], table[index]))
        err = np.abs(y - f(x)).max()
        assert 1e-4 < err < 2.0 ** -8, (op, err)


if __name__ == "__main__":
    import tempfile
    from pathlib import Path
    names = sys.argv[1:] or list(MODELS) + list(REFUSED)
    print("| model | cpu ok | fpga | max abs err | bound | fpga compile s |\n|---|---|---|---|---|---|")
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            if name in REFUSED:
                cpu = gatec.compile(REFUSED[name][0](), "cpu", Path(tmp) / "cpu", input_shapes=[REFUSED[name][1]],
                                    samples=SAMPLES)
                print(f"| {name} | {cpu.manifest['verification']['ok']} | refused: {refusal(name)} | | | |", flush=True)
                continue
            try:
                r = check_model(name, Path(tmp))
                print(f"| {name} | {r['cpu ok']} | ok | {r['max abs err']:.4f} | {r['bound']:.4f} | "
                      f"{r['seconds']:.0f} |", flush=True)
            except Exception as e:  # noqa: BLE001  (the table shows what failed)
                print(f"| {name} | | FAILED: {str(e).splitlines()[0][:300]} | | | |", flush=True)


def test_bidirectional_layers_are_hls4ml_bidirectional_and_the_last_step_is_cut_from_the_sequence():
    # the backward direction's output at the last step has seen one input: the classifier reads the
    # sequence's last step (a crop), not the layer's final state
    layers = converted_layers("bigru_classifier")
    (bi,) = [l for l in layers if l["class_name"] == "Bidirectional"]
    assert bi["return_sequences"] and bi["n_out"] == 12 and bi["forward_class_name"] == "GRU"
    (crop,) = [l for l in layers if l["class_name"] == "Cropping1D"]
    assert (crop["crop_left"], crop["crop_right"], crop["n_chan"]) == (6, 0, 12)
    # h_n[-2], h_n[-1] of a single bidirectional layer: the final states, selected exactly
    (bi,) = [l for l in converted_layers("bilstm_h_n_concat") if l["class_name"] == "Bidirectional"]
    assert not bi["return_sequences"]
