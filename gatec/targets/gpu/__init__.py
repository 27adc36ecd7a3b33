"""Target `gpu`: engines for NVIDIA GPUs, verified like every other target.

Arithmetic networks: `engine.onnx`, a strongly typed ONNX graph at --precision fp32, fp16 or
int8 (typed.py) with the optimization profile from the model's dynamic axes, and a README with
the trtexec command that builds the TensorRT engine from it. This version builds no engine
itself; the graph is verified by running it on the CPU at its own precision (emulated.py:
fp16 rounding reproduced op by op, not silently fp32), labelled "emulated" in the verification
table and the manifest.

Logic networks: the netlist, run by a Triton kernel over bit-packed samples (logic.py) on a
CUDA GPU, or under Triton's interpreter on a machine without one (bit for bit the same).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ...errors import GatecError
from ...ir import IR
from .. import Option, Plan, Target, Tolerance, integer_at_least

ENGINE_GRAPH = "engine.onnx"
README = "README.md"
PRECISIONS = ("fp32", "fp16", "int8")
SEQUENCE_GROWTH = 4  # the profile's largest non-batch dynamic axis, in example lengths


def has_nvidia_gpu() -> bool:
    """A CUDA driver with a GPU, without importing torch (`gatec targets` starts fast)."""
    return Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir())


def machine() -> dict:
    return {"nvidia_gpu": has_nvidia_gpu(), "tensorrt": importlib.util.find_spec("tensorrt") is not None,
            "triton": importlib.util.find_spec("triton") is not None}


def what_runs_here(m: dict) -> str:
    gpu = "an NVIDIA GPU" if m["nvidia_gpu"] else "no GPU"
    trt = "TensorRT installed" if m["tensorrt"] else "no TensorRT"
    logic = ("logic kernels on the GPU" if m["nvidia_gpu"] else "logic kernels under Triton's interpreter") \
        if m["triton"] else "no Triton: logic networks refused (pip install 'gatec[gpu]')"
    return f"this machine: {gpu}, {trt}; builds engine.onnx, verified emulated on the CPU; {logic}"


def profile(ir: IR, max_batch: int) -> dict:
    """TensorRT's optimization profile, per input: min/opt/max shapes. The batch runs from 1 to
    max_batch (opt: the example's); other dynamic axes (time, space) from the example's length to
    SEQUENCE_GROWTH times it."""
    shapes = {}
    for s in ir.inputs:
        lo, hi = list(s.shape), list(s.shape)
        for axis in s.dynamic:
            if axis == s.batch_axis:
                lo[axis], hi[axis] = 1, max(max_batch, s.shape[axis])
            else:
                hi[axis] = s.shape[axis] * SEQUENCE_GROWTH
        shapes[s.name] = {"min": lo, "opt": list(s.shape), "max": hi}
    return shapes


def trtexec_command(shapes: dict, precision: str) -> str:
    def arg(which):
        return ",".join(f"{name}:{'x'.join(map(str, p[which]))}" for name, p in shapes.items())
    flags = " --noTF32" if precision == "fp32" else ""  # fp32 layers would otherwise be allowed TF32
    return (f"trtexec --onnx={ENGINE_GRAPH} --stronglyTyped{flags} --minShapes={arg('min')} --optShapes={arg('opt')} "
            f"--maxShapes={arg('max')} --saveEngine=engine.plan")


class GpuTarget(Target):
    name = "gpu"
    options = (
        Option("precision", "gpu: the engine's arithmetic, fp32, fp16 (default) or int8 (symmetric, from a quantized "
                            "model's scales)", default="fp16"),
        Option("max_batch", "gpu: the largest batch of the engine's optimization profile (default 4096)",
               type=integer_at_least(1), default=4096),
    )

    def describe(self) -> str:
        return f"strongly typed ONNX engines (fp32/fp16/int8) and Triton logic kernels ({what_runs_here(machine())})"

    def plan(self, ir: IR, options: dict, data=None) -> Plan:
        from ...ir.fixed_point import refuse_fixed_point
        refuse_fixed_point(ir.model, self.name)
        settings = self.settings(options)
        m = machine()
        if ir.kind == "logic":
            if not m["triton"]:
                raise GatecError("the gpu target runs logic networks with Triton, which is not installed "
                                 "(pip install 'gatec[gpu]')")
            from ..logic_input import split_logic
            split_logic(ir)  # refuses a network that is not a logic chain, before anything is written
            notes = [] if m["nvidia_gpu"] else ["no GPU on this machine: the logic kernels run under Triton's "
                                                "interpreter (the GPU's result bit for bit, not its speed)"]
            return Plan(ir, options, None, {"runner": "triton" if m["nvidia_gpu"] else "triton-interpreter"}, notes)
        precision = settings["precision"]
        if precision not in PRECISIONS:
            raise GatecError(f"--precision {precision}: the gpu target takes {', '.join(PRECISIONS)}")
        from .typed import typed, fp32_nodes
        from .emulated import scale_rtol
        graph = typed(ir.model, precision, ir.is_qonnx)
        shapes = profile(ir, settings["max_batch"])
        details = {"precision": precision, "profile": shapes, "runner": "emulated", "engine": None,
                   "fp32_nodes": fp32_nodes(graph) if precision == "fp16" else [],
                   "trtexec": trtexec_command(shapes, precision)}
        why = "TensorRT is installed but gatec builds no plan with it yet" if m["tensorrt"] and m["nvidia_gpu"] \
            else "this machine has no GPU" if not m["nvidia_gpu"] else "gatec builds no CUDA engine itself yet"
        notes = [f"no engine built ({why}); {ENGINE_GRAPH} is written and verified by emulating its {precision} "
                 f"arithmetic on the CPU"]
        return Plan(ir, options, (graph, scale_rtol(graph, "fp32" if precision == "int8" else precision)),
                    details, notes)

    def build(self, plan: Plan, folder: Path) -> list[str]:
        folder = Path(folder)
        if plan.ir.kind == "logic":
            from ..logic_input import write_logic
            return write_logic(plan.ir, folder)
        graph, _ = plan.parts
        (folder / ENGINE_GRAPH).write_bytes(graph.SerializeToString(deterministic=True))
        d = plan.details
        (folder / README).write_text(
            f"# gatec gpu artifact ({d['precision']})\n\n"
            f"`{ENGINE_GRAPH}` is strongly typed: every tensor's type is in the graph. Build the TensorRT engine "
            f"with the model's shapes (the optimization profile is also in manifest.json):\n\n"
            f"    {d['trtexec']}\n")
        return [ENGINE_GRAPH, README]

    def load(self, folder: Path, options: dict):
        folder = Path(folder)
        if (folder / ENGINE_GRAPH).exists():
            return EmulatedRunner(folder / ENGINE_GRAPH, self.settings(options)["precision"])
        return LogicRunner(folder)

    def tolerance(self, plan: Plan) -> Tolerance:
        if plan.ir.kind == "logic":
            return Tolerance(exact=True)
        rel = plan.parts[1]
        if plan.details["precision"] == "int8":
            from ..cpu.quant import quantized_tolerance
            q = quantized_tolerance(plan.ir.model)  # one step of the output's quantizer, or the float bound
            return Tolerance(atol=q.atol, rtol=max(q.rtol, rel), scale_rtol=rel)
        return Tolerance(rtol=rel, scale_rtol=rel)


class EmulatedRunner:
    """The engine graph run by ONNX Runtime on the CPU at its own precision (emulated.py)."""

    def __init__(self, path: Path, precision: str):
        import onnx
        from ..cpu import Runner
        from .emulated import emulated_fp16
        model = onnx.load(str(path))
        self.runner = Runner(emulated_fp16(model) if precision == "fp16" else model, optimize=False)
        self.label = f"emulated {precision}"

    def run(self, arrays):
        return self.runner.run(arrays)


class LogicRunner:
    """The input encoder (the cpu target's), then the Triton kernels."""

    def __init__(self, folder: Path):
        from ..cpu import Encoder
        from ..logic_input import read_netlist
        from .logic import TritonLogicRunner, level_plan
        self.kernels = TritonLogicRunner(level_plan(read_netlist(folder)))
        self.label = self.kernels.label
        self.encoder = Encoder(folder)

    def run(self, arrays):
        return [self.kernels.scores(self.encoder.bits(arrays))]


TARGET = GpuTarget()
