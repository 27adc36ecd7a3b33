"""Fixed-point training whose model is the firmware: layers whose forward, in training and in
eval, computes what hls4ml's C++ computes at the types gatec's `fpga` target gives them, bit for
bit (gatec/qat/fixed.py), with straight-through gradients from a float path on the same
quantized weights.

    model = gatec.qat.prepare_fixed(model, gatec.qat.FixedConfig("ap_fixed<10,4>"))
    ... train as usual ...
    gatec.compile(model, "fpga")  # no precision options: the model declares its types

The types: inputs, weights, biases, Dense results and GRU states at `precision`; products and
sums at the accumulator (twice the fractional bits, 6 more integer bits: no product rounded);
LSTM states at the accumulator; sigmoid/tanh through hls4ml's tables (`table_size` entries of
`table`). Layers: nn.Linear, nn.Conv1d/2d (zero padding), nn.Sigmoid, nn.Tanh, nn.GRU, nn.LSTM
(forward, batch first or not, any number of layers, zero initial state), and what only moves
values on the grid (ReLU, max pooling, flattening).
Values between layers are float64 tensors holding the exact fixed-point values.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .fixed import FixedType, RecurrentTypes, dense, gru_sequence, lookup, lstm_sequence, on_coarser_grid, tables


@dataclass(frozen=True)
class FixedConfig:
    precision: str = "ap_fixed<16,6>"
    table: str = "ap_fixed<18,2>"
    table_size: int = 4096

    def __post_init__(self):
        FixedType.parse(self.precision), FixedType.parse(self.table)
        if self.accum.width > 32:
            raise ValueError(f"{self.precision}: its accumulator {self.accum} is wider than the 32 bits emulated "
                             f"exactly (fewer fractional bits: at most 13 at 6 integer bits)")
        if self.table_size < 2 or self.table_size & (self.table_size - 1):
            raise ValueError(f"table_size {self.table_size}: a power of two >= 2")

    @property
    def value(self) -> FixedType:
        return FixedType.parse(self.precision)

    @property
    def table_type(self) -> FixedType:
        return FixedType.parse(self.table)

    @property
    def accum(self) -> FixedType:
        """Sums hold every product exactly (twice the fractional bits) and 6 more integer bits, as
        gatec's accumulator rule (gatec.ir.fixed_point.accumulator) has it where the integer bits
        are 6: no product is rounded, so a layer is one exact matrix product."""
        v = self.value
        return FixedType(2 * v.frac + v.integer + 6, v.integer + 6)

    def recurrent(self, first_input: FixedType, kind: str) -> RecurrentTypes:
        """A GRU's state is held at the precision (its products then fill the accumulator exactly: no
        rounding inside a sum); an LSTM's at the accumulator (hls4ml's LSTM takes one type for its
        input, state and sums)."""
        state = self.value if kind == "GRU" else self.accum
        return RecurrentTypes(first_input, self.value, self.value, self.accum, state, self.table_type, self.table_size)

    def metadata(self) -> dict:
        return {**asdict(self), "accum": str(self.accum)}


def exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def on_grid(x: torch.Tensor, t: FixedType) -> torch.Tensor:
    """x rounded to type t (float64), gradient straight through where x is within t's range."""
    v = t.to_float(t.from_float(x.detach()))
    lo, hi = (b * 2.0 ** -t.frac for b in t.int_range)
    inside = ((x >= lo) & (x <= hi)).to(x.dtype)
    x = x.to(torch.float64)
    return v + (x - x.detach()) * inside.to(torch.float64)


def integers(x: torch.Tensor, t: FixedType, where: str) -> torch.Tensor:
    """The integers of type t (in float64: gatec/qat/fixed.py) that x (values on t's grid or a coarser
    one) holds; refuses values off it."""
    v = torch.round(x.detach().to(torch.float64) * 2.0 ** t.frac)
    if not torch.equal(v * 2.0 ** -t.frac, x.detach().to(torch.float64)):
        raise ValueError(f"{where}: its input is not on the fixed-point grid (an op between the fixed-point "
                         f"layers computes in float); put only gatec.qat fixed layers and ReLU between them")
    return v


