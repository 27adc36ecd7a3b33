"""Ops that move or select values: shape-only ops (Transpose, Squeeze, Unsqueeze, Flatten, Reshape
change the tracked shape and memory order, no layer), pass-throughs, Concat on any per-sample axis
(hls4ml Concatenate), and cuts: Split and Slice (a Dense or convolution cut in two, an hls4ml
Cropping1D/2D on any axis, or, for flips and strides, a 0/1 selection), Gather (an RNN's last step,
a crop, constant indices)."""
from __future__ import annotations

import numpy as np
import onnx

from ....ir import attributes
from ..act import Act
from .registry import handles
from .conv import conv_channels, take_channels, take_filters

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
    if axis == 0 and a.batch == 0 and all(s.batch_axis not in s.dynamic and s.shape[s.batch_axis] == 1
                                          for s in conv.ir.inputs):
        axis = 1  # a fixed batch of one, which Keras' converters flatten from axis 0: the same values
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
    """torch.cat on any per-sample axis: hls4ml Concatenate (1-D, 2-D or 3-D in memory), chained for
    more than two parts. The parts are laid out in one memory order (a convolution's channels-last
    one where a part has it, so that the next convolution reads the result as it is); the axes
    before and after the joined one in memory are taken together where there are more than three."""
    parts = [conv.act(node, n) for n in node.input if n]
    rank = len(parts[0].shape)
    axis = attributes(node)["axis"] % rank
    if axis == parts[0].batch:
        raise conv.fail(node, "concatenating on the batch axis is not per sample")
    for p in parts[1:]:
        if len(p.shape) != rank or p.batch != parts[0].batch or \
                any(d != e for x, (d, e) in enumerate(zip(p.shape, parts[0].shape)) if x != axis):
            raise conv.fail(node, f"the parts' shapes differ off the joined axis ({list(parts[0].shape)} and "
                                  f"{list(p.shape)})")
    if len(parts) == 1:
        conv.values[node.output[0]] = parts[0]
        return
    orders = [tuple(p.order) for p in parts]
    order = max(orders, key=lambda o: (orders.count(o), o != tuple(sorted(o)), -orders.index(o)))
    out = conv.laid_out(parts[0], order)
    for p in parts[1:]:
        out = joined(conv, out, conv.laid_out(p, order), axis)
    conv.values[node.output[0]] = out


