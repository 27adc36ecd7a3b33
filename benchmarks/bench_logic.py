"""Throughput of the bit-packed `cpu` form (ONNX Runtime, one thread) against the discrete PyTorch
model (one thread) on a 784-input network of 6 x 8,000 gates with random ops, 65,536 samples.

    python benchmarks/bench_logic.py            # the full size
    python benchmarks/bench_logic.py --quick    # a small network, for a smoke run

Prints a table and writes benchmarks/results/logic.json. Every form's output is checked equal to
PyTorch's before it is timed.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import gatec
from gatec.nn.logic import GroupSum, LogicLayer
from gatec.targets.cpu.bitpacked import lower_logic, lower_logic_float


def network(in_dim: int, width: int, depth: int, k: int, seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers, dim = [], in_dim
    for _ in range(depth):
        layers.append(LogicLayer(dim, width))  # randn weights: each gate's argmax op is uniform over 16
        dim = width
    return torch.nn.Sequential(*layers, GroupSum(k, tau=1.0)).eval()


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def session(model) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--samples", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--depth", type=int)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch-batch", type=int, default=8192, help="PyTorch runs the samples in chunks of this")
    ap.add_argument("--float-form", action="store_true", help="also time the float ONNX form")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "logic.json"))
    args = ap.parse_args(argv)
    samples = args.samples or (4096 if args.quick else 65_536)
    width = args.width or (1000 if args.quick else 8000)
    depth = args.depth or (2 if args.quick else 6)
    in_dim, k = 784, 10
    torch.set_num_threads(1)

    net = network(in_dim, width, depth, k)
    ir = gatec.load(net, [[1, in_dim]]).ir
    x = np.random.default_rng(0).integers(0, 2, (samples, in_dim)).astype(np.float32)
    xt = torch.from_numpy(x)
    chunk = args.torch_batch  # (65,536 x 8,000) float activations would take 2 GB per tensor

    def torch_run():
        return torch.cat([net(part) for part in xt.split(chunk)])

    with torch.no_grad():
        expected = torch_run().numpy()
    forms = {"cpu bit-packed (ORT)": session(lower_logic(ir))}
    if args.float_form:
        forms["cpu float form (ORT)"] = session(lower_logic_float(ir))

    rows = []
    with torch.no_grad():
        t = best_of(torch_run, args.repeats)
    rows.append({"form": "PyTorch eval (discrete)", "seconds": t, "samples_per_s": samples / t})
    for name, s in forms.items():
        feed = {s.get_inputs()[0].name: x}
        if not np.array_equal(s.run(None, feed)[0], expected):
            raise SystemExit(f"{name} disagrees with PyTorch")
        t = best_of(lambda: s.run(None, feed), args.repeats)
        rows.append({"form": name, "seconds": t, "samples_per_s": samples / t})
    base = rows[0]["samples_per_s"]
    for r in rows:
        r["vs_pytorch"] = r["samples_per_s"] / base

    print(f"logic network: {in_dim} inputs, {depth} x {width} gates (random ops), GroupSum k={k}; "
          f"{samples} samples, one thread, best of {args.repeats} (PyTorch in chunks of {chunk})")
    print(f"{'form':<26} {'seconds':>9} {'samples/s':>12} {'vs PyTorch':>11}")
    for r in rows:
        print(f"{r['form']:<26} {r['seconds']:>9.3f} {r['samples_per_s']:>12,.0f} {r['vs_pytorch']:>10.2f}x")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"in_dim": in_dim, "width": width, "depth": depth, "k": k, "samples": samples,
                               "threads": 1, "torch_batch": chunk, "machine": platform.machine(), "torch": torch.__version__,
                               "onnxruntime": ort.__version__, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
