"""The emulator: runs the reference and each target on the same inputs and says, per target
and output, whether they agree: bit for bit for logic networks, within the target's tolerance
for arithmetic.

Inputs come in two shapes: the example shape with `samples` in the batch, and a second one
with another batch size (not a multiple of 64) and every other dynamic axis (time, space)
changed, so that a graph that baked in a sequence length is caught. A model whose batch is
fixed (a plain torch.export program, an ONNX file exported without dynamic axes) gets the same
rows, run through the reference and each target a fixed batch at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import GatecError
from .ir import IR
from .ir.sampling import checked_sets, fixed_batch, in_batches
from .targets import Tolerance

Run = Callable[[list[np.ndarray]], list[np.ndarray]]
# decades of |error| for the error histogram, parsed from decimals: numpy's 10.0 ** arange rounds
# 1e-05 differently with and without AVX-512, and the edges are written into every manifest
HIST_EDGES = np.array([float(f"1e{e}") for e in range(-12, 3)])


@dataclass
class Check:
    """One target compared with the reference on one output, over every input set."""
    target: str
    output: str
    tolerance: Tolerance | None  # None: the target refused the model (the reason is `error`)
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    mismatches: int = 0  # elements outside the tolerance
    elements: int = 0
    argmax_agreement: float | None = None
    shapes: list = field(default_factory=list)  # the input shapes of each input set
    error: str | None = None
    runner: str = ""  # how the target ran here when not as deployed ("emulated fp16 on the CPU")
    histogram: list = field(default_factory=lambda: [0] * (len(HIST_EDGES) + 2))  # |err| == 0, then per decade

    @property
    def ok(self) -> bool:
        return self.error is None and self.mismatches == 0 and self.elements > 0

    def describe_tolerance(self) -> str:
        return self.tolerance.describe() if self.tolerance else "-"

    def as_dict(self) -> dict:
        return {"target": self.target, **({"runner": self.runner} if self.runner else {}), "output": self.output,
                "ok": self.ok, "tolerance": self.describe_tolerance(),
                "max_abs_err": self.max_abs_err, "max_rel_err": self.max_rel_err, "mismatches": self.mismatches,
                "elements": self.elements, "argmax_agreement": self.argmax_agreement, "shapes": self.shapes,
                "error": self.error, "error_histogram": {"zero": self.histogram[0], "decade_edges":
                                                         [float(e) for e in HIST_EDGES], "counts": self.histogram[1:]}}


def load_data(path: str, ir: IR, any_rows: bool = True) -> list[np.ndarray]:
    """User data: a .npy array for a one-input model, or a .npz with one array per input name.
    any_rows=False: as many rows as a fixed batch, for a caller that runs the data at once."""
    try:
        loaded = np.load(path)
    except Exception as e:
        raise GatecError(f"--data {path}: cannot read it ({str(e).splitlines()[0]})") from None
    if isinstance(loaded, np.ndarray):
        arrays = [loaded]
    else:
        missing = [s.name for s in ir.inputs if s.name not in loaded.files]
        arrays = [loaded[s.name] for s in ir.inputs] if not missing else [loaded[k] for k in loaded.files]
    return check_data(arrays, ir, f"--data {path}", any_rows)


def check_data(arrays, ir: IR, where: str = "data", any_rows: bool = True) -> list[np.ndarray]:
    """The user's inputs cast to the model's dtypes, refused when they are not data the model can be
    checked on, so that a fault in the data is not blamed on the artifact."""
    if len(arrays) != len(ir.inputs):
        raise GatecError(f"{where}: holds {len(arrays)} array(s), the model has {len(ir.inputs)} input(s)")
    any_rows = any_rows and fixed_batch(ir) is not None  # run a fixed batch at a time: any number of rows
    out = []
    for a, s in zip(arrays, ir.inputs):
        a = np.asarray(a)
        fixed = [i for i in range(len(s.shape)) if i not in s.dynamic and not (any_rows and i == s.batch_axis)]
        if a.ndim != len(s.shape) or any(a.shape[i] != s.shape[i] for i in fixed):
            raise GatecError(f"{where}: array of shape {list(a.shape)} does not fit input '{s.name}' "
                             f"(example shape {s.shape}, dynamic axes {s.dynamic}"
                             f"{', any number of rows' if any_rows else ''})")
        cast = a.astype(s.dtype) if a.dtype.kind in "biuf" else None
        problem = data_problem(a, cast, s)
        if problem:
            raise GatecError(f"{where}: input '{s.name}': {problem}")
        out.append(cast)
    return out


def data_problem(a: np.ndarray, cast: np.ndarray | None, s) -> str | None:
    """What makes `a` (cast: to the input's dtype) unfit for input spec `s`, or None."""
    if a.dtype.kind == "c":
        return "holds complex values (the model takes real ones)"
    if cast is None:
        return f"holds {a.dtype} values, not numbers"
    if a.size == 0:
        return f"is empty (shape {list(a.shape)}): no rows to check"
    for what, bad in (("NaN", np.isnan(a)), ("infinite", np.isinf(a)), (f"beyond {s.dtype}'s range", np.isinf(cast))):
        if bad.any():
            return f"{int(bad.sum())} values are {what}"
    if s.values == "binary" and not np.isin(a, (0, 1)).all():
        return f"{int((~np.isin(a, (0, 1))).sum())} values other than 0 and 1 for a logic network's bit input"
    return None


def compare(check: Check, ref: np.ndarray, out: np.ndarray) -> None:
    if ref.shape != out.shape:
        check.error = f"shape {list(out.shape)} differs from the reference's {list(ref.shape)}"
        return
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    diff = np.abs(ref64 - out64)
    tol = check.tolerance
    atol = tol.atol + tol.scale_rtol * float(np.abs(ref64).max(initial=0))
    bad = diff > 0 if tol.exact else ~(diff <= atol + tol.rtol * np.abs(ref64))
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
    data = None if data is None else check_data(data, ir)
    # a runner's own word on how it runs here (an artifact's, or a target runner's `label`)
    labels = {name: getattr(getattr(run, "__self__", None), "label", "") for name, (run, _) in targets.items()}
    sets, size = checked_sets(ir, samples, data)
    if size is not None:  # a fixed batch: run that many rows at a time
        reference = in_batches(reference, ir, size)
        targets = {name: (in_batches(run, ir, size), tol) for name, (run, tol) in targets.items()}
    refs = [reference(inputs) for inputs in sets]
    checks = []
    for name, (run, tol) in targets.items():
        per_output = [Check(name, o.name, tol, runner=labels[name]) for o in ir.outputs]
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


def refused(ir: IR, target: str, error: GatecError) -> list[Check]:
    """The rows of a target that refused the model (in planning or building it)."""
    return [Check(target, o.name, None, error=f"refused: {error}") for o in ir.outputs]


def format_table(checks: list[Check]) -> str:
    names = [f"{c.target} ({c.runner})" if c.runner else c.target for c in checks]
    wt = max([10, *map(len, names)])
    wtol = max([30, *(len(c.describe_tolerance()) for c in checks)])
    head = (f"{'target':<{wt}} {'output':<12} {'max abs err':>12} {'max rel err':>12} {'argmax agree':>13}  "
            f"{'tolerance':<{wtol}} result")
    rows = [head, "-" * len(head)]
    for c, target in zip(checks, names):
        agree = "-" if c.argmax_agreement is None else f"{100 * c.argmax_agreement:.2f}%"
        result = "PASS" if c.ok else ("FAIL: " + c.error if c.error else f"FAIL ({c.mismatches} of {c.elements} off)")
        rows.append(f"{target:<{wt}} {c.output:<12} {c.max_abs_err:>12.3g} {c.max_rel_err:>12.3g} {agree:>13}  "
                    f"{c.describe_tolerance():<{wtol}} {result}")
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


def plot_errors(checks: list[Check], path: str | Path) -> None:
    """A bar chart of |error| per decade for every target and output. Written where the caller
    says: a new path inside a build folder, or gatec.output's temporary path beside a report
    (the emulator runs before gatec.output in the flow, so the caller places the file)."""
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
