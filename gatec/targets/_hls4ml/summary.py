"""hls_summary.json and resources.png: what the hls4ml project was configured with, and an
estimate of its cost. Nothing is synthesized here (vitis_hls / vivado_hls are not installed):
every figure under "estimate" is arithmetic on the layer list, not a tool's report.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .act import MOVES, RECURRENT
from .convert import Converted

SUMMARY_FILE = "hls_summary.json"
PLOT_FILE = "resources.png"
NOTE = ("Nothing was synthesized: the vendor tools (vitis_hls / vivado_hls / Quartus / Catapult) are not "
        "installed here. The project under hls4ml_prj/ builds with them (build_prj.tcl). Figures under "
        "'estimate' are counted from the layers, not reported by a tool.")


def layer_estimate(layer, macs: int, reuse: int) -> dict:
    """Multipliers: the products computed in parallel; a recurrent layer computes one step at a time,
    so its multipliers are one step's products; so does a convolution, one group of output pixels
    (hls4ml's n_partitions: one pixel at a time at its default parallelization factor) at a time.
    Cycles: io_parallel, Latency strategy: a dense product takes about reuse + log2(n_in) + 1 cycles
    (the adder tree), a recurrent layer or a convolution that per step."""
    steps, n_in = 1, int(layer.get_attr("n_in") or 1)
    if layer.class_name in RECURRENT:
        steps = int(layer.get_attr("n_timesteps") or 1)
    elif layer.class_name in ("Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D"):
        steps = int(layer.get_attr("n_partitions") or 1)
        n_in = int(layer.get_attr("n_chan")) * int(layer.get_attr("filt_width")) * int(layer.get_attr("filt_height") or 1)
    per_step = macs // steps
    cycles = 0
    if per_step:
        cycles = steps * (reuse + math.ceil(math.log2(max(n_in, 2))) + 1)
    elif layer.class_name not in ("Input", "InputLayer", "Reshape"):
        cycles = 1
    return {"macs": int(macs), "multipliers": -(-per_step // reuse) if per_step else 0, "cycles": cycles}


def summary(model, conv, s: dict) -> dict:
    reuse = s["reuse_factor"]
    layers = []
    observed = s.get("observed", {})  # --precision auto: the largest |value| each layer took
    for layer in model.get_layers():
        out = layer.get_output_variable()
        extra = {"observed_max_abs": observed[layer.name]} if layer.name in observed else {}
        layers.append({"name": layer.name, "class": layer.class_name, "output_shape": [int(d) for d in out.shape],
                       **extra, "result": str(out.type.precision),
                       "weights": {k: {"type": str(v.type.precision), "count": int(np.prod(v.shape))}
                                   for k, v in sorted(layer.weights.items())},
                       "estimate": layer_estimate(layer, conv.macs.get(layer.name, 0), reuse)})
    weight_bits = sum(w["count"] * type_width(w["type"]) for l in layers for w in l["weights"].values())
    return {
        "synthesized": False, "note": NOTE,
        "configured": {"backend": s["backend"], "part": s["resolved_part"], "io_type": s["io_type"],
                       "strategy": s["strategy"], "reuse_factor": reuse,
                       "clock_period_ns": model.config.get_config_value("ClockPeriod"),
                       "default_precision": model.config.config["HLSConfig"]["Model"]["Precision"],
                       **({"precision": f"auto<{s['auto']}>"} if s.get("auto") else {}),
                       "quantized": conv.quantized},
        "layers": layers,
        "estimate": {"macs_per_sample": sum(l["estimate"]["macs"] for l in layers),
                     "multipliers": sum(l["estimate"]["multipliers"] for l in layers),
                     "latency_cycles": sum(l["estimate"]["cycles"] for l in layers),
                     "weight_bits": int(weight_bits),
                     "how": "multipliers = MACs per step / reuse factor; cycles = per dense product reuse + "
                            "log2(n_in) + 1, times the steps of a recurrent layer; weight bits = weights x width"},
    }


def type_width(text: str) -> int:
    digits = text.split("<")[1].split(",")[0].rstrip(">") if "<" in text else "0"
    return int(digits) if digits.isdigit() else 0


def write_summary(folder: Path, model, conv, s: dict) -> list[str]:
    info = summary(model, conv, s)
    (Path(folder) / SUMMARY_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    plot(info, Path(folder) / PLOT_FILE)
    return [SUMMARY_FILE, PLOT_FILE]


def plot(info: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    layers = [l for l in info["layers"] if l["estimate"]["macs"] or l["weights"]]
    names = [f"{l['name']}\n{l['class']}" for l in layers]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].bar(names, [l["estimate"]["multipliers"] for l in layers], color="tab:blue")
    axes[0].set_ylabel("multipliers (estimate)")
    axes[1].bar(names, [sum(w["count"] * type_width(w["type"]) for w in l["weights"].values()) for l in layers],
                color="tab:orange")
    axes[1].set_ylabel("weight bits")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7, rotation=45)
    c = info["configured"]
    fig.suptitle(f"ESTIMATE, not synthesized: {c['backend']} {c['part']}, {c['strategy']}, reuse {c['reuse_factor']}, "
                 f"{c['io_type']}; {info['estimate']['multipliers']} multipliers, "
                 f"~{info['estimate']['latency_cycles']} cycles", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


TABLES = ("sigmoid", "tanh", "softmax", "elu", "selu", "softsign")  # activations read from a table (<= 2**-8 each)


def table_and_jump_terms(conv: Converted) -> float:
    """error_bound's terms for what reads a table with its own error or jumps: each LayerNormalization
    reads 1/sqrt(var + eps) from a table at the truncated index (2**15 entries over var / 4 in [0, 1)),
    off by max|gamma| * sqrt(dim - 1) * 2**-15 * 4 / (2 var), taken at var = 1/16 (layers/normalization.py;
    0.0038 for dim 16, gamma 1); a ThresholdedReLU jumps by theta at theta, where an input within an
    LSB of it may fall on the other side than the reference's: theta. (Softsign is a table among
    TABLES: hls4ml's, 4096 entries over [-8, 8), slope <= 1, at the truncated index: 2**-8 there;
    beyond +-8 it clamps, up to 1/9 off, which the verification on the model's inputs would show.)"""
    return float(sum(layer.get("_table_error", 0.0) for layer in conv.layers
                     if layer["class_name"] == "LayerNormalization")
                 + sum(abs(layer["activ_param"]) for layer in conv.layers if layer["class_name"] == "ThresholdedReLU"))


def threshold_level_terms(conv: Converted) -> float:
    """error_bound's term for MultiThreshold levels (layers/threshold.py) that need more than 64 bits
    to be held exactly: each truncated by less than its result type's LSB (0 for all others)."""
    return float(sum(layer.get("_round_error", 0.0) for layer in conv.layers
                     if layer["class_name"] == "GatecMultiThreshold"))


def error_bound(conv: Converted, fraction_bits: int | None = None) -> float:
    """The largest |C simulation - reference| the fpga (hls4ml) target accepts at the default
    types, ap_fixed<16,6> (F = 10 fractional bits, LSB = 2**-10) with accumulators twice as wide,
    or at the F `fraction_bits` of a --precision given.

    Per layer: the input or result is truncated to the LSB (< 1 LSB), and each weight is truncated
    (< 1 LSB, times an input of order 1, summed over the inputs; partly cancelling): 4 LSB per
    layer (a convolution is a dense product per output pixel: the same; a Transpose, Cropping, zero
    padding or upsampling moves values: nothing). Recurrent layers keep their state at the accumulator's precision, so
    time steps add little; they count as 2 layers. Each sigmoid/tanh reads a 4096-entry table over [-8, 8): step
    2**-8, error <= slope * step <= 2**-8 for tanh (2**-10 for sigmoid); a softmax's exp and
    1/sum tables (18 bits, 10 fractional) add about 2**-8; so do ELU/SELU's tables (4096 entries
    over [-8, 0]: step 2**-9, slope <= 1.76) and gatec's lookups (erf, softplus: layers/lookup.py).
    Plus 8 LSB for the input quantization and the output cast. Quantized models (QONNX quantizers with power-of-two
    scales) compute the same integers as the reference: only float32 rounding of the reference
    is left, so 1e-4 there, unless they keep sigmoid/tanh/softmax tables. GRU(16->32)+Linear: 0.023 allowed (0.05 required), 0.006 measured.

    Quantizers with a float scale (or one per channel, or a zero point) are not exact: each can round
    a value lying within float32 error of a rounding boundary the other way than the reference, one
    step s, and the layers after it carry that step to the outputs: plus
    layers.quantizers.float_scale_error (one step of each such quantizer times the largest gain from
    it to the output, e.g. s * max_j sum_i |W_ij| through a Dense; 0 for every other model)."""
    from .layers.quantizers import float_scale_error
    steps = float_scale_error(conv)
    steps += table_and_jump_terms(conv)
    steps += threshold_level_terms(conv)
    lsb = 2.0 ** -(10 if fraction_bits is None else fraction_bits)
    layers = tables = 0
    for layer in conv.layers:
        kind = layer["class_name"]
        if kind in MOVES:
            continue  # moves values, computes nothing
        layers += 2 if kind in RECURRENT else 1
        if kind in (*RECURRENT, "GatecLookup") or layer.get("activation") in TABLES:
            tables += 1
    if conv.quantized and tables == 0 and fraction_bits is None:
        return 1e-4 + steps
    # a quantized model with sigmoid/tanh/softmax left in float: their tables are the error, and it
    # is amplified by the layers after them as at the default types: the same bound
    return float(lsb * (8 + 4 * layers) + tables * 2.0 ** -8 + steps)
