"""QONNX quantizers lowered to standard ONNX for ONNX Runtime.

- `Quant` / `BipolarQuant` on a constant (weights, biases): folded to the quantized float
  values with qonnx's own function (exact by definition).
- On activations, two forms:
  * "float" (the default, exact): QONNX's arithmetic written out in float32 ops (Div, Add,
    Clip, Round, Sub, Mul: the same IEEE operations in the same order as qonnx's executor), for
    any bit width, per-channel scales, zero points, ROUND/FLOOR/CEIL and 1-bit (bipolar).
  * "qdq": QuantizeLinear -> (Clip, for a range narrower than int8/uint8) -> DequantizeLinear
    where a quantizer has a constant scalar power-of-two scale, an even zero point, 2-8 bits
    and ROUND (clip-then-round equals round-then-clip for integer bounds), and 2-8-bit weights
    with power-of-two scales (one, or one per channel) as integers behind a DequantizeLinear; the
    float form elsewhere. ONNX Runtime fuses DequantizeLinear -> Gemm/MatMul/Conv ->
    QuantizeLinear into integer kernels (QGemm, QLinearConv, ...), which apply the scales in
    float32 their own way: exact for powers of two only (other scales would round differently
    near ties). Four more of its ways of changing values are kept out of reach, so that it
    computes what QONNX computes on every CPU:
    - u8 x s8 products saturate on x86 without VNNI (vpmaddubsw sums two of them in int16):
      signed weights beyond +-64 are written as uint8 with zero point 128 (u8 x u8 sums in int32);
    - a float bias is rounded onto the accumulator grid (input scale x weight scale): a bias off
      that grid is subtracted, negated, after its layer instead;
    - a float weight of a layer after a Q/DQ pair is quantized to int8, and
    - two Q/DQ pairs in a row with different parameters are merged into one of a new scale:
      the activation quantizers concerned keep the float form.
- `Trunc` (Brevitas's accumulator truncation): the float form, after qonnx's trunc.
- `MultiThreshold` (FINN's streamlined activations: y = out_bias + out_scale * #(thresholds[c] <= x)),
  exact: Unsqueeze x on a new last axis, GreaterOrEqual against the thresholds placed on the channel
  axis (multithreshold_axis: qonnx's data_layout rules), Cast to int64, ReduceSum over the threshold
  axis, then the count reads a table of out_scale * n + out_bias as qonnx computes it in float32
  (Gather: no Mul/Add that a runtime could fuse or round otherwise). Thresholds of a wider float
  type than x are rounded up onto x's type (x >= t exactly when x >= that value).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...errors import GatecError
from ...ir.fixed_point import int_range
from ...ir import QONNX_DOMAINS, attributes
from ...ir.graph import prune_initializers

ROUNDING_OPS = {"ROUND": "Round", "HALF_EVEN": "Round", "FLOOR": "Floor", "CEIL": "Ceil"}
SHAPE_ONLY = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Gather", "Slice", "Concat",
              "Split"}  # ops that move values without changing them: an output after them keeps its grid
LINEAR_OPS = {"Gemm", "MatMul", "Conv", "ConvTranspose"}  # what ONNX Runtime runs on integers behind Q/DQ inputs


def constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.attribute:
            a = node.attribute[0]
            if a.name == "value":
                values[node.output[0]] = numpy_helper.to_array(a.t)
            elif a.name in ("value_float", "value_floats", "value_int", "value_ints"):
                values[node.output[0]] = np.array(helper.get_attribute_value(a),
                                                  np.float32 if "float" in a.name else np.int64)
    return values


def describe(node) -> str:
    return f"{node.op_type} node '{node.name or node.output[0]}'"


def channel_axis(scale: np.ndarray, shape: tuple) -> int | None:
    """None for one scale; the axis of a scale per channel of a tensor of `shape`; -1 otherwise."""
    if scale.size == 1:
        return None
    s = (1,) * (len(shape) - scale.ndim) + scale.shape
    axes = [i for i, n in enumerate(s) if n != 1]
    return axes[0] if len(axes) == 1 and len(s) == len(shape) and s[axes[0]] == shape[axes[0]] else -1


def power_of_two(x) -> bool:
    """Whether every value is a positive power of two (a scale that integer kernels apply exactly)."""
    x = np.asarray(x, np.float64)
    return bool(np.all(x > 0) and np.all(np.frexp(x)[0] == 0.5))


def on_grid(values: np.ndarray, grid) -> bool:
    """Whether every value is a whole multiple of its grid step (broadcast)."""
    try:
        k = np.asarray(values, np.float64) / np.asarray(grid, np.float64)
    except ValueError:  # shapes that do not broadcast
        return False
    return bool(np.all(k == np.round(k)))


QUANT_FORMS = ("float", "qdq")


class Lowering:
    def __init__(self, model: onnx.ModelProto, form: str = "float"):
        if form not in QUANT_FORMS:
            raise GatecError(f"unknown quant_form '{form}' (use {' or '.join(QUANT_FORMS)})")
        self.form = form
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        self.graph = self.model.graph
        self.consts = constant_values(self.graph)
        self.nodes: list = []
        self.counter = 0
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.producers = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for i, name in enumerate(n.input):
                self.consumers.setdefault(name, []).append((n, i))
        self.qdq_acts: dict[str, tuple] = {}  # activation quantizer output lowered to Q/DQ -> its parameters
        self.int_weights = {}  # weight quantizer output -> (integers, scale, zero point, axis) for a DequantizeLinear
        self.folded = set(self.consts)  # constants, and what the quantizers of constants make of them
        for n in self.graph.node:
            if n.domain in QONNX_DOMAINS and n.input and n.input[0] in self.folded:
                self.folded.update(n.output)
                w = self.int_weight(n) if form == "qdq" and n.op_type == "Quant" else None
                if w is not None:
                    self.int_weights[n.output[0]] = w

    def name(self, base: str) -> str:
        self.counter += 1
        return f"{base}__q{self.counter}"

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.name(base)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def emit(self, op: str, inputs: list[str], output: str | None = None, **kw) -> str:
        out = output or self.name(inputs[0])
        self.nodes.append(helper.make_node(op, inputs, [out], **kw))
        return out

    def constant(self, node, i: int, what: str) -> np.ndarray:
        if len(node.input) <= i or node.input[i] not in self.consts:
            raise GatecError(f"{describe(node)}: its {what} is not a constant; the cpu target needs constant "
                             f"scales, zero points and bit widths")
        return self.consts[node.input[i]]

    def run(self) -> onnx.ModelProto:
        for node in self.graph.node:
            if node.domain not in QONNX_DOMAINS:
                if not (self.form == "qdq" and self.bias_after(node)):
                    self.nodes.append(node)
            elif node.op_type == "Quant":
                self.quant(node)
            elif node.op_type == "BipolarQuant":
                self.bipolar(node)
            elif node.op_type == "Trunc":
                self.trunc(node)
            elif node.op_type == "MultiThreshold":
                self.multithreshold(node)
            else:
                raise GatecError(f"{describe(node)}: QONNX op {node.op_type} is not supported by the cpu target")
        del self.graph.node[:]
        self.graph.node.extend(self.nodes)
        prune_initializers(self.graph)
        opsets = [o for o in self.model.opset_import if o.domain not in QONNX_DOMAINS]
        del self.model.opset_import[:]
        self.model.opset_import.extend(opsets)
        return self.model

    # ------------------------------------------------------------ Quant

    def quant(self, node) -> None:
        from qonnx.custom_op.general.quant import quant
        scale = self.constant(node, 1, "scale").astype(np.float32)
        zeropt = self.constant(node, 2, "zero point").astype(np.float32)
        bits = float(self.constant(node, 3, "bit width"))
        a = attributes(node)
        signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
        mode = a.get("rounding_mode", "ROUND").upper()
        if bits != int(bits) or bits < 1:
            raise GatecError(f"{describe(node)}: bit width {bits:g} is not a positive integer")
        bits = int(bits)
        if node.input[0] in self.consts:  # a weight or bias: fold to the quantized values
            x = self.consts[node.input[0]]
            value = np.asarray(quant(x, scale, zeropt, np.float32(bits), signed, narrow, mode)).astype(x.dtype)
            self.consts[node.output[0]] = value
            if node.output[0] in self.int_weights:  # integers behind a DequantizeLinear: what integer kernels take
                ints, s, z, axis = self.int_weights[node.output[0]]
                self.emit("DequantizeLinear", [self.const("weight_int", ints), self.const("scale", s),
                                               self.const("zero_point", z)], node.output[0],
                          **({} if axis is None else {"axis": axis}))
                return
            self.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
            return
        if mode not in ROUNDING_OPS:
            raise GatecError(f"{describe(node)}: rounding mode {mode} is not supported by the cpu target "
                             f"(supported: {', '.join(ROUNDING_OPS)})")
        lo, hi = int_range(bits, signed, narrow)
        zp = float(zeropt.reshape(-1)[0]) if zeropt.size == 1 else None
        # QuantizeLinear rounds x/s, then adds the zero point; QONNX rounds x/s + zp: the same ties
        # (half to even) for an even zero point only
        if (self.form == "qdq" and scale.size == 1 and zp is not None and zp == int(zp) and int(zp) % 2 == 0
                and 2 <= bits <= 8 and ROUNDING_OPS[mode] == "Round" and power_of_two(scale)):
            int_type = np.int8 if signed else np.uint8
            info = np.iinfo(int_type)
            if info.min <= zp <= info.max and info.min <= lo and hi <= info.max and \
                    self.qdq_is_exact(node, (float(scale.reshape(())), int(zp), int_type, lo, hi)):
                self.qdq(node, scale.reshape(()), int(zp), int_type, lo, hi)
                return
        self.float_quant(node, scale, zeropt, bits, signed, lo, hi, ROUNDING_OPS[mode])

    def qdq(self, node, scale: np.ndarray, zp: int, int_type, lo: int, hi: int) -> None:
        s = self.const("scale", scale)
        z = self.const("zero_point", np.array(zp, int_type))
        q = self.emit("QuantizeLinear", [node.input[0], s, z])
        info = np.iinfo(int_type)
        if (lo, hi) != (info.min, info.max):  # fewer than 8 bits, or narrow range (QONNX clips x/s + zp)
            q = self.emit("Clip", [q, self.const("min", np.array(lo, int_type)),
                                   self.const("max", np.array(hi, int_type))])
        self.emit("DequantizeLinear", [q, s, z], node.output[0])
        self.qdq_acts[node.output[0]] = (float(scale), zp, int_type, lo, hi)

    # ------------------------------------------------------------ qdq: what ONNX Runtime would change

    def int_weight(self, node):
        """A weight quantizer's integers, scale, zero point and channel axis for a DequantizeLinear
        (2-8 bits, no zero point, one scale or one per channel), else None. Signed integers beyond
        +-64 become uint8 with zero point 128: x86 CPUs without VNNI (AVX2, AVX-512 without VNNI)
        multiply u8 activations by s8 weights with vpmaddubsw, which saturates the int16 sum of two
        products (255 * 127 * 2 > 32767); within +-64 it cannot, and u8 x u8 products sum in int32."""
        from qonnx.custom_op.general.quant import quant
        if len(node.input) < 4 or any(i not in self.consts for i in node.input[1:4]):
            return None  # quant() names what is not constant
        x = self.consts[node.input[0]]
        scale, zeropt, bits = (self.consts[i].astype(np.float32) for i in node.input[1:4])
        a = attributes(node)
        signed = bool(a.get("signed", 1))
        axis = channel_axis(scale, x.shape)
        if bits.size != 1 or float(bits) not in range(2, 9) or np.any(zeropt) or axis == -1 or \
                (axis is not None and self.opset < 13) or not power_of_two(scale):
            return None
        value = quant(x, scale, zeropt, bits.reshape(()), signed, bool(a.get("narrow", 0)),
                      a.get("rounding_mode", "ROUND").upper())
        ints = np.round(np.asarray(value, np.float64) / scale).astype(np.int64)
        s = scale.reshape(()) if axis is None else scale.reshape(-1)
        if signed and np.abs(ints).max(initial=0) > 64:
            return (ints + 128).astype(np.uint8), s, np.full(s.shape, 128, np.uint8), axis
        int_type = np.int8 if signed else np.uint8
        return ints.astype(int_type), s, np.zeros(s.shape, int_type), axis

    def source(self, name: str) -> str:
        """The tensor `name` moves values from, through ops that only move them."""
        while name in self.producers and self.producers[name].op_type in SHAPE_ONLY and self.producers[name].input:
            name = self.producers[name].input[0]
        return name

    def users(self, name: str):
        """(node, input index) of each op that reads `name`, through ops that only move values."""
        for n, i in self.consumers.get(name, []):
            if n.op_type in SHAPE_ONLY and i == 0:
                for out in n.output:
                    yield from self.users(out)
            else:
                yield n, i

    def qdq_is_exact(self, node, params: tuple) -> bool:
        """False where ONNX Runtime would change values behind this quantizer's Q/DQ pair: it quantizes
        a float weight of a Gemm/MatMul/Conv taking the pair to int8 itself, and it merges this pair
        with a pair right before it of other parameters into one pair of a new scale."""
        before = self.qdq_acts.get(self.source(node.input[0]))
        if before is not None and before != params:
            return False
        weights = [self.source(n.input[1]) for n, i in self.users(node.output[0])
                   if n.op_type in LINEAR_OPS and i == 0 and len(n.input) > 1]
        return not any(w in self.folded and w not in self.int_weights for w in weights)

    def grid(self, node):
        """Input scale x weight scale (one, or one per output channel) of a Gemm/MatMul/Conv that
        ONNX Runtime runs on integers: input from a Q/DQ pair, weight behind a DequantizeLinear."""
        if node.op_type not in LINEAR_OPS or len(node.input) < 2:
            return None
        act, weight = self.qdq_acts.get(self.source(node.input[0])), self.int_weights.get(self.source(node.input[1]))
        return None if act is None or weight is None else np.float64(act[0]) * weight[1]

    def bias_after(self, node) -> bool:
        """ONNX Runtime rounds a float bias of such a layer onto its accumulator grid (after fusing
        MatMul + Add into Gemm). A bias off that grid is subtracted, negated, after the layer instead
        (a Sub, which nothing folds back): emits that and returns True; else False."""
        if node.op_type in ("Gemm", "Conv", "ConvTranspose") and len(node.input) == 3 and node.input[2]:
            grid, bias = self.grid(node), self.consts.get(node.input[2])
            if grid is None or bias is None or bias.ndim != 1 or on_grid(bias, grid):
                return False
            a = attributes(node)
            if node.op_type == "Gemm":
                bias = np.float32(a.get("beta", 1.0)) * bias
            else:  # per output channel: (1, C, 1, ...)
                bias = bias.reshape((1, -1) + (1,) * (self.consts[self.source(node.input[1])].ndim - 2))
            layer = onnx.NodeProto()
            layer.CopyFrom(node)
            del layer.input[2:]
            if node.op_type == "Gemm" and self.opset < 11:  # C is required there: zeros are on any grid
                layer.input.append(self.const("zero_bias", np.zeros_like(bias)))
            layer.output[0] = self.name(node.output[0])
            self.nodes.append(layer)
            self.emit("Sub", [layer.output[0], self.const("minus_bias", (-bias).astype(np.float32))], node.output[0])
            return True
        if node.op_type == "Add" and len(node.input) == 2:
            for i in (0, 1):
                x, c = node.input[i], node.input[1 - i]
                mm = self.producers.get(x)
                if c in self.consts and mm is not None and mm.op_type == "MatMul" and self.grid(mm) is not None \
                        and not on_grid(self.consts[c], self.grid(mm)):
                    self.emit("Sub", [x, self.const("minus_bias", (-self.consts[c]).astype(np.float32))],
                              node.output[0])
                    return True
        return False

    def float_quant(self, node, scale, zeropt, bits, signed, lo, hi, round_op) -> None:
        y = self.emit("Div", [node.input[0], self.const("scale", scale)])
        has_zp = bool(np.any(zeropt != 0))
        if has_zp:
            y = self.emit("Add", [y, self.const("zero_point", zeropt)])
        if bits == 1 and signed:  # QONNX: bipolar
            y = self.sign(y)
        else:
            y = self.emit("Clip", [y, self.const("min", np.array(lo, np.float32)),
                                   self.const("max", np.array(hi, np.float32))])
            y = self.emit(round_op, [y])
        if has_zp:
            y = self.emit("Sub", [y, self.const("zero_point", zeropt)])
        self.emit("Mul", [y, self.const("scale", scale)], node.output[0])

    def sign(self, y: str) -> str:
        """+1 where y >= 0, else -1."""
        ge = self.emit("GreaterOrEqual", [y, self.const("zero", np.array(0, np.float32))])
        return self.emit("Where", [ge, self.const("one", np.array(1, np.float32)),
                                   self.const("minus_one", np.array(-1, np.float32))])

    # ------------------------------------------------------------ BipolarQuant, Trunc

    def bipolar(self, node) -> None:
        scale = self.constant(node, 1, "scale").astype(np.float32)
        if node.input[0] in self.consts:
            x = self.consts[node.input[0]]
            value = (np.where(x >= 0, 1, -1).astype(x.dtype) * scale).astype(x.dtype)
            self.consts[node.output[0]] = value
            self.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
            return
        self.emit("Mul", [self.sign(node.input[0]), self.const("scale", scale)], node.output[0])

    def trunc(self, node) -> None:
        """qonnx's Trunc, by the version of its domain in the model (as qonnx's executor picks it):
        v1 drops input_bits - output_bits low bits; v2 rescales to an output scale and clips."""
        version = next((o.version for o in self.model.opset_import if o.domain == node.domain), 1)
        scale = self.constant(node, 1, "scale").astype(np.float32)
        zeropt = self.constant(node, 2, "zero point").astype(np.float32)
        a = attributes(node)
        mode = a.get("rounding_mode", "FLOOR").upper()
        if mode not in ROUNDING_OPS:
            raise GatecError(f"{describe(node)}: rounding mode {mode} is not supported by the cpu target")
        y = self.emit("Div", [node.input[0], self.const("scale", scale)])
        y = self.emit("Add", [y, self.const("zero_point", zeropt)])
        y = self.emit("Round", [y])
        if version < 2:
            in_bits = self.constant(node, 3, "input bit width").astype(np.float32)
            out_bits = self.constant(node, 4, "output bit width").astype(np.float32)
            y = self.emit("Div", [y, self.const("trunc_scale", np.float32(2.0) ** (in_bits - out_bits))])
            y = self.emit(ROUNDING_OPS[mode], [y])
            y = self.emit("Sub", [y, self.const("zero_point", zeropt)])
            self.emit("Mul", [y, self.const("scale", scale)], node.output[0])
            return
        out_scale = self.constant(node, 4, "output scale").astype(np.float32)
        out_bits = int(self.constant(node, 5, "output bit width"))
        lo, hi = int_range(out_bits, bool(a.get("signed", 1)), bool(a.get("narrow", 0)))
        trunc_scale = (2 ** np.round(np.log2(out_scale / scale))).astype(np.float32)
        y = self.emit("Div", [y, self.const("trunc_scale", trunc_scale)])
        y = self.emit("Clip", [y, self.const("min", np.array(lo, np.float32)),
                               self.const("max", np.array(hi, np.float32))])
        y = self.emit(ROUNDING_OPS[mode], [y])
        y = self.emit("Sub", [y, self.const("zero_point", (zeropt / trunc_scale).astype(np.float32))])
        self.emit("Mul", [y, self.const("scale", out_scale)], node.output[0])


    # ------------------------------------------------------------ MultiThreshold

    def rank(self, name: str) -> int | None:
        """The rank of tensor `name`, from the graph's value infos, else qonnx's shape inference."""
        if not hasattr(self, "_ranks"):
            self._ranks, self._inferred = value_ranks(self.graph), False
        if name not in self._ranks and not self._inferred:
            self._inferred = True
            try:
                from qonnx.core.modelwrapper import ModelWrapper
                from qonnx.transformation.infer_shapes import InferShapes
                inferred = ModelWrapper(copy_model(self.model)).transform(InferShapes()).model
                self._ranks.update(value_ranks(inferred.graph))
            except Exception:  # shapes qonnx cannot infer: the rank stays unknown
                pass
        return self._ranks.get(name)

    def multithreshold(self, node) -> None:
        if len(node.input) < 2 or node.input[1] not in self.consts:
            raise GatecError(f"{describe(node)}: its thresholds are not a constant; gatec needs constant thresholds")
        thresholds = np.asarray(self.consts[node.input[1]])
        x = node.input[0]
        rank = self.consts[x].ndim if x in self.consts else self.rank(x)
        axis, thresholds, table = multithreshold_spec(node, thresholds, rank)
        if x in self.consts:  # a constant input: folded
            value = multithreshold_reference(node, self.consts[x], thresholds, axis)
            self.consts[node.output[0]] = value
            self.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
            return
        c, t = thresholds.shape
        shape = [1] * rank + [t]
        if c > 1:
            shape[axis] = c
        thr = self.const("thresholds", onto_float32(thresholds).reshape(shape))
        if self.opset >= 13:
            xe = self.emit("Unsqueeze", [x, self.const("axes", np.array([rank], np.int64))])
        else:
            xe = self.emit("Unsqueeze", [x], axes=[rank])
        if self.opset >= 12:
            ge = self.emit("GreaterOrEqual", [xe, thr])
        else:
            ge = self.emit("Or", [self.emit("Greater", [xe, thr]), self.emit("Equal", [xe, thr])])
        count = self.emit("Cast", [ge], to=onnx.TensorProto.INT64)
        if self.opset >= 13:
            count = self.emit("ReduceSum", [count, self.const("axes", np.array([rank], np.int64))], keepdims=0)
        else:
            count = self.emit("ReduceSum", [count], axes=[rank], keepdims=0)
        self.emit("Gather", [self.const("levels", table), count], node.output[0], axis=0)


def value_ranks(graph: onnx.GraphProto) -> dict[str, int]:
    ranks = {}
    for v in list(graph.input) + list(graph.value_info) + list(graph.output):
        t = v.type.tensor_type
        if t.HasField("shape"):
            ranks[v.name] = len(t.shape.dim)
    return ranks


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


RANK_TO_LAYOUT = {2: "NC", 3: "NWC", 4: "NCHW"}  # qonnx's guess where a MultiThreshold names no data_layout


def multithreshold_axis(node, rank: int | None) -> int:
    """The channel axis of a MultiThreshold's input, by qonnx's rules: the 'C' of its data_layout,
    else of the layout its rank suggests (NC, NWC, NCHW), else axis 1."""
    layout = attributes(node).get("data_layout", "")
    layout = layout.decode() if isinstance(layout, bytes) else str(layout)
    if not layout and rank is not None:
        layout = RANK_TO_LAYOUT.get(rank, "")
    return layout.index("C") if "C" in layout else 1


def multithreshold_spec(node, thresholds: np.ndarray, rank: int | None, shape=None):
    """(channel axis, thresholds (C, T), the T + 1 output levels out_scale * n + out_bias computed as
    qonnx computes them) of a MultiThreshold on an input of `rank` (and `shape`, where known);
    GatecError for what qonnx's executor would not run or what gatec does not take."""
    if rank is None:
        raise GatecError(f"{describe(node)}: the rank of its input is unknown (give the input shape)")
    if rank < 2:
        raise GatecError(f"{describe(node)}: its input has rank {rank}; MultiThreshold needs (N, C, ...)")
    axis = multithreshold_axis(node, rank)
    if axis >= rank or axis == 0:
        raise GatecError(f"{describe(node)}: data_layout puts the channels on axis {axis} of a rank-{rank} input")
    if thresholds.ndim != 2 or thresholds.shape[1] < 1:
        raise GatecError(f"{describe(node)}: thresholds of shape {list(thresholds.shape)}; MultiThreshold takes "
                         f"(C, T) or (1, T), T >= 1")
    if not np.issubdtype(thresholds.dtype, np.floating) and not np.issubdtype(thresholds.dtype, np.integer):
        raise GatecError(f"{describe(node)}: thresholds of type {thresholds.dtype}")
    c = thresholds.shape[0]
    if shape is not None and c != 1 and isinstance(shape[axis], int) and shape[axis] > 0 and shape[axis] != c:
        raise GatecError(f"{describe(node)}: {c} rows of thresholds for {shape[axis]} channels (axis {axis})")
    a = attributes(node)
    scale, bias = a.get("out_scale", 1.0), a.get("out_bias", 0.0)
    table = np.asarray(scale * np.arange(thresholds.shape[1] + 1).astype(np.float32) + bias, np.float32)
    return axis, thresholds, table


