"""Arithmetic networks (gated, quantized) -> an hls4ml project, verified by hls4ml's C simulation:
the generator behind target `fpga` for networks its Verilog flow does not take.

The hls4ml layer list is built from gatec's IR by convert.py with one handler per ONNX op
(layers/; hls4ml's own ONNX and PyTorch front ends miss or miscompile GRU, LSTM, Split and
softmax outputs). `plan` checks the options and converts once; `build` writes the plan. The artifact
holds the project as hls4ml writes it (`hls4ml_prj/`, ready for vitis_hls / vivado_hls on a
machine that has them), the IR it came from (`model.onnx`), `hls_config.json` (what the runner
needs) and `hls_summary.json` + `resources.png` (what was configured and an estimate of the
cost; nothing is synthesized here). The runner compiles the written project with g++ through
hls4ml (bit-accurate C simulation) and runs `predict`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ... import progress
from ...errors import GatecError
from ...ir import IR
from ...ir.fixed_point import PRECISION_RE, accumulator, declared_types, width_and_integer
from .. import Option, Tolerance
from . import auto_precision
from .act import RECURRENT
from .convert import Converted, convert
from .layers import logic, lookup

BACKENDS = {"vivado": "Vivado", "vitis": "Vitis", "quartus": "Quartus", "catapult": "Catapult"}
IO_TYPES = ("io_parallel", "io_stream")
STRATEGIES = ("latency", "resource")
DEFAULT_PRECISION = "ap_fixed<16,6>"
QUANTIZED_DEFAULT = "ap_fixed<32,16>"  # where a quantized model sets no precision: wide enough not to round
QUANTIZED_INPUT = "ap_fixed<64,24>"
TABLE_SIZE = 4096
TABLE_TYPE = "ap_fixed<18,2>"
PROJECT = "hls4ml_prj"
PROJECT_NAME = "gatec_model"
IR_FILE = "model.onnx"
CONFIG_FILE = "hls_config.json"


OPTIONS = (  # the hls4ml options every target using this flow takes (fpga adds the backend and part)
    Option("io_type", "hls4ml: (default io_parallel)", choices=IO_TYPES, default="io_parallel"),
    Option("strategy", "hls4ml: (default latency)", choices=STRATEGIES, default="latency"),
    Option("reuse_factor", "hls4ml: multipliers shared N ways (default 1)", type=int, default=1, metavar="N"),
    Option("precision", "hls4ml: auto (default: each layer's types from the values it takes on --data or the "
                        "emulator's inputs, 16 bits; auto<W> for W bits), or one type for every layer, e.g. "
                        "ap_fixed<16,6> (quantizers set their own)", metavar="TYPE"),
)


def settings(options: dict) -> dict:
    """The hls4ml settings from the target options, checked."""
    backend = str(options.get("backend", "vitis")).lower()
    if backend not in BACKENDS:
        raise GatecError(f"--backend {backend}: use one of {', '.join(BACKENDS)}")
    io_type = str(options.get("io_type", "io_parallel")).lower()
    if io_type not in IO_TYPES:
        raise GatecError(f"--io-type {io_type}: use one of {', '.join(IO_TYPES)}")
    strategy = str(options.get("strategy", "latency")).lower()
    if strategy not in STRATEGIES:
        raise GatecError(f"--strategy {strategy}: use one of {', '.join(STRATEGIES)}")
    try:
        reuse = int(options.get("reuse_factor", 1))
    except (TypeError, ValueError):
        reuse = 0
    if reuse < 1:
        raise GatecError(f"--reuse-factor {options.get('reuse_factor')}: give a whole number >= 1")
    precision = options.get("precision")
    auto = auto_precision.parse(precision)
    if precision is not None and auto is None:
        precision = str(precision).replace(" ", "")
        if not PRECISION_RE.match(precision):
            raise GatecError(f"--precision {precision}: give auto, auto<W> or a type like ap_fixed<16,6>")
    return {"backend": BACKENDS[backend], "io_type": io_type, "strategy": strategy.capitalize(),
            "reuse_factor": reuse, "precision": None if auto else precision, "part": options.get("part"),
            **({"auto": auto} if auto else {}),
            # an ASIC (Catapult): its library instead of a part
            **({"technology": "asic", "asic_library": options.get("asic_library") or "nangate-45nm"}
               if options.get("technology") == "asic" else {})}


def on_grid_of(values, precision: str) -> bool:
    """Do `values` lie on the grid of `precision` (multiples of its LSB)?"""
    width, integer = width_and_integer(precision)
    scaled = np.asarray(values, dtype=np.float64) * 2.0 ** (width - integer)
    return bool(np.all(scaled == np.round(scaled)))


def softmax_config(n: int) -> dict:
    """hls4ml's 'stable' softmax looks exp(x_max - x) and 1/sum up in tables indexed by the top
    log2(table size) bits of their argument's type. With its default types (sum: ap_fixed<18,8>,
    differences: the input's width) the index steps are 1/4 for the sum and 1/32 for the
    differences: outputs off by up to 0.2 (measured, a 6-class MLP). Here the difference is held in
    ap_ufixed<18,4> (saturating at 16, where exp is 1e-7: step 2**-8 with 4096 entries) and the sum,
    which lies in [1, n], with just enough integer bits for n (step 2**-9 for n <= 8); table
    entries get 17 fractional bits."""
    integer = max(1, int(np.ceil(np.log2(n + 1))))
    return {"Implementation": "stable", "table_size": TABLE_SIZE, "exp_table_t": "ap_ufixed<18,1,AP_RND,AP_SAT>",
            "inv_table_t": "ap_ufixed<18,1,AP_RND,AP_SAT>", "inv_inp_t": f"ap_ufixed<18,{integer},AP_RND,AP_SAT>"}


def softmax_difference_type(name: str):
    """The type of x_max - x in the stable softmax (hls4ml takes no config key for it)."""
    from hls4ml.model.types import FixedPrecisionType, NamedType, RoundingMode, SaturationMode
    return NamedType(f"{name}_inp_norm_t", FixedPrecisionType(18, 4, signed=False, rounding_mode=RoundingMode.RND,
                                                              saturation_mode=SaturationMode.SAT))


def hls_config(conv: Converted, s: dict) -> dict:
    """hls4ml's HLSConfig: the model default and, per layer, the precisions quantizers fixed."""
    default = s["precision"] or (QUANTIZED_DEFAULT if conv.quantized else DEFAULT_PRECISION)
    if conv.quantized and not s["precision"] and (conv.float_scales or any(
            "bias_data" in layer and not on_grid_of(layer["bias_data"], default) for layer in conv.layers)):
        # a float bias (Brevitas leaves them unquantized), or a quantizer with a float scale or a zero point
        # (weights folded off any grid, values scaled by 1/s): the values after it keep the float32 bits, so
        # that the next quantizer rounds what the reference rounds (at ap_fixed<32,16> the bias and sums
        # were truncated to 2**-16 first, moving a value across a rounding step once in ~400)
        default = QUANTIZED_INPUT
    accum = s.get("accum") or accumulator(default)  # a fixed-point model's own, else gatec's rule
    config = {"Model": {"Precision": {"default": default, "accum": accum},
                        "ReuseFactor": s["reuse_factor"], "Strategy": s["strategy"]}}
    layers = {name: {"Precision": dict(types)} for name, types in sorted(s.get("layer_types", {}).items())}
    for name, types in sorted(conv.precisions.items()):
        if s["precision"] and "result" not in types:
            continue  # --precision overrides what the quantizers only suggest (weights)
        layers[name] = {"Precision": dict(types)}
    for layer in conv.layers:
        if layer["class_name"] == "InputLayer" and conv.quantized and not s["precision"]:
            # float32 inputs held exactly (|x| >= 2**-16), so that an input quantizer rounds once
            layers[layer["name"]] = {"Precision": {"result": QUANTIZED_INPUT}}
        if layer["class_name"] in RECURRENT or layer.get("activation") in ("sigmoid", "tanh", "elu", "selu"):
            # the sigmoid/tanh tables: 4096 entries over [-8, 8) (hls4ml's default is 1024), values
            # with 16 fractional bits: the table's step error drops from 1/64 to 1/256 (tanh, slope <= 1);
            # elu/selu: 4096 entries over [-8, 0]
            entry = layers.setdefault(layer["name"], {})
            entry["table_size"] = s.get("table_size", TABLE_SIZE)
            entry["table_t"] = s.get("table", TABLE_TYPE)
        if layer["name"] in conv.wide and not (s.get("declared") and layer["class_name"] == "GRU"):
            # (a fixed-point model's GRU keeps its state at the precision: gatec.qat.fixed_layers)
            # hls4ml's LSTM passes its input, state and product arrays to one dense template:
            # it compiles only when input, result and accumulator types are the same
            precision = layers.setdefault(layer["name"], {}).setdefault("Precision", {})
            precision.update(result=accum, accum=accum)
        if layer["class_name"] == "Softmax":
            # the sum runs over one slice: n_in / n_outer values
            layers.setdefault(layer["name"], {}).update(softmax_config(layer["n_in"] // layer.get("n_outer", 1)))
    if layers:
        config["LayerName"] = layers
    return config


@dataclass
class Hls4mlPlan:
    """One IR checked and converted once, for `build` and `tolerance`."""
    ir: IR
    options: dict
    settings: dict  # settings(options)
    converted: Converted


def plan(ir: IR, options: dict, sample_shapes: list[list[int]] | None = None, data=None,
         layer_types: dict | None = None) -> Hls4mlPlan:
    """The options checked and the IR converted (at other per-sample input shapes than its own
    where `sample_shapes` is given: the runner's); raises GatecError naming the first node it
    cannot build. A float model at --precision auto (the default) gets per-layer types profiled on
    `data` (else the emulator's inputs), or `layer_types` where the runner gives those it built with."""
    s = settings(options)
    declared = declared_types(ir.model)
    if declared:  # a gatec.qat fixed-point model: its types, and the firmware is the model bit for bit
        own = declared["precision"].replace(" ", "")
        s["precision"] = s["precision"] or own
        exact = s["precision"] == own
        s.update(declared=True, table=declared["table"], table_size=int(declared["table_size"]),
                 accum=declared.get("accum") if exact else None, exact=exact)
    conv = convert(ir, sample_shapes)
    if conv.quantized or declared or conv.logic:
        s.pop("auto", None)  # the quantizers' (or the fixed-point model's) own types; logic is bits
    elif s["precision"] is None:
        s["auto"] = s.get("auto") or auto_precision.WIDTH
        if layer_types is None:
            ranges = auto_precision.observed(ir, conv.graph, conv.tensors, data)
            layer_types = auto_precision.choose(conv.layers, ranges, s["auto"])
            s["observed"] = {k: float(f"{v:.6g}") for k, v in sorted(ranges.items())}
        s["layer_types"] = layer_types
    recurrent = next((l for l in conv.layers if l["class_name"] in RECURRENT), None)
    if recurrent and s["backend"] == "Catapult":
        raise GatecError(f"fpga (hls4ml): layer '{recurrent['name']}' ({recurrent['class_name']}): hls4ml 1.3's "
                         f"Catapult backend cannot build recurrent layers (its templates fail: 'out_0')")
    if conv.logic and s["backend"] not in logic.BACKENDS:
        raise GatecError(f"fpga (hls4ml): logic layers are written for the {' and '.join(logic.BACKENDS)} "
                         f"backends, not {s['backend']}")
    if s["io_type"] == "io_stream":
        # both read and write whole arrays: gatec's layers index them, hls4ml's softmax over several
        # slices (multidim) exists for io_parallel only
        for layer in conv.layers:
            if layer["class_name"] in ("GatecLookup", "GatecClip") or layer.get("n_outer", 1) > 1:
                raise GatecError(f"fpga (hls4ml): layer '{layer['name']}' ({layer['class_name']}) is written for "
                                 f"io_parallel only, not io_stream")
    if conv.custom and s["backend"] not in lookup.BACKENDS:
        raise GatecError(f"fpga (hls4ml): gatec's lookup and clip layers (GELU's erf, softplus, Clip) are written "
                         f"for the {' and '.join(lookup.BACKENDS)} backends, not {s['backend']}")
    return Hls4mlPlan(ir, options, s, conv)


def make_model(p: Hls4mlPlan, folder: Path):
    """(hls4ml ModelGraph, settings with the part hls4ml resolved) for the plan, writing into `folder`."""
    import hls4ml  # noqa: F401  (registers the backends)
    from hls4ml.model import ModelGraph
    from hls4ml.utils.config import create_config
    s, conv = p.settings, p.converted
    if conv.logic:
        logic.register()
    if conv.custom:
        lookup.register()
    kwargs = {"io_type": s["io_type"]}
    if s.get("technology") == "asic":
        kwargs.update(tech="asic", asiclibs=s["asic_library"])
    elif s["part"]:
        kwargs["part"] = s["part"]
    config = create_config(output_dir=str(folder), project_name=PROJECT_NAME, backend=s["backend"], **kwargs)
    config["HLSConfig"] = hls_config(conv, s)
    layers = copy.deepcopy(conv.layers)  # hls4ml's own to change: the plan builds again the same
    for layer in layers:
        if layer["class_name"] == "Softmax":
            layer["inp_norm_t"] = softmax_difference_type(layer["name"])
    try:
        model = ModelGraph.from_layer_list(config, layers, inputs=conv.inputs, outputs=conv.outputs)
    except GatecError:
        raise
    except Exception as e:
        raise GatecError(f"fpga (hls4ml): hls4ml cannot build the model: {str(e).splitlines()[0][:300]}") from None
    for layer in model.get_layers():
        if layer.class_name not in ("Input", "InputLayer", "Reshape") and not layer.get_attr("function_cpp"):
            # the backend writes no call for a layer it has no template of: the firmware would skip it
            # (hls4ml 1.3's Catapult backend has no cropping, and says nothing)
            raise GatecError(f"fpga (hls4ml): layer '{layer.name}' ({layer.class_name}): hls4ml's {s['backend']} "
                             f"backend has no implementation of it")
    return model, {**s, "resolved_part": model.config.get_config_value("Part")}


def output_specs(ir: IR, conv: Converted) -> list[dict]:
    outs = []
    for spec, (shape, batch) in zip(ir.outputs, conv.output_shapes):
        outs.append({"name": spec.name, "batch_axis": batch, "shape": shape})
    return outs


def normalise(folder: Path, stamp: str) -> None:
    """hls4ml writes the absolute output folder into its config and scripts, and a random stamp
    (uuid4, naming the compiled library) into the config's Stamp line and build_lib.sh's LIB_STAMP
    line: the folder becomes '.', the stamp one derived from the content, so that the same input
    writes the same bytes. Only those two lines are rewritten: a stamp of digits alone could also be
    a piece of a weight, and YAML writes it quoted."""
    if not isinstance(yaml.safe_load(stamp), str):
        stamp = "s" + stamp[1:]  # YAML would read it back as a number, naming another library
    lines = {"hls4ml_config.yml": (r"^Stamp: .*$", f"Stamp: {stamp}"),
             "build_lib.sh": (r"^LIB_STAMP=.*$", f"LIB_STAMP={stamp}")}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".yml", ".tcl", ".cpp", ".h", ".sh"):
            data = path.read_bytes()
            new = data.replace(str(folder).encode(), b".")
            if path.name in lines and path.parent == folder:
                pattern, line = lines[path.name]
                new = re.sub(pattern.encode(), line.encode(), new, count=1, flags=re.M)
            if new != data:
                path.write_bytes(new)


HLS4ML_LOCK = threading.Lock()  # hls4ml's model building and writing share state between models


def write_project(p: Hls4mlPlan, project: Path):
    """(hls4ml model, settings with the resolved part): the project written into `project`, normalised."""
    project = Path(project).resolve()
    tar = project.with_name(project.name + ".tar.gz")
    existed = tar.exists()
    with HLS4ML_LOCK:
        model, s = make_model(p, project)
        model.write()
    if not existed:  # the Catapult writer archives the project beside it, always (not an artifact's file)
        tar.unlink(missing_ok=True)
    normalise(project, hashlib.sha256(p.ir.to_bytes() + json.dumps(s, sort_keys=True).encode()).hexdigest()[:8])
    return model, s


def variable_order(model) -> dict:
    """The top function's inputs and outputs in its own order (hls4ml's written config lists them
    sorted by name, and its linked model passes buffers in that order: layer10_out before layer8_out)."""
    return {"inputs": [v.name for v in model.get_input_variables()],
            "outputs": [v.name for v in model.get_output_variables()]}


def linked(where: Path, order: dict):
    from hls4ml.utils.link import FilesystemModelGraph
    model = FilesystemModelGraph(where)
    for attr, names in (("in_vars", order["inputs"]), ("out_vars", order["outputs"])):
        found = {v.name: v for v in getattr(model, attr)}
        setattr(model, attr, [found[n] for n in names])
    return model


def build(p: Hls4mlPlan, folder: Path) -> list[str]:
    from .summary import write_summary
    folder, ir = Path(folder), p.ir
    model, s = write_project(p, folder / PROJECT)
    (folder / IR_FILE).write_bytes(ir.to_bytes())
    config = {"settings": s, "inputs": [{"name": i.name, "batch_axis": i.batch_axis} for i in ir.inputs],
              "variables": variable_order(model),
              "outputs": output_specs(ir, p.converted),
              "sample_shapes": [[d for a, d in enumerate(i.shape) if a != i.batch_axis] for i in ir.inputs]}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    files = write_summary(folder, model, p.converted, s)
    return [IR_FILE, CONFIG_FILE, PROJECT + "/"] + files


class Runner:
    """hls4ml's C simulation of the written project (compiled with g++ on first use). Inputs of
    another per-sample shape (a recurrent model at another sequence length) get the same
    conversion for that shape, compiled apart: the design itself is for the shape it was built for."""

    def __init__(self, folder: Path, options: dict):
        self.folder = Path(folder)
        self.options = options
        self.config = json.loads((self.folder / CONFIG_FILE).read_text())
        self.tmp = tempfile.TemporaryDirectory(prefix="gatec-hls-")
        self.models: dict[tuple, object] = {}

    def model_for(self, sample_shapes: tuple):
        if sample_shapes in self.models:
            return self.models[sample_shapes]
        import hls4ml  # noqa: F401
        where = Path(self.tmp.name) / f"prj{len(self.models)}"
        if [list(s) for s in sample_shapes] == self.config["sample_shapes"]:
            shutil.copytree(self.folder / PROJECT, where)
            out_shapes = [(o["shape"], o["batch_axis"]) for o in self.config["outputs"]]
            order = self.config["variables"]
        else:
            other = plan(IR.load(self.folder / IR_FILE), self.options_used(), [list(s) for s in sample_shapes],
                         layer_types=self.config["settings"].get("layer_types", {}))
            built, _ = write_project(other, where)
            out_shapes, order = other.converted.output_shapes, variable_order(built)
        # this copy's own folder, and a fresh stamp naming its library, set in the config and the
        # build script alike (so that two runners never share a library name)
        # a letter first: hls4ml reads the stamp back with yaml.safe_load, which turns a stamp such as
        # 01434132 into an int (octal), so the library it then loads is not the one build_lib.sh wrote
        stamp = "s" + uuid.uuid4().hex[:7]
        cfg, script = where / "hls4ml_config.yml", where / "build_lib.sh"
        text = re.sub(r"^Stamp: .*$", f"Stamp: {stamp}", cfg.read_text(), flags=re.M)
        cfg.write_text(re.sub(r"^OutputDir: .*$", f"OutputDir: {where}", text, flags=re.M))
        script.write_text(re.sub(r"^LIB_STAMP=.*$", f"LIB_STAMP={stamp}", script.read_text(), flags=re.M))
        model = linked(where, order)
        try:
            with progress.stage("compiling hls4ml's C simulation with g++"):
                model.compile()
        except Exception as e:
            raise GatecError(f"fpga (hls4ml): the C simulation does not compile: {str(e).splitlines()[0][:300]}")
        self.models[sample_shapes] = (model, out_shapes, where)
        return self.models[sample_shapes]

    def options_used(self) -> dict:
        s = self.config["settings"]
        return {"backend": s["backend"].lower(), "io_type": s["io_type"], "strategy": s["strategy"],
                "reuse_factor": s["reuse_factor"], "part": s["part"], "technology": s.get("technology"),
                "asic_library": s.get("asic_library"),
                "precision": s["precision"] or (f"auto<{s['auto']}>" if s.get("auto") else None)}

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        ins = self.config["inputs"]
        samples = [np.moveaxis(np.asarray(a, dtype=np.float32), i["batch_axis"], 0) for a, i in zip(arrays, ins)]
        n = samples[0].shape[0]
        model, out_shapes, where = self.model_for(tuple(tuple(a.shape[1:]) for a in samples))
        flat = [np.ascontiguousarray(a.reshape(n, -1)) for a in samples]
        predict = lambda: model.predict(flat[0] if len(flat) == 1 else flat)  # noqa: E731
        if self.config["settings"]["backend"] == "Catapult":
            # Catapult's C simulation reads its weights from ./firmware/weights (relative to the
            # working folder) and exits the process when they are missing
            with HLS4ML_LOCK:
                here = os.getcwd()
                os.chdir(where)
                try:
                    y = on_a_large_stack(predict)
                finally:
                    os.chdir(here)
        else:
            y = on_a_large_stack(predict)
        ys = y if isinstance(y, list) else [y]
        outs = []
        for y, (shape, batch) in zip(ys, out_shapes):
            sample = [d for a, d in enumerate(shape) if a != batch]
            y = np.asarray(y, dtype=np.float32).reshape(n, *sample)
            outs.append(np.moveaxis(y, 0, batch))
        return outs


SIMULATION_STACK = 1 << 30
STACK_SIZE_LOCK = threading.Lock()  # threading.stack_size is process-wide for new threads


def on_a_large_stack(fn):
    """fn() in a thread with a 1 GiB stack (virtual: only what it touches is memory): hls4ml's C
    simulation keeps whole feature maps on the stack (a 16 MB frame for a 512 x 512 image at
    io_stream), past the usual 8 MB, where the process would end in a segfault."""
    result, failure = [], []

    def call():
        try:
            result.append(fn())
        except BaseException as e:  # raised again in the caller's thread
            failure.append(e)
    with STACK_SIZE_LOCK:
        before = threading.stack_size(SIMULATION_STACK)
        try:
            thread = threading.Thread(target=call, name="hls4ml-csim", daemon=True)
            thread.start()
        finally:
            threading.stack_size(before)
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def load(folder: Path, options: dict) -> Runner:
    return Runner(Path(folder), options)


def tolerance(p: Hls4mlPlan) -> Tolerance:
    from .summary import error_bound
    if p.settings.get("exact"):
        return Tolerance(exact=True)
    precision = p.settings["precision"]
    if p.settings.get("layer_types"):
        return Tolerance(atol=error_bound(p.converted, auto_precision.fewest_fraction_bits(p.converted.layers,
                                                                                          p.settings["layer_types"])))
    if precision is None:
        return Tolerance(atol=error_bound(p.converted))
    width, integer = width_and_integer(precision)
    return Tolerance(atol=error_bound(p.converted, width - integer))
