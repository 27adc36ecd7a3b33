"""Shared by the targets that run logic networks natively (c, the cpu engine): the IR split
into its arithmetic prefix (an input encoder, run by ONNX Runtime) and its logic chain (a
Netlist of LogicLayer nodes ending in GroupSum)."""
from __future__ import annotations

import numpy as np
import onnx

from ..errors import GatecError
from ..ir import IR, LOGIC_DOMAIN
from ..ir.graph import with_input_shapes
from ..ir.netlist import Netlist


def split_logic(ir: IR) -> tuple[onnx.ModelProto | None, Netlist]:
    """(prefix model from the graph inputs to the bits the first logic layer reads, or None
    when it reads a graph input, directly or through a prefix that only moves elements (folded
    into the first layer's indices: the Netlist then reads the input flattened row-major); the
    logic chain as a Netlist)."""
    from ..ir.logic import network_of_model
    if ir.kind != "logic":
        raise GatecError("this target compiles logic-gate networks only; the model has no logic layers")
    graph = ir.model.graph
    nodes = list(graph.node)
    first = next(i for i, n in enumerate(nodes) if n.domain == LOGIC_DOMAIN)
    after = [n for n in nodes[first:] if n.domain != LOGIC_DOMAIN]
    if after:
        raise GatecError(f"node '{after[0].name}' ({after[0].op_type}) follows the logic layers; this target "
                         f"needs the logic layers (and a final GroupSum) last")
    bits_name = nodes[first].input[0]
    net = network_of_model(ir.model)
    k, tau = net.classes()
    if len(graph.output) != 1:
        raise GatecError("this target needs one output (the class scores)")
    spec = next((s for s in ir.inputs if s.name == bits_name), None)
    prefix, layers = None, [(l.in_a, l.in_b, l.ops) for l in net.layers]
    if spec is not None:
        n_inputs = spec.shape[-1]
    else:
        prefix = prefix_model(ir, nodes[:first], bits_name)
        one = len(ir.inputs) == 1 and ir.inputs[0].batch_axis == 0  # the other targets' runners flatten x[n]
        moved = moved_elements(prefix, ir.inputs[0].shape) if one else None
        if moved is not None:  # nn.Flatten() and the like: no encoder, the logic layers read the input bits
            n_inputs = int(np.prod(ir.inputs[0].shape[1:]))
            if not layers:  # GroupSum alone: it sums the moved bits
                return None, Netlist(n_inputs, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8),
                                     moved, k, tau)
            in_a, in_b, ops = layers[0]
            layers[0] = (moved[np.asarray(in_a, np.int64)], moved[np.asarray(in_b, np.int64)], ops)
            return None, Netlist.from_layers(n_inputs, layers, k, tau)
        fixed = with_input_shapes(prefix, [s.shape for s in ir.inputs])
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
        dims = inferred.graph.output[0].type.tensor_type.shape.dim
        if not dims or not dims[-1].HasField("dim_value"):
            raise GatecError(f"cannot tell the width of '{bits_name}', the bits the first logic layer reads")
        n_inputs = dims[-1].dim_value
    return prefix, Netlist.from_layers(n_inputs, layers, k, tau)


# Ops that only move elements (and compute the shapes they move them to): a prefix made of these
# is no encoder, it selects input elements.
MOVING_OPS = {"Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Transpose", "Constant", "Shape", "Gather",
              "Concat", "Slice"}


def moved_elements(prefix: onnx.ModelProto, shape) -> np.ndarray | None:
    """For a prefix that only moves its input's elements (nn.Flatten, a reshape, a transpose):
    per bit it outputs, the index of the input element it is (in the row-major order of one
    sample), so that the logic layers can read the input directly; None for any other prefix.
    Found by running the prefix on two samples whose elements are all distinct codes: every output
    must be one input element of its own sample."""
    from ..ir.runtime import ort_session
    if len(prefix.graph.input) != 1 or any(n.op_type not in MOVING_OPS for n in prefix.graph.node):
        return None
    n = int(np.prod(shape[1:]))
    dtype = onnx.helper.tensor_dtype_to_np_dtype(prefix.graph.input[0].type.tensor_type.elem_type)
    codes = np.arange(2 * n)
    x = codes.astype(dtype)
    if not np.array_equal(x.astype(np.int64), codes):  # a dtype that cannot hold the codes (bool, a float beyond 2^24)
        return None
    session = ort_session(prefix, failure=None)
    try:
        y = session.run(None, {prefix.graph.input[0].name: x.reshape([2, *shape[1:]])})[0] if session else None
    except Exception:  # e.g. a reshape to a fixed batch of 1: not a per-sample move
        return None
    if y is None or y.ndim != 2 or y.shape[0] != 2:
        return None
    moved = y[0].astype(np.int64)
    if not (np.array_equal(y[0], moved) and np.array_equal(y[1], moved + n) and len(moved) and moved.min() >= 0
            and moved.max() < n):
        return None
    return moved


def network_and_encoder(ir: IR, encoder_hint: str = ""):
    """(netlist, encoder): the encoder is (feature, threshold) per input bit, or None when the
    logic layers read the model's input bits directly. `encoder_hint` is added to the error for
    an encoder that is not a comparison with thresholds."""
    prefix, net = split_logic(ir)
    if prefix is None:
        return net, None
    try:
        return net, threshold_encoder(prefix, int(np.prod(ir.inputs[0].shape[1:])))
    except GatecError as e:
        raise GatecError(f"{e}{encoder_hint}") from None


