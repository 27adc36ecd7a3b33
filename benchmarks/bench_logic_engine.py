"""Logic-network engines side by side on one network: 784 inputs, 6 x 8,000 gates with random
ops, GroupSum over 10 classes, 65,536 samples, one core, input packing included (every engine
gets the same unpacked 0/1 bytes).

Rows: gatec's engine (the cpu target's runtime for logic networks), the C firmware (target c)
at 64- and 32-bit words, ONNX Runtime on the bit-packed graph, and the discrete PyTorch model.
Also the time from model file to first result in a fresh process (the engine is built once
per machine and cached, so that build is done before timing).

    python benchmarks/bench_logic_engine.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gatec  # noqa: E402
from gatec.bench import timeit  # noqa: E402
from gatec.nn.logic import GroupSum, LogicLayer  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DIFFLOGIC_O3 = 0.97e6  # difflogic's CompiledLogicNet at -O3 on this network, one core (FIELD_NOTES section 3)

FIRST_RESULT = """
import time, sys
start = time.perf_counter()
import numpy as np, gatec
art = gatec.compile(sys.argv[1], "cpu", sys.argv[2], input_shapes=[[1, {n_in}]], verify=False)
art.run(np.ones((1, {n_in}), np.uint8))
print(time.perf_counter() - start)
"""


def random_network(n_in: int, width: int, depth: int, classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [LogicLayer(n_in if i == 0 else width, width) for i in range(depth)]
    return torch.nn.Sequential(*layers, GroupSum(classes, 1.0)).eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a smaller network and batch (for a smoke run)")
    args = ap.parse_args()
    n_in, width, depth, classes, n = (784, 8000, 6, 10, 65536) if not args.quick else (784, 1000, 3, 10, 4096)
    torch.set_num_threads(1)
    model = random_network(n_in, width, depth, classes)
    bits = np.random.default_rng(0).integers(0, 2, (n, n_in)).astype(np.uint8)
    work = Path(tempfile.mkdtemp(prefix="gatec-bench-"))
    model_file = work / "model.pt"
    torch.save(model, model_file)

    print(f"network: {n_in} inputs, {depth} x {width} gates, {classes} classes; {n} samples, one thread", flush=True)
    source = gatec.load(str(model_file), [[1, n_in]])
    engines = {}
    cpu = gatec.compile(None, "cpu", work / "cpu", source=source, verify=False, options={"threads": 1})
    engines["gatec engine (cpu target)"] = lambda: cpu.run(bits)
    ort_art = gatec.compile(None, "cpu", work / "ort", source=source, verify=False,
                            options={"threads": 1, "engine": "onnxruntime"})
    engines["ONNX Runtime bit-packed"] = lambda: ort_art.run(bits)
    for wb in (64, 32):
        art = gatec.compile(None, "c", work / f"c{wb}", source=source, verify=False,
                            options={"word_bits": wb, "cflags": "-O3 -march=native"})
        engines[f"C firmware {wb}-bit words"] = (lambda a: lambda: a.run(bits))(art)
    x = torch.from_numpy(bits.astype(np.float32))

    def pytorch():
        with torch.no_grad():
            return model(x)
    engines["PyTorch (discrete, eval)"] = pytorch

    reference = pytorch().numpy()
    rows = []
    for name, fn in engines.items():
        out = fn()
        out = out[0] if isinstance(out, list) else out.numpy() if hasattr(out, "numpy") else out
        exact = bool(np.array_equal(np.asarray(out), reference))
        seconds = timeit(fn, min_time=2.0 if not args.quick else 0.3, min_reps=3)
        rows.append({"engine": name, "seconds": seconds, "samples_per_s": n / seconds, "bit_exact": exact})
        print(f"  {name:<28} {n / seconds / 1e6:8.3f} M samples/s  bit-exact: {exact}", flush=True)

    subprocess.run([sys.executable, "-c", FIRST_RESULT.format(n_in=n_in), str(model_file), str(work / "warm")],
                   check=True, capture_output=True)  # builds and caches the engine if needed
    first = float(subprocess.run([sys.executable, "-c", FIRST_RESULT.format(n_in=n_in), str(model_file),
                                  str(work / "first")], check=True, capture_output=True, text=True).stdout)

    base = next(r for r in rows if r["engine"].startswith("PyTorch"))
    print(f"\n{'engine':<28} {'samples/s':>14} {'vs PyTorch':>11} {'vs difflogic -O3*':>18} {'bit-exact':>10}")
    for r in rows:
        r["vs_pytorch"] = r["samples_per_s"] / base["samples_per_s"]
        r["vs_difflogic_o3_quoted"] = r["samples_per_s"] / DIFFLOGIC_O3
        print(f"{r['engine']:<28} {r['samples_per_s']:>14,.0f} {r['vs_pytorch']:>10.1f}x "
              f"{r['vs_difflogic_o3_quoted']:>17.2f}x {str(r['bit_exact']):>10}")
    print(f"model file to first result (fresh process, cpu target): {first:.2f} s")
    print("* difflogic's compiled C (0.97M samples/s at -O3) is quoted from FIELD_NOTES, not run here: "
          "it does not install without CUDA")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("logic_engine_quick.json" if args.quick else "logic_engine.json")
    out.write_text(json.dumps({"network": {"inputs": n_in, "layers": depth, "width": width, "classes": classes,
                                           "samples": n, "threads": 1},
                               "rows": rows, "first_result_s": first}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
