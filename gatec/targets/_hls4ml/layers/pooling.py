"""Pooling on the channels-last tensor: MaxPool/AveragePool windows (hls4ml's Pooling1D/2D, with
explicit or auto padding and count_include_pad), and means and maxima over every spatial axis
(ReduceMean/ReduceMax over them, GlobalAveragePool, GlobalMaxPool: hls4ml's global pooling)."""
from __future__ import annotations

import numpy as np

from ....ir import attributes
from ..act import Act
from .conv import conv_pads
from .registry import handles

KINDS = {"ReduceMean": "Average", "ReduceMax": "Max", "GlobalAveragePool": "Average", "GlobalMaxPool": "Max"}


def global_pool(conv, node, kind: str, axes: list[int], keepdims: bool) -> None:
    """A mean or maximum over every axis but the batch and one channel axis of a 3-D or 4-D tensor:
    the spatial axes of (N, C, L) / (N, C, H, W), or the sequence of (N, T, F) (a mean over tokens,
    features last)."""
    a = conv.act(node, node.input[0])
    rank = len(a.shape)
    axes = sorted({x % rank for x in axes})
    rest = [x for x in range(rank) if x != a.batch and x not in axes]
    if a.batch != 0 or rank not in (3, 4) or len(rest) != 1:
        raise conv.fail(node, "only a mean or maximum over every per-sample axis but one (the channels) of a 3-D "
                              "or 4-D tensor is supported")
    channel, dims = rest[0], len(axes)
    a = conv.laid_out(a, tuple(axes) + (channel,))
    n_chan = a.shape[channel]
    src = conv.shaped(a, tuple(a.shape[x] for x in axes) + (n_chan,))
    layer = {"name": conv.new_name("pool"), "class_name": f"Global{kind}Pooling{dims}D", "inputs": [src],
             "data_format": "channels_last", "n_filt": n_chan, "_macs": 0}
    if dims == 1:
        layer["n_in"] = a.shape[axes[0]]
    else:
        layer.update(in_height=a.shape[axes[0]], in_width=a.shape[axes[1]])
    name = conv.add(layer)
    if keepdims:
        shape = tuple(1 if x in axes else d for x, d in enumerate(a.shape))
        conv.values[node.output[0]] = Act(name, shape, 0, (*axes, channel), (n_chan,))
    else:
        conv.values[node.output[0]] = Act(name, (a.shape[0], n_chan), 0, (1,), (n_chan,))


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


@handles("MaxPool", "AveragePool")
def pooling(conv, node):
    attrs = attributes(node)
    a = conv.act(node, node.input[0])
    kernel = [int(k) for k in attrs["kernel_shape"]]
    dims = len(kernel)
    if a.batch != 0 or dims not in (1, 2) or len(a.shape) != dims + 2:
        raise conv.fail(node, "only 1-D and 2-D pooling with the batch first is supported")
    if len(node.output) > 1 and node.output[1]:
        raise conv.fail(node, "the indices of a max pooling are not supported")
    if any(d != 1 for d in attrs.get("dilations", [1] * dims)):
        raise conv.fail(node, "dilated pooling is not supported")
    sizes, strides = list(a.shape[2:]), [int(s) for s in attrs.get("strides", [1] * dims)]
    pads = conv_pads(conv, node, attrs, sizes, kernel, strides)
    average = node.op_type == "AveragePool"
    if attrs.get("ceil_mode", 0):
        # the last window may start in the padding's end: for a maximum, more padding (never the
        # maximum) gives the same windows; an average's divisor would count it
        ceil = [-(-(n + p0 + p1 - k) // s) + 1 for n, k, s, p0, p1 in zip(sizes, kernel, strides, pads[:dims],
                                                                           pads[dims:])]
        ceil = [o - 1 if (o - 1) * s >= n + p0 else o for o, n, s, p0 in zip(ceil, sizes, strides, pads[:dims])]
        extra = [max(0, (o - 1) * s + k - (n + p0 + p1)) for o, n, k, s, p0, p1 in
                 zip(ceil, sizes, kernel, strides, pads[:dims], pads[dims:])]
        if any(extra) and average:
            raise conv.fail(node, "ceil_mode average pooling whose last window overhangs is not supported")
        pads = pads[:dims] + [p + e for p, e in zip(pads[dims:], extra)]
    if any(p >= k for p, k in zip(pads, kernel + kernel)):
        raise conv.fail(node, "padding as wide as the window is not supported")
    outs = [(n + p0 + p1 - k) // s + 1 for n, k, s, p0, p1 in zip(sizes, kernel, strides, pads[:dims], pads[dims:])]
    n_chan = a.shape[1]
    src = conv.laid_out(a, tuple(range(2, dims + 2)) + (1,))  # channels last
    src = conv.shaped(src, tuple(sizes) + (n_chan,))
    kind = "Average" if average else "Max"
    layer = {"name": conv.new_name("pool"), "class_name": f"{kind}Pooling{dims}D", "inputs": [src],
             "data_format": "channels_last", "n_filt": int(n_chan),
             # ONNX's count_include_pad=1 divides by the whole window (hls4ml's count_pad), else by the
             # part inside the input; a maximum ignores the padding either way
             "count_pad": bool(average and attrs.get("count_include_pad", 0)),
             "pool_width": kernel[-1], "stride_width": strides[-1], "pad_left": int(pads[dims - 1]),
             "pad_right": int(pads[-1])}
    if dims == 1:
        layer.update(n_in=int(sizes[0]), n_out=int(outs[0]))
    else:
        layer.update(in_height=int(sizes[0]), in_width=int(sizes[1]), out_height=int(outs[0]), out_width=int(outs[1]),
                     pool_height=kernel[0], stride_height=strides[0], pad_top=int(pads[0]), pad_bottom=int(pads[2]))
    name = conv.add(layer)
    conv.values[node.output[0]] = Act(name, (a.shape[0], int(n_chan), *outs), 0, tuple(range(2, dims + 2)) + (1,),
                                      (*outs, int(n_chan)))
