"""gatec's arithmetic IR -> an hls4ml layer list (the dicts hls4ml's own converters produce).

hls4ml's ONNX and PyTorch front ends miss or miscompile what gated networks use (GRU, LSTM,
Split, Gather; GRU followed by a Linear), so the layer list is built here from the ONNX graph.
Each tensor is either a constant (folded with numpy: shapes are static once the batch is fixed)
or an activation: the output of an hls4ml layer, per sample. An activation keeps its ONNX
(logical) shape with the batch axis and the order in which its non-batch axes lie in memory,
so that Transpose, Squeeze, Unsqueeze and Reshape around elementwise ops cost no layer; a
layer that needs a particular layout gets an hls4ml Reshape (free in io_parallel) or refuses.

Weights follow Keras' conventions, which hls4ml's templates use: Dense kernels (n_in, n_out);
GRU kernels (n_in, 3H) with gates z, r, h (ONNX's order, reset applied after the recurrent
product: ONNX linear_before_reset=1, which PyTorch exports); LSTM kernels (n_in, 4H) with gates
i, f, c, o (ONNX's order is i, o, f, c) and one bias (ONNX's Wb + Rb). Convolutions run
channels-last (hls4ml's Conv1D/Conv2D): kernels (K, C, F) / (KH, KW, C, F) from ONNX's (F, C, K...);
their outputs keep ONNX's (N, C, L) shape with the channel axis last in memory, and an hls4ml
Transpose puts a tensor back in ONNX's order where a Flatten or Reshape reads it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from ...errors import GatecError
from ...ir import IR, LOGIC_DOMAIN, QONNX_DOMAINS, attributes
from . import quant

ELEMENTWISE_ACTIVATIONS = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Relu": "relu"}
PASS_THROUGH = {"Identity", "Dropout"}
SUPPORTED = sorted({"Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sigmoid", "Tanh", "Relu", "LeakyRelu",
                    "Softmax", "BatchNormalization", "Concat", "Split", "Slice", "Gather", "GRU", "LSTM",
                    "Transpose", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Identity", "Dropout",
                    "Constant", "Shape", "ConstantOfShape", "Cast", "Quant", "BipolarQuant", "Conv",
                    "ReduceMean", "ReduceMax", "GlobalAveragePool", "GlobalMaxPool"})


@dataclass
class Act:
    """A per-sample tensor computed by hls4ml layer `layer`."""
    layer: str
    shape: tuple  # the ONNX shape, batch axis included
    batch: int  # the batch axis in `shape`
    order: tuple  # the non-batch axes of `shape` in memory order
    phys: tuple  # the hls4ml variable's shape
    rnn: str | None = None  # "seq": the full output sequence of RNN layer `layer`; "last": its last step
    time: int = -1  # the time axis of an RNN's output sequence

    @property
    def sample_shape(self) -> tuple:
        return tuple(d for a, d in enumerate(self.shape) if a != self.batch)

    @property
    def in_order(self) -> bool:
        return list(self.order) == sorted(self.order)

    def physical(self, const: np.ndarray) -> np.ndarray:
        """A constant broadcast to this tensor's shape, as one sample in memory order (flat)."""
        full = np.broadcast_to(const, np.broadcast_shapes(const.shape, self.shape_with_batch(1)))
        full = np.take(full, 0, axis=self.batch)
        axes = [a - (a > self.batch) for a in self.order]
        return np.ascontiguousarray(np.transpose(full, axes)).reshape(-1)

    def shape_with_batch(self, b: int) -> tuple:
        return tuple(b if a == self.batch else d for a, d in enumerate(self.shape))


@dataclass
class Converted:
    layers: list[dict]
    inputs: list[str]
    outputs: list[str]
    precisions: dict = field(default_factory=dict)  # layer -> {"weight"|"bias"|"result"|"accum": type}
    quantized: bool = False
    macs: dict = field(default_factory=dict)  # layer -> multiply-accumulates per sample (RNN: all steps)
    output_shapes: list = field(default_factory=list)  # per output: (ONNX shape with batch 1, batch axis)
    wide: list = field(default_factory=list)  # layers whose result type is the accumulator's
    logic: bool = False


def var_name(text: str) -> str:
    name = re.sub(r"\W", "_", text).strip("_") or "t"
    return name if name[0].isalpha() else "t_" + name


