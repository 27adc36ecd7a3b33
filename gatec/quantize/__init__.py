"""`gatec quantize`: post-training quantization to QONNX, uniform or Hessian-aware mixed precision.

Uniform: every weight layer at `weight_bits`, every layer input at `act_bits`. Mixed: per-layer
weight bits chosen by gatec.quantize.hawq under a BOPs or model-size budget. Either way the
result is the IR with QONNX Quant nodes (gatec.passes.ptq_common), evaluated against the float
model on the data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GatecError
from ..frontend import Source, onnx_reference
from ..passes import ptq_common
from . import hawq


def parse_budget(text: str | None, uniform8: float, what: str) -> float | None:
    """'N' (absolute) or 'P%' (of the cost at 8-bit weights)."""
    if text is None:
        return None
    try:
        value = float(text[:-1]) * uniform8 / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise GatecError(f"bad {what} budget '{text}': a number, or a percentage of uniform 8 bits like 70%") from None
    if value <= 0:
        raise GatecError(f"bad {what} budget '{text}': must be positive")
    return value


def quantize_model(source: Source, data: list[np.ndarray], labels: np.ndarray | None = None, weight_bits: int = 8,
                   act_bits: int = 8, method: str = "minmax", per_channel: bool = False, pow2: bool = True,
                   budget_bops: str | None = None, budget_size: str | None = None, choices=hawq.BIT_CHOICES,
                   percentile: float = 99.99):
    """Returns (quantized IR, report dict)."""
    ir = source.ir
    report = {"calibration": method if method == "minmax" else f"percentile {percentile:g}",
              "per_channel": per_channel, "power_of_two_scales": pow2, "act_bits": act_bits,
              "calibration_samples": int(data[0].shape[ir.inputs[0].batch_axis])}
    bits: int | dict = weight_bits
    sens = None
    if budget_bops is not None or budget_size is not None:
        if source.module is None:
            raise GatecError("mixed precision needs a PyTorch model (Hessian traces need gradients); this model "
                             "is an ONNX file")
        if budget_bops is not None and budget_size is not None:
            raise GatecError("give one budget: --budget-bops or --budget-size")
        hessian_data = [a[:2048] for a in data]
        sens = hawq.sensitivities(ir, source.module, hessian_data, None if labels is None else labels[:2048],
                                  choices, per_channel)
        if budget_bops is not None:
            def cost(s, b):
                return hawq.bops(s, b, act_bits)
            budget = parse_budget(budget_bops, sum(cost(s, 8) for s in sens), "BOPs")
        else:
            def cost(s, b):
                return s.params * b
            budget = parse_budget(budget_size, sum(cost(s, 8) for s in sens), "size")
        bits = hawq.allocate(sens, cost, budget)
        report["budget"] = {"kind": "bops" if budget_bops is not None else "size_bits", "value": budget}
    qir, rows = ptq_common.quantize(ir, bits, act_bits, data, method, per_channel, pow2, percentile)
    if sens is not None:
        by_layer = {s.layer: s for s in sens}
        for r in rows:
            s = by_layer[r["layer"]]
            r.update(module=s.module, hessian_trace=s.trace, sensitivity={str(b): o for b, o in s.omega.items()})
    uniform8 = sum(r["macs"] * 8 * 8 for r in rows)
    report.update(layers=rows, bops=sum(r["bops"] for r in rows), bops_uniform8=uniform8,
                  size_bits=sum(r["params"] * r["weight_bits"] for r in rows),
                  size_bits_uniform8=sum(r["params"] * 8 for r in rows))
    report["bops_reduction"] = 1 - report["bops"] / uniform8 if uniform8 else 0.0
    report["evaluation"] = evaluate(source, qir, data, labels)
    return qir, report


def evaluate(source: Source, qir, data, labels) -> dict:
    """The quantized model (qonnx's executor) against the float one on the data."""
    ref = source.reference(data)[0]
    out = onnx_reference(qir.model)(data)[0]
    result = {"max_abs_err": float(np.abs(out.astype(np.float64) - ref).max()), "samples": int(len(ref))}
    if ref.ndim == 2 and ref.shape[1] > 1:
        result["argmax_agreement"] = float((out.argmax(1) == ref.argmax(1)).mean())
        if labels is not None:
            y = np.asarray(labels).reshape(-1)
            result["accuracy_float"] = float((ref.argmax(1) == y).mean())
            result["accuracy_quantized"] = float((out.argmax(1) == y).mean())
    return result


def format_report(report: dict) -> str:
    mixed = "sensitivity" in report["layers"][0]
    head = f"{'layer':<24} {'params':>7} {'MACs':>8} " + (f"{'trace':>9} " if mixed else "") + \
        f"{'w bits':>6} {'a bits':>6} {'BOPs':>10}"
    lines = [head, "-" * len(head)]
    for r in report["layers"]:
        lines.append(f"{r['layer'][-24:]:<24} {r['params']:>7} {r['macs']:>8} "
                     + (f"{r['hessian_trace']:>9.3g} " if mixed else "")
                     + f"{r['weight_bits']:>6} {r['act_bits']:>6} {r['bops']:>10,}")
    lines.append(f"BOPs {report['bops']:,} = {100 * (1 - report['bops_reduction']):.1f}% of uniform 8 bits "
                 f"({report['bops_uniform8']:,}); weights {report['size_bits'] / 8:,.0f} bytes")
    ev = report["evaluation"]
    line = f"quantized vs float on {ev['samples']} samples: max abs err {ev['max_abs_err']:.3g}"
    if "argmax_agreement" in ev:
        line += f", argmax agreement {100 * ev['argmax_agreement']:.2f}%"
    if "accuracy_float" in ev:
        line += (f"; accuracy {100 * ev['accuracy_float']:.2f}% float -> {100 * ev['accuracy_quantized']:.2f}% "
                 f"quantized")
    lines.append(line)
    return "\n".join(lines)


def plot_report(report: dict, path: Path) -> None:
    """Per-layer sensitivity (Hessian trace, and Omega at each bit width) beside the chosen bits."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = report["layers"]
    names = [r["layer"] for r in rows]
    mixed = "sensitivity" in rows[0]
    fig, axes = plt.subplots(1, 2 if mixed else 1, figsize=(11 if mixed else 6, 3.5), squeeze=False)
    ax = axes[0][0]
    ax.bar(range(len(rows)), [r["weight_bits"] for r in rows], label="weight bits")
    ax.plot(range(len(rows)), [r["act_bits"] for r in rows], "k_", markersize=20, label="activation bits")
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("bits")
    ax.set_title(f"chosen bits: {100 * (1 - report['bops_reduction']):.0f}% of uniform-8 BOPs")
    ax.legend(fontsize=7)
    if mixed:
        ax = axes[0][1]
        for r in rows:
            bits = sorted(int(b) for b in r["sensitivity"])
            ax.semilogy(bits, [max(r["sensitivity"][str(b)], 1e-30) for b in bits], "o-", label=r["layer"])
            ax.semilogy([r["weight_bits"]], [max(r["sensitivity"][str(r["weight_bits"])], 1e-30)], "k*", markersize=10)
        ax.set_xlabel("weight bits")
        ax.set_ylabel("sensitivity (trace(H)/n * ||Q(W)-W||^2)")
        ax.set_title("Hessian-aware sensitivity (* = chosen)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)

