"""Gated blocks in the forms people write them; each traces to plain ONNX.

`GLU(..., form=...)` and `SwiGLU(..., form=...)` are written the several ways found in the wild
(`torch.chunk`, `nn.GLU`, two Linears) because each traces to a different ONNX graph.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GLU(nn.Module):
    """Gated linear unit feed-forward block: out = W2 (a * sigmoid(b))."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None, form: str = "chunk"):
        super().__init__()
        self.form = form
        if form in ("chunk", "nn.GLU"):
            self.proj = nn.Linear(dim, 2 * hidden)
        elif form == "two_linear":
            self.value, self.gate = nn.Linear(dim, hidden), nn.Linear(dim, hidden)
        else:
            raise ValueError(f"unknown GLU form {form!r}")
        self.glu = nn.GLU(dim=-1)
        self.out = nn.Linear(hidden, out_dim or dim)

    def forward(self, x):
        if self.form == "chunk":
            a, b = torch.chunk(self.proj(x), 2, dim=-1)
            h = a * torch.sigmoid(b)
        elif self.form == "nn.GLU":
            h = self.glu(self.proj(x))
        else:
            h = self.value(x) * torch.sigmoid(self.gate(x))
        return self.out(h)


class SwiGLU(nn.Module):
    """SwiGLU feed-forward block (as in LLaMA): out = W2 (silu(W1 x) * W3 x)."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None, form: str = "two_linear"):
        super().__init__()
        self.form = form
        if form == "chunk":
            self.proj = nn.Linear(dim, 2 * hidden, bias=False)
        elif form in ("two_linear", "module"):
            self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        else:
            raise ValueError(f"unknown SwiGLU form {form!r}")
        self.act = nn.SiLU()
        self.w2 = nn.Linear(hidden, out_dim or dim, bias=False)

    def forward(self, x):
        if self.form == "chunk":
            a, b = self.proj(x).chunk(2, dim=-1)
            h = F.silu(a) * b
        elif self.form == "module":
            h = self.act(self.w1(x)) * self.w3(x)
        else:
            h = F.silu(self.w1(x)) * self.w3(x)
        return self.w2(h)


class GatedConv1d(nn.Module):
    """Gated convolution: conv(x) * sigmoid(conv'(x)) (as in gated CNNs for sequences)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, padding=kernel // 2)
        self.gate = nn.Conv1d(in_ch, out_ch, kernel, padding=kernel // 2)

    def forward(self, x):
        return self.conv(x) * torch.sigmoid(self.gate(x))


class GatedConv2d(nn.Module):
    """Gated 2-D convolution followed by global average pooling and a classifier."""

    def __init__(self, in_ch: int, out_ch: int, classes: int, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
        self.gate = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
        self.head = nn.Linear(out_ch, classes)

    def forward(self, x):
        h = self.conv(x) * torch.sigmoid(self.gate(x))
        return self.head(h.mean(dim=(2, 3)))


class GatedMultimodalUnit(nn.Module):
    """Gated multimodal unit (Arevalo et al.): z = sigmoid(W[x1;x2]);
    h = z * tanh(W1 x1) + (1 - z) * tanh(W2 x2)."""

    def __init__(self, dim1: int, dim2: int, hidden: int, classes: int | None = None):
        super().__init__()
        self.w1, self.w2 = nn.Linear(dim1, hidden, bias=False), nn.Linear(dim2, hidden, bias=False)
        self.wz = nn.Linear(dim1 + dim2, hidden, bias=False)
        self.head = nn.Linear(hidden, classes) if classes else nn.Identity()

    def forward(self, x1, x2):
        z = torch.sigmoid(self.wz(torch.cat([x1, x2], dim=-1)))
        h = z * torch.tanh(self.w1(x1)) + (1 - z) * torch.tanh(self.w2(x2))
        return self.head(h)


class MixtureOfExperts(nn.Module):
    """Sparsely gated mixture of experts with top-k routing (Shazeer et al.): the router's
    top-k logits are softmaxed; every other expert gets weight zero.

    All experts are computed and weighted densely so that the block traces to a static graph;
    the weights of unrouted experts are exactly zero, so the result equals sparse dispatch.
    """

    def __init__(self, dim: int, hidden: int, experts: int = 4, k: int = 2, out_dim: int | None = None):
        super().__init__()
        self.k = k
        self.router = nn.Linear(dim, experts)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim or dim))
                                     for _ in range(experts))

    def gate_weights(self, x):
        logits = self.router(x)
        top, idx = torch.topk(logits, self.k, dim=-1)
        return torch.zeros_like(logits).scatter(-1, idx, torch.softmax(top, dim=-1))

    def forward(self, x):
        w = self.gate_weights(x)
        outs = torch.stack([e(x) for e in self.experts], dim=-2)  # (..., experts, out)
        return (w.unsqueeze(-1) * outs).sum(dim=-2)


class GatedResidual(nn.Module):
    """Gated residual block: x + sigmoid(g) * f(x), with a learned scalar gate g per channel."""

    def __init__(self, dim: int, hidden: int, gate_init: float = 0.0):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.g = nn.Parameter(torch.full((dim,), gate_init))

    def forward(self, x):
        return x + torch.sigmoid(self.g) * self.f(x)


class RecurrentClassifier(nn.Module):
    """GRU or LSTM over a sequence, then a Linear on the last step: the common small
    sequence classifier (trigger and sensor streams)."""

    def __init__(self, in_dim: int, hidden: int, classes: int, cell: str = "gru", layers: int = 1,
                 bidirectional: bool = False, batch_first: bool = True):
        super().__init__()
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.batch_first = batch_first
        self.rnn = rnn(in_dim, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), classes)

    def forward(self, x):
        y, _ = self.rnn(x)
        last = y[:, -1] if self.batch_first else y[-1]
        return self.head(last)
