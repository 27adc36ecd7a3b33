"""gatec -O1/-O2 against torchlogix's Circuit.simplify() on networks torchlogix trained itself.

    python benchmarks/bench_simplify.py [--quick]

torchlogix 0.2.2 trains digits networks (3-bit thermometer code of scikit-learn's 8x8 digits,
LogicDense x depth, raw parametrization, GroupSum; one with a LogicConv2d and OR pooling first)
in its own Python 3.12 venv
(benchmarks/torchlogix_train_side.py, the venv set up as for bench_logic.py), saves each with
torch.save, and counts its Circuit's gates traced and after simplify(). gatec loads the same
file (by class name, without torchlogix), runs -O1 and -O2 and counts the gates each target
computes: two-input gates and inverters. Pass-through wires that only carry a value across a
layer (no target computes them) and constant outputs (GroupSum's per-class offset: the engine
adds them as a constant, the Verilog as constant terms yosys folds) are listed apart, as
torchlogix folds its constants into its sum nodes' beta. Every compiled network is checked
against torchlogix's eval output on the test split, class counts equal.

Table: benchmarks/results/simplify.md; JSON: benchmarks/results/simplify.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import gatec  # noqa: E402
from gatec import passes  # noqa: E402
from gatec.frontend.source import Source  # noqa: E402
from gatec.nn.logic import ThermometerEncoder  # noqa: E402
from gatec.passes.logic_common import gate_kinds, netlist_of_ir  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SIDE = REPO / "benchmarks" / "torchlogix_train_side.py"


def bench_logic():
    spec = importlib.util.spec_from_file_location("bench_logic", REPO / "benchmarks" / "bench_logic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_bits(bits: int = 3, seed: int = 0):
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x.astype(np.float32), y, test_size=0.2, random_state=seed, stratify=y)
    enc = ThermometerEncoder(64, bits, "uniform").fit(torch.from_numpy(xtr))
    with torch.no_grad():
        code = lambda v: enc(torch.from_numpy(v)).numpy().astype(np.float32)  # noqa: E731
    return code(xtr), ytr.astype(np.int64), code(xte), yte.astype(np.int64)


def compare(python, data, depth: int, width: int, epochs: int, folder: Path, conv: int = 0,
            targets: tuple = ("cpu",)) -> dict:
    """One network: torchlogix trains it and counts its Circuit; gatec loads the saved file and
    counts -O0, -O1 and -O2, each compiled to `targets` and checked against torchlogix's eval
    output on the test split. `conv`: kernels of a LogicConv2d first, the input bits then laid out
    as (3 thermometer channels, 8, 8)."""
    xtr, ytr, xte, yte = data
    if conv:
        xtr, xte = (v.reshape(len(v), 64, 3).transpose(0, 2, 1).reshape(len(v), 3, 8, 8).copy() for v in (xtr, xte))
    folder.mkdir(parents=True)
    for f, v in (("train_x", xtr), ("train_y", ytr), ("test_x", xte)):
        np.save(folder / f"{f}.npy", v)
    tau = (width / 10) ** 0.5 * 1.2
    (folder / "params.json").write_text(json.dumps({"width": width, "depth": depth, "classes": 10, "tau": tau,
                                                    "epochs": epochs, "lr": 0.02, "seed": 0, "conv": conv}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    subprocess.run([str(python), str(SIDE), str(folder)], env=env, check=True, capture_output=True)
    theirs = json.loads((folder / "result.json").read_text())
    expected = np.load(folder / "test_scores.npy")
    row = {"network": (f"conv{conv}+" if conv else "") + f"{depth}x{width}", "epochs": epochs,
           "train_s": round(theirs["train_s"], 1),
           "test_accuracy": float((expected.argmax(-1) == yte).mean()),
           "torchlogix_traced": theirs["traced"], "torchlogix_simplified": theirs["simplified"]}
    source = gatec.load(str(folder / "model.pt"), [[1, *xtr.shape[1:]]])
    row["gatec_O0"] = gate_kinds(netlist_of_ir(source.ir))
    for level in (1, 2):
        t0 = time.perf_counter()
        ir = passes.apply(source.ir.copy(), passes.default_passes(source.ir, level))
        seconds = time.perf_counter() - t0
        equal = True
        for target in targets:  # each verified against the model by the emulator, then on the test split
            art = gatec.compile(None, target, folder / f"O{level}_{target}", source=Source(ir, source.reference),
                                opt_level=0, data=[xte[:256]])
            equal &= bool(np.array_equal(art.run(xte)[0], expected))
        row[f"gatec_O{level}"] = {**gate_kinds(netlist_of_ir(ir)), "seconds": round(seconds, 2),
                                  "equals_torchlogix_eval": equal, "targets": list(targets)}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small network, few epochs (a smoke run)")
    args = ap.parse_args()
    sizes = [(2, 500, 10, 0)] if args.quick else [(3, 2000, 30, 0), (4, 1000, 30, 0), (2, 4000, 30, 0), (2, 1000, 20, 16)]
    python, record = bench_logic().torchlogix_venv()
    if python is None:  # the comparison needs the peer: say why in one line, as bench_logic.py does for its row
        print(f"bench_simplify: not run: torchlogix is not available here: {record}")
        return
    data = digits_bits()
    work = Path(tempfile.mkdtemp(prefix="gatec-simplify-"))
    rows = []
    for depth, width, epochs, conv in sizes:
        print(f"{'conv + ' if conv else ''}{depth}x{width}: torchlogix trains {epochs} epochs ...", flush=True)
        row = compare(python, data, depth, width, epochs, work / f"{conv}_{depth}x{width}", conv)
        rows.append(row)
        t, g1, g2 = row["torchlogix_simplified"], row["gatec_O1"], row["gatec_O2"]
        print(f"  accuracy {row['test_accuracy']:.2%}; torchlogix simplify {t['two_input'] + t['inverters']} "
              f"({t['two_input']} + {t['inverters']} NOT); gatec -O1 {g1['computed']} ({g1['two_input']} + "
              f"{g1['inverters']} NOT), -O2 {g2['computed']}; equal to torchlogix's eval: "
              f"{g1['equals_torchlogix_eval'] and g2['equals_torchlogix_eval']}", flush=True)
    report = {"torchlogix": record, "cpu": bench_logic().cpu(), "rows": rows}
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "simplify.json").write_text(json.dumps(report, indent=2) + "\n")
        lines = ["# gatec -O1/-O2 against torchlogix's Circuit.simplify() (networks torchlogix trained)", "",
                 "Gates computed: two-input gates + inverters. torchlogix folds constant outputs into its sum "
                 "nodes' offset; gatec counts them in GroupSum's offset (listed apart), and its pass-through "
                 "wires carry values between layers without computing anything.", "",
                 "| network | test acc. | torchlogix traced | torchlogix simplify | gatec -O1 | gatec -O2 | "
                 "gatec constant outputs | gatec equals torchlogix eval |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            t, g1, g2 = r["torchlogix_simplified"], r["gatec_O1"], r["gatec_O2"]
            lines.append(f"| {r['network']} | {r['test_accuracy']:.2%} | {r['torchlogix_traced']['gates']:,} | "
                         f"{t['two_input'] + t['inverters']:,} ({t['two_input']:,} + {t['inverters']} NOT) | "
                         f"{g1['computed']:,} ({g1['two_input']:,} + {g1['inverters']} NOT) | "
                         f"{g2['computed']:,} ({g2['two_input']:,} + {g2['inverters']} NOT) | "
                         f"{g1['constant_outputs']} | {g1['equals_torchlogix_eval'] and g2['equals_torchlogix_eval']} |")
        (RESULTS / "simplify.md").write_text("\n".join(lines) + "\n")
        print(f"wrote {RESULTS / 'simplify.md'} and simplify.json")


if __name__ == "__main__":
    main()
