"""Post-training quantization as a pass: `quantize:8` puts every weight layer's weights and input
activation at 8 bits (QONNX Quant nodes, power-of-two scales, min/max calibration on the
calibration data; gatec.passes.ptq_common). Reports the output error it caused against the
float model, measured with qonnx's executor on the calibration inputs. `gatec quantize` offers
the rest (percentile calibration, per-channel scales, mixed precision)."""
from __future__ import annotations

import numpy as np

from ..ir import IR
from ..ir.reference import onnx_reference
from . import Param, register
from .prune_common import calibration_sets, counts
from .ptq_common import quantize


@register("quantize", "QONNX Quant on every weight layer's weights and input at N bits (default 8)",
          kind="arithmetic", reads_data=True, param=Param("bits", int, 8, 2, 32))
def run(ir: IR, data, bits: int):
    sets = calibration_sets(ir, data)
    q, rows = quantize(ir, bits, bits, sets[0])
    before, after = onnx_reference(ir.model), onnx_reference(q.model)
    err = max(float(np.abs(np.asarray(x, np.float64) - y).max(initial=0.0))
              for inputs in sets for x, y in zip(before(inputs), after(inputs)))
    return q, {"before": counts(ir), "after": {"nodes": len(q.model.graph.node), "layers_quantized": len(rows),
                                               "bits": bits}, "max_abs_err": err}
