"""The integer grid every quantizer in gatec shares (post-training, quantization-aware, the
lowering for ONNX Runtime): QONNX `Quant` semantics with zero point 0 and ROUND, and the
rules that pick scales.

A b-bit quantizer holds the integers int_range(b, signed, narrow); x maps to
round_half_even(clip(x / scale, min, max)) * scale. Power-of-two scales map exactly onto
`ap_fixed` types.
"""
from __future__ import annotations

import re

import numpy as np


def int_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """(min, max) of the integers a `bits`-wide quantizer holds, as QONNX defines them."""
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1 - int(narrow)


def quant(x: np.ndarray, scale, bits: int, signed: bool, narrow: bool) -> np.ndarray:
    """qonnx's Quant (zero point 0, ROUND): clip x / scale to the integer range, round half to
    even, scale back."""
    lo, hi = int_range(bits, signed, narrow)
    return np.round(np.clip(x / scale, lo, hi)) * scale


def scale_for(max_abs, qmax: int, pow2: bool = True) -> np.ndarray:
    """The scale that maps max_abs onto qmax (1 where max_abs is 0), rounded up to a power of
    two when pow2, so that max_abs is not clipped."""
    max_abs = np.asarray(max_abs, dtype=np.float64)
    ok = np.isfinite(max_abs) & (max_abs > 0)
    scale = np.where(ok, np.where(ok, max_abs, 1.0) / qmax, 1.0)
    if pow2:
        scale = np.where(ok, 2.0 ** np.ceil(np.log2(scale)), 1.0)
    return scale.astype(np.float32)


def weight_scale(w: np.ndarray, bits: int, axis: int | None = None, pow2: bool = True) -> np.ndarray:
    """Signed narrow-range weights, per tensor (axis None) or per output channel along `axis`
    (kept broadcastable). Of the scale that covers max |w| and the ones two and four times finer
    (which clip the largest weights), the one with the least squared error: with power-of-two
    scales this is often worth most of a bit."""
    axes = None if axis is None else tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    keep = axes is not None
    w64 = np.asarray(w, dtype=np.float64)
    full = scale_for(np.abs(w64).max(axis=axes, keepdims=keep), 2 ** (bits - 1) - 1, pow2)
    best, best_err = full, None
    for shrink in (1, 2, 4):
        s = full / shrink
        err = ((quant(w64, s, bits, True, True) - w64) ** 2).sum(axis=axes, keepdims=keep)
        if best_err is None:
            best_err = err
        else:
            better = err < best_err
            best, best_err = np.where(better, s, best).astype(np.float32), np.where(better, err, best_err)
    return best


# an hls4ml precision: ap_fixed<W,I[,modes]>, ap_ufixed<...>, ap_int<W>, ap_uint<W>
PRECISION_RE = re.compile(r"^ap_u?fixed<\s*(\d+)\s*,\s*(-?\d+)\s*(,[A-Z_0-9,\s]+)?>$|^ap_u?int<\s*(\d+)\s*>$")


def width_and_integer(precision: str) -> tuple[int, int]:
    m = PRECISION_RE.match(precision.replace(" ", ""))
    if not m:
        raise ValueError(f"'{precision}' is not an ap_fixed or ap_int type")
    return (int(m.group(1)), int(m.group(2))) if m.group(1) else (int(m.group(4)), int(m.group(4)))


def accumulator(precision: str) -> str:
    """The type gatec gives sums of values of type `precision` (hls4ml's accum_t): twice the width
    and 6 more integer bits (up to 64x the values' range). With the accumulator at the values' own
    type, every product is truncated to the value LSB: a GRU(16->32) at ap_fixed<16,6> was off by
    0.026 instead of 0.008."""
    w, i = width_and_integer(precision)
    return f"ap_fixed<{2 * w},{i + 6}>"


FIXED_POINT_KEY = "gatec.fixed_point"  # ONNX metadata: the types a gatec.qat fixed-point model was trained with


def declared_types(model) -> dict | None:
    """{"precision", "accum", "table", "table_size"} of a gatec.qat fixed-point model (an ONNX
    ModelProto), or None."""
    import json
    return next((json.loads(p.value) for p in model.metadata_props if p.key == FIXED_POINT_KEY), None)


def refuse_fixed_point(model, target: str) -> None:
    """Targets that compute in float refuse a fixed-point model instead of handing out an
    artifact that is not it."""
    from ..errors import GatecError
    declared = declared_types(model)
    if declared:
        raise GatecError(f"this model computes in fixed point ({declared['precision']}, gatec.qat.prepare_fixed); "
                         f"the {target} target would compute in float: compile it with --target fpga (bit-exact), "
                         f"or the float model for {target}")
