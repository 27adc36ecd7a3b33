"""The input encoder inside the Verilog (--input-format): the module takes the features as
fixed-point numbers and compares each with its thresholds itself, so that the design and its
LUT count are the whole model.

A format uW / sW is W-bit unsigned / two's-complement integers, uW.F / sW.F the same with F of the
W bits after the binary point: feature value v is the code q = v * 2^F. For a code q and a float
threshold t, v > t exactly when q > floor(t * 2^F) (q is an integer), so each bit is one
comparison of a W-bit field with a constant, exact for every value the format holds. Values off
its grid cannot reach the hardware: the runner refuses them, and the emulator draws its inputs
on the grid (TensorSpec.grid).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ...errors import GatecError

PORT = "f"  # the features, W bits each: feature i is f[W*i + W-1 : W*i]


@dataclass(frozen=True)
class InputFormat:
    signed: bool
    bits: int
    frac: int

    @classmethod
    def parse(cls, text: str) -> "InputFormat":
        m = re.fullmatch(r"([us])(\d+)(?:\.(\d+))?", str(text).strip())
        if not m or not 1 <= int(m.group(2)) <= 32 or int(m.group(3) or 0) > 24:
            raise GatecError(f"--input-format {text}: give uW or sW (W-bit unsigned or signed integers, W <= 32), "
                             f"or uW.F / sW.F with F fraction bits (F <= 24), e.g. u5 or s8.4")
        return cls(m.group(1) == "s", int(m.group(2)), int(m.group(3) or 0))

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}" + (f".{self.frac}" if self.frac else "")

    @property
    def step(self) -> float:
        return 2.0 ** -self.frac

    @property
    def codes_range(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    @property
    def value_range(self) -> tuple[float, float]:
        low, high = self.codes_range
        return low * self.step, high * self.step

    def codes(self, x: np.ndarray) -> np.ndarray:
        """Feature values (N, features) -> their integer codes; a value the format does not hold
        is refused by name (the hardware cannot be given it)."""
        q = np.asarray(x, np.float64) * 2.0 ** self.frac
        low, high = self.codes_range
        bad = (q != np.rint(q)) | (q < low) | (q > high)
        if bad.any():
            row, col = (int(i[0]) for i in np.nonzero(bad))
            raise GatecError(f"input value {float(x[row, col])!r} (feature {col}) is not one that --input-format {self} "
                             f"holds: multiples of {self.step:g} in [{self.value_range[0]:g}, {self.value_range[1]:g}]")
        return q.astype(np.int64)

    def constant(self, threshold: float) -> int:
        """The code c with q > c exactly when value > threshold."""
        return int(np.floor(np.float64(threshold) * 2.0 ** self.frac))

    def port_bits(self, codes: np.ndarray) -> np.ndarray:
        """Codes (N, features) -> the port's bits (N, W * features): bit b of feature i at W*i + b."""
        u = np.asarray(codes, np.int64) & ((1 << self.bits) - 1)  # two's complement for signed codes
        return ((u[:, :, None] >> np.arange(self.bits)) & 1).reshape(len(u), -1).astype(np.uint8)


def comparators(fmt: InputFormat, features: np.ndarray, thresholds: np.ndarray) -> list[str]:
    """One `assign` per input bit of the logic: its feature's field compared with a constant
    (a constant bit where every code lies on one side). Signed fields compare in offset binary
    (the sign bit flipped), so every comparison is an unsigned one."""
    low, high = fmt.codes_range
    w, lines = fmt.bits, []
    for j, (i, t) in enumerate(zip(features.tolist(), thresholds.tolist())):
        c = fmt.constant(t)
        if c < low:
            lines.append(f"assign x[{j}] = 1'b1;  // feature {i} > {t!r} for every code")
        elif c >= high:
            lines.append(f"assign x[{j}] = 1'b0;  // feature {i} > {t!r} for no code")
        else:
            top = w * i + w - 1
            field = (f"{{~{PORT}[{top}], {PORT}[{top - 1}:{w * i}]}}" if w > 1 else f"~{PORT}[{top}]") if fmt.signed \
                else f"{PORT}[{top}:{w * i}]"
            constant = c - low if fmt.signed else c
            lines.append(f"assign x[{j}] = {field} > {w}'d{constant};  // feature {i} > {t!r}")
    return lines


class Inside(NamedTuple):
    """The encoder as Design puts it inside the module: the feature port's width, the comparators
    (one `assign x[j]` each) and the port's description for the module's header."""
    port_width: int
    lines: list[str]
    about: str


def inside(fmt: InputFormat, features: np.ndarray, thresholds: np.ndarray, n_features: int) -> Inside:
    return Inside(fmt.bits * n_features, comparators(fmt, features, thresholds),
                  f"{n_features} x {fmt.bits} bits ({fmt}: feature i is f[{fmt.bits}*i +: {fmt.bits}])")
