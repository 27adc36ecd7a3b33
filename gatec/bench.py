"""`gatec bench`: latency at batch 1 and throughput at batch 64, PyTorch eager beside each
target, in one run, one thread by default (these machines are shared: compare ratios)."""
from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from .frontend import Source
from .ir.sampling import example_array, input_sets, variant_shape


def timeit(fn, min_time: float = 0.5, min_reps: int = 5) -> float:
    """Median seconds per call, over at least `min_reps` calls and `min_time` seconds."""
    fn()  # warm up
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 10000:
            break
    return float(np.median(times))


def bench(source: Source, runners: dict, batches=(1, 64), threads: int = 1, min_time: float = 0.5,
          progress: bool = True) -> list[dict]:
    """Rows of {engine, batch, latency_ms, samples_per_s, speedup_vs_pytorch}; `runners` maps a
    target name to a callable on a list of arrays."""
    torch.set_num_threads(threads)
    engines = {}
    if source.module is not None:
        engines["pytorch"] = source.reference
    engines.update(runners)
    jobs = [(name, b) for b in batches for name in engines]
    rows = []
    for name, batch in tqdm(jobs, desc="bench", disable=not progress, leave=False):
        inputs = [example_array(s, variant_shape(s, batch, 0), i) for i, s in enumerate(source.ir.inputs)]
        seconds = timeit(lambda: engines[name](inputs), min_time)
        rows.append({"engine": name, "batch": batch, "latency_ms": seconds * 1e3, "samples_per_s": batch / seconds})
    for row in rows:
        base = next((r for r in rows if r["engine"] == "pytorch" and r["batch"] == row["batch"]), None)
        row["speedup_vs_pytorch"] = base["latency_ms"] / row["latency_ms"] if base else None
    return rows


def format_rows(rows: list[dict]) -> str:
    width = max([12, *(len(r["engine"]) for r in rows)])
    head = f"{'engine':<{width}} {'batch':>6} {'latency':>12} {'samples/s':>14} {'vs pytorch':>11}"
    out = [head, "-" * len(head)]
    for r in rows:
        ratio = "-" if r["speedup_vs_pytorch"] is None else f"{r['speedup_vs_pytorch']:.2f}x"
        out.append(f"{r['engine']:<{width}} {r['batch']:>6} {r['latency_ms']:>10.4f}ms {r['samples_per_s']:>14,.0f} {ratio:>11}")
    return "\n".join(out)


__all__ = ["bench", "format_rows", "timeit", "input_sets"]
