"""The model corpus: small models written the way people write them (nn.Module classes with torch
ops, ONNX files as other exporters write them, QONNX files, Brevitas models exported with
`export_qonnx(..., dynamo=False)`), each compiled to `cpu` and `fpga` by tests/test_corpus.py and
tabulated by benchmarks/fpga_corpus.py.

CASES maps a name to a Case: how the model is built (`form`: an nn.Module given to gatec as it is;
"exported": the module exported to ONNX first, at one size with a dynamic batch; "onnx": an
onnx.helper file; "brevitas": a Brevitas module exported to QONNX), its input shape, the kinds it
covers and whether it is in the fast (CI) part. `compile_case` compiles one case for one target and
says how it went: verified, refused (one line) or wrong (verified against the model and failed)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hls_models
import numpy as np
import onnx
import torch
from hls_models import QONNX, const
from onnx import TensorProto, helper
from torch import nn
from torch.nn import functional as F

import gatec
from gatec.errors import GatecError

SAMPLES = 200
KINDS = ("pooling", "activation", "conv", "pad/resize", "conv+bn", "structure", "recurrent", "layernorm",
         "attention", "embedding", "mlp", "onnx", "qonnx", "brevitas-po2", "brevitas-float")


@dataclass(frozen=True)
class Case:
    name: str
    kinds: tuple[str, ...]
    shape: list[int] | None  # None: recorded in the ONNX file
    build: Callable
    fast: bool = False
    form: str = "module"  # module | exported | onnx | brevitas
    dtype: str = "float32"  # the exported input's type (token ids: int64)

    def model(self):
        torch.manual_seed(0)
        model = self.build()
        for m in model.modules():  # batch norms that are not the identity
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                with torch.no_grad():
                    m.running_mean.normal_(0, 0.3)
                    m.running_var.uniform_(0.5, 2.0)
        return model.eval()

    def prepare(self, folder: Path):
        """What gatec is given: (the module or an ONNX file's path, input shapes or None)."""
        if self.form == "module":
            return self.model(), [self.shape]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.onnx"
        if self.form == "onnx":
            onnx.save(self.build(), path)
            return path, None
        names = {"input_names": ["x"], "output_names": ["y"], "dynamic_axes": {"x": {0: "N"}, "y": {0: "N"}}}
        if self.form == "brevitas":
            from brevitas.export import export_qonnx
            export_qonnx(self.model(), torch.randn(self.shape), str(path), dynamo=False, **names)
        else:
            example = torch.zeros(self.shape, dtype=getattr(torch, self.dtype))
            torch.onnx.export(self.model(), example, path, dynamo=False, opset_version=18, **names)
        return path, None


CASES: dict[str, Case] = {}


def add(name, kinds, shape, build, fast=False, form="module", dtype="float32"):
    assert name not in CASES and set(kinds.split()) <= set(KINDS), name
    CASES[name] = Case(name, tuple(kinds.split()), shape, build, fast, form, dtype)


def compile_case(case: Case, target: str, given, shapes, folder: Path, samples: int = SAMPLES) -> dict:
    """One compile: {"status": verified | refused | wrong, "max_abs_err", "bound" | "reason", "seconds"}.
    Any other exception (a traceback) propagates."""
    start = time.perf_counter()
    try:
        art = gatec.compile(given, target, folder / target, input_shapes=shapes, samples=samples)
    except GatecError as e:
        line = str(e)
        status = "wrong" if "disagrees with the model" in line else "refused"
        return {"status": status, "reason": line, "seconds": time.perf_counter() - start}
    v = art.manifest["verification"]
    ok = v["ok"] and v["max_abs_err"] <= art.tolerance.atol
    return {"status": "verified" if ok else "wrong", "max_abs_err": v["max_abs_err"], "bound": art.tolerance.atol,
            "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------- helpers for repeated patterns

class Net(nn.Module):
    """Layers and a forward written as a function of them, as small research models are."""

    def __init__(self, forward, **layers):
        super().__init__()
        self.fn = forward
        for key, layer in layers.items():
            setattr(self, key, layer)

    def forward(self, x):
        return self.fn(self, x)


def head(body, shape, n_out=3):
    """body -> nn.Flatten -> nn.Linear(n_out), the Linear sized from the body's output."""
    body.eval()
    with torch.no_grad():
        n = body(torch.zeros(shape)).flatten(1).shape[1]
    return nn.Sequential(body, nn.Flatten(), nn.Linear(n, n_out))


def mlp(*middle, n_in=8, width=16, n_out=4):
    return nn.Sequential(nn.Linear(n_in, width), *middle, nn.Linear(width, n_out))


def conv1d(*layers, c_in=3):
    """Conv1d(c_in, 6, 3) -> layers, with a Linear head; input (N, c_in, 16)."""
    return lambda: head(nn.Sequential(nn.Conv1d(c_in, 6, 3), nn.ReLU(), *layers), [1, c_in, 16])


def conv2d(*layers, c_in=3, size=8):
    return lambda: head(nn.Sequential(nn.Conv2d(c_in, 6, 3, padding=1), nn.ReLU(), *layers), [1, c_in, size, size])


def then_head(fn, shape, **layers):
    """Net(fn, **layers) with a Linear head."""
    return lambda: head(Net(fn, **layers), shape)


S1, S2 = [1, 3, 16], [1, 3, 8, 8]  # the usual 1-D and 2-D inputs

# ---------------------------------------------------------------- pooling

for name, layer, fast in [
        ("maxpool1d", nn.MaxPool1d(2), False),
        ("maxpool1d_k3_s2_pad1", nn.MaxPool1d(3, 2, padding=1), False),
        ("maxpool1d_ceil_mode", nn.MaxPool1d(3, 2, ceil_mode=True), False),
        ("avgpool1d", nn.AvgPool1d(2), False),
        ("avgpool1d_pad_exclude", nn.AvgPool1d(3, 2, padding=1, count_include_pad=False), False),
        ("avgpool1d_pad_include", nn.AvgPool1d(3, 2, padding=1), False)]:
    add(name, "pooling", S1, conv1d(layer), fast)
for name, layer, fast in [
        ("maxpool2d", nn.MaxPool2d(2), True),
        ("maxpool2d_k3_s2_pad1", nn.MaxPool2d(3, 2, padding=1), False),
        ("maxpool2d_rect_stride", nn.MaxPool2d((2, 3), stride=(2, 1)), False),
        ("avgpool2d", nn.AvgPool2d(2), False),
        ("avgpool2d_k3_s2_pad1", nn.AvgPool2d(3, 2, padding=1), False),
        ("avgpool2d_pad_exclude", nn.AvgPool2d(3, 1, padding=1, count_include_pad=False), False),
        ("global_avgpool2d_adaptive", nn.AdaptiveAvgPool2d(1), False),
        ("global_maxpool2d_adaptive", nn.AdaptiveMaxPool2d(1), False)]:
    add(name, "pooling", S2, conv2d(layer), fast)
add("global_avgpool1d_mean", "pooling", S1, then_head(lambda m, x: m.c(x).mean(dim=2), S1, c=nn.Conv1d(3, 6, 3)))
add("global_maxpool1d_max", "pooling", S1, then_head(lambda m, x: m.c(x).max(dim=-1).values, S1, c=nn.Conv1d(3, 6, 3)))
add("global_avgpool2d_mean", "pooling", S2, then_head(lambda m, x: torch.relu(m.c(x)).mean(dim=(2, 3)), S2,
                                                      c=nn.Conv2d(3, 6, 3)))
# an adaptive pooling to a fixed size is an AveragePool once exported at one size
add("adaptive_avgpool2d_2x2", "pooling", S2, conv2d(nn.AdaptiveAvgPool2d((2, 2))), form="exported")
add("adaptive_avgpool1d_7", "pooling", S1, conv1d(nn.AdaptiveAvgPool1d(7)), form="exported")

# ---------------------------------------------------------------- activations

for name, act, fast in [
        ("elu", nn.ELU(), False), ("elu_alpha", nn.ELU(0.5), False), ("selu", nn.SELU(), False),
        ("prelu", nn.PReLU(), False), ("softplus", nn.Softplus(), False), ("softplus_beta", nn.Softplus(beta=2.0), False),
        ("softsign", nn.Softsign(), False), ("hardsigmoid", nn.Hardsigmoid(), False), ("hardtanh", nn.Hardtanh(), False),
        ("hardtanh_bounds", nn.Hardtanh(-0.5, 2.0), False), ("relu6", nn.ReLU6(), False),
        ("leakyrelu", nn.LeakyReLU(0.1), False),
        ("gelu", nn.GELU(), True), ("gelu_tanh", nn.GELU(approximate="tanh"), False), ("tanh", nn.Tanh(), False),
        ("sigmoid", nn.Sigmoid(), False)]:
    add(f"mlp_{name}", "activation", [1, 8], lambda act=act: mlp(act), fast)
add("mlp_clamp", "activation", [1, 8], lambda: Net(lambda m, x: m.b(torch.clamp(m.a(x), -1.0, 0.5)),
                                                   a=nn.Linear(8, 16), b=nn.Linear(16, 4)))
# ThresholdedReLU: torch exports no nn.Threshold with a non-zero threshold, so people write it with where
add("mlp_thresholded_relu", "activation", [1, 8], lambda: Net(
    lambda m, x: m.b(torch.where(m.a(x) > 0.3, m.a(x), 0.0)), a=nn.Linear(8, 16), b=nn.Linear(16, 4)))
add("mlp_softmax_out", "activation mlp", [1, 8], lambda: nn.Sequential(mlp(nn.ReLU(), n_out=5), nn.Softmax(dim=-1)))
add("conv1d_softmax_channels", "activation conv", S1,
    lambda: nn.Sequential(nn.Conv1d(3, 4, 3), nn.Softmax(dim=1), nn.Flatten()))
add("conv1d_softmax_length", "activation conv", S1,
    lambda: nn.Sequential(nn.Conv1d(3, 4, 3), nn.Softmax(dim=2), nn.Flatten()))
add("sequence_softmax_features", "activation structure", [1, 6, 5],
    lambda: nn.Sequential(nn.Linear(5, 4), nn.Softmax(dim=-1), nn.Flatten()))
add("conv1d_prelu_per_channel", "activation conv", S1, conv1d(nn.Conv1d(6, 4, 3), nn.PReLU(4)))
add("conv2d_prelu_per_channel", "activation conv", S2, conv2d(nn.Conv2d(6, 4, 3), nn.PReLU(4)))

# ---------------------------------------------------------------- convolutions, padding, resizing

for name, layers, fast in [
        ("conv1d_1x1", [nn.Conv1d(6, 4, 1)], False),
        ("depthwise_conv1d", [nn.Conv1d(6, 6, 3, groups=6)], False),
        ("depth_multiplier_conv1d", [nn.Conv1d(6, 12, 3, groups=6)], False),
        ("separable_conv1d", [nn.Conv1d(6, 6, 3, groups=6), nn.Conv1d(6, 4, 1)], False),
        ("grouped_conv1d", [nn.Conv1d(6, 4, 3, groups=2)], False),
        ("dilated_conv1d", [nn.Conv1d(6, 4, 3, dilation=2)], False),
        ("strided_conv1d", [nn.Conv1d(6, 4, 3, stride=2, padding=1)], False),
        ("conv1d_pad_same_even", [nn.Conv1d(6, 4, 4, padding="same")], False),
        ("conv1d_pad_reflect", [nn.Conv1d(6, 4, 3, padding=1, padding_mode="reflect")], False),
        ("conv1d_pad_replicate", [nn.Conv1d(6, 4, 3, padding=1, padding_mode="replicate")], False),
        ("conv1d_pad_circular", [nn.Conv1d(6, 4, 3, padding=1, padding_mode="circular")], False),
        ("zeropad1d", [nn.ZeroPad1d((1, 2)), nn.Conv1d(6, 4, 3)], False),
        ("constantpad1d", [nn.ConstantPad1d(2, 0.5), nn.Conv1d(6, 4, 3)], False),
        ("upsample_nearest_1d", [nn.Upsample(scale_factor=2), nn.Conv1d(6, 4, 3)], False)]:
    add(name, "pad/resize" if "pad" in name or "upsample" in name else "conv", S1, conv1d(*layers), fast)
for name, layers, fast in [
        ("conv2d_1x1", [nn.Conv2d(6, 4, 1)], False),
        ("depthwise_conv2d", [nn.Conv2d(6, 6, 3, groups=6)], False),
        ("separable_conv2d", [nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.Conv2d(6, 4, 1)], False),
        ("grouped_conv2d", [nn.Conv2d(6, 6, 3, groups=3)], False),
        ("dilated_conv2d", [nn.Conv2d(6, 4, 3, dilation=(2, 1))], False),
        ("strided_conv2d", [nn.Conv2d(6, 4, 3, stride=2)], False),
        ("conv2d_rect_kernel_pad", [nn.Conv2d(6, 4, (3, 1), padding=(1, 0))], False),
        ("conv2d_pad_same", [nn.Conv2d(6, 4, 3, padding="same")], False),
        ("conv2d_pad_replicate", [nn.Conv2d(6, 4, 3, padding=1, padding_mode="replicate")], False),
        ("zeropad2d", [nn.ZeroPad2d((1, 2, 0, 1)), nn.Conv2d(6, 4, 3)], False),
        ("upsample_nearest_2d", [nn.Upsample(scale_factor=2), nn.Conv2d(6, 2, 3)], False),
        ("upsample_bilinear_2d", [nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(6, 2, 3)], False)]:
    add(name, "pad/resize" if "pad" in name or "upsample" in name else "conv", [1, 3, 6, 6], conv2d(*layers, size=6),
        fast)
add("conv2d_fpad_constant", "pad/resize", S2, then_head(lambda m, x: m.c(F.pad(x, (1, 1, 2, 0), value=-0.25)), S2,
                                                        c=nn.Conv2d(3, 4, 3)))
add("interpolate_bilinear_align_corners", "pad/resize", [1, 3, 4, 4],
    then_head(lambda m, x: m.c(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)),
              [1, 3, 4, 4], c=nn.Conv2d(3, 2, 3)))

# ---------------------------------------------------------------- convolution nets with batch norm


class ResBlock1d(nn.Module):
    def __init__(self, c=6):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv1d(c, c, 3, padding=1, bias=False), nn.BatchNorm1d(c)
        self.conv2, self.bn2 = nn.Conv1d(c, c, 3, padding=1, bias=False), nn.BatchNorm1d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


add("conv1d_bn_relu_stack", "conv+bn conv", S1, lambda: head(nn.Sequential(
    nn.Conv1d(3, 8, 3), nn.BatchNorm1d(8), nn.ReLU(), nn.Conv1d(8, 8, 3), nn.BatchNorm1d(8), nn.ReLU()), S1))
add("conv2d_bn_relu_pool", "conv+bn conv pooling", S2, lambda: head(nn.Sequential(
    nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU()), S2), True)
add("conv2d_nobias_bn_vgg", "conv+bn conv pooling", [1, 3, 12, 12], lambda: head(nn.Sequential(
    *[m for c_in, c in ((3, 4), (4, 8)) for m in (nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                                                  nn.ReLU(), nn.MaxPool2d(2))]), [1, 3, 12, 12]))
add("conv1d_bn_resblock", "conv+bn conv structure", S1, lambda: head(nn.Sequential(
    nn.Conv1d(3, 6, 3, padding=1), ResBlock1d(), nn.AdaptiveAvgPool1d(1)), S1))
add("conv1d_bn_before_conv", "conv+bn conv", S1, lambda: head(nn.Sequential(
    nn.BatchNorm1d(3), nn.Conv1d(3, 6, 5, stride=2), nn.ReLU(), nn.BatchNorm1d(6)), S1))

# ---------------------------------------------------------------- structure


class TwoBranch(nn.Module):
    """Two branches of one input, merged by `merge` (torch.cat on an axis, torch.maximum, ...)."""

    def __init__(self, a, b, merge, shape):
        super().__init__()
        self.a, self.b, self.merge = a, b, merge
        with torch.no_grad():
            n = self.merged(torch.zeros(shape)).flatten(1).shape[1]
        self.head = nn.Linear(n, 3)

    def merged(self, x):
        return self.merge(self.a(x), torch.relu(self.b(x)))

    def forward(self, x):
        return self.head(self.merged(x).flatten(1))


def branches(a, b, merge, shape):
    return lambda: TwoBranch(a(), b(), merge, shape)


def cv1(k=3, c=4):
    return lambda: nn.Conv1d(3, c, k, padding=k // 2)


def cv2(k=3, c=4):
    return lambda: nn.Conv2d(3, c, k, padding=k // 2)


def lin(n=6):
    return lambda: nn.Linear(8, n)


for name, (a, b, merge, shape) in {
        "cat_channels_1d": (cv1(3), cv1(5, 2), lambda a, b: torch.cat([a, b], dim=1), S1),
        "cat_length_1d": (cv1(3), cv1(5), lambda a, b: torch.cat([a, b], dim=2), S1),
        "cat_features": (lin(6), lin(4), lambda a, b: torch.cat((a, b), 1), [1, 8]),
        "cat_channels_2d": (cv2(3), cv2(1, 2), lambda a, b: torch.cat([a, b], dim=1), S2),
        "cat_height_2d": (cv2(3), cv2(1), lambda a, b: torch.cat([a, b], dim=2), S2),
        "cat_width_2d": (cv2(3), cv2(3), lambda a, b: torch.cat([a, b], dim=-1), S2),
        "maximum_merge_1d": (cv1(3), cv1(5), torch.maximum, S1),
        "minimum_merge_2d": (cv2(3), cv2(1), torch.minimum, S2),
        "maximum_merge_dense": (lin(), lin(), torch.max, [1, 8]),
        "average_merge_1d": (cv1(3), cv1(5), lambda a, b: (a + b) / 2, S1),
        "average_merge_dense": (lin(), lin(), lambda a, b: 0.5 * (a + b), [1, 8])}.items():
    add(name, "structure", shape, branches(a, b, merge, shape), name == "cat_channels_1d")
add("cat_sequence_time", "structure", [1, 5, 4], lambda: Net(
    lambda m, x: m.out(torch.cat([x, torch.tanh(m.lin(x))], dim=1)).flatten(1), lin=nn.Linear(4, 4), out=nn.Linear(4, 2)))
# per-position Dense: nn.Linear over a tensor with more than one feature axis
add("linear_over_sequence", "structure", [1, 6, 5], lambda: Net(
    lambda m, x: m.out(torch.relu(m.lin(x)).flatten(1)), lin=nn.Linear(5, 4), out=nn.Linear(24, 3)), True)
add("linear_after_permute", "structure conv", S1, lambda: Net(
    lambda m, x: m.lin(m.conv(x).permute(0, 2, 1)).flatten(1), conv=nn.Conv1d(3, 6, 3), lin=nn.Linear(6, 2)))
add("linear_after_unsqueeze", "structure", [1, 6], lambda: Net(
    lambda m, x: m.out(torch.tanh(m.lin(x.unsqueeze(-1))).flatten(1)), lin=nn.Linear(1, 4), out=nn.Linear(24, 3)))
add("linear_on_feature_map", "structure conv", [1, 2, 5, 6], lambda: Net(
    lambda m, x: torch.tanh(m.lin(m.conv(x))).flatten(1), conv=nn.Conv2d(2, 3, 3), lin=nn.Linear(4, 5)))
# Flatten / Reshape as exporters write them
add("flatten_view", "structure conv", S2, lambda: Net(
    lambda m, x: m.out(torch.relu(m.conv(x)).view(x.size(0), -1)), conv=nn.Conv2d(3, 4, 3), out=nn.Linear(144, 3)))
add("flatten_reshape", "structure conv", S1, lambda: Net(
    lambda m, x: m.out(m.conv(x).reshape(x.shape[0], -1)), conv=nn.Conv1d(3, 4, 3), out=nn.Linear(56, 3)))
add("torch_flatten", "structure conv", S2, lambda: Net(
    lambda m, x: m.out(torch.flatten(m.conv(x), 1)), conv=nn.Conv2d(3, 2, 3, stride=2), out=nn.Linear(18, 3)))
add("reshape_feature_map_to_sequence", "structure conv", S2, lambda: Net(
    lambda m, x: m.out(m.conv(x).view(x.size(0), 4, -1).permute(0, 2, 1)).flatten(1),
    conv=nn.Conv2d(3, 4, 3, padding=1), out=nn.Linear(4, 2)))
add("reshape_features_to_tokens", "structure", [1, 8], lambda: Net(
    lambda m, x: m.out(torch.relu(m.lin(x)).view(-1, 4, 4)).flatten(1), lin=nn.Linear(8, 16), out=nn.Linear(4, 3)))
# Slice and flip
add("slice_crop_length", "structure conv", S1, then_head(lambda m, x: torch.relu(m.c(x))[:, :, 2:-1], S1,
                                                         c=nn.Conv1d(3, 4, 3)))
add("slice_channels", "structure conv", S1, then_head(lambda m, x: m.c(x)[:, 1:4], S1, c=nn.Conv1d(3, 6, 3)))
add("slice_stride", "structure conv", S1, then_head(lambda m, x: m.c(x)[:, :, ::2], S1, c=nn.Conv1d(3, 4, 3)))
add("slice_crop_2d", "structure conv", S2, then_head(lambda m, x: m.c(x)[:, :, 1:-1, 2:], S2, c=nn.Conv2d(3, 4, 3)))
add("flip_length", "structure conv", S1, then_head(lambda m, x: m.c2(torch.flip(torch.relu(m.c(x)), dims=[2])), S1,
                                                   c=nn.Conv1d(3, 4, 3), c2=nn.Conv1d(4, 4, 3)))
add("flip_width_2d", "structure conv", S2, then_head(lambda m, x: torch.flip(m.c(x), dims=[3]), S2,
                                                     c=nn.Conv2d(3, 2, 3)))
add("narrow_features", "structure", [1, 8], lambda: Net(
    lambda m, x: m.out(torch.narrow(torch.relu(m.lin(x)), 1, 2, 8)), lin=nn.Linear(8, 12), out=nn.Linear(8, 3)))

# ---------------------------------------------------------------- recurrent


class Recurrent(nn.Module):
    """rnn -> the last step of its output, its final state h_n (both directions joined) or the whole
    sequence (through a Linear at every step when `tag`)."""

    def __init__(self, rnn, read, tag=False):
        super().__init__()
        self.rnn, self.read = rnn, read
        width = rnn.hidden_size * (2 if rnn.bidirectional else 1)
        self.head = nn.Linear(width, 3) if read != "sequence" or tag else None

    def forward(self, x):
        y, h = self.rnn(x)
        if self.read == "last":
            y = y[:, -1]
        elif self.read == "h_n":
            h = h[0] if isinstance(h, tuple) else h
            y = torch.cat((h[-2], h[-1]), dim=1) if self.rnn.bidirectional else h[-1]
        return y if self.head is None else self.head(y)


SEQ = [1, 6, 4]
for name, cell, layers, bi, read, fast in [
        ("rnn_last_step", nn.RNN, 1, False, "last", True),
        ("gru_last_step", nn.GRU, 1, False, "last", True), ("gru_h_n", nn.GRU, 1, False, "h_n", False),
        ("gru_sequence", nn.GRU, 1, False, "sequence", False),
        ("lstm_last_step", nn.LSTM, 1, False, "last", False), ("lstm_h_n", nn.LSTM, 1, False, "h_n", False),
        ("lstm_sequence", nn.LSTM, 1, False, "sequence", False),
        ("bigru_last_step", nn.GRU, 1, True, "last", False), ("bigru_sequence", nn.GRU, 1, True, "sequence", False),
        ("bilstm_h_n", nn.LSTM, 1, True, "h_n", False), ("bilstm_sequence", nn.LSTM, 1, True, "sequence", False),
        ("gru_stacked_last_step", nn.GRU, 2, False, "last", False),
        ("lstm_stacked_h_n", nn.LSTM, 2, False, "h_n", False),
        ("bilstm_stacked_sequence", nn.LSTM, 2, True, "sequence", False)]:
    add(name, "recurrent", SEQ, lambda cell=cell, layers=layers, bi=bi, read=read: Recurrent(
        cell(4, 5, layers, batch_first=True, bidirectional=bi), read), fast)
add("gru_tagger", "recurrent structure", SEQ, lambda: Recurrent(nn.GRU(4, 5, batch_first=True), "sequence", tag=True))
add("conv1d_gru", "recurrent conv", [1, 3, 12], lambda: Net(
    lambda m, x: m.rnn(torch.relu(m.conv(x)).transpose(1, 2)), conv=nn.Conv1d(3, 4, 3),
    rnn=Recurrent(nn.GRU(4, 5, batch_first=True), "last")))

# ---------------------------------------------------------------- LayerNorm, attention, embedding

add("layernorm_mlp", "layernorm mlp", [1, 8], lambda: mlp(nn.LayerNorm(16), nn.ReLU()))
add("layernorm_sequence", "layernorm structure", [1, 6, 5], lambda: Net(
    lambda m, x: m.out(m.norm(m.lin(x))).flatten(1), lin=nn.Linear(5, 8), norm=nn.LayerNorm(8), out=nn.Linear(8, 2)))
add("layernorm_no_affine", "layernorm", [1, 8], lambda: mlp(nn.LayerNorm(16, elementwise_affine=False), nn.Tanh()))


class SelfAttention(nn.Module):
    """nn.MultiheadAttention over (N, T, d), mean-pooled; `block`: a transformer encoder block
    (residuals, LayerNorms, a feed-forward layer); `seq_first`: attention in its default (T, N, d)."""

    def __init__(self, heads, block=False, seq_first=False, d=8):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=not seq_first)
        self.block, self.seq_first = block, seq_first
        if block:
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.ff = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, d))
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        q = x.transpose(0, 1) if self.seq_first else x
        a = self.attn(q, q, q, need_weights=False)[0]
        a = a.transpose(0, 1) if self.seq_first else a
        if self.block:
            x = self.norm1(x + a)
            a = self.norm2(x + self.ff(x))
        return self.head(a.mean(dim=1))


