"""A 12-point hls4ml sweep (GLU(16->32->5) to fpga: 3 precisions x 4 reuse factors) on Ray on this
machine, against the same points compiled one after another in this process.

    python benchmarks/bench_sweep.py [--quick]     # writes benchmarks/results/sweep[_quick].json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import gatec
from gatec import sweep as sweeping
from gatec.nn import GLU

GRID = {"precision": ["ap_fixed<8,3>", "ap_fixed<12,4>", "ap_fixed<16,6>"], "reuse_factor": [1, 2, 4, 16]}
SAMPLES = 64


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 points")
    args = ap.parse_args(argv)
    grid = {"precision": GRID["precision"][1:], "reuse_factor": [1, 4]} if args.quick else GRID
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = os.path.join(tmp, "glu.pt")
        torch.jit.save(torch.jit.trace(GLU(16, 32, 5, form="two_linear").eval(), torch.randn(1, 16)), model)
        todo = sweeping.points(sweeping.parse_grid("fpga", grid))
        data = Path(model).read_bytes()

        start = time.perf_counter()  # one after another, in this process (torch and gatec already imported)
        serial = [sweeping.run_point(model, data, "fpga", p, [[1, 16]], [], SAMPLES, None, None)[0] for p in todo]
        serial_s = time.perf_counter() - start

        start = time.perf_counter()  # Ray on this machine: starting it and its workers counts
        rows = gatec.sweep(model, target="fpga", grid=grid, output=os.path.join(tmp, "sweep"), input_shapes=[[1, 16]],
                           samples=SAMPLES)
        ray_s = time.perf_counter() - start
    same = all({k: a[k] for k in sweeping.FIGURES} == {k: b[k] for k in sweeping.FIGURES} for a, b in zip(serial, rows))
    result = {"points": len(todo), "cpus": os.cpu_count(), "cpu": cpu_model(), "one_after_another_s": round(serial_s, 2),
              "ray_sweep_s": round(ray_s, 2), "speedup": round(serial_s / ray_s, 2), "same_rows": same,
              "ok_points": sum(r["ok"] for r in rows)}
    print(f"{'points':>6} {'cpus':>4} {'one after another':>18} {'ray sweep':>10} {'speedup':>8}  cpu")
    print(f"{result['points']:>6} {result['cpus']:>4} {serial_s:>16.1f} s {ray_s:>8.1f} s {result['speedup']:>7.2f}x  "
          f"{result['cpu']}")
    print(f"rows identical: {same}; points that compiled and verified: {result['ok_points']} of {len(todo)}")
    out = Path(__file__).parent / "results" / f"sweep{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