def joined(conv, a: Act, b: Act, axis: int) -> Act:
    """a and b (one memory order) joined on `axis` by one hls4ml Concatenate."""
    order = a.order
    at = order.index(axis)
    before = int(np.prod([a.shape[x] for x in order[:at]]))
    after = int(np.prod([a.shape[x] for x in order[at + 1:]]))
    dims = [n for n in (before,) if n != 1] + [None] + [n for n in (after,) if n != 1]
    where = dims.index(None)
    phys_a = tuple(a.shape[axis] if d is None else d for d in dims)
    phys_b = tuple(b.shape[axis] if d is None else d for d in dims)
    if len(order) <= 3 and all(a.shape[x] != 1 for x in order):  # the tensor's own axes (hls4ml's view)
        phys_a, phys_b, where = tuple(a.shape[x] for x in order), tuple(b.shape[x] for x in order), at
    srcs = [conv.shaped(a, phys_a), conv.shaped(b, phys_b)]
    name = conv.add({"name": conv.new_name("concat"), "class_name": "Concatenate",
                     "op": f"concatenate{len(phys_a)}d", "axis": where - len(phys_a), "inputs": srcs})
    shape = list(a.shape)
    shape[axis] += b.shape[axis]
    phys = list(phys_a)
    phys[where] += phys_b[where]
    return Act(name, tuple(shape), a.batch, order, tuple(phys))


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
    if axis == a.batch:
        raise conv.fail(node, "splitting the batch axis is not per sample")
    size = a.shape[axis]
    given = conv.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    if len(node.input) > 1 and node.input[1] and given is None:
        raise conv.fail(node, "the split sizes must be constants")
    outs = [o for o in node.output]
    sizes = given.tolist() if given is not None else [-(-size // len(outs))] * len(outs)
    sizes[-1] = size - sum(sizes[:-1])
    start = 0
    for out, n in zip(outs, sizes):
        cut(conv, node, a, axis, start, start + int(n), out)
        start += int(n)


def cut(conv, node, a: Act, axis: int, start: int, stop: int, out: str) -> None:
    """a[..., start:stop, ...] on one per-sample axis: the Dense or convolution that made a with the
    outputs kept only (a vector's features, a convolution's channels, a per-position Dense's
    features), else an hls4ml Cropping layer (moves values: exact)."""
    if axis == len(a.shape) - 1 and len(a.sample_shape) == 1:
        take_last(conv, node, a, start, stop, out)
    elif conv_channels(conv, a, axis):
        take_channels(conv, node, a, start, stop, out)
    elif made_by_filters(conv, a, axis):
        take_filters(conv, a, axis, start, stop, out)
    else:
        crop(conv, node, a, {axis: (start, stop)}, out)


def made_by_filters(conv, a: Act, axis: int) -> bool:
    """Whether `axis` holds the filters of the convolution that made `a` (last in memory)."""
    layer = conv.layer(a.layer)
    return a.rnn is None and layer["class_name"] in ("Conv1D", "Conv2D") and a.order[-1] == axis \
        and layer["n_filt"] == a.shape[axis] and tuple(a.phys)[-1] == a.shape[axis]


def crop(conv, node, a: Act, spans: dict, out: str) -> None:
    """a cut to spans {axis: (start, stop)} (step 1) on its per-sample axes, in its own memory
    order: per axis an hls4ml Cropping1D over (the axis, the axes after it in memory) or a
    Cropping2D over (the axes before it, the axis, the axes after it); two axes next to each other
    in memory, the first outermost, one Cropping2D."""
    spans = dict(spans)
    while spans:
        axes = sorted(spans, key=a.order.index)
        at = a.order.index(axes[0])
        before = int(np.prod([a.shape[x] for x in a.order[:at]]))
        two = len(axes) > 1 and before == 1 and a.order.index(axes[1]) == at + 1
        use = axes[:2] if two else axes[:1]
        after = int(np.prod([a.shape[x] for x in a.order[a.order.index(use[-1]) + 1:]]))
        (b0, e0), (b1, e1) = spans[use[0]], spans[use[-1]]
        n0, n1 = a.shape[use[0]], a.shape[use[-1]]
        if two:
            phys_in, phys = (n0, n1, after), (e0 - b0, e1 - b1, after)
            layer = {"class_name": "Cropping2D", "in_height": n0, "out_height": e0 - b0, "crop_top": b0,
                     "crop_bottom": n0 - e0, "in_width": n1, "out_width": e1 - b1, "crop_left": b1,
                     "crop_right": n1 - e1}
        elif before == 1:
            phys_in, phys = (n0, after), (e0 - b0, after)
            layer = {"class_name": "Cropping1D", "in_width": n0, "out_width": e0 - b0, "crop_left": b0,
                     "crop_right": n0 - e0}
        else:
            phys_in, phys = (before, n0, after), (before, e0 - b0, after)
            layer = {"class_name": "Cropping2D", "in_height": before, "out_height": before, "crop_top": 0,
                     "crop_bottom": 0, "in_width": n0, "out_width": e0 - b0, "crop_left": b0,
                     "crop_right": n0 - e0}
        src = conv.shaped(a, phys_in)
        name = conv.add({"name": conv.new_name("crop"), "inputs": [src], "data_format": "channels_last",
                         "n_chan": after, **{k: int(v) for k, v in layer.items() if k != "class_name"},
                         "class_name": layer["class_name"]})
        shape = list(a.shape)
        shape[use[0]] = e0 - b0
        shape[use[-1]] = e1 - b1
        for x in use:
            spans.pop(x)
        a = Act(name, tuple(shape), a.batch, a.order, tuple(phys))
    conv.values[out] = a


def gather_in_place(conv, node, a: Act, picks: dict, out: str, fill: float = 0.0) -> None:
    """np.take(a, index, axis) for each {axis: index} (1-D constant indices: a flip, a stride, a
    padding's; index -1 gives the constant `fill`), a kept in its own memory order: where one axis
    of several is picked, that axis last in memory (a Transpose where it is not) and a Conv1D of
    width 1 whose kernel selects (0/1 weights, the fill as bias) at every position before it (n x m
    weights, not (n x rest) x (m x rest)); else one Dense with 0/1 weights over the whole sample.
    Both exact."""
    if len(picks) == 1 and len([d for d in a.sample_shape if d != 1]) > 1:
        axis, index = next(iter(picks.items()))
        index = np.asarray(index)
        a = conv.laid_out(a, tuple(x for x in a.order if x != axis) + (axis,))
        n, m = a.shape[axis], len(index)
        positions = int(np.prod(a.sample_shape)) // n
        kernel = np.zeros((1, n, m))
        kernel[0, index[index >= 0], np.flatnonzero(index >= 0)] = 1.0
        src = conv.shaped(a, (positions, n))
        name = conv.add({"name": conv.new_name("select"), "class_name": "Conv1D", "inputs": [src],
                         "data_format": "channels_last", "n_chan": n, "n_filt": m, "filt_width": 1,
                         "stride_width": 1, "in_width": positions, "out_width": positions, "pad_left": 0,
                         "pad_right": 0, "weight_data": kernel, "bias_data": np.where(index < 0, fill, 0.0),
                         "use_bias": True, "_macs": 0})
        shape = list(a.shape)
        shape[axis] = m
        conv.values[out] = Act(name, tuple(shape), a.batch, a.order, (positions, m))
        return
    n_in = int(np.prod(a.sample_shape))
    positions = np.arange(n_in).reshape([a.shape[x] for x in a.order])
    shape = list(a.shape)
    for axis, index in picks.items():
        where = a.order.index(axis)
        filler = np.full_like(np.take(positions, [0], axis=where), -1)  # index -1 reads this slice
        positions = np.take(np.concatenate([positions, filler], axis=where), index, axis=where)
        shape[axis] = len(index)
    positions = positions.reshape(-1)
    weights = np.zeros((n_in, positions.size))
    weights[positions[positions >= 0], np.flatnonzero(positions >= 0)] = 1.0
    src = conv.shaped(a, (n_in,))
    name = conv.add({"name": conv.new_name("select"), "class_name": "Dense", "inputs": [src], "n_in": n_in,
                     "n_out": positions.size, "weight_data": weights,
                     "bias_data": np.where(positions < 0, fill, 0.0), "use_bias": True, "activation": "linear"})
    conv.values[out] = Act(name, tuple(shape), a.batch, a.order, (positions.size,))


@handles("Slice")
def slice_(conv, node):
    """x[..., a:b, ...] on any per-sample axes: a cut (see `cut` and `crop`) for step 1; other steps
    (torch.flip's -1, strides) a constant selection (`gather_in_place`)."""
    given = [conv.const(node.input[i]) if len(node.input) > i and node.input[i] else None for i in range(1, 5)]
    if any(v is None and len(node.input) > i and node.input[i] for i, v in enumerate(given, 1)):
        raise conv.fail(node, "the starts, ends, axes and steps must be constants")
    starts, ends, axes, steps = given
    a = conv.act(node, node.input[0])
    rank = len(a.shape)
    starts, ends = starts.reshape(-1), ends.reshape(-1)
    axes = np.arange(len(starts)) if axes is None else axes.reshape(-1)
    steps = np.ones(len(starts), dtype=np.int64) if steps is None else steps.reshape(-1)
    picks = {}
    for b, e, axis, step in zip(starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist()):
        axis = int(axis) % rank
        if step == 0:
            raise conv.fail(node, "a slice step of 0 is not defined")
        index = np.arange(a.shape[axis])[slice(int(b), int(e), int(step))]
        if index.size == 0:
            raise conv.fail(node, f"the slice of axis {axis} is empty")
        if np.array_equal(index, np.arange(a.shape[axis])):
            continue
        if axis == a.batch:
            raise conv.fail(node, "slicing the batch axis is not per sample")
        picks[axis] = index
    if not picks:
        conv.values[node.output[0]] = a
        return
    if all(np.all(np.diff(i) == 1) for i in picks.values()):
        spans = {axis: (int(i[0]), int(i[-1]) + 1) for axis, i in picks.items()}
        if len(spans) == 1:
            (axis, (start, stop)), = spans.items()
            cut(conv, node, a, axis, start, stop, node.output[0])
        else:
            crop(conv, node, a, spans, node.output[0])
        return
    gather_in_place(conv, node, a, picks, node.output[0])


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
    RNN's h_n[-1], a channel picked out): `gather_in_place`'s selection, then the picked axis takes
    the index's shape (a scalar drops it), in memory where it was."""
    out, k = node.output[0], index.ndim
    gather_in_place(conv, node, a, {axis: index.reshape(-1)}, out)
    g = conv.values[out]
    moved = lambda x: [x] if x < axis else (list(range(axis, axis + k)) if x == axis else [x + k - 1])
    shape = (*g.shape[:axis], *index.shape, *g.shape[axis + 1:])
    conv.values[out] = Act(g.layer, shape, g.batch if g.batch < axis else g.batch + k - 1,
                           tuple(y for x in g.order for y in moved(x)), g.phys)


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
