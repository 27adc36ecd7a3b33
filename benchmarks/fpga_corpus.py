"""The model corpus (tests/corpus.py) on `cpu` and `fpga`: every case compiled to both targets and
verified against the model; each fpga result is verified (with its max abs err and the bound it is
held to), refused (with gatec's one-line reason) or wrong (a verification that failed). A Python
exception other than gatec's own one-line error is a crash, shown with its first line.

    python benchmarks/fpga_corpus.py [--fast] [CASE ...]

Prints a progress line per case and the table, and writes benchmarks/results/fpga_corpus.json and
fpga_corpus.md (only when the whole corpus ran).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
warnings.filterwarnings("ignore")

import corpus

RESULTS = Path(__file__).parent / "results"


def run_case(case) -> dict:
    row = {"case": case.name, "kinds": list(case.kinds), "fast": case.fast}
    with tempfile.TemporaryDirectory(prefix="gatec-corpus-") as tmp:
        try:
            given, shapes = case.prepare(Path(tmp))
        except Exception as e:  # noqa: BLE001  (PyTorch or Brevitas could not export it: the table says so)
            return {**row, "cpu": {"status": "not exported", "reason": first_line(e)}, "fpga": {"status": "skipped"}}
        for target in ("cpu", "fpga"):
            try:
                row[target] = corpus.compile_case(case, target, given, shapes, Path(tmp))
            except Exception as e:  # noqa: BLE001  (a traceback: gatec broke its one-line contract)
                row[target] = {"status": "crash", "reason": f"{type(e).__name__}: {first_line(e)}"}
    return row


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:400] if text else type(e).__name__


def cell(result: dict) -> str:
    if result["status"] == "verified":
        return f"verified {result['max_abs_err']:.3g} <= {result['bound']:.3g}"
    reason = result.get("reason", "").replace("|", "\\|")
    return f"{result['status']}: {reason}" if reason else result["status"]


def totals(rows: list[dict]) -> dict:
    count = {"cases": len(rows), "cpu verified": sum(r["cpu"]["status"] == "verified" for r in rows)}
    for status in ("verified", "refused", "wrong", "crash", "skipped"):
        count[f"fpga {status}"] = sum(r["fpga"]["status"] == status for r in rows)
    count["fpga verified %"] = round(100.0 * count["fpga verified"] / max(1, len(rows)), 1)
    return count


def markdown(rows: list[dict]) -> str:
    lines = ["| case | kinds | cpu | fpga | fpga s |", "|---|---|---|---|---|"]
    for r in rows:
        seconds = r["fpga"].get("seconds")
        lines.append(f"| {r['case']} | {', '.join(r['kinds'])} | {cell(r['cpu'])} | {cell(r['fpga'])} | "
                     f"{'' if seconds is None else f'{seconds:.1f}'} |")
    t = totals(rows)
    lines += ["", "Totals: " + ", ".join(f"{k} {v}" for k, v in t.items())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--fast", action="store_true", help="only the cases of the fast (CI) part")
    args = parser.parse_args(argv)
    unknown = [n for n in args.cases if n not in corpus.CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    names = args.cases or (corpus.FAST if args.fast else list(corpus.CASES))
    rows, start = [], time.perf_counter()
    for i, name in enumerate(names, 1):
        row = run_case(corpus.CASES[name])
        rows.append(row)
        print(f"[{i}/{len(names)} {time.perf_counter() - start:.0f}s] {name}: cpu {row['cpu']['status']}, "
              f"fpga {cell(row['fpga'])[:200]}", flush=True)
    table = markdown(rows)
    print("\n" + table)
    if not args.cases and not args.fast:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "fpga_corpus.json").write_text(json.dumps(
            {"totals": totals(rows), "seconds": round(time.perf_counter() - start, 1), "rows": rows},
            indent=1, sort_keys=True) + "\n")
        (RESULTS / "fpga_corpus.md").write_text("# The model corpus on cpu and fpga\n\n"
                                                "`python benchmarks/fpga_corpus.py` (tests/corpus.py)\n\n" + table)
    t = totals(rows)
    return 0 if t["cpu verified"] == len(rows) and not (t["fpga wrong"] or t["fpga crash"]) else 1


if __name__ == "__main__":
    sys.exit(main())
