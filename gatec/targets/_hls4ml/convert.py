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
from ...ir import IR, LOGIC_DOMAIN, QONNX_DOMAINS
from ...ir.graph import consumers, producers
from .act import RECURRENT, Act  # noqa: F401  (the converter's tensors; handlers import it from here too)
from .layers import HANDLERS, quantizers, supported
from .layers.dense import fold_transpose_into_dense

# ops hls4ml has a layer for, but not one its Vivado/Vitis C++ implements: refused with the reason
NOT_IN_HLS4ML = {"RNN": "hls4ml 1.3 implements SimpleRNN for its Quartus backend only, not for Vivado/Vitis "
                        "(use GRU or LSTM)"}


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
    custom: bool = False  # holds gatec's arithmetic extension layers (layers/lookup.py)
    tensors: dict = field(default_factory=dict)  # layer -> the graph values it holds (--precision auto)
    graph: object = None  # the graph converted (the IR's, quantizers' gathers moved)
    # quantizers with a float (not one power-of-two) scale or a zero point: an activation's, its unscaling
    # ApplyAlpha -> (its scaling ApplyAlpha, its largest step); a weight's, 'weight <name>' -> None
    float_scales: dict = field(default_factory=dict)


def var_name(text: str) -> str:
    name = re.sub(r"\W", "_", text).strip("_") or "t"
    return name if name[0].isalpha() else "t_" + name


class Converter:
    """Walks the graph in order: constants are folded, every other node goes to the handler of
    its op type (gatec/targets/_hls4ml/layers), which adds layers with the helpers below."""

    def __init__(self, ir: IR, sample_shapes: list[tuple] | None = None):
        self.ir = ir
        self.graph = quantizers.gather_before_quant(ir.model).graph
        self.values: dict[str, object] = {}
        self.layers: list[dict] = []
        self.precisions: dict[str, dict] = {}
        self.quantized = False
        self.wide: set[str] = set()  # layers whose result type is the accumulator's
        self.logic = False  # holds gatec logic layers (hls4ml extension layers)
        self.custom = False  # holds gatec's lookup or clip layers (extension layers too)
        self.float_scales: dict[str, tuple | None] = {}  # Converted.float_scales
        self.transposed: dict[tuple, str] = {}  # (layer, axes in memory, axes wanted) -> its hls4ml Transpose
        self.producers = producers(self.graph)
        self.readers = consumers(self.graph)
        self.uses = {name: len(readers) for name, readers in self.readers.items()}  # nodes and outputs
        for o in self.graph.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1
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
                             "perm": [now.index(x) for x in want], "_in_shape": [a.shape[x] for x in now]})
            self.transposed[key] = name
            return Act(name, a.shape, a.batch, tuple(order), tuple(a.shape[x] for x in want))
        return Act(a.layer, a.shape, a.batch, tuple(order), a.phys, a.rnn, a.time)

    def single_use(self, name: str) -> bool:
        return self.uses.get(name, 0) == 1

    # ------------------------------------------------------------------ the graph

    def run(self) -> Converted:
        for node in self.graph.node:
            if node.output and all(o in self.values for o in node.output if o):
                continue  # a pattern read ahead and computed it (an exported softsign's Add and Div)
            ins = [self.values.get(n) if n else None for n in node.input]
            if all(v is None or isinstance(v, np.ndarray) for v in ins) and node.op_type not in ("Shape",) \
                    and any(n for n in node.input) or node.op_type == "Constant":
                self.fold(node)
                continue
            handler = HANDLERS.get(node.op_type)
            if node.op_type in NOT_IN_HLS4ML and node.domain in ("", "ai.onnx"):
                raise self.fail(node, NOT_IN_HLS4ML[node.op_type])
            if handler is None or (node.domain not in ("", "ai.onnx", LOGIC_DOMAIN) + QONNX_DOMAINS):
                raise self.fail(node, f"not supported by the hls4ml conversion (supported: {', '.join(supported())})")
            handler(self, node)
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
            if layer.get("class_name") in RECURRENT:
                if layer.get("_last_used") and layer.get("_seq_used"):
                    raise GatecError(f"fpga (hls4ml): both the sequence and the last state of recurrent layer "
                                     f"'{layer['name']}' are used; hls4ml gives one of them")
                layer["return_sequences"] = not layer.get("_last_used", False)
        layers = fold_transpose_into_dense(self.live(outputs), outputs)
        macs = {layer["name"]: layer.pop("_macs", 0) for layer in layers}
        for layer in layers:
            layer.pop("_seq_used", None)
            layer.pop("_last_used", None)
            layer.pop("_in_shape", None)
        live = {l["name"] for l in layers}
        tensors = {}
        for name, v in self.values.items():
            if isinstance(v, Act) and v.layer in live:
                tensors.setdefault(v.layer, []).append(name)
        return Converted(layers, self.inputs, outputs, {k: v for k, v in self.precisions.items() if k in live},
                         self.quantized, macs, output_shapes, sorted(self.wide), self.logic, self.custom,
                         tensors, self.graph, self.float_scales)

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
            self.values[node.output[0]] = quantizers.fold(node, args)
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


def convert(ir: IR, sample_shapes: list[tuple] | None = None) -> Converted:
    return Converter(ir, sample_shapes).run()

