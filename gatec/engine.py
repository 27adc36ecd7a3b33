"""The host engine for logic networks: gatec's C interpreter (gatec/csrc) built once per
machine and cached, driven through ctypes. No per-model compile: a model is a Program of
arrays (gatec.netlist.plan), so the first result comes as soon as the model is loaded.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import GatecError
from .ir.netlist import Program

CSRC = Path(__file__).parent / "csrc"
TILE = 8  # 64-bit words per slot: 512 samples a tile (measured best of 4, 8, 16, 32 here)
FLAGS = ["-std=c99", "-O3", "-march=native", "-fPIC", "-shared", "-DGATEC_FAST_PACK", "-DGATEC_VECTOR", f"-DGATEC_TILE={TILE}",
         "-DGATEC_WORD_BITS=64"]
_lock = threading.Lock()
_lib = None


class CProgram(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("n_inputs", "n_slots", "n_groups", "n_outputs", "k")] + \
               [("group_op", ctypes.c_void_p), ("group_count", ctypes.c_void_p), ("a_slot", ctypes.c_void_p),
                ("b_slot", ctypes.c_void_p), ("out_slot", ctypes.c_void_p), ("output_slot", ctypes.c_void_p)]


class CCounting(ctypes.Structure):
    _fields_ = [(n, ctypes.c_void_p) for n in ("group_class", "rest_start", "rest_slot", "class_ones")]


def cache_dir() -> Path:
    return Path(os.environ.get("GATEC_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gatec"))


def cpu_identity(cc: str) -> bytes:
    """What -march=native builds for, as the compiler itself resolves it (gcc lists the -m flags
    it enables), so that a cache shared by hosts of different CPUs (AVX-512 and AVX2-only, say)
    never hands one a library built for another; the CPU's model and flags where the compiler
    cannot say."""
    try:
        proc = subprocess.run([cc, "-march=native", "-Q", "--help=target"], capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and "-march=" in proc.stdout:
            return proc.stdout.encode()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        import platform
        return platform.processor().encode()
    wanted = ("model name", "flags", "Features", "CPU part")  # x86, and arm's names for the same facts
    return "\n".join(sorted({l for l in lines if l.split(":")[0].strip() in wanted})).encode()


def library() -> ctypes.CDLL:
    """Build the engine on first use (about a second) and keep it in the cache folder."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not cc:
            raise GatecError("the logic engine needs a C compiler (cc or gcc) on PATH")
        sources = [CSRC / "gatec_logic.c", CSRC / "gatec_logic.h"]
        key = hashlib.sha256(b"".join(p.read_bytes() for p in sources) + " ".join([cc] + FLAGS).encode()
                             + os.uname().machine.encode() + cpu_identity(cc)).hexdigest()[:16]
        path = cache_dir() / f"gatec_logic_{key}.so"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
            os.close(fd)
            proc = subprocess.run([cc, *FLAGS, str(sources[0]), "-o", tmp], capture_output=True, text=True)
            if proc.returncode != 0:
                os.unlink(tmp)
                raise GatecError(f"building the logic engine failed: {proc.stderr.strip().splitlines()[0]}")
            os.replace(tmp, path)
        lib = ctypes.CDLL(str(path))
        lib.gatec_run_counting.argtypes = [ctypes.POINTER(CProgram), ctypes.POINTER(CCounting), ctypes.c_void_p,
                                           ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p]
        lib.gatec_run_counting.restype = None
        _lib = lib
        return lib


class Engine:
    """Runs a Program on unpacked bits (N, n_inputs) -> class scores (N, k) float32."""

    def __init__(self, program: Program, threads: int = 1):
        self.program = program
        self.threads = max(1, threads)
        self.lib = library()
        p = program
        self.c = CProgram(p.n_inputs, p.n_slots, len(p.group_op), len(p.output_slot), p.k,
                          *(arr.ctypes.data for arr in (p.group_op, p.group_count, p.a_slot, p.b_slot, p.out_slot,
                                                        p.output_slot)))
        self.counting = CCounting(*(arr.ctypes.data for arr in (p.group_class, p.rest_start, p.rest_slot, p.class_ones)))
        self.scratch_words = (p.n_slots + 24 + p.n_inputs) * TILE  # GATEC_SCRATCH_WORDS
        self._spare: list[np.ndarray] = []  # scratch buffers kept between calls: fresh pages cost page faults

    def _bits(self, bits: np.ndarray) -> np.ndarray:
        bits = np.ascontiguousarray(bits, dtype=np.uint8)
        if bits.ndim != 2 or bits.shape[1] != self.program.n_inputs:
            raise GatecError(f"the logic engine expects bits of shape (N, {self.program.n_inputs}), "
                             f"got {list(bits.shape)}")
        return bits

    def _fill(self, bits: np.ndarray, scores: np.ndarray) -> None:
        """Class counts of `bits` (checked by _bits) into `scores`, an int32 (N, k) array."""
        n = bits.shape[0]
        tile = TILE * 64
        chunks = [(s, min(n, s + (n // self.threads // tile + 1) * tile)) for s in
                  range(0, n, (n // self.threads // tile + 1) * tile)] if n else []

        def run(chunk):
            start, stop = chunk
            try:
                scratch = self._spare.pop()
            except IndexError:  # slots on 64-byte boundaries: one cache line each
                scratch = np.empty(self.scratch_words + 8, np.uint64)
                skip = (-scratch.ctypes.data % 64) // 8
                scratch = scratch[skip:skip + self.scratch_words]
            self.lib.gatec_run_counting(ctypes.byref(self.c), ctypes.byref(self.counting), bits[start:stop].ctypes.data,
                                        stop - start, scratch.ctypes.data, scores[start:stop].ctypes.data)
            self._spare.append(scratch)
        if len(chunks) <= 1:
            for c in chunks:
                run(c)
        else:
            with ThreadPoolExecutor(len(chunks)) as pool:
                list(pool.map(run, chunks))

    def counts(self, bits: np.ndarray) -> np.ndarray:
        bits = self._bits(bits)
        scores = np.empty((len(bits), self.program.k), np.int32)
        self._fill(bits, scores)
        return scores

    def run(self, bits: np.ndarray) -> np.ndarray:
        """Scores, counts / tau as float32, divided in place of the counts (a float32 division rounds
        as the float64 one rounded to float32 would: both are the correctly rounded quotient)."""
        bits = self._bits(bits)
        scores = np.empty((len(bits), self.program.k), np.float32)
        counts = scores.view(np.int32)
        self._fill(bits, counts)
        np.divide(counts, np.float32(self.program.tau), out=scores, dtype=np.float32)
        return scores
