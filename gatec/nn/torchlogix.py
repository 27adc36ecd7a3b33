"""torchlogix (0.2.x) models in gatec, without importing torchlogix (its circuit.py needs Python 3.12).

torch.save'd torchlogix models unpickle into stand-ins (`STAND_INS`, one inert module class per
torchlogix class, holding the pickled attributes), and `adopt` swaps those — or real torchlogix
modules, where torchlogix is importable — for gatec layers with the same eval output:
LogicDense -> LogicLayer, LogicConv2d and OrPooling2d -> gate levels over the flattened
(C, H, W) bits, GroupSum -> GroupSum, binarizations -> a thermometer encoder. Each gate's op is
what torchlogix's own eval forward computes for its parametrization (raw: argmax of the 16
weights; light: the sign of each truth-table weight; warp: the sign of the Walsh sum at each of
the four input pairs, summed in torchlogix's order), so the bits are the same. What has no exact
gatec form is refused by name, in one line.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import GatecError
from .logic import GroupSum, LogicLayer, ThermometerEncoder

MAPPED = {
    "layers.dense": ["LogicDense"], "layers.groupsum": ["GroupSum"], "layers.conv": ["LogicConv2d"],
    "layers.pool": ["OrPooling2d"],
    "layers.binarization": ["FixedBinarization", "SoftBinarization", "LearnableBinarization", "DummyBinarization"],
    "parametrization": ["RawLUTParametrization", "WarpLUTParametrization", "LightLUTParametrization"],
    "connections": ["FixedDenseConnections", "LearnableDenseConnections", "FixedConvConnections"],
}
REFUSED = {  # unpickled too, so that the refusal names them rather than the unpickler
    "layers.conv": ["LogicConv3d", "LogicConvTranspose2d", "LogicConvTranspose3d"], "layers.pool": ["OrPooling3d"],
    "connections": ["FixedConvTransposeConnections"], "modules.resblock": ["ResidualLogicBlock"],
}
WHY_REFUSED = {
    "LogicConv3d": "3-D convolutions", "LogicConvTranspose2d": "transposed convolutions",
    "LogicConvTranspose3d": "transposed convolutions", "OrPooling3d": "3-D pooling",
    "ResidualLogicBlock": "residual blocks (an OR of two branches, not one chain of gate layers)",
}


def refuse_unadopted(self, *args, **kwargs):
    raise GatecError(f"torchlogix {type(self).__name__}: gatec has no equivalent of this module")


def stand_in(module: str, name: str) -> type:
    return type(name, (nn.Module,), {"__module__": __name__, "torchlogix_name": f"torchlogix.{module}.{name}",
                                      "forward": refuse_unadopted})


# pickled name -> stand-in class; a dict, not module attributes, so that these classes are not
# taken for gatec's own (gatec.nn's classes are trusted under their bare names too)
STAND_INS = {cls.torchlogix_name: cls for table in (MAPPED, REFUSED)
             for module, names in table.items() for cls in (stand_in(module, n) for n in names)}


def unpickling_names() -> list[tuple[type, str]]:
    """(stand-in, pickled name) pairs for torch.load's safe globals."""
    return [(cls, name) for name, cls in STAND_INS.items()]


def is_torchlogix(m) -> bool:
    return hasattr(type(m), "torchlogix_name") or "torchlogix" in type(m).__module__.split(".")


def adopt(module: nn.Module) -> nn.Module:
    """Swap torchlogix modules anywhere in the tree for gatec's. Siblings are taken in order, so
    that an OrPooling2d learns its input's (C, H, W) from the convolution or pooling before it."""
    new, _ = swapped(module, None)
    if new is not None:
        return new
    shape = None  # (C, H, W) of the flat bits the previous sibling produced, where known
    for name, child in list(module.named_children()):
        new, out_shape = swapped(child, shape)
        if new is None:
            adopt(child)
        elif new is not child:
            setattr(module, name, new)
        shape = out_shape
    return module


