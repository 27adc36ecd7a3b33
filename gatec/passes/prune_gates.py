"""Structured pruning of gated networks, decided on calibration data (--data, else random inputs
from the input specs): units behind sigmoid gates that stay below a threshold on every sample
(default 1e-6; `prune-gates:1e-3` sets another), residual branches whose gate is off
everywhere, and mixture-of-experts experts the router never picks. Reports what it removed,
MACs before and after, and the output error it caused against the unpruned IR (max abs error
on the calibration inputs, in ONNX Runtime).

Graph surgery, by pattern:
- every unit of a sigmoid gate off and the gated product added to a residual: the Add becomes
  an Identity of the residual, and the branch is dead;
- some units off in a GLU (value Gemm * sigmoid(gate Gemm) -> out Gemm): the three weight
  matrices lose those units (fewer MACs);
- some units off behind a constant gate (GatedResidual's per-channel gate): the Gemm feeding
  the product gets zero rows for them (structured zeros; the MACs over nonzero weights fall);
- experts never in the router's top-k: the router Gemm loses their rows and the stack of
  expert outputs loses their entries, so the expert subgraphs are dead.
"""
from __future__ import annotations

import numpy as np

from ..ir import IR
from ..ir.graph import consumers, producers
from . import Param, register
from .prune_common import (calibration_sets, counts, initializer, output_error, remove_dead_nodes, run_ort,
                           set_initializer)


def graph_maps(ir: IR):
    return producers(ir.model.graph), consumers(ir.model.graph)


def gemm_weights(ir: IR, node) -> tuple[str, str | None, int] | None:
    """(weight, bias, axis of the output units in the weight) for a Gemm on initializers, else None."""
    if node is None or node.op_type != "Gemm" or initializer(ir, node.input[1]) is None:
        return None
    attrs = {a.name: a.i for a in node.attribute if a.name in ("transA", "transB")}
    if attrs.get("transA"):
        return None
    bias = node.input[2] if len(node.input) > 2 and initializer(ir, node.input[2]) is not None else None
    return node.input[1], bias, 0 if attrs.get("transB") else 1


def keep_units(ir: IR, gemm, keep: np.ndarray, zero: bool = False) -> None:
    """Keep (or with zero=True, zero the others of) the output units `keep` of a Gemm."""
    w_name, b_name, axis = gemm_weights(ir, gemm)
    w = initializer(ir, w_name)
    if zero:
        w = w.copy()
        (w.__setitem__((~keep, slice(None)) if axis == 0 else (slice(None), ~keep), 0))
    else:
        w = w[keep] if axis == 0 else w[:, keep]
    set_initializer(ir, w_name, w)
    if b_name is not None:
        b = initializer(ir, b_name)
        if b.shape and b.shape[-1] == len(keep):
            set_initializer(ir, b_name, np.where(keep, b, 0).astype(b.dtype) if zero else b[..., keep])


def prune_sigmoid(ir: IR, sig, off: np.ndarray) -> str | None:
    producer, consumers = graph_maps(ir)
    mul = next(c for c in consumers[sig.output[0]] if c.op_type == "Mul")
    signal = next(x for x in mul.input if x != sig.output[0])
    users = consumers.get(mul.output[0], [])
    if off.all() and len(users) == 1 and users[0].op_type == "Add":
        add = users[0]
        residual = next(x for x in add.input if x != mul.output[0])
        add.op_type = "Identity"
        del add.input[:]
        add.input.append(residual)
        return f"residual branch '{mul.name}' (gate '{sig.name}' off)"
    value, gate = producer.get(signal), producer.get(sig.input[0])
    if gemm_weights(ir, value) and gemm_weights(ir, gate) and len(users) == 1 and gemm_weights(ir, users[0]) \
            and users[0].input[0] == mul.output[0] and not off.all():
        out = users[0]
        keep = ~off
        keep_units(ir, value, keep)
        keep_units(ir, gate, keep)
        w_name, _, axis = gemm_weights(ir, out)  # the out Gemm's input units sit on the other axis
        w = initializer(ir, w_name)
        set_initializer(ir, w_name, w[:, keep] if axis == 0 else w[keep])
        return f"{int(off.sum())} of {len(off)} GLU units of '{mul.name}'"
    if initializer(ir, sig.input[0]) is not None and gemm_weights(ir, value):
        keep_units(ir, value, ~off, zero=True)
        return f"{int(off.sum())} of {len(off)} channels of '{mul.name}' zeroed (constant gate '{sig.name}')"
    return None


def ancestors(producer: dict, name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        n = producer.get(todo.pop())
        if n is not None and n.name not in seen:
            seen.add(n.name)
            todo.extend(n.input)
    return seen


def prune_experts(ir: IR, topk, used: np.ndarray) -> str | None:
    producer, consumers = graph_maps(ir)
    router = producer.get(topk.input[0])
    if not gemm_weights(ir, router):
        return None
    w_name, _, axis = gemm_weights(ir, router)
    experts = initializer(ir, w_name).shape[axis]
    keep = np.isin(np.arange(experts), used)
    if keep.all():
        return None
    for concat in ir.model.graph.node:  # the stack of expert outputs that the routing weights multiply
        if concat.op_type != "Concat" or len(concat.input) != experts:
            continue
        muls = [m for m in consumers.get(concat.output[0], []) if m.op_type == "Mul"]
        if any(topk.name in ancestors(producer, x) for m in muls for x in m.input if x != concat.output[0]):
            kept = [x for x, k in zip(concat.input, keep) if k]
            del concat.input[:]
            concat.input.extend(kept)
            keep_units(ir, router, keep)
            return f"experts {np.flatnonzero(~keep).tolist()} of {experts} (router '{router.name}')"
    return None


@register("prune-gates", "structured pruning on calibration data: units behind gates that are off, residual "
          "branches, experts never routed to", kind="arithmetic", reads_data=True,
          param=Param("threshold", float, 1e-6, 0.0, 1.0))
def run(ir: IR, data, threshold: float):
    original, before = ir.copy(), counts(ir)
    sets = calibration_sets(ir, data)
    _, consumers = graph_maps(ir)
    sigmoids = [n for n in ir.model.graph.node if n.op_type == "Sigmoid"
                and any(c.op_type == "Mul" for c in consumers.get(n.output[0], []))]
    topks = [n for n in ir.model.graph.node if n.op_type == "TopK"]
    names = [s.output[0] for s in sigmoids] + [t.output[1] for t in topks]
    n_out = len(ir.model.graph.output)
    values = [[run_set[n_out + i] for run_set in run_ort(ir, sets, names)] for i in range(len(names))] if names else []
    removed = []
    for sig, vals in zip(sigmoids, values):
        peak = np.max([v.reshape(-1, v.shape[-1] if v.ndim else 1).max(0) for v in vals], axis=0)
        if (peak < threshold).any():
            removed.append(prune_sigmoid(ir, sig, peak < threshold))
    for topk, vals in zip(topks, values[len(sigmoids):]):
        removed.append(prune_experts(ir, topk, np.unique(np.concatenate([v.ravel() for v in vals]))))
    removed = [r for r in removed if r]
    remove_dead_nodes(ir)
    return ir, {"before": before, "after": counts(ir), "removed": removed, "threshold": threshold,
                "max_abs_err": output_error(original, ir, sets) if removed else 0.0}
