"""GRU and LSTM, forward, from a zero state: hls4ml's GRU (ONNX's gate order z, r, h; reset after
the recurrent product, linear_before_reset=1 as PyTorch exports) and LSTM (gates reordered from
ONNX's i, o, f, c to i, f, c, o; its two biases summed), Keras' kernel layout (n_in, gates * H)."""
from __future__ import annotations

import numpy as np

from ....ir import attributes
from ..act import Act
from .registry import handles


@handles("GRU", "LSTM")
def recurrent(conv, node):
    kind = node.op_type
    attrs = attributes(node)
    if attrs.get("direction", "forward") != "forward":
        raise conv.fail(node, "only forward recurrent layers are supported (gatec's conversion does not take "
                              "bidirectional RNNs yet; hls4ml 1.3 has a Bidirectional wrapper)")
    if attrs.get("activations") or attrs.get("clip"):
        raise conv.fail(node, "custom activations or clipping are not supported")
    if kind == "GRU" and attrs.get("linear_before_reset", 0) != 1:
        raise conv.fail(node, "only linear_before_reset=1 (PyTorch's GRU) is supported")
    x = conv.values[node.input[0]]
    if not isinstance(x, Act):
        raise conv.fail(node, "the sequence must be computed per sample")
    layout = attrs.get("layout", 0)
    time = 1 if layout else 0
    if x.batch != (0 if layout else 1) or x.order != tuple(a for a in range(3) if a != x.batch):
        raise conv.fail(node, "the sequence must be laid out batch, time, features in memory")
    W, R = conv.const(node.input[1]), conv.const(node.input[2])
    B = conv.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    for i in range(4, len(node.input)):
        if not node.input[i]:
            continue
        v = conv.const(node.input[i])
        if i == 4 or i == 7 or v is None or np.any(v != 0):  # sequence_lens, peepholes; nonzero initial state
            raise conv.fail(node, f"input {i} ({node.input[i]}) is not supported: hls4ml starts from a zero state")
    H = int(attrs["hidden_size"])
    T, F = x.shape[time], x.shape[2]
    gates = 3 if kind == "GRU" else 4
    B = np.zeros((1, 2 * gates * H)) if B is None else B
    w, r, wb, rb = W[0], R[0], B[0, :gates * H], B[0, gates * H:]
    src = conv.shaped(x, (T, F))
    if kind == "LSTM":
        # hls4ml's LSTM needs one type for its input, state and sums: a cast to the wide
        # (accumulator) type first, so that the state keeps the accumulator's precision
        src = conv.add({"name": conv.new_name("cast"), "class_name": "Activation", "activation": "linear",
                        "inputs": [src]})
        conv.wide.update({src})
    layer = {"name": conv.new_name(kind.lower()), "class_name": kind, "inputs": [src],
             "direction": "forward", "return_state": False, "activation": "tanh",
             "recurrent_activation": "sigmoid", "time_major": False, "n_timesteps": T, "n_in": F, "n_out": H,
             "_macs": T * gates * H * (F + H)}
    if kind == "GRU":  # ONNX and Keras share the gate order z, r, h
        layer.update(weight_data=w.T.copy(), recurrent_weight_data=r.T.copy(), bias_data=wb.copy(),
                     recurrent_bias_data=rb.copy(), apply_reset_gate="after")
    else:  # ONNX i, o, f, c -> Keras i, f, c, o
        order = np.concatenate([np.arange(g * H, (g + 1) * H) for g in (0, 2, 3, 1)])
        layer.update(weight_data=w[order].T.copy(), recurrent_weight_data=r[order].T.copy(),
                     bias_data=(wb + rb)[order].copy())
    name = conv.add(layer)
    conv.wide.add(name)  # the state keeps the accumulator's precision across time steps
    # Y: (T, 1, B, H) for layout 0, (B, T, 1, H) for layout 1; Y_h: (1, B, H) or (B, 1, H)
    y_shape = (T, 1, 1, H) if not layout else (1, T, 1, H)
    y = Act(name, y_shape, 2 if not layout else 0, (0, 1, 3) if not layout else (1, 2, 3), (T, H), "seq", time)
    conv.values[node.output[0]] = y
    if len(node.output) > 1 and node.output[1]:
        h_shape, h_batch = ((1, 1, H), 1) if not layout else ((1, 1, H), 0)
        conv.values[node.output[1]] = Act(name, h_shape, h_batch, tuple(a for a in range(3) if a != h_batch),
                                          (H,), "last")
        if conv.uses.get(node.output[1], 0):
            layer["_last_used"] = True
    if len(node.output) > 2 and node.output[2] and conv.uses.get(node.output[2], 0):
        raise conv.fail(node, "the LSTM's cell state output is not supported")
