"""LayerNormalization (ONNX opset 17, nn.LayerNorm as PyTorch exports it) over the trailing axes
of a per-sample tensor: hls4ml's LayerNormalization (Vivado/Vitis nnet_layernorm.h), one
normalization per run of `dim` values in memory (the normalized axes laid out last).

hls4ml computes the mean and the variance v in the accumulator type and reads 1/sqrt(v + eps) from
a table of `table_size` entries over v in [0, 1) at the truncated index (entry i holds
1/sqrt(10**-E + i / table_size): eps must be a power of ten); v >= 1 reads the last entry (off by
tenths: measured 0.23 on a sequence whose variances reach 1.7). So the input is first halved (an
exact ApplyAlpha, 2**-PRESCALE: the normalization is the same, its eps in effect 4x larger), which
takes variances up to 4 into the table, of 2**15 entries of ap_ufixed<24,9> (hls4ml's default,
4096 entries of ap_ufixed<8,5>, is off by tenths), with an ap_fixed<40,16> accumulator. The
truncated index makes 1/sqrt(v + eps) too large by at most a relative step / (2 v'), v' = v / 4 the
variance the table reads; |y| = |x - mean| / sqrt(v + eps) <= sqrt(dim - 1), so the output is off
by at most max|gamma| * sqrt(dim - 1) * 2**-15 * 4 / (2 v): summary.error_bound adds that at
v = V_MIN = 1/16 (a standard deviation of 1/4) for each LayerNormalization (0.0038 for dim 16,
gamma 1). A smaller variance errs more, one of 4 or more is clamped: the verification on the
model's inputs shows either. Measured (tests/corpus.py): 5e-4 (MLP, dim 16), 1.6e-3 (a sequence,
dim 8, variances 0.02-1.7), 1.6e-3 (no affine, then tanh).
"""
from __future__ import annotations

import math

import numpy as np

from ....ir import attributes
from ..act import Act
from .registry import handles

TABLE_BITS = 15
PRESCALE = 1  # the input halved: variances up to 4 (standard deviation 2) in the table
V_MIN = 1 / 16  # the term below holds at variances >= V_MIN (standard deviation 1/4)
ACCUM_BITS = (40, 16)
ACCUM = "ap_fixed<40,16>"


def table_error(dim: int, gamma_max: float) -> float:
    """The bound's term for one LayerNormalization (the table's truncated index at v >= V_MIN, the
    table reading v / 4**PRESCALE)."""
    return float(gamma_max * math.sqrt(max(dim - 1, 1)) * 2.0 ** -TABLE_BITS * 4 ** PRESCALE / (2 * V_MIN))


@handles("LayerNormalization")
def layer_normalization(conv, node):
    from hls4ml.model.types import FixedPrecisionType, NamedType, RoundingMode, SaturationMode
    a = conv.act(node, node.input[0])
    attrs = attributes(node)
    rank = len(a.shape)
    axis = int(attrs.get("axis", -1)) % rank
    axes = tuple(range(axis, rank))
    if a.batch in axes:
        raise conv.fail(node, "a layer normalization over the batch axis is not per sample")
    eps = float(attrs.get("epsilon", 1e-5))
    power = round(-math.log10(eps)) if eps > 0 else 0
    if eps <= 0 or power < 1 or not math.isclose(eps, 10.0 ** -power, rel_tol=1e-4):
        raise conv.fail(node, f"hls4ml's LayerNormalization takes an epsilon of 10**-k (k >= 1) only, not {eps:g}")
    dim = int(np.prod([a.shape[x] for x in axes]))
    scale = conv.const(node.input[1]) if len(node.input) > 1 and node.input[1] else np.ones(dim)
    bias = conv.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(dim)
    if scale is None or bias is None:
        raise conv.fail(node, "the scale and bias must be constants")
    gamma = np.broadcast_to(scale, [a.shape[x] for x in axes]).reshape(-1).astype(np.float64)
    beta = np.broadcast_to(bias, [a.shape[x] for x in axes]).reshape(-1).astype(np.float64)
    a = conv.laid_out(a, tuple(x for x in a.order if x not in axes) + axes)
    n_in = int(np.prod(a.sample_shape))
    src = conv.shaped(a, (n_in // dim, dim))
    # x / 2**PRESCALE: the same normalization (eps aside), its variance in the table's [0, 1) up to 4**PRESCALE
    scaled = conv.add({"name": conv.new_name("prescale"), "class_name": "ApplyAlpha", "inputs": [src],
                       "n_in": n_in, "n_filt": -1, "scale_data": np.full(n_in, 2.0 ** -PRESCALE),
                       "bias_data": np.zeros(n_in)})
    conv.precisions[scaled] = {"result": ACCUM, "scale": "ap_ufixed<2,0>", "bias": "ap_fixed<2,1>"}  # exact
    name = conv.new_name("layernorm")
    rnd, sat = RoundingMode.RND, SaturationMode.SAT
    conv.add({"name": name, "class_name": "LayerNormalization", "inputs": [scaled], "n_in": n_in,
              "seq_len": n_in // dim, "axis": 2, "epsilon_power_of_10": power,
              "gamma_data": gamma.copy(), "beta_data": beta.copy(),
              "table_size": 2 ** TABLE_BITS, "table_range_power2": 0,
              "table_t": NamedType(f"{name}_table_t", FixedPrecisionType(24, 9, signed=False, rounding_mode=rnd,
                                                                           saturation_mode=sat)),
              "accum_t": NamedType(f"{name}_accum_t", FixedPrecisionType(*ACCUM_BITS)),
              "_macs": 3 * n_in, "_table_error": table_error(dim, float(np.abs(gamma).max(initial=0.0)))})
    conv.values[node.output[0]] = Act(name, a.shape, a.batch, a.order, (n_in // dim, dim))
