"""Logic networks as gate lists: the 16 two-input ops, their coefficient forms, and a numpy
evaluator that is the bit-exact reference every other form is checked against.

An op id packs its truth table: id = 8*f(0,0) + 4*f(0,1) + 2*f(1,0) + f(1,1) (difflogic's order).
A network is a list of layers, each (in_a, in_b, ops) int arrays with one entry per gate,
reading the previous layer's outputs (the first reads the input bits), then optionally a
GroupSum (k, tau): class c's score = (number of ones among outputs c*n .. c*n+n-1) / tau.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from ..errors import GatecError
from . import LOGIC_DOMAIN

OP_NAMES = ["FALSE", "AND", "A_AND_NOT_B", "A", "NOT_A_AND_B", "B", "XOR", "OR",
            "NOR", "XNOR", "NOT_B", "B_IMPLIES_A", "NOT_A", "A_IMPLIES_B", "NAND", "TRUE"]
OP_ID = {name: op for op, name in enumerate(OP_NAMES)}  # the ids by name: OP_ID["A"] == 3

# TRUTH[op] = (f(0,0), f(0,1), f(1,0), f(1,1)): the bits of the id, most significant first
TRUTH = np.array([[(op >> 3) & 1, (op >> 2) & 1, (op >> 1) & 1, op & 1] for op in range(16)], dtype=np.int64)


def truth_to_coeffs(t):
    """Truth table(s) (..., 4) -> real relaxation coefficients (..., 4) of (1, a, b, ab):
    bilinear interpolation of the table, exact on {0,1}. Works on numpy arrays and torch tensors."""
    f00, f01, f10, f11 = t[..., 0], t[..., 1], t[..., 2], t[..., 3]
    cols = [f00, f10 - f00, f01 - f00, f11 - f10 - f01 + f00]
    if isinstance(t, np.ndarray):
        return np.stack(cols, -1)
    import torch
    return torch.stack(cols, -1)


COEFFS = truth_to_coeffs(TRUTH)  # (16, 4) ints: op -> (c0, c1, c2, c3), f = c0 + c1 a + c2 b + c3 ab
# algebraic normal form over GF(2): f = k0 ^ k1 a ^ k2 b ^ k3 ab
ANF = np.stack([TRUTH[:, 0], TRUTH[:, 0] ^ TRUTH[:, 2], TRUTH[:, 0] ^ TRUTH[:, 1],
                TRUTH[:, 0] ^ TRUTH[:, 1] ^ TRUTH[:, 2] ^ TRUTH[:, 3]], -1)
READS_A = (TRUTH[:, 0] != TRUTH[:, 2]) | (TRUTH[:, 1] != TRUTH[:, 3])  # op depends on its first input
READS_B = (TRUTH[:, 0] != TRUTH[:, 1]) | (TRUTH[:, 2] != TRUTH[:, 3])  # ... on its second
CONSTANTS = (0, 15)
# Each op as a bitwise expression of {a} and {b} in C, C++ and Verilog syntax ({false}/{true}: the
# constants, spelled per language). Every generator (Verilog, hls4ml's C++) formats these; a
# test evaluates them against TRUTH.
BITWISE = {0: "{false}", 1: "{a} & {b}", 2: "{a} & ~{b}", 3: "{a}", 4: "~{a} & {b}", 5: "{b}", 6: "{a} ^ {b}",
           7: "{a} | {b}", 8: "~({a} | {b})", 9: "~({a} ^ {b})", 10: "~{b}", 11: "{a} | ~{b}", 12: "~{a}",
           13: "~{a} | {b}", 14: "~({a} & {b})", 15: "{true}"}


def bitwise_expressions(false: str, true: str) -> dict[int, str]:
    """BITWISE with the constants spelled `false` and `true`; {a} and {b} left to format."""
    return {op: e.replace("{false}", false).replace("{true}", true) for op, e in BITWISE.items()}
WIRES = (3, 5, 10, 12)  # pass-through and inverters: A, B, NOT B, NOT A


@dataclass
class Layer:
    in_a: np.ndarray
    in_b: np.ndarray
    ops: np.ndarray

    def __post_init__(self):
        self.in_a, self.in_b, self.ops = (np.asarray(v, dtype=np.int64).reshape(-1) for v in (self.in_a, self.in_b, self.ops))
        if not (len(self.in_a) == len(self.in_b) == len(self.ops)):
            raise GatecError(f"logic layer: in_a, in_b and ops differ in length "
                             f"({len(self.in_a)}, {len(self.in_b)}, {len(self.ops)})")
        if len(self.ops) and (self.ops.min() < 0 or self.ops.max() > 15):
            raise GatecError(f"logic layer: op ids must lie in 0..15, found {self.ops.min()}..{self.ops.max()}")

    def __len__(self):
        return len(self.ops)

    def attrs(self) -> tuple[list[int], list[int], list[int]]:
        return self.in_a.tolist(), self.in_b.tolist(), self.ops.tolist()


@dataclass
class Network:
    layers: list[Layer]
    in_dim: int
    group_sum: tuple[int, float] | None = None  # (k, tau)
    stats: dict = field(default_factory=dict)

    def check(self) -> None:
        width = self.in_dim
        for i, layer in enumerate(self.layers):
            for name, idx in (("in_a", layer.in_a), ("in_b", layer.in_b)):
                if len(idx) and (idx.min() < 0 or idx.max() >= width):
                    raise GatecError(f"logic layer {i}: {name} indexes outside its {width} inputs")
            width = len(layer)
        if self.group_sum and width % self.group_sum[0]:
            raise GatecError(f"GroupSum: {width} outputs do not split into k={self.group_sum[0]} groups")

    def gates(self) -> int:
        return sum(len(layer) for layer in self.layers)

    def classes(self) -> tuple[int, float]:
        """(k, tau) of the GroupSum; without one, each output bit is a class of its own (its count
        is the bit), so that every target outputs the bits the model does."""
        return self.group_sum or (len(self.layers[-1]) if self.layers else self.in_dim, 1.0)


def eval_bits(layers: list[Layer], bits: np.ndarray) -> np.ndarray:
    """Evaluate gate lists on bits (N, in) with any integer/bool dtype; returns uint8 (N, out)."""
    x = np.asarray(bits).astype(np.uint8)
    for layer in layers:
        a, b = x[:, layer.in_a], x[:, layer.in_b]
        table = TRUTH[layer.ops].astype(np.uint8)  # (G, 4): gate g's f(a, b) sits at column 2a + b
        x = table[np.arange(len(layer))[None, :], 2 * a + b]
    return x


def group_sum(bits: np.ndarray, k: int, tau: float) -> np.ndarray:
    n = bits.shape[-1] // k
    counts = bits.reshape(*bits.shape[:-1], k, n).sum(-1, dtype=np.int64)
    return (counts.astype(np.float32) / np.float32(tau)).astype(np.float32)


def run(net: Network, x: np.ndarray) -> np.ndarray:
    """The network on input x (N, in_dim) of 0/1 values: float32 scores, or 0/1 floats without GroupSum."""
    out = eval_bits(net.layers, np.asarray(x) != 0)
    return group_sum(out, *net.group_sum) if net.group_sum else out.astype(np.float32)


# ---------------------------------------------------------------- ONNX nodes <-> gate lists

def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    if default is None:
        raise GatecError(f"node '{node.name or node.output[0]}' ({node.op_type}) lacks attribute '{name}'")
    return default


def ints_attr(node: onnx.NodeProto, name: str) -> np.ndarray:
    """An INTS attribute as an int64 array, read from the protobuf's buffer (no Python list)."""
    found = next((a for a in node.attribute if a.name == name), None)
    if found is not None and found.type == onnx.AttributeProto.INTS:
        return np.array(found.ints, np.int64)
    return np.asarray(attr(node, name))  # another type, or missing (attr names it)


