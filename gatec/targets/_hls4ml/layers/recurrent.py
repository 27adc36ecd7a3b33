"""GRU and LSTM from a zero state, forward or bidirectional: hls4ml's GRU (ONNX's gate order z, r,
h; reset after the recurrent product, linear_before_reset=1 as PyTorch exports) and LSTM (gates
reordered from ONNX's i, o, f, c to i, f, c, o; its two biases summed), Keras' kernel layout
(n_in, gates * H); a bidirectional layer is hls4ml's Bidirectional, whose output holds per time
step the forward state, then the backward one (ONNX's (T, 2, H) per sample in memory order)."""
from __future__ import annotations

import numpy as np

from ....ir import attributes
from ..act import Act
from .registry import handles


@handles("GRU", "LSTM")
def recurrent(conv, node):
    kind = node.op_type
    attrs = attributes(node)
    direction = attrs.get("direction", "forward")
    if direction not in ("forward", "bidirectional"):
        raise conv.fail(node, f"direction '{direction}' is not supported (forward and bidirectional are)")
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
    dirs = 2 if direction == "bidirectional" else 1
    B = np.zeros((dirs, 2 * gates * H)) if B is None else B
    src = conv.shaped(x, (T, F))
    if kind == "LSTM":
        # hls4ml's LSTM needs one type for its input, state and sums: a cast to the wide
        # (accumulator) type first, so that the state keeps the accumulator's precision
        src = conv.add({"name": conv.new_name("cast"), "class_name": "Activation", "activation": "linear",
                        "inputs": [src]})
        conv.wide.update({src})
    weights = [keras_weights(kind, H, W[d], R[d], B[d]) for d in range(dirs)]
    common = {"inputs": [src], "return_state": False, "time_major": False, "n_timesteps": T, "n_in": F,
              "_macs": dirs * T * gates * H * (F + H)}
    if dirs == 1:
        layer = {"name": conv.new_name(kind.lower()), "class_name": kind, "direction": "forward",
                 "activation": "tanh", "recurrent_activation": "sigmoid", "n_out": H, **common, **weights[0]}
        if kind == "GRU":
            layer["apply_reset_gate"] = "after"
    else:
        layer = {"name": conv.new_name(f"bidirectional_{kind.lower()}"), "class_name": "Bidirectional",
                 "direction": "bidirectional", "merge_mode": "concat", "n_out": 2 * H, **common}
        for d, side in enumerate(("forward", "backward")):
            layer.update({f"{side}_name": f"{layer['name']}_{side}", f"{side}_class_name": kind,
                          f"{side}_activation": "tanh", f"{side}_recurrent_activation": "sigmoid",
                          f"{side}_data_format": "channels_last", f"{side}_use_bias": True, f"{side}_n_states": H,
                          **{f"{side}_{k}": v for k, v in weights[d].items()}})
            if kind == "GRU":
                layer[f"{side}_apply_reset_gate"] = "after"
    name = conv.add(layer)
    conv.wide.add(name)  # the state keeps the accumulator's precision across time steps
    # Y: (T, dirs, B, H) for layout 0, (B, T, dirs, H) for layout 1; Y_h: (dirs, B, H) or (B, dirs, H)
    y_shape = (T, dirs, 1, H) if not layout else (1, T, dirs, H)
    y = Act(name, y_shape, 2 if not layout else 0, (0, 1, 3) if not layout else (1, 2, 3), (T, dirs * H), "seq",
            time)
    conv.values[node.output[0]] = y
    if len(node.output) > 1 and node.output[1]:
        h_shape, h_batch = ((dirs, 1, H), 1) if not layout else ((1, dirs, H), 0)
        conv.values[node.output[1]] = Act(name, h_shape, h_batch, tuple(a for a in range(3) if a != h_batch),
                                          (dirs * H,), "last")
        if conv.uses.get(node.output[1], 0):
            layer["_last_used"] = True
    if len(node.output) > 2 and node.output[2] and conv.uses.get(node.output[2], 0):
        raise conv.fail(node, "the LSTM's cell state output is not supported")


def keras_weights(kind: str, H: int, w: np.ndarray, r: np.ndarray, b: np.ndarray) -> dict:
    """One direction's ONNX weights (W, R, B of that direction) in hls4ml's (Keras') layout."""
    gates = 3 if kind == "GRU" else 4
    wb, rb = b[:gates * H], b[gates * H:]
    if kind == "GRU":  # ONNX and Keras share the gate order z, r, h
        return {"weight_data": w.T.copy(), "recurrent_weight_data": r.T.copy(), "bias_data": wb.copy(),
                "recurrent_bias_data": rb.copy()}
    order = np.concatenate([np.arange(g * H, (g + 1) * H) for g in (0, 2, 3, 1)])  # ONNX i, o, f, c -> i, f, c, o
    return {"weight_data": w[order].T.copy(), "recurrent_weight_data": r[order].T.copy(),
            "bias_data": (wb + rb)[order].copy()}
