"""The C firmware (target c) and gatec's logic engine: built with real compilers, bit-exact
against the reference at every word size and at tile boundaries."""
import ctypes
import os
import platform
import re
import subprocess

import numpy as np
import onnx
import pytest

import gatec
from gatec.engine import TILE, Engine
from gatec.ir import LOGIC_DOMAIN
from gatec.ir.logic import Layer, group_sum_node, logic_layer_node
from gatec.ir.netlist import Netlist, plan


def random_layers(rng, n_in, widths):
    layers, prev = [], n_in
    for w in widths:
        layers.append(Layer(rng.integers(0, prev, w), rng.integers(0, prev, w), rng.integers(0, 16, w)))
        prev = w
    return layers


def logic_onnx(path, n_in, layers, k, tau):
    nodes, x = [], "input"
    for i, layer in enumerate(layers):
        nodes.append(logic_layer_node(x, f"h{i}", layer, f"logic_{i}"))
        x = f"h{i}"
    nodes.append(group_sum_node(x, "output", k, tau, "group_sum"))
    graph = onnx.helper.make_graph(
        nodes, "logic", [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["n", n_in])],
        [onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, ["n", k])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18),
                                                         onnx.helper.make_opsetid(LOGIC_DOMAIN, 1)])
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    rng = np.random.default_rng(1)
    layers = random_layers(rng, 24, [96, 96, 60])
    path = logic_onnx(tmp_path_factory.mktemp("logic") / "net.onnx", 24, layers, 3, 4.0)
    net = Netlist.from_layers(24, [(l.in_a, l.in_b, l.ops) for l in layers], 3, 4.0)
    return path, net


@pytest.mark.parametrize("word_bits", [8, 16, 32, 64])
def test_firmware_is_bit_exact_at_every_word_size(network, tmp_path, word_bits):
    path, net = network
    art = gatec.compile(path, "c", tmp_path / "fw", options={"word_bits": word_bits}, samples=200)
    assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0
    assert f"#define GATEC_WORD_BITS {word_bits}" in (tmp_path / "fw" / "model.h").read_text()
    bits = np.random.default_rng(word_bits).integers(0, 2, (77, 24)).astype(np.uint8)
    (scores,) = art.run(bits)
    np.testing.assert_array_equal(scores, net.evaluate(bits) / np.float32(4.0))


def test_firmware_builds_with_its_own_makefile_and_runs(network, tmp_path):
    path, net = network
    art = gatec.compile(path, "c", tmp_path / "fw", options={"word_bits": 16}, samples=64)
    make = subprocess.run(["make", "-C", str(art.path), "CFLAGS=-std=c99 -Wall -Wextra -Werror -pedantic -O2"],
                          capture_output=True, text=True)
    assert make.returncode == 0, make.stderr
    bits = np.random.default_rng(5).integers(0, 2, (10, 24)).astype(np.uint8)
    stdin = "\n".join("".join(map(str, row)) for row in bits) + "\n"
    out = subprocess.run([str(art.path / "model")], input=stdin, capture_output=True, text=True, check=True).stdout
    printed = np.array([[float(v) for v in line.split()] for line in out.splitlines()], np.float32)
    np.testing.assert_array_equal(printed, net.evaluate(bits) / np.float32(4.0))
    library = subprocess.run(["nm", str(art.path / "libmodel.a")], capture_output=True, text=True).stdout
    assert "gatec_model_counts" in library
    defined = {line.split()[-1] for line in library.splitlines() if " T " in line}
    undefined = {line.split()[-1] for line in library.splitlines() if " U " in line} - defined
    assert undefined <= {"memset", "memcpy"}, undefined  # nothing from libc beyond string.h


def test_firmware_rejects_bad_word_size(network, tmp_path):
    path, _ = network
    with pytest.raises(gatec.GatecError, match="word-bits 12"):
        gatec.compile(path, "c", tmp_path / "fw", options={"word_bits": 12})
    assert not (tmp_path / "fw").exists()


def test_c_target_refuses_arithmetic_models(tmp_path):
    import torch
    with pytest.raises(gatec.GatecError, match="logic-gate networks only"):
        gatec.compile(torch.nn.Linear(3, 2), "c", tmp_path / "fw", input_shapes=[[1, 3]])


