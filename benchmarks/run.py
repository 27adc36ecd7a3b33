"""Run every benchmarks/bench_*.py, one after another, each in its own process; arguments
(e.g. --quick) are passed to each. Exits non-zero if any benchmark failed.

    python benchmarks/run.py [--quick]
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    scripts = sorted(Path(__file__).parent.glob("bench_*.py"))
    failed = []
    for script in scripts:
        print(f"== {script.name} {' '.join(argv)}".rstrip(), flush=True)
        start = time.perf_counter()
        code = subprocess.run([sys.executable, str(script), *argv]).returncode
        print(f"== {script.name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in "
              f"{time.perf_counter() - start:.1f} s\n", flush=True)
        if code:
            failed.append(script.name)
    print(f"{len(scripts) - len(failed)} of {len(scripts)} benchmarks passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
