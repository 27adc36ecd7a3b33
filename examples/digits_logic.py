"""Train a logic-gate network on scikit-learn's digits (8x8, bundled) on the CPU, then compile it.

    python examples/digits_logic.py            # full run, well under 2 minutes on 2 cores
    python examples/digits_logic.py --quick    # a few epochs, for tests

Real input -> ThermometerEncoder (bits) -> 4 LogicLayers -> GroupSum -> class scores. Prints the
soft (training-mode) and discrete accuracy (their difference is the discretization gap), then
trains once per training option (Gumbel noise + straight-through, the light 4-parameter
parametrization, residual initialisation) and reports accuracy, gap and the share of gates that
came out constant (ops 0, 15) or as wires (3, 5, 10, 12). Saves the model and compiles it to `cpu`.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import gatec
from gatec.ir.logic import op_stats
from gatec.nn.logic import network_of_module, GroupSum, LogicLayer, ThermometerEncoder


def data(seed: int = 0):
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x.astype(np.float32), y, test_size=0.2, random_state=seed, stratify=y)
    return (torch.from_numpy(xtr), torch.from_numpy(ytr)), (torch.from_numpy(xte), torch.from_numpy(yte))


def model(encoder: ThermometerEncoder, width: int, depth: int, tau: float, **options) -> torch.nn.Sequential:
    layers = [encoder]
    dim = encoder.out_features
    for _ in range(depth):
        layers.append(LogicLayer(dim, width, **options))
        dim = width
    return torch.nn.Sequential(*layers, GroupSum(10, tau))


def accuracy(net, x, y, train_mode: bool) -> float:
    net.train(train_mode)
    with torch.no_grad():
        acc = (net(x).argmax(-1) == y).float().mean().item()
    net.eval()
    return acc


def train(net, train_set, epochs: int, lr: float, batch: int = 64, seed: int = 0) -> None:
    x, y = train_set
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()


def run(name: str, train_set, test_set, encoder, args, **options) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(args.seed)
    net = model(encoder, args.width, args.depth, args.tau, **options)
    start = time.perf_counter()
    train(net, train_set, args.epochs, args.lr, seed=args.seed)
    seconds = time.perf_counter() - start
    layers = [m for m in net.modules() if isinstance(m, LogicLayer)]
    noise = [m.gumbel for m in layers]
    for m in layers:  # the soft accuracy: the relaxation without noise (the gap's other side)
        m.gumbel = False
    soft = accuracy(net, *test_set, train_mode=True)
    for m, g in zip(layers, noise):
        m.gumbel = g
    discrete = accuracy(net, *test_set, train_mode=False)
    stats = op_stats(np.concatenate([layer.ops for layer in network_of_module(net).layers]))
    row = {"option": name, "soft_accuracy": soft, "discrete_accuracy": discrete, "gap": soft - discrete,
           "train_seconds": seconds, "constants": stats["constants"], "wires": stats["wires"], "gates": stats["gates"]}
    print(f"{name:<14} soft {100 * soft:6.2f}%  discrete {100 * discrete:6.2f}%  gap {100 * (soft - discrete):+6.2f} pts  "
          f"constants {100 * stats['constants']:5.1f}%  wires {100 * stats['wires']:5.1f}%  ({seconds:.1f} s)")
    return net, row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few epochs and a smaller network (tests)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--bits", type=int, default=3, help="thermometer bits per pixel")
    ap.add_argument("--tau", type=float)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gumbel", type=float, default=0.3, help="Gumbel noise scale for the gumbel option (1: 61%% here)")
    ap.add_argument("--options", default="gumbel,light,residual", help="training options to compare ('' for none)")
    ap.add_argument("--out", default="build/digits_logic", help="folder for the model, artifact and results")
    args = ap.parse_args(argv)
    args.epochs = args.epochs or (4 if args.quick else 60)
    args.width = args.width or (1000 if args.quick else 4000)
    args.tau = args.tau or (args.width / 10) ** 0.5 * 1.2
    torch.set_num_threads(args.threads)  # one thread: contended OpenMP threads ran 40x slower here
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train_set, test_set = data(args.seed)
    encoder = ThermometerEncoder(64, args.bits, "uniform").fit(train_set[0])
    print(f"digits: {len(train_set[0])} train / {len(test_set[0])} test, {encoder.out_features} input bits, "
          f"{args.depth} x {args.width} gates, {args.epochs} epochs")
    start = time.perf_counter()
    net, base = run("plain", train_set, test_set, encoder, args)
    rows = [base]
    for option in [o for o in args.options.split(",") if o]:
        kwargs = {"gumbel": {"gumbel": args.gumbel}, "light": {"light": True},
                  "residual": {"residual_init": 5.0}}.get(option)
        if kwargs is None:
            raise SystemExit(f"unknown option {option!r}")
        rows.append(run(option, train_set, test_set, encoder, args, **kwargs)[1])

    model_path = out / "digits_logic.pt"
    torch.save(net, model_path)
    art = gatec.compile(net, "cpu", out / "cpu", input_shapes=[[1, 64]], data=[test_set[0].numpy()], log=print)
    scores = art.run(test_set[0].numpy())[0]
    compiled_acc = float((scores.argmax(-1) == test_set[1].numpy()).mean())
    results = {"epochs": args.epochs, "width": args.width, "depth": args.depth, "bits": args.bits, "tau": args.tau,
               "runs": rows, "compiled_accuracy": compiled_acc, "model": str(model_path), "artifact": str(art.path),
               "verified": art.manifest["verification"]["ok"], "total_seconds": time.perf_counter() - start}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"compiled cpu artifact: {100 * compiled_acc:.2f}% test accuracy; wrote {out / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
