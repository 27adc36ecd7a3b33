"""Pickled logic networks read without torch: a `torch.save(model)` file holding an
nn.Sequential of gatec's LogicLayer and GroupSum (a Flatten first, at most) becomes the same IR
that tracing gives, byte for byte, with no torch import (about 1.7 s of a first result).

The unpickler makes stand-ins for the few classes such a file names and reads tensors from the
archive with numpy; any other class, and any layout it does not know, answers None and the file
takes torch's path (pickled.py). The reference stays the PyTorch module: torch is imported and
the file loaded the usual way when something runs it (verification), not before.
"""
from __future__ import annotations

import importlib.metadata
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from ..ir import IR, LOGIC_DOMAIN, OPSET, TensorSpec, value_info_specs
from ..ir.logic import Layer, logic_layer_node

# the exporter's file header: trace_to_ir writes these through torch.onnx.export
IR_VERSION = 8

STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
            "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
            "ByteStorage": np.uint8, "BoolStorage": np.bool_}
MODULES = {"torch.nn.modules.container.Sequential", "torch.nn.modules.flatten.Flatten",
           "gatec.nn.logic.LogicLayer", "gatec.nn.logic.GroupSum"}


class Unknown(Exception):
    """The file names something this reader does not know: torch's path reads it."""


class Stub:
    """A module as the pickle holds it: its class name and its __dict__."""
    kind = ""


def rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_):
    size, stride = tuple(size), tuple(stride)
    ints = all(isinstance(v, int) and v >= 0 for v in (offset, *size, *stride))
    if not isinstance(storage, np.ndarray) or not ints or len(size) != len(stride):
        raise Unknown("a tensor this reader does not know")
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    if 0 in size:
        return np.zeros(size, storage.dtype)
    if offset + sum((n - 1) * s for n, s in zip(size, stride)) >= len(storage):  # as_strided checks nothing
        raise Unknown("a tensor larger than its storage")
    return np.lib.stride_tricks.as_strided(storage[offset:], size, tuple(s * storage.itemsize for s in stride)).copy()


def rebuild_parameter(data, *_):
    return data


class Reader(pickle.Unpickler):
    def __init__(self, archive: zipfile.ZipFile, prefix: str, data: bytes):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        full = f"{module}.{name}"
        if full in MODULES:
            return type(name, (Stub,), {"kind": full})
        if module == "torch" and name in STORAGES:
            return STORAGES[name]
        if full == "torch._utils._rebuild_tensor_v2":
            return rebuild_tensor
        if full == "torch._utils._rebuild_parameter":
            return rebuild_parameter
        if full == "collections.OrderedDict":
            return dict
        if full in ("__builtin__.set", "builtins.set"):
            return set
        raise Unknown(full)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid[0] == "storage" and pid[1] in STORAGES.values()):
            raise Unknown(str(pid[:2]))
        raw = self.archive.read(f"{self.prefix}data/{pid[2]}")
        return np.frombuffer(raw, dtype=np.dtype(pid[1]).newbyteorder("<"))


def read_stubs(path: Path) -> Stub | None:
    """The pickled object with stand-ins for its modules; None when the file is not such a pickle."""
    try:
        archive = zipfile.ZipFile(path)
        pkl = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pkl) != 1:
            return None
        prefix = pkl[0][:-len("data.pkl")]
        if archive.read(prefix + "byteorder").strip() not in (b"little",):
            return None
        obj = Reader(archive, prefix, archive.read(pkl[0])).load()
    except Exception:  # Unknown, or anything unexpected: torch's path reads it and reports what is wrong
        return None
    return obj if isinstance(obj, Stub) else None