@pytest.mark.parametrize("n", [1, 63, 64, 65, TILE * 64 - 1, TILE * 64 + 1, 2 * TILE * 64 + 7])
def test_engine_at_tile_boundaries(network, n):
    _, net = network
    bits = np.random.default_rng(n).integers(0, 2, (n, 24)).astype(np.uint8)
    np.testing.assert_array_equal(Engine(plan(net)).counts(bits), net.evaluate(bits))


def random_dag(rng, n_in, n_gates, k):
    """A netlist that is not layered: each gate reads any earlier node; many wires and constants."""
    a, b = np.zeros(n_gates, np.int64), np.zeros(n_gates, np.int64)
    for g in range(n_gates):
        a[g], b[g] = rng.integers(0, n_in + g, 2)
    op = rng.choice([0, 3, 5, 10, 12, 15, *range(16)], n_gates).astype(np.uint8)
    outputs = rng.choice(n_in + n_gates, 4 * k)
    return Netlist(n_in, a, b, op, outputs, k, 1.0)


@pytest.mark.parametrize("seed", range(6))
def test_engine_on_unlayered_netlists(seed):
    rng = np.random.default_rng(seed)
    net = random_dag(rng, 9, 200, 3)
    bits = rng.integers(0, 2, (700, 9)).astype(np.uint8)
    program = plan(net)
    assert program.gates_executed <= net.n_gates
    np.testing.assert_array_equal(Engine(program).counts(bits), net.evaluate(bits))


def test_fold_follows_wire_chains_and_merges_the_same_gate_at_another_depth():
    from gatec.ir.netlist import OP_ID, fold
    A, B, AND, XOR, OR = (OP_ID[k] for k in ("A", "B", "AND", "XOR", "OR"))
    # node 2 = a AND b; 3, 4: wires of it; 5: node 2 again; 6 = 4 XOR a, a layer deeper than
    # 7 = 2 XOR a, the same gate; 8: a wire of input b (level 0); 9 = 8 OR a
    net = Netlist(2, np.array([0, 2, 3, 0, 4, 2, 0, 8]), np.array([1, 2, 3, 1, 0, 0, 1, 0]),
                  np.array([AND, A, A, AND, XOR, XOR, B, OR], np.uint8), np.array([6, 7, 9]), 1)
    folded = fold(net)
    assert folded.a.tolist() == [0, 2, 2, 0, 2, 2, 0, 1]
    assert folded.outputs.tolist() == [6, 6, 9]
    assert np.flatnonzero(folded.live).tolist() == [0, 4, 7]
    bits = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.uint8)
    np.testing.assert_array_equal(Engine(plan(net)).counts(bits), net.evaluate(bits))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="-mno-avx512f is an x86-64 flag")