add("mha_one_head", "attention", [1, 5, 8], lambda: SelfAttention(1))
add("mha_two_heads_seq_first", "attention", [1, 5, 8], lambda: SelfAttention(2, seq_first=True))
add("transformer_encoder_block", "attention layernorm", [1, 5, 8], lambda: SelfAttention(2, block=True))

TOKENS = [1, 6]  # token ids (int64); gatec draws ids 0-3
add("embedding_flatten_linear", "embedding", TOKENS, lambda: Net(
    lambda m, x: m.out(m.emb(x).flatten(1)), emb=nn.Embedding(10, 4), out=nn.Linear(24, 3)), form="exported",
    dtype="int64")
add("embedding_mean_pool", "embedding", TOKENS, lambda: Net(
    lambda m, x: m.out(m.emb(x).mean(dim=1)), emb=nn.Embedding(10, 6), out=nn.Linear(6, 3)), form="exported",
    dtype="int64")
add("embedding_gru", "embedding recurrent", TOKENS, lambda: Net(
    lambda m, x: m.rnn(m.emb(x)), emb=nn.Embedding(10, 4), rnn=Recurrent(nn.GRU(4, 5, batch_first=True), "last")),
    form="exported", dtype="int64")

# ---------------------------------------------------------------- plain MLPs

