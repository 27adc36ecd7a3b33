"""Post-training quantization as a pass: `quantize:8` puts every weight layer's weights and input
activation at 8 bits (QONNX Quant nodes, power-of-two scales, min/max calibration on the
calibration data; gatec.ptq). Reports the output error it caused against the float model,
measured with qonnx's executor on the calibration inputs. `gatec quantize` offers the rest
(percentile calibration, per-channel scales, mixed precision)."""
from __future__ import annotations

import numpy as np

from ..errors import GatecError
from ..ir.reference import onnx_reference
from ..ir import IR
from ..ptq import quantize
from . import register
from .prune_common import calibration_sets, counts


@register("quantize", "QONNX Quant on every weight layer's weights and input at N bits (default 8)",
          kind="arithmetic")
def run(ir: IR, data=None, arg=None):
    try:
        bits = int(arg) if arg else 8
    except ValueError:
        raise GatecError(f"quantize:{arg}: the argument is a bit width, like quantize:8") from None
    sets = calibration_sets(ir, data)
    q, rows = quantize(ir, bits, bits, sets[0])
    before, after = onnx_reference(ir.model), onnx_reference(q.model)
    err = max(float(np.abs(np.asarray(x, np.float64) - y).max(initial=0.0))
              for inputs in sets for x, y in zip(before(inputs), after(inputs)))
    return q, {"before": counts(ir), "after": {"nodes": len(q.model.graph.node), "layers_quantized": len(rows),
                                               "bits": bits}, "max_abs_err": err}
