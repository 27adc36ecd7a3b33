"""QONNX quantizers with float scales, per-channel scales and zero points on `fpga` (hls4ml): each
becomes ApplyAlpha (1/s, z) -> a cast to the integer type -> ApplyAlpha (s, -s*z), as hls4ml's own
QONNX flow builds it. Not bit-exact: where x / s + z lies within float32 error of a rounding
boundary, qonnx's float32 reference and the C simulation round to neighbouring integers, one step
s, and the bound (summary.error_bound, layers/quantizers.float_scale_error) carries that step to
the outputs through the layers after it. Each model here compiles and verifies; then, on fresh
inputs (half of them placed exactly on rounding boundaries of the input quantizer, where the two
really do round differently), every output is within the bound, and on plain random inputs almost
every output equals the reference to float32 rounding (a wrong scale, zero point or channel
order would move most of them)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import gatec
from gatec.errors import GatecError
from gatec.ir.reference import run_qonnx

QONNX = "qonnx.custom_op.general"
QUANTIZED_INPUT = "ap_fixed<64,24>"


def const(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def quant(x, scale, zero, bits, y, signed=1, narrow=0, rounding="ROUND"):
    return helper.make_node("Quant", [x, scale, zero, bits], [y], domain=QONNX, signed=signed, narrow=narrow,
                            rounding_mode=rounding)


def qonnx_model(nodes, inits, x_shape, y_shape):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)])
    model.ir_version = 8
    return model


def mlp_zero_point(seed=5, act_zero=17.0, signed_act=0):
    """Quant(x: float scale, zero point 3) -> MatMul(4-bit float-scale weights) -> Add -> Relu ->
    Quant(unsigned, float scale, zero point) -> MatMul(float-scale weights)."""
    rng = np.random.default_rng(seed)
    nodes = [quant("x", "s_in", "z_in", "bits8", "xq"), quant("w1f", "s_w1", "zero", "bits4", "w1", narrow=1),
             helper.make_node("MatMul", ["xq", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["z1"]),
             helper.make_node("Relu", ["z1"], ["h"]),
             quant("h", "s_a", "z_a", "bits8", "hq", signed=signed_act),
             quant("w2f", "s_w2", "zero", "bits4", "w2", narrow=1), helper.make_node("MatMul", ["hq", "w2"], ["y"])]
    inits = [const("zero", 0.0), const("bits8", 8.0), const("bits4", 4.0), const("s_in", 0.0371), const("z_in", 3.0),
             const("s_w1", 0.0517), const("s_w2", 0.0613), const("s_a", 0.0893), const("z_a", act_zero),
             const("w1f", rng.normal(0, 0.4, (10, 16))), const("b1", rng.normal(0, 0.1, 16)),
             const("w2f", rng.normal(0, 0.4, (16, 4)))]
    return qonnx_model(nodes, inits, ["N", 10], ["N", 4])


def conv_per_channel(seed=6):
    """Quant(x) -> Conv(per-channel float-scale weights) -> Quant(per-channel scale and zero point on
    the channel axis, unsigned) -> MaxPool -> Flatten -> Gemm: gatec's convolutions run channels-last,
    so the per-channel constants must follow the tensor's memory order."""
    rng = np.random.default_rng(seed)
    nodes = [quant("x", "s_in", "zero", "bits8", "xq"),
             quant("wcf", "s_wc", "zero", "bits8", "wc", narrow=1),
             helper.make_node("Conv", ["xq", "wc", "bc"], ["c"], kernel_shape=[3, 3]),
             quant("c", "s_c", "z_c", "bits6", "cq", signed=0),
             helper.make_node("MaxPool", ["cq"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], axis=1),
             quant("wdf", "s_wd", "zero", "bits8", "wd", narrow=1),
             helper.make_node("Gemm", ["f", "wd"], ["y"], transB=1)]
    inits = [const("zero", 0.0), const("bits8", 8.0), const("bits6", 6.0), const("s_in", 0.0291),
             const("s_wc", rng.uniform(0.002, 0.006, (4, 1, 1, 1))), const("wcf", rng.normal(0, 0.2, (4, 3, 3, 3))),
             const("bc", rng.normal(0, 0.1, 4)),
             # very different per channel: a channel order mixed up moves almost every output
             const("s_c", np.array([0.011, 0.047, 0.023, 0.071]).reshape(1, 4, 1, 1)),
             const("z_c", np.array([5.0, 20.0, 0.0, 33.0]).reshape(1, 4, 1, 1)),
             const("s_wd", 0.0037), const("wdf", rng.normal(0, 0.2, (3, 36)))]
    return qonnx_model(nodes, inits, ["N", 3, 8, 8], ["N", 3])


