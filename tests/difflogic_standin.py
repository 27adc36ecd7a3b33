"""A stand-in for difflogic's modules (which need CUDA to install): the same class names,
attributes and eval semantics, written independently of gatec, for import tests."""
import torch


def bin_op(a, b, i):
    return [lambda: torch.zeros_like(a), lambda: a * b, lambda: a - a * b, lambda: a,
            lambda: b - a * b, lambda: b, lambda: a + b - 2 * a * b, lambda: a + b - a * b,
            lambda: 1 - (a + b - a * b), lambda: 1 - (a + b - 2 * a * b), lambda: 1 - b,
            lambda: 1 - b + a * b, lambda: 1 - a, lambda: 1 - a + a * b, lambda: 1 - a * b,
            lambda: torch.ones_like(a)][i]()


class LogicLayer(torch.nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.weights = torch.nn.Parameter(torch.randn(out_dim, 16))
        c = torch.randperm(2 * out_dim) % in_dim
        c = torch.randperm(in_dim)[c].reshape(2, out_dim)
        self.indices = (c[0], c[1])

    def forward(self, x):
        a, b = x[..., self.indices[0]], x[..., self.indices[1]]
        w = torch.softmax(self.weights, -1) if self.training else \
            torch.nn.functional.one_hot(self.weights.argmax(-1), 16).to(x.dtype)
        return sum(w[..., i] * bin_op(a, b, i) for i in range(16))


class GroupSum(torch.nn.Module):
    def __init__(self, k, tau=1.0):
        super().__init__()
        self.k, self.tau = k, tau

    def forward(self, x):
        return x.reshape(*x.shape[:-1], self.k, x.shape[-1] // self.k).sum(-1) / self.tau
