"""Inputs drawn from tensor specs: the emulator's inputs, calibration data when a user gives
none, and the other sizes a dynamic axis is checked at."""
from __future__ import annotations

import numpy as np

from ..errors import GatecError
from . import IR, TensorSpec

# values in one drawn tensor at most (8 GiB while numpy draws them in float64): more is a typo in a
# shape, which would otherwise end in numpy's allocation error, or in swapping
MAX_VALUES = 2 ** 30


def example_array(spec: TensorSpec, shape=None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = list(spec.shape if shape is None else shape)
    count = float(np.prod(shape, dtype=np.float64))
    if count > MAX_VALUES:
        raise GatecError(f"input shape {'x'.join(map(str, shape))} is too large: {count:.3g} values in one tensor "
                         f"(gatec draws at most {MAX_VALUES:,})")
    if spec.dtype == "bool" or spec.values == "binary":
        return rng.integers(0, 2, shape).astype(spec.dtype)
    if np.issubdtype(np.dtype(spec.dtype), np.integer):
        return rng.integers(0, 4, shape).astype(spec.dtype)
    if spec.range is not None:
        low, high = spec.range
        margin = 0.1 * (high - low) + 1e-3
        return rng.uniform(low - margin, high + margin, shape).astype(spec.dtype)
    return rng.standard_normal(shape).astype(spec.dtype)


def perturbed(size: int) -> int:
    """Another size for a dynamic axis, used to check that a traced graph generalises."""
    return size // 2 + 1 if size // 2 + 1 != size else size + 1


def variant_shape(spec: TensorSpec, batch: int, variant: int) -> list[int]:
    """Shape `variant` (0: the example shape, 1: each non-batch dynamic axis perturbed), with `batch`."""
    shape = list(spec.shape)
    for axis in spec.dynamic:
        if axis == spec.batch_axis:
            shape[axis] = batch
        elif variant:
            shape[axis] = perturbed(shape[axis])
    return shape


def input_sets(ir: IR, samples: int, data: list[np.ndarray] | None = None, seed: int = 0) -> list[list[np.ndarray]]:
    """Two input sets: the example shape with `samples` in the batch, and the second shape."""
    second_batch = max(1, samples // 2 + 1) | 1  # odd, so never a multiple of 64
    sets = []
    if data is not None:
        sets.append(data)
    else:
        sets.append([example_array(s, variant_shape(s, samples, 0), seed + i) for i, s in enumerate(ir.inputs)])
    sets.append([example_array(s, variant_shape(s, second_batch, 1), seed + 100 + i) for i, s in enumerate(ir.inputs)])
    return sets
