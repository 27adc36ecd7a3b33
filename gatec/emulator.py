"""The emulator: runs the reference and each target on the same inputs and says, per target
and output, whether they agree: bit for bit for logic networks, within the target's tolerance
for arithmetic.

Inputs come in two shapes: the example shape with `samples` in the batch, and a second one
with another batch size (not a multiple of 64) and every other dynamic axis (time, space)
changed, so that a graph that baked in a sequence length is caught.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import GatecError
from .ir import IR
from .ir.sampling import input_sets
from .targets import Tolerance

Run = Callable[[list[np.ndarray]], list[np.ndarray]]
HIST_EDGES = 10.0 ** np.arange(-12, 3)  # decades of |error| for the error histogram


@dataclass
class Check:
    """One target compared with the reference on one output, over every input set."""
    target: str
    output: str
    tolerance: Tolerance
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    mismatches: int = 0  # elements outside the tolerance
    elements: int = 0
    argmax_agreement: float | None = None
    shapes: list = field(default_factory=list)  # the input shapes of each input set
    error: str | None = None
    histogram: list = field(default_factory=lambda: [0] * (len(HIST_EDGES) + 2))  # |err| == 0, then per decade

    @property
    def ok(self) -> bool:
        return self.error is None and self.mismatches == 0 and self.elements > 0

    def as_dict(self) -> dict:
        return {"target": self.target, "output": self.output, "ok": self.ok, "tolerance": self.tolerance.describe(),
                "max_abs_err": self.max_abs_err, "max_rel_err": self.max_rel_err, "mismatches": self.mismatches,
                "elements": self.elements, "argmax_agreement": self.argmax_agreement, "shapes": self.shapes,
                "error": self.error, "error_histogram": {"zero": self.histogram[0], "decade_edges":
                                                         [float(e) for e in HIST_EDGES], "counts": self.histogram[1:]}}


def load_data(path: str, ir: IR) -> list[np.ndarray]:
    """User data: a .npy array for a one-input model, or a .npz with one array per input name."""
    try:
        loaded = np.load(path)
    except Exception as e:
        raise GatecError(f"--data {path}: cannot read it ({str(e).splitlines()[0]})") from None
    if isinstance(loaded, np.ndarray):
        arrays = [loaded]
    else:
        missing = [s.name for s in ir.inputs if s.name not in loaded.files]
        arrays = [loaded[s.name] for s in ir.inputs] if not missing else [loaded[k] for k in loaded.files]
    if len(arrays) != len(ir.inputs):
        raise GatecError(f"--data {path}: holds {len(arrays)} array(s), the model has {len(ir.inputs)} input(s)")
    out = []
    for a, s in zip(arrays, ir.inputs):
        fixed = [i for i in range(len(s.shape)) if i not in s.dynamic]
        if a.ndim != len(s.shape) or any(a.shape[i] != s.shape[i] for i in fixed):
            raise GatecError(f"--data {path}: array of shape {list(a.shape)} does not fit input '{s.name}' "
                             f"(example shape {s.shape}, dynamic axes {s.dynamic})")
        out.append(a.astype(s.dtype))
    return out


def compare(check: Check, ref: np.ndarray, out: np.ndarray) -> None:
    if ref.shape != out.shape:
        check.error = f"shape {list(out.shape)} differs from the reference's {list(ref.shape)}"
        return
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    diff = np.abs(ref64 - out64)
    tol = check.tolerance
    bad = diff > 0 if tol.exact else ~(diff <= tol.atol + tol.rtol * np.abs(ref64))
    check.mismatches += int(bad.sum())
    nonzero = diff[diff > 0]
    check.histogram[0] += int(diff.size - nonzero.size)
    for i, n in enumerate(np.histogram(nonzero, bins=np.concatenate([[0], HIST_EDGES, [np.inf]]))[0]):
        check.histogram[1 + i] += int(n)
    check.elements += int(diff.size)
    if diff.size:
        check.max_abs_err = max(check.max_abs_err, float(diff.max()))
        check.max_rel_err = max(check.max_rel_err, float((diff / np.maximum(np.abs(ref64), 1e-6)).max()))
    if ref.ndim >= 2 and ref.shape[-1] > 1:
        agree = float((ref.argmax(-1) == out.argmax(-1)).mean())
        check.argmax_agreement = agree if check.argmax_agreement is None else min(check.argmax_agreement, agree)


def verify(ir: IR, reference: Run, targets: dict[str, tuple[Run, Tolerance]], samples: int = 256,
           data: list[np.ndarray] | None = None) -> list[Check]:
    """Compare every target with the reference; returns one Check per target and output."""
    sets = input_sets(ir, samples, data)
    refs = [reference(inputs) for inputs in sets]
    checks = []
    for name, (run, tol) in targets.items():
        per_output = [Check(name, o.name, tol) for o in ir.outputs]
        for inputs, ref in zip(sets, refs):
            try:
                outs = run(inputs)
            except Exception as e:
                for c in per_output:
                    c.error = f"failed to run: {str(e).splitlines()[0][:200]}"
                break
            for c, r, o in zip(per_output, ref, outs):
                compare(c, np.asarray(r), np.asarray(o))
                c.shapes.append([list(a.shape) for a in inputs])
        checks += per_output
    return checks


def format_table(checks: list[Check]) -> str:
    head = f"{'target':<10} {'output':<12} {'max abs err':>12} {'max rel err':>12} {'argmax agree':>13}  {'tolerance':<30} result"
    rows = [head, "-" * len(head)]
    for c in checks:
        agree = "-" if c.argmax_agreement is None else f"{100 * c.argmax_agreement:.2f}%"
        result = "PASS" if c.ok else ("FAIL: " + c.error if c.error else f"FAIL ({c.mismatches} of {c.elements} off)")
        rows.append(f"{c.target:<10} {c.output:<12} {c.max_abs_err:>12.3g} {c.max_rel_err:>12.3g} {agree:>13}  "
                    f"{c.tolerance.describe():<30} {result}")
    sets = {" + ".join("x".join(map(str, s)) for s in shapes): None for c in checks for shapes in c.shapes}
    rows.append(f"inputs checked: {', '.join(sets)}")
    return "\n".join(rows)


def per_target(checks: list[Check]) -> dict:
    """The JSON report: per target, `ok`, worst `max_abs_err`, lowest `argmax_agreement`, and the checks."""
    report = {}
    for c in checks:
        t = report.setdefault(c.target, {"ok": True, "max_abs_err": 0.0, "max_rel_err": 0.0,
                                         "argmax_agreement": None, "outputs": []})
        t["ok"] = t["ok"] and c.ok
        t["max_abs_err"] = max(t["max_abs_err"], c.max_abs_err)
        t["max_rel_err"] = max(t["max_rel_err"], c.max_rel_err)
        if c.argmax_agreement is not None:
            t["argmax_agreement"] = c.argmax_agreement if t["argmax_agreement"] is None else \
                min(t["argmax_agreement"], c.argmax_agreement)
        t["outputs"].append(c.as_dict())
    return report


def write_json(path: str | Path, report: dict) -> None:
    import json
    Path(path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def plot_errors(checks: list[Check], path: str | Path) -> None:
    """A bar chart of |error| per decade for every target and output, beside the JSON."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = ["0"] + [f"<1e{int(np.log10(e))}" for e in HIST_EDGES] + [f">=1e{int(np.log10(HIST_EDGES[-1]))}"]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    width = 0.8 / max(len(checks), 1)
    for i, c in enumerate(checks):
        ax.bar(np.arange(len(labels)) + i * width, c.histogram, width, label=f"{c.target}:{c.output}"
               + (" PASS" if c.ok else " FAIL"))
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=45, fontsize=7)
    ax.set_yscale("symlog")
    ax.set_xlabel("|target - reference|")
    ax.set_ylabel("elements")
    ax.set_title("error histogram per target and output")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
