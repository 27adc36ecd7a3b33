"""Logic-network engines side by side on one network: 784 inputs, 6 x 8,000 gates with random ops,
GroupSum over 10 classes, 65,536 samples, one thread, input packing included (every engine gets
the same unpacked 0/1 input).

Rows: gatec's engine (the cpu target's runtime for logic networks), ONNX Runtime on the
bit-packed graph (the cpu target with --engine onnxruntime), the C firmware (target c) at 64-
and 32-bit words, and the discrete PyTorch model (timed on the first --torch-samples samples: at
under a thousand samples a second the whole set would take minutes). Every row's output is
checked against PyTorch's. Also: the time from model file to first result in a fresh process.

    python benchmarks/bench_logic.py [--quick] [--float-form] [--engine-only]

Prints a table and writes benchmarks/results/logic.json (--engine-only: gatec's engine and PyTorch
alone, best and median of --repeats timed runs, written to logic_engine.json).
"""
from __future__ import annotations

import argparse
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
DIFFLOGIC_O3 = 0.97e6  # difflogic's CompiledLogicNet at -O3 on this network, one core (docs/FACTS.md, "Figures")

FIRST_RESULT = """
import time, sys
start = time.perf_counter()
import numpy as np, gatec
art = gatec.compile(sys.argv[1], "cpu", sys.argv[2], input_shapes=[[1, int(sys.argv[3])]], verify=False)
art.run(np.ones((1, int(sys.argv[3])), np.uint8))
print(time.perf_counter() - start)
"""


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
    print(f"network: {n_in} inputs, {depth} x {width} gates (random ops), {classes} classes; {n} samples, "
          f"one thread", flush=True)

    source = gatec.load(str(model_file), [[1, n_in]])
    builds = {"gatec engine (cpu target)": ("cpu", {"threads": 1}),
              "ONNX Runtime bit-packed": ("cpu", {"threads": 1, "engine": "onnxruntime"}),
              "C firmware, 64-bit words": ("c", {"word_bits": 64, "cflags": "-O3 -march=native"}),
              "C firmware, 32-bit words": ("c", {"word_bits": 32, "cflags": "-O3 -march=native"})}
    if args.engine_only:
        builds = dict(list(builds.items())[:1])
    if args.float_form:
        builds["ONNX Runtime float form"] = ("cpu", {"threads": 1, "engine": "onnxruntime", "logic_form": "float"})
    engines = {}
    for i, (name, (target, options)) in enumerate(builds.items()):
        art = gatec.compile(None, target, work / f"a{i}", source=source, verify=False, options=options)
        engines[name] = (lambda a: lambda x: a.run(x)[0])(art)

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
    for name, run in engines.items():
        out = run(bits)
        exact = bool(np.array_equal(out[:m], expected)) and (reference is None or np.array_equal(out, reference))
        reference = out if reference is None else reference
        if args.engine_only:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                run(bits)
                times.append(time.perf_counter() - t0)
            seconds = float(np.median(times))
            rows.append({"engine": name, "samples": n, "seconds": seconds, "samples_per_s": n / seconds,
                         "best_samples_per_s": n / min(times), "bit_exact": exact})
            print(f"  {name:<28} {n / seconds / 1e6:8.3f} M samples/s median, {n / min(times) / 1e6:.3f} best of "
                  f"{args.repeats}  bit-exact: {exact}", flush=True)
            continue
        seconds = timeit(lambda: run(bits), min_time=2.0 if not args.quick else 0.3, min_reps=3)
        rows.append({"engine": name, "samples": n, "seconds": seconds, "samples_per_s": n / seconds, "bit_exact": exact})
        print(f"  {name:<28} {n / seconds / 1e6:8.3f} M samples/s  bit-exact: {exact}", flush=True)
    first = first_result_seconds(model_file, work, n_in)

    base = rows[0]["samples_per_s"]
    print(f"\n{'engine':<28} {'samples/s':>14} {'vs PyTorch':>11} {'vs difflogic -O3*':>18} {'bit-exact':>10}")
    for r in rows:
        r["vs_pytorch"] = r["samples_per_s"] / base
        r["vs_difflogic_o3_quoted"] = r["samples_per_s"] / DIFFLOGIC_O3
        print(f"{r['engine']:<28} {r['samples_per_s']:>14,.0f} {r['vs_pytorch']:>10.1f}x "
              f"{r['vs_difflogic_o3_quoted']:>17.2f}x {str(r['bit_exact']):>10}")
    print(f"model file to first result (fresh process, cpu target): {first:.2f} s")
    print("* difflogic's compiled C (0.97M samples/s at -O3 here) is quoted from docs/FACTS.md, not run: "
          "difflogic does not install without CUDA")
    if not all(r["bit_exact"] for r in rows):
        raise SystemExit("an engine disagrees with PyTorch")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("logic_quick.json" if args.quick else "logic_engine.json" if args.engine_only else "logic.json")
    out.write_text(json.dumps({"network": {"inputs": n_in, "layers": depth, "width": width, "classes": classes,
                                           "samples": n, "threads": 1},
                               "machine": platform.machine(), "torch": torch.__version__,
                               "onnxruntime": ort.__version__, "rows": rows, "first_result_s": first}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
