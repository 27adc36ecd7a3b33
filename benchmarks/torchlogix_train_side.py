"""torchlogix's side of benchmarks/bench_simplify.py: run inside the torchlogix venv (Python >= 3.12,
torch, numpy, torchlogix), not in gatec's environment; it imports nothing from gatec.

    python torchlogix_train_side.py FOLDER

FOLDER holds train_x.npy / train_y.npy / test_x.npy (0/1 input bits, float32, (N, bits) or
(N, channels, 8, 8) with "conv"; labels int64) and params.json (width, depth, classes, tau, epochs,
lr, seed; "conv": kernels of a LogicConv2d + OrPooling2d first). The script trains a network of
torchlogix's own layers (LogicDense x depth, raw parametrization, then GroupSum) as its README
does (Adam, cross-entropy on the soft forward), saves it with torch.save as a user would
(FOLDER/model.pt), writes its eval output on the test bits (test_scores.npy), and traces it into
torchlogix's Circuit, simplifies it and counts the gates by kind before and after
(result.json).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchlogix import Circuit  # noqa: E402
from torchlogix.circuit import GateOp  # noqa: E402
from torchlogix.layers import GroupSum, LogicConv2d, LogicDense, OrPooling2d  # noqa: E402

ONE_INPUT = {GateOp.NOT, GateOp.NOT_A, GateOp.NOT_B}


def kinds(circuit: Circuit) -> dict:
    """Gates by kind: two-input, inverters, wires, constants; and the sum nodes' constant offset."""
    count = {"two_input": 0, "inverters": 0, "wires": 0, "constants": 0}
    for g in circuit.gates:
        if g.op in (GateOp.CONST_TRUE, GateOp.CONST_FALSE):
            count["constants"] += 1
        elif g.op == GateOp.WIRE:
            count["wires"] += 1
        elif g.op in ONE_INPUT:
            count["inverters"] += 1
        else:
            count["two_input"] += 1
    count["gates"] = len(circuit.gates)
    count["sum_offset"] = float(sum(sr.beta for sr in circuit.sum_nodes))
    return count


def main() -> None:
    folder = Path(sys.argv[1])
    params = json.loads((folder / "params.json").read_text())
    torch.manual_seed(params["seed"])
    torch.set_num_threads(1)
    x = torch.from_numpy(np.load(folder / "train_x.npy"))
    y = torch.from_numpy(np.load(folder / "train_y.npy"))
    test_x = torch.from_numpy(np.load(folder / "test_x.npy"))
    layers, dim = [], x.shape[1]
    if params.get("conv"):  # x: (N, channels, 8, 8); a convolution, OR pooling, then the dense layers
        layers += [LogicConv2d(in_dim=x.shape[-1], channels=x.shape[1], num_kernels=params["conv"], tree_depth=2,
                               receptive_field_size=3, padding=1),
                   OrPooling2d(kernel_size=2, stride=2), torch.nn.Flatten()]
        dim = params["conv"] * (x.shape[-1] // 2) ** 2
    for _ in range(params["depth"]):
        layers.append(LogicDense(dim, params["width"], parametrization="raw"))
        dim = params["width"]
    model = torch.nn.Sequential(*layers, GroupSum(params["classes"], tau=params["tau"]))
    opt = torch.optim.Adam(model.parameters(), lr=params["lr"])
    gen = torch.Generator().manual_seed(params["seed"])
    t0 = time.perf_counter()
    model.train()
    for _ in range(params["epochs"]):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    torch.save(model, folder / "model.pt")
    with torch.no_grad():
        np.save(folder / "test_scores.npy", model(test_x).numpy().astype(np.float32))
    circuit = Circuit.from_model(model, input_shape=list(x.shape[1:]))
    traced = kinds(circuit)
    t0 = time.perf_counter()
    circuit.simplify()
    result = {"train_s": train_s, "traced": traced, "simplified": kinds(circuit),
              "simplify_s": time.perf_counter() - t0}
    (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
