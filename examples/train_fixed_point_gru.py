"""Fixed-point training whose model is the firmware: a GRU reads each 8x8 digit (scikit-learn's
bundled `load_digits`, held-out test split) row by row, trained in float, then fine-tuned with
gatec.qat's fixed-point layers at 16, 10 and 8 bits and compiled to `--target fpga` with no
precision options. Prints accuracy float vs fixed point, the firmware's agreement with the
PyTorch model on the test set (hls4ml's C simulation; every output must be equal) and hls4ml's
resource estimate; writes build/fixed_point_gru/results.json.

    python examples/train_fixed_point_gru.py     (about 2 minutes on 2 cores)
"""
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import gatec
from gatec.nn import RecurrentClassifier
from gatec.qat import FixedConfig, prepare_fixed

OUT = Path("build/fixed_point_gru")
# saturating, rounding types: a value past the range clips instead of wrapping around (a wrapped
# logit is a wrong class); the integer bits hold the logits (|logit| up to about 17 in float)
TYPES = {16: "ap_fixed<16,6,AP_RND,AP_SAT>", 10: "ap_fixed<10,5,AP_RND,AP_SAT>", 8: "ap_fixed<8,4,AP_RND,AP_SAT>"}


def train(model, x, y, epochs, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return (time.perf_counter() - start) / epochs


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # (N, 8 rows, 8 columns)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.2, random_state=0)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    model = RecurrentClassifier(8, 32, 10, cell="gru")
    float_epoch = train(model, xt, yt, 40, 1e-2)
    float_acc = accuracy(model, x_test, y_test)
    print(f"float GRU(8->32)+Linear: test accuracy {100 * float_acc:.2f}% ({1e3 * float_epoch:.0f} ms an epoch)")
    rows = []
    for bits, precision in TYPES.items():
        fixed = prepare_fixed(model, FixedConfig(precision))
        before = accuracy(fixed, x_test, y_test)
        fixed_epoch = train(fixed, xt, yt, 10, 1e-3)
        after = accuracy(fixed, x_test, y_test)
        art = gatec.compile(fixed, "fpga", OUT / f"fpga_{bits}bit", input_shapes=[[1, 8, 8]], data=[x_test],
                            force=True)
        firmware = art.run(x_test)[0]
        with torch.no_grad():
            want = fixed(torch.from_numpy(x_test)).numpy()
        estimate = json.loads((art.path / "hls_summary.json").read_text())["estimate"]
        row = {"bits": bits, "precision": precision, "accuracy_after_conversion": before, "accuracy_qat": after,
               "accuracy_float": float_acc, "drop_points": 100 * (float_acc - after),
               "firmware_outputs_equal": float((firmware == want).mean()),
               "firmware_accuracy": float((firmware.argmax(1) == y_test).mean()),
               "verification": art.manifest["verification"]["outputs"][0]["tolerance"],
               "epoch_seconds_fixed": fixed_epoch, "epoch_seconds_float": float_epoch,
               "multipliers": estimate["multipliers"], "latency_cycles": estimate["latency_cycles"],
               "weight_bits": estimate["weight_bits"]}
        rows.append(row)
        print(f"{precision:<30} accuracy {100 * before:.2f}% converted, {100 * after:.2f}% after 10 epochs of QAT "
              f"(float {100 * float_acc:.2f}%); firmware outputs equal: {100 * row['firmware_outputs_equal']:.1f}% "
              f"({row['verification']}); {row['multipliers']} multipliers, {row['latency_cycles']} cycles, "
              f"{row['weight_bits']} weight bits (hls4ml estimate); epoch {1e3 * fixed_epoch:.0f} ms "
              f"({fixed_epoch / float_epoch:.1f}x float)")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
