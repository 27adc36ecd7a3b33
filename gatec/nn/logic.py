"""Differentiable logic-gate networks (difflogic-style): layers, encoders, and their export hooks.

A gate reads two inputs a, b and computes c0 + c1 a + c2 b + c3 ab. In training the four
coefficients are a softmax over the 16 ops times a fixed (16, 4) matrix (or, with `light=True`,
a sigmoid truth table per gate); in eval each gate is its argmax op, exact on {0,1}. During
ONNX export LogicLayer and GroupSum become single nodes of gatec's domain.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GatecError
from ..ir import LOGIC_DOMAIN
from ..ir.logic import COEFFS, TRUTH, Layer, Network, truth_to_coeffs

COEFFS_T = torch.tensor(COEFFS, dtype=torch.float32)  # (16, 4)
OR = 7


# ---------------------------------------------------------------- export hooks

def gates(x, in_a, in_b, c):
    """Gates over the last axis of x: c0 + c1 a + c2 b + c3 ab, with c (G, 4)."""
    a, b = x[..., in_a], x[..., in_b]
    return c[:, 0] + a * (c[:, 1] + c[:, 3] * b) + c[:, 2] * b


def set_shape(g, value, x, last: int):
    sizes = x.type().sizes() if x.type().sizes() is not None else [None, None]
    value.setType(x.type().with_sizes(list(sizes[:-1]) + [last]))
    return value


class LogicLayerFn(torch.autograd.Function):
    """Discrete gates; exported as one gatec.custom_op::LogicLayer node."""

    @staticmethod
    def forward(ctx, x, in_a: tuple, in_b: tuple, ops: tuple):
        # a fresh table: the tracer fails (unordered_map::at) on a module-level tensor used here
        c = torch.tensor(COEFFS[np.asarray(ops, dtype=np.int64)], dtype=x.dtype)
        return gates(x, torch.tensor(in_a, dtype=torch.long), torch.tensor(in_b, dtype=torch.long), c)

    @staticmethod
    def symbolic(g, x, in_a, in_b, ops):
        y = g.op(f"{LOGIC_DOMAIN}::LogicLayer", x, in_a_i=list(in_a), in_b_i=list(in_b), ops_i=list(ops))
        return set_shape(g, y, x, len(ops))


class GroupSumFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k: int, tau: float):
        return x.reshape(*x.shape[:-1], k, x.shape[-1] // k).sum(-1) / tau

    @staticmethod
    def symbolic(g, x, k, tau):
        return set_shape(g, g.op(f"{LOGIC_DOMAIN}::GroupSum", x, k_i=int(k), tau_f=float(tau)), x, int(k))


def exporting() -> bool:
    return torch.onnx.is_in_onnx_export()


# ---------------------------------------------------------------- layers

def connections(in_dim: int, out_dim: int, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "random":  # difflogic's: every input drawn about equally often
        c = torch.randperm(2 * out_dim) % in_dim
        c = torch.randperm(in_dim)[c].reshape(2, out_dim)
        return c[0], c[1]
    if kind == "unique":  # every input read at least once (when 2*out >= in), and never a == b
        if in_dim < 2:
            raise GatecError("connections='unique' needs at least 2 inputs")
        perm = torch.randperm(in_dim)
        perm = torch.cat([perm, perm[:1]]) if in_dim % 2 else perm
        a, b = perm[0::2], perm[1::2]
        extra = max(out_dim - len(a), 0)
        ea = torch.randint(0, in_dim, (extra,))
        eb = (ea + torch.randint(1, in_dim, (extra,))) % in_dim
        a, b = torch.cat([a, ea])[:out_dim], torch.cat([b, eb])[:out_dim]
        order = torch.randperm(out_dim)
        return a[order], b[order]
    raise GatecError(f"unknown connections '{kind}' (use 'random' or 'unique')")


class BitLayer(nn.Module):
    """A layer computing on bits that exports as gate lists (`gate_lists()`): LogicLayer,
    LogicConv2d, lut.LUTLayer."""


class LogicLayer(BitLayer):
    """`out_dim` two-input gates reading `in_dim` inputs.

    gumbel: Gumbel noise and a straight-through hard op in training ("Mind the Gap"); a number
        scales the noise (True = 1).
    light: each gate learns 4 truth-table logits instead of 16 op weights ("Light DLGN").
    residual_init: start every gate near pass-through A (op 3) with this logit margin.
    """

    def __init__(self, in_dim: int, out_dim: int, connections: str = "random", gumbel: bool | float = False,
                 temperature: float = 1.0, light: bool = False, residual_init: float | None = None):
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise GatecError(f"LogicLayer needs positive sizes, got in_dim={in_dim}, out_dim={out_dim}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.gumbel, self.temperature, self.light = gumbel, temperature, light
        if light:
            w = torch.randn(out_dim, 4)
            if residual_init:
                w = w * 0.1 + residual_init * (torch.tensor(TRUTH[3], dtype=torch.float32) * 2 - 1)
        else:
            w = torch.randn(out_dim, 16)
            if residual_init:
                w = torch.zeros(out_dim, 16)
                w[:, 3] = residual_init
        self.weights = nn.Parameter(w)
        a, b = globals()["connections"](in_dim, out_dim, connections)
        self.register_buffer("in_a", a.long())
        self.register_buffer("in_b", b.long())

    @property
    def indices(self):
        return self.in_a, self.in_b

    @property
    def ops(self) -> torch.Tensor:
        """Each gate's discrete op id (long, out_dim)."""
        if self.light:
            t = (self.weights.detach() > 0).long()
            return 8 * t[:, 0] + 4 * t[:, 1] + 2 * t[:, 2] + t[:, 3]
        return self.weights.detach().argmax(-1)

    def coeffs(self) -> torch.Tensor:
        """(out_dim, 4) coefficients of (1, a, b, ab): soft in training, the argmax op in eval."""
        if not self.training:
            return COEFFS_T[self.ops]
        w = self.weights
        if self.light:
            if self.gumbel:  # logistic noise is the two-class Gumbel difference
                u = torch.rand_like(w).clamp(1e-6, 1 - 1e-6)
                soft = torch.sigmoid((w + float(self.gumbel) * (torch.log(u) - torch.log1p(-u))) / self.temperature)
                t = (soft > 0.5).to(w.dtype) - soft.detach() + soft
            else:
                t = torch.sigmoid(w)
            return truth_to_coeffs(t)
        if self.gumbel:
            noise = -torch.log(-torch.log(torch.rand_like(w).clamp(1e-10, 1)))
            soft = F.softmax((w + float(self.gumbel) * noise) / self.temperature, -1)
            p = F.one_hot(soft.argmax(-1), 16).to(w.dtype) - soft.detach() + soft
        else:
            p = F.softmax(w, -1)
        return p @ COEFFS_T.to(w.dtype)

    def gate_lists(self) -> list[Layer]:
        return [Layer(self.in_a.numpy(), self.in_b.numpy(), self.ops.numpy())]

    def forward(self, x):
        if exporting() and not self.training:
            return LogicLayerFn.apply(x, *self.gate_lists()[0].attrs())
        return gates(x, self.in_a, self.in_b, self.coeffs().to(x.dtype))

    def extra_repr(self):
        return f"{self.in_dim}, {self.out_dim}" + (", light" if self.light else "") + (", gumbel" if self.gumbel else "")


