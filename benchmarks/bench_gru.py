"""PyTorch eager beside the `cpu` target on a GRU(16->64) + Linear classifier, sequence 50,
batch 1 (latency) and batch 64 (throughput), one thread, in one run.

Acceptance: the cpu target at least 5x faster than PyTorch at batch 1 and not slower at batch 64.

    python benchmarks/bench_gru.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import gatec  # noqa: E402
from gatec.bench import bench, format_rows  # noqa: E402
from gatec.nn import RecurrentClassifier  # noqa: E402

RESULTS = Path(__file__).parent / "results"
IN_DIM, HIDDEN, CLASSES, STEPS = 16, 64, 10, 50
TARGETS = {1: 5.0, 64: 1.0}  # batch: speed-up over PyTorch the cpu target must reach


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter timing (a smoke run)")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = RecurrentClassifier(IN_DIM, HIDDEN, CLASSES, "gru").eval()
    source = gatec.load(model, [[1, STEPS, IN_DIM]])
    work = tempfile.TemporaryDirectory(prefix="gatec-bench-")
    art = gatec.compile(None, "cpu", Path(work.name) / "gru", source=source, samples=64, options={"threads": 1})
    print(f"GRU({IN_DIM}->{HIDDEN}) + Linear({HIDDEN}->{CLASSES}), sequence {STEPS}, one thread; "
          f"verified max abs err {art.manifest['verification']['max_abs_err']:.2g}")
    rows = bench(source, {"cpu": art.run}, batches=tuple(TARGETS), threads=1,
                 min_time=0.2 if args.quick else 1.0, progress=False)
    print(format_rows(rows))
    ok = True
    for batch, needed in TARGETS.items():
        ratio = next(r["speedup_vs_pytorch"] for r in rows if r["engine"] == "cpu" and r["batch"] == batch)
        passed = ratio >= needed
        ok &= passed
        print(f"batch {batch:>3}: cpu target {ratio:.2f}x PyTorch (needs >= {needed:g}x): {'PASS' if passed else 'FAIL'}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("gru_quick.json" if args.quick else "gru.json")
    out.write_text(json.dumps({"model": {"input": IN_DIM, "hidden": HIDDEN, "classes": CLASSES, "steps": STEPS,
                                         "threads": 1},
                               "rows": rows, "acceptance": {str(b): n for b, n in TARGETS.items()}, "passed": ok},
                              indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
