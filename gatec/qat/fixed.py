"""`ap_fixed` arithmetic as hls4ml's Vivado/Vitis C++ computes it, in torch tensors.

A value of type ap_fixed<W, I> is held as the integer v = x * 2^F (F = W - I fractional bits), in
a float64 tensor: every product and sum here stays below 2^53 for types up to 16 bits (their
accumulators 32), so float64 holds them exactly and its floor, multiply and add are exact integer
arithmetic, faster in torch than int64 division. Each hls4ml operation is reproduced with its own
rounding: a product is exact and then assigned to the accumulator type (quantized: truncation
or rounding, then wrap or saturation), a sum of one type wraps in it, a cast to a layer's result
type quantizes again. The sigmoid and tanh tables are hls4ml's own: built by compiling its
`init_sigmoid_table`/`init_tanh_table` with g++ (the float functions of this machine's libm,
then the conversion to the table type), cached.

What is emulated, with gatec's fpga conversion (io_parallel, latency strategy): Dense
(`nnet::dense_latency`), GRU (`nnet::gru_static`, reset after, z r h gate order), LSTM
(`nnet::lstm_static`, i f c o), sigmoid/tanh (`nnet::sigmoid`/`nnet::tanh`: index =
trunc(x * N / 16) + N / 2, trunc(x * N / 8) + N / 2 for tanh, clamped).
"""
from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..ir.fixed_point import PRECISION_RE

ROUNDINGS = ("AP_TRN", "AP_RND")
OVERFLOWS = ("AP_WRAP", "AP_SAT")


@dataclass(frozen=True)
class FixedType:
    """ap_fixed<width, integer[, rounding, overflow]> (ap_ufixed when not signed)."""
    width: int
    integer: int
    signed: bool = True
    rounding: str = "AP_TRN"
    overflow: str = "AP_WRAP"

    @classmethod
    def parse(cls, text: "str | FixedType") -> "FixedType":
        if isinstance(text, FixedType):
            return text
        text = str(text).replace(" ", "")
        m = PRECISION_RE.match(text)
        if not m or not m.group(1):
            raise ValueError(f"'{text}' is not an ap_fixed type like ap_fixed<16,6>")
        modes = [x for x in (m.group(3) or "").split(",") if x]
        rounding = modes[0] if modes else "AP_TRN"
        overflow = modes[1] if len(modes) > 1 else "AP_WRAP"
        if rounding not in ROUNDINGS or overflow not in OVERFLOWS or len(modes) > 2:
            raise ValueError(f"'{text}': rounding {', '.join(ROUNDINGS)} and overflow {', '.join(OVERFLOWS)} are "
                             f"emulated")
        t = cls(int(m.group(1)), int(m.group(2)), not text.startswith("ap_ufixed"), rounding, overflow)
        if not 1 <= t.width <= 48:
            raise ValueError(f"'{text}': widths 1 to 48 are emulated")
        return t

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def int_range(self) -> tuple[int, int]:
        return (-(1 << (self.width - 1)), (1 << (self.width - 1)) - 1) if self.signed else (0, (1 << self.width) - 1)

    def __str__(self) -> str:
        base = f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}"
        modes = "" if (self.rounding, self.overflow) == ("AP_TRN", "AP_WRAP") else f",{self.rounding},{self.overflow}"
        return base + modes + ">"

    def cast(self, v: torch.Tensor, frac: int) -> torch.Tensor:
        """Integers v in units of 2^-frac, assigned to this type: its integers (units of 2^-self.frac)."""
        shift = frac - self.frac
        if shift > 0:
            v = v * 2.0 ** -shift
            v = torch.floor(v + 0.5) if self.rounding == "AP_RND" else torch.floor(v)  # RND: half up
        elif shift < 0:
            v = v * 2.0 ** -shift
        lo, hi = self.int_range
        if self.overflow == "AP_SAT":
            return v.clamp(lo, hi)
        low, high = torch.aminmax(v)
        if low >= lo and high <= hi:  # nothing to wrap (the common case: one reduction, not four passes)
            return v
        size = 2.0 ** self.width
        return v - size * torch.floor((v - lo) / size)

    def from_float(self, x: torch.Tensor) -> torch.Tensor:
        """A float assigned to this type (as C++ converts a float or double): exact, then quantized."""
        return self.cast(torch.floor(x.detach().to(torch.float64) * 2.0 ** (self.frac + 1)), self.frac + 1) \
            if self.rounding == "AP_RND" else self.cast(torch.floor(x.detach().to(torch.float64) * 2.0 ** self.frac),
                                                        self.frac)

    def to_float(self, v: torch.Tensor) -> torch.Tensor:
        return v.to(torch.float64) * 2.0 ** -self.frac


