"""ONNX models of the kinds other exporters write (old opsets, Gemm or MatMul+Add, batch norm
wrapped in Unsqueeze/Squeeze or Transpose pairs, a fixed batch, softmax and sigmoid outputs, a
binarized QONNX network), built with onnx.helper from seeded random weights."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QONNX = "qonnx.custom_op.general"


def const(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def batchnorm_params(rng, prefix, n):
    return [const(f"{prefix}_gamma", rng.uniform(0.5, 1.5, n)), const(f"{prefix}_beta", rng.normal(0, 0.3, n)),
            const(f"{prefix}_mean", rng.normal(0, 0.3, n)), const(f"{prefix}_var", rng.uniform(0.5, 2.0, n))]


def exporter_mlp(seed=0, batch=4, opset=9) -> onnx.ModelProto:
    """Opset 9 (or 6-8: Gemm-6 with `broadcast`, BatchNormalization-6 with `is_test`), as old
    exporters wrote it, with a fixed batch of 4: x (4, 6, 8) -> Transpose ->
    batch norm over the 8 channels -> Transpose back -> Flatten -> Gemm (transB) -> batch norm on
    an Unsqueeze/Squeeze pair (BatchNormalization-9 wants a channel axis) -> Relu, then two heads:
    Gemm -> Softmax, and MatMul + Add -> Sigmoid."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("BatchNormalization", ["xt", "bn0_gamma", "bn0_beta", "bn0_mean", "bn0_var"], ["xn"]),
        helper.make_node("Transpose", ["xn"], ["xb"], perm=[0, 2, 1]),
        helper.make_node("Flatten", ["xb"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h1"], transB=1),
        helper.make_node("Unsqueeze", ["h1"], ["h1u"], axes=[2]),
        helper.make_node("BatchNormalization", ["h1u", "bn1_gamma", "bn1_beta", "bn1_mean", "bn1_var"], ["h1n"],
                         epsilon=1e-3),
        helper.make_node("Squeeze", ["h1n"], ["h1s"], axes=[2]),
        helper.make_node("Relu", ["h1s"], ["h1r"]),
        helper.make_node("Gemm", ["h1r", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        helper.make_node("MatMul", ["h1r", "w3"], ["m3"]),
        helper.make_node("Add", ["m3", "b3"], ["z3"]),
        helper.make_node("Sigmoid", ["z3"], ["gates"]),
    ]
    inits = [*batchnorm_params(rng, "bn0", 8), const("w1", rng.normal(0, 0.25, (24, 48))),
             const("b1", rng.normal(0, 0.1, 24)), *batchnorm_params(rng, "bn1", 24),
             const("w2", rng.normal(0, 0.5, (24, 6))), const("b2", rng.normal(0, 0.1, 6)),
             const("w3", rng.normal(0, 0.3, (24, 5))), const("b3", rng.normal(0, 0.1, 5))]
    if opset < 7:
        for n in nodes:
            if n.op_type == "Gemm":
                n.attribute.append(helper.make_attribute("broadcast", 1))
            if n.op_type == "BatchNormalization":
                n.attribute.append(helper.make_attribute("is_test", 1))
    graph = helper.make_graph(nodes, "exporter_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 6, 8])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 6]),
                               helper.make_tensor_value_info("gates", TensorProto.FLOAT, [batch, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="keras2onnx")
    model.ir_version = 4
    return model


def binarized(seed=2) -> onnx.ModelProto:
    """A binarized network in QONNX: 8-bit input Quant (scale 2**-4), BipolarQuant weights,
    batch norm, BipolarQuant activations, a second binary layer and a 4-bit weight layer."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Quant", ["x", "s_in", "zero", "bits8"], ["xq"], domain=QONNX, signed=1, narrow=0,
                         rounding_mode="ROUND"),
        helper.make_node("BipolarQuant", ["w1f", "one"], ["w1"], domain=QONNX),
        helper.make_node("MatMul", ["xq", "w1"], ["h1"]),
        helper.make_node("BatchNormalization", ["h1", "bn_gamma", "bn_beta", "bn_mean", "bn_var"], ["h1n"]),
        helper.make_node("BipolarQuant", ["h1n", "one"], ["a1"], domain=QONNX),
        helper.make_node("BipolarQuant", ["w2f", "one"], ["w2"], domain=QONNX),
        helper.make_node("MatMul", ["a1", "w2"], ["h2"]),
        helper.make_node("Quant", ["w3f", "s_w", "zero", "bits4"], ["w3"], domain=QONNX, signed=1, narrow=1,
                         rounding_mode="ROUND"),
        helper.make_node("Relu", ["h2"], ["h2r"]),
        helper.make_node("Quant", ["h2r", "s_a", "zero", "bits8"], ["a2"], domain=QONNX, signed=0, narrow=0,
                         rounding_mode="ROUND"),
        helper.make_node("MatMul", ["a2", "w3"], ["y"]),
    ]
    bn = batchnorm_params(rng, "bn", 32)
    bn[2] = const("bn_mean", rng.normal(0, 2.0, 32))  # thresholds spread over the sums' range
    inits = [const("s_in", 2.0 ** -4), const("zero", 0.0), const("bits8", 8.0), const("bits4", 4.0),
             const("one", 1.0), const("s_w", 2.0 ** -3), const("s_a", 2.0 ** -1),
             const("w1f", rng.normal(0, 1, (16, 32))), *bn, const("w2f", rng.normal(0, 1, (32, 24))),
             const("w3f", rng.normal(0, 0.5, (24, 4)))]
    graph = helper.make_graph(nodes, "binarized", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)])


def logic_then_linear(seed=3) -> onnx.ModelProto:
    """Logic layers mixed with arithmetic ones: 32 input bits -> LogicLayer (64 gates, all 16 ops)
    -> LogicLayer (40) -> GroupSum (k=4, tau=2) -> Gemm (4 -> 3). Outputs the class scores of the
    GroupSum too, so that the logic part is checked on its own."""
    rng = np.random.default_rng(seed)
    domain = "gatec.custom_op"

    def logic(x, y, n_in, n_out, name):
        return helper.make_node("LogicLayer", [x], [y], name=name, domain=domain,
                                in_a=rng.integers(0, n_in, n_out).tolist(), in_b=rng.integers(0, n_in, n_out).tolist(),
                                ops=(np.arange(n_out) % 16).tolist())
    nodes = [logic("x", "l1", 32, 64, "logic1"), logic("l1", "l2", 64, 40, "logic2"),
             helper.make_node("GroupSum", ["l2"], ["s"], name="groupsum", domain=domain, k=4, tau=2.0),
             helper.make_node("Identity", ["s"], ["scores"]),
             helper.make_node("Gemm", ["s", "w", "b"], ["y"])]
    inits = [const("w", rng.normal(0, 0.5, (4, 3))), const("b", rng.normal(0, 0.1, 3))]
    graph = helper.make_graph(nodes, "logic_then_linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(domain, 1)])


def conv_batchnorm(seed=4) -> onnx.ModelProto:
    """A convolution stack as exporters write it, batch norm not folded: x (N, 3, 12) -> Conv (3->6,
    k=3, stride 2, no padding) -> BatchNormalization -> Relu -> Conv (6->4, k=3, auto_pad SAME_UPPER)
    -> Flatten (channels-first order) -> Gemm (20->3)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3], strides=[2], pads=[0, 0]),
        helper.make_node("BatchNormalization", ["c1", "bn_gamma", "bn_beta", "bn_mean", "bn_var"], ["c1n"]),
        helper.make_node("Relu", ["c1n"], ["c1r"]),
        helper.make_node("Conv", ["c1r", "w2"], ["c2"], kernel_shape=[3], auto_pad="SAME_UPPER"),
        helper.make_node("Flatten", ["c2"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    inits = [const("w1", rng.normal(0, 0.3, (6, 3, 3))), const("b1", rng.normal(0, 0.1, 6)),
             *batchnorm_params(rng, "bn", 6), const("w2", rng.normal(0, 0.2, (4, 6, 3))),
             const("w3", rng.normal(0, 0.2, (3, 20))), const("b3", rng.normal(0, 0.1, 3))]
    graph = helper.make_graph(nodes, "conv_batchnorm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def keras_conv1d_flatten_axis0(seed=5) -> onnx.ModelProto:
    """As keras2onnx writes a Conv1D model with a fixed batch of 1: x (1, 10, 4) channels last ->
    Transpose -> Conv -> Relu -> Transpose back -> Flatten(axis=0) (the batch of one folded in) ->
    Gemm -> Softmax, opset 9."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("Conv", ["xt", "w", "b"], ["c"], kernel_shape=[3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 1]),
             helper.make_node("Flatten", ["rt"], ["f"], axis=0),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["z"]),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    inits = [const("w", rng.normal(0, 0.5, (3, 4, 3))), const("b", rng.normal(0, 0.1, 3)),
             const("w2", rng.normal(0, 0.3, (24, 5))), const("b2", rng.normal(0, 0.1, 5))]
    graph = helper.make_graph(nodes, "keras_conv1d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], producer_name="keras2onnx")


def channels_last_upsample(seed=6) -> onnx.ModelProto:
    """A channels-last feature map (N, H, W, C) upsampled 2x by a Resize on its axes 1 and 2 (as in
    hls4ml's example-models *_ch_last.onnx), then read channels first by a convolution."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["u"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             helper.make_node("Transpose", ["u"], ["ut"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["ut", "w", "b"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Flatten", ["c"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"])]
    inits = [const("scales", [1.0, 2.0, 2.0, 1.0]), const("w", rng.normal(0, 0.5, (2, 3, 3, 3))),
             const("b", rng.normal(0, 0.1, 2)), const("w2", rng.normal(0, 0.3, (2 * 6 * 6, 4))),
             const("b2", rng.normal(0, 0.1, 4))]
    graph = helper.make_graph(nodes, "ch_last_upsample",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 4, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
