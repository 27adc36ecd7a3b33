"""Target fpga on logic networks: LUT6 per original gate (GroupSum included), LUT depth, and the
time from model file to simulated (Icarus Verilog, bit-exact) and synthesized (yosys) Verilog.

Rows: a random network (784 inputs, 6 x 8,000 gates with random ops, GroupSum over 10 classes)
and, when `python examples/digits_logic.py` has saved it, the trained digits network (thermometer
encoder, 4 x 4,000 gates). Both at -O1, compiled through `gatec compile` in a fresh process.

    python benchmarks/bench_rtl.py [--quick]

Prints a table and writes benchmarks/results/rtl.json.
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

import torch  # noqa: E402

from gatec.nn.logic import GroupSum, LogicLayer  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DIGITS = Path(__file__).parent.parent / "build" / "digits_logic" / "digits_logic.pt"


def random_network(n_in: int, width: int, depth: int, classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [LogicLayer(n_in if i == 0 else width, width) for i in range(depth)]  # randn weights: uniform ops
    return torch.nn.Sequential(*layers, GroupSum(classes, 1.0)).eval()


def compile_fpga(model_file: Path, out: Path, n_in: int) -> dict:
    """`gatec compile --target fpga` in a fresh process: the wall time and resources.json."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gatec", "compile", str(model_file), "--target", "fpga", "-o", str(out),
                    "--input-shape", f"1,{n_in}", "--samples", "256"], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    res = json.loads((out / "resources.json").read_text())
    verified = json.loads((out / "manifest.json").read_text())["verification"]["ok"]
    s = res["synthesized_by_yosys"]
    return {"seconds": round(seconds, 1), "verified_bit_exact": verified, "original_gates": res["network"]["gates_in_model"],
            "luts": s["luts"], "luts_per_original_gate": s["luts_per_original_gate"], "lut_depth": s["lut_depth"],
            "groupsum_luts_alone": s["groupsum_luts_alone"],
            "gates_inside_counters": res["network"].get("gates_inside_counters")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller random network, no digits (a smoke run)")
    args = ap.parse_args()
    width, depth = (1000, 3) if args.quick else (8000, 6)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="gatec-bench-rtl-") as tmp:
        model_file = Path(tmp) / "random.pt"
        torch.save(random_network(784, width, depth, 10), model_file)
        rows[f"random {depth} x {width}"] = compile_fpga(model_file, Path(tmp) / "random_fpga", 784)
        if DIGITS.exists() and not args.quick:
            rows["digits 4 x 4000 (trained)"] = compile_fpga(DIGITS, Path(tmp) / "digits_fpga", 64)
    print(f"{'network':<28} {'gates':>7} {'LUT6':>7} {'LUT6/gate':>10} {'depth':>6} {'GroupSum alone':>15} {'seconds':>8}")
    for name, r in rows.items():
        print(f"{name:<28} {r['original_gates']:>7} {r['luts']:>7} {r['luts_per_original_gate']:>10.3f} "
              f"{r['lut_depth']:>6} {r['groupsum_luts_alone']:>15} {r['seconds']:>8}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("rtl_quick.json" if args.quick else "rtl.json")
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