def swapped(m: nn.Module, shape) -> tuple[nn.Module | None, tuple | None]:
    """(the gatec module for m, the (C, H, W) its flat output holds), or (None, None) when m is
    not torchlogix's (or a Flatten after a torchlogix convolution, which is already flat)."""
    if isinstance(m, nn.Flatten) and shape is not None:
        return nn.Identity(), None  # gatec's gate levels give flat bits already: a Flatten node would split the chain
    if not is_torchlogix(m):
        return None, None
    name = type(m).__name__
    if name in WHY_REFUSED:
        raise GatecError(f"torchlogix {name}: gatec does not map {WHY_REFUSED[name]}")
    if getattr(m, "export_mode", False):
        raise GatecError(f"torchlogix {name} in export mode: call set_export_mode(False) on the model before "
                         f"torch.save (gatec reads the eval-mode layers)")
    if name == "LogicDense":
        return dense(m), None
    if name == "LogicConv2d":
        levels, out_shape = conv2d(m)
        return GateLevels(levels).train(m.training), out_shape
    if name == "OrPooling2d":
        if shape is None:
            raise GatecError("torchlogix OrPooling2d: its input shape is unknown to gatec (it must follow a "
                             "LogicConv2d or an OrPooling2d in an nn.Sequential)")
        levels, out_shape = or_pooling(shape, m.kernel_size, m.stride, m.padding)
        return GateLevels(levels), out_shape
    if name == "GroupSum":
        if float(getattr(m, "beta", 0.0)) != 0.0:
            raise GatecError(f"torchlogix GroupSum with beta={m.beta}: gatec's GroupSum has no offset")
        return GroupSum(int(m.k), float(m.tau)).train(m.training), None
    if name == "DummyBinarization":
        return nn.Identity(), None
    if name.endswith("Binarization"):
        return binarization(m), None
    raise GatecError(f"torchlogix {name} outside a layer: gatec maps only whole torchlogix layers")


# ---------------------------------------------------------------- gates

def lut_ids(layer, weight: torch.Tensor) -> torch.Tensor:
    """Each gate's op id (gatec's order, which is torchlogix's) as torchlogix's eval forward computes
    it from `weight` (..., 16 or 4) under the layer's parametrization."""
    param = layer.parametrization
    kind = type(param).__name__
    rank = int(getattr(layer, "lut_rank", 2))
    if rank != 2 or int(getattr(param, "lut_rank", 2)) != 2:
        raise GatecError(f"torchlogix {type(layer).__name__} with lut_rank={rank}: gatec's gates read two inputs")
    w = weight.detach()
    want = {"RawLUTParametrization": 16, "WarpLUTParametrization": 4, "LightLUTParametrization": 4}.get(kind)
    if want is None:
        raise GatecError(f"torchlogix {type(layer).__name__}: unknown parametrization {kind}")
    if w.shape[-1] != want:
        raise GatecError(f"torchlogix {type(layer).__name__} ({kind}): weights {tuple(w.shape)}, expected {want} "
                         f"per gate")
    if kind == "RawLUTParametrization":  # one-hot of the argmax
        return w.argmax(-1)
    if kind == "LightLUTParametrization":  # weight k > 0: truth-table entry k (f(0,0), f(0,1), f(1,0), f(1,1))
        t = (w > 0).long()
    else:  # warp: 1 where the Walsh sum w0 + w1 B' + w2 A' + w3 A'B' (A' = 1 - 2a) is negative
        sa = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=w.dtype)  # at (a, b) = 00, 01, 10, 11
        sb = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=w.dtype)
        w4 = w.unsqueeze(-2)
        walsh = w4[..., 0] * 1 + w4[..., 1] * sb + w4[..., 2] * sa + w4[..., 3] * (sa * sb)
        t = (-walsh > 0).long()  # torchlogix's sign and its comparison, as it evaluates them
    return 8 * t[..., 0] + 4 * t[..., 1] + 2 * t[..., 2] + t[..., 3]


def gate_layer(in_dim: int, a, b, ops) -> LogicLayer:
    """A gatec LogicLayer with these inputs and ops (one-hot op weights)."""
    a, b, ops = (torch.as_tensor(np.asarray(v), dtype=torch.long).reshape(-1) for v in (a, b, ops))
    layer = LogicLayer(in_dim, len(ops))
    with torch.no_grad():
        layer.weights.copy_(nn.functional.one_hot(ops, 16).float())
        layer.in_a.copy_(a)
        layer.in_b.copy_(b)
    return layer