# ------------------------------------------------------------------ Brevitas, with its default float quantizers


def brevitas_mlp(per_channel=False, zero_point=False):
    import brevitas.nn as qnn
    import brevitas.quant as q
    weight = q.Int8WeightPerChannelFloat if per_channel else q.Int8WeightPerTensorFloat
    first = q.ShiftedUint8ActPerTensorFloat if zero_point else q.Int8ActPerTensorFloat
    torch.manual_seed(0)
    return torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=first, return_quant_tensor=True),
        qnn.QuantLinear(10, 16, bias=True, weight_quant=weight),
        qnn.QuantReLU(act_quant=q.Uint8ActPerTensorFloat, return_quant_tensor=True),
        qnn.QuantLinear(16, 4, bias=True, weight_quant=weight))


def brevitas_conv2d(bn=False):
    import brevitas.nn as qnn
    import brevitas.quant as q
    torch.manual_seed(0)
    norm = [torch.nn.BatchNorm2d(4)] if bn else []
    return torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=q.Int8ActPerTensorFloat, return_quant_tensor=True),
        qnn.QuantConv2d(3, 4, 3, bias=not bn, weight_quant=q.Int8WeightPerChannelFloat), *norm,
        qnn.QuantReLU(act_quant=q.Uint8ActPerTensorFloat, bit_width=4, return_quant_tensor=True),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        qnn.QuantLinear(36, 3, bias=True, weight_quant=q.Int8WeightPerTensorFloat))