def on_coarser_grid(x: torch.Tensor, frac: int, coarse: int) -> bool:
    """Do the integers x (units of 2^-frac) all lie on the grid of 2^-coarse?"""
    if coarse >= frac:
        return True
    y = x * 2.0 ** (coarse - frac)
    return bool(torch.equal(torch.floor(y), y))


def dense(x: torch.Tensor, fx: int, w: torch.Tensor, fw: int, b: torch.Tensor | None, fb: int,
          accum: FixedType) -> torch.Tensor:
    """nnet::dense_latency into the accumulator type: x (..., n_in) integers at fx, w (n_in, n_out) at
    fw, b (n_out) at fb; each product assigned to the accumulator, then summed from the bias."""
    out_shape = x.shape[:-1] + w.shape[-1:]
    acc = torch.zeros(out_shape, dtype=torch.float64) if b is None else accum.cast(b, fb).expand(out_shape)
    exact = accum.frac - fw  # inputs on this grid give products the accumulator holds exactly
    if accum.overflow == "AP_WRAP" and accum.rounding == "AP_TRN" and on_coarser_grid(x, fx, exact):
        # no product is rounded: one matrix product (its partial sums are integers below 2^53: exact)
        return accum.cast(acc + (x * 2.0 ** (exact - fx)) @ w, accum.frac)
    products = x.unsqueeze(-1) * w  # (..., n_in, n_out), exact
    if accum.overflow == "AP_SAT" or accum.rounding == "AP_RND":
        products = accum.cast(products, fx + fw)
    else:  # truncation; the wrap is left to the sum's
        products.mul_(2.0 ** (accum.frac - fx - fw)).floor_()
    if accum.overflow == "AP_WRAP":
        return accum.cast(acc + products.sum(-2), accum.frac)  # wrapping sums: any order, one wrap
    for i in range(products.shape[-2]):  # saturating sums: in hls4ml's order, each step saturated
        acc = accum.cast(acc + products[..., i, :], accum.frac)
    return acc


# ------------------------------------------------------------ hls4ml's tables

TABLE_PROGRAM = r"""
#include <cstdio>
#include "ap_fixed.h"
#include "nnet_utils/nnet_activation.h"
struct table_config { typedef %(table_t)s table_t; static const unsigned table_size = %(n)d; };
int main() {
    static table_config::table_t s[%(n)d], t[%(n)d];
    nnet::init_sigmoid_table<table_config, %(n)d>(s);
    nnet::init_tanh_table<table_config, %(n)d>(t);
    for (int i = 0; i < %(n)d; i++) std::printf("%%a %%a\n", s[i].to_double(), t[i].to_double());
    return 0;
}
"""


def hls4ml_templates() -> Path:
    import importlib.util
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.origin:
        raise RuntimeError("hls4ml is not installed: its tables cannot be built")
    return Path(spec.origin).parent / "templates" / "vivado"


@functools.lru_cache(maxsize=None)
def tables(table_t: FixedType, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmoid, tanh) tables as hls4ml builds them, integers of table_t."""
    key = hashlib.sha256(f"{table_t}|{size}|{hls4ml_templates()}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("GATEC_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                / "gatec")) / "hls4ml_tables"
    path = cache / f"{key}.txt"
    if not path.exists():
        root = hls4ml_templates()
        with tempfile.TemporaryDirectory(prefix="gatec-tables-") as tmp:
            src, exe = Path(tmp) / "tables.cpp", Path(tmp) / "tables"
            src.write_text(TABLE_PROGRAM % {"table_t": str(table_t).replace(",AP_TRN,AP_WRAP", ""), "n": size})
            # the flags of hls4ml's build_lib.sh (the C simulation's): -O3, C++23 where g++ has it
            std = "-std=c++23" if subprocess.run(["g++", "-std=c++23", "-fsyntax-only", "-xc++", "-"], input=b"",
                                                 capture_output=True).returncode == 0 else "-std=c++11"
            subprocess.run(["g++", "-O3", std, f"-I{root / 'ap_types'}", f"-I{root}", str(src), "-o", str(exe)],
                           check=True, capture_output=True)
            text = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
        cache.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_suffix(f".{os.getpid()}.tmp")
        tmp_path.write_text(text)
        os.replace(tmp_path, path)  # whole or not at all
    values = np.array([[float.fromhex(v) for v in line.split()] for line in path.read_text().splitlines()])
    ints = torch.from_numpy(np.round(values * 2.0 ** table_t.frac))
    return ints[:, 0], ints[:, 1]


def lookup(v: torch.Tensor, frac: int, table: torch.Tensor, span: int) -> torch.Tensor:
    """nnet::sigmoid (span 16) / nnet::tanh (span 8): index = trunc(x * N / span) + N / 2, clamped,
    x = v / 2^frac; returns the table's integers."""
    n = len(table)
    index = torch.trunc(v * (n / (span * 2.0 ** frac))) + n // 2  # n, span: powers of two, exact
    return table[index.clamp(0, n - 1).to(torch.int64)]


