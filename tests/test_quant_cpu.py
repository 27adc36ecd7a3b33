"""The cpu target runs QONNX: its lowering of Quant, BipolarQuant and Trunc gives what qonnx's
executor gives, and a Brevitas MLP exported to QONNX compiles and verifies."""
import numpy as np
import onnx
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
    (3, False, False, 0.3, 2, "ROUND"), (2, True, False, 1.0, 0, "ROUND"), (12, True, False, 2.0 ** -8, 0, "ROUND"),
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
    uses_qdq = form == "qdq" and 2 <= bits <= 8 and np.size(scale) == 1 and zeropt == int(zeropt) and mode == "ROUND"
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
