"""Padding and resizing of (N, C, L) / (N, C, H, W) tensors (resizing: channels-last ones too) on the channels-last tensor: a constant
zero Pad on the spatial axes (hls4ml's ZeroPadding1D/2D; edge, reflect and other constants, and other axes, as exact
0/1 selections) and a nearest-neighbour Resize by whole
factors (hls4ml's UpSampling1D/2D). Both move values only: exact."""
from __future__ import annotations

import numpy as np

from ....ir import attributes
from ..act import Act
from .registry import handles


def channels_last(conv, node, a: Act, channel: int = 1) -> tuple[str, int, list[int]]:
    """(hls4ml layer holding `a` channels last, its channels, its spatial sizes): the channels are
    ONNX axis `channel` (1: (N, C, L) / (N, C, H, W); the last axis for a channels-last tensor)."""
    spatial = [x for x in range(len(a.shape)) if x not in (a.batch, channel)]
    if a.batch != 0 or len(spatial) not in (1, 2):
        raise conv.fail(node, "only (N, C, L) and (N, C, H, W) tensors (or channels last) are supported")
    src = conv.laid_out(a, tuple(spatial) + (channel,))
    sizes = [int(a.shape[x]) for x in spatial]
    return conv.shaped(src, (*sizes, a.shape[channel])), int(a.shape[channel]), sizes


def spatial_output(conv, out: str, name: str, a: Act, n_chan: int, sizes: list[int], channel: int = 1) -> None:
    spatial = [x for x in range(len(a.shape)) if x not in (a.batch, channel)]
    shape = list(a.shape)
    shape[channel] = n_chan
    for x, n in zip(spatial, sizes):
        shape[x] = n
    conv.values[out] = Act(name, tuple(shape), 0, (*spatial, channel), (*sizes, n_chan))


@handles("Pad")
def pad(conv, node):
    a = conv.act(node, node.input[0])
    mode = attributes(node).get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = conv.const(node.input[1]) if len(node.input) > 1 else None
    value = conv.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(())
    axes = conv.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if mode not in ("constant", "edge", "reflect"):
        raise conv.fail(node, f"{mode} padding is not supported")
    if pads is None or value is None or (len(node.input) > 3 and node.input[3] and axes is None):
        raise conv.fail(node, "the pads, value and axes must be constants")
    if mode != "constant" or np.any(np.asarray(value) != 0):
        picked(conv, node, a, mode, pads, float(np.asarray(value).reshape(-1)[0]) if np.size(value) else 0.0, axes)
        return
    rank = len(a.shape)
    axes = list(range(rank)) if axes is None else [int(x) % rank for x in axes.reshape(-1)]
    pads = [int(p) for p in pads.reshape(-1)]
    begin, end = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        begin[axis], end[axis] = pads[i], pads[len(axes) + i]
    if any(p < 0 for p in begin + end):
        raise conv.fail(node, "negative pads (cropping) are not supported")
    if any(begin[:2] + end[:2]) or len(a.shape) not in (3, 4) or a.batch != 0:
        picked(conv, node, a, mode, np.asarray(begin + end), 0.0, None)  # other axes: a selection
        return
    src, n_chan, sizes = channels_last(conv, node, a)
    outs = [n + b + e for n, b, e in zip(sizes, begin[2:], end[2:])]
    layer = {"name": conv.new_name("zeropad"), "class_name": f"ZeroPadding{len(sizes)}D", "inputs": [src],
             "data_format": "channels_last", "n_chan": n_chan, "in_width": sizes[-1], "out_width": outs[-1],
             "pad_left": begin[-1], "pad_right": end[-1]}
    if len(sizes) == 2:
        layer.update(in_height=sizes[0], out_height=outs[0], pad_top=begin[2], pad_bottom=end[2])
    spatial_output(conv, node.output[0], conv.add(layer), a, n_chan, outs)


