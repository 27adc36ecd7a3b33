"""Hessian-aware mixed precision on a 16-64-32-32-5 MLP (the shape of the jet-tagging
networks hls4ml users train), then quantization-aware fine-tuning at the chosen bits.

The data: 16 features, 5 classes, drawn with scikit-learn's make_classification (no data set
can be downloaded here). The script trains the float MLP, quantizes it after training at
uniform 8/6/4-bit weights, lets gatec.quantize.hawq choose per-layer weight bits under a budget of 70%
of the bit operations (BOPs) of uniform 8 bits, and fine-tunes with gatec.qat at those bits.
It prints accuracy and BOPs per variant and writes JSON and the sensitivity plot.

    python examples/mlp_mixed_precision.py [--quick] [--budget 70] [--out build/mlp_mixed]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_classification

from gatec import qat
from gatec.frontend import load
from gatec.ir.reference import onnx_reference
from gatec.quantize import format_report, plot_report, quantize_model


def data(n: int, seed: int = 0):
    x, y = make_classification(n_samples=n, n_features=16, n_informative=12, n_redundant=2, n_classes=5,
                               n_clusters_per_class=2, class_sep=1.0, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64)


def mlp() -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))


def train(model, x, y, epochs: int, lr: float, seed: int = 0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 256):
            idx = perm[i:i + 256]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float((scores.argmax(1) == y).mean() * 100)


def run(quick: bool = False, budget: float = 70.0, out: Path | None = None, log=print) -> dict:
    n_train, n_test = (12000, 6000) if quick else (40000, 10000)
    x, y = data(n_train + n_test)
    xtr, ytr, xte, yte = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    start = time.time()
    torch.manual_seed(0)
    model = train(mlp(), xtr, ytr, 15 if quick else 30, 3e-3)
    source = load(model, [[1, 16]])
    float_acc = accuracy(model(torch.from_numpy(xte)).detach().numpy(), yte)
    calib = [xtr[:4000]]
    rows = [{"variant": "float", "accuracy": float_acc, "bops_percent": None}]

    def evaluate(qir):
        return accuracy(onnx_reference(qir.model)([xte])[0], yte)

    for bits in (8, 6, 4):
        qir, rep = quantize_model(source, calib, ytr[:4000], weight_bits=bits, per_channel=True)
        rows.append({"variant": f"PTQ w{bits}a8", "accuracy": evaluate(qir),
                     "bops_percent": 100 * (1 - rep["bops_reduction"]), "weight_bits": [bits] * 4})
    qir, mixed = quantize_model(source, calib, ytr[:4000], per_channel=True, budget_bops=f"{budget}%")
    log(format_report(mixed))
    chosen = [r["weight_bits"] for r in mixed["layers"]]
    bops_percent = 100 * (1 - mixed["bops_reduction"])
    rows.append({"variant": "PTQ mixed (HAWQ)", "accuracy": evaluate(qir), "bops_percent": bops_percent,
                 "weight_bits": chosen})
    # quantization-aware fine-tuning at the chosen bits, from the float weights
    for name, bits in (("QAT w8a8", {r["module"]: 8 for r in mixed["layers"]}),
                       ("QAT mixed (HAWQ)", {r["module"]: r["weight_bits"] for r in mixed["layers"]})):
        config = qat.QATConfig(weight_bits=8, act_bits=8, bias_bits=16, per_channel=True,
                               layers={m: {"weight_bits": b} for m, b in bits.items()})
        qmodel = train(qat.prepare(model, config), xtr, ytr, 4 if quick else 8, 5e-4, seed=1)
        path = (out or Path("build/mlp_mixed")) / f"{name.split()[1]}_qat.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        qat.export(qmodel, path, torch.from_numpy(xte[:1]))
        qacc = accuracy(load(path).reference([xte])[0], yte)  # qonnx's executor on the QONNX file
        rows.append({"variant": name, "accuracy": qacc, "weight_bits": list(bits.values()),
                     "bops_percent": 100 * sum(r["macs"] * bits[r["module"]] * 8 for r in mixed["layers"])
                     / mixed["bops_uniform8"], "qonnx": str(path)})
    for r in rows:
        r["loss_points"] = float_acc - r["accuracy"]
    result = {"train_samples": n_train, "test_samples": n_test, "budget_percent_of_uniform8": budget,
              "seconds": time.time() - start, "rows": rows, "mixed_precision": mixed}
    log(f"\n{'variant':<18} {'weight bits':<14} {'BOPs % of w8a8':>14} {'accuracy %':>10} {'loss (points)':>13}")
    for r in rows:
        bops = "" if r["bops_percent"] is None else f"{r['bops_percent']:.1f}"
        log(f"{r['variant']:<18} {','.join(map(str, r.get('weight_bits', []))) or 'float':<14} {bops:>14} "
            f"{r['accuracy']:>10.2f} {r['loss_points']:>13.2f}")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "mixed_precision.json").write_text(json.dumps(result, indent=2) + "\n")
        plot_report(mixed, out / "mixed_precision.png")
        log(f"wrote {out / 'mixed_precision.json'} and {out / 'mixed_precision.png'}")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and epochs")
    ap.add_argument("--budget", type=float, default=70.0, help="BOPs budget, percent of uniform 8 bits")
    ap.add_argument("--out", type=Path, default=Path("build/mlp_mixed"))
    args = ap.parse_args()
    run(args.quick, args.budget, args.out)
