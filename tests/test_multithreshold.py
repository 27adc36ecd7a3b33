"""QONNX/FINN MultiThreshold, as FINN writes it after streamlining (integer weights, integer-ish
thresholds per channel, out_bias -2**(b-1)): lowered to standard ONNX on cpu (bit for bit what
qonnx's executor gives) and a gatec hls4ml extension layer on fpga (GatecMultiThreshold), verified;
NCHW thresholds after a convolution (channels last in the fpga's memory) and NHWC data_layout."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import gatec
from gatec.errors import GatecError
from gatec.ir.reference import qonnx_reference
from gatec.ir.runtime import ort_session
from gatec.targets.cpu.quant import lower_qonnx

QONNX = "qonnx.custom_op.general"
FINN = "finn.custom_op.general"


def multithreshold(x, t, y, out_bias, out_dtype, layout=None, domain=QONNX, scale=None):
    attrs = {"out_dtype": out_dtype, "out_bias": float(out_bias)}
    if layout is not None:
        attrs["data_layout"] = layout
    if scale is not None:
        attrs["out_scale"] = float(scale)
    return helper.make_node("MultiThreshold", [x, t], [y], domain=domain, name="mt_" + y, **attrs)


def thresholds(rng, channels, steps, lo, hi):
    """Sorted integer thresholds per channel, half of the channels shifted by 0.5 (as FINN's rounding
    of thresholds leaves them for integer and half-integer inputs)."""
    t = np.sort(rng.integers(lo, hi, (channels, steps)), axis=1).astype(np.float32)
    return t + np.float32(0.5) * (rng.random((channels, 1)) < 0.5)


def model_of(nodes, consts, x_shape, y_shape, domain=QONNX, domain_import=True):
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()]
    graph = helper.make_graph(nodes, "finn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    opsets = [helper.make_opsetid("", 13)] + ([helper.make_opsetid(domain, 1)] if domain_import else [])
    return helper.make_model(graph, opset_imports=opsets)


def mlp(domain=QONNX, domain_import=True, seed=0):
    """MatMul -> MultiThreshold (INT4: 15 thresholds per channel, out_bias -8) -> MatMul ->
    MultiThreshold (one row of 3 thresholds for every channel, INT2, out_bias -2)."""
    rng = np.random.default_rng(seed)
    consts = {"w1": rng.integers(-2, 3, (16, 24)), "t1": thresholds(rng, 24, 15, -12, 13),
              "w2": rng.integers(-1, 2, (24, 6)), "t2": thresholds(rng, 1, 3, -6, 7)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"]),
             multithreshold("h1", "t1", "a1", -8, "INT4", domain=domain),
             helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
             multithreshold("h2", "t2", "y", -2, "INT2", domain=domain)]
    return model_of(nodes, consts, ["n", 16], ["n", 6], domain, domain_import)


def cnn(layout="NCHW", seed=1):
    """Conv (integer weights) -> MultiThreshold per output channel (UINT3) -> Flatten -> MatMul; with
    NHWC, the MultiThreshold reads the convolution's output transposed to (N, H, W, C)."""
    rng = np.random.default_rng(seed)
    consts = {"w": rng.integers(-1, 2, (4, 3, 3, 3)), "t": thresholds(rng, 4, 7, -5, 6),
              "w2": rng.integers(-2, 3, (144, 5))}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3])]
    if layout == "NHWC":
        nodes += [helper.make_node("Transpose", ["c"], ["c_nhwc"], perm=[0, 2, 3, 1]),
                  multithreshold("c_nhwc", "t", "a", 0, "UINT3", layout="NHWC", scale=0.5)]
    else:
        nodes += [multithreshold("c", "t", "a", 0, "UINT3", layout=layout, scale=0.5)]
    nodes += [helper.make_node("Flatten", ["a"], ["f"]), helper.make_node("MatMul", ["f", "w2"], ["y"])]
    return model_of(nodes, consts, ["n", 3, 8, 8], ["n", 5])


def on_input(seed=2):
    """MultiThreshold on the model input (N, C, H, W), channels first in memory on fpga too, then
    Flatten -> MatMul; the input is float (the drawn inputs too), held exactly on fpga."""
    rng = np.random.default_rng(seed)
    consts = {"t": np.sort(rng.standard_normal((4, 5)), axis=1).astype(np.float32),
              "w": rng.integers(-2, 3, (36, 3))}
    nodes = [multithreshold("x", "t", "a", -2, "INT3", layout="NCHW"),
             helper.make_node("Flatten", ["a"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])]
    return model_of(nodes, consts, ["n", 4, 3, 3], ["n", 3])


def chained():
    """MultiThreshold -> MultiThreshold: the second compares levels (-2 .. 1.5, steps of 0.5, an
    ap_fixed<4,2> on fpga) against thresholds off that grid, beyond its range and infinite."""
    rng = np.random.default_rng(5)
    t2 = np.sort(rng.uniform(-2.5, 2.5, (6, 4)), axis=1).astype(np.float32)
    t2[0, 0], t2[1, 3], t2[2, 0], t2[3, 3] = -np.inf, np.inf, -100.0, 100.0
    t2[4] = [-2.0, -0.5, 0.0, 1.5]  # on the grid: ties
    nodes = [multithreshold("x", "t1", "a", -2, "INT3", scale=0.5), multithreshold("a", "t2", "y", 1, "UINT3")]
    return model_of(nodes, {"t1": thresholds(rng, 6, 7, -4, 5), "t2": t2}, ["n", 6], ["n", 6])


