"""Magnitude pruning: the smallest weights of each MatMul/Gemm weight matrix set to zero, to a
sparsity target (default 0.5; `magnitude-prune:0.8` for 80%). Dense runtimes gain nothing;
hls4ml and other sparse implementations skip the zeros. Reports the error it caused on the
calibration data (--data, else random inputs from the input specs)."""
from __future__ import annotations

import numpy as np

from ..ir import IR
from . import Param, register
from .prune_common import calibration_sets, counts, initializer, output_error, set_initializer


@register("magnitude-prune", "zero the smallest MatMul/Gemm weights to a sparsity target (default 0.5)",
          kind="arithmetic", reads_data=True, param=Param("sparsity", float, 0.5, 0.0, 1.0))
def run(ir: IR, data, sparsity: float):
    original, before = ir.copy(), counts(ir)
    names = {n.input[1] for n in ir.model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1}
    pruned = 0
    for name in sorted(names):
        w = initializer(ir, name)
        if w is None or w.ndim != 2 or not np.issubdtype(w.dtype, np.floating):
            continue
        n_zero = int(round(sparsity * w.size))
        if n_zero == 0:
            continue
        order = np.argsort(np.abs(w), axis=None, kind="stable")[:n_zero]
        w = w.copy().reshape(-1)
        w[order] = 0
        set_initializer(ir, name, w.reshape(initializer(ir, name).shape))
        pruned += 1
    sets = calibration_sets(ir, data)  # the error on the user's data when given
    return ir, {"before": before, "after": counts(ir), "sparsity": sparsity, "matrices": pruned,
                "max_abs_err": output_error(original, ir, sets)}
