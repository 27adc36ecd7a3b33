"""Quantization-aware training on scikit-learn's 8x8 digits: a GRU that reads each digit row by
row (as examples/train_gru_digits.py) and an MLP, each trained in float, then fine-tuned with
fake-quantized weights and activations (gatec.qat) at 8, 6 and 4 bits. Prints the test accuracy
per bit width, exports the 8-bit models to QONNX, and checks that the fake-quantized PyTorch
model, qonnx's executor on the QONNX file and ONNX Runtime on the cpu target's lowered graph
agree (in least significant bits of the output quantizer) on 1,000 digits. Writes JSON.

    python examples/train_qat_digits.py [--quick] [--out build/qat_digits] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import gatec.qat as qat
from gatec.nn import RecurrentClassifier

ROOT = Path(__file__).resolve().parent.parent
BITS = (8, 6, 4)


def digits():
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)  # (N, 8 rows, 8 columns): a sequence of 8 steps
    x_train, x_test, y_train, y_test = train_test_split(x, d.target, test_size=0.2, random_state=0)
    return x, (torch.from_numpy(x_train), torch.from_numpy(y_train)), (torch.from_numpy(x_test), y_test)


def make_model(kind: str) -> torch.nn.Module:
    if kind == "gru":
        return RecurrentClassifier(8, 32, 10, cell="gru")
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def train(model, data, epochs: int, lr: float, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    xt, yt = data
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def accuracy(model, data) -> float:
    x, y = data
    with torch.no_grad():
        return float((model.eval()(x).argmax(1).numpy() == y).mean())


def agreement(qmodel, path: Path, x: np.ndarray, dynamic_axes=None) -> dict:
    """Max |difference| in output LSBs between the fake-quantized model, qonnx's executor on the
    exported QONNX and ONNX Runtime on the cpu target's lowering of it, on the inputs x."""
    from gatec.ir.reference import qonnx_reference
    from gatec.ir.runtime import ort_session
    from gatec.targets.cpu.quant import lower_qonnx, output_lsbs
    model = qat.export(qmodel, path, torch.from_numpy(x[:2]), dynamic_axes=dynamic_axes)
    lsb = output_lsbs(model)[0]
    with torch.no_grad():
        fake = qmodel(torch.from_numpy(x)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = qonnx_reference(model)([x])[0]
    session = ort_session(lower_qonnx(model), failure="ONNX Runtime cannot load the lowered model")
    ort_out = session.run(None, {session.get_inputs()[0].name: x})[0]

    def lsbs(a, b):
        return float(np.abs(a.astype(np.float64) - b).max() / lsb)
    return {"inputs": int(len(x)), "output_lsb": lsb, "torch_vs_qonnx_lsb": lsbs(fake, ref),
            "qonnx_vs_ort_lsb": lsbs(ref, ort_out), "torch_vs_ort_lsb": lsbs(fake, ort_out),
            "argmax_agreement": float((fake.argmax(1) == ort_out.argmax(1)).mean())}


def run(kind: str, quick: bool, out: Path, x_all, train_data, test_data, bit_widths=BITS) -> dict:
    epochs, qat_epochs = (20, 5) if quick else (40, 15)
    lr = 1e-2 if kind == "gru" else 3e-3
    t0 = time.perf_counter()
    torch.manual_seed(0)
    float_model = train(make_model(kind), train_data, epochs, lr)
    row = {"model": kind, "float": accuracy(float_model, test_data), "bits": {}}
    for bits in bit_widths:
        qmodel = qat.prepare(float_model, qat.QATConfig(weight_bits=bits, act_bits=bits))
        train(qmodel, train_data, qat_epochs, lr / 10, seed=bits)
        row["bits"][bits] = accuracy(qmodel, test_data)
        if bits == 8:
            dyn = {"input": {0: "batch", 1: "time"}, "output": {0: "batch"}} if kind == "gru" else None
            row["agreement_8bit"] = agreement(qmodel, out / f"{kind}_qat8.onnx", x_all[:1000], dyn)
    row["seconds"] = time.perf_counter() - t0
    return row


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer epochs (for tests)")
    p.add_argument("--out", default=str(ROOT / "build" / "qat_digits"), help="folder for the QONNX files")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "qat_digits.json"))
    p.add_argument("--models", default="gru,mlp")
    p.add_argument("--bits", default=",".join(map(str, BITS)), help="bit widths to train (8 checks agreement)")
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is fastest, and the machine is shared
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x_all, train_data, test_data = digits()
    try:
        bit_widths = [int(b) for b in args.bits.split(",")]
        rows = [run(kind, args.quick, out, x_all, train_data, test_data, bit_widths) for kind in args.models.split(",")]
    finally:
        torch.set_num_threads(threads)
    print(f"{'model':<6} {'float':>7} " + " ".join(f"{f'{b}-bit':>14}" for b in bit_widths)
          + "  8-bit agreement (max LSB)")
    for r in rows:
        cells = " ".join(f"{100 * r['bits'][b]:6.2f} ({100 * (r['bits'][b] - r['float']):+5.2f})" for b in bit_widths)
        a = r.get("agreement_8bit")
        agree = f"torch/qonnx {a['torch_vs_qonnx_lsb']:g}, qonnx/ORT {a['qonnx_vs_ort_lsb']:g} on {a['inputs']}" if a else "-"
        print(f"{r['model']:<6} {100 * r['float']:6.2f}% {cells}  {agree}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"quick": args.quick, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
