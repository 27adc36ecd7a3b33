"""Training cost of gatec.qat's fixed-point GRU against the float GRU, side by side in one run:
GRU(8->32)+Linear on the digits rows (1,437 training digits, batch 64, one thread), the median
epoch of each, at 16, 10 and 8 bits. The fixed-point forward is hls4ml's arithmetic bit for bit
(tests/test_qat_fixed.py); the float GRU is PyTorch's fused CPU kernel.

    python benchmarks/bench_fixed_qat.py [--quick]

Prints a table and writes benchmarks/results/fixed_qat.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from gatec.nn import RecurrentClassifier
from gatec.qat import FixedConfig, prepare_fixed

RESULTS = Path(__file__).parent / "results"
TYPES = {16: "ap_fixed<16,6,AP_RND,AP_SAT>", 10: "ap_fixed<10,5,AP_RND,AP_SAT>", 8: "ap_fixed<8,4,AP_RND,AP_SAT>"}


def epoch_seconds(model, x, y, epochs: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    times = []
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        start = time.perf_counter()
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 epochs each instead of 9")
    args = ap.parse_args()
    epochs = 3 if args.quick else 9
    torch.manual_seed(0)
    torch.set_num_threads(1)
    d = load_digits()
    x = torch.from_numpy((d.images[:1437] / 16.0).astype(np.float32))
    y = torch.from_numpy(d.target[:1437])
    model = RecurrentClassifier(8, 32, 10, "gru")
    rows = []
    for _ in range(2):  # float, then each width, twice in turn: other jobs' load falls on all rows
        rows.append({"model": "float GRU", "seconds": epoch_seconds(model, x, y, epochs)})
        for bits, precision in TYPES.items():
            fixed = prepare_fixed(model, FixedConfig(precision))
            rows.append({"model": f"fixed {bits} bits", "precision": precision,
                         "seconds": epoch_seconds(fixed, x, y, epochs)})
    best = {}
    for r in rows:
        best[r["model"]] = min(best.get(r["model"], r), r, key=lambda q: q["seconds"])
    base = best["float GRU"]["seconds"]
    table = [{**r, "vs_float": r["seconds"] / base} for r in best.values()]
    print(f"CPU: {platform.processor() or platform.machine()}; one thread; epoch = 23 batches of 64")
    print(f"{'model':<16} {'epoch ms':>9} {'vs float':>9}")
    for r in table:
        print(f"{r['model']:<16} {1e3 * r['seconds']:>9.1f} {r['vs_float']:>8.2f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fixed_qat.json").write_text(json.dumps({"rows": table, "epochs_timed": epochs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
