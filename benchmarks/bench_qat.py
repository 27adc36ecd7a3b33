"""What quantization costs on the `cpu` target: a float model beside its 8-bit QAT version
(gatec.qat, exported to QONNX) lowered both ways — "float" (exact: QONNX's arithmetic in float32
ops) and "qdq" (QuantizeLinear/DequantizeLinear, which ONNX Runtime fuses into integer kernels) —
with the fake-quantized PyTorch model as the baseline, on an MLP (64-256-256-10) and a
GRU(16->64)+Linear (sequence 50), batch 1 and 256, one thread, in one run. Also reports how far
each lowering is from qonnx's executor, in output LSBs.

    python benchmarks/bench_qat.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gatec  # noqa: E402
import gatec.qat as qat  # noqa: E402
from gatec.bench import timeit  # noqa: E402
from gatec.ir.reference import qonnx_reference  # noqa: E402
from gatec.nn import RecurrentClassifier  # noqa: E402
from gatec.targets.cpu.quant import output_lsbs  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BATCHES = (1, 256)


def models():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 10))
    return {"mlp 64-256-256-10": (mlp, [64], None),
            "gru 16->64, T=50": (RecurrentClassifier(16, 64, 10, "gru"), [50, 16],
                                 {"input": {0: "batch", 1: "time"}, "output": {0: "batch"}})}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter timing (a smoke run)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # qonnx's executor warns about every shape it was not told
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="gatec-bench-qat-"))
    rows = []
    for name, (model, shape, dynamic) in models().items():
        model.eval()
        q = qat.prepare(model)
        q.train()
        for _ in range(3):  # calibrate the activation ranges
            q(torch.randn(64, *shape))
        q.eval()
        path = work / "q.onnx"
        exported = qat.export(q, path, torch.randn(2, *shape), dynamic_axes=dynamic)
        lsb = output_lsbs(exported)[0]
        reference = qonnx_reference(exported)
        engines = {"pytorch float": lambda a, m=model: m(torch.from_numpy(a[0])),
                   "pytorch fake-quant": lambda a, m=q: m(torch.from_numpy(a[0])),
                   "cpu float model": gatec.compile(model, "cpu", work / "f", input_shapes=[[1, *shape]],
                                                    options={"threads": 1}).run}
        for form in ("float", "qdq"):
            art = gatec.compile(str(path), "cpu", work / form, input_shapes=[[1, *shape]], verify=form == "float",
                                options={"threads": 1, "quant_form": form})
            engines[f"cpu QAT {form}"] = art.run
        x_check = [np.random.default_rng(1).standard_normal((500, *shape)).astype(np.float32)]
        want = reference(x_check)[0]
        for engine, run in engines.items():
            err = None
            if engine.startswith("cpu QAT"):
                err = float(np.abs(run(x_check)[0] - want).max() / lsb)
            for batch in BATCHES:
                x = [np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)]
                with torch.no_grad():
                    seconds = timeit(lambda: run(x), 0.2 if args.quick else 1.0)
                rows.append({"model": name, "engine": engine, "batch": batch, "latency_ms": seconds * 1e3,
                             "max_err_lsb_vs_qonnx": err})
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and b["batch"] == r["batch"]
                    and b["engine"] == "cpu float model")
        r["vs_cpu_float"] = base["latency_ms"] / r["latency_ms"]
    head = f"{'model':<18} {'engine':<19} {'batch':>5} {'latency':>11} {'vs cpu float':>12} {'err vs qonnx':>12}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        err = "-" if r["max_err_lsb_vs_qonnx"] is None else f"{r['max_err_lsb_vs_qonnx']:g} LSB"
        print(f"{r['model']:<18} {r['engine']:<19} {r['batch']:>5} {r['latency_ms']:>9.3f}ms "
              f"{r['vs_cpu_float']:>11.2f}x {err:>12}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("qat_quick.json" if args.quick else "qat.json")
    out.write_text(json.dumps({"threads": 1, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