class GroupSum(nn.Module):
    """Class scores: the last axis split into k groups, each summed, divided by tau."""

    def __init__(self, k: int, tau: float = 1.0):
        super().__init__()
        self.k, self.tau = int(k), float(tau)

    def forward(self, x):
        if x.shape[-1] % self.k:
            raise GatecError(f"GroupSum: {x.shape[-1]} inputs do not split into k={self.k} groups")
        if exporting():
            return GroupSumFn.apply(x, self.k, self.tau)
        return x.reshape(*x.shape[:-1], self.k, x.shape[-1] // self.k).sum(-1) / self.tau

    def extra_repr(self):
        return f"k={self.k}, tau={self.tau}"


class LogicConv2d(BitLayer):
    """Convolutional logic layer: per output channel, a binary tree of gates (`depth` levels,
    2**(depth-1) leaves reading random pairs of its receptive field), shared over positions,
    then 2x2 OR pooling. It is stored as gate levels with structured indices over the flattened
    (C*H*W) input, so it exports as plain LogicLayer nodes (a tree level = one node; pooling =
    two levels of OR gates). Input (N, C, H, W) or flattened; output flattened (C', H', W')."""

    def __init__(self, in_shape, channels: int, kernel_size: int = 3, depth: int = 3, stride: int = 1,
                 pool: bool = True, **gate_options):
        super().__init__()
        C, H, W = in_shape
        k = kernel_size
        if depth < 1 or k > H or k > W or C * k * k < 2:
            raise GatecError(f"LogicConv2d: bad configuration (in_shape={tuple(in_shape)}, kernel_size={k}, depth={depth})")
        self.in_shape, self.in_dim = (C, H, W), C * H * W
        Ho, Wo = (H - k) // stride + 1, (W - k) // stride + 1
        P = Ho * Wo
        self.tree = nn.ModuleList()
        widths = [channels * 2 ** (depth - 1 - l) for l in range(depth)]
        self.tree.append(LogicLayer(C * k * k, widths[0], "unique" if C * k * k >= 2 else "random", **gate_options))
        for l in range(1, depth):
            level = LogicLayer(widths[l - 1], widths[l], **gate_options)
            level.in_a.copy_(torch.arange(widths[l]) * 2)  # gate j of a level joins gates 2j, 2j+1 below
            level.in_b.copy_(torch.arange(widths[l]) * 2 + 1)
            self.tree.append(level)
        # flat input index of receptive-field offset r at position p
        c, dy, dx = np.unravel_index(np.arange(C * k * k), (C, k, k))
        py, px = np.unravel_index(np.arange(P), (Ho, Wo))
        field = (c[:, None] * H + py[None] * stride + dy[:, None]) * W + px[None] * stride + dx[:, None]  # (C*k*k, P)
        pos = np.arange(P)[None]
        idx = []  # per level: expanded (in_a, in_b), output layout gate * P + position
        a0, b0 = self.tree[0].in_a.numpy(), self.tree[0].in_b.numpy()
        idx.append((field[a0].reshape(-1), field[b0].reshape(-1)))
        for level in self.tree[1:]:
            idx.append(((level.in_a.numpy()[:, None] * P + pos).reshape(-1), (level.in_b.numpy()[:, None] * P + pos).reshape(-1)))
        self.positions = P
        self.pools = []
        if pool:
            H2, W2 = Ho // 2, Wo // 2
            o, y, x2 = np.unravel_index(np.arange(channels * Ho * W2), (channels, Ho, W2))
            first = (o * P + y * Wo + 2 * x2)
            idx.append((first, first + 1))
            o, y2, x2 = np.unravel_index(np.arange(channels * H2 * W2), (channels, H2, W2))
            second = o * Ho * W2 + 2 * y2 * W2 + x2
            idx.append((second, second + W2))
            self.out_shape = (channels, H2, W2)
        else:
            self.out_shape = (channels, Ho, Wo)
        for i, (a, b) in enumerate(idx):
            self.register_buffer(f"idx{i}_a", torch.tensor(a, dtype=torch.long))
            self.register_buffer(f"idx{i}_b", torch.tensor(b, dtype=torch.long))
        self.n_levels = len(idx)
        self.out_dim = int(np.prod(self.out_shape))

    def level_ops(self) -> list[torch.Tensor]:
        ops = [level.ops.repeat_interleave(self.positions) for level in self.tree]
        ops += [torch.full((len(getattr(self, f"idx{i}_a")),), OR) for i in range(len(self.tree), self.n_levels)]
        return ops

    def gate_lists(self) -> list[Layer]:
        return [Layer(getattr(self, f"idx{i}_a").numpy(), getattr(self, f"idx{i}_b").numpy(), ops.numpy())
                for i, ops in enumerate(self.level_ops())]

    def forward(self, x):
        x = x.flatten(1)
        if exporting() and not self.training:
            for layer in self.gate_lists():
                x = LogicLayerFn.apply(x, *layer.attrs())
            return x
        for i in range(self.n_levels):
            if i < len(self.tree):
                c = self.tree[i].coeffs().repeat_interleave(self.positions, 0)
            else:
                c = COEFFS_T[OR].expand(len(getattr(self, f"idx{i}_a")), 4)
            x = gates(x, getattr(self, f"idx{i}_a"), getattr(self, f"idx{i}_b"), c.to(x.dtype))
        return x


# ---------------------------------------------------------------- input encoders

class ThresholdEncoder(nn.Module):
    """One bit per feature: x > threshold (thresholds fitted as per-feature medians)."""

    def __init__(self, in_features: int, threshold: float = 0.5):
        super().__init__()
        self.register_buffer("thresholds", torch.full((in_features,), float(threshold)))

    def fit(self, x) -> "ThresholdEncoder":
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32).flatten(1)
        self.thresholds.copy_(x.median(0).values)
        return self

    def forward(self, x):
        return (x.flatten(1) > self.thresholds).to(x.dtype)


