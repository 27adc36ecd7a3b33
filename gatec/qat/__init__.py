"""Quantization-aware training: fake-quantized layers whose forward is exactly QONNX `Quant`,
and export to QONNX that `gatec compile` reads.

    qmodel = gatec.qat.prepare(model, gatec.qat.QATConfig(weight_bits=8, act_bits=8))
    ... train qmodel as usual (straight-through gradients) ...
    gatec.qat.export(qmodel, "model.onnx", example_inputs)
"""
from __future__ import annotations

import copy
import fnmatch
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ..ir import constants_to_initializers
from .modules import (ACTIVATIONS, QUANTIZED, SWAPS, Bits, QuantAct, QuantConv1d, QuantConv2d, QuantGRU,
                      QuantLinear, QuantLSTM)
from .quantizer import QONNX_DOMAIN, ActQuant, fake_quant, int_range, pow2_scale
from .fixed_layers import (FixedConfig, FixedConv1d, FixedConv2d, FixedGRU, FixedLinear, FixedLSTM, FixedModel,
                           prepare_fixed)

__all__ = ["QATConfig", "prepare", "export", "fake_quant", "ActQuant", "QuantLinear", "QuantConv1d", "QuantConv2d",
           "QuantGRU", "QuantLSTM", "QuantAct", "int_range", "pow2_scale", "output_scales", "FixedConfig",
           "FixedGRU", "FixedLinear", "FixedLSTM", "FixedConv1d", "FixedConv2d", "FixedModel", "prepare_fixed"]


@dataclass
class QATConfig:
    """Bit widths for every layer, and per-layer overrides.

    `layers` maps a module name (as in `model.named_modules()`; shell patterns such as
    "experts.*" allowed; the first match wins) to a dict overriding `weight_bits`, `act_bits`
    and `bias_bits`, or to None to leave that module (and what it holds) in float."""
    weight_bits: int = 8
    act_bits: int = 8
    bias_bits: int | None = 16  # None: float biases
    power_of_two: bool = True  # scales rounded up to powers of two (exact on fixed-point hardware)
    per_channel: bool = False  # one weight scale per output channel
    momentum: float = 0.1  # of the running max |x| the activation ranges follow
    layers: dict = field(default_factory=dict)

    def bits_for(self, name: str) -> Bits | None:
        for pattern, override in self.layers.items():
            if fnmatch.fnmatchcase(name, pattern):
                if override is None:
                    return None
                unknown = set(override) - {"weight_bits", "act_bits", "bias_bits"}
                if unknown:
                    raise ValueError(f"layer override for {pattern!r}: unknown keys {sorted(unknown)}")
                o = {"weight_bits": self.weight_bits, "act_bits": self.act_bits, "bias_bits": self.bias_bits,
                     **override}
                return Bits(o["weight_bits"], o["act_bits"], o["bias_bits"], self.momentum, self.power_of_two,
                            self.per_channel)
        return Bits(self.weight_bits, self.act_bits, self.bias_bits, self.momentum, self.power_of_two,
                    self.per_channel)


def prepare(model: nn.Module, config: QATConfig | None = None) -> nn.Module:
    """A copy of `model` with nn.Linear, Conv1d/2d, GRU and LSTM swapped for fake-quantized
    versions and activation modules followed by quantizers of their outputs (gatec.nn's gated
    blocks are made of these). Train it as usual; its forward is what the exported QONNX computes."""
    config = config or QATConfig()
    model = copy.deepcopy(model)
    if isinstance(model, QUANTIZED):
        raise ValueError("the model is quantized already")
    top = swap(model, "", config)
    return top if top is not None else model


def swap(module: nn.Module, name: str, config: QATConfig) -> nn.Module | None:
    """The quantized replacement for `module` (None: keep it), after swapping its children."""
    bits = config.bits_for(name) if name else config.bits_for("")
    if bits is None:
        return None
    if type(module) in SWAPS:
        return SWAPS[type(module)].from_float(module, bits)
    if isinstance(module, ACTIVATIONS):
        return QuantAct(module, bits)
    for child_name, child in list(module.named_children()):
        new = swap(child, f"{name}.{child_name}" if name else child_name, config)
        if new is not None:
            setattr(module, child_name, new)
    return None


def output_scales(model: nn.Module) -> dict[str, float]:
    """The scale (one least significant bit) of every activation quantizer, by module name."""
    return {name: m.scale() for name, m in model.named_modules() if isinstance(m, ActQuant)}


def export(model: nn.Module, path: str | Path, example_inputs, input_names=None, output_names=None,
           dynamic_axes: dict | None = None) -> onnx.ModelProto:
    """Write `model` (prepared and trained) as QONNX: `Quant` nodes (domain
    qonnx.custom_op.general, scale, zero point and bit width as initializers) on its weights,
    biases and activations, the rest standard ONNX (opset 18). The batch axis (0) of every
    input is dynamic unless `dynamic_axes` says otherwise (as torch.onnx.export takes it).
    Returns the model written."""
    from ..ir import OPSET
    if not any(isinstance(m, ActQuant) for m in model.modules()):
        raise ValueError("the model holds no quantizers: prepare it with gatec.qat.prepare first")
    if isinstance(example_inputs, (torch.Tensor, np.ndarray)):  # one input
        example_inputs = (example_inputs,)
    example_inputs = tuple(torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a
                           for a in example_inputs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outs = model(*example_inputs)
        n_out = 1 if isinstance(outs, torch.Tensor) else len(outs)
        input_names = input_names or (["input"] if len(example_inputs) == 1 else
                                      [f"input_{i}" for i in range(len(example_inputs))])
        output_names = output_names or (["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)])
        if dynamic_axes is None:  # the outputs' axes follow from the inputs'
            dynamic_axes = {n: {0: "batch"} for n in input_names}
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example_inputs, buf, dynamo=False, opset_version=OPSET,
                              input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes,
                              do_constant_folding=True, custom_opsets={QONNX_DOMAIN: 1})
    finally:
        model.train(was_training)
    onnx_model = constants_to_initializers(onnx.load_model_from_string(buf.getvalue()))
    onnx.checker.check_model(onnx_model)
    Path(path).write_bytes(onnx_model.SerializeToString(deterministic=True))
    return onnx_model

