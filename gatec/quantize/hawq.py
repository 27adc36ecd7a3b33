"""Hessian-aware mixed precision (as in HAWQ-V2/V3): which layers can take fewer bits.

Each weight layer's sensitivity to b-bit weights is Omega(b) = (trace(H) / n) * ||Q_b(W) - W||^2,
with H the Hessian of the loss with respect to the layer's n weights, its trace estimated by
Hutchinson's method (the mean of v . Hv over random +-1 vectors v, Hv by double
back-propagation in PyTorch). The bit widths then minimise the summed sensitivity under a
budget of bit operations (BOPs = MACs x weight bits x activation bits) or of model size
(parameters x weight bits): a multiple-choice knapsack, solved exactly by merging each layer's
choices into a Pareto front of (cost, sensitivity).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from onnx import numpy_helper

from .. import progress
from ..errors import GatecError
from ..ir import IR, constants_to_initializers
from ..passes.ptq_common import WeightLayer, quantize_weight, weight_layers

BIT_CHOICES = (2, 3, 4, 5, 6, 7, 8)
WEIGHT_MODULES = ("Linear", "Conv1d", "Conv2d", "GRU", "LSTM")  # by class name: TorchScript modules keep it


@dataclass
class Sensitivity:
    layer: str  # the ONNX node
    module: str  # the PyTorch module it came from
    params: int
    macs: int
    trace: float  # mean Hessian trace per weight
    omega: dict[int, float]  # bits -> sensitivity


def torch_weights(module: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """The weight matrices of each weight-bearing submodule (biases are quantized finely)."""
    found = {}
    for name, m in module.named_modules():
        if getattr(m, "original_name", type(m).__name__) in WEIGHT_MODULES:
            found[name] = [p for n, p in m.named_parameters(recurse=False) if n.startswith("weight")]
    return found


def fingerprint(values) -> np.ndarray:
    """The sorted values: equal for a weight and its transposed or gate-reordered export."""
    return np.sort(np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in values]))


def match_layers(ir: IR, module: torch.nn.Module) -> list[tuple[WeightLayer, str]]:
    """Pair each ONNX weight layer with the PyTorch module whose weights it holds (the IR's
    constant weights as initializers: gatec.ir.constants_to_initializers)."""
    inits = {i.name: i for i in ir.model.graph.initializer}
    candidates = {name: fingerprint([p.detach().numpy() for p in params])
                  for name, params in torch_weights(module).items()}
    pairs = []
    for layer in weight_layers(ir):
        fp = fingerprint([numpy_helper.to_array(inits[w]) for w in layer.weights])
        hits = [n for n, c in candidates.items() if c.shape == fp.shape and np.allclose(c, fp, atol=1e-6)]
        if not hits:
            raise GatecError(f"layer '{layer.node}' matches no weights of the PyTorch module: mixed precision "
                             "needs the ONNX graph traced from this module")
        pairs.append((layer, hits[0]))
    return pairs


def loss_fn(out: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy on class labels (the model's own predictions when none are given), else
    mean squared error against real-valued targets."""
    if labels is not None and labels.dtype.is_floating_point:
        return torch.nn.functional.mse_loss(out, labels.reshape(out.shape))
    if out.ndim != 2:
        raise GatecError(f"mixed precision needs class scores (batch, classes) or real targets; the model "
                         f"returns shape {tuple(out.shape)}")
    target = out.argmax(1).detach() if labels is None else labels.long().reshape(-1)
    return torch.nn.functional.cross_entropy(out, target)


def hessian_traces(module: torch.nn.Module, inputs: list[np.ndarray], labels: np.ndarray | None,
                   layers: dict[str, list[torch.nn.Parameter]], iterations: int = 64, seed: int = 0) -> dict[str, float]:
    """Mean Hessian trace per weight of each layer (Hutchinson: E[v . Hv], v uniform in {-1, +1})."""
    module.eval()
    x = [torch.as_tensor(a) for a in inputs]
    y = None if labels is None else torch.as_tensor(labels)
    params = [p for ps in layers.values() for p in ps]
    with torch.enable_grad():
        loss = loss_fn(module(*x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    owner = [name for name, ps in layers.items() for _ in ps]
    unreached = [name for name, g in zip(owner, grads) if g is None]
    if unreached:
        raise GatecError(f"the loss does not reach the weights of '{unreached[0]}' through autograd (a TorchScript "
                         "module keeps its own copies of recurrent weights): save the module with torch.save for "
                         "mixed precision")
    gen = torch.Generator().manual_seed(seed)
    sums = {name: 0.0 for name in layers}
    for _ in progress.steps(range(iterations), "Hessian traces (Hutchinson)"):
        vs = [torch.randint(0, 2, p.shape, generator=gen).to(p.dtype) * 2 - 1 for p in params]
        hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
        for name, h, v in zip(owner, hv, vs):
            sums[name] += float((h * v).sum())
    return {name: sums[name] / iterations / sum(p.numel() for p in layers[name]) for name in layers}


def sensitivities(ir: IR, module: torch.nn.Module, inputs: list[np.ndarray], labels: np.ndarray | None = None,
                  choices=BIT_CHOICES, per_channel: bool = False, iterations: int = 64) -> list[Sensitivity]:
    ir = ir.copy()
    constants_to_initializers(ir.model)
    pairs = match_layers(ir, module)
    weights = torch_weights(module)
    traces = hessian_traces(module, inputs, labels, {m: weights[m] for _, m in pairs}, iterations)
    inits = {i.name: i for i in ir.model.graph.initializer}
    out = []
    for layer, name in pairs:
        ws = [numpy_helper.to_array(inits[w]) for w in layer.weights]
        axis = layer.channel_axis if per_channel else None
        omega = {b: traces[name] * float(sum(((quantize_weight(w, b, axis) - w).astype(np.float64) ** 2).sum()
                                             for w in ws)) for b in choices}
        out.append(Sensitivity(layer.node, name, int(sum(w.size for w in ws)), layer.macs, traces[name], omega))
    return out


def bops(s: Sensitivity, weight_bits: int, act_bits: int) -> int:
    return s.macs * weight_bits * act_bits


def allocate(sens: list[Sensitivity], cost, budget: float) -> dict[str, int]:
    """Weight bits per layer minimising the summed sensitivity with sum(cost(s, bits)) <= budget.
    Exact: the Pareto front of (cost, sensitivity) over the layers seen so far, extended one
    layer at a time; dominated partial choices are dropped."""
    front = [(0.0, 0.0, ())]  # (cost, sensitivity, bits so far)
    for s in sens:
        merged = sorted(((c + cost(s, b), o + s.omega[b], bits + (b,)) for c, o, bits in front for b in s.omega),
                        key=lambda t: (t[0], t[1]))
        front = []
        for t in merged:
            if t[0] <= budget and (not front or t[1] < front[-1][1]):
                front.append(t)
        if not front:
            cheapest = sum(min(cost(x, b) for b in x.omega) for x in sens)
            raise GatecError(f"the budget {budget:,.0f} is below the cheapest allocation ({cheapest:,.0f} at the "
                             f"fewest bits for every layer)")
    best = min(front, key=lambda t: t[1])
    return {s.layer: b for s, b in zip(sens, best[2])}