def onto_float32(thresholds: np.ndarray) -> np.ndarray:
    """Thresholds as float32 that a float32 x meets (x >= t) exactly when it meets the originals:
    each rounded up to the next float32."""
    t = np.asarray(thresholds)
    t32 = t.astype(np.float32)
    if t.dtype != np.float32:
        below = t32.astype(np.float64) < t.astype(np.float64)
        t32 = np.where(below, np.nextafter(t32, np.float32(np.inf)), t32).astype(np.float32)
    return t32


def multithreshold_reference(node, x: np.ndarray, thresholds: np.ndarray, axis: int) -> np.ndarray:
    """qonnx's multithreshold, with the channels on `axis`."""
    from qonnx.custom_op.general.multithreshold import multithreshold
    a = attributes(node)
    y = multithreshold(np.asarray(x).swapaxes(axis, 1), thresholds, a.get("out_scale", 1.0), a.get("out_bias", 0.0))
    return np.asarray(y.swapaxes(axis, 1), dtype=np.asarray(x).dtype)


def lower_qonnx(model: onnx.ModelProto, form: str = "float") -> onnx.ModelProto:
    """The model with every QONNX node replaced by standard ONNX that ONNX Runtime runs."""
    return Lowering(model, form).run()


def output_lsbs(model: onnx.ModelProto) -> list[float | None]:
    """Per graph output, the scale (one least significant bit) of the Quant that produces it (of a
    MultiThreshold: |out_scale|, the step between its levels), through ops that only move values;
    None where an output is not quantized."""
    producers = {o: n for n in model.graph.node for o in n.output}
    consts = constant_values(model.graph)
    found = []
    for out in model.graph.output:
        node, lsb = producers.get(out.name), None
        while node is not None:
            if node.domain in QONNX_DOMAINS and node.op_type == "MultiThreshold":
                lsb = abs(float(attributes(node).get("out_scale", 1.0)))  # its levels are out_scale apart
                break
            if node.domain in QONNX_DOMAINS and node.op_type in ("Quant", "BipolarQuant", "Trunc"):
                scale_input = node.input[4] if node.op_type == "Trunc" else node.input[1]
                if scale_input in consts:
                    lsb = float(np.abs(consts[scale_input]).max())
                    if node.op_type == "BipolarQuant":
                        lsb *= 2  # its two levels are 2 * scale apart
                break
            if node.op_type not in SHAPE_ONLY or not node.input:
                break
            node = producers.get(node.input[0])
        found.append(lsb)
    return found


def quantized_tolerance(model: onnx.ModelProto):
    """One least significant bit of the output quantizer, in either form: the lowered quantizers,
    and behind the qdq form ONNX Runtime's integer kernels, compute what QONNX computes (the qdq
    lowering leaves ONNX Runtime nothing to round or saturate: see Lowering.int_weight and
    bias_after), but the float ops between them (sums in another order, ONNX Runtime's sigmoid
    and tanh in a fused recurrent kernel) may move a value across a rounding boundary (or a
    MultiThreshold's input across a threshold: one out_scale step). Outputs that no Quant produces
    get the float tolerance."""
    from .. import Tolerance
    lsbs = output_lsbs(model)
    if lsbs and all(lsb is not None for lsb in lsbs):
        return Tolerance(atol=max(lsbs) * (1 + 1e-6), rtol=0.0)
    return Tolerance(atol=1e-4, rtol=1e-4)
