"""Start-up of the commands that need no model: `gatec --help`, `gatec targets`, `gatec passes`
(each a fresh process, wall time, median of N runs), beside `python -c pass` and `import torch`
on the same machine in the same run, so that the figure reads against the interpreter's own.

Acceptance: `--help` and `targets` under 0.5 s.

    python benchmarks/bench_startup.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
COMMANDS = {"python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "gatec --help": [sys.executable, "-m", "gatec", "--help"],
            "gatec targets": [sys.executable, "-m", "gatec", "targets"],
            "gatec passes": [sys.executable, "-m", "gatec", "passes"]}
LIMIT_S = {"gatec --help": 0.5, "gatec targets": 0.5}


def cpu_name() -> str:
    try:
        return next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                    if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 runs each instead of 11")
    args = ap.parse_args()
    runs = 3 if args.quick else 11
    rows = []
    for name, cmd in COMMANDS.items():
        wall(cmd)  # warm the file cache
        times = [wall(cmd) for _ in range(runs)]
        rows.append({"command": name, "median_s": statistics.median(times), "min_s": min(times), "runs": runs,
                     "limit_s": LIMIT_S.get(name)})
    print(f"start-up on {cpu_name()}, wall time of a fresh process")
    print(f"{'command':<28} {'median':>8} {'min':>8}  limit")
    for r in rows:
        limit = f"{r['limit_s']:.1f} s" if r["limit_s"] else ""
        print(f"{r['command']:<28} {r['median_s']:>7.3f}s {r['min_s']:>7.3f}s  {limit}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=2) + "\n")
    over = [r["command"] for r in rows if r["limit_s"] and r["median_s"] > r["limit_s"]]
    if over:
        print("over the limit: " + ", ".join(over))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
