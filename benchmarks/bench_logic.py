"""Logic-network engines side by side on one network: 784 inputs, 6 x 8,000 gates with random ops,
GroupSum over 10 classes, 65,536 samples, one thread unless a row says otherwise, input packing
included (every engine gets the same unpacked 0/1 input).

Rows: gatec's engine (the cpu target's runtime for logic networks) on one thread and on all
cores; on an x86 host with AVX-512, also its AVX2 code path (the engine built with -mno-avx512f:
the AVX2 path on this CPU, not an AVX2-only host); ONNX Runtime on the bit-packed graph (the cpu
target with --engine onnxruntime); the C firmware (target c) at 64- and 32-bit words, table form
and --c-form unrolled at 64; and the discrete PyTorch model (timed on the first --torch-samples
samples: at under a thousand samples a second the whole set would take minutes). Every row's
output is checked against PyTorch's. Also, each in a fresh process: model file to first result
(tracing included), and opening an artifact compiled before to its first result (no torch).
difflogic is not run (see DIFFLOGIC); torchlogix is not run either (not set up here).

    python benchmarks/bench_logic.py [--quick] [--float-form] [--engine-only]

Prints a table and writes benchmarks/results/logic.json (--engine-only: gatec's engine and PyTorch
alone, best and median of --repeats timed runs taken row by row in turn, written to
logic_engine.json).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

import gatec  # noqa: E402
from gatec.bench import timeit  # noqa: E402
from gatec.nn.logic import GroupSum, LogicLayer  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DIFFLOGIC = ("difflogic: not run. Its pip install needs CUDA (none here), and its CompiledLogicNet's C could "
             "be built here only from its source, which gatec does not vendor.")

FIRST_RESULT = """
import time, sys
start = time.perf_counter()
import numpy as np, gatec
art = gatec.compile(sys.argv[1], "cpu", sys.argv[2], input_shapes=[[1, int(sys.argv[3])]], verify=False)
art.run(np.ones((1, int(sys.argv[3])), np.uint8))
print(time.perf_counter() - start)
"""

OPEN_RESULT = """
import time, sys
start = time.perf_counter()
import numpy as np, gatec
gatec.Artifact.open(sys.argv[1]).run(np.ones((1, int(sys.argv[2])), np.uint8))
print(time.perf_counter() - start, "torch" in sys.modules)
"""


def cpu() -> dict:
    """The CPU's model and its vector extensions (x86 flags, or arm's Features)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and model == (platform.processor() or platform.machine()):
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    vector = sorted(f for f in flags if f.startswith(("sse4", "avx", "asimd", "sve", "neon")))
    return {"model": model, "vector_extensions": vector}


def avx2_path_engine(program):
    """gatec's engine built with -mno-avx512f: its AVX2 code path, on a host that has AVX-512."""
    from gatec import engine
    so = Path(tempfile.mkdtemp(prefix="gatec-avx2-")) / "engine.so"
    subprocess.run([os.environ.get("CC", "gcc"), *engine.FLAGS, "-mno-avx512f", "-Wno-psabi", str(engine.SOURCE),
                    "-o", str(so)], check=True)
    eng = engine.Engine(program, threads=1)
    eng.lib = ctypes.CDLL(str(so))
    eng.lib.gatec_host_run.argtypes = engine.library().gatec_host_run.argtypes
    return eng