def picked(conv, node, a: Act, mode: str, pads, value: float, axes) -> None:
    """Edge, reflect or non-zero constant padding (hls4ml pads with zeros only): each output position
    reads one input position, or the constant: a 0/1 selection per padded axis (structure.py), exact."""
    from .structure import gather_in_place
    rank = len(a.shape)
    axes = list(range(rank)) if axes is None else [int(x) % rank for x in axes.reshape(-1)]
    pads = [int(p) for p in pads.reshape(-1)]
    picks = {}
    for i, axis in enumerate(axes):
        begin, end, n = pads[i], pads[len(axes) + i], a.shape[axis]
        if begin == end == 0:
            continue
        if axis == a.batch or begin < 0 or end < 0:
            raise conv.fail(node, "only padding per-sample axes by whole positions is supported")
        i_out = np.arange(-begin, n + end)
        if mode == "edge":
            picks[axis] = np.clip(i_out, 0, n - 1)
        elif mode == "reflect":
            if n < 2 or max(begin, end) >= n:
                raise conv.fail(node, "reflect padding wider than the axis is not supported")
            picks[axis] = np.abs(i_out) - np.maximum(0, 2 * (np.abs(i_out) - (n - 1)))
        else:
            picks[axis] = np.where((i_out >= 0) & (i_out < n), i_out, -1)
    if not picks:
        conv.values[node.output[0]] = a
        return
    gather_in_place(conv, node, a, picks, node.output[0], value)


def text(attrs, key, default):
    v = attrs.get(key, default)
    return v.decode() if isinstance(v, bytes) else v


@handles("Resize")
def resize(conv, node):
    a = conv.act(node, node.input[0])
    attrs = attributes(node)
    if text(attrs, "mode", "nearest") != "nearest":
        raise conv.fail(node, f"{text(attrs, 'mode', '')} resizing is not supported (hls4ml's UpSampling: nearest)")
    scales = conv.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    sizes = conv.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if sizes is not None and sizes.size:
        scales = np.asarray(sizes, dtype=np.float64) / np.asarray(a.shape, dtype=np.float64)
        scales[a.batch] = 1.0  # the batch axis is whatever the exporter traced with
    if scales is None or not scales.size:
        raise conv.fail(node, "the scales or sizes must be constants")
    scales = [float(s) for s in scales.reshape(-1)]
    factors = [int(round(s)) for s in scales]
    # the channels: axis 1, or the last axis of a channels-last tensor (a QONNX channels-last network's)
    channel = 1 if len(factors) < 2 or factors[1] == 1 or factors[-1] != 1 else len(factors) - 1
    if len(scales) != len(a.shape) or factors[0] != 1 or factors[channel] != 1 or \
            any(f < 1 or f != s for f, s in zip(factors, scales)):
        raise conv.fail(node, f"only upsampling the spatial axes by whole factors is supported, not scales {scales}")
    # hls4ml's output i reads input floor(i / factor): ONNX's asymmetric transform with floor (what
    # PyTorch writes), or round_prefer_floor for factors of 2 (i / 2 rounds down)
    transform = text(attrs, "coordinate_transformation_mode", "half_pixel")
    nearest = text(attrs, "nearest_mode", "round_prefer_floor")
    floors = nearest == "floor" or (nearest == "round_prefer_floor" and max(factors) <= 2)
    if not (transform == "asymmetric" and floors):
        raise conv.fail(node, f"coordinate_transformation_mode {transform} with nearest_mode {nearest} is not "
                              "hls4ml's nearest upsampling")
    src, n_chan, shape = channels_last(conv, node, a, channel)
    outs = [n * f for n, f in zip(shape, (f for x, f in enumerate(factors) if x not in (0, channel)))]
    layer = {"name": conv.new_name("upsample"), "class_name": f"UpSampling{len(shape)}D", "inputs": [src],
             "data_format": "channels_last", "algorithm": "nearest", "n_chan": n_chan,
             "in_height": shape[0] if len(shape) == 2 else 1, "out_height": outs[0] if len(shape) == 2 else 1,
             "in_width": shape[-1], "out_width": outs[-1]}
    spatial_output(conv, node.output[0], conv.add(layer), a, n_chan, outs, channel)
