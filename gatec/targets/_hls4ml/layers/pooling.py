"""Means and maxima over every spatial axis (ReduceMean/ReduceMax over them, GlobalAveragePool,
GlobalMaxPool): hls4ml's global pooling on the channels-last tensor."""
from __future__ import annotations

import numpy as np

from ....ir import attributes
from ..act import Act
from .registry import handles

KINDS = {"ReduceMean": "Average", "ReduceMax": "Max", "GlobalAveragePool": "Average", "GlobalMaxPool": "Max"}


def global_pool(conv, node, kind: str, axes: list[int], keepdims: bool) -> None:
    """A mean or maximum over every spatial axis of an (N, C, L) or (N, C, H, W) tensor."""
    a = conv.act(node, node.input[0])
    dims = len(a.shape) - 2
    if a.batch != 0 or dims not in (1, 2) or sorted(x % len(a.shape) for x in axes) != list(range(2, dims + 2)):
        raise conv.fail(node, "only a mean or maximum over all spatial axes of (N, C, L) or (N, C, H, W) is supported")
    a = conv.laid_out(a, tuple(range(2, dims + 2)) + (1,))
    n_chan = a.shape[1]
    src = conv.shaped(a, tuple(a.shape[2:]) + (n_chan,))
    layer = {"name": conv.new_name("pool"), "class_name": f"Global{kind}Pooling{dims}D", "inputs": [src],
             "data_format": "channels_last", "n_filt": n_chan, "_macs": 0}
    if dims == 1:
        layer["n_in"] = a.shape[2]
    else:
        layer.update(in_height=a.shape[2], in_width=a.shape[3])
    name = conv.add(layer)
    shape = (a.shape[0], n_chan) + ((1,) * dims if keepdims else ())
    conv.values[node.output[0]] = Act(name, shape, 0, tuple(range(1, len(shape))), (n_chan,))


@handles("ReduceMean", "ReduceMax")
def reduce(conv, node):
    attrs = attributes(node)
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = conv.const(node.input[1])
        if axes is None:
            raise conv.fail(node, "the axes must be constants")
    if axes is None:
        raise conv.fail(node, "reducing over all axes (the batch too) is not supported")
    global_pool(conv, node, KINDS[node.op_type], [int(x) for x in np.asarray(axes).reshape(-1)],
                bool(attrs.get("keepdims", 1)))


@handles("GlobalAveragePool", "GlobalMaxPool")
def global_pooling(conv, node):
    a = conv.values[node.input[0]]
    global_pool(conv, node, KINDS[node.op_type], list(range(2, len(getattr(a, "shape", ())))), True)
