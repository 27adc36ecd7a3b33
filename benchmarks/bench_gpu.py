"""The gpu target on a GPU, beside PyTorch eager on the same GPU.

Logic: the 784-input, 6 x 8,000-gate network with random ops and GroupSum over 10 classes, at
65,536 and 1,048,576 samples: gatec's Triton kernels on samples already packed on the GPU
(gatec.targets.gpu.logic; the counts checked bit for bit against gatec's CPU engine) against
the discrete PyTorch model on the GPU. GRU(16->64)+Linear at sequence 50, batch 1 and 4,096:
PyTorch eager on the GPU, and the gpu target's row (this version writes the engine graph and
builds no GPU engine itself, so the row says so rather than timing something else).

    python benchmarks/bench_gpu.py [--quick]

Needs a CUDA GPU; on a machine without one it says so and exits 0. Writes
benchmarks/results/gpu.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).parent))


def cuda_seconds(fn, reps: int = 20) -> float:
    """Median seconds per call, timed with CUDA events after a warm-up."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return float(np.median(times))


def logic_rows(sizes) -> list[dict]:
    from bench_logic import network
    from gatec.engine import Engine
    from gatec.ir.netlist import plan
    from gatec.targets.gpu.logic import TritonLogicRunner, level_plan
    from gatec.targets.logic_input import split_logic
    import gatec.frontend
    model = network(784, 8000, 6, 10)
    net = split_logic(gatec.frontend.load(model, [[1, 784]]).ir)[1]
    runner = TritonLogicRunner(level_plan(net))
    gpu_model = model.to("cuda")
    rows = []
    for n in sizes:
        bits = np.random.default_rng(0).integers(0, 2, (n, 784)).astype(np.uint8)
        packed = runner.pack(bits).to("cuda")
        counts = runner.counts_packed(packed, n).cpu().numpy()
        check = min(n, 4096)
        exact = bool(np.array_equal(counts[:check], Engine(plan(net)).run(bits[:check]).astype(np.int32)))
        t_gatec = cuda_seconds(lambda: runner.counts_packed(packed, n))
        x = torch.from_numpy(bits.astype(np.float32)).to("cuda")
        with torch.no_grad():
            t_torch = cuda_seconds(lambda: gpu_model(x), reps=5)
        rows += [{"model": "logic 6x8000", "engine": "gatec gpu (Triton)", "batch": n, "seconds": t_gatec,
                  "samples_per_s": n / t_gatec, "bit_exact_vs_cpu_engine": exact},
                 {"model": "logic 6x8000", "engine": "pytorch eager (cuda)", "batch": n, "seconds": t_torch,
                  "samples_per_s": n / t_torch}]
    return rows


def gru_rows(batches) -> list[dict]:
    from gatec.nn import RecurrentClassifier
    torch.manual_seed(0)
    model = RecurrentClassifier(16, 64, 10, "gru").eval().to("cuda")
    rows = []
    for b in batches:
        x = torch.randn(b, 50, 16, device="cuda")
        with torch.no_grad():
            t = cuda_seconds(lambda: model(x))
        rows += [{"model": "gru 16->64 T=50", "engine": "pytorch eager (cuda)", "batch": b, "seconds": t,
                  "samples_per_s": b / t},
                 {"model": "gru 16->64 T=50", "engine": "gatec gpu", "batch": b, "seconds": None,
                  "samples_per_s": None, "note": "no GPU engine built by this version (engine.onnx only)"}]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the smaller sizes only")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: needs a GPU (CUDA); this machine has none, nothing measured")
        return 0
    rows = logic_rows([65536] if args.quick else [65536, 1048576]) + gru_rows([1] if args.quick else [1, 4096])
    for r in rows:
        base = next((p for p in rows if p["model"] == r["model"] and p["batch"] == r["batch"]
                     and p["engine"].startswith("pytorch")), None)
        r["speedup_vs_pytorch"] = base["seconds"] / r["seconds"] if r["seconds"] and base else None
    print(f"{'model':<18} {'engine':<22} {'batch':>9} {'latency':>12} {'samples/s':>16} {'vs pytorch':>10}")
    for r in rows:
        lat = "-" if r["seconds"] is None else f"{r['seconds'] * 1e3:.3f} ms"
        rate = "-" if r["samples_per_s"] is None else f"{r['samples_per_s']:,.0f}"
        ratio = "-" if r["speedup_vs_pytorch"] is None else f"{r['speedup_vs_pytorch']:.2f}x"
        print(f"{r['model']:<18} {r['engine']:<22} {r['batch']:>9} {lat:>12} {rate:>16} {ratio:>10} {r.get('note', '')}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
