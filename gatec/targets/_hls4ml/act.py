"""A per-sample tensor of the hls4ml conversion: which layer computes it and how it lies in memory."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


RECURRENT = ("GRU", "LSTM", "Bidirectional")  # hls4ml layers that step through time, keeping a state
# hls4ml layers that only move values (padding and upsampling keep their input's type, and add zeros)
MOVES = ("InputLayer", "Reshape", "Transpose", "Cropping1D", "Cropping2D", "Concatenate", "ZeroPadding1D",
         "ZeroPadding2D", "UpSampling1D", "UpSampling2D")


@dataclass
class Act:
    """A per-sample tensor computed by hls4ml layer `layer`."""
    layer: str
    shape: tuple  # the ONNX shape, batch axis included
    batch: int  # the batch axis in `shape`
    order: tuple  # the non-batch axes of `shape` in memory order
    phys: tuple  # the hls4ml variable's shape
    rnn: str | None = None  # "seq": the full output sequence of RNN layer `layer`; "last": its last step
    time: int = -1  # the time axis of an RNN's output sequence

    @property
    def sample_shape(self) -> tuple:
        return tuple(d for a, d in enumerate(self.shape) if a != self.batch)

    @property
    def in_order(self) -> bool:
        return list(self.order) == sorted(self.order)

    def physical(self, const: np.ndarray) -> np.ndarray:
        """A constant broadcast to this tensor's shape, as one sample in memory order (flat)."""
        full = np.broadcast_to(const, np.broadcast_shapes(const.shape, self.shape_with_batch(1)))
        full = np.take(full, 0, axis=self.batch)
        axes = [a - (a > self.batch) for a in self.order]
        return np.ascontiguousarray(np.transpose(full, axes)).reshape(-1)

    def shape_with_batch(self, b: int) -> tuple:
        return tuple(b if a == self.batch else d for a, d in enumerate(self.shape))