def test_engine_portable_paths_without_avx512(network, tmp_path):
    """The host engine's portable packing and count paths (built with AVX-512 off) are bit-exact too."""
    from gatec import engine
    so = tmp_path / "portable.so"
    subprocess.run(["gcc", *engine.build_flags(), "-mno-avx512f", "-Wno-psabi", str(engine.SOURCE), "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    assert lib.gatec_tile_words() == 8  # a slot is a pair of 256-bit registers (the AVX2 path)
    rng = np.random.default_rng(5)
    wide = Netlist.from_layers(6, [(rng.integers(0, 6, 33000), rng.integers(0, 6, 33000), rng.integers(0, 16, 33000))])
    for net in (network[1], random_dag(rng, 130, 300, 3), wide):  # wide: counts past 2^15 (16-bit lanes)
        p = plan(net)
        prog = engine.CProgram(p.n_inputs, p.n_slots, len(p.group_op), len(p.output_slot), p.k,
                               *(a.ctypes.data for a in (p.group_op, p.group_count, p.a_slot, p.b_slot, p.out_slot,
                                                         p.output_slot)))
        counting = engine.host_counting(p)
        for n in (5, 4 * 64 + 1, TILE * 64 + 3, 3 * TILE * 64 + 7):  # the last: tiles packed while others run
            bits = rng.integers(0, 2, (n, net.n_inputs)).astype(np.uint8)
            scratch = np.zeros(Engine(p).scratch_words, np.uint64)
            scores = np.empty((n, p.k), np.int32)
            for run, shared in ((lib.gatec_host_run, [None]), (lib.gatec_run_counting, [])):  # AVX2, gatec_logic.c's
                run(ctypes.byref(prog), ctypes.byref(counting), ctypes.c_void_p(bits.ctypes.data), ctypes.c_uint32(n),
                    ctypes.c_void_p(scratch.ctypes.data), ctypes.c_void_p(scores.ctypes.data), *shared)
                np.testing.assert_array_equal(scores, net.evaluate(bits))


def test_engine_threads_agree(network):
    _, net = network
    bits = np.random.default_rng(3).integers(0, 2, (5000, 24)).astype(np.uint8)
    np.testing.assert_array_equal(Engine(plan(net), threads=2).counts(bits), Engine(plan(net)).counts(bits))


def test_engine_rejects_wrong_width(network):
    _, net = network
    with pytest.raises(gatec.GatecError, match=r"\(N, 24\)"):
        Engine(plan(net)).counts(np.zeros((4, 23), np.uint8))


def encoder_model(kind):
    import torch
    from gatec.nn.logic import GroupSum, LogicLayer, ThermometerEncoder, ThresholdEncoder
    torch.manual_seed(0)
    fit = np.random.default_rng(0).random((200, 16)).astype(np.float32) * 10
    enc = ThermometerEncoder(16, 3).fit(fit) if kind == "thermometer" else ThresholdEncoder(16).fit(fit)
    return torch.nn.Sequential(enc, LogicLayer(enc.thresholds.numel(), 80), LogicLayer(80, 40),
                               GroupSum(4, 2.0)).eval(), fit


@pytest.mark.parametrize("kind", ["thermometer", "threshold"])
def test_firmware_with_input_encoder(tmp_path, kind):
    import torch
    model, fit = encoder_model(kind)
    art = gatec.compile(model, "c", tmp_path / "fw", input_shapes=[[1, 16]], data=[fit], options={"word_bits": 8})
    assert art.manifest["verification"]["ok"]
    assert "gatec_model_counts_features" in (art.path / "model.h").read_text()
    # values exactly on the thresholds, where a rounded threshold would flip a bit
    t = model[0].thresholds.numpy().reshape(16, -1)
    x = np.repeat(fit[:1], t.shape[1], 0)
    x[:, :] = t.T
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(art.run(x)[0], expected)
    assert subprocess.run(["make", "-C", str(art.path)], capture_output=True).returncode == 0
    stdin = "\n".join(" ".join(repr(float(v)) for v in row) for row in x) + "\n"
    out = subprocess.run([str(art.path / "model")], input=stdin, capture_output=True, text=True, check=True).stdout
    np.testing.assert_array_equal(np.array([[float(v) for v in line.split()] for line in out.splitlines()]), expected)


def test_firmware_refuses_an_encoder_it_cannot_express(tmp_path):
    import torch
    from gatec.nn.logic import GroupSum, LogicLayer, ThresholdEncoder
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), ThresholdEncoder(8), LogicLayer(8, 8), GroupSum(2)).eval()
    with pytest.raises(gatec.GatecError, match="not a comparison of input features with thresholds"):
        gatec.compile(model, "c", tmp_path / "fw", input_shapes=[[1, 4]])
    assert not (tmp_path / "fw").exists()


def test_engine_cache_names_the_cpu(monkeypatch, tmp_path):
    """A cache shared by hosts of different CPUs: a library built with -march=native on one is
    never handed to another (the key names the CPU's model and flags)."""
    from gatec import engine
    monkeypatch.setenv("GATEC_CACHE", str(tmp_path))
    built = []
    for cpu in (b"flags : avx2", b"flags : avx2 avx512f"):
        monkeypatch.setattr(engine, "_lib", None)
        monkeypatch.setattr(engine, "cpu_identity", lambda cc, cpu=cpu: cpu)
        engine.library()
        built.append({p.name for p in tmp_path.glob("gatec_logic_*.so")})
    assert len(built[0]) == 1 and len(built[1]) == 2
    monkeypatch.setattr(engine, "_lib", None)


