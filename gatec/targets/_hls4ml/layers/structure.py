"""Ops that move or select values: shape-only ops (Transpose, Squeeze, Unsqueeze, Flatten, Reshape
change the tracked shape and memory order, no layer), pass-throughs, Concat, and cuts: Split and
Slice (a Dense or convolution cut in two, or a 0/1 selection), Gather (an RNN's last step, a crop)."""
from __future__ import annotations

import numpy as np
import onnx

from ....ir import attributes
from ..act import Act
from .registry import handles
from .conv import conv_channels, take_channels

FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)


@handles("Shape")
def shape(conv, node):
    v = conv.values[node.input[0]]
    conv.values[node.output[0]] = np.array(v.shape, dtype=np.int64)


@handles("Identity", "Dropout")
def identity(conv, node):
    conv.values[node.output[0]] = conv.values[node.input[0]]


@handles("Cast")
def cast(conv, node):
    if attributes(node)["to"] not in FLOAT_TYPES:
        raise conv.fail(node, "casts of per-sample tensors to non-float types are not supported")
    identity(conv, node)


@handles("Transpose")
def transpose(conv, node):
    a = conv.act(node, node.input[0], use=False)
    perm = list(attributes(node).get("perm", list(range(len(a.shape)))[::-1]))
    where = {old: new for new, old in enumerate(perm)}
    conv.values[node.output[0]] = Act(a.layer, tuple(a.shape[p] for p in perm), where[a.batch],
                                      tuple(where[o] for o in a.order), a.phys, a.rnn, where.get(a.time, -1))


def reshaped(conv, node, a: Act, shape: tuple, batch: int, time: int = -1) -> Act:
    a = conv.laid_out(a, tuple(sorted(a.order)))  # a reshape reads the tensor in ONNX's order
    order = tuple(x for x in range(len(shape)) if x != batch)
    return Act(a.layer, tuple(shape), batch, order, a.phys, a.rnn if time >= 0 else None, time)


@handles("Squeeze")
def squeeze(conv, node):
    a = conv.act(node, node.input[0], use=False)
    axes = conv.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    axes = [x % len(a.shape) for x in (axes.tolist() if axes is not None else
                                       [i for i, d in enumerate(a.shape) if d == 1 and i != a.batch])]
    if a.batch in axes:
        raise conv.fail(node, "squeezes the batch axis")
    keep = [x for x in range(len(a.shape)) if x not in axes]
    time = keep.index(a.time) if a.time in keep else -1
    conv.values[node.output[0]] = reshaped(conv, node, a, tuple(a.shape[x] for x in keep), keep.index(a.batch),
                                           time)


@handles("Unsqueeze")
def unsqueeze(conv, node):
    a = conv.act(node, node.input[0], use=False)
    rank = len(a.shape) + len(conv.const(node.input[1]).reshape(-1))
    axes = sorted(int(x) % rank for x in conv.const(node.input[1]).reshape(-1))
    shape, src, batch, time = [], iter(range(len(a.shape))), None, -1
    for x in range(rank):
        if x in axes:
            shape.append(1)
        else:
            i = next(src)
            batch = x if i == a.batch else batch
            time = x if i == a.time else time
            shape.append(a.shape[i])
    conv.values[node.output[0]] = reshaped(conv, node, a, tuple(shape), batch, time)


@handles("Flatten")
def flatten(conv, node):
    a = conv.act(node, node.input[0], use=False)
    axis = attributes(node).get("axis", 1) % max(len(a.shape), 1)
    if a.batch != 0 or axis != 1:
        raise conv.fail(node, "only Flatten(axis=1) with the batch first is supported")
    conv.values[node.output[0]] = reshaped(conv, node, a, (a.shape[0], int(np.prod(a.shape[1:]))), 0)


@handles("Reshape")
def reshape(conv, node):
    """A reshape that keeps the batch axis and the axes before it (a time-major sequence's time axis,
    as PyTorch reshapes a bidirectional RNN's (T, B, 2, H) into (T, B, 2H)) and reshapes the rest."""
    a = conv.act(node, node.input[0], use=False)
    target = [int(x) for x in conv.const(node.input[1])]
    b = a.batch
    dims = [a.shape[i] if d == 0 and i < len(a.shape) else d for i, d in enumerate(target)]
    if len(dims) <= b or dims[b] not in (1, -1, a.shape[b]) or dims[:b] != list(a.shape[:b]) or \
            (dims[b] == -1 and -1 in dims[b + 1:]):
        raise conv.fail(node, "only reshapes that keep the batch axis and the axes before it are supported")
    rest = int(np.prod(a.shape[b + 1:]))
    suffix = list(np.empty(rest).reshape([d for d in dims[b + 1:]] or [1]).shape) if dims[b + 1:] else []
    conv.values[node.output[0]] = reshaped(conv, node, a, (*a.shape[:b], a.shape[b], *suffix), b,
                                           a.time if a.time < b else -1)


