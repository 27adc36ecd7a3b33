"""compile(): front end -> passes -> target -> artifact folder -> emulator.

The artifact is built in a temporary folder beside the output and moved into place only once
it is complete and (unless verify=False) verified, so a failed compile leaves nothing behind.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import emulator, passes, progress, targets
from .version import __version__
from .errors import GatecError
from .ir import IR
from .ir.sampling import fixed_batch
from .output import write_folder

if TYPE_CHECKING:
    from .frontend import Source  # the front end imports torch: compile() loads it, Artifact.open() need not

MANIFEST = "manifest.json"
OPT_LEVELS = tuple(passes.LEVELS)


def default_passes(target: str, ir: IR, level: int = 1) -> list[str]:
    """The passes -O<level> runs on this IR: gatec.passes.default_passes (one set of levels
    serves every target; each target's model kind selects its passes)."""
    return passes.default_passes(ir, level)


def pass_error(ir: IR) -> float:
    """The output error approximate passes (pruning) reported on their calibration inputs."""
    return float(sum(p.get("max_abs_err", 0.0) for p in ir.passes))


def widened(tol, ir: IR):
    """The target's tolerance plus the error the IR's approximate passes reported: a pruned
    model is checked against the unpruned one within the pass's own bound."""
    from dataclasses import replace
    err = pass_error(ir)
    return tol if err == 0 or tol.exact else replace(tol, atol=tol.atol + err)


class Artifact:
    """A compiled model: its folder, its manifest, and `.run(inputs)`."""

    def __init__(self, path: Path, target: str, options: dict | None = None, _keep=None):
        self.path = Path(path)
        self.manifest = json.loads((self.path / MANIFEST).read_text())
        self.target = target
        # the options it was built with, unless the caller overrides them (threads, say)
        self.runner = targets.get(target).load(self.path, {**self.manifest.get("options", {}), **(options or {})})
        self._keep = _keep  # keeps a temporary folder alive as long as the artifact

    @classmethod
    def open(cls, path: str | Path, options: dict | None = None) -> "Artifact":
        manifest = json.loads((Path(path) / MANIFEST).read_text())
        return cls(Path(path), manifest["target"], options)

    @property
    def label(self) -> str:
        """How the artifact runs on this machine when not as deployed (its runner's word), else ""."""
        return getattr(self.runner, "label", "")

    def run(self, inputs) -> list[np.ndarray]:
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if isinstance(inputs, dict):
            inputs = [inputs[i["name"]] for i in self.manifest["inputs"]]
        return self.runner.run([np.asarray(a) for a in inputs])


def manifest_for(ir: IR, target, files: list[str], verification: dict | None, options: dict,
                 source_ir: IR | None = None, details: dict | None = None) -> dict:
    def tensors(specs):
        return [{"name": s.name, "shape": s.shape, "dynamic_axes": s.dynamic, "dtype": s.dtype, "values": s.values,
                 "range": s.range}
                for s in specs]
    return {"gatec_version": __version__, "target": target.name, "target_description": target.describe(),
            "kind": ir.kind, "source": ir.source, "inputs": tensors(ir.inputs), "outputs": tensors(ir.outputs),
            "options": options, "passes": ir.passes, "files": sorted(files), "verification": verification,
            **gate_counts(source_ir, ir), **({"details": details} if details else {})}


def gate_counts(before: IR | None, after: IR) -> dict:
    """{"gates": {"before", "after", "pass_through_wires", "computed", ...}} for logic networks, else
    {}: before and after count the layers' gates; "computed" and its parts (gate_kinds) what
    every target computes after -O, constant outputs being GroupSum's offset."""
    if before is None or after.kind != "logic" or before.kind != "logic":
        return {}
    from .passes.logic_common import gate_kinds, layered_counts, netlist_of_ir
    try:
        b, a = layered_counts(before), layered_counts(after)
        kinds = gate_kinds(netlist_of_ir(after))
    except GatecError:
        return {}
    return {"gates": {"before": b["gates"], "after": a["gates"], "pass_through_wires": a["wires"], **kinds}}


def calibration_data(ir: IR, data):
    """What the passes that read data get: they run the model on it at once, so a model with a fixed
    batch gets its first batch of rows (padded with the last), as when passes draw their own inputs;
    the emulator still checks every row."""
    size = fixed_batch(ir)
    if data is None or size is None:
        return data
    rows = np.minimum(np.arange(size), data[0].shape[ir.inputs[0].batch_axis] - 1)
    return [np.take(a, rows, axis=s.batch_axis) for a, s in zip(data, ir.inputs)]


def compile(model, target: str | None = None, output: str | Path | None = None, *, input_shapes=None, imports=(),
            batch_axis: int = 0, passes_to_run: list[str] | None = None, verify: bool = True, samples: int = 256,
            data: list[np.ndarray] | None = None, options: dict | None = None, source: Source | None = None,
            log=None, opt_level: int = 1, force: bool = False) -> Artifact:
    """Compile `model` (a path or an nn.Module) for `target`; returns the verified Artifact.

    `passes_to_run` replaces the passes of `opt_level` (gatec.passes.LEVELS); `data` also calibrates
    the pruning passes. Raises GatecError when the model cannot be loaded or compiled, or when
    the artifact disagrees with the model (then nothing is written). `output` may replace only an
    earlier artifact or an empty folder, any folder with force=True (the CLI's --force), never the
    current folder or the model's (gatec.output has the rules)."""
    target = target or targets.DEFAULT
    tgt = targets.get(target)
    options = tgt.check_options(dict(options or {}))
    if source is None:
        from .frontend import load
        source = load(model, input_shapes, imports, batch_axis)
    data = None if data is None else emulator.check_data(data, source.ir)  # bad data: named, not blamed on the artifact
    names = default_passes(target, source.ir, opt_level) if passes_to_run is None else passes_to_run
    ir = passes.apply(source.ir, names, calibration_data(source.ir, data))
    plan = tgt.plan(ir, options, data)
    for line in plan.notes if log else ():
        log(f"{target}: {line}")
    result = {}

    def build(folder: Path):
        with progress.stage(f"building the {target} artifact"):
            files = tgt.build(plan, folder)
        verification = None
        if verify:
            with progress.stage(f"preparing the {target} artifact to run"):
                runner = tgt.load(folder, options)
            reference, tol = source.reference, widened(tgt.tolerance(plan), ir)
            if ir.is_qonnx and not source.ir.is_qonnx:
                # quantized by a pass: held to the quantized graph (qonnx's executor), not to the
                # float model the pass already reported its error against
                from .ir.reference import onnx_reference
                reference, tol = onnx_reference(ir.model), tgt.tolerance(plan)
            with progress.stage("verifying it against the model"):
                checks = emulator.verify(plan.ir, reference, {target: (runner.run, tol)}, samples, data)
            result["checks"] = checks
            if log:
                log(emulator.format_table(checks))
            verification = emulator.per_target(checks)[target]
            emulator.plot_errors(checks, folder / "verification.png")
            files.append("verification.png")
            failed = next((c.error for c in checks if c.error), None)
            if failed:  # it did not run (a C simulation that does not compile): say why, not "disagrees"
                raise GatecError(f"the compiled {target} artifact could not be checked: {failed}; nothing was written")
            if not verification["ok"]:
                raise GatecError(f"the compiled {target} artifact disagrees with the model (max abs err "
                                 f"{verification['max_abs_err']:.3g}); nothing was written")
        (folder / MANIFEST).write_text(json.dumps(manifest_for(ir, tgt, files + [MANIFEST], verification, options,
                                                                source.ir, plan.details),
                                                  indent=2, sort_keys=True) + "\n")

    if output is None:
        keep = tempfile.TemporaryDirectory(prefix="gatec-")
        output = Path(keep.name) / "artifact"
    else:
        keep = None
    protect = [model] if isinstance(model, (str, Path)) else []
    artifact = write_folder(build, output, force, protect, lambda path: Artifact(path, target, options, keep))
    artifact.checks = result.get("checks")
    artifact.tolerance = widened(tgt.tolerance(plan), ir)  # what the artifact is held to against the model
    return artifact
