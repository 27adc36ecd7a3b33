"""The host engine for logic networks: gatec's C interpreter (gatec/csrc) built once per
machine and cached, driven through ctypes. No per-model compile: a model is a Program of
arrays (gatec.netlist.plan), so the first result comes as soon as the model is loaded.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from .errors import GatecError
from .ir.netlist import Netlist, Program, plan, plan_ternary

CSRC = Path(__file__).parent / "csrc"
SOURCE = CSRC / "gatec_host.c"  # gatec_logic.c with the host's choices (its slot size: gatec_tile_words())
TILE = 8  # the most 64-bit words a slot has (gatec_tile_words()): scratch is sized for it
FLAGS = ["-std=c99", "-O3", "-march=native", "-fPIC", "-shared", "-pthread", "-DGATEC_FAST_PACK", "-DGATEC_VECTOR",
         "-DGATEC_WORD_BITS=64"]
CHUNK_TILES = 8  # the fewest tiles (of TILE words) worth a thread: a smaller batch runs on fewer threads
_lock = threading.Lock()
_lib = None


class CProgram(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("n_inputs", "n_slots", "n_groups", "n_outputs", "k")] + \
               [("group_op", ctypes.c_void_p), ("group_count", ctypes.c_void_p), ("a_slot", ctypes.c_void_p),
                ("b_slot", ctypes.c_void_p), ("out_slot", ctypes.c_void_p), ("output_slot", ctypes.c_void_p)]


class CCounting(ctypes.Structure):
    """gatec_host_counting (gatec_host.c): gatec_counting and the gates' records (gate_records;
    NULL: gatec_logic.c's gatec_run_counting does the work)."""
    _fields_ = [(n, ctypes.c_void_p) for n in ("group_class", "rest_start", "rest_slot", "class_ones", "gate_records")] + \
               [("tau", ctypes.c_float)]  # > 0: the scores come as float32 count / tau


def host_counting(p: Program, tau: float = 0.0) -> CCounting:
    """The host's counting struct (it keeps its arrays). Each executed gate's record, the slots it
    reads and writes as uint16 (gatec_host.c scales them): a, b, c and out for plan_ternary's
    programs, else a, b and out. A program of more than 65,536 slots has no records (NULL:
    gatec_logic.c's loops run it)."""
    slots = [p.a_slot, p.b_slot] + ([p.c_slot] if p.c_slot is not None else []) + [p.out_slot]
    records = np.ascontiguousarray(np.stack(slots, 1), np.uint16) if p.n_slots <= 1 << 16 else None
    arrays = (p.group_class, p.rest_start, p.rest_slot, p.class_ones)
    counting = CCounting(*(arr.ctypes.data for arr in arrays), None if records is None else records.ctypes.data, tau)
    counting.arrays = arrays, records
    return counting


def scratch_words(p: Program) -> int:
    """Scratch words a call of gatec_host_run needs: GATEC_SCRATCH_WORDS at the largest slot (TILE
    words), and 64 slots more for the packing's folded rows, and a uint16 per class and sample of
    a tile for its scores (gatec_host.c)."""
    return (p.n_slots + 24 + p.n_inputs + 64) * TILE + 128 * p.k


def default_threads() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_core(index: int, caller_cpu: int, cores: list[int]) -> int:
    """The core the index-th engine worker runs on: the cores after the caller's (caller_cpu; -1:
    unknown) in turn, so that with a worker for each core but the caller's none shares its core."""
    start = cores.index(caller_cpu) if caller_cpu in cores else -1
    return cores[(start + 1 + index) % len(cores)]


def worker_cores(workers: int, caller_cpu: int, cores: list[int]) -> list[int]:
    """Each worker's core (worker_core) when the caller and the workers are as many as the cores
    this process may use: unpinned, the scheduler moves them, and a worker on the caller's core
    measured 1.1x one thread. Fewer threads than cores are not pinned (-1), so that two processes
    asking for a few threads each do not share the first cores; nor are any where the OS gives
    no cores (no affinity)."""
    if not cores or workers + 1 < len(cores):
        return [-1] * workers
    return [worker_core(i, caller_cpu, cores) for i in range(workers)]


