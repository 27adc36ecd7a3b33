"""Conv: hls4ml Conv1D/Conv2D, channels last (kernels (K, C, F) / (KH, KW, C, F) from ONNX's
(F, C, K...)); explicit, same or valid padding, strides. Depthwise convolutions (groups ==
channels, one filter each) are hls4ml's DepthwiseConv1D/2D (kernels (K..., C, 1)); other
grouped ones an ordinary convolution with a block-diagonal kernel;
dilated ones get their kernel with the zeros between taps written out (exact). A split or slice
of a convolution's channels is the convolution with those filters only."""
from __future__ import annotations

import numpy as np

from ....ir import attributes
from ..act import Act
from .registry import handles
from .quantizers import precision_of


@handles("Conv")
def convolution(conv, node):
    attrs = attributes(node)
    a = conv.act(node, node.input[0])
    w = conv.const(node.input[1])
    b = conv.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if w is None or (len(node.input) > 2 and node.input[2] and b is None):
        raise conv.fail(node, "the weights and bias must be constants")
    dims = w.ndim - 2
    if dims not in (1, 2) or a.batch != 0 or len(a.shape) != dims + 2:
        raise conv.fail(node, "only 1-D and 2-D convolutions with the batch first are supported")
    groups, n_in_chan = int(attrs.get("group", 1)), a.shape[1]
    depthwise = groups != 1 and groups == n_in_chan and w.shape[1] == 1
    if groups != 1 and not (depthwise and w.shape[0] == n_in_chan):
        # grouped (or depthwise with a multiplier: hls4ml's C++ asserts on one other than 1): one
        # convolution whose kernel is zero between groups, exact (a zero weight costs no multiplier)
        w, real_macs = block_diagonal(w, groups), 1.0 / groups
        depthwise = False
    else:
        real_macs = 1.0
    dilations = [int(d) for d in attrs.get("dilations", [1] * dims)]
    if any(d != 1 for d in dilations):
        w = dilated(w, dilations)
    if depthwise:
        depthwise_convolution(conv, node, attrs, a, w, b, dims)
        return
    n_filt, n_chan = w.shape[:2]
    kernel = w.shape[2:]
    src, outs, width, height = windows(conv, node, attrs, a, kernel, dims)
    layer = {"name": conv.new_name("conv"), "class_name": f"Conv{dims}D", "inputs": [src],
             "data_format": "channels_last", "n_chan": int(n_chan), "n_filt": int(n_filt), **width,
             # Keras' kernel layout: (K, C, F) or (KH, KW, C, F)
             "weight_data": np.ascontiguousarray(np.transpose(w, tuple(range(2, dims + 2)) + (1, 0)),
                                                 dtype=np.float64),
             "bias_data": np.zeros(n_filt) if b is None else b.astype(np.float64).reshape(-1),
             "use_bias": True,
             "_macs": int(int(np.prod(outs)) * int(n_filt) * int(n_chan) * int(np.prod(kernel)) * real_macs),
             **height}
    add_convolution(conv, node, a, layer, outs, int(n_filt), dims)


def block_diagonal(w: np.ndarray, groups: int) -> np.ndarray:
    """A grouped kernel (F, C / groups, K...) as an ordinary one (F, C, K...): filter f reads only
    its group's channels, zeros elsewhere."""
    n_filt, per_group = w.shape[:2]
    out = np.zeros((n_filt, per_group * groups) + w.shape[2:], dtype=w.dtype)
    filters = n_filt // groups
    for g in range(groups):
        out[g * filters:(g + 1) * filters, g * per_group:(g + 1) * per_group] = w[g * filters:(g + 1) * filters]
    return out

def dilated(w: np.ndarray, dilations: list[int]) -> np.ndarray:
    """The kernel of a dilated convolution as an ordinary one: taps d apart, zeros between."""
    shape = w.shape[:2] + tuple((k - 1) * d + 1 for k, d in zip(w.shape[2:], dilations))
    out = np.zeros(shape, dtype=w.dtype)
    out[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in dilations)] = w
    return out


