"""QONNX quantizers lowered to standard ONNX for ONNX Runtime.

- `Quant` / `BipolarQuant` on a constant (weights, biases): folded to the quantized float
  values with qonnx's own function (exact by definition).
- On activations, two forms:
  * "float" (the default, exact): QONNX's arithmetic written out in float32 ops (Div, Add,
    Clip, Round, Sub, Mul: the same IEEE operations in the same order as qonnx's executor), for
    any bit width, per-channel scales, zero points, ROUND/FLOOR/CEIL and 1-bit (bipolar).
  * "qdq": QuantizeLinear -> (Clip, for a range narrower than int8/uint8) -> DequantizeLinear
    where a quantizer has a constant scalar scale, an integer zero point, 2-8 bits and ROUND
    (clip-then-round equals round-then-clip for integer bounds), and int8 weights behind a
    DequantizeLinear; the float form elsewhere. ONNX Runtime then fuses DequantizeLinear ->
    Gemm -> QuantizeLinear into integer kernels (QGemm), which put a float bias onto the int32
    accumulator grid and requantize their own way: faster, but not always what QONNX computes
    (up to 2 LSB off in benchmarks/bench_qat.py), hence not the default.
- `Trunc` (Brevitas's accumulator truncation): the float form, after qonnx's trunc.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...errors import GatecError
from ...ir.fixed_point import int_range
from ...ir import QONNX_DOMAINS, attributes

ROUNDING_OPS = {"ROUND": "Round", "HALF_EVEN": "Round", "FLOOR": "Floor", "CEIL": "Ceil"}
SHAPE_ONLY = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Gather", "Slice", "Concat",
              "Split"}  # ops that move values without changing them: an output after them keeps its grid


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
                self.nodes.append(node)
            elif node.op_type == "Quant":
                self.quant(node)
            elif node.op_type == "BipolarQuant":
                self.bipolar(node)
            elif node.op_type == "Trunc":
                self.trunc(node)
            else:
                raise GatecError(f"{describe(node)}: QONNX op {node.op_type} is not supported by the cpu target")
        del self.graph.node[:]
        self.graph.node.extend(self.nodes)
        used = {i for n in self.graph.node for i in n.input} | {o.name for o in self.graph.output}
        kept = [t for t in self.graph.initializer if t.name in used]
        dropped = {t.name for t in self.graph.initializer} - used
        del self.graph.initializer[:]
        self.graph.initializer.extend(kept)
        inputs = [v for v in self.graph.input if v.name not in dropped]  # exporters that list weights as inputs
        del self.graph.input[:]
        self.graph.input.extend(inputs)
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
            if self.form == "qdq" and 2 <= bits <= 8 and scale.size == 1 and not np.any(zeropt):
                # int8 values behind a DequantizeLinear: what ONNX Runtime's integer kernels take
                ints = np.round(value / scale.reshape(())).astype(np.int8 if signed else np.uint8)
                self.emit("DequantizeLinear", [self.const("weight_int", ints), self.const("scale", scale.reshape(())),
                                               self.const("zero_point", np.zeros((), ints.dtype))], node.output[0])
                return
            self.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
            return
        if mode not in ROUNDING_OPS:
            raise GatecError(f"{describe(node)}: rounding mode {mode} is not supported by the cpu target "
                             f"(supported: {', '.join(ROUNDING_OPS)})")
        lo, hi = int_range(bits, signed, narrow)
        zp = float(zeropt.reshape(-1)[0]) if zeropt.size == 1 else None
        if (self.form == "qdq" and scale.size == 1 and zp is not None and zp == int(zp) and 2 <= bits <= 8 and ROUNDING_OPS[mode] == "Round"
                and float(scale.reshape(-1)[0]) > 0):
            int_type = np.int8 if signed else np.uint8
            info = np.iinfo(int_type)
            if info.min <= zp <= info.max and info.min <= lo and hi <= info.max:
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


def lower_qonnx(model: onnx.ModelProto, form: str = "float") -> onnx.ModelProto:
    """The model with every QONNX node replaced by standard ONNX that ONNX Runtime runs."""
    return Lowering(model, form).run()


def output_lsbs(model: onnx.ModelProto) -> list[float | None]:
    """Per graph output, the scale (one least significant bit) of the Quant that produces it,
    through ops that only move values; None where an output is not quantized."""
    producers = {o: n for n in model.graph.node for o in n.output}
    consts = constant_values(model.graph)
    found = []
    for out in model.graph.output:
        node, lsb = producers.get(out.name), None
        while node is not None:
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
    """One least significant bit of the output quantizer: the lowered quantizers compute what
    QONNX computes, but the float ops between them (sums in another order, ONNX Runtime's
    sigmoid and tanh in a fused recurrent kernel) may move a value across a rounding boundary.
    Outputs that no Quant produces get the float tolerance."""
    from .. import Tolerance
    lsbs = output_lsbs(model)
    if lsbs and all(lsb is not None for lsb in lsbs):
        return Tolerance(atol=max(lsbs) * (1 + 1e-6), rtol=0.0)
    return Tolerance(atol=1e-4, rtol=1e-4)