add("mlp_relu", "mlp", [1, 8], lambda: mlp(nn.ReLU()))
add("mlp_tanh_3layer", "mlp", [1, 10], lambda: nn.Sequential(
    nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 4)))
add("mlp_sigmoid_out", "mlp", [1, 8], lambda: nn.Sequential(mlp(nn.ReLU(), n_out=2), nn.Sigmoid()))
add("mlp_batchnorm_dropout", "mlp conv+bn", [1, 8], lambda: mlp(nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2)))
add("mlp_no_bias", "mlp", [1, 8], lambda: nn.Sequential(nn.Linear(8, 16, bias=False), nn.ReLU(),
                                                        nn.Linear(16, 4, bias=False)))

# ---------------------------------------------------------------- ONNX files as other exporters write them


def model_of(nodes, name, inputs, outputs, inits, opset=13, producer="", ir_version=None, domains=()):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs], inits)
    model = helper.make_model(graph, producer_name=producer, opset_imports=[
        helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)])
    if ir_version:
        model.ir_version = ir_version
    return model


def int64(name, values):
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def old_torch_flatten(seed=5):
    """torch 1.x at opset 9: Conv -> Relu -> MaxPool, then x.view(x.size(0), -1) as
    Shape -> Gather -> Unsqueeze -> Concat -> Reshape (Constant nodes), then Gemm (transB)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["p"], ["shape"]),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("v0", TensorProto.INT64, [], [0])),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
        helper.make_node("Constant", [], ["minus1"], value=int64("v1", [-1])),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["p", "target"], ["f"]),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], alpha=1.0, beta=1.0, transB=1),
    ]
    inits = [const("w1", rng.normal(0, 0.3, (4, 2, 3, 3))), const("b1", rng.normal(0, 0.1, 4)),
             const("w2", rng.normal(0, 0.2, (3, 36))), const("b2", rng.normal(0, 0.1, 3))]
    return model_of(nodes, "torch-jit-export", [("x", ["N", 2, 6, 6])], [("y", ["N", 3])], inits, 9, "pytorch", 4)


def keras_nhwc_conv(seed=6):
    """tf2onnx from a Keras model: NHWC input -> Transpose -> Conv -> Relu -> Transpose back ->
    Reshape [-1, n] (Keras's Flatten) -> MatMul -> Add -> Softmax."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Transpose", ["x"], ["xc"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["xc", "w1", "b1"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Transpose", ["r"], ["rl"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["rl", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "w2"], ["m"]),
        helper.make_node("Add", ["m", "b2"], ["z"]),
        helper.make_node("Softmax", ["z"], ["y"], axis=-1),
    ]
    inits = [const("w1", rng.normal(0, 0.3, (4, 2, 3, 3))), const("b1", rng.normal(0, 0.1, 4)), int64("flat", [-1, 144]),
             const("w2", rng.normal(0, 0.2, (144, 3))), const("b2", rng.normal(0, 0.1, 3))]
    return model_of(nodes, "sequential", [("x", ["unk__0", 6, 6, 2])], [("y", ["unk__0", 3])], inits, 13, "tf2onnx")