def test_engine_prefetch_level_by_cpu(network, tmp_path):
    """The next tile's rows go to L1 on AMD CPUs with an L1d of 48 KB or more and to L2 elsewhere (a
    speed choice only): the engine built with this host's level and one built with the other give
    the netlist's counts, the last tiles packed while others run."""
    from gatec import engine
    assert engine.prefetch_locality("vendor_id\t: AuthenticAMD\n", 48 << 10) == 3
    assert engine.prefetch_locality("vendor_id\t: AuthenticAMD\n", 32 << 10) == 2
    assert engine.prefetch_locality("vendor_id\t: AuthenticAMD\n", 0) == 2
    assert engine.prefetch_locality("vendor_id\t: GenuineIntel\n", 48 << 10) == 2
    getconf = subprocess.run(["getconf", "LEVEL1_DCACHE_SIZE"], capture_output=True, text=True, check=False)
    if getconf.returncode == 0 and getconf.stdout.strip().isdigit() and int(getconf.stdout) > 0:
        assert engine.l1d_bytes() == int(getconf.stdout)  # glibc reads it from the CPU (cpuid), sysfs from the kernel
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2, (5 * TILE * 64 + 9, network[1].n_inputs)).astype(np.uint8)
    flags = engine.build_flags()
    level = [f for f in flags if f.startswith("-DGATEC_PREFETCH_LOCALITY=")]
    assert len(level) == 1 and level[0][-1] in "23"
    other = tmp_path / "other.so"
    subprocess.run([os.environ.get("CC", "gcc"), *[f for f in flags if f not in level],
                    f"-DGATEC_PREFETCH_LOCALITY={5 - int(level[0][-1])}", str(engine.SOURCE), "-o", str(other)],
                   check=True)  # CC: the compiler whose -march=native is this CPU (an emulated one's too)
    for lib in (engine.library(), ctypes.CDLL(str(other))):
        eng = Engine(plan(network[1]), threads=1)
        eng.lib = lib
        lib.gatec_host_run.argtypes = engine.library().gatec_host_run.argtypes
        lib.gatec_tile_words.restype = lib.gatec_host_ternary.restype = ctypes.c_uint32
        np.testing.assert_array_equal(eng.counts(bits), network[1].evaluate(bits))


def test_firmware_is_built_with_the_compiler_named_by_CC(network, tmp_path, monkeypatch):
    log = tmp_path / "cc.log"
    wrapper = tmp_path / "mycc"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\nexec gcc \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    art = gatec.compile(network[0], "c", tmp_path / "fw", samples=40)
    assert art.manifest["verification"]["ok"]
    assert "gatec_logic.c" in log.read_text()
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(gatec.GatecError, match="no-such-cc"):
        gatec.compile(network[0], "c", tmp_path / "fw2", samples=40)


@pytest.mark.parametrize("word_bits", [8, 16, 32, 64])
def test_unrolled_firmware_is_bit_exact_and_builds_clean(network, tmp_path, word_bits):
    """--c-form unrolled: the gates as straight-line code, its own packing and counting."""
    path, net = network
    art = gatec.compile(path, "c", tmp_path / "fw", options={"word_bits": word_bits, "c_form": "unrolled"}, samples=150)
    assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0
    source = (art.path / "model.c").read_text()
    assert "static void gates_0(void)" in source and "a_slot" not in source
    for n in (1, word_bits - 1, word_bits + 1, 3 * word_bits + 5):
        bits = np.random.default_rng(n).integers(0, 2, (n, 24)).astype(np.uint8)
        np.testing.assert_array_equal(art.run(bits)[0], net.evaluate(bits) / np.float32(4.0))
    make = subprocess.run(["make", "-C", str(art.path), "CFLAGS=-std=c99 -Wall -Wextra -Werror -pedantic -O2"],
                          capture_output=True, text=True)
    assert make.returncode == 0, make.stderr
    library = subprocess.run(["nm", str(art.path / "libmodel.a")], capture_output=True, text=True).stdout
    defined = {line.split()[-1] for line in library.splitlines() if " T " in line}
    assert {line.split()[-1] for line in library.splitlines() if " U " in line} - defined <= {"memset", "memcpy"}


