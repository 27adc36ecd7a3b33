"""Target `cpu`: an ONNX model run by ONNX Runtime on the CPU.

Arithmetic graphs run as traced; QONNX quantizers are lowered to standard ONNX (quant.py: exact
float ops, or QuantizeLinear/Clip/DequantizeLinear with quant_form="qdq"); logic networks are
lowered to a bit-packed graph (64 samples per uint64 word, Bitwise* ops) that ONNX Runtime runs
with no custom ops.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from ...errors import GatecError
from ...ir.fixed_point import refuse_fixed_point
from ...ir import IR, LOGIC_DOMAIN, LOGIC_OP_TYPES, QONNX_DOMAINS
from .. import Option, Plan, Target, Tolerance, non_negative_int

MODEL_FILE = "model.onnx"
QONNX_OPS = {"Quant", "BipolarQuant", "Trunc", "MultiThreshold"}


def check(ir: IR) -> None:
    for node in ir.model.graph.node:
        if node.domain in ("", "ai.onnx"):
            if not onnx.defs.has(node.op_type):
                raise unsupported(node)
        elif node.domain == LOGIC_DOMAIN:
            if node.op_type not in LOGIC_OP_TYPES:
                raise unsupported(node)
        elif node.domain in QONNX_DOMAINS:
            if node.op_type not in QONNX_OPS:
                raise unsupported(node)
        else:
            raise unsupported(node)


def unsupported(node) -> GatecError:
    op = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
    return GatecError(f"node '{node.name or node.output[0]}' has op {op}, which no gatec target supports "
                      f"(supported: standard ONNX ops up to opset 18, {LOGIC_DOMAIN}::{{{','.join(LOGIC_OP_TYPES)}}}, "
                      f"QONNX {{{','.join(sorted(QONNX_OPS))}}})")


LOGIC_FORMS = ("bitpacked", "float")


def lower(ir: IR, options: dict | None = None) -> onnx.ModelProto:
    if ir.kind == "logic":
        from .bitpacked import lower_logic, lower_logic_float
        form = (options or {}).get("logic_form", "bitpacked")
        if form not in LOGIC_FORMS:
            raise GatecError(f"unknown logic_form '{form}' (use {' or '.join(LOGIC_FORMS)})")
        return lower_logic(ir) if form == "bitpacked" else lower_logic_float(ir)
    if ir.is_qonnx:
        from .quant import lower_qonnx
        return lower_qonnx(ir.model, (options or {}).get("quant_form", "float"))
    return ir.model


class Encoder:
    """The bits a logic artifact's netlist reads: its input encoder (encoder.onnx, run by ONNX
    Runtime) where it has one, else the input itself, flattened (nn.Flatten())."""

    def __init__(self, folder: Path, threads: int = 0):
        from ..logic_input import ENCODER_FILE
        path = Path(folder) / ENCODER_FILE
        self.runner = Runner(path, threads) if path.exists() else None

    def bits(self, arrays: list[np.ndarray]) -> np.ndarray:
        return self.runner.run(arrays)[0] if self.runner else arrays[0].reshape(len(arrays[0]), -1)


class EngineRunner:
    """gatec's logic engine (gatec/engine.py) on the artifact's netlist, after its input encoder."""

    def __init__(self, folder: Path, threads: int = 0):
        from ...engine import Engine
        from ..logic_input import read_netlist
        self.engine = Engine(read_netlist(folder), threads)  # 0: every core this process may use
        self.encoder = Encoder(folder, threads)

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        x = self.encoder.bits(arrays)
        return [self.engine.run(x if x.dtype in (np.uint8, np.bool_) else x.astype(np.uint8))]


ONNX_TO_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
                 "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


class Runner:
    """An ONNX model (a file or a ModelProto) in ONNX Runtime, inputs cast to the model's dtypes;
    optimize=False runs each op as the graph says (gatec.ir.runtime.ort_session)."""

    def __init__(self, model, threads: int = 0, optimize: bool = True):
        from ...ir.runtime import ort_session, run_session
        self._run_session = run_session
        self.session = ort_session(model, threads, failure="ONNX Runtime cannot load the compiled model",
                                   optimize=optimize)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_dtypes = [ONNX_TO_NUMPY.get(i.type, None) for i in self.session.get_inputs()]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        arrays = [a if t is None or a.dtype == t else a.astype(t) for a, t in zip(arrays, self.input_dtypes)]
        return self._run_session(self.session, dict(zip(self.input_names, arrays)), "the compiled model fails in ONNX Runtime")


class CpuTarget(Target):
    name = "cpu"
    options = (
        Option("engine", "cpu, logic networks: gatec's engine (auto) or ONNX Runtime's bit-packed graph",
               choices=("auto", "onnxruntime"), default="auto"),
        Option("logic_form", "cpu, logic networks: the form of model.onnx", choices=LOGIC_FORMS, default="bitpacked"),
        Option("quant_form", "cpu, quantized models: quantizers as float32 ops, exact (default), or QuantizeLinear/"
                             "DequantizeLinear for ONNX Runtime's integer kernels (faster, the same values)",
               choices=("float", "qdq"), default="float"),
        Option("threads", "threads the artifact's runtime may use (0: gatec's engine all cores, ONNX Runtime "
                          "its own default)", type=non_negative_int,
               default=0),
    )

    def describe(self) -> str:
        from importlib.metadata import version  # not onnxruntime itself: a logic artifact runs without it
        return f"ONNX Runtime {version('onnxruntime')} on the CPU (logic networks bit-packed, 64 samples per word)"

    def plan(self, ir: IR, options: dict, data=None) -> Plan:
        refuse_fixed_point(ir.model, self.name)
        check(ir)
        return Plan(ir, options, lower(ir, options))

    def build(self, plan: Plan, folder: Path) -> list[str]:
        """model.onnx always (ONNX Runtime's form); for logic networks also the netlist that gatec's
        C engine runs (it beats the bit-packed graph by far: benchmarks/bench_logic.py),
        unless options["engine"] == "onnxruntime"."""
        ir, options, model = plan.ir, plan.options, plan.parts
        folder = Path(folder)
        (folder / MODEL_FILE).write_bytes(model.SerializeToString(deterministic=True))
        files = [MODEL_FILE]
        if ir.kind == "logic" and options.get("engine", "auto") != "onnxruntime":
            from ..logic_input import write_logic
            files += write_logic(ir, folder)
        return files

    def load(self, folder: Path, options: dict):
        threads = int(options.get("threads", 0))
        from ..logic_input import NETLIST_FILE
        if (Path(folder) / NETLIST_FILE).exists() and options.get("engine", "auto") != "onnxruntime":
            return EngineRunner(Path(folder), threads)
        return Runner(Path(folder) / MODEL_FILE, threads)

    def tolerance(self, plan: Plan) -> Tolerance:
        if plan.ir.kind == "logic":
            return Tolerance(exact=True)
        if plan.ir.is_qonnx:
            from .quant import quantized_tolerance
            return quantized_tolerance(plan.ir.model)
        return Tolerance(atol=1e-4, rtol=1e-4)


TARGET = CpuTarget()
