"""LUT-native logic networks: each node reads k inputs (2..6) and holds a learned truth table
of 2**k entries.

Training uses the probabilistic (multilinear) relaxation of WARP-LUTs / torchlogix: entry j of
node g's table is sigmoid(logit[g, j]), and the node outputs the table's expectation when input
i is 1 with probability x_i, i.e. sum_j T_j prod_i (x_i or 1 - x_i). It is exact on {0,1}
inputs and differentiable in both the logits and the inputs. In eval the entries are thresholded
at 0.5 and the node is a table lookup on 0/1 inputs.

Table order: entry j holds f(x_0 .. x_{k-1}) for j = sum_i x_i 2**(k-1-i) (input 0 most
significant), so a two-input table is gatec's op id read as bits: id = 8 f(0,0) + 4 f(0,1) + 2 f(1,0) + f(1,1).

For gatec's IR each LUT layer is decomposed (`decompose`) into layers of two-input gates by
Shannon expansion: the leaves are gates over the node's last two inputs, then one 2:1 multiplexer
per remaining input, each built from gates in two layers (AND / AND-NOT, then OR), with the select
inputs carried along by pass-through gates. Every target, pass and the emulator then work on one
gate netlist unchanged; gatec's -O1 passes remove the pass-throughs and constant leaves, and the
fpga target's yosys `synth -lut 6` packs each node's cone back into a LUT6.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import GatecError
from ..ir.logic import OP_ID, Layer
from .logic import BitLayer, LogicLayerFn, connections as pair_connections, exporting

AND, NOT_A_AND_B, OR, PASS_A = OP_ID["AND"], OP_ID["NOT_A_AND_B"], OP_ID["OR"], OP_ID["A"]


def lut_connections(in_dim: int, out_dim: int, k: int, kind: str) -> torch.Tensor:
    """(out_dim, k) input indices. k == 2 draws exactly as LogicLayer does. "random": every input
    read about equally often (difflogic's draw, k per node); "unique": the k inputs of a node are
    distinct and every input is read at least once (when k * out_dim >= in_dim)."""
    if k == 2:
        return torch.stack(pair_connections(in_dim, out_dim, kind), 1)
    if kind == "random":
        c = torch.randperm(k * out_dim) % in_dim
        return torch.randperm(in_dim)[c].reshape(out_dim, k)
    if kind == "unique":
        if in_dim < k:
            raise GatecError(f"connections='unique' needs at least k={k} inputs, got {in_dim}")
        # random priorities per (node, input); the inputs dealt out in chunks of k to the first nodes
        # rank above all others, so top-k takes them first and fills up with distinct random ones
        priority = torch.rand(out_dim, in_dim)
        dealt = torch.randperm(in_dim)
        node = torch.arange(in_dim) // k
        keep = node < out_dim
        priority[node[keep], dealt[keep]] += 1.0
        idx = priority.topk(k, -1).indices
        return idx[torch.randperm(out_dim)]
    raise GatecError(f"unknown connections '{kind}' (use 'random', 'unique' or 'learned')")


def expected_output(p: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """p (N, G, k) input probabilities, table (G, 2**k) entries in [0, 1] -> (N, G): the expectation
    of the table under independent inputs. One multilinear interpolation step per input (input 0
    halves the table first, as it is the most significant index bit): k vectorized steps."""
    t = table.expand(p.shape[0], *table.shape)
    for i in range(p.shape[-1]):
        t = t.reshape(*t.shape[:2], 2, -1)
        pi = p[..., i:i + 1]
        t = t[:, :, 0] + pi * (t[:, :, 1] - t[:, :, 0])
    return t.squeeze(-1)


class LUTLayer(BitLayer):
    """`out_dim` nodes, each a learned k-input truth table over `in_dim` inputs.

    connections: "random" or "unique" (fixed, lut_connections), or "learned": each of a node's k
        inputs chooses among `candidates` inputs drawn at random (torchlogix's and DWN's learnable
        connections): in training the input is the softmax-weighted mixture of its candidates
        (one-hot with straight_through), in eval the candidate of largest weight, a fixed input.

    init: "random" (logits ~ N(0, 1)) or "residual" (each node starts near pass-through of its first
        input, logit margin 3: deep stacks then train from a working signal path).
    straight_through: the forward pass uses the thresholded tables, the backward pass the sigmoid's
        gradient (straight-through). On 0/1 inputs the forward is then the discrete network, and the
        gradient to the inputs is the relaxation's at a 0/1 point: the finite difference
        T(x, x_i = 1) - T(x, x_i = 0) of DWN. Closes the gap between the relaxation and eval().
    """

    def __init__(self, in_dim: int, out_dim: int, k: int = 6, connections: str = "random", init: str = "random",
                 straight_through: bool = False, candidates: int = 4):
        super().__init__()
        if not 2 <= k <= 6:
            raise GatecError(f"LUTLayer: k must lie in 2..6, got {k}")
        if in_dim < 1 or out_dim < 1:
            raise GatecError(f"LUTLayer needs positive sizes, got in_dim={in_dim}, out_dim={out_dim}")
        self.in_dim, self.out_dim, self.k, self.straight_through = in_dim, out_dim, k, straight_through
        if init == "random":
            logits = torch.randn(out_dim, 2 ** k)
        elif init == "residual":
            first = (torch.arange(2 ** k) >> (k - 1)) & 1  # entry j's value of input 0
            logits = (first.float() * 2 - 1).expand(out_dim, -1) * 3.0 + 0.1 * torch.randn(out_dim, 2 ** k)
        else:
            raise GatecError(f"LUTLayer: unknown init '{init}' (use 'random' or 'residual')")
        self.logits = nn.Parameter(logits)
        if connections == "learned":
            if candidates < 1:
                raise GatecError(f"LUTLayer: candidates must be at least 1, got {candidates}")
            drawn = lut_connections(in_dim, out_dim * candidates, k, "random").long()  # (G * C, k)
            self.register_buffer("candidates", drawn.reshape(out_dim, candidates, k).transpose(1, 2).contiguous())
            self.connection_logits = nn.Parameter(0.01 * torch.randn(out_dim, k, candidates))
            self.register_buffer("inputs", self.chosen_inputs())
        else:
            self.candidates = self.connection_logits = None
            self.register_buffer("inputs", lut_connections(in_dim, out_dim, k, connections).long())
        self.register_buffer("weights_of_bits", 2 ** torch.arange(k - 1, -1, -1))  # index bit of each input

    def chosen_inputs(self) -> torch.Tensor:
        """Learned connections: each input's candidate of largest weight (out_dim x k)."""
        best = self.connection_logits.detach().argmax(-1, keepdim=True)
        return self.candidates.gather(-1, best).squeeze(-1)

    def train(self, mode: bool = True):
        if self.candidates is not None:  # eval() fixes the chosen inputs, as a user's saved model holds them
            self.inputs.copy_(self.chosen_inputs())
        return super().train(mode)

    def input_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> (N, out_dim, k): the value each node input reads in training."""
        if self.candidates is None:
            return x[..., self.inputs]
        w = torch.softmax(self.connection_logits, -1).to(x.dtype)
        if self.straight_through:
            w = torch.nn.functional.one_hot(w.argmax(-1), w.shape[-1]).to(x.dtype) - w.detach() + w
        return (x[..., self.candidates] * w).sum(-1)

    @property
    def tables(self) -> torch.Tensor:
        """The discrete truth tables (long 0/1, out_dim x 2**k)."""
        return (self.logits.detach() > 0).long()

    def fixed_inputs(self) -> torch.Tensor:
        """The input each node reads in eval (out_dim x k)."""
        return self.inputs if self.candidates is None else self.chosen_inputs()

    def gate_lists(self) -> list[Layer]:
        return decompose(self.fixed_inputs().numpy(), self.tables.numpy())

    def forward(self, x):
        if self.training:
            table = torch.sigmoid(self.logits).to(x.dtype)
            if self.straight_through:
                table = (table > 0.5).to(x.dtype) - table.detach() + table
            return expected_output(self.input_probabilities(x), table)
        if exporting():
            for layer in self.gate_lists():
                x = LogicLayerFn.apply(x, *layer.attrs())
            return x
        address = ((x[..., self.fixed_inputs()] != 0).long() * self.weights_of_bits).sum(-1)  # (N, G)
        tables = self.tables.expand(*address.shape[:-1], -1, -1)
        return tables.gather(-1, address.unsqueeze(-1)).squeeze(-1).to(x.dtype)

    def extra_repr(self):
        return f"{self.in_dim}, {self.out_dim}, k={self.k}"


def decompose(inputs: np.ndarray, tables: np.ndarray) -> list[Layer]:
    """A layer of LUTs (inputs (G, k) into the previous layer's outputs, tables (G, 2**k) of 0/1)
    as gatec gate layers, each reading the one before; the last has G outputs in node order.

    Layout: node g owns a block of `width` consecutive outputs in every layer: its current terms,
    then the select inputs still to come (inputs 0 .. s-1, in order). Leaves: term r (r = the
    binary number of inputs 0 .. k-3) is the gate over inputs (k-2, k-1) whose op id is row r of
    the table read as 4 bits. A multiplexer stage on select s-1 (the least significant bit of r)
    joins terms 2p (select 0) and 2p+1 (select 1): AND(s, t1), NOT_A_AND_B(s, t0), then OR."""
    inputs = np.asarray(inputs, dtype=np.int64)
    tables = np.asarray(tables, dtype=np.int64)
    G, k = inputs.shape
    if tables.shape != (G, 2 ** k):
        raise GatecError(f"decompose: tables of shape {tables.shape} for {G} nodes of {k} inputs")
    rows = tables.reshape(G, -1, 4)
    leaf_ops = 8 * rows[..., 0] + 4 * rows[..., 1] + 2 * rows[..., 2] + rows[..., 3]  # (G, 2**(k-2))
    terms, selects = leaf_ops.shape[1], k - 2
    rep = lambda v, n: np.repeat(np.asarray(v)[:, None], n, 1)  # noqa: E731  (a column for n slots)
    a = np.concatenate([rep(inputs[:, k - 2], terms), inputs[:, :selects]], 1)
    b = np.concatenate([rep(inputs[:, k - 1], terms), inputs[:, :selects]], 1)
    ops = np.concatenate([leaf_ops, np.full((G, selects), PASS_A)], 1)
    layers = [Layer(a.reshape(-1), b.reshape(-1), ops.reshape(-1))]
    while selects:
        width = terms + selects
        base = np.arange(G)[:, None] * width
        sel = base[:, 0] + terms + selects - 1  # the last select: the least significant bit of r
        carried = base + terms + np.arange(selects - 1)[None]  # selects still to come, passed through
        pair = base + 2 * np.arange(terms // 2)[None]  # term 2p (select 0); 2p + 1 is select 1
        # AND stage: terms become (s AND t1, NOT s AND t0) per pair, in place
        a = np.concatenate([rep(sel, terms), carried], 1)
        b = np.concatenate([np.stack([pair + 1, pair], -1).reshape(G, terms), carried], 1)
        ops = np.concatenate([np.tile([AND, NOT_A_AND_B], (G, terms // 2)), np.full((G, selects - 1), PASS_A)], 1)
        layers.append(Layer(a.reshape(-1), b.reshape(-1), ops.reshape(-1)))
        selects -= 1
        # OR stage: each pair joined
        width = terms + selects
        base = np.arange(G)[:, None] * width
        pair = base + 2 * np.arange(terms // 2)[None]
        carried = base + terms + np.arange(selects)[None]
        a = np.concatenate([pair, carried], 1)
        b = np.concatenate([pair + 1, carried], 1)
        ops = np.concatenate([np.full((G, terms // 2), OR), np.full((G, selects), PASS_A)], 1)
        layers.append(Layer(a.reshape(-1), b.reshape(-1), ops.reshape(-1)))
        terms //= 2
    return layers