def compiles_exactly(path, x, want, tmp_path, samples: int) -> None:
    """cpu and fpga artifacts of the model file: verified with no error, and equal to `want` on x."""
    for target in ("cpu", "fpga"):
        art = gatec.compile(str(path), target, tmp_path / target, data=[x], samples=samples)
        v = art.manifest["verification"]
        assert v["ok"] and v["max_abs_err"] == 0, (target, v)
        np.testing.assert_array_equal(art.run(x)[0], want)


@pytest.mark.parametrize("make", [on_input, chained])
def test_float_and_off_grid_thresholds_compile_exactly(make, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(make(), str(path))
    shape = [40] + [d.dim_value for d in make().graph.input[0].type.tensor_type.shape.dim[1:]]
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32) * 3
    want = qonnx_reference(make())([x])[0]
    compiles_exactly(path, x, want, tmp_path, samples=100)


def integer_inputs(shape, seed=0):
    return np.random.default_rng(seed).integers(-3, 4, shape).astype(np.float32)


@pytest.mark.parametrize("layout", [None, "NC"])
def test_lowering_is_qonnx_bit_for_bit(layout):
    """One MultiThreshold, inputs on its thresholds (ties: x >= t counts), between them, far outside,
    and random floats: the lowered graph in ONNX Runtime equals qonnx's executor exactly."""
    rng = np.random.default_rng(2)
    t = thresholds(rng, 8, 7, -6, 7)
    node = multithreshold("x", "t", "y", -4, "INT3", layout=layout, scale=0.75)
    model = model_of([node], {"t": t}, ["n", 8], ["n", 8])
    x = np.concatenate([np.tile(t.T, (3, 1)), np.tile(t.T, (3, 1)) - np.float32(1e-6),
                        rng.standard_normal((500, 8)).astype(np.float32) * 6,
                        np.full((2, 8), 1e9, np.float32), np.full((2, 8), -1e9, np.float32)])
    low = lower_qonnx(model)
    assert not any(n.domain for n in low.graph.node)
    assert {"GreaterOrEqual", "ReduceSum", "Gather"} <= {n.op_type for n in low.graph.node}
    got = ort_session(low, failure="lowered").run(None, {"x": x})[0]
    want = qonnx_reference(model)([x])[0]
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_float64_thresholds_round_up_onto_float32():
    """Thresholds stored as float64 between two float32 values: qonnx compares x (float32) in float64;
    the lowering rounds them up to the next float32, which x meets exactly when it meets them."""
    t = np.array([[0.1, 1.0 / 3, 2.0]], np.float64)
    node = multithreshold("x", "t", "y", 0, "UINT2")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
                              [numpy_helper.from_array(t, "t")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)])
    near = np.float32([0.1, 1.0 / 3, 2.0])
    x = np.concatenate([np.stack([near, np.nextafter(near, np.float32(1)), np.nextafter(near, np.float32(-1))]),
                        np.zeros((3, 1), np.float32)], axis=1).astype(np.float32)
    got = ort_session(lower_qonnx(model), failure="lowered").run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, qonnx_reference(model)([x])[0])


@pytest.mark.parametrize("domain,domain_import", [(QONNX, True), (FINN, False)])
def test_finn_mlp_compiles_exactly_to_cpu_and_fpga(domain, domain_import, tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp(domain, domain_import), str(path))
    x = integer_inputs((120, 16))
    want = qonnx_reference(mlp())([x])[0]
    compiles_exactly(path, x, want, tmp_path, samples=100)
    assert set(np.unique(want)) <= {-2.0, -1.0, 0.0, 1.0}
    # cpu: a MultiThreshold output is held to one out_scale step (its LSB), not the float tolerance
    assert gatec.compile(str(path), "cpu", tmp_path / "cpu2", data=[x], samples=50).manifest["verification"][
        "outputs"][0]["tolerance"].startswith("|err| <= 1 ")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_conv_thresholds_per_channel_compile_exactly(layout, tmp_path):
    """Per-channel thresholds after a convolution: on fpga the convolution's output lies channels last
    in memory, and each element reads its own channel's thresholds."""
    path = tmp_path / "cnn.onnx"
    onnx.save(cnn(layout), str(path))
    x = integer_inputs((60, 3, 8, 8), seed=4)
    want = qonnx_reference(cnn(layout))([x])[0]
    compiles_exactly(path, x, want, tmp_path, samples=50)
    prj = (tmp_path / "fpga" / "hls4ml_prj" / "firmware" / "gatec_model.cpp").read_text()
    assert "static const int ch[" in prj  # per-element channels: thresholds per channel


def test_thresholds_not_constant_are_refused(tmp_path):
    node = multithreshold("x", "t", "y", 0, "UINT2")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["t"]), node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)]),
              str(path))
    for target, words in (("cpu", "thresholds are not a constant"), ("fpga", "thresholds must be a constant")):
        with pytest.raises(GatecError) as e:
            gatec.compile(str(path), target, tmp_path / target)
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