def export(model, shape, path):
    """Calibrated as Brevitas users do (a few batches in training mode: the scales become float), then
    exported with export_qonnx(..., dynamo=False)."""
    from brevitas.export import export_qonnx
    model.train()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(10):
            model(torch.randn(64, *shape[1:], generator=gen) * 1.5 + 0.3)
    model.eval()
    export_qonnx(model, torch.randn(shape, generator=gen), str(path), dynamo=False, input_names=["x"],
                 output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    return path


# ------------------------------------------------------------------ checks


def input_quantizer(model):
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    name = model.graph.input[0].name
    node = next(n for n in model.graph.node if n.op_type == "Quant" and n.input[0] == name)
    return inits[node.input[1]], inits[node.input[2]]


def inputs(model, shape, seed, n=600):
    """n rows: the first half on rounding boundaries (k + 1/2 steps) of the input quantizer."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.3, 1.5, (n, *shape[1:])).astype(np.float32)
    s, z = input_quantizer(model)
    k = np.round(x / s + z)
    x[: n // 2] = ((k - z + rng.choice([-0.5, 0.5], x.shape)) * s).astype(np.float32)[: n // 2]
    return x


def compile_and_measure(path, shape, tmp_path, seeds=(0, 1)):
    """Compiles (its own verification must pass), then measures on fresh inputs: (bound, per seed the
    largest error on boundary rows, and the share of outputs off by more than 1e-5 on random rows)."""
    art = gatec.compile(str(path), "fpga", tmp_path / "fpga", samples=200)
    bound = art.tolerance.atol
    assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] <= bound
    model = onnx.load(str(path))
    worst, off = [], []
    for seed in seeds:
        x = inputs(model, shape, seed)
        err = np.abs(art.run([x])[0].astype(np.float64) - run_qonnx(model, [x])[0])
        assert err.max() <= bound, (seed, err.max(), bound)
        half = len(x) // 2
        worst.append(float(err.max()))
        off.append(float(np.mean(err[half:] > 1e-5)))
    return art, bound, worst, off


def layer_classes(art):
    return [l["class"] for l in json.loads((art.path / "hls_summary.json").read_text())["layers"]]


def test_qonnx_float_scale_zero_point_mlp(tmp_path):
    path = tmp_path / "mlp_zp.onnx"
    onnx.save(mlp_zero_point(), path)
    art, bound, worst, off = compile_and_measure(path, [1, 10], tmp_path)
    summary = json.loads((art.path / "hls_summary.json").read_text())
    assert summary["configured"]["default_precision"]["default"] == QUANTIZED_INPUT
    # scale, quantize, unscale for each of the two activation quantizers
    casts = [l for l in summary["layers"] if l["class"] == "Activation" and "RND_CONV" in l["result"]]
    assert [c["result"] for c in casts] == ["fixed<8,8,RND_CONV,SAT,0>", "ufixed<8,8,RND_CONV,SAT,0>"]  # hls4ml's names
    assert layer_classes(art).count("ApplyAlpha") == 4
    # the bound, by hand: s_in * |W1|_inf * |W2|_inf + s_a * |W2|_inf (+ 1e-4)
    from qonnx.custom_op.general.quant import quant as qonnx_quant
    inits = {i.name: numpy_helper.to_array(i) for i in mlp_zero_point().graph.initializer}
    w1 = qonnx_quant(inits["w1f"], inits["s_w1"], inits["zero"], inits["bits4"], 1, 1, "ROUND")
    w2 = qonnx_quant(inits["w2f"], inits["s_w2"], inits["zero"], inits["bits4"], 1, 1, "ROUND")
    g1, g2 = np.abs(w1).sum(axis=0).max(), np.abs(w2).sum(axis=0).max()
    assert bound == pytest.approx(1e-4 + 0.0371 * g1 * g2 + 0.0893 * g2, rel=1e-6)
    assert max(worst) > 1e-3  # on boundaries the two really do round differently...
    assert max(off) < 0.02  # ...elsewhere almost never


def test_qonnx_per_channel_activation_scale_and_zero_point_on_a_convolution(tmp_path):
    path = tmp_path / "conv_pc.onnx"
    onnx.save(conv_per_channel(), path)
    art, bound, worst, off = compile_and_measure(path, [1, 3, 8, 8], tmp_path)
    assert max(off) < 0.02


@pytest.mark.parametrize("kind", ["mlp", "mlp_per_channel", "mlp_zero_point", "conv2d", "conv2d_bn"])
def test_brevitas_float_quantizers_verify(kind, tmp_path):
    model = {"mlp": lambda: brevitas_mlp(), "mlp_per_channel": lambda: brevitas_mlp(per_channel=True),
             "mlp_zero_point": lambda: brevitas_mlp(zero_point=True), "conv2d": lambda: brevitas_conv2d(),
             "conv2d_bn": lambda: brevitas_conv2d(bn=True)}[kind]()
    shape = [1, 3, 8, 8] if kind.startswith("conv") else [1, 10]
    path = export(model, shape, tmp_path / f"{kind}.onnx")
    s, z = input_quantizer(onnx.load(str(path)))
    assert np.frexp(s)[0] != 0.5 and (z != 0) == (kind == "mlp_zero_point")  # Brevitas made a float scale
    art, bound, worst, off = compile_and_measure(path, shape, tmp_path)
    assert max(off) < 0.02
    assert "ApplyAlpha" in layer_classes(art)


def test_power_of_two_quantizers_keep_their_bound(tmp_path):
    """A model with power-of-two quantizers only is still the exact cast, held to 1e-4."""
    model = mlp_zero_point()
    for init in model.graph.initializer:
        if init.name in ("s_in", "s_a", "s_w1", "s_w2"):
            init.CopyFrom(const(init.name, {"s_in": 2.0 ** -4, "s_a": 2.0 ** -3}.get(init.name, 2.0 ** -3)))
        if init.name in ("z_in", "z_a"):
            init.CopyFrom(const(init.name, 0.0))
    path = tmp_path / "po2.onnx"
    onnx.save(model, path)
    art = gatec.compile(str(path), "fpga", tmp_path / "fpga", samples=100)
    assert art.tolerance.atol == 1e-4 and "ApplyAlpha" not in layer_classes(art)


@pytest.mark.parametrize("change, why", [
    ({"signed_act": 0, "narrow": 1}, "unsigned narrow-range"),
    ({"rounding": "CEIL"}, "rounding mode CEIL"),
])
def test_what_ap_fixed_cannot_express_is_refused_by_name(change, why, tmp_path):
    model = mlp_zero_point()
    node = next(n for n in model.graph.node if n.output[0] == "hq")
    for a in node.attribute:
        if a.name == "narrow" and "narrow" in change:
            a.i = change["narrow"]
        if a.name == "rounding_mode" and "rounding" in change:
            a.s = change["rounding"].encode()
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    with pytest.raises(GatecError, match=why):
        gatec.compile(str(path), "fpga", tmp_path / "fpga", samples=50)