def test_unrolled_firmware_reuses_a_slot_after_its_last_reader(network, tmp_path):
    """The straight-line gates free a slot as soon as the last gate reading it has run, the tables
    only after its last reader's level: the unrolled firmware's scratch is the smaller, and both
    give the netlist's counts."""
    path, net = network
    slots = {}
    for form in ("table", "unrolled"):
        art = gatec.compile(path, "c", tmp_path / form, options={"word_bits": 64, "c_form": form}, samples=150)
        assert art.manifest["verification"]["ok"] and art.manifest["verification"]["max_abs_err"] == 0
        found = re.search(r"static gatec_word scratch\[GATEC_SCRATCH_WORDS\((\d+)u", (art.path / "model.c").read_text())
        slots[form] = int(found.group(1))
    assert slots["unrolled"] < slots["table"], slots


def test_unrolled_firmware_packed_entry_point(network, tmp_path):
    path, net = network
    art = gatec.compile(path, "c", tmp_path / "fw", options={"word_bits": 64, "c_form": "unrolled"}, verify=False)
    so = tmp_path / "libm.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(so), "model.c", "gatec_logic.c"], cwd=art.path,
                   check=True)
    lib = ctypes.CDLL(str(so))
    n = 150
    bits = np.random.default_rng(9).integers(0, 2, (n, 24)).astype(np.uint8)
    padded = np.zeros((3 * 64, 24), np.uint8)
    padded[:n] = bits
    packed = np.packbits(padded.reshape(3, 64, 24), axis=1, bitorder="little")  # (tile, byte, input)
    words = np.ascontiguousarray(packed.transpose(0, 2, 1)).view(np.uint64)  # little-endian: bit j = sample j
    counts = np.empty((n, 3), np.int32)
    lib.gatec_model_counts_packed(ctypes.c_void_p(words.ctypes.data), ctypes.c_uint32(n),
                                  ctypes.c_void_p(counts.ctypes.data))
    np.testing.assert_array_equal(counts, net.evaluate(bits))


def test_unrolled_firmware_with_input_encoder(tmp_path):
    import torch
    model, fit = encoder_model("thermometer")
    art = gatec.compile(model, "c", tmp_path / "fw", input_shapes=[[1, 16]], data=[fit],
                        options={"word_bits": 16, "c_form": "unrolled"})
    assert art.manifest["verification"]["ok"] and "gates_0" in (art.path / "model.c").read_text()
    with torch.no_grad():
        np.testing.assert_array_equal(art.run(fit)[0], model(torch.from_numpy(fit)).numpy())


def test_unrolled_form_keeps_tables_for_very_large_networks(network, tmp_path, monkeypatch):
    import gatec.targets.c as c_target
    path, _ = network
    monkeypatch.setattr(c_target, "UNROLL_LIMIT", 10)
    art = gatec.compile(path, "c", tmp_path / "fw", options={"c_form": "unrolled"}, samples=40)
    assert art.manifest["verification"]["ok"] and "a_slot" in (art.path / "model.c").read_text()


def test_c_form_default_is_the_table_interpreter(network, tmp_path):
    path, _ = network
    a = gatec.compile(path, "c", tmp_path / "a", verify=False)
    b = gatec.compile(path, "c", tmp_path / "b", options={"c_form": "table"}, verify=False)
    assert (a.path / "model.c").read_bytes() == (b.path / "model.c").read_bytes()
    assert "gates_0" not in (a.path / "model.c").read_text()
    with pytest.raises(gatec.GatecError, match="c-form"):
        gatec.compile(path, "c", tmp_path / "c", options={"c_form": "loops"}, verify=False)


def test_unrolled_firmware_of_wires_only(tmp_path):
    """Every gate a wire (op 3, A): nothing left to run but the counting; still -Werror clean."""
    layers = [Layer(np.arange(8) % 5, np.zeros(8, np.int64), np.full(8, 3))]
    path = logic_onnx(tmp_path / "wires.onnx", 5, layers, 2, 1.0)
    art = gatec.compile(path, "c", tmp_path / "fw", options={"c_form": "unrolled"}, samples=40)
    assert art.manifest["verification"]["ok"] and "gates_0" not in (art.path / "model.c").read_text()
    bits = np.random.default_rng(2).integers(0, 2, (9, 5)).astype(np.uint8)
    np.testing.assert_array_equal(art.run(bits)[0], bits[:, np.arange(8) % 5].reshape(9, 2, 4).sum(-1))
