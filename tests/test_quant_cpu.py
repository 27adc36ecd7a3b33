"""The cpu target runs QONNX: its lowering of Quant, BipolarQuant and Trunc gives what qonnx's
executor gives, and a Brevitas MLP exported to QONNX compiles and verifies."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import gatec
from gatec.errors import GatecError
from gatec.ir.reference import qonnx_reference
from gatec.ir.runtime import ort_session
from gatec.targets.cpu.quant import lower_qonnx, output_lsbs

QONNX = "qonnx.custom_op.general"


def one_node_model(op, inputs, consts, attrs, domain=QONNX, width=16, version=1):
    """x (N, width) -> op(x, consts...) -> y, with the constants as initializers."""
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()]
    node = helper.make_node(op, ["x"] + inputs, ["y"], domain=domain, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", width])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(QONNX, version)])


def lowered_and_reference(model, x, form="float"):
    low = lower_qonnx(model, form)
    assert not any(n.domain for n in low.graph.node)
    got = ort_session(low, failure="lowered model").run(None, {"x": x})[0]
    return got, qonnx_reference(model)([x])[0], low


def inputs(scale, n=2000, width=16, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32) * 3
    x[:50] = ((np.arange(50 * width).reshape(50, width) % 64) - 32 + 0.5).astype(np.float32) * np.float32(scale)
    return x  # the first rows sit on rounding ties


QUANTS = [  # bits, signed, narrow, scale, zero point, rounding mode
    (8, True, False, 2.0 ** -4, 0, "ROUND"), (8, False, False, 0.0173, 0, "ROUND"), (4, True, True, 0.25, 0, "ROUND"),
    (3, False, False, 0.3, 2, "ROUND"), (4, False, False, 0.125, 4, "ROUND"),
    (4, False, False, 0.125, 3, "ROUND"),  # an odd zero point: QuantizeLinear would round its ties the other way
    (2, True, False, 1.0, 0, "ROUND"), (12, True, False, 2.0 ** -8, 0, "ROUND"),
    (16, False, True, 0.001, 5, "ROUND"), (6, True, False, 0.1, 0.5, "ROUND"), (5, True, False, 0.2, 0, "FLOOR"),
    (7, False, False, 0.05, 0, "CEIL"), (1, True, False, 0.5, 0, "ROUND"),
    (8, True, False, np.linspace(0.01, 0.2, 16), 0, "ROUND"),  # per-channel scales
]


@pytest.mark.parametrize("form", ["float", "qdq"])
@pytest.mark.parametrize("bits,signed,narrow,scale,zeropt,mode", QUANTS)
def test_quant_lowering_is_exact(form, bits, signed, narrow, scale, zeropt, mode):
    model = one_node_model("Quant", ["s", "z", "b"], {"s": scale, "z": zeropt, "b": bits},
                           {"signed": int(signed), "narrow": int(narrow), "rounding_mode": mode})
    x = inputs(np.max(scale))
    got, want, low = lowered_and_reference(model, x, form)
    np.testing.assert_array_equal(got, want)
    ops = {n.op_type for n in low.graph.node}
    uses_qdq = (form == "qdq" and 2 <= bits <= 8 and np.size(scale) == 1 and zeropt % 2 == 0 and mode == "ROUND"
                and np.log2(scale) == np.round(np.log2(scale)))  # integer kernels are exact for powers of two
    assert ("QuantizeLinear" in ops) == uses_qdq
    assert ("Clip" in ops) == (not uses_qdq or bits < 8 or narrow) or bits == 1


def test_bipolar_and_trunc_lowering_is_exact():
    x = inputs(0.5)
    got, want, _ = lowered_and_reference(one_node_model("BipolarQuant", ["s"], {"s": 0.75}, {}), x)
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got)) == {-0.75, 0.75}
    x = np.round(inputs(1.0) * 64) / 64  # Trunc reads values on its input grid
    v2 = one_node_model("Trunc", ["s", "z", "ib", "os", "ob"],
                        {"s": 2.0 ** -6, "z": 0, "ib": 12, "os": 2.0 ** -3, "ob": 6},
                        {"signed": 1, "narrow": 0, "rounding_mode": "FLOOR"}, version=2)
    v1 = one_node_model("Trunc", ["s", "z", "ib", "ob"], {"s": 2.0 ** -6, "z": 0, "ib": 12, "ob": 9},
                        {"rounding_mode": "FLOOR"}, version=1)
    for trunc in (v1, v2):
        got, want, _ = lowered_and_reference(trunc, x)
        np.testing.assert_array_equal(got, want)
        assert len(np.unique(got)) < len(np.unique(x))


@pytest.mark.parametrize("form", ["float", "qdq"])
def test_quantized_weights_fold_to_constants(form):
    w = np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32)
    nodes = [helper.make_node("Quant", ["w", "s", "z", "b"], ["wq"], domain=QONNX, signed=1, narrow=1),
             helper.make_node("MatMul", ["x", "wq"], ["m"]),
             helper.make_node("Quant", ["m", "s2", "z", "b"], ["y"], domain=QONNX, signed=1, narrow=0)]
    inits = [numpy_helper.from_array(v, k) for k, v in
             {"w": w, "s": np.float32(2 ** -5), "z": np.float32(0), "b": np.float32(4), "s2": np.float32(0.25)}.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(QONNX, 1)])
    got, want, low = lowered_and_reference(model, inputs(0.25), form)
    np.testing.assert_array_equal(got, want)
    values = {t.name: numpy_helper.to_array(t) for t in low.graph.initializer}
    if form == "float":
        folded = values["wq"]
        assert len(np.unique(folded)) <= 15 and np.all(folded * 32 == np.round(folded * 32))
    else:  # int8 weights behind a DequantizeLinear
        dq = next(n for n in low.graph.node if n.output[0] == "wq")
        assert dq.op_type == "DequantizeLinear" and values[dq.input[0]].dtype == np.int8
        assert np.abs(values[dq.input[0]]).max() <= 7
    assert output_lsbs(model) == [0.25]
    cpu = gatec.targets.get("cpu")
    tol = cpu.tolerance(cpu.plan(gatec.ir.IR(model, [], []), {}))
    assert tol.atol == pytest.approx(0.25) and tol.rtol == 0


def test_a_scale_that_is_not_constant_is_refused():
    node = helper.make_node("Quant", ["x", "x", "z", "b"], ["y"], domain=QONNX)
    inits = [numpy_helper.from_array(np.float32(v), k) for k, v in {"z": 0, "b": 8}.items()]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], inits)
    with pytest.raises(GatecError, match="scale is not a constant"):
        lower_qonnx(helper.make_model(graph))


def test_brevitas_mlp_compiles_to_cpu_and_verifies(tmp_path):
    import brevitas.nn as brevitas_nn
    from brevitas.export import export_qonnx
    from sklearn.datasets import load_digits
    torch.manual_seed(0)
    d = load_digits()
    x = torch.from_numpy((d.data / 16).astype(np.float32))
    y = torch.from_numpy(d.target)
    model = torch.nn.Sequential(
        brevitas_nn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        brevitas_nn.QuantLinear(64, 32, bias=True, weight_bit_width=4),
        brevitas_nn.QuantReLU(bit_width=4, return_quant_tensor=True),
        brevitas_nn.QuantLinear(32, 10, bias=True, weight_bit_width=4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches train fastest on one thread
    try:
        for step in range(40):
            idx = torch.randint(0, len(x), (64,))
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    path = tmp_path / "brevitas_mlp.onnx"
    export_qonnx(model, x[:1], str(path), dynamo=False, input_names=["x"], output_names=["y"],
                 dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    assert any(n.op_type == "Quant" for n in onnx.load(str(path)).graph.node)
    data = x[:300].numpy()
    art = gatec.compile(str(path), target="cpu", output=str(tmp_path / "cpu"), input_shapes=[[1, 64]], data=[data])
    v = art.manifest["verification"]
    assert v["ok"] and v["argmax_agreement"] == 1.0
    with torch.no_grad():
        want = model(torch.from_numpy(data)).numpy()
    (got,) = art.run(data)
    assert np.abs(got - want).max() <= 1e-4 * (1 + np.abs(want).max())  # and Brevitas's own forward
    assert (got.argmax(1) == d.target[:300]).mean() > 0.8  # it learned something


# ------------------------------------------------------------ qdq form: ONNX Runtime's integer kernels, any x86 CPU

INTEGER_KERNELS = {"QGemm", "QLinearMatMul", "QLinearConv", "MatMulIntegerToFloat", "MatMulInteger", "ConvInteger"}


def two_layer_qonnx(per_channel=False, bias_step=1.0, float_w0=False, requant=False, seed=0):
    """x -> Quant(int8) -> Gemm -> Relu -> Quant(uint8) [-> Quant(uint8, another scale)] -> Gemm -> y:
    8-bit weights over the whole int8 range (one scale, or one per output channel), float biases at
    `bias_step` x the accumulator grid (1: on it, as post-training quantization puts them; 1/8: off
    it, as gatec.qat's 16-bit biases), the first weight in float where `float_w0`."""
    rng = np.random.default_rng(seed)
    inits, nodes = {}, []

    def quant(x, out, scale, signed, narrow=False):
        inits.update({out + "_s": np.float32(scale) if np.size(scale) == 1 else np.asarray(scale, np.float32),
                      out + "_z": np.float32(0), out + "_b": np.float32(8)})
        nodes.append(helper.make_node("Quant", [x, out + "_s", out + "_z", out + "_b"], [out], domain=QONNX,
                                      signed=int(signed), narrow=int(narrow), rounding_mode="ROUND"))
        return out

    x, sa = quant("x", "xq", 2.0 ** -5, True), 2.0 ** -5
    for i, (k, n) in enumerate(((16, 32), (32, 8))):
        sw = 2.0 ** -rng.integers(6, 9, (n, 1)) if per_channel else np.float64(2.0 ** -7)
        inits[f"w{i}"] = (rng.integers(-127, 128, (n, k)) * sw).astype(np.float32)
        inits[f"b{i}"] = (rng.integers(-3000, 3000, n) * (sa * sw.reshape(-1) * bias_step)).astype(np.float32)
        w = f"w{i}" if i == 0 and float_w0 else quant(f"w{i}", f"w{i}q", sw, True, narrow=True)
        nodes.append(helper.make_node("Gemm", [x, w, f"b{i}"], [f"y{i}"], transB=1))
        if i == 0:
            nodes.append(helper.make_node("Relu", ["y0"], ["r0"]))
            x, sa = quant("r0", "a0", 2.0 ** -5, False), 2.0 ** -5
            if requant:
                x, sa = quant(x, "a1", 2.0 ** -4, False), 2.0 ** -4
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
                              [helper.make_tensor_value_info("y1", TensorProto.FLOAT, ["n", 8])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(QONNX, 1)])


