"""Gate pruning pays: a difflogic-layout network with trained-like op statistics (~40% wires and
inverters, ~5% constants) compiled at -O0 and -O1, run on the bit-packed ONNX Runtime form
and on gatec's engine, one thread.

    python benchmarks/bench_pruning.py [--quick]     # writes benchmarks/results/pruning[_quick].json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
import gatec  # noqa: E402
from gatec.bench import timeit  # noqa: E402
from gatec.compiler import default_passes  # noqa: E402
from gatec.frontend import Source  # noqa: E402
from gatec.passes.logic_common import layered_counts  # noqa: E402
from test_passes import logic_ir  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    in_dim, width, depth, batch = (784, 2000, 6, 8192) if args.quick else (784, 8000, 6, 65536)
    ir = logic_ir(in_dim, [width] * depth, k=10, seed=0)
    x = np.random.default_rng(0).integers(0, 2, (batch, in_dim)).astype(np.float32)
    rows, outputs = [], {}
    for level in (0, 1):
        start = time.perf_counter()
        passes_run = default_passes("cpu", ir, level)
        pruned = gatec.passes.apply(ir, passes_run)
        seconds = time.perf_counter() - start
        counts = layered_counts(pruned)
        for runtime, options in (("onnxruntime bit-packed", {"engine": "onnxruntime", "threads": 1}),
                                 ("gatec engine", {"threads": 1})):
            art = gatec.compile(None, "cpu", source=Source(pruned, None, None), passes_to_run=[], verify=False,
                                options=options)
            outputs[(level, runtime)] = art.run(x)[0]
            t = timeit(lambda: art.run(x), min_time=1.0 if not args.quick else 0.3, min_reps=3)
            rows.append({"level": f"-O{level}", "runtime": runtime, "gates": counts["gates"] - counts["wires"],
                         "pass_through_wires": counts["wires"], "layer_rows": counts["gates"], "batch": batch,
                         "seconds": t, "samples_per_s": batch / t, "pass_seconds": seconds})
    same = all(np.array_equal(outputs[(0, r)], outputs[(1, r)]) for r in ("onnxruntime bit-packed", "gatec engine"))
    for row in rows:
        base = next(r for r in rows if r["runtime"] == row["runtime"] and r["level"] == "-O0")
        row["speedup_vs_O0"] = base["seconds"] / row["seconds"]
    head = f"{'level':<6} {'runtime':<24} {'gates':>8} {'wires':>7} {'samples/s':>14} {'vs -O0':>8}"
    print(f"{in_dim} inputs, {depth} x {width} gates, k=10, batch {batch}, one thread; outputs equal: {same}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['level']:<6} {r['runtime']:<24} {r['gates']:>8,} {r['pass_through_wires']:>7,} "
              f"{r['samples_per_s']:>14,.0f} {r['speedup_vs_O0']:>7.2f}x")
    result = {"network": {"inputs": in_dim, "width": width, "depth": depth, "k": 10}, "outputs_equal": same,
              "rows": rows}
    out = Path(__file__).parent / "results" / f"pruning{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if not same:
        raise SystemExit("pruned and unpruned networks disagree")
    return result


if __name__ == "__main__":
    main()