def network(n_in: int, width: int, depth: int, classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [LogicLayer(n_in if i == 0 else width, width) for i in range(depth)]  # randn weights: uniform ops
    return torch.nn.Sequential(*layers, GroupSum(classes, 1.0)).eval()


def first_result_seconds(model_file: Path, work: Path, n_in: int) -> float:
    """Model file to first result in a fresh process (after one run that builds the engine's cache)."""
    for name in ("warm", "first"):
        proc = subprocess.run([sys.executable, "-c", FIRST_RESULT, str(model_file), str(work / name), str(n_in)],
                              capture_output=True, text=True, check=True)
    return float(proc.stdout)


def open_result_seconds(artifact: Path, n_in: int, runs: int = 5) -> tuple[float, bool]:
    """A compiled artifact opened and run on one sample in a fresh process: median seconds, and
    whether torch was imported."""
    out = [subprocess.run([sys.executable, "-c", OPEN_RESULT, str(artifact), str(n_in)], capture_output=True, text=True,
                          check=True).stdout.split() for _ in range(runs)]
    return float(np.median([float(o[0]) for o in out])), any(o[1] == "True" for o in out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller network and batch (a smoke run)")
    ap.add_argument("--torch-samples", type=int, default=8192)
    ap.add_argument("--float-form", action="store_true", help="also time ONNX Runtime on the float form")
    ap.add_argument("--engine-only", action="store_true", help="time gatec's engine alone (a quick check)")
    ap.add_argument("--repeats", type=int, default=30, help="timed runs with --engine-only")
    args = ap.parse_args()
    n_in, width, depth, classes, n = (784, 8000, 6, 10, 65536) if not args.quick else (784, 1000, 3, 10, 4096)
    torch.set_num_threads(1)
    model = network(n_in, width, depth, classes)
    bits = np.random.default_rng(0).integers(0, 2, (n, n_in)).astype(np.uint8)
    work = Path(tempfile.mkdtemp(prefix="gatec-bench-"))
    model_file = work / "model.pt"
    torch.save(model, model_file)
    host = cpu()
    cores = gatec.engine.default_threads()
    print(f"network: {n_in} inputs, {depth} x {width} gates (random ops), {classes} classes; {n} samples, "
          f"one thread unless named", flush=True)
    print(f"CPU: {host['model']}, {cores} cores; vector extensions: {' '.join(host['vector_extensions'])}", flush=True)
    load_before = os.getloadavg()  # other jobs on these shared cores: the threads row depends on them

    source = gatec.load(str(model_file), [[1, n_in]])
    builds = {"gatec engine (cpu target)": ("cpu", {"threads": 1}),
              f"gatec engine, {cores} threads": ("cpu", {"threads": cores}),
              "ONNX Runtime bit-packed": ("cpu", {"threads": 1, "engine": "onnxruntime"}),
              "C firmware, 64-bit words": ("c", {"word_bits": 64, "cflags": "-O3 -march=native"}),
              "C fw unrolled, 64-bit": ("c", {"word_bits": 64, "cflags": "-O3 -march=native", "c_form": "unrolled"}),
              "C firmware, 32-bit words": ("c", {"word_bits": 32, "cflags": "-O3 -march=native"})}
    if args.engine_only:
        builds = dict(list(builds.items())[:2])
    if args.float_form:
        builds["ONNX Runtime float form"] = ("cpu", {"threads": 1, "engine": "onnxruntime", "logic_form": "float"})
    engines, compile_s = {}, {}
    for i, (name, (target, options)) in enumerate(builds.items()):
        t0 = time.perf_counter()
        art = gatec.compile(None, target, work / f"a{i}", source=source, verify=False, options=options)
        compile_s[name] = time.perf_counter() - t0
        engines[name] = (lambda a: lambda x: a.run(x)[0])(art)
    if "avx512f" in host["vector_extensions"] and "avx2" in host["vector_extensions"]:
        eng = avx2_path_engine(gatec.Artifact.open(work / "a0").runner.engine.program)
        engines["gatec engine, AVX2 path"] = lambda x, e=eng: e.run(x)

    m = min(n, args.torch_samples)
    x_torch = torch.from_numpy(bits[:m].astype(np.float32))
    with torch.no_grad():
        t0 = time.perf_counter()
        expected = model(x_torch).numpy()
        torch_seconds = time.perf_counter() - t0
    rows = [{"engine": "PyTorch (discrete, eval)", "samples": m, "seconds": torch_seconds,
             "samples_per_s": m / torch_seconds, "bit_exact": True}]
    print(f"  {rows[0]['engine']:<28} {rows[0]['samples_per_s'] / 1e6:8.4f} M samples/s  (on {m} samples)", flush=True)
    reference = None
    times = {name: [] for name in engines}
    if args.engine_only:  # round robin, so that other jobs' load falls on every row alike
        for _ in range(args.repeats):
            for name, run in engines.items():
                t0 = time.perf_counter()
                run(bits)
                times[name].append(time.perf_counter() - t0)
    for name, run in engines.items():
        out = run(bits)
        exact = bool(np.array_equal(out[:m], expected)) and (reference is None or np.array_equal(out, reference))
        reference = out if reference is None else reference
        if args.engine_only:
            runs = times[name]
            seconds = float(np.median(runs))
            rows.append({"engine": name, "samples": n, "seconds": seconds, "samples_per_s": n / seconds,
                         "best_samples_per_s": n / min(runs), "bit_exact": exact})
            print(f"  {name:<28} {n / seconds / 1e6:8.3f} M samples/s median, {n / min(runs) / 1e6:.3f} best of "
                  f"{args.repeats}  bit-exact: {exact}", flush=True)
            continue
        seconds = timeit(lambda: run(bits), min_time=2.0 if not args.quick else 0.3, min_reps=3)
        rows.append({"engine": name, "samples": n, "seconds": seconds, "samples_per_s": n / seconds, "bit_exact": exact,
                     "compile_s": compile_s.get(name)})
        print(f"  {name:<28} {n / seconds / 1e6:8.3f} M samples/s  bit-exact: {exact}", flush=True)
    first = first_result_seconds(model_file, work, n_in)
    opened, torch_imported = open_result_seconds(work / "a0", n_in)

    base = rows[0]["samples_per_s"]
    engine_1 = rows[1]["samples_per_s"] if len(rows) > 1 else base
    load = [round(x, 2) for x in (load_before[0], os.getloadavg()[0])]
    print(f"\nCPU: {host['model']}; vector extensions: {' '.join(host['vector_extensions'])}; "
          f"load average (1 min) before and after: {load[0]}, {load[1]}")
    print(f"{'engine':<28} {'samples/s':>14} {'vs PyTorch':>11} {'vs engine, 1 thread':>20} {'compile s':>10} "
          f"{'bit-exact':>10}")
    for r in rows:
        r["vs_pytorch"] = r["samples_per_s"] / base
        r["vs_engine_one_thread"] = r["samples_per_s"] / engine_1
        built = "" if r.get("compile_s") is None else f"{r['compile_s']:.1f}"
        print(f"{r['engine']:<28} {r['samples_per_s']:>14,.0f} {r['vs_pytorch']:>10.1f}x "
              f"{r['vs_engine_one_thread']:>19.2f}x {built:>10} {str(r['bit_exact']):>10}")
    print(f"model file to first result (fresh process, cpu target, tracing included): {first:.2f} s")
    print(f"compiled artifact to first result (fresh process: open + run, median of 5): {opened:.2f} s, "
          f"torch imported: {torch_imported}")
    print(DIFFLOGIC)
    if not all(r["bit_exact"] for r in rows):
        raise SystemExit("an engine disagrees with PyTorch")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("logic_quick.json" if args.quick else "logic_engine.json" if args.engine_only else "logic.json")
    out.write_text(json.dumps({"network": {"inputs": n_in, "layers": depth, "width": width, "classes": classes,
                                           "samples": n, "threads": 1},
                               "machine": platform.machine(), "cpu": host, "cores": cores, "load_average": load,
                               "torch": torch.__version__,
                               "onnxruntime": ort.__version__, "rows": rows, "first_result_s": first,
                               "open_first_result_s": opened, "open_imports_torch": torch_imported,
                               "difflogic": DIFFLOGIC}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