def with_value(float_path: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """The exact fixed-point values forward, the float path's gradient backward."""
    f = float_path.to(torch.float64)
    return f + (exact - f).detach()


def grid_value(w: torch.Tensor, t: FixedType) -> torch.Tensor:
    return t.to_float(t.from_float(w)).to(w.dtype)


@contextlib.contextmanager
def grid_weights(module: nn.Module, t: FixedType):
    """The module's parameters replaced by their grid values while it is exported (ONNX takes
    them as constants), restored after."""
    saved = {n: p.detach().clone() for n, p in module.named_parameters(recurse=False)}
    with torch.no_grad():
        for n, p in module.named_parameters(recurse=False):
            p.copy_(t.to_float(t.from_float(p)).to(p.dtype))
    try:
        yield
    finally:
        with torch.no_grad():
            for n, p in module.named_parameters(recurse=False):
                p.copy_(saved[n])


class FixedInput(nn.Module):
    """The model's inputs as the firmware's input layer holds them (the config's precision)."""

    def __init__(self, config: FixedConfig):
        super().__init__()
        self.config = config

    def forward(self, x):
        return x if exporting() else on_grid(x, self.config.value)


class FixedWeighted(nn.Module):
    """What FixedLinear and the FixedConvs share: the exported form (the grid weights), the float
    path the gradient comes from, and the exact sum at the accumulator cast to the precision."""

    def __init__(self, *args, config: FixedConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)  # the torch layer's own arguments
        self.config = config or FixedConfig()

    def forward(self, x):
        p, acc = self.config.value, self.config.accum
        if exporting():  # the grid values, folded into constants by the exporter
            return self.apply_weights(x, grid_value(self.weight, p),
                                      None if self.bias is None else grid_value(self.bias, p))
        w, b = on_grid(self.weight, p), None if self.bias is None else on_grid(self.bias, p)
        y = self.accumulate(integers(x, acc, f"a fixed-point {type(self).__name__}"), p, acc)
        return with_value(self.apply_weights(x.to(torch.float64), w, b), p.to_float(p.cast(y, acc.frac)))


class FixedLinear(FixedWeighted, nn.Linear):
    """nn.Linear as hls4ml's Dense: products and sum at the accumulator, the result at the precision."""

    def apply_weights(self, x, w, b):
        return F.linear(x, w, b)

    def accumulate(self, xi, p, acc):
        return dense(xi, acc.frac, p.from_float(self.weight).T, p.frac,
                     None if self.bias is None else p.from_float(self.bias), p.frac, acc)


class FixedConv(FixedWeighted):
    """What FixedConv1d and FixedConv2d share: hls4ml's Conv1D/Conv2D (latency: each product at the
    accumulator, summed from the bias, the result at the precision), any padding, stride, dilation
    and groups gatec's conversion takes."""

    def apply_weights(self, x, w, b):
        return self._conv_forward(x, w, b)

    def accumulate(self, xi, p, acc):
        if not on_coarser_grid(xi, acc.frac, acc.frac - p.frac):
            raise ValueError(f"a fixed-point {type(self).__name__}: its input is finer than the precision")
        # integers in float64: every product and partial sum is exact, as in the accumulator
        y = self.apply_weights(xi * 2.0 ** -p.frac, p.from_float(self.weight), None)  # units of 2^-acc.frac
        if self.bias is not None:
            y = y + acc.cast(p.from_float(self.bias), p.frac).reshape(1, -1, *[1] * (y.ndim - 2))
        return acc.cast(y, acc.frac)


class FixedConv1d(FixedConv, nn.Conv1d):
    pass


class FixedConv2d(FixedConv, nn.Conv2d):
    pass


class FixedActivation(nn.Module):
    """nn.Sigmoid / nn.Tanh as hls4ml's sigmoid/tanh activation layers: the input (at the precision)
    indexes hls4ml's table, the entry is cast to the precision."""
    span: int  # the width of the table's input range: nnet::sigmoid's [-8, 8), nnet::tanh's [-4, 4)
    table_of: int  # which of tables()' two

    def __init__(self, config: FixedConfig | None = None):
        super().__init__()
        self.config = config or FixedConfig()

    def forward(self, x):
        if exporting():
            return self.torch_function(x)
        c, p, acc = self.config, self.config.value, self.config.accum
        entries = tables(c.table_type, c.table_size)[self.table_of]
        xi = integers(x, acc, f"a fixed-point {type(self).__name__}")  # the index depends on the value alone
        exact = p.to_float(p.cast(lookup(xi, acc.frac, entries, self.span), c.table_type.frac))
        return with_value(self.torch_function(x.to(torch.float64)), exact)


class FixedSigmoid(FixedActivation):
    span, table_of = 16, 0
    torch_function = staticmethod(torch.sigmoid)


class FixedTanh(FixedActivation):
    span, table_of = 8, 1
    torch_function = staticmethod(torch.tanh)


# PyTorch's GRU gates r, z, n; hls4ml's (ONNX's, Keras') z, r, h
GRU_ORDER = (1, 0, 2)


class FixedRecurrent:
    """What FixedGRU and FixedLSTM share: checks, the exported form, the float path, layer by layer."""
    torch_class: type = nn.RNNBase  # the torch layer exported in its place

    def __init__(self, *args, config: FixedConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)  # the torch layer's own arguments
        self.config = config or FixedConfig()
        if self.bidirectional or getattr(self, "proj_size", 0):
            raise ValueError(f"fixed-point {type(self).__name__}: forward layers without projections only")

    def run(self, x, hx, vf, keras, sequence):
        if hx is not None:
            raise ValueError(f"fixed-point {type(self).__name__}: hls4ml starts from a zero state; give no initial "
                             f"state")
        c = self.config
        if exporting():
            with grid_weights(self, c.value):
                return self.torch_class.forward(self, x)
        p, acc = c.value, c.accum
        seq = x if self.batch_first else x.transpose(0, 1)
        weights = [on_grid(w, p).to(torch.float32) for w in self._flat_weights]
        flat = vf(x.to(torch.float32), weights)
        kind = self.torch_class.__name__
        state = c.recurrent(acc, kind).state
        out, frac = integers(seq, acc, f"a fixed-point {kind}"), acc.frac
        finals = []
        for layer in range(self.num_layers):
            ints = {name: p.from_float(getattr(self, f"{name}_l{layer}").detach())
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if hasattr(self, f"{name}_l{layer}")}
            w, r, b, rb = keras(ints, p)
            types = c.recurrent(FixedType(frac + 1, 1), kind)  # the input's integers are at `frac`
            out, frac = sequence(out, w, r, b, rb, types), state.frac
            finals.append(out[:, -1])
        exact = state.to_float(out)
        exact = exact if self.batch_first else exact.transpose(0, 1)
        return exact, torch.stack([state.to_float(h) for h in finals]), flat


def gate_rows(w: torch.Tensor, order, hidden: int) -> torch.Tensor:
    return torch.cat([w[g * hidden:(g + 1) * hidden] for g in order])


class FixedGRU(FixedRecurrent, nn.GRU):
    """nn.GRU as hls4ml's GRU (gru_static, reset after the recurrent product)."""
    torch_class = nn.GRU

    def forward(self, x, hx=None):
        result = self.run(x, hx, self.float_path, self.keras, gru_sequence)
        if exporting():
            return result
        exact, h_n, (out, h) = result
        return with_value(out, exact), with_value(h, h_n)

    def float_path(self, x, weights):
        return torch._VF.gru(x, torch.zeros(self.num_layers, x.shape[0 if self.batch_first else 1], self.hidden_size),
                             weights, self.bias, self.num_layers, 0.0, self.training, False, self.batch_first)

    def keras(self, ints, p):
        h = self.hidden_size
        zero = torch.zeros(3 * h, dtype=torch.float64)
        return (gate_rows(ints["weight_ih"], GRU_ORDER, h).T, gate_rows(ints["weight_hh"], GRU_ORDER, h).T,
                gate_rows(ints.get("bias_ih", zero), GRU_ORDER, h), gate_rows(ints.get("bias_hh", zero), GRU_ORDER, h))


class FixedLSTM(FixedRecurrent, nn.LSTM):
    """nn.LSTM as hls4ml's LSTM (lstm_static; PyTorch's gate order i, f, g, o is hls4ml's; the two
    biases summed into one of the precision's type, as gatec's conversion writes them; c_n is the
    float path's: hls4ml gives no cell state)."""
    torch_class = nn.LSTM

    def forward(self, x, hx=None):
        result = self.run(x, hx, self.float_path, self.keras, lstm_sequence)
        if exporting():
            return result
        exact, h_n, (out, h, cell) = result
        return with_value(out, exact), (with_value(h, h_n), cell.detach().to(torch.float64))

    def float_path(self, x, weights):
        zeros = torch.zeros(self.num_layers, x.shape[0 if self.batch_first else 1], self.hidden_size)
        return torch._VF.lstm(x, (zeros, zeros), weights, self.bias, self.num_layers, 0.0, self.training, False,
                              self.batch_first)

    def keras(self, ints, p):
        zero = torch.zeros(4 * self.hidden_size, dtype=torch.float64)
        bias = p.cast(ints.get("bias_ih", zero) + ints.get("bias_hh", zero), p.frac)
        return ints["weight_ih"].T, ints["weight_hh"].T, bias, None


class FixedModel(nn.Module):
    """A model whose layers are fixed-point, its inputs quantized as the firmware's input layer does;
    `gatec_fixed_point` is what the front end writes into the IR for the fpga target."""

    def __init__(self, model: nn.Module, config: FixedConfig):
        super().__init__()
        self.inputs = FixedInput(config)
        self.model = model
        self.config = config

    @property
    def gatec_fixed_point(self) -> dict:
        return self.config.metadata()

    def forward(self, *inputs):
        return self.model(*[self.inputs(x) for x in inputs])


MOVES_ON_GRID = (nn.ReLU, nn.Identity, nn.Dropout, nn.Flatten, nn.MaxPool1d, nn.MaxPool2d, nn.Sequential,
                 nn.ModuleList, nn.ModuleDict)
CONVS = {nn.Conv1d: FixedConv1d, nn.Conv2d: FixedConv2d}
ACTIVATIONS = {nn.Sigmoid: FixedSigmoid, nn.Tanh: FixedTanh}


def prepare_fixed(model: nn.Module, config: FixedConfig | None = None) -> FixedModel:
    """A copy of `model` with nn.Linear, Conv1d/2d, GRU and LSTM swapped for their fixed-point forms
    (their weights kept), wrapped so that its inputs are quantized first. Other modules with
    parameters, or activations that compute (sigmoid, tanh, softmax, ...), are refused: their
    hls4ml arithmetic is not emulated yet."""
    config = config or FixedConfig()
    model = copy.deepcopy(model)

    def swap(module: nn.Module, name: str) -> nn.Module:
        if isinstance(module, (FixedWeighted, FixedGRU, FixedLSTM, FixedActivation)):
            return module
        if type(module) in ACTIVATIONS:
            return ACTIVATIONS[type(module)](config)
        if type(module) in CONVS and module.padding_mode == "zeros":
            new = CONVS[type(module)](module.in_channels, module.out_channels, module.kernel_size, module.stride,
                                      module.padding, module.dilation, module.groups, module.bias is not None,
                                      config=config)
            new.load_state_dict(module.state_dict())
            return new
        if type(module) is nn.Linear:
            new = FixedLinear(module.in_features, module.out_features, module.bias is not None, config=config)
        elif type(module) in (nn.GRU, nn.LSTM):
            cls = FixedGRU if type(module) is nn.GRU else FixedLSTM
            new = cls(module.input_size, module.hidden_size, module.num_layers, bias=module.bias,
                      batch_first=module.batch_first, bidirectional=module.bidirectional, config=config)
        else:
            for child_name, child in module.named_children():
                setattr(module, child_name, swap(child, f"{name}.{child_name}".lstrip(".")))
            if list(module.parameters(recurse=False)) or (not list(module.children()) and
                                                          not isinstance(module, MOVES_ON_GRID) and name):
                raise ValueError(f"fixed-point training: module '{name}' ({type(module).__name__}) is not emulated "
                                 f"(Linear, Conv1d/2d, GRU, LSTM, Sigmoid, Tanh, ReLU and max pooling are)")
            return module
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new

    return FixedModel(swap(model, ""), config)
