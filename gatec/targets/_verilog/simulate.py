"""The artifact's runner: the Verilog simulated with Icarus Verilog, bit for bit."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...errors import GatecError
from .encoder import InputFormat
from .testbench import CHUNK


def need(tool: str) -> str:
    """The path of an external tool (iverilog, vvp, yosys); refused with how to install it."""
    path = shutil.which(tool)
    if not path:
        raise GatecError(f"{tool} is not installed; `make install` installs yosys and iverilog "
                         f"(apt-get install -y yosys iverilog)")
    return path


class Runner:
    """Compiles model.v + testbench.v with Icarus Verilog once, then simulates the inputs in
    chunks of CHUNK vectors and returns count / tau as float32."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        text = (self.folder / "model.v").read_text()
        self.n_inputs = int(re.search(r"input wire \[(\d+):0\] [xf]\b", text).group(1)) + 1  # the port's bits
        self.k = len(re.findall(r"output wire \[\d+:0\] count_\d+", text))
        self.tau = np.float32(float(re.search(r"count_c / (\S+) \(tau\)", text).group(1)))
        enc = self.folder / "encoder.json"
        self.encoder = json.loads(enc.read_text()) if enc.exists() else None
        fmt = (self.encoder or {}).get("input_format")
        self.input_format = InputFormat.parse(fmt) if fmt else None  # the features go in: the Verilog compares
        self.tmp = tempfile.TemporaryDirectory(prefix="gatec-sim-")
        self.vvp = Path(self.tmp.name) / "sim.vvp"
        proc = subprocess.run([need("iverilog"), "-g2005", "-s", "tb", "-o", str(self.vvp),
                               str(self.folder / "testbench.v"), str(self.folder / "model.v")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise GatecError(f"iverilog cannot compile the Verilog: {(proc.stderr or proc.stdout).strip()[:500]}")

    def bits(self, x: np.ndarray) -> np.ndarray:
        if self.encoder is None:
            return np.asarray(x).reshape(len(x), -1).astype(np.uint8)
        x = np.asarray(x, np.float32).reshape(len(x), -1)
        if self.input_format is not None:
            return self.input_format.port_bits(self.input_format.codes(x))
        return (x[:, self.encoder["feature_index"]] > np.asarray(self.encoder["threshold"], np.float32)).astype(np.uint8)

    def counts(self, bits: np.ndarray) -> np.ndarray:
        out = np.zeros((len(bits), self.k), np.int64)
        tmp = Path(self.tmp.name)
        for start in range(0, len(bits), CHUNK):
            chunk = bits[start:start + CHUNK]
            if chunk.shape[1] != self.n_inputs:
                raise GatecError(f"the Verilog takes {self.n_inputs} input bits per vector, got {chunk.shape[1]}")
            lines = np.where(chunk[:, ::-1] != 0, ord("1"), ord("0")).astype(np.uint8)  # x[n-1] first
            lines = np.concatenate([lines, np.full((len(chunk), 1), ord("\n"), np.uint8)], 1)
            (tmp / "in.mem").write_bytes(lines.tobytes())
            proc = subprocess.run([need("vvp"), "-n", str(self.vvp), f"+in={tmp / 'in.mem'}", f"+n={len(chunk)}",
                                   f"+out={tmp / 'out.txt'}"], capture_output=True, text=True)
            if proc.returncode != 0:
                raise GatecError(f"the simulation failed: {(proc.stderr or proc.stdout).strip()[:500]}")
            got = np.loadtxt(tmp / "out.txt", dtype=np.int64, ndmin=2).reshape(-1, self.k)
            if len(got) != len(chunk):
                raise GatecError(f"the simulation returned {len(got)} vectors of {len(chunk)}")
            out[start:start + len(chunk)] = got
        return out

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return [self.counts(self.bits(arrays[0])).astype(np.float32) / self.tau]