def tf2onnx_mlp_fixed_batch(act="Relu", seed=7, **attrs):
    """A fixed batch of 1, MatMul + Add layers (the hidden activation `act`), a sigmoid output (opset 11)."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["z1"]),
             helper.make_node(act, ["z1"], ["h"], **attrs), helper.make_node("MatMul", ["h", "w2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["z2"]), helper.make_node("Sigmoid", ["z2"], ["y"])]
    inits = [const("w1", rng.normal(0, 0.4, (10, 16))), const("b1", rng.normal(0, 0.1, 16)),
             const("w2", rng.normal(0, 0.4, (16, 2))), const("b2", rng.normal(0, 0.1, 2))]
    return model_of(nodes, "mlp", [("x", [1, 10])], [("y", [1, 2])], inits, 11, "tf2onnx")


add("onnx_exporter_mlp_opset9", "onnx mlp conv+bn", None, lambda: hls_models.exporter_mlp(opset=9), False, "onnx")
add("onnx_exporter_mlp_opset6", "onnx mlp conv+bn", None, lambda: hls_models.exporter_mlp(opset=6), False, "onnx")
add("onnx_conv_batchnorm", "onnx conv+bn conv", None, hls_models.conv_batchnorm, True, "onnx")
add("onnx_old_torch_flatten", "onnx conv pooling structure", None, old_torch_flatten, False, "onnx")
add("onnx_keras_nhwc_conv", "onnx conv structure activation", None, keras_nhwc_conv, False, "onnx")
add("onnx_tf2onnx_mlp_fixed_batch", "onnx mlp", None, tf2onnx_mlp_fixed_batch, False, "onnx")
add("onnx_keras_thresholded_relu", "onnx activation", None, lambda: tf2onnx_mlp_fixed_batch("ThresholdedRelu", alpha=0.3),
    False, "onnx")

# ---------------------------------------------------------------- QONNX (Quant nodes)


def quant(x, scale, bits, y, signed=1, narrow=0):
    return helper.make_node("Quant", [x, scale, "zero", bits], [y], domain=QONNX, signed=signed, narrow=narrow,
                            rounding_mode="ROUND")


def qonnx_mlp(s_in, s_w, s_a, bits_w=4, seed=8):
    """Quant input -> MatMul with Quant weights -> Add -> Relu -> unsigned Quant -> MatMul with Quant
    weights; `s_w` a scalar or one scale per output channel."""
    rng = np.random.default_rng(seed)
    nodes = [quant("x", "s_in", "bits8", "xq"), quant("w1f", "s_w1", "bits_w", "w1", narrow=1),
             helper.make_node("MatMul", ["xq", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["z1"]),
             helper.make_node("Relu", ["z1"], ["h"]), quant("h", "s_a", "bits8", "hq", signed=0),
             quant("w2f", "s_w2", "bits_w", "w2", narrow=1), helper.make_node("MatMul", ["hq", "w2"], ["y"])]
    inits = [const("zero", 0.0), const("bits8", 8.0), const("bits_w", float(bits_w)), const("s_in", s_in),
             const("s_w1", s_w), const("s_w2", np.mean(s_w)), const("s_a", s_a), const("w1f", rng.normal(0, 0.4, (10, 16))),
             const("b1", rng.normal(0, 0.1, 16)), const("w2f", rng.normal(0, 0.4, (16, 4)))]
    return model_of(nodes, "qonnx_mlp", [("x", ["N", 10])], [("y", ["N", 4])], inits, domains=[QONNX])


def qonnx_conv1d(seed=9):
    """Quant input -> Conv with 4-bit Quant weights (scales 2**-3) -> Relu -> Quant -> Flatten -> Gemm."""
    rng = np.random.default_rng(seed)
    nodes = [quant("x", "s_in", "bits8", "xq"), quant("w1f", "s_w", "bits4", "w1", narrow=1),
             helper.make_node("Conv", ["xq", "w1", "b1"], ["c"], kernel_shape=[3]),
             helper.make_node("Relu", ["c"], ["r"]), quant("r", "s_a", "bits8", "rq", signed=0),
             helper.make_node("Flatten", ["rq"], ["f"], axis=1), quant("w2f", "s_w", "bits4", "w2", narrow=1),
             helper.make_node("Gemm", ["f", "w2"], ["y"], transB=1)]
    inits = [const("zero", 0.0), const("bits8", 8.0), const("bits4", 4.0), const("s_in", 2.0 ** -4),
             const("s_w", 2.0 ** -3), const("s_a", 2.0 ** -2), const("w1f", rng.normal(0, 0.4, (4, 3, 3))),
             const("b1", rng.normal(0, 0.1, 4)), const("w2f", rng.normal(0, 0.3, (3, 40)))]
    return model_of(nodes, "qonnx_conv1d", [("x", ["N", 3, 12])], [("y", ["N", 3])], inits, domains=[QONNX])


add("qonnx_binarized", "qonnx", None, hls_models.binarized, False, "onnx")
add("qonnx_mlp_po2", "qonnx mlp", None, lambda: qonnx_mlp(2.0 ** -4, 2.0 ** -3, 2.0 ** -2), True, "onnx")
add("qonnx_mlp_float_scale", "qonnx mlp", None, lambda: qonnx_mlp(0.0371, 0.0517, 0.0893), False, "onnx")
add("qonnx_mlp_per_channel_scale", "qonnx mlp", None, lambda: qonnx_mlp(
    2.0 ** -4, np.random.default_rng(1).uniform(0.03, 0.09, 16), 0.0893, bits_w=6), False, "onnx")
add("qonnx_conv1d_po2", "qonnx conv", None, qonnx_conv1d, False, "onnx")

# ---------------------------------------------------------------- Brevitas, exported with export_qonnx(..., dynamo=False)


def brevitas_quants(po2):
    import brevitas.quant as q
    if po2:
        return q.Int8ActPerTensorFixedPoint, q.Int8WeightPerTensorFixedPoint, q.Uint8ActPerTensorFixedPoint
    return q.Int8ActPerTensorFloat, q.Int8WeightPerTensorFloat, q.Uint8ActPerTensorFloat


def brevitas_mlp(po2, bits=8):
    import brevitas.nn as qnn
    act_in, weight, act = brevitas_quants(po2)
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=act_in, return_quant_tensor=True),
        qnn.QuantLinear(10, 16, bias=True, weight_quant=weight, weight_bit_width=bits),
        qnn.QuantReLU(act_quant=act, bit_width=bits, return_quant_tensor=True),
        qnn.QuantLinear(16, 4, bias=True, weight_quant=weight, weight_bit_width=bits))


def brevitas_cnn(po2, dims, bn=False):
    import brevitas.nn as qnn
    act_in, weight, act = brevitas_quants(po2)
    conv = qnn.QuantConv1d if dims == 1 else qnn.QuantConv2d
    norm = [nn.BatchNorm1d(4) if dims == 1 else nn.BatchNorm2d(4)] if bn else []
    body = nn.Sequential(
        qnn.QuantIdentity(act_quant=act_in, return_quant_tensor=True),
        conv(3, 4, 3, bias=not bn, weight_quant=weight), *norm,
        qnn.QuantReLU(act_quant=act, bit_width=4, return_quant_tensor=True),
        nn.MaxPool1d(2) if dims == 1 else nn.MaxPool2d(2), nn.Flatten())
    n = 20 if dims == 1 else 36
    return nn.Sequential(body, qnn.QuantLinear(n, 3, bias=True, weight_quant=weight))


for po2, kind in ((True, "brevitas-po2"), (False, "brevitas-float")):
    tag = "po2" if po2 else "float"
    add(f"brevitas_mlp_{tag}", f"{kind} mlp", [1, 10], lambda po2=po2: brevitas_mlp(po2), True, "brevitas")
    add(f"brevitas_mlp_4bit_{tag}", f"{kind} mlp", [1, 10], lambda po2=po2: brevitas_mlp(po2, 4), False, "brevitas")
    add(f"brevitas_conv1d_pool_{tag}", f"{kind} conv pooling", [1, 3, 12], lambda po2=po2: brevitas_cnn(po2, 1),
        False, "brevitas")
    add(f"brevitas_conv2d_pool_{tag}", f"{kind} conv pooling", [1, 3, 8, 8], lambda po2=po2: brevitas_cnn(po2, 2),
        False, "brevitas")
    add(f"brevitas_conv2d_bn_{tag}", f"{kind} conv conv+bn", [1, 3, 8, 8],
        lambda po2=po2: brevitas_cnn(po2, 2, bn=True), False, "brevitas")

FAST = [name for name, c in CASES.items() if c.fast]
SLOW = [name for name, c in CASES.items() if not c.fast]