def layer_of(m: Stub) -> Layer | None:
    """A gatec LogicLayer's gates as eval computes them (LogicLayer.ops)."""
    weights = m.__dict__.get("_parameters", {}).get("weights")
    buffers = m.__dict__.get("_buffers", {})
    a, b = buffers.get("in_a"), buffers.get("in_b")
    if not all(isinstance(v, np.ndarray) for v in (weights, a, b)) or weights.ndim != 2:
        return None
    if weights.dtype not in (np.float32, np.float64, np.float16):
        return None
    if m.__dict__.get("light"):
        if weights.shape[1] != 4:
            return None
        t = (weights > 0).astype(np.int64)
        ops = 8 * t[:, 0] + 4 * t[:, 1] + 2 * t[:, 2] + t[:, 3]
    else:
        if weights.shape[1] != 16 or np.isnan(weights).any():  # NaN weights: torch's path, by caution (both argmaxes agree)
            return None
        ops = weights.argmax(-1)
    if not (len(a) == len(b) == len(ops)):
        return None
    return Layer(a, b, ops)


def logic_ir(path: Path, input_shapes, batch_axis: int, info: dict) -> IR | None:
    """The IR tracing would give for a pickled Sequential of [Flatten,] LogicLayer... [, GroupSum]
    read on one 2-D input of the first layer's width; None for anything else."""
    if not input_shapes or len(input_shapes) != 1 or len(input_shapes[0]) != 2 or batch_axis != 0:
        return None
    root = read_stubs(path)
    if root is None or root.kind != "torch.nn.modules.container.Sequential":
        return None
    children = list(root.__dict__.get("_modules", {}).items())
    kinds = [c.kind if isinstance(c, Stub) else "" for _, c in children]
    if [n for n, _ in children] != [str(i) for i in range(len(children))]:
        return None
    body = kinds[1:] if kinds[:1] == ["torch.nn.modules.flatten.Flatten"] else kinds
    logic = len(body) - (body[-1:] == ["gatec.nn.logic.GroupSum"])
    if logic < 1 or any(k != "gatec.nn.logic.LogicLayer" for k in body[:logic]):
        return None
    width = int(input_shapes[0][1])
    nodes, values = [], []
    for i, (name, m) in enumerate(children):
        d = m.__dict__
        last = i == len(children) - 1
        src = "input" if i == 0 else nodes[-1].output[0]
        if m.kind.endswith("Flatten"):
            if (d.get("start_dim"), d.get("end_dim")) != (1, -1):
                return None
            nodes.append(helper.make_node("Flatten", [src], [f"/{name}/Flatten_output_0"], name=f"/{name}/Flatten",
                                          axis=1))
            continue
        out = "output" if last else f"/{name}/{m.kind.rsplit('.', 1)[1]}_output_0"
        if m.kind.endswith("GroupSum"):
            k, tau = d.get("k"), d.get("tau")
            if not isinstance(k, int) or not isinstance(tau, float) or k < 1 or width % k:
                return None
            nodes.append(helper.make_node("GroupSum", [src], [out], name=f"/{name}/GroupSum", domain=LOGIC_DOMAIN,
                                          k=k, tau=tau))
            width = k
        else:
            layer = layer_of(m)
            if layer is None or d.get("in_dim") != width or len(layer) == 0 or layer.in_a.min(initial=0) < 0 \
                    or max(layer.in_a.max(), layer.in_b.max()) >= width or layer.in_b.min() < 0:
                return None
            nodes.append(logic_layer_node(src, out, layer, f"/{name}/LogicLayer"))
            width = len(layer)
        op = m.kind.rsplit(".", 1)[1]
        dim = f"{op}output_dim_0" if last else f"{op}{out}_dim_0"
        values.append(helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, [dim, width]))
    graph = helper.make_graph(nodes, "main_graph",
                              [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT,
                                                             ["input_d0", int(input_shapes[0][1])])],
                              values[-1:], value_info=values[:-1])
    model = helper.make_model(graph, producer_name="pytorch", producer_version=torch_version(),
                              opset_imports=[onnx.OperatorSetIdProto(version=OPSET), helper.make_opsetid(LOGIC_DOMAIN, 1)])
    model.ir_version = IR_VERSION
    spec = TensorSpec("input", [int(s) for s in input_shapes[0]], batch_axis=0)
    spec.values, spec.dynamic = "binary", [0]
    outputs = value_info_specs(model.graph.output)
    for o in outputs:
        o.batch_axis = 0
    return IR(model, [spec], outputs, info)


def torch_version() -> str:
    """torch.onnx.producer_version, from the installed package's metadata (no import)."""
    return importlib.metadata.version("torch").split("+")[0]