@handles("Concat")
def concat(conv, node):
    parts = [conv.act(node, n) for n in node.input]
    axis = attributes(node)["axis"] % len(parts[0].shape)
    if len(parts) != 2 or axis != len(parts[0].shape) - 1 or axis == parts[0].batch or \
            len(parts[0].sample_shape) != 1:
        raise conv.fail(node, "only concatenating two vectors per sample on their last axis is supported")
    srcs = [conv.flat(node, p)[0] for p in parts]
    name = conv.add({"name": conv.new_name("concat"), "class_name": "Concatenate", "op": "concatenate1d",
                     "axis": -1, "inputs": srcs})
    shape = list(parts[0].shape)
    shape[axis] += parts[1].shape[axis]
    conv.values[node.output[0]] = Act(name, tuple(shape), parts[0].batch, parts[0].order, (shape[axis],))


def take_last(conv, node, a: Act, start: int, stop: int, out: str) -> None:
    """Features start..stop of a vector per sample: the Dense that made it, cut in two, when
    only this node reads it; else a Dense that selects them (weights 0/1, exact)."""
    if len(a.sample_shape) != 1:
        raise conv.fail(node, "only slicing a vector per sample on its last axis is supported")
    producer = conv.layer(a.layer)
    n = stop - start
    if producer["class_name"] == "Dense" and conv.single_use(node.input[0]) and a.rnn is None:
        name = conv.add({**producer, "name": conv.new_name("dense"), "n_out": n,
                         "weight_data": producer["weight_data"][:, start:stop].copy(),
                         "bias_data": producer["bias_data"][start:stop].copy(), "_macs": producer["n_in"] * n})
        if producer["name"] in conv.precisions:
            conv.precisions[name] = dict(conv.precisions[producer["name"]])
    else:
        src, n_in = conv.flat(node, a)
        select = np.zeros((n_in, n))
        select[np.arange(start, stop), np.arange(n)] = 1.0
        name = conv.add({"name": conv.new_name("select"), "class_name": "Dense", "inputs": [src], "n_in": n_in,
                         "n_out": n, "weight_data": select, "bias_data": np.zeros(n), "use_bias": True,
                         "activation": "linear"})
    shape = list(a.shape)
    shape[-1] = n
    conv.values[out] = Act(name, tuple(shape), a.batch, a.order, (n,))