def layer_of(node: onnx.NodeProto) -> Layer:
    return Layer(ints_attr(node, "in_a"), ints_attr(node, "in_b"), ints_attr(node, "ops"))


def group_sum_of(node: onnx.NodeProto) -> tuple[int, float]:
    k = int(attr(node, "k"))
    if k <= 0:
        raise GatecError(f"GroupSum node '{node.name}': k must be positive, got {k}")
    return k, float(attr(node, "tau", 1.0))


def logic_layer_node(x: str, y: str, layer: Layer, name: str) -> onnx.NodeProto:
    node = onnx.helper.make_node("LogicLayer", [x], [y], name=name, domain=LOGIC_DOMAIN)
    for key, values in (("in_a", layer.in_a), ("in_b", layer.in_b), ("ops", layer.ops)):
        a = node.attribute.add()  # as make_node's attributes, without its per-element type checks
        a.name, a.type = key, onnx.AttributeProto.INTS
        a.ints[:] = values.tolist()
    return node


def group_sum_node(x: str, y: str, k: int, tau: float, name: str) -> onnx.NodeProto:
    return onnx.helper.make_node("GroupSum", [x], [y], name=name, domain=LOGIC_DOMAIN, k=int(k), tau=float(tau))


def network_of_model(model: onnx.ModelProto) -> Network:
    """The chain of LogicLayer nodes (and a final GroupSum) in a graph, as gate lists. The input
    width is taken from the first layer's largest index (the graph's own shapes may be symbolic)."""
    nodes = [n for n in model.graph.node if n.domain == LOGIC_DOMAIN]
    layers, gs, prev = [], None, None
    for n in nodes:
        if prev is not None and n.input[0] != prev:
            raise GatecError(f"logic node '{n.name}' does not read the previous logic node's output; "
                             f"gate lists need one chain")
        if gs is not None:
            raise GatecError("nodes after GroupSum: gate lists need GroupSum last")
        if n.op_type == "LogicLayer":
            layers.append(layer_of(n))
        elif n.op_type == "GroupSum":
            gs = group_sum_of(n)
        else:
            raise GatecError(f"unknown logic op {n.op_type}")
        prev = n.output[0]
    in_dim = int(max(layers[0].in_a.max(initial=-1), layers[0].in_b.max(initial=-1)) + 1) if layers else 0
    net = Network(layers, in_dim, gs)
    net.check()
    return net


def op_stats(ops: np.ndarray) -> dict:
    """Share of gates that are constants (0, 15) and wires (pass-through/inverters 3, 5, 10, 12)."""
    ops = np.asarray(ops).reshape(-1)
    n = max(len(ops), 1)
    return {"gates": int(len(ops)), "constants": float(np.isin(ops, CONSTANTS).sum() / n),
            "wires": float(np.isin(ops, WIRES).sum() / n),
            "histogram": np.bincount(ops, minlength=16).tolist()}