@functools.cache
def _sched_getcpu():
    try:
        return ctypes.CDLL(None).sched_getcpu  # glibc's and musl's
    except (AttributeError, OSError, TypeError):
        return None


def current_cpu() -> int:
    """The core the calling thread runs on, -1 where the C library does not say."""
    getcpu = _sched_getcpu()
    return int(getcpu()) if getcpu is not None else -1


def prefetch_locality(cpuinfo: str, l1d_bytes: int) -> int:
    """The cache level gatec_host.c prefetches a next tile's rows into (its GATEC_PREFETCH_LOCALITY):
    L1 (3) on AMD CPUs with an L1d of 48 KB or more, whose prefetcht1 leaves them outside L1 (1.17x
    on a Zen 5 EPYC, 48 KB); else L2 (2). Rows prefetched ahead (37 KB for the benchmark network)
    would fill a 32 KB L1 and evict the slots the gates read: 1.08-1.11x for L2 on a Zen 4 EPYC
    (32 KB), 1.04x on its AVX2 path; 1.06x on a Xeon (48 KB)."""
    return 3 if "AuthenticAMD" in cpuinfo and l1d_bytes >= 48 << 10 else 2


def l1d_bytes() -> int:
    """The L1 data cache of the first CPU, from Linux's sysfs; 0 where it does not say."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() == "1" and (index / "type").read_text().strip() == "Data":
                size = (index / "size").read_text().strip().upper()
                return int(size.rstrip("KM")) << (20 if size.endswith("M") else 10 if size.endswith("K") else 0)
        except (OSError, ValueError):
            pass
    return 0


def read_cpuinfo() -> str:
    """/proc/cpuinfo, or "" where the OS has none."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def build_flags() -> list[str]:
    """FLAGS and this host's choices: what the engine library is built with."""
    return FLAGS + [f"-DGATEC_PREFETCH_LOCALITY={prefetch_locality(read_cpuinfo(), l1d_bytes())}"]


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
    lines = read_cpuinfo().splitlines()
    if not lines:
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
        sources = [SOURCE, CSRC / "gatec_logic.c", CSRC / "gatec_logic.h"]
        flags = build_flags()
        key = hashlib.sha256(b"".join(p.read_bytes() for p in sources) + " ".join([cc] + flags).encode()
                             + os.uname().machine.encode() + cpu_identity(cc)).hexdigest()[:16]
        path = cache_dir() / f"gatec_logic_{key}.so"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
            os.close(fd)
            try:
                proc = subprocess.run([cc, *flags, str(sources[0]), "-o", tmp], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise GatecError(f"building the logic engine failed: {proc.stderr.strip().splitlines()[0]}")
                os.replace(tmp, path)
            finally:  # a failed or interrupted build leaves no half-written library in the cache
                if os.path.exists(tmp):
                    os.unlink(tmp)
        lib = ctypes.CDLL(str(path))
        lib.gatec_host_run.argtypes = [ctypes.POINTER(CProgram), ctypes.POINTER(CCounting), ctypes.c_void_p,
                                       ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.gatec_host_run.restype = None
        lib.gatec_host_pool_new.argtypes = [ctypes.c_uint32, ctypes.c_uint32]
        lib.gatec_host_pool_new.restype = ctypes.c_void_p
        lib.gatec_host_pool_workers.argtypes = [ctypes.c_void_p]
        lib.gatec_host_pool_workers.restype = ctypes.c_uint32
        lib.gatec_host_pool_run.argtypes = [ctypes.c_void_p, *lib.gatec_host_run.argtypes[:6], ctypes.c_void_p,
                                            ctypes.c_uint32]
        lib.gatec_host_pool_run.restype = ctypes.c_uint32
        lib.gatec_host_pool_free.argtypes = [ctypes.c_void_p]
        lib.gatec_host_pool_free.restype = None
        lib.gatec_tile_words.restype = ctypes.c_uint32
        lib.gatec_host_ternary.restype = ctypes.c_uint32
        _lib = lib
        return lib


class Engine:
    """Runs a Netlist, or a Program (plan's), on unpacked bits (N, n_inputs) -> class scores (N, k)
    float32. Given a netlist it plans only the program the library runs (host_program)."""

    def __init__(self, program: Program | Netlist, threads: int = 0):
        given_netlist = isinstance(program, Netlist)
        self.netlist = program if given_netlist else program.source
        self._program = None if given_netlist else program
        self.n_inputs, self.k, self.tau = program.n_inputs, program.k, program.tau  # a Netlist's or a Program's
        self.threads = threads if threads > 0 else default_threads()
        self.lib = library()
        self._programs: dict[bool, tuple[Program, CProgram]] = {}  # by ternary (see host_program)
        self._countings: dict[tuple, CCounting] = {}  # by the library's kind, the program's and tau (see counting)
        self._spare: list[np.ndarray] = []  # scratch buffers kept between calls: fresh pages cost page faults
        self._pool = None  # gatec_host.c's worker threads, started on the first batch that several threads share
        self._pool_owner = (0, None)  # the process and library that started them (a forked child starts its own)
        self._pool_lock = threading.Lock()  # one batch at a time a pool
        self._worker_cores: dict[int, np.ndarray] = {}  # by the caller's core
        self.joined = 0  # the workers that joined the last batch run with several threads

    @property
    def program(self) -> Program:
        """The program given, or plan's of the netlist given."""
        if self._program is None:
            self._program = plan(self.netlist)
        return self._program

    def host_program(self) -> tuple[Program, CProgram]:
        """The program the library in use runs, planned again from the netlist it records (if it
        does) with slots reused gate by gate (schedule's reuse "gate": 1.05x on the benchmark
        network, whose slots go from 7,205 to 4,986): plan_ternary's for a library whose gates
        are three-input (AVX-512) when its slots fit the library's uint16 records, else plan's.
        Without a netlist, the program given (a ternary library then runs it with
        gatec_logic.c's loops)."""
        source = self.netlist
        ternary = bool(self.lib.gatec_host_ternary()) and source is not None
        if ternary not in self._programs:
            p = self.program if source is None else (plan_ternary if ternary else plan)(source, reuse="gate")
            if p.n_slots > 1 << 16:
                p = self.program
            c = CProgram(p.n_inputs, p.n_slots, len(p.group_op), len(p.output_slot), p.k,
                         *(arr.ctypes.data for arr in (p.group_op, p.group_count, p.a_slot, p.b_slot, p.out_slot,
                                                       p.output_slot)))
            self._programs[ternary] = (p, c)
        return self._programs[ternary]

    @property
    def scratch_words(self) -> int:
        return scratch_words(self.host_program()[0])

    def counting(self, scores: bool = False) -> CCounting:
        """The counting struct for the library in use; scores: the C side divides by tau (as
        float32, the division run() did in numpy: one correctly rounded float32 quotient either
        way) instead of leaving counts. NULL gate records where the program is not the library's
        kind (gatec_logic.c's loops run it)."""
        p = self.host_program()[0]
        library_ternary, ternary = bool(self.lib.gatec_host_ternary()), p.c_slot is not None
        tau = float(np.float32(self.tau)) if scores else 0.0
        key = (library_ternary, ternary, tau)
        if key not in self._countings:
            counting = host_counting(p, tau)
            if library_ternary != ternary:
                counting.gate_records = None
            self._countings[key] = counting
        return self._countings[key]

    def _bits(self, bits: np.ndarray) -> np.ndarray:
        bits = np.ascontiguousarray(bits, dtype=np.uint8)
        if bits.ndim != 2 or bits.shape[1] != self.n_inputs:
            raise GatecError(f"the logic engine expects bits of shape (N, {self.n_inputs}), "
                             f"got {list(bits.shape)}")
        return bits

    def _scratch(self, words: int) -> np.ndarray:
        while self._spare:
            try:
                scratch = self._spare.pop()  # list.pop/append are atomic: threads share the spares safely
            except IndexError:
                break
            if len(scratch) >= words:
                return scratch
        scratch = np.empty(words + 8, np.uint64)  # slots on 64-byte boundaries: one cache line each
        skip = (-scratch.ctypes.data % 64) // 8
        return scratch[skip:skip + words]

    def _fill(self, bits: np.ndarray, scores: np.ndarray, divide: bool = False) -> None:
        """Class counts of `bits` (checked by _bits) into `scores`, an int32 (N, k) array. With
        several threads the calling thread and gatec_host.c's pool of workers each run the whole
        batch through gatec_host_run, and take its tiles from a counter they share (take_tile): a
        tile goes to the thread that asks first, so a core slowed by other work (or a slower
        core) takes fewer, where equal shares would wait for it, and each thread still folds its
        next tile's rows while the one before runs. The caller starts on the tiles at once and
        returns when the workers that joined are done; on a 2-core AMD EPYC (Zen 4) VM this ran
        1.06x faster than a Python thread pool's workers with the caller waiting on their futures
        (65,536 samples; 1.20x on 8,192), side by side (gatec_host.c says why). Each thread has its own
        scratch and writes its own tiles' rows of scores; ctypes drops the GIL during the call.
        The workers are kept on cores of their own (worker_cores)."""
        n = bits.shape[0]
        if n == 0:
            return
        parts = max(1, min(self.threads, -(-n // (TILE * 64 * CHUNK_TILES))))
        counting = ctypes.byref(self.counting(divide))
        program, words = ctypes.byref(self.host_program()[1]), self.scratch_words
        scratch = self._scratch(words)
        try:
            if parts == 1:
                self.lib.gatec_host_run(program, counting, bits.ctypes.data, n, scratch.ctypes.data,
                                        scores.ctypes.data, None)
                return
            with self._pool_lock:
                pool = self._worker_pool(words)
                cores = self._cores_for(current_cpu())
                self.joined = self.lib.gatec_host_pool_run(pool, program, counting, bits.ctypes.data, n,
                                                           scratch.ctypes.data, scores.ctypes.data,
                                                           cores.ctypes.data, parts - 1)
        finally:
            self._spare.append(scratch)

    def _worker_pool(self, words: int) -> int:
        """This engine's pool of threads - 1 workers, started on first use in this process and
        library (a forked child's copy of its parent's is left alone: its threads are the parent's)."""
        if self._pool_owner != (os.getpid(), self.lib) or not self._pool:
            self._free_pool()
            self._pool = self.lib.gatec_host_pool_new(self.threads - 1, words)
            if not self._pool:
                raise MemoryError("the logic engine's worker threads")
            self._pool_owner = (os.getpid(), self.lib)
        return self._pool

    def _cores_for(self, caller_cpu: int) -> np.ndarray:
        if caller_cpu not in self._worker_cores:
            try:
                cores = sorted(os.sched_getaffinity(0))
            except (AttributeError, OSError):  # no affinity on this OS: the scheduler decides
                cores = []
            self._worker_cores[caller_cpu] = np.array(worker_cores(self.threads - 1, caller_cpu, cores), np.int32)
        return self._worker_cores[caller_cpu]

    def _free_pool(self) -> None:
        pid, lib = self._pool_owner
        if self._pool and pid == os.getpid():
            lib.gatec_host_pool_free(self._pool)  # its workers end
        self._pool, self._pool_owner = None, (0, None)

    def __del__(self):
        try:
            self._free_pool()
        except Exception:  # at interpreter exit the modules may be gone: the threads end with the process
            pass

    def counts(self, bits: np.ndarray) -> np.ndarray:
        bits = self._bits(bits)
        scores = np.empty((len(bits), self.k), np.int32)
        self._fill(bits, scores)
        return scores

    def run(self, bits: np.ndarray) -> np.ndarray:
        """Scores, counts / tau as float32, divided in place of the counts (a float32 division rounds
        as the float64 one rounded to float32 would: both are the correctly rounded quotient); by
        the C side as each tile's counts are done, while they are in the cache (tau > 0)."""
        bits = self._bits(bits)
        scores = np.empty((len(bits), self.k), np.float32)
        counts = scores.view(np.int32)
        if np.float32(self.tau) > 0:
            self._fill(bits, counts, divide=True)
        else:
            self._fill(bits, counts)
            np.divide(counts, np.float32(self.tau), out=scores, dtype=np.float32)
        return scores
