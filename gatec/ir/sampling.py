"""Inputs drawn from tensor specs: the emulator's inputs, calibration data when a user gives
none, and the other sizes a dynamic axis is checked at."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

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
        values = rng.uniform(low - margin, high + margin, shape)
    else:
        values = rng.standard_normal(shape)
    if spec.grid is not None:
        step, low, high = spec.grid
        values = np.clip(np.floor(values / step) * step, low, high)
    return values.astype(spec.dtype)


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


def fixed_batch(ir: IR) -> int | None:
    """The batch size of a model whose inputs' batch axis is fixed, else None."""
    sizes = {s.shape[s.batch_axis] if s.batch_axis < len(s.shape) and s.batch_axis not in s.dynamic else None
             for s in ir.inputs}
    return sizes.pop() if len(sizes) == 1 else None


def checked_sets(ir: IR, samples: int, data: list[np.ndarray] | None = None) -> tuple[list, int | None]:
    """(the input sets the emulator checks, the model's fixed batch or None): for a fixed batch,
    drawn as if the batch were dynamic, to be run that many rows at a time (`in_batches`)."""
    size = fixed_batch(ir)
    if size is None:
        return input_sets(ir, samples, data), None
    free = replace(ir, inputs=[replace(s, dynamic=sorted({*s.dynamic, s.batch_axis})) for s in ir.inputs])
    return input_sets(free, samples, data), size


def row_chunks(inputs: list[np.ndarray], ir: IR, size: int):
    """The inputs `size` rows at a time along their batch axes; the last chunk padded with copies
    of its last row."""
    n = inputs[0].shape[ir.inputs[0].batch_axis]
    for start in range(0, n, size):
        rows = np.minimum(np.arange(start, start + size), n - 1)
        yield [np.take(a, rows, axis=s.batch_axis) for a, s in zip(inputs, ir.inputs)]


def in_batches(run: Callable, ir: IR, size: int) -> Callable:
    """`run` fed `size` rows at a time (`row_chunks`); the padding rows' outputs are dropped."""
    def batched(inputs: list[np.ndarray]) -> list[np.ndarray]:
        n = inputs[0].shape[ir.inputs[0].batch_axis]
        parts = [run(chunk) for chunk in row_chunks(inputs, ir, size)]
        return [np.take(np.concatenate([np.asarray(p[i]) for p in parts], axis=o.batch_axis), np.arange(n),
                        axis=o.batch_axis) for i, o in enumerate(ir.outputs)]
    return batched
