"""Fake-quantized layers: each quantizes its input, its weights and bias, and its output.

A layer's input quantizer also covers what functional code computed before it (the
`a * sigmoid(b)` of a GLU, a gated residual's sum), so gated blocks need only their Linear and
Conv children swapped. GRU and LSTM keep the ONNX recurrent op: their weights are quantized
(Quant nodes on W, R and B) and so are their input and their outputs (the hidden states, and
the LSTM's cell state); the recurrence inside the op stays float.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .quantizer import ActQuant, quant_weight


class Bits:
    """The bit widths of one layer (bias None: float bias)."""

    def __init__(self, weight: int, act: int, bias: int | None, momentum: float, power_of_two: bool,
                 per_channel: bool = False):
        if weight < 2:
            raise ValueError("weights need at least 2 bits")
        self.weight, self.act, self.bias = int(weight), int(act), bias
        self.momentum, self.power_of_two, self.per_channel = momentum, power_of_two, per_channel

    def act_quant(self) -> ActQuant:
        return ActQuant(self.act, self.momentum, self.power_of_two)


class QuantLayer:
    """What the quantized Linear, Conv and recurrent layers share."""

    def setup_quant(self, bits: Bits) -> None:
        self.weight_bits, self.bias_bits, self.power_of_two = bits.weight, bits.bias, bits.power_of_two
        self.weight_axis = 0 if bits.per_channel else None  # torch keeps output channels first
        self.input_quant = bits.act_quant()
        self.output_quant = bits.act_quant()

    def qweight(self, w: torch.Tensor) -> torch.Tensor:
        return quant_weight(w, self.weight_bits, self.power_of_two, self.weight_axis)

    def qbias(self, b: torch.Tensor | None) -> torch.Tensor | None:
        if b is None or self.bias_bits is None:
            return b
        return quant_weight(b, self.bias_bits, self.power_of_two)

    @classmethod
    def from_float(cls, layer: nn.Module, bits: Bits):
        q = cls.__new__(cls)  # same parameters and settings; only the class changes
        q.__dict__.update({k: v.copy() if isinstance(v, (dict, list)) else v for k, v in layer.__dict__.items()})
        q.setup_quant(bits)
        return q


class QuantLinear(QuantLayer, nn.Linear):
    def forward(self, x):
        y = F.linear(self.input_quant(x), self.qweight(self.weight), self.qbias(self.bias))
        return self.output_quant(y)


class QuantConv(QuantLayer):
    def forward(self, x):
        return self.output_quant(self._conv_forward(self.input_quant(x), self.qweight(self.weight),
                                                    self.qbias(self.bias)))


class QuantConv1d(QuantConv, nn.Conv1d):
    pass


class QuantConv2d(QuantConv, nn.Conv2d):
    pass


class QuantRecurrent(QuantLayer):
    def quantized_weights(self) -> list[torch.Tensor]:
        return [self.qweight(w) if "weight" in name else self.qbias(w)
                for name, w in zip(self._flat_weights_names, self._flat_weights)]

    def zeros(self, x: torch.Tensor, size: int) -> torch.Tensor:
        batch = x.size(0) if self.batch_first else x.size(1)
        return torch.zeros(self.num_layers * (2 if self.bidirectional else 1), batch, size, dtype=x.dtype,
                           device=x.device)

    def check_input(self, x):
        if x.dim() != 3:
            raise ValueError(f"{type(self).__name__} takes batched 3-D input, got {x.dim()}-D")
        if x.size(-1) != self.input_size:  # torch._VF's kernels do not check it
            raise RuntimeError(f"input size {x.size(-1)} differs from the layer's {self.input_size}")
        if getattr(self, "proj_size", 0):
            raise ValueError("QuantLSTM does not support proj_size")


class QuantGRU(QuantRecurrent, nn.GRU):
    def setup_quant(self, bits: Bits) -> None:
        super().setup_quant(bits)
        self.state_quant = bits.act_quant()

    def forward(self, x, hx=None):
        self.check_input(x)
        x = self.input_quant(x)
        hx = self.zeros(x, self.hidden_size) if hx is None else self.state_quant(hx)  # a state given: on its grid
        y, h = torch._VF.gru(x, hx, self.quantized_weights(), self.bias, self.num_layers, float(self.dropout),
                             self.training, self.bidirectional, self.batch_first)
        return self.output_quant(y), self.state_quant(h)


class QuantLSTM(QuantRecurrent, nn.LSTM):
    def setup_quant(self, bits: Bits) -> None:
        super().setup_quant(bits)
        self.state_quant = bits.act_quant()
        self.cell_quant = bits.act_quant()

    def forward(self, x, hx=None):
        self.check_input(x)
        x = self.input_quant(x)
        if hx is None:
            hx = (self.zeros(x, self.hidden_size), self.zeros(x, self.hidden_size))
        else:
            hx = (self.state_quant(hx[0]), self.cell_quant(hx[1]))
        y, h, c = torch._VF.lstm(x, hx, self.quantized_weights(), self.bias, self.num_layers, float(self.dropout),
                                 self.training, self.bidirectional, self.batch_first)
        return self.output_quant(y), (self.state_quant(h), self.cell_quant(c))


class QuantAct(nn.Module):
    """An activation module followed by a quantizer of its output."""

    def __init__(self, act: nn.Module, bits: Bits):
        super().__init__()
        self.act = act
        self.output_quant = bits.act_quant()

    def forward(self, x):
        return self.output_quant(self.act(x))


SWAPS = {nn.Linear: QuantLinear, nn.Conv1d: QuantConv1d, nn.Conv2d: QuantConv2d, nn.GRU: QuantGRU,
         nn.LSTM: QuantLSTM}
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.GELU, nn.Hardtanh,
               nn.Hardsigmoid, nn.Hardswish, nn.ELU, nn.Softplus, nn.Mish, nn.GLU)
QUANTIZED = tuple(SWAPS.values()) + (QuantAct,)