class Converter:
    def __init__(self, ir: IR, sample_shapes: list[tuple] | None = None):
        self.ir = ir
        self.graph = quant.gather_before_quant(ir.model).graph
        self.values: dict[str, object] = {}
        self.layers: list[dict] = []
        self.precisions: dict[str, dict] = {}
        self.quantized = False
        self.wide: set[str] = set()  # layers whose result type is the accumulator's
        self.logic = False  # holds gatec logic layers (hls4ml extension layers)
        self.consumers: dict[str, int] = {}
        self.transposed: dict[tuple, str] = {}  # (layer, axes in memory, axes wanted) -> its hls4ml Transpose
        for node in self.graph.node:
            for name in node.input:
                if name:
                    self.consumers[name] = self.consumers.get(name, 0) + 1
        for o in self.graph.output:
            self.consumers[o.name] = self.consumers.get(o.name, 0) + 1
        for init in self.graph.initializer:
            self.values[init.name] = numpy_helper.to_array(init)
        self.inputs = []
        for i, spec in enumerate(ir.inputs):
            shape = list(spec.shape)
            if sample_shapes is not None:
                rest = iter(sample_shapes[i])
                shape = [d if a == spec.batch_axis else next(rest) for a, d in enumerate(shape)]
            if spec.batch_axis in spec.dynamic:
                shape[spec.batch_axis] = 1
            name = f"in{i}_{var_name(spec.name)}"
            order = tuple(a for a in range(len(shape)) if a != spec.batch_axis)
            phys = tuple(shape[a] for a in order)
            self.layers.append({"name": name, "class_name": "InputLayer", "input_shape": list(phys)})
            self.values[spec.name] = Act(name, tuple(shape), spec.batch_axis, order, phys)
            self.inputs.append(name)

    # ------------------------------------------------------------------ helpers

    def fail(self, node, why: str) -> GatecError:
        return GatecError(f"fpga (hls4ml): node '{node.name or node.output[0]}' ({node.op_type}): {why}")

    def new_name(self, kind: str) -> str:
        return f"{kind}{len(self.layers)}"

    def add(self, layer: dict) -> str:
        self.layers.append(layer)
        return layer["name"]

    def layer(self, name: str) -> dict:
        return next(l for l in self.layers if l["name"] == name)

    def const(self, name: str):
        v = self.values.get(name)
        return v if isinstance(v, np.ndarray) else None

    def act(self, node, name: str, use: bool = True) -> Act:
        """The activation `name`; `use=False` for shape-only ops, which do not read the data."""
        v = self.values.get(name)
        if not isinstance(v, Act):
            raise self.fail(node, f"input '{name}' is not computed per sample")
        if use and v.rnn == "seq":
            self.layer(v.layer)["_seq_used"] = True
        return v

    def shaped(self, a: Act, phys: tuple) -> str:
        """The layer name holding `a` with hls4ml shape `phys` (a free Reshape if needed)."""
        if tuple(a.phys) == tuple(phys):
            return a.layer
        if a.rnn == "seq":
            self.layer(a.layer)["_seq_used"] = True
        return self.add({"name": self.new_name("reshape"), "class_name": "Reshape", "inputs": [a.layer],
                         "target_shape": list(phys)})

    def same_layout(self, a: Act, shape, batch=None, rnn=None, layer=None) -> Act:
        return Act(layer or a.layer, tuple(shape), a.batch if batch is None else batch, a.order, a.phys, rnn)

    def flat(self, node, a: Act) -> tuple[str, int]:
        """`a` as a 1-D hls4ml variable (its memory order must be the ONNX order)."""
        a = self.laid_out(a, tuple(sorted(a.order)))
        n = int(np.prod(a.sample_shape))
        return self.shaped(a, (n,)), n

    def laid_out(self, a: Act, order: tuple) -> Act:
        """`a` with its non-batch axes in memory in `order`: an hls4ml Transpose when they are not."""
        if tuple(a.order) == tuple(order):
            return a
        if a.rnn == "seq":
            self.layer(a.layer)["_seq_used"] = True
        now = [x for x in a.order if a.shape[x] != 1]  # axes of size 1 cost nothing to move
        want = [x for x in order if a.shape[x] != 1]
        if now != want:
            key = (a.layer, tuple(now), tuple(want))
            if key in self.transposed:  # two convolutions of one input share its transposition
                return Act(self.transposed[key], a.shape, a.batch, tuple(order), tuple(a.shape[x] for x in want))
            src = self.shaped(a, tuple(a.shape[x] for x in now))
            name = self.add({"name": self.new_name("transpose"), "class_name": "Transpose", "inputs": [src],
                             "perm": [now.index(x) for x in want]})
            self.transposed[key] = name
            return Act(name, a.shape, a.batch, tuple(order), tuple(a.shape[x] for x in want))
        return Act(a.layer, a.shape, a.batch, tuple(order), a.phys, a.rnn, a.time)

    def single_use(self, name: str) -> bool:
        return self.consumers.get(name, 0) == 1

    # ------------------------------------------------------------------ the graph

    def run(self) -> Converted:
        for node in self.graph.node:
            ins = [self.values.get(n) if n else None for n in node.input]
            if all(v is None or isinstance(v, np.ndarray) for v in ins) and node.op_type not in ("Shape",) \
                    and any(n for n in node.input) or node.op_type == "Constant":
                self.fold(node)
                continue
            handler = getattr(self, "op_" + node.op_type, None)
            if handler is None or (node.domain not in ("", "ai.onnx", LOGIC_DOMAIN) + QONNX_DOMAINS):
                raise self.fail(node, f"not supported by the hls4ml conversion (supported: {', '.join(SUPPORTED)})")
            handler(node)
        outputs, output_shapes = [], []
        for o in self.graph.output:
            v = self.values.get(o.name)
            if not isinstance(v, Act):
                raise GatecError(f"fpga (hls4ml): output '{o.name}' does not depend on the inputs")
            if v.rnn == "seq":
                self.layer(v.layer)["_seq_used"] = True
            v = self.laid_out(v, tuple(sorted(v.order)))  # hls4ml writes outputs in memory order
            name = v.layer
            name = self.shaped(v, (int(np.prod(v.sample_shape)),)) if len(v.phys) != 1 else name
            outputs.append(name)
            output_shapes.append((list(v.shape_with_batch(1)), v.batch))
        for layer in self.layers:
            if layer.get("class_name") in ("GRU", "LSTM"):
                if layer.get("_last_used") and layer.get("_seq_used"):
                    raise GatecError(f"fpga (hls4ml): both the sequence and the last state of recurrent layer "
                                     f"'{layer['name']}' are used; hls4ml gives one of them")
                layer["return_sequences"] = not layer.get("_last_used", False)
        layers = self.live(outputs)
        self.macs_of = {layer["name"]: layer.pop("_macs", 0) for layer in layers}
        for layer in layers:
            layer.pop("_seq_used", None)
            layer.pop("_last_used", None)
        return Converted(layers, self.inputs, outputs, {k: v for k, v in self.precisions.items()
                                                         if any(l["name"] == k for l in layers)},
                         self.quantized, self.macs_of, output_shapes, sorted(self.wide), self.logic)

    def live(self, outputs: list[str]) -> list[dict]:
        """Layers the outputs depend on (a Dense split for a Split leaves the original unused)."""
        needed = set(outputs) | set(self.inputs)
        for layer in reversed(self.layers):
            if layer["name"] in needed:
                needed.update(layer.get("inputs", []))
        return [l for l in self.layers if l["name"] in needed]

    def fold(self, node) -> None:
        if node.domain in QONNX_DOMAINS:
            args = [self.const(n) if n else None for n in node.input]
            self.values[node.output[0]] = quant.fold(node, args)
            return
        from onnx.reference import ReferenceEvaluator
        inputs = [n for n in node.input if n]
        graph = onnx.helper.make_graph(
            [node], "fold", [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in inputs],
            [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output if n])
        opset = next((o.version for o in self.ir.model.opset_import if o.domain in ("", "ai.onnx")), 18)
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        outs = ReferenceEvaluator(model).run(None, {n: self.values[n] for n in inputs})
        for name, value in zip([n for n in node.output if n], outs):
            self.values[name] = np.asarray(value)

    # ------------------------------------------------------------------ shape-only ops

    def op_Shape(self, node):
        v = self.values[node.input[0]]
        shape = v.shape
        self.values[node.output[0]] = np.array(shape, dtype=np.int64)

    def op_Identity(self, node):
        self.values[node.output[0]] = self.values[node.input[0]]

    op_Dropout = op_Identity

    def op_Cast(self, node):
        to = attributes(node)["to"]
        if to not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            raise self.fail(node, "casts of per-sample tensors to non-float types are not supported")
        self.op_Identity(node)

    def op_Transpose(self, node):
        a = self.act(node, node.input[0], use=False)
        perm = list(attributes(node).get("perm", list(range(len(a.shape)))[::-1]))
        where = {old: new for new, old in enumerate(perm)}
        self.values[node.output[0]] = Act(a.layer, tuple(a.shape[p] for p in perm), where[a.batch],
                                          tuple(where[o] for o in a.order), a.phys, a.rnn, where.get(a.time, -1))

    def reshaped(self, node, a: Act, shape: tuple, batch: int, time: int = -1) -> Act:
        a = self.laid_out(a, tuple(sorted(a.order)))  # a reshape reads the tensor in ONNX's order
        order = tuple(x for x in range(len(shape)) if x != batch)
        return Act(a.layer, tuple(shape), batch, order, a.phys, a.rnn if time >= 0 else None, time)

    def op_Squeeze(self, node):
        a = self.act(node, node.input[0], use=False)
        axes = self.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        axes = [x % len(a.shape) for x in (axes.tolist() if axes is not None else
                                           [i for i, d in enumerate(a.shape) if d == 1 and i != a.batch])]
        if a.batch in axes:
            raise self.fail(node, "squeezes the batch axis")
        keep = [x for x in range(len(a.shape)) if x not in axes]
        time = keep.index(a.time) if a.time in keep else -1
        self.values[node.output[0]] = self.reshaped(node, a, tuple(a.shape[x] for x in keep), keep.index(a.batch),
                                                    time)

    def op_Unsqueeze(self, node):
        a = self.act(node, node.input[0], use=False)
        rank = len(a.shape) + len(self.const(node.input[1]).reshape(-1))
        axes = sorted(int(x) % rank for x in self.const(node.input[1]).reshape(-1))
        shape, src, batch, time = [], iter(range(len(a.shape))), None, -1
        for x in range(rank):
            if x in axes:
                shape.append(1)
            else:
                i = next(src)
                batch = x if i == a.batch else batch
                time = x if i == a.time else time
                shape.append(a.shape[i])
        self.values[node.output[0]] = self.reshaped(node, a, tuple(shape), batch, time)

    def op_Flatten(self, node):
        a = self.act(node, node.input[0], use=False)
        axis = attributes(node).get("axis", 1) % max(len(a.shape), 1)
        if a.batch != 0 or axis != 1:
            raise self.fail(node, "only Flatten(axis=1) with the batch first is supported")
        self.values[node.output[0]] = self.reshaped(node, a, (a.shape[0], int(np.prod(a.shape[1:]))), 0)

    def op_Reshape(self, node):
        a = self.act(node, node.input[0], use=False)
        target = [int(x) for x in self.const(node.input[1])]
        if a.batch != 0 or not target or target[0] not in (0, 1, -1, a.shape[0]):
            raise self.fail(node, "only reshapes that keep the batch axis first are supported")
        per_sample = [a.shape[i] if d == 0 else d for i, d in enumerate(target)][1:]
        per_sample = list(np.empty(a.sample_shape).reshape([-1 if d == -1 else d for d in per_sample]).shape)
        self.values[node.output[0]] = self.reshaped(node, a, (a.shape[0], *per_sample), 0)

    # ------------------------------------------------------------------ dense

    def dense(self, node, a: Act, weight: np.ndarray, bias: np.ndarray | None, weight_precision=None) -> None:
        if len(a.sample_shape) != 1 or not a.in_order:
            raise self.fail(node, f"a dense layer needs one feature axis per sample (got {list(a.sample_shape)})")
        src, n_in = self.flat(node, a)
        n_out = weight.shape[1]
        name = self.add({"name": self.new_name("dense"), "class_name": "Dense", "inputs": [src], "n_in": n_in,
                         "n_out": n_out, "weight_data": np.ascontiguousarray(weight, dtype=np.float64),
                         "bias_data": np.zeros(n_out) if bias is None else
                         np.broadcast_to(bias, (n_out,)).astype(np.float64).copy(),
                         "use_bias": True, "activation": "linear", "_macs": n_in * n_out})
        if weight_precision:
            self.precisions.setdefault(name, {})["weight"] = weight_precision
        shape = list(a.shape)
        shape[-1] = n_out
        self.values[node.output[0]] = Act(name, tuple(shape), a.batch, a.order, (n_out,))

    def weight(self, node, name: str) -> tuple[np.ndarray, str | None]:
        w = self.const(name)
        if w is None:
            raise self.fail(node, "the weight matrix must be a constant")
        return w, quant.precision_of(self, name)

    def op_Gemm(self, node):
        attrs = attributes(node)
        if attrs.get("transA", 0):
            raise self.fail(node, "transA=1 is not supported")
        a = self.act(node, node.input[0])
        w, wp = self.weight(node, node.input[1])
        w = (w.T if attrs.get("transB", 0) else w) * attrs.get("alpha", 1.0)
        c = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and c is None:
            raise self.fail(node, "the bias must be a constant")
        self.dense(node, a, w, None if c is None else c.reshape(-1) * attrs.get("beta", 1.0), wp)

    def op_MatMul(self, node):
        a = self.act(node, node.input[0])
        w, wp = self.weight(node, node.input[1])
        if w.ndim != 2:
            raise self.fail(node, "only a 2-D constant right operand is supported")
        self.dense(node, a, w, None, wp)

    # ------------------------------------------------------------------ elementwise

    def affine(self, node, a: Act, scale, bias) -> None:
        """y = scale * x + bias elementwise (constants broadcast to x): folded into the Dense
        that made x when only this node reads it, else one ApplyAlpha layer."""
        scale = a.physical(np.asarray(scale, dtype=np.float64))
        bias = a.physical(np.asarray(bias, dtype=np.float64))
        producer = self.layer(a.layer)
        if producer["class_name"] == "Dense" and self.single_use(node.input[0]) and a.rnn is None \
                and np.all(scale == 1) and a.layer not in self.outputs_so_far():
            producer["bias_data"] = producer["bias_data"] + bias
            self.values[node.output[0]] = a
            return
        if producer["class_name"] in ("Conv1D", "Conv2D") and self.single_use(node.input[0]) \
                and a.layer not in self.outputs_so_far() and a.layer not in self.precisions:
            # per channel (a batch norm after a convolution): folded into the kernel and bias (not
            # into quantized weights: their type would no longer hold them)
            per_pos = scale.reshape(-1, producer["n_filt"]), bias.reshape(-1, producer["n_filt"])
            if all(np.all(v == v[:1]) for v in per_pos):
                producer["weight_data"] = producer["weight_data"] * per_pos[0][0]
                producer["bias_data"] = producer["bias_data"] * per_pos[0][0] + per_pos[1][0]
                self.values[node.output[0]] = a
                return
        name = self.add({"name": self.new_name("affine"), "class_name": "ApplyAlpha", "inputs": [a.layer],
                         "n_in": scale.size, "n_filt": -1, "scale_data": scale, "bias_data": bias,
                         "_macs": int(np.count_nonzero((scale != 1) & (scale != -1)))})
        self.values[node.output[0]] = self.same_layout(a, a.shape, layer=name)

    def outputs_so_far(self) -> set:
        return {v.layer for k, v in self.values.items() if isinstance(v, Act) and
                any(o.name == k for o in self.graph.output)}

    def binary(self, node, op: str):
        x, y = (self.values.get(n) for n in node.input[:2])
        if isinstance(x, Act) and isinstance(y, Act):
            if op == "div":
                raise self.fail(node, "division of two per-sample tensors is not supported")
            x, y = self.act(node, node.input[0]), self.act(node, node.input[1])
            if x.shape != y.shape or x.order != y.order or x.batch != y.batch:
                raise self.fail(node, f"broadcasting {list(x.shape)} with {list(y.shape)} is not supported")
            src_y = self.shaped(y, x.phys)
            name = self.add({"name": self.new_name(op), "class_name": "Merge", "op": op, "inputs": [x.layer, src_y],
                             "_macs": int(np.prod(x.phys)) if op == "multiply" else 0})
            self.values[node.output[0]] = self.same_layout(x, x.shape, layer=name)
            return
        if isinstance(x, Act):
            a, c = self.act(node, node.input[0]), y
            scale, bias = {"add": (1.0, c), "subtract": (1.0, -c), "multiply": (c, 0.0), "div": (1.0 / c, 0.0)}[op]
        else:
            a, c = self.act(node, node.input[1]), x
            if op == "div":
                raise self.fail(node, "dividing by a per-sample tensor is not supported")
            scale, bias = {"add": (1.0, c), "subtract": (-1.0, c), "multiply": (c, 0.0)}[op]
        if np.broadcast_shapes(np.shape(c), a.shape_with_batch(1)) != a.shape_with_batch(1):
            raise self.fail(node, "a constant that widens the tensor is not supported")
        self.affine(node, a, scale, bias)

    def op_Add(self, node):
        self.binary(node, "add")

    def op_Sub(self, node):
        self.binary(node, "subtract")

    def op_Mul(self, node):
        self.binary(node, "multiply")

    def op_Div(self, node):
        self.binary(node, "div")

    def op_BatchNormalization(self, node):
        a = self.act(node, node.input[0])
        gamma, beta, mean, var = (self.const(n) for n in node.input[1:5])
        eps = attributes(node).get("epsilon", 1e-5)
        scale = gamma / np.sqrt(var + eps)
        shape = [1] * len(a.shape)
        shape[1 if len(a.shape) > 1 else 0] = -1  # ONNX: the channel axis is axis 1
        self.affine(node, a, scale.reshape(shape), (beta - mean * scale).reshape(shape))

    def activation(self, node, kind: str, **extra):
        a = self.act(node, node.input[0])
        name = self.add({"name": self.new_name(kind.lower()), "class_name": extra.pop("class_name", "Activation"),
                         "activation": kind, "inputs": [a.layer], **extra})
        self.values[node.output[0]] = self.same_layout(a, a.shape, layer=name, rnn=None if a.rnn == "seq" else a.rnn)
        return name

    def op_Sigmoid(self, node):
        self.activation(node, "sigmoid")

    def op_Tanh(self, node):
        self.activation(node, "tanh")

    def op_Relu(self, node):
        self.activation(node, "relu")

    def op_LeakyRelu(self, node):
        alpha = attributes(node).get("alpha", 0.01)
        self.activation(node, "leaky_relu", class_name="LeakyReLU", activ_param=alpha)

    def op_Softmax(self, node):
        a = self.act(node, node.input[0])
        axis = attributes(node).get("axis", -1) % len(a.shape)
        if axis != len(a.shape) - 1 or len(a.sample_shape) != 1:
            raise self.fail(node, "only a softmax over the last axis of a vector per sample is supported")
        src, n = self.flat(node, a)
        # 'stable' subtracts the maximum before the exp table, so the table's range holds any logits
        name = self.add({"name": self.new_name("softmax"), "class_name": "Softmax", "activation": "softmax",
                         "inputs": [src], "axis": -1, "n_in": n, "implementation": "stable"})
        self.values[node.output[0]] = self.same_layout(a, a.shape, layer=name)

    # ------------------------------------------------------------------ structure

    def op_Concat(self, node):
        parts = [self.act(node, n) for n in node.input]
        axis = attributes(node)["axis"] % len(parts[0].shape)
        if len(parts) != 2 or axis != len(parts[0].shape) - 1 or axis == parts[0].batch or \
                len(parts[0].sample_shape) != 1:
            raise self.fail(node, "only concatenating two vectors per sample on their last axis is supported")
        srcs = [self.flat(node, p)[0] for p in parts]
        name = self.add({"name": self.new_name("concat"), "class_name": "Concatenate", "op": "concatenate1d",
                         "axis": -1, "inputs": srcs})
        shape = list(parts[0].shape)
        shape[axis] += parts[1].shape[axis]
        self.values[node.output[0]] = Act(name, tuple(shape), parts[0].batch, parts[0].order, (shape[axis],))

    def take_last(self, node, a: Act, start: int, stop: int, out: str) -> None:
        """Features start..stop of a vector per sample: the Dense that made it, cut in two, when
        only this node reads it; else a Dense that selects them (weights 0/1, exact)."""
        if len(a.sample_shape) != 1:
            raise self.fail(node, "only slicing a vector per sample on its last axis is supported")
        producer = self.layer(a.layer)
        n = stop - start
        if producer["class_name"] == "Dense" and self.single_use(node.input[0]) and a.rnn is None:
            name = self.add({**producer, "name": self.new_name("dense"), "n_out": n,
                             "weight_data": producer["weight_data"][:, start:stop].copy(),
                             "bias_data": producer["bias_data"][start:stop].copy(), "_macs": producer["n_in"] * n})
            if producer["name"] in self.precisions:
                self.precisions[name] = dict(self.precisions[producer["name"]])
        else:
            src, n_in = self.flat(node, a)
            select = np.zeros((n_in, n))
            select[np.arange(start, stop), np.arange(n)] = 1.0
            name = self.add({"name": self.new_name("select"), "class_name": "Dense", "inputs": [src], "n_in": n_in,
                             "n_out": n, "weight_data": select, "bias_data": np.zeros(n), "use_bias": True,
                             "activation": "linear"})
        shape = list(a.shape)
        shape[-1] = n
        self.values[out] = Act(name, tuple(shape), a.batch, a.order, (n,))

    def op_Split(self, node):
        a = self.act(node, node.input[0])
        axis = attributes(node).get("axis", 0) % len(a.shape)
        if axis != len(a.shape) - 1 and not self.conv_channels(a, axis):
            raise self.fail(node, "only splitting the last axis (or a convolution's channels) is supported")
        size = a.shape[axis]
        split = self.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        outs = [o for o in node.output]
        sizes = split.tolist() if split is not None else [-(-size // len(outs))] * len(outs)
        sizes[-1] = size - sum(sizes[:-1])
        start = 0
        for out, n in zip(outs, sizes):
            (self.take_channels if axis != len(a.shape) - 1 else self.take_last)(node, a, start, start + int(n), out)
            start += int(n)

    def op_Slice(self, node):
        a = self.values[node.input[0]]
        starts, ends = self.const(node.input[1]), self.const(node.input[2])
        axes = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.arange(len(starts))
        steps = self.const(node.input[4]) if len(node.input) > 4 and node.input[4] else np.ones(len(starts), int)
        a = self.act(node, node.input[0])
        axis = int(axes[0]) % len(a.shape) if len(axes) == 1 else -1
        channels = self.conv_channels(a, axis)
        if len(axes) != 1 or (axis != len(a.shape) - 1 and not channels) or int(steps[0]) != 1:
            raise self.fail(node, "only slicing the last axis (or a convolution's channels) with step 1 is supported")
        start, stop, _ = slice(int(starts[0]), int(ends[0])).indices(a.shape[axis])
        (self.take_channels if channels else self.take_last)(node, a, start, stop, node.output[0])

    def op_Gather(self, node):
        a = self.act(node, node.input[0], use=False)
        index = self.const(node.input[1])
        axis = attributes(node).get("axis", 0) % len(a.shape)
        if a.rnn is None and index is not None and index.ndim == 0 and len(a.shape) == 3 and a.batch == 0 \
                and axis == 2:
            self.take_step(node, self.act(node, node.input[0]), int(index) % a.shape[2])
            return
        if a.rnn != "seq" or index is None or index.ndim != 0 or axis != a.time \
                or int(index) % a.shape[axis] != a.shape[axis] - 1:
            raise self.fail(node, "only taking the last step of a recurrent layer's output sequence is supported")
        self.layer(a.layer)["_last_used"] = True
        keep = [x for x in range(len(a.shape)) if x != axis]
        shape = tuple(a.shape[x] for x in keep)
        batch = keep.index(a.batch)
        self.values[node.output[0]] = Act(a.layer, shape, batch, tuple(x for x in range(len(shape)) if x != batch),
                                          (a.phys[-1],), "last")

    # ------------------------------------------------------------------ convolution

    def op_Conv(self, node):
        attrs = attributes(node)
        a = self.act(node, node.input[0])
        w = self.const(node.input[1])
        b = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if w is None or (len(node.input) > 2 and node.input[2] and b is None):
            raise self.fail(node, "the weights and bias must be constants")
        dims = w.ndim - 2
        if dims not in (1, 2) or a.batch != 0 or len(a.shape) != dims + 2:
            raise self.fail(node, "only 1-D and 2-D convolutions with the batch first are supported")
        if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1] * dims)):
            raise self.fail(node, "grouped or dilated convolutions are not supported")
        sizes, kernel = a.shape[2:], w.shape[2:]
        strides = list(attrs.get("strides", [1] * dims))
        pads = self.conv_pads(node, attrs, sizes, kernel, strides)
        outs = [(n + p0 + p1 - k) // s + 1 for n, k, s, p0, p1 in zip(sizes, kernel, strides, pads[:dims], pads[dims:])]
        if min(outs) < 1:
            raise self.fail(node, "the kernel is larger than the padded input")
        n_filt, n_chan = w.shape[:2]
        src = self.laid_out(a, tuple(range(2, dims + 2)) + (1,))  # channels last
        src = self.shaped(src, tuple(sizes) + (n_chan,))
        layer = {"name": self.new_name("conv"), "class_name": f"Conv{dims}D", "inputs": [src],
                 "data_format": "channels_last", "n_chan": int(n_chan), "n_filt": int(n_filt),
                 "filt_width": int(kernel[-1]), "stride_width": int(strides[-1]), "in_width": int(sizes[-1]),
                 "out_width": int(outs[-1]), "pad_left": int(pads[dims - 1]), "pad_right": int(pads[-1]),
                 # Keras' kernel layout: (K, C, F) or (KH, KW, C, F)
                 "weight_data": np.ascontiguousarray(np.transpose(w, tuple(range(2, dims + 2)) + (1, 0)),
                                                     dtype=np.float64),
                 "bias_data": np.zeros(n_filt) if b is None else b.astype(np.float64).reshape(-1),
                 "use_bias": True, "_macs": int(np.prod(outs)) * int(n_filt) * int(n_chan) * int(np.prod(kernel))}
        if dims == 2:
            layer.update(filt_height=int(kernel[0]), stride_height=int(strides[0]), in_height=int(sizes[0]),
                         out_height=int(outs[0]), pad_top=int(pads[0]), pad_bottom=int(pads[2]))
        wp = quant.precision_of(self, node.input[1])
        name = self.add(layer)
        if wp:
            self.precisions.setdefault(name, {})["weight"] = wp
        self.values[node.output[0]] = Act(name, (a.shape[0], int(n_filt), *outs), 0,
                                          tuple(range(2, dims + 2)) + (1,), (*outs, int(n_filt)))

    def conv_pads(self, node, attrs, sizes, kernel, strides) -> list[int]:
        """ONNX pads (begins, then ends) from `pads` or `auto_pad`."""
        auto = attrs.get("auto_pad", "NOTSET")
        if auto in ("NOTSET", "VALID"):
            return [int(p) for p in attrs.get("pads", [0] * 2 * len(sizes))] if auto == "NOTSET" else [0] * 2 * len(sizes)
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            raise self.fail(node, f"auto_pad {auto} is not supported")
        total = [max((-(-n // s) - 1) * s + k - n, 0) for n, k, s in zip(sizes, kernel, strides)]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        return small + big if auto == "SAME_UPPER" else big + small

    def conv_channels(self, a: Act, axis: int) -> bool:
        """Whether `axis` is the channel axis of a convolution's output (cut by cutting the convolution)."""
        return axis == 1 and a.batch == 0 and a.rnn is None and self.layer(a.layer)["class_name"] in ("Conv1D", "Conv2D") \
            and a.order[-1] == 1

    def take_channels(self, node, a: Act, start: int, stop: int, out: str) -> None:
        """Channels start..stop of a convolution's output: the convolution with those filters only
        (the whole one is left out of the model when nothing else reads it)."""
        conv = self.layer(a.layer)
        n = stop - start
        name = self.add({**conv, "name": self.new_name("conv"), "n_filt": n,
                         "weight_data": conv["weight_data"][..., start:stop].copy(),
                         "bias_data": conv["bias_data"][start:stop].copy(), "_macs": conv["_macs"] // conv["n_filt"] * n})
        if conv["name"] in self.precisions:
            self.precisions[name] = dict(self.precisions[conv["name"]])
        shape = list(a.shape)
        shape[1] = n
        self.values[out] = Act(name, tuple(shape), 0, a.order, (*a.phys[:-1], n))

    def take_step(self, node, a: Act, step: int) -> None:
        """x[:, :, step] of an (N, C, L) tensor: an hls4ml Cropping1D of the channels-last one (exact, no
        arithmetic)."""
        a = self.laid_out(a, (2, 1))
        n_chan, width = a.shape[1], a.shape[2]
        src = self.shaped(a, (width, n_chan))
        name = self.add({"name": self.new_name("crop"), "class_name": "Cropping1D", "inputs": [src],
                         "data_format": "channels_last", "in_width": width, "out_width": 1, "n_chan": n_chan,
                         "crop_left": step, "crop_right": width - 1 - step})
        self.values[node.output[0]] = Act(name, (a.shape[0], n_chan), 0, (1,), (1, n_chan))

    def global_pool(self, node, kind: str, axes: list[int], keepdims: bool) -> None:
        """A mean or maximum over every spatial axis of an (N, C, L) or (N, C, H, W) tensor: hls4ml's
        global pooling on the channels-last tensor."""
        a = self.act(node, node.input[0])
        dims = len(a.shape) - 2
        if a.batch != 0 or dims not in (1, 2) or sorted(x % len(a.shape) for x in axes) != list(range(2, dims + 2)):
            raise self.fail(node, "only a mean or maximum over all spatial axes of (N, C, L) or (N, C, H, W) is supported")
        a = self.laid_out(a, tuple(range(2, dims + 2)) + (1,))
        n_chan = a.shape[1]
        src = self.shaped(a, tuple(a.shape[2:]) + (n_chan,))
        layer = {"name": self.new_name("pool"), "class_name": f"Global{kind}Pooling{dims}D", "inputs": [src],
                 "data_format": "channels_last", "n_filt": n_chan, "_macs": 0}
        if dims == 1:
            layer["n_in"] = a.shape[2]
        else:
            layer.update(in_height=a.shape[2], in_width=a.shape[3])
        name = self.add(layer)
        shape = (a.shape[0], n_chan) + ((1,) * dims if keepdims else ())
        self.values[node.output[0]] = Act(name, shape, 0, tuple(range(1, len(shape))), (n_chan,))

    def reduce(self, node, kind: str):
        attrs = attributes(node)
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const(node.input[1])
            if axes is None:
                raise self.fail(node, "the axes must be constants")
        if axes is None:
            raise self.fail(node, "reducing over all axes (the batch too) is not supported")
        self.global_pool(node, kind, [int(x) for x in np.asarray(axes).reshape(-1)], bool(attrs.get("keepdims", 1)))

    def op_ReduceMean(self, node):
        self.reduce(node, "Average")

    def op_ReduceMax(self, node):
        self.reduce(node, "Max")

    def op_GlobalAveragePool(self, node):
        a = self.values[node.input[0]]
        self.global_pool(node, "Average", list(range(2, len(getattr(a, "shape", ())))), True)

    def op_GlobalMaxPool(self, node):
        a = self.values[node.input[0]]
        self.global_pool(node, "Max", list(range(2, len(getattr(a, "shape", ())))), True)

    # ------------------------------------------------------------------ recurrent

    def recurrent(self, node, kind: str):
        attrs = attributes(node)
        if attrs.get("direction", "forward") != "forward":
            raise self.fail(node, "only forward recurrent layers are supported (hls4ml has no bidirectional ones)")
        if attrs.get("activations") or attrs.get("clip"):
            raise self.fail(node, "custom activations or clipping are not supported")
        if kind == "GRU" and attrs.get("linear_before_reset", 0) != 1:
            raise self.fail(node, "only linear_before_reset=1 (PyTorch's GRU) is supported")
        x = self.values[node.input[0]]
        if not isinstance(x, Act):
            raise self.fail(node, "the sequence must be computed per sample")
        layout = attrs.get("layout", 0)
        time = 1 if layout else 0
        if x.batch != (0 if layout else 1) or x.order != tuple(a for a in range(3) if a != x.batch):
            raise self.fail(node, "the sequence must be laid out batch, time, features in memory")
        W, R = self.const(node.input[1]), self.const(node.input[2])
        B = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        for i in range(4, len(node.input)):
            if not node.input[i]:
                continue
            v = self.const(node.input[i])
            if i == 4 or i == 7 or v is None or np.any(v != 0):  # sequence_lens, peepholes; nonzero initial state
                raise self.fail(node, f"input {i} ({node.input[i]}) is not supported: hls4ml starts from a zero state")
        H = int(attrs["hidden_size"])
        T, F = x.shape[time], x.shape[2]
        gates = 3 if kind == "GRU" else 4
        B = np.zeros((1, 2 * gates * H)) if B is None else B
        w, r, wb, rb = W[0], R[0], B[0, :gates * H], B[0, gates * H:]
        src = self.shaped(x, (T, F))
        if kind == "LSTM":
            # hls4ml's LSTM needs one type for its input, state and sums: a cast to the wide
            # (accumulator) type first, so that the state keeps the accumulator's precision
            src = self.add({"name": self.new_name("cast"), "class_name": "Activation", "activation": "linear",
                            "inputs": [src]})
            self.wide.update({src})
        layer = {"name": self.new_name(kind.lower()), "class_name": kind, "inputs": [src],
                 "direction": "forward", "return_state": False, "activation": "tanh",
                 "recurrent_activation": "sigmoid", "time_major": False, "n_timesteps": T, "n_in": F, "n_out": H,
                 "_macs": T * gates * H * (F + H)}
        if kind == "GRU":  # ONNX and Keras share the gate order z, r, h
            layer.update(weight_data=w.T.copy(), recurrent_weight_data=r.T.copy(), bias_data=wb.copy(),
                         recurrent_bias_data=rb.copy(), apply_reset_gate="after")
        else:  # ONNX i, o, f, c -> Keras i, f, c, o
            order = np.concatenate([np.arange(g * H, (g + 1) * H) for g in (0, 2, 3, 1)])
            layer.update(weight_data=w[order].T.copy(), recurrent_weight_data=r[order].T.copy(),
                         bias_data=(wb + rb)[order].copy())
        name = self.add(layer)
        self.wide.add(name)  # the state keeps the accumulator's precision across time steps
        # Y: (T, 1, B, H) for layout 0, (B, T, 1, H) for layout 1; Y_h: (1, B, H) or (B, 1, H)
        y_shape = (T, 1, 1, H) if not layout else (1, T, 1, H)
        y = Act(name, y_shape, 2 if not layout else 0, (0, 1, 3) if not layout else (1, 2, 3), (T, H), "seq", time)
        self.values[node.output[0]] = y
        if len(node.output) > 1 and node.output[1]:
            h_shape, h_batch = ((1, 1, H), 1) if not layout else ((1, 1, H), 0)
            self.values[node.output[1]] = Act(name, h_shape, h_batch, tuple(a for a in range(3) if a != h_batch),
                                              (H,), "last")
            if self.consumers.get(node.output[1], 0):
                layer["_last_used"] = True
        if len(node.output) > 2 and node.output[2] and self.consumers.get(node.output[2], 0):
            raise self.fail(node, "the LSTM's cell state output is not supported")

    def op_GRU(self, node):
        self.recurrent(node, "GRU")

    def op_LSTM(self, node):
        self.recurrent(node, "LSTM")

    # ------------------------------------------------------------------ logic layers (hls4ml extension)

    def op_LogicLayer(self, node):
        from ...ir.logic import layer_of
        a = self.act(node, node.input[0])
        src, n_in = self.flat(node, a)
        layer = layer_of(node)
        in_a, in_b, ops = (np.asarray(v).astype(int).tolist() for v in (layer.in_a, layer.in_b, layer.ops))
        if max(in_a + in_b, default=0) >= n_in:
            raise self.fail(node, f"reads input {max(in_a + in_b)} of {n_in}")
        name = self.add({"name": self.new_name("logic"), "class_name": "GatecLogicLayer", "inputs": [src],
                         "n_in": n_in, "n_out": len(ops), "in_a": in_a, "in_b": in_b, "ops": ops})
        self.precisions[name] = {"result": "ap_uint<1>"}
        self.logic = True
        shape = list(a.shape)
        shape[-1] = len(ops)
        self.values[node.output[0]] = Act(name, tuple(shape), a.batch, a.order, (len(ops),))

    def op_GroupSum(self, node):
        from ...ir.logic import group_sum_of
        a = self.act(node, node.input[0])
        src, n_in = self.flat(node, a)
        k, tau = group_sum_of(node)
        if n_in % k:
            raise self.fail(node, f"{n_in} inputs do not split into {k} groups")
        name = self.add({"name": self.new_name("groupsum"), "class_name": "GatecGroupSum", "inputs": [src],
                         "n_in": n_in, "k": int(k), "tau": float(tau)})
        integer = int(np.ceil(np.log2(n_in // k / tau + 1))) + 1
        self.precisions[name] = {"result": f"ap_fixed<{integer + 16},{integer}>"}  # the count / tau, 16 fraction bits
        self.logic = True
        shape = list(a.shape)
        shape[-1] = int(k)
        self.values[node.output[0]] = Act(name, tuple(shape), a.batch, a.order, (int(k),))

    # ------------------------------------------------------------------ QONNX

    def op_Quant(self, node):
        quant.activation_quant(self, node)

    def op_BipolarQuant(self, node):
        quant.activation_bipolar(self, node)


def convert(ir: IR, sample_shapes: list[tuple] | None = None) -> Converted:
    return Converter(ir, sample_shapes).run()
