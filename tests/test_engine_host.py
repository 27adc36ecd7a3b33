"""gatec's host engine: threads (sharing a batch's tiles), the cpu target's `threads` option
reaching it, and a compiled artifact that opens and runs without torch."""
import ctypes
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

import gatec
from gatec import engine
from gatec.engine import TILE, Engine
from gatec.ir.netlist import Netlist, plan


def random_net(seed, n_in=40, widths=(120, 90, 60), k=3):
    rng = np.random.default_rng(seed)
    layers, prev = [], n_in
    for w in widths:
        layers.append((rng.integers(0, prev, w), rng.integers(0, prev, w), rng.integers(0, 16, w).astype(np.uint8)))
        prev = w
    return Netlist.from_layers(n_in, layers, k, 2.0)


class Spy:
    """The engine library, recording each call of a batch: gatec_host_run's (one thread) and
    gatec_host_pool_run's (the caller and its pool's workers)."""

    def __init__(self, lib):
        self.lib, self.calls = lib, []

    def __getattr__(self, name):  # the library's other functions (gatec_tile_words)
        return getattr(self.lib, name)

    def gatec_host_run(self, prog, counting, bits, n, scratch, scores, shared):
        self.calls.append(("run", n, shared))
        self.lib.gatec_host_run(prog, counting, bits, n, scratch, scores, shared)

    def gatec_host_pool_run(self, pool, prog, counting, bits, n, scratch, scores, cores, workers):
        self.calls.append(("pool", n, workers))
        return self.lib.gatec_host_pool_run(pool, prog, counting, bits, n, scratch, scores, cores, workers)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("chunks", [0.3, 1, 2.5, 4])