class ThermometerEncoder(nn.Module):
    """`bits` bits per feature: bit i = x > threshold_i (thermometer code). Thresholds are fitted
    from data: evenly spaced between the min and max ("uniform") or at quantiles ("quantile")."""

    def __init__(self, in_features: int, bits: int = 3, method: str = "uniform"):
        super().__init__()
        if method not in ("uniform", "quantile"):
            raise GatecError(f"ThermometerEncoder: unknown method '{method}' (use 'uniform' or 'quantile')")
        self.method, self.bits = method, bits
        self.register_buffer("thresholds", (torch.arange(1, bits + 1) / (bits + 1)).repeat(in_features, 1))

    def fit(self, x) -> "ThermometerEncoder":
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32).flatten(1)
        q = torch.arange(1, self.bits + 1, dtype=torch.float32) / (self.bits + 1)
        if self.method == "uniform":
            lo, hi = x.min(0).values, x.max(0).values
            t = lo[:, None] + (hi - lo)[:, None] * q
        else:
            t = torch.quantile(x, q, dim=0).T
        self.thresholds.copy_(t)
        return self

    @property
    def out_features(self) -> int:
        return self.thresholds.numel()

    def forward(self, x):
        return (x.flatten(1).unsqueeze(-1) > self.thresholds).to(x.dtype).flatten(1)


