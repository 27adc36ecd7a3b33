"""gatec's one IR: an ONNX model plus a little metadata.

Arithmetic layers are standard ONNX (QONNX `Quant` nodes for quantized tensors); logic layers
are nodes of gatec's own domain (`LOGIC_DOMAIN`). The metadata records where the model came
from, the example input shapes with their dynamic axes, and the log of passes applied. It
travels inside the ONNX file as the `gatec` metadata property, so an IR saved to disk loads
back whole.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

LOGIC_DOMAIN = "gatec.custom_op"
LOGIC_OP_TYPES = ("GroupSum", "LogicLayer")  # the ops of gatec's domain (gatec/custom_op.py runs them in qonnx)
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")
QONNX_DOMAIN = QONNX_DOMAINS[0]  # where gatec writes its Quant nodes
OPSET = 18


@dataclass
class TensorSpec:
    name: str
    shape: list[int]  # an example shape; axes listed in `dynamic` may take other sizes
    dtype: str = "float32"
    dynamic: list[int] = field(default_factory=list)
    batch_axis: int = 0
    values: str = "real"  # "binary": the model reads bits (0/1), so the emulator draws bits
    range: list[float] | None = None  # where the model's thresholds lie: the emulator draws inputs across it
    # (step, low, high): the values a target's input interface holds (multiples of step in [low, high],
    # fpga's --input-format); the emulator draws its inputs on that grid
    grid: tuple[float, float, float] | None = None


@dataclass
class IR:
    model: onnx.ModelProto
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    source: dict = field(default_factory=dict)  # {"path", "format", "sha256"}
    passes: list[dict] = field(default_factory=list)  # {"name", "before", "after"} per pass

    @property
    def kind(self) -> str:
        """'logic' when the graph holds logic layers, else 'arithmetic'."""
        return "logic" if any(n.domain == LOGIC_DOMAIN for n in self.model.graph.node) else "arithmetic"

    @property
    def is_qonnx(self) -> bool:
        return any(n.domain in QONNX_DOMAINS for n in self.model.graph.node)

    def copy(self) -> "IR":
        return IR(copy.deepcopy(self.model), copy.deepcopy(self.inputs), copy.deepcopy(self.outputs),
                  dict(self.source), copy.deepcopy(self.passes))

    def meta(self) -> dict:
        def spec(t):  # a grid only where a target set one, so IR bytes stay what they were without
            d = asdict(t)
            if d["grid"] is None:
                del d["grid"]
            return d
        return {"inputs": [spec(t) for t in self.inputs], "outputs": [spec(t) for t in self.outputs],
                "source": self.source, "passes": self.passes}

    def to_bytes(self) -> bytes:
        model = copy.deepcopy(self.model)
        keep = [p for p in model.metadata_props if p.key != "gatec"]
        del model.metadata_props[:]
        model.metadata_props.extend(keep)
        model.metadata_props.add(key="gatec", value=json.dumps(self.meta(), sort_keys=True))
        return model.SerializeToString(deterministic=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> "IR":
        model = onnx.load(str(path))
        meta = next((json.loads(p.value) for p in model.metadata_props if p.key == "gatec"), None)
        if meta is None:
            raise ValueError(f"{path} holds no gatec metadata")
        return cls(model, [TensorSpec(**t) for t in meta["inputs"]], [TensorSpec(**t) for t in meta["outputs"]],
                   meta["source"], meta["passes"])


def numpy_dtype(onnx_elem_type: int) -> str:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx_elem_type)).name


def value_info_specs(values) -> list[TensorSpec]:
    """TensorSpecs from graph inputs/outputs; symbolic or unknown axes count as dynamic."""
    specs = []
    for v in values:
        t = v.type.tensor_type
        shape, dynamic = [], []
        for i, d in enumerate(t.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            else:
                shape.append(1)
                dynamic.append(i)
        specs.append(TensorSpec(v.name, shape, numpy_dtype(t.elem_type) if t.elem_type else "float32", dynamic))
    return specs


from .graph import attributes, constants_to_initializers  # noqa: E402,F401  (one set of graph helpers)