@dataclass(frozen=True)
class RecurrentTypes:
    """The types of one hls4ml GRU/LSTM layer as gatec configures it."""
    input: FixedType
    weight: FixedType
    bias: FixedType
    accum: FixedType
    state: FixedType  # the layer's result type: its state and outputs
    table: FixedType
    table_size: int


def gru_sequence(x: torch.Tensor, w, r, b, rb, t: RecurrentTypes) -> torch.Tensor:
    """nnet::gru_static over a sequence from a zero state: x (B, T, F) integers of t.input; w (F, 3H),
    r (H, 3H) integers of t.weight (Keras layout, gates z r h), b and rb (3H) of t.bias. Returns
    the states (B, T, H), integers of t.state."""
    acc = t.accum
    sig, tanh = (acc.cast(table, t.table.frac) for table in tables(t.table, t.table_size))  # read as accum_t
    f = acc.frac
    b, rb = acc.cast(b, t.bias.frac), acc.cast(rb, t.bias.frac)  # the biases as the sums start from them
    hidden = r.shape[0]
    h = torch.zeros((x.shape[0], hidden), dtype=torch.float64)
    states = []
    for step in range(x.shape[1]):
        xa = dense(x[:, step], t.input.frac, w, t.weight.frac, b, f, acc)
        ha = dense(h, t.state.frac, r, t.weight.frac, rb, f, acc)
        zr = lookup(acc.cast(xa[:, :2 * hidden] + ha[:, :2 * hidden], f), f, sig, 16)
        z, rg = zr[:, :hidden], zr[:, hidden:]
        reset = acc.cast(rg * ha[:, 2 * hidden:], 2 * f)
        n = lookup(acc.cast(xa[:, 2 * hidden:] + reset, f), f, tanh, 8)
        # (res_T)(n * (1 - z) + h * z): exact products and sum, one cast
        top = max(2 * f, t.state.frac + f)
        mixed = n * (2.0 ** f - z) * 2.0 ** (top - 2 * f) + h * z * 2.0 ** (top - t.state.frac - f)
        h = t.state.cast(mixed, top)
        states.append(h)
    return torch.stack(states, 1)


def lstm_sequence(x: torch.Tensor, w, r, b, rb, t: RecurrentTypes) -> torch.Tensor:
    """nnet::lstm_static over a sequence from zero states, as gru_sequence (gates i f c o, Keras
    layout; rb may be None: gatec sums both biases into b). Returns the states h (B, T, H)."""
    acc = t.accum
    sig, tanh = (acc.cast(table, t.table.frac) for table in tables(t.table, t.table_size))  # read as accum_t
    f, fs = acc.frac, t.state.frac
    b, rb = acc.cast(b, t.bias.frac), None if rb is None else acc.cast(rb, t.bias.frac)
    hidden = r.shape[0]
    h = torch.zeros((x.shape[0], hidden), dtype=torch.float64)
    s = torch.zeros_like(h)
    states = []
    for step in range(x.shape[1]):
        xa = dense(x[:, step], t.input.frac, w, t.weight.frac, b, f, acc)
        ha = dense(h, fs, r, t.weight.frac, rb, f, acc)
        pre = acc.cast(xa + ha, f)
        gates = lookup(pre, f, sig, 16)
        i, fg, o = gates[:, :hidden], gates[:, hidden:2 * hidden], gates[:, 3 * hidden:]
        c = lookup(pre[:, 2 * hidden:3 * hidden], f, tanh, 8)
        # (res_T)(c * i + s * f), then h = (res_T)(o * tanh(s))
        top = max(2 * f, fs + f)
        s = t.state.cast(c * i * 2.0 ** (top - 2 * f) + s * fg * 2.0 ** (top - fs - f), top)
        act = lookup(s, fs, tanh, 8)
        h = t.state.cast(o * act, 2 * f)
        states.append(h)
    return torch.stack(states, 1)