class LearnedThermometerEncoder(ThermometerEncoder):
    """A thermometer code whose thresholds are trained with the network (DWN's learnable
    thermometer, torchlogix's learned binarization): the forward pass is always the hard
    comparison x > threshold, so eval() is the discrete encoder the targets compile; in training
    the gradient reaches each threshold through a sigmoid of (x - threshold) / (temperature x the
    feature's fitted threshold spacing) (straight-through). Initialise with fit(), as
    ThermometerEncoder."""

    def __init__(self, in_features: int, bits: int = 3, method: str = "uniform", temperature: float = 0.5):
        super().__init__(in_features, bits, method)
        t = self.thresholds.detach().clone()
        del self.thresholds
        self.thresholds = nn.Parameter(t)
        self.temperature = float(temperature)
        self.register_buffer("spacing", torch.ones(in_features, 1))

    def fit(self, x) -> "LearnedThermometerEncoder":
        with torch.no_grad():
            super().fit(x)
            x = torch.as_tensor(np.asarray(x), dtype=torch.float32).flatten(1)
            span = (x.max(0).values - x.min(0).values) / (self.bits + 1)
            self.spacing.copy_(torch.where(span > 0, span, torch.ones_like(span))[:, None])
        return self

    def forward(self, x):
        d = x.flatten(1).unsqueeze(-1) - self.thresholds
        hard = (d > 0).to(x.dtype)
        if not self.training:
            return hard.flatten(1)
        soft = torch.sigmoid(d / (self.temperature * self.spacing))
        return (hard + soft - soft.detach()).flatten(1)


