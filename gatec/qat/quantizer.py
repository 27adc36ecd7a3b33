"""The fake-quantizer: QONNX `Quant` semantics in PyTorch, with straight-through gradients.

Forward, exactly as qonnx.custom_op.general.quant: q = clip(x / scale + zeropt, min, max),
rounded half to even, then (q - zeropt) * scale; 1-bit signed is bipolar (sign). Backward passes
the gradient through where x was not clipped. Under torch.onnx.export (dynamo=False) it emits
one QONNX `Quant` node, so an exported model computes what the fake-quantized one computed.
"""
from __future__ import annotations

import torch

from ..ir.fixed_point import int_range, scale_for, weight_scale
from ..ir import QONNX_DOMAIN


def choose_scale(max_abs: float, bits: int, signed: bool, narrow: bool = False, power_of_two: bool = True) -> float:
    """The scale that maps max_abs onto the largest integer of the range (rounded up to a power of
    two by default: what maps exactly onto a fixed-point type)."""
    return float(scale_for(max_abs, int_range(bits, signed, narrow)[1], power_of_two))


def pow2_scale(max_abs: float, bits: int, signed: bool, narrow: bool = False) -> float:
    """The smallest power of two s with max_abs / s <= the largest integer of the range."""
    return choose_scale(max_abs, bits, signed, narrow, True)


class QuantFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, zeropt, bits: int, signed: bool, narrow: bool):
        y = x / scale + zeropt
        if bits == 1 and signed:  # QONNX: a signed 1-bit quantizer is bipolar
            q = torch.where(y >= 0, torch.ones_like(y), -torch.ones_like(y))
            ctx.save_for_backward(torch.ones_like(x, dtype=torch.bool))
        else:
            lo, hi = int_range(bits, signed, narrow)
            q = torch.round(torch.clamp(y, lo, hi))  # torch.round: half to even, like np.round
            ctx.save_for_backward((y >= lo) & (y <= hi))
        return (q - zeropt) * scale

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None, None

    @staticmethod
    def symbolic(g, x, scale, zeropt, bits: int, signed: bool, narrow: bool):
        bitwidth = g.op("Constant", value_t=torch.tensor(float(bits)))
        out = g.op(f"{QONNX_DOMAIN}::Quant", x, scale, zeropt, bitwidth, signed_i=int(signed),
                   narrow_i=int(narrow), rounding_mode_s="ROUND")
        out.setType(x.type())  # same shape and type as x: the recurrent ops' exporters read the weights' shapes
        return out


def fake_quant(x: torch.Tensor, scale: float | torch.Tensor, bits: int, signed: bool = True, narrow: bool = False,
               zeropt: float = 0.0) -> torch.Tensor:
    """x on the grid of a `bits`-wide quantizer with this scale (QONNX Quant, ROUND)."""
    scale = torch.as_tensor(scale, dtype=x.dtype)
    zeropt = torch.as_tensor(zeropt, dtype=x.dtype)
    return QuantFunction.apply(x, scale, zeropt, int(bits), bool(signed), bool(narrow))


def quant_weight(w: torch.Tensor, bits: int, power_of_two: bool = True, axis: int | None = None) -> torch.Tensor:
    """Weights (and biases): signed, narrow range (symmetric), one scale per tensor (or per
    output channel along `axis`), chosen as post-training quantization chooses it
    (gatec.fixed_point.weight_scale)."""
    scale = torch.from_numpy(weight_scale(w.detach().cpu().numpy(), bits, axis, power_of_two)).to(w.dtype)
    return fake_quant(w, scale, bits, signed=True, narrow=True)


class ActQuant(torch.nn.Module):
    """An activation quantizer whose range follows the data: during training it keeps an
    exponential moving average of max |x| per batch (and notes whether x was ever negative:
    signed, else unsigned); the scale is that running max over the largest integer, rounded up to
    a power of two. In eval mode the range is frozen (a quantizer that never saw data takes the
    first batch's range)."""

    def __init__(self, bits: int = 8, momentum: float = 0.1, power_of_two: bool = True):
        super().__init__()
        if bits < 2:
            raise ValueError("activation quantizers need at least 2 bits")
        self.bits, self.momentum, self.power_of_two = int(bits), float(momentum), bool(power_of_two)
        self.register_buffer("running_max", torch.tensor(0.0))
        self.register_buffer("signed", torch.tensor(False))
        self.register_buffer("observed", torch.tensor(False))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, power_of_two={self.power_of_two}"

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        top = x.detach().abs().max().to(self.running_max.dtype)
        if bool(self.observed):
            self.running_max.mul_(1 - self.momentum).add_(self.momentum * top)
        else:
            self.running_max.copy_(top)
        self.signed |= bool((x.detach() < 0).any())
        self.observed.fill_(True)

    def scale(self) -> float:
        return choose_scale(float(self.running_max), self.bits, bool(self.signed), False, self.power_of_two)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training or not bool(self.observed)) and not torch.onnx.is_in_onnx_export():
            self.observe(x)
        return fake_quant(x, self.scale(), self.bits, bool(self.signed))