def prefix_model(ir: IR, nodes, bits_name: str) -> onnx.ModelProto:
    """The nodes that compute `bits_name` from the graph inputs, as a model of their own."""
    needed, keep = {bits_name}, []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(n.input)
    graph = ir.model.graph
    inputs = [v for v in graph.input if v.name in needed]
    inits = [i for i in graph.initializer if i.name in needed]
    out = onnx.helper.make_tensor_value_info(bits_name, onnx.TensorProto.FLOAT, ["n", "bits"])
    model = onnx.helper.make_model(onnx.helper.make_graph(keep[::-1], "encoder", inputs, [out], inits),
                                   opset_imports=[o for o in ir.model.opset_import if o.domain in ("", "ai.onnx")])
    onnx.checker.check_model(model)
    return model


def logic_netlist(ir: IR) -> Netlist:
    """The logic chain of a network whose logic layers read the model's input bits directly."""
    prefix, net = split_logic(ir)
    if prefix is not None:
        raise GatecError(f"this target needs the logic layers to read the model's input bits directly; "
                         f"an input encoder ({', '.join(sorted({n.op_type for n in prefix.graph.node}))}) comes first")
    return net


def threshold_encoder(prefix: onnx.ModelProto, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """An input encoder in which every bit is one input feature compared with a constant
    (ThresholdEncoder, ThermometerEncoder): per bit, (feature index, threshold), so that firmware
    computes bit j = x[feature[j]] > threshold[j]. Found by evaluating the encoder with its
    Greater node turned into a subtraction (x[f] - t) at x = 0 and at x = feature index, and
    checked bit for bit against the encoder itself."""
    from ..ir.runtime import ort_session, run_session
    greater = [n for n in prefix.graph.node if n.op_type == "Greater"]
    if len(greater) != 1:
        raise GatecError("the input encoder is not a plain comparison with thresholds (need one Greater node)")
    probe = onnx.ModelProto()
    probe.CopyFrom(prefix)
    node = next(n for n in probe.graph.node if n.op_type == "Greater")
    node.op_type = "Sub"
    for n in probe.graph.node:  # the comparison's bool result was cast to float: now it is float
        if n.op_type == "Cast" and n.input[0] == node.output[0]:
            n.attribute[0].i = onnx.TensorProto.FLOAT
    name = probe.graph.input[0].name
    session = ort_session(probe, failure="the input encoder cannot be analysed")
    original = ort_session(prefix, failure="the input encoder cannot be analysed")
    shape = [2] + [d.dim_value or 1 for d in prefix.graph.input[0].type.tensor_type.shape.dim][1:]
    if int(np.prod(shape[1:])) != n_features:
        raise GatecError(f"the input encoder's input has {int(np.prod(shape[1:]))} features, expected {n_features}")
    x = np.zeros(shape, np.float32)
    x[1] = np.arange(n_features, dtype=np.float32).reshape(shape[1:])
    d = run_session(session, {name: x}, "the input encoder cannot be analysed")[0].reshape(2, -1)
    thresholds = (-d[0]).astype(np.float32)
    features = np.rint(d[1] + thresholds).astype(np.int64)
    if features.min() < 0 or features.max() >= n_features:
        raise GatecError("the input encoder is not a comparison of input features with thresholds")
    rng = np.random.default_rng(0)
    flat = (rng.standard_normal((64, n_features)) * (np.abs(thresholds).max() + 1)).astype(np.float32)
    for j in range(0, len(thresholds), max(1, len(thresholds) // 32)):  # values on and beside the thresholds
        row = np.zeros((3, n_features), np.float32)
        row[:, features[j]] = [thresholds[j], np.nextafter(thresholds[j], np.inf), np.nextafter(thresholds[j], -np.inf)]
        flat = np.concatenate([flat, row])
    expected = original.run(None, {name: flat.reshape([-1] + shape[1:])})[0].reshape(len(flat), -1)
    if not np.array_equal(expected, (flat[:, features] > thresholds).astype(expected.dtype)):
        raise GatecError("the input encoder is not a comparison of input features with thresholds")
    return features, thresholds


NETLIST_FILE = "logic.npz"  # the logic chain as a netlist, for the runners of native logic kernels
ENCODER_FILE = "encoder.onnx"  # the input encoder before the logic layers, run by ONNX Runtime


def write_logic(ir: IR, folder) -> list[str]:
    """The netlist (and the encoder, where there is one) into `folder`; the files written."""
    from pathlib import Path
    prefix, net = split_logic(ir)
    folder = Path(folder)
    with open(folder / NETLIST_FILE, "wb") as f:  # np.savez writes no timestamps: same bytes each time
        np.savez(f, n_inputs=net.n_inputs, a=net.a, b=net.b, op=net.op, outputs=net.outputs, k=net.k,
                 tau=np.float64(net.tau))
    if prefix is None:
        return [NETLIST_FILE]
    (folder / ENCODER_FILE).write_bytes(prefix.SerializeToString(deterministic=True))
    return [NETLIST_FILE, ENCODER_FILE]


def read_netlist(folder) -> Netlist:
    from pathlib import Path
    z = np.load(Path(folder) / NETLIST_FILE)
    return Netlist(int(z["n_inputs"]), z["a"], z["b"], z["op"], z["outputs"], int(z["k"]), float(z["tau"]))