def ort_optimized(model, level, path):
    """What ONNX Runtime runs for `model` at `level`: the optimized graph, and the session."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    opts.optimized_model_filepath = str(path)
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return onnx.load(str(path)), session


def avx2_u8s8(a, b):
    """a (uint8) @ b (int8) as MLAS's AVX2 (and AVX-512 without VNNI) kernel forms it: vpmaddubsw
    adds the products of adjacent k pairs, saturated to int16, before they are summed in int32."""
    a = np.pad(a.astype(np.int64), ((0, 0), (0, a.shape[1] % 2)))  # an odd k: one more, zero, product
    b = np.pad(b.astype(np.int64), ((0, b.shape[0] % 2), (0, 0)))
    pairs = a[:, 0::2, None] * b[None, 0::2] + a[:, 1::2, None] * b[None, 1::2]
    return np.clip(pairs, -2 ** 15, 2 ** 15 - 1).sum(1)


ELEMENTWISE = {"Relu": lambda x: np.maximum(x, 0), "Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
               "Div": np.divide, "Round": np.round, "Clip": np.clip}


def run_as_avx2(model, feeds):
    """ONNX Runtime's optimized graph run in numpy, with the integer products of a CPU without VNNI."""
    env = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer} | feeds | {"": None}
    for n in model.graph.node:
        x, at = [env[i] for i in n.input], {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            shape = [-1 if d == at.get("axis", 1) % x[0].ndim else 1 for d in range(x[0].ndim)]
            s, z = x[1].reshape(shape if x[1].ndim else ()), x[2].reshape(shape if x[2].ndim else ())
            if n.op_type == "DequantizeLinear":
                y = ((x[0].astype(np.int32) - z) * s).astype(np.float32)
            else:
                y = np.clip(np.round(x[0] / s) + z, np.iinfo(z.dtype).min, np.iinfo(z.dtype).max).astype(z.dtype)
        elif n.op_type in ("QGemm", "MatMulIntegerToFloat"):
            a, sa, za, b, sb, zb = x[:6] if n.op_type == "QGemm" else [x[i] for i in (0, 2, 4, 1, 3, 5)]
            b = b.T if at.get("transB", 0) else b
            assert not at.get("transA", 0) and at.get("alpha", 1) == 1
            ab = avx2_u8s8(a, b) if (a.dtype, b.dtype) == (np.uint8, np.int8) else a.astype(np.int64) @ b
            zb = zb.astype(np.int64)
            acc = ab - int(za) * b.astype(np.int64).sum(0) - a.astype(np.int64).sum(1, keepdims=True) * zb \
                + a.shape[1] * int(za) * zb
            bias = x[6] if len(x) > 6 else None
            if n.op_type == "QGemm":
                acc = acc if bias is None else acc + bias
                y = acc.astype(np.float32) * (sa * sb)
                if len(x) > 7:  # quantized output
                    info = np.iinfo(x[8].dtype)
                    y = np.clip(np.round(acc.astype(np.float32) * (sa * sb / x[7])) + x[8], info.min, info.max)
                    y = y.astype(x[8].dtype)
            else:
                y = acc.astype(np.float32) * (sa * sb) + (0 if bias is None else bias)
        elif n.op_type == "Gemm":
            y = x[0] @ (x[1].T if at.get("transB", 0) else x[1]) + (x[2] if len(x) > 2 else 0)
        else:
            y = ELEMENTWISE[n.op_type](*x)
        env[n.output[0]] = y.astype(np.float32) if y.dtype == np.float64 else y
    return [env[o.name] for o in model.graph.output]


@pytest.mark.parametrize("case", [dict(), dict(per_channel=True, bias_step=1 / 8), dict(float_w0=True),
                                  dict(requant=True)],
                         ids=["per-tensor, bias on grid", "per-channel, bias off grid", "float weight", "requant"])
def test_qdq_form_is_exact_on_every_cpu(case, tmp_path):
    """ONNX Runtime's QDQ rewrites change no value the lowering hands it: basic (no fusion) and all
    (integer kernels) give qonnx's output bit for bit, every int8 weight of an integer kernel fits
    in +-64 so that u8 x s8 pair sums cannot saturate, and the kernels of a CPU without VNNI,
    emulated, give the same output too."""
    model = two_layer_qonnx(**case)
    x = np.random.default_rng(1).normal(0, 3, (301, 16)).astype(np.float32)  # many inputs at the int8 limits
    want = qonnx_reference(model)([x])[0]
    low = lower_qonnx(model, "qdq")
    level = ort.GraphOptimizationLevel
    runs = {name: ort_optimized(low, lvl, tmp_path / f"{name}.onnx")
            for name, lvl in (("basic", level.ORT_ENABLE_BASIC), ("all", level.ORT_ENABLE_ALL))}
    for name, (_, session) in runs.items():
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], want, err_msg=name)
    graph = runs["all"][0].graph
    kernels = [n for n in graph.node if n.op_type in INTEGER_KERNELS]
    assert kernels or case.get("float_w0")  # the integer kernels still run (where a layer has integer weights)
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in kernels:
        w = weights[n.input[3] if n.op_type == "QGemm" else n.input[1]]
        assert w.dtype == np.uint8 or np.abs(w.astype(np.int64)).max() <= 64, n.name
    np.testing.assert_array_equal(run_as_avx2(runs["all"][0], {"x": x})[0], want)