def depthwise_convolution(conv, node, attrs, a: Act, w: np.ndarray, b, dims: int) -> None:
    n_chan, kernel = int(a.shape[1]), w.shape[2:]
    n_filt = int(w.shape[0])
    src, outs, width, height = windows(conv, node, attrs, a, kernel, dims)
    # ONNX's filter c * M + m reads channel c, as Keras' depthwise kernel (K..., C, M) does (M = 1 here)
    kernel_data = np.transpose(w.reshape((n_chan, n_filt // n_chan) + tuple(kernel)),
                               tuple(range(2, dims + 2)) + (0, 1))
    layer = {"name": conv.new_name("dwconv"), "class_name": f"DepthwiseConv{dims}D", "inputs": [src],
             "data_format": "channels_last", "n_chan": n_chan, "n_filt": n_filt, "depth_multiplier": n_filt // n_chan,
             **width, "depthwise_data": np.ascontiguousarray(kernel_data, dtype=np.float64),
             "bias_data": np.zeros(n_filt) if b is None else b.astype(np.float64).reshape(-1),
             "use_bias": True, "_macs": int(np.prod(outs)) * n_filt * int(np.prod(kernel)), **height}
    add_convolution(conv, node, a, layer, outs, n_filt, dims)


def windows(conv, node, attrs, a: Act, kernel, dims: int):
    """What plain and depthwise convolutions share: the input laid out channels-last, the output
    sizes, and hls4ml's window attributes (width, and height for 2-D)."""
    sizes = a.shape[2:]
    strides = list(attrs.get("strides", [1] * dims))
    pads = conv_pads(conv, node, attrs, sizes, kernel, strides)
    outs = [(n + p0 + p1 - k) // s + 1 for n, k, s, p0, p1 in zip(sizes, kernel, strides, pads[:dims], pads[dims:])]
    if min(outs) < 1:
        raise conv.fail(node, "the kernel is larger than the padded input")
    src = conv.laid_out(a, tuple(range(2, dims + 2)) + (1,))  # channels last
    src = conv.shaped(src, tuple(sizes) + (a.shape[1],))
    width = {"filt_width": int(kernel[-1]), "stride_width": int(strides[-1]), "in_width": int(sizes[-1]),
             "out_width": int(outs[-1]), "pad_left": int(pads[dims - 1]), "pad_right": int(pads[-1])}
    height = {} if dims == 1 else {"filt_height": int(kernel[0]), "stride_height": int(strides[0]),
                                   "in_height": int(sizes[0]), "out_height": int(outs[0]), "pad_top": int(pads[0]),
                                   "pad_bottom": int(pads[2])}
    return src, outs, width, height


def add_convolution(conv, node, a: Act, layer: dict, outs, n_filt: int, dims: int) -> None:
    wp = precision_of(conv, node.input[1])
    name = conv.add(layer)
    if wp:
        conv.precisions.setdefault(name, {})["weight"] = wp
    conv.values[node.output[0]] = Act(name, (a.shape[0], n_filt, *outs), 0, tuple(range(2, dims + 2)) + (1,),
                                      (*outs, n_filt))

def conv_pads(conv, node, attrs, sizes, kernel, strides) -> list[int]:
    """ONNX pads (begins, then ends) from `pads` or `auto_pad`."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        return [int(p) for p in attrs.get("pads", [0] * 2 * len(sizes))] if auto == "NOTSET" else [0] * 2 * len(sizes)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise conv.fail(node, f"auto_pad {auto} is not supported")
    total = [max((-(-n // s) - 1) * s + k - n, 0) for n, k, s in zip(sizes, kernel, strides)]
    small = [t // 2 for t in total]
    big = [t - t // 2 for t in total]
    return small + big if auto == "SAME_UPPER" else big + small


def conv_channels(conv, a: Act, axis: int) -> bool:
    """Whether `axis` is the channel axis of a convolution's output (cut by cutting the convolution)."""
    return axis == 1 and a.batch == 0 and a.rnn is None and conv.layer(a.layer)["class_name"] in ("Conv1D", "Conv2D") \
        and a.order[-1] == 1


def take_channels(conv, node, a: Act, start: int, stop: int, out: str) -> None:
    """Channels start..stop of a convolution's output: the convolution with those filters only
    (the whole one is left out of the model when nothing else reads it)."""
    take_filters(conv, a, 1, start, stop, out)


def take_filters(conv, a: Act, axis: int, start: int, stop: int, out: str) -> None:
    """Filters start..stop of a convolution (a per-position Dense's features, on `axis`): that
    convolution with those filters only."""
    layer = conv.layer(a.layer)
    n = stop - start
    name = conv.add({**layer, "name": conv.new_name("conv"), "n_filt": n,
                     "weight_data": layer["weight_data"][..., start:stop].copy(),
                     "bias_data": layer["bias_data"][start:stop].copy(),
                     "_macs": layer["_macs"] // layer["n_filt"] * n})
    if layer["name"] in conv.precisions:
        conv.precisions[name] = dict(conv.precisions[layer["name"]])
    shape = list(a.shape)
    shape[axis] = n
    conv.values[out] = Act(name, tuple(shape), a.batch, a.order, (*a.phys[:-1], n))