@handles("Split")
def split(conv, node):
    a = conv.act(node, node.input[0])
    axis = attributes(node).get("axis", 0) % len(a.shape)
    if axis != len(a.shape) - 1 and not conv_channels(conv, a, axis):
        raise conv.fail(node, "only splitting the last axis (or a convolution's channels) is supported")
    size = a.shape[axis]
    given = conv.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    outs = [o for o in node.output]
    sizes = given.tolist() if given is not None else [-(-size // len(outs))] * len(outs)
    sizes[-1] = size - sum(sizes[:-1])
    take = take_channels if axis != len(a.shape) - 1 else take_last
    start = 0
    for out, n in zip(outs, sizes):
        take(conv, node, a, start, start + int(n), out)
        start += int(n)


@handles("Slice")
def slice_(conv, node):
    starts, ends = conv.const(node.input[1]), conv.const(node.input[2])
    axes = conv.const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.arange(len(starts))
    steps = conv.const(node.input[4]) if len(node.input) > 4 and node.input[4] else np.ones(len(starts), int)
    a = conv.act(node, node.input[0])
    axis = int(axes[0]) % len(a.shape) if len(axes) == 1 else -1
    channels = conv_channels(conv, a, axis)
    if len(axes) != 1 or (axis != len(a.shape) - 1 and not channels) or int(steps[0]) != 1:
        raise conv.fail(node, "only slicing the last axis (or a convolution's channels) with step 1 is supported")
    start, stop, _ = slice(int(starts[0]), int(ends[0])).indices(a.shape[axis])
    (take_channels if channels else take_last)(conv, node, a, start, stop, node.output[0])


@handles("Gather")
def gather(conv, node):
    a = conv.act(node, node.input[0], use=False)
    index = conv.const(node.input[1])
    axis = attributes(node).get("axis", 0) % len(a.shape)
    if a.rnn is None and index is not None and index.ndim == 0 and len(a.shape) == 3 and a.batch == 0 \
            and axis == 2:
        take_step(conv, node, conv.act(node, node.input[0]), int(index) % a.shape[2])
        return
    if index is not None and axis != a.batch and (a.rnn != "seq" or index.ndim != 0 or axis != a.time):
        select(conv, node, conv.act(node, node.input[0]), np.take(np.arange(a.shape[axis]), index), axis)
        return
    if a.rnn != "seq" or index is None or index.ndim != 0 or axis != a.time:
        raise conv.fail(node, "only gathering constant indices of a per-sample axis is supported")
    step = int(index) % a.shape[axis]
    if step != a.shape[axis] - 1 or conv.layer(a.layer)["class_name"] == "Bidirectional":
        # a bidirectional layer's last step holds the backward state after one input, not its final
        # state: the step is cut from the sequence
        take_time_step(conv, node, conv.act(node, node.input[0]), step)
        return
    conv.layer(a.layer)["_last_used"] = True
    keep = [x for x in range(len(a.shape)) if x != axis]
    shape = tuple(a.shape[x] for x in keep)
    batch = keep.index(a.batch)
    conv.values[node.output[0]] = Act(a.layer, shape, batch, tuple(x for x in range(len(shape)) if x != batch),
                                      (a.phys[-1],), "last")


def select(conv, node, a: Act, index: np.ndarray, axis: int) -> None:
    """np.take(a, index, axis) per sample, any constant indices on a non-batch axis (a bidirectional
    RNN's h_n[-1], a channel picked out): a Dense with 0/1 weights, exact."""
    src, n_in = conv.flat(node, a)
    positions = np.arange(n_in).reshape(a.sample_shape)  # the flat variable is in ONNX order
    sample_axis = axis - (axis > a.batch)
    picked = np.take(positions, index, axis=sample_axis)
    weights = np.zeros((n_in, picked.size))
    weights[picked.reshape(-1), np.arange(picked.size)] = 1.0
    name = conv.add({"name": conv.new_name("select"), "class_name": "Dense", "inputs": [src], "n_in": n_in,
                     "n_out": picked.size, "weight_data": weights, "bias_data": np.zeros(picked.size),
                     "use_bias": True, "activation": "linear"})
    shape = (*a.shape[:axis], *index.shape, *a.shape[axis + 1:])
    batch = a.batch if a.batch < axis else a.batch + index.ndim - 1
    conv.values[node.output[0]] = Act(name, shape, batch, tuple(x for x in range(len(shape)) if x != batch),
                                      (picked.size,))


def take_time_step(conv, node, a: Act, step: int) -> None:
    """One time step of a recurrent layer's output sequence: an hls4ml Cropping1D over (time, features)."""
    a = conv.laid_out(a, tuple(sorted(a.order)))
    if a.order[0] != a.time:
        raise conv.fail(node, "the sequence must be laid out time first in memory")
    steps = a.shape[a.time]
    width = int(np.prod(a.sample_shape)) // steps
    src = conv.shaped(a, (steps, width))
    name = conv.add({"name": conv.new_name("crop"), "class_name": "Cropping1D", "inputs": [src],
                     "data_format": "channels_last", "in_width": steps, "out_width": 1, "n_chan": width,
                     "crop_left": step, "crop_right": steps - 1 - step})
    keep = [x for x in range(len(a.shape)) if x != a.time]
    shape = tuple(a.shape[x] for x in keep)
    batch = keep.index(a.batch)
    conv.values[node.output[0]] = Act(name, shape, batch, tuple(x for x in range(len(shape)) if x != batch),
                                      (1, width))


def take_step(conv, node, a: Act, step: int) -> None:
    """x[:, :, step] of an (N, C, L) tensor: an hls4ml Cropping1D of the channels-last one (exact, no
    arithmetic)."""
    a = conv.laid_out(a, (2, 1))
    n_chan, width = a.shape[1], a.shape[2]
    src = conv.shaped(a, (width, n_chan))
    name = conv.add({"name": conv.new_name("crop"), "class_name": "Cropping1D", "inputs": [src],
                     "data_format": "channels_last", "in_width": width, "out_width": 1, "n_chan": n_chan,
                     "crop_left": step, "crop_right": width - 1 - step})
    conv.values[node.output[0]] = Act(name, (a.shape[0], n_chan), 0, (1,), (1, n_chan))