class GateLevels(nn.Module):
    """Gate levels over the flattened input bits: a torchlogix convolution or OR pooling as gatec's
    LogicLayers. Input (N, C, H, W) or already flat; output flat (C', H', W') in channel-major order."""

    def __init__(self, levels: list[LogicLayer]):
        super().__init__()
        self.levels = nn.ModuleList(levels)

    def forward(self, x):
        x = x.flatten(1) if x.ndim > 2 else x
        if x.shape[-1] != self.levels[0].in_dim:  # as torchlogix's indexing fails: no other channel count or size
            raise ValueError(f"expected {self.levels[0].in_dim} input bits per sample, got {x.shape[-1]}")
        for level in self.levels:
            x = level(x)
        return x


def dense(m) -> LogicLayer:
    ids = lut_ids(m, m.weight)
    conn = m.connections
    kind = type(conn).__name__
    if kind == "FixedDenseConnections":
        idx = conn.indices
    elif kind == "LearnableDenseConnections":  # eval: the argmax candidate per input slot
        chosen = conn.weights.detach().argmax(0)
        idx = conn.indices[chosen, torch.arange(chosen.shape[0])[:, None], torch.arange(chosen.shape[1])[None]]
    else:
        raise GatecError(f"torchlogix LogicDense with {kind}: gatec maps fixed and learnable dense connections")
    if tuple(idx.shape) != (2, len(ids)):
        raise GatecError(f"torchlogix LogicDense: connections {tuple(idx.shape)}, expected (2, {len(ids)})")
    return gate_layer(int(m.in_dim), idx[0], idx[1], ids).train(m.training)


def hold_at_zero(ops: np.ndarray, which: str) -> np.ndarray:
    """The op with input `which` ('a' or 'b') fixed at 0, as an op over (b, b) or (a, a)."""
    t = [(ops >> (3 - i)) & 1 for i in range(4)]  # f(0,0), f(0,1), f(1,0), f(1,1)
    t = [t[0], t[1], t[0], t[1]] if which == "a" else [t[0], t[0], t[2], t[2]]
    return 8 * t[0] + 4 * t[1] + 2 * t[2] + t[3]


def conv2d(m) -> tuple[list[LogicLayer], tuple]:
    """A LogicConv2d's tree levels as LogicLayers: level l's output (k * P + p) * S_l + s is node s of
    kernel k's tree at position p; padding reads constant zeros, folded into the gates that read it."""
    conn = m.connections
    if type(conn).__name__ != "FixedConvConnections":
        raise GatecError(f"torchlogix LogicConv2d with {type(conn).__name__}: gatec maps fixed conv connections")
    depth, K, C, pad = int(m.tree_depth or 0), int(m.num_kernels), int(m.channels), int(m.padding)
    if depth < 1:
        raise GatecError(f"torchlogix LogicConv2d with tree_depth={m.tree_depth}: it has no gates")
    H, W = (int(v) for v in m.in_dim)
    P = int(m.n_kernel_positions)
    levels, width = [], C * H * W
    for level in range(depth):
        ops = lut_ids(m, m.tree_weights[level]).numpy()  # (S_level, K)
        S = ops.shape[0]
        gate_ops = np.broadcast_to(ops.T[:, None, :], (K, P, S)).reshape(-1)
        if level == 0:
            coords = getattr(conn, "_indices_L0").numpy()  # (2, K, P, S, 3): (h, w, c) in the padded input
            h, w, c = coords[..., 0] - pad, coords[..., 1] - pad, coords[..., 2]
            inside = (h >= 0) & (h < H) & (w >= 0) & (w < W)
            flat = np.where(inside, (c * H + h) * W + w, -1).reshape(2, -1)
            a, b = flat
            gate_ops = np.where(a < 0, hold_at_zero(gate_ops, "a"), gate_ops)
            gate_ops = np.where(b < 0, hold_at_zero(gate_ops, "b"), gate_ops)
            a, b = np.where(a < 0, b, a), np.where(b < 0, a, b)
            a, b = np.maximum(a, 0), np.maximum(b, 0)  # both inputs padding: a constant gate, any input
        else:
            idx = getattr(conn, f"_indices_L{level}").numpy()  # (2, S): nodes of the level below
            below = levels[-1].out_dim // (K * P)
            base = (np.arange(K * P) * below)[:, None]
            a, b = (base + idx[0][None]).reshape(-1), (base + idx[1][None]).reshape(-1)
        levels.append(gate_layer(width, a, b, gate_ops))
        width = len(gate_ops)
    if width != K * P:
        raise GatecError(f"torchlogix LogicConv2d: its tree ends in {width // (K * P)} nodes per position, not 1")
    return levels, (K, *(int(v) for v in m.kernel_positions))


def pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def or_pooling(shape, kernel_size, stride, padding) -> tuple[list[LogicLayer], tuple]:
    """OR over each window (max pooling of bits; padding reads nothing), as levels of 2-input ORs
    (an odd one out passes through as op A)."""
    C, H, W = shape
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size), pair(stride if stride is not None else kernel_size), pair(padding)
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    if Ho < 1 or Wo < 1 or ph > kh // 2 or pw > kw // 2:
        raise GatecError(f"torchlogix OrPooling2d: kernel {kh}x{kw}, stride {sh}x{sw}, padding {ph}x{pw} do not "
                         f"fit its input {C}x{H}x{W}")
    y = np.arange(Ho)[:, None] * sh - ph + np.arange(kh)[None]  # (Ho, kh)
    x = np.arange(Wo)[:, None] * sw - pw + np.arange(kw)[None]  # (Wo, kw)
    Y, X = y[:, None, :, None], x[None, :, None, :]  # (Ho, Wo, kh, kw)
    inside = (Y >= 0) & (Y < H) & (X >= 0) & (X < W)
    flat = (np.arange(C)[:, None, None, None, None] * H + Y) * W + X
    window = np.where(inside, flat, -1).reshape(C * Ho * Wo, kh * kw)  # input bits per window, -1: padding
    levels, width_in = [], C * H * W
    while True:
        if window.shape[1] % 2:
            window = np.concatenate([window, np.full((len(window), 1), -1)], 1)
        a, b = window[:, 0::2], window[:, 1::2]
        ops = np.where((a >= 0) & (b >= 0), 7, 3)  # OR, or pass the one valid input through
        a2, b2 = np.where(a < 0, b, a), np.where(b < 0, a, b)
        levels.append(gate_layer(width_in, np.maximum(a2, 0), np.maximum(b2, 0), ops))
        width_in = a.size
        window = np.where((a < 0) & (b < 0), -1, np.arange(a.size).reshape(a.shape))
        if window.shape[1] == 1:
            return levels, (C, Ho, Wo)


# ---------------------------------------------------------------- input encoders

class FeatureThermometer(ThermometerEncoder):
    """torchlogix's binarization of (N, features) inputs: bit j of feature i = x_i > thresholds[i, j],
    feature-major, as its merge of the bit axis into the feature axis lays them out."""

    def forward(self, x):
        if x.ndim != 2:
            raise GatecError(f"torchlogix binarization of a {x.ndim}-D input: gatec maps it only for "
                             f"(N, features) inputs")
        return super().forward(x)


def binarization(m) -> FeatureThermometer:
    name = type(m).__name__
    if name == "LearnableBinarization":  # its eval thresholds, computed as it computes them
        raw = m.raw_diffs.detach()
        scale = m.temperature_softplus + 1e-6
        diffs = raw[..., :1] if raw.shape[-1] == 1 else torch.cat(
            [raw[..., :1], scale * nn.functional.softplus(raw[..., 1:] / scale)], dim=-1)
        thresholds = torch.cumsum(diffs, dim=-1)
    else:
        thresholds = m.thresholds
    if thresholds is None or thresholds.ndim != 2 or int(getattr(m, "feature_dim", -2)) not in (-2, 1):
        shape = None if thresholds is None else tuple(thresholds.shape)
        raise GatecError(f"torchlogix {name} with thresholds {shape}: gatec maps per-feature thresholds "
                         f"(features, bits) with feature_dim=-2")
    encoder = FeatureThermometer(thresholds.shape[0], thresholds.shape[1])
    encoder.thresholds.copy_(thresholds.detach().float())
    return encoder