def test_threads_share_the_batch_and_agree(threads, chunks):
    net = random_net(threads)
    chunk = engine.CHUNK_TILES * TILE * 64
    n = int(chunks * chunk)
    bits = np.random.default_rng(n).integers(0, 2, (n, net.n_inputs)).astype(np.uint8)
    eng = Engine(plan(net), threads=threads)
    eng.lib = spy = Spy(eng.lib)
    np.testing.assert_array_equal(eng.counts(bits), net.evaluate(bits))
    # one thread: a call over the batch; else the caller and at most a worker for each further
    # CHUNK_TILES tiles, each over the whole batch
    parts = max(1, min(threads, -(-n // chunk)))
    assert spy.calls == ([("run", n, None)] if parts == 1 else [("pool", n, parts - 1)])
    assert eng.joined <= parts - 1


def test_workers_join_a_batch_and_take_tiles():
    """Over a few batches of 16 tiles a 2-thread engine's worker joins some (gatec_host_pool_run
    counts it), and every batch's counts are the netlist's."""
    net = random_net(7, widths=(2000, 1500, 900))
    bits = np.random.default_rng(7).integers(0, 2, (2 * engine.CHUNK_TILES * TILE * 64, net.n_inputs)).astype(np.uint8)
    expected = net.evaluate(bits)
    eng = Engine(plan(net), threads=2)
    joined = []
    for _ in range(20):
        np.testing.assert_array_equal(eng.counts(bits), expected)
        joined.append(eng.joined)
    assert set(joined) <= {0, 1}
    if len(os.sched_getaffinity(0)) > 1:  # on one core the worker may never get a turn in time
        assert max(joined) == 1


def test_a_pool_without_workers_leaves_every_tile_to_the_caller():
    net = random_net(8)
    eng = Engine(plan(net), threads=1)
    lib = eng.lib
    pool = lib.gatec_host_pool_new(0, eng.scratch_words)
    try:
        assert lib.gatec_host_pool_workers(pool) == 0
        n = 3 * TILE * 64 + 9
        bits = np.random.default_rng(8).integers(0, 2, (n, net.n_inputs)).astype(np.uint8)
        scores = np.full((n, net.k), -7, np.int32)
        scratch = eng._scratch(eng.scratch_words)
        joined = lib.gatec_host_pool_run(pool, ctypes.byref(eng.host_program()[1]), ctypes.byref(eng.counting()),
                                         bits.ctypes.data, n, scratch.ctypes.data, scores.ctypes.data, None, 4)
        assert joined == 0
        np.testing.assert_array_equal(scores, net.evaluate(bits))
    finally:
        lib.gatec_host_pool_free(pool)


@pytest.mark.skipif(not hasattr(os, "fork") or "GATEC_EMULATED" in os.environ,
                    reason="no fork on this OS, or under qemu-user, whose own locks can hang a child forked from threads")
def test_a_forked_child_starts_its_own_workers():
    """A child forked after the parent's workers started has none of their threads: its engine
    starts a pool of its own, and its counts are the netlist's (a copy of the parent's pool
    would leave the caller alone at best, or wait on a lock held at the fork)."""
    net = random_net(9)
    bits = np.random.default_rng(9).integers(0, 2, (2 * engine.CHUNK_TILES * TILE * 64, net.n_inputs)).astype(np.uint8)
    eng = Engine(plan(net), threads=2)
    expected = net.evaluate(bits)
    np.testing.assert_array_equal(eng.counts(bits), expected)
    parent_pool = eng._pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether its counts agree and its pool is a new one, then leave
        ok = False
        try:
            ok = bool(np.array_equal(eng.counts(bits), expected)) and eng._pool != parent_pool
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"1"
    np.testing.assert_array_equal(eng.counts(bits), expected)  # the parent's pool still runs


@pytest.mark.parametrize("records", [True, False])
def test_a_call_runs_only_the_tiles_no_other_thread_took(records):
    """The shared counter hands each tile out once: a call that finds tiles 0 and 1 taken leaves
    their rows alone and computes the rest, also through gatec_logic.c's loops (no gate records:
    a program the library does not plan itself)."""
    net = random_net(4)
    program = plan(net) if records else dataclasses.replace(plan(net), source=None)
    eng = Engine(program, threads=1)
    tile = int(eng.lib.gatec_tile_words()) * 64
    n = 5 * tile + 17
    bits = np.random.default_rng(4).integers(0, 2, (n, net.n_inputs)).astype(np.uint8)
    scores = np.full((n, net.k), -7, np.int32)
    shared = np.array([2], np.uint32)
    counting = eng.counting()
    assert bool(counting.gate_records) == (records or not eng.lib.gatec_host_ternary())  # NULL: gatec_logic.c's
    scratch = eng._scratch(eng.scratch_words)
    eng.lib.gatec_host_run(ctypes.byref(eng.host_program()[1]), ctypes.byref(counting), bits.ctypes.data, n,
                           scratch.ctypes.data, scores.ctypes.data, shared.ctypes.data)
    assert (scores[:2 * tile] == -7).all()
    np.testing.assert_array_equal(scores[2 * tile:], net.evaluate(bits)[2 * tile:])
    assert shared[0] == 6 + 1  # the tiles 2..5 it took, and its last ask


def test_a_program_past_uint16_slots_runs_without_records():
    """Gate records hold uint16 slots: a program of more slots than that has none, and
    gatec_logic.c's loops run it, with the netlist's counts."""
    rng = np.random.default_rng(11)
    n, n_in = 120000, 400  # one layer, every gate an output (few alike on 400 inputs, a third wires): a slot each
    net = Netlist.from_layers(n_in, [(rng.integers(0, n_in, n), rng.integers(0, n_in, n),
                                      rng.integers(0, 16, n).astype(np.uint8))], 1, 1.0)
    eng = Engine(plan(net), threads=1)
    assert eng.host_program()[0].n_slots > 1 << 16 and not eng.counting().gate_records
    bits = rng.integers(0, 2, (3 * TILE * 64 + 5, n_in)).astype(np.uint8)
    np.testing.assert_array_equal(eng.counts(bits), net.evaluate(bits))


def test_default_threads_are_the_cores_this_process_may_use():
    net = random_net(0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert Engine(plan(net)).threads == engine.default_threads() == cores
    assert Engine(plan(net), threads=3).threads == 3


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    import torch
    from gatec.nn.logic import GroupSum, LogicLayer
    torch.manual_seed(0)
    model = torch.nn.Sequential(LogicLayer(30, 64), LogicLayer(64, 40), GroupSum(4, 2.0)).eval()
    art = gatec.compile(model, "cpu", tmp_path_factory.mktemp("cpu") / "art", input_shapes=[[1, 30]], samples=64)
    bits = np.random.default_rng(0).integers(0, 2, (3000, 30)).astype(np.uint8)
    with torch.no_grad():
        expected = model(torch.from_numpy(bits.astype(np.float32))).numpy()
    return art.path, bits, expected


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_cpu_target_threads_option_reaches_the_engine(artifact, threads):
    path, bits, expected = artifact
    art = gatec.Artifact.open(path, {"threads": threads})
    assert art.runner.engine.threads == (threads or engine.default_threads())
    np.testing.assert_array_equal(art.run(bits)[0], expected)


OPEN_AND_RUN = """
import sys
import numpy as np
import gatec
bits = np.load(sys.argv[2])
np.save(sys.argv[3], gatec.Artifact.open(sys.argv[1]).run(bits)[0])
print(sorted(m for m in ("torch", "qonnx", "onnxscript") if m in sys.modules))
"""


def test_artifact_opens_and_runs_without_torch(artifact, tmp_path):
    path, bits, expected = artifact
    np.save(tmp_path / "bits.npy", bits)
    proc = subprocess.run([sys.executable, "-c", OPEN_AND_RUN, str(path), str(tmp_path / "bits.npy"),
                           str(tmp_path / "out.npy")], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout  # none of the heavy front-end libraries was imported
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


@pytest.mark.parametrize("tau", [1.0, 3.0, 0.7, 10.0 / 3])
def test_run_divides_as_numpy_does(tau):
    """run()'s scores, divided by the C side as each tile is done, are numpy's float32 count / tau bit for bit."""
    rng = np.random.default_rng(4)
    layers = [(rng.integers(0, 30, 200), rng.integers(0, 30, 200), rng.integers(0, 16, 200).astype(np.uint8)),
              (rng.integers(0, 200, 90), rng.integers(0, 200, 90), rng.integers(0, 16, 90).astype(np.uint8))]
    net = Netlist.from_layers(30, layers, 3, tau)
    bits = rng.integers(0, 2, (5000, 30)).astype(np.uint8)
    for threads in (1, 2):
        eng = Engine(plan(net), threads=threads)
        counts = eng.counts(bits)
        np.testing.assert_array_equal(counts, net.evaluate(bits))
        out = eng.run(bits)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out.view(np.int32), np.divide(counts, np.float32(tau), dtype=np.float32).view(np.int32))


def engine_threads() -> set[int]:
    """The ids of this process's threads that gatec_host.c's pools started (named gatec-engine)."""
    tids = set()
    for task in os.listdir("/proc/self/task"):
        try:
            if open(f"/proc/self/task/{task}/comm").read().strip() == "gatec-engine":
                tids.add(int(task))
        except OSError:
            pass
    return tids


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc to see the worker threads")
def test_workers_get_a_core_each_but_the_callers_when_the_threads_use_every_core():
    cores = sorted(os.sched_getaffinity(0))
    before = engine_threads()
    net = random_net(5)
    bits = np.random.default_rng(5).integers(0, 2, (len(cores) * engine.CHUNK_TILES * TILE * 64,
                                                    net.n_inputs)).astype(np.uint8)
    eng = Engine(plan(net), threads=len(cores))
    for _ in range(10):  # a worker is kept on its core once it joins a batch
        np.testing.assert_array_equal(eng.counts(bits), net.evaluate(bits))
    workers = engine_threads() - before
    assert len(workers) == len(cores) - 1
    pinned = [os.sched_getaffinity(t) for t in workers]
    if len(cores) > 1 and eng.joined:
        on_one = [p for p in pinned if len(p) == 1]
        assert on_one and len({next(iter(p)) for p in on_one}) == len(on_one) and set().union(*on_one) <= set(cores)
    assert sorted(os.sched_getaffinity(0)) == cores  # the calling thread keeps its affinity
    del eng
    assert engine_threads() - before == set()  # the pool's threads end with its engine


def test_worker_cores_follow_the_callers_core():
    assert [engine.worker_core(i, 2, [0, 1, 2, 3]) for i in range(3)] == [3, 0, 1]
    assert engine.worker_cores(3, 2, [0, 1, 2, 3]) == [3, 0, 1]
    assert engine.worker_cores(1, 0, [0, 1]) == [1] and engine.worker_cores(1, 1, [0, 1]) == [0]
    assert engine.worker_cores(3, 5, [1, 5]) == [1, 5, 1]  # more threads than cores
    assert engine.worker_cores(2, -1, [0, 1, 2]) == [0, 1]  # the caller's core unknown
    assert engine.worker_cores(1, 0, [0, 1, 2, 3]) == [-1]  # fewer threads than cores: left to the scheduler
    assert engine.current_cpu() in os.sched_getaffinity(0)


@pytest.mark.parametrize("k", [1, 3, 10, 16, 17, 40])
def test_scores_for_any_class_count_and_output_alignment(k):
    """Scores leave a tile as whole rows (a 16 x 16 transpose of class counts, masked stores): every
    class count (above 16 the transpose takes classes 16 at a time), tile edge and output alignment
    gives numpy's, and nothing is written outside the output."""
    rng = np.random.default_rng(k)
    layers, prev = [], 48
    for w in (200, 40 * k):
        layers.append((rng.integers(0, prev, w), rng.integers(0, prev, w), rng.integers(0, 16, w).astype(np.uint8)))
        prev = w
    net = Netlist.from_layers(48, layers, k, 1.5)
    eng = Engine(plan(net), threads=1)
    for n in (1, 15, 16, 17, 530, 1024 + 7):
        bits = rng.integers(0, 2, (n, 48)).astype(np.uint8)
        counts = net.evaluate(bits)
        want = np.divide(counts, np.float32(1.5), dtype=np.float32)
        np.testing.assert_array_equal(eng.run(bits), want)
        np.testing.assert_array_equal(eng.counts(bits), counts)
        for shift in (0, 1, 4):  # int32s past a 64-byte boundary
            buf = np.zeros(n * k + 64, np.int32)
            base = (-buf.ctypes.data % 64) // 4 + shift
            out = buf[base:base + n * k].reshape(n, k)
            eng._fill(bits, out, divide=True)
            np.testing.assert_array_equal(out.view(np.float32), want)
            assert not buf[:base].any() and not buf[base + n * k:].any()  # nothing written outside