# ---------------------------------------------------------------- other libraries' layouts

def adopt(module: nn.Module) -> nn.Module:
    """Swap difflogic-layout modules (class `LogicLayer` with `weights` (out, 16) and `indices`
    (a, b); class `GroupSum` with `k`, `tau`) for gatec's, anywhere in the module tree."""
    new = adopted(module)
    if new is not None:
        return new
    for name, child in list(module.named_children()):
        swapped = adopt(child)
        if swapped is not child:
            setattr(module, name, swapped)
    return module


def adopted(m: nn.Module) -> nn.Module | None:
    if type(m).__module__ == __name__:
        return None
    name = type(m).__name__
    if name == "LogicLayer" and hasattr(m, "weights") and hasattr(m, "indices"):
        w = m.weights.detach()
        a, b = (torch.as_tensor(i).long().reshape(-1) for i in m.indices)
        if w.ndim != 2 or w.shape[1] != 16 or len(a) != w.shape[0] or len(b) != w.shape[0]:
            raise GatecError(f"a difflogic LogicLayer with weights {tuple(w.shape)} and indices of "
                             f"{len(a)}/{len(b)}: expected weights (out, 16) and indices of length out")
        in_dim = int(getattr(m, "in_dim", max(int(a.max()), int(b.max())) + 1))
        layer = LogicLayer(in_dim, w.shape[0])
        with torch.no_grad():
            layer.weights.copy_(w)
            layer.in_a.copy_(a)
            layer.in_b.copy_(b)
        return layer.train(m.training)
    if name == "GroupSum" and hasattr(m, "k") and hasattr(m, "tau"):
        return GroupSum(int(m.k), float(m.tau)).train(m.training)
    return None


SHAPE_ONLY = (nn.Flatten, nn.Identity, nn.Dropout, nn.Unflatten)


def reads_bits(module: nn.Module) -> bool:
    """True when the first computing layer is a logic layer: the model's input is bits."""
    for m in module.modules():
        if isinstance(m, BitLayer) or adopted_kind(m):
            return True
        if isinstance(m, SHAPE_ONLY) or (len(m._modules) and not isinstance(m, (GroupSum,))):
            continue  # containers and shape-only modules compute nothing themselves
        return False
    return False


def input_range(module: nn.Module) -> tuple[float, float] | None:
    """The span of the input encoder's thresholds, when the model starts with one: inputs drawn
    across it exercise every bit (standard-normal inputs would leave most bits of an encoder
    fitted on, say, pixel values 0..16 at zero)."""
    for m in module.modules():
        if isinstance(m, (ThresholdEncoder, ThermometerEncoder)):
            t = m.thresholds.detach()  # a LearnedThermometerEncoder's are parameters
            return float(t.min()), float(t.max())
        if isinstance(m, SHAPE_ONLY) or len(m._modules):
            continue
        return None
    return None


def adopted_kind(m) -> bool:
    return type(m).__name__ == "LogicLayer" and hasattr(m, "weights") and hasattr(m, "indices")


def network_of_module(module) -> Network:
    """A discretized gatec model's logic part as gate lists (LogicLayer, LogicConv2d, LUTLayer, GroupSum, in order)."""
    layers, gs, in_dim = [], None, None
    for m in logic_units(module):
        if isinstance(m, BitLayer):
            for layer in m.gate_lists():
                if in_dim is None:
                    in_dim = m.in_dim
                layers.append(layer)
        elif isinstance(m, GroupSum):
            gs = (m.k, float(m.tau))
    net = Network(layers, in_dim or 0, gs)
    net.check()
    return net


def logic_units(module):
    """Modules in order, not descending into a LogicConv2d (its tree levels are its own)."""
    yield module
    if not isinstance(module, LogicConv2d):
        for child in module.children():
            yield from logic_units(child)
