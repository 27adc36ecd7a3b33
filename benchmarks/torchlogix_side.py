"""torchlogix's side of benchmarks/bench_logic.py: run inside the torchlogix venv (Python >= 3.12,
torch, numpy, torchlogix), not in gatec's environment; it imports nothing from gatec.

    python torchlogix_side.py FOLDER

FOLDER holds what bench_logic.py saved: network.npz (per layer i: a{i}, b{i}, op{i}, the gate
inputs and op ids in gatec's order, id = 8*f(0,0) + 4*f(0,1) + 2*f(1,0) + f(1,1); plus n_in,
classes, tau), bits.npy (the 0/1 input, samples x n_in, uint8) and params.json (opt_level,
pack_bits, simplify, min_time, min_reps, eval_samples). The script builds the same network
from torchlogix's own layers (LogicDense with each gate's op and inputs set, then GroupSum),
checks torchlogix's eval forward against a gate-by-gate numpy evaluation on the first
eval_samples samples, traces it into a Circuit (Circuit.from_model), simplifies it, compiles it
(Circuit.compile: C code, then gcc) and times the compiled circuit on all samples, one thread,
input packing included. It writes scores.npy (the compiled circuit's class scores on all
samples), eval_scores.npy (the eval forward's on the first eval_samples) and result.json
(versions, seconds, gate counts, checks).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchlogix  # noqa: E402
from torchlogix import Circuit  # noqa: E402
from torchlogix.functional import ID_TO_OP  # noqa: E402
from torchlogix.layers import GroupSum, LogicDense  # noqa: E402


def truth(op: int) -> tuple[int, int, int, int]:
    """gatec's op id -> (f(0,0), f(0,1), f(1,0), f(1,1))."""
    return (op >> 3) & 1, (op >> 2) & 1, (op >> 1) & 1, op & 1


def op_map() -> np.ndarray:
    """gatec's op id -> torchlogix's LUT id, matched by truth table on torchlogix's own op table
    (ID_TO_OP, what its eval path computes), not assumed equal."""
    a = torch.tensor([0.0, 0.0, 1.0, 1.0])
    b = torch.tensor([0.0, 1.0, 0.0, 1.0])
    theirs = {tuple(int(v) for v in ID_TO_OP[i](a, b).round().tolist()): i for i in range(16)}
    if len(theirs) != 16:
        raise SystemExit("torchlogix's op table does not have 16 distinct truth tables")
    return np.array([theirs[truth(op)] for op in range(16)], dtype=np.int64)


def reference(layers, x: np.ndarray, classes: int, tau: float) -> np.ndarray:
    """Gate-by-gate numpy evaluation in gatec's op order: what every engine must give."""
    table = np.array([truth(op) for op in range(16)], dtype=np.uint8)  # (16, 4)
    h = x.astype(np.uint8)
    for a, b, ops in layers:
        h = table[ops[None, :], 2 * h[:, a] + h[:, b]]
    return h.reshape(len(h), classes, -1).sum(-1) / tau


def build(layers, n_in: int, classes: int, tau: float, mapping: np.ndarray) -> torch.nn.Sequential:
    """The network from torchlogix's layers: LogicDense (raw parametrization: 16 op weights per
    gate, eval takes the argmax) with each gate's two inputs and op set, then GroupSum."""
    modules, width = [], n_in
    for a, b, ops in layers:
        layer = LogicDense(width, len(ops))  # connections "fixed": indices (2, out_dim), row 0 = a
        with torch.no_grad():
            idx = layer.connections.indices
            if tuple(idx.shape) != (2, len(ops)):
                raise SystemExit(f"unexpected torchlogix connections shape {tuple(idx.shape)}")
            idx.copy_(torch.from_numpy(np.stack([a, b])).to(idx.dtype))
            w = torch.zeros_like(layer.weight)
            w[torch.arange(len(ops)), torch.from_numpy(mapping[ops])] = 1.0
            layer.weight.copy_(w)
        modules.append(layer)
        width = len(ops)
    return torch.nn.Sequential(*modules, GroupSum(classes, tau)).eval()


def main() -> None:
    folder = Path(sys.argv[1])
    torch.set_num_threads(1)
    params = json.loads((folder / "params.json").read_text())
    net = np.load(folder / "network.npz")
    n_in, classes, tau = int(net["n_in"]), int(net["classes"]), float(net["tau"])
    layers = [(net[f"a{i}"].astype(np.int64), net[f"b{i}"].astype(np.int64), net[f"op{i}"].astype(np.int64))
              for i in range(int(net["depth"]))]
    bits = np.load(folder / "bits.npy")
    n = len(bits)
    result = {"torchlogix": getattr(torchlogix, "__version__", None), "python": platform.python_version(),
              "torch": torch.__version__, "torch_cuda_build": torch.version.cuda, "numpy": np.__version__,
              "threads": torch.get_num_threads()}
    if result["torchlogix"] is None:
        from importlib.metadata import version
        result["torchlogix"] = version("torchlogix")
    mapping = op_map()
    result["op_map_identity"] = bool(np.array_equal(mapping, np.arange(16)))

    t0 = time.perf_counter()
    model = build(layers, n_in, classes, tau, mapping)
    result["build_s"] = time.perf_counter() - t0
    m = min(n, int(params["eval_samples"]))
    expected = reference(layers, bits[:m], classes, tau)
    with torch.no_grad():
        eval_scores = model(torch.from_numpy(bits[:m].astype(np.float32))).numpy()
    result["eval_samples"] = m
    result["eval_matches_reference"] = bool(np.array_equal(eval_scores, expected))
    np.save(folder / "eval_scores.npy", eval_scores.astype(np.float32))
    print(f"torchlogix {result['torchlogix']} eval forward on {m} samples matches the gate-by-gate "
          f"reference: {result['eval_matches_reference']}", flush=True)

    t0 = time.perf_counter()
    circuit = Circuit.from_model(model, input_shape=[n_in])  # export mode, make_fx trace, gate list
    result["trace_s"] = time.perf_counter() - t0
    result["gates_traced"] = len(circuit.gates)
    if params["simplify"]:
        t0 = time.perf_counter()
        circuit.simplify()  # constant folding, wire bypass, NOT fusion, dedup, dead-gate removal
        result["simplify_s"] = time.perf_counter() - t0
    result["gates_compiled"] = len(circuit.gates)
    print(f"torchlogix circuit: {result['gates_traced']} gates traced ({result['trace_s']:.1f} s), "
          f"{result['gates_compiled']} after simplify ({result.get('simplify_s', 0):.1f} s); compiling "
          f"(opt_level={params['opt_level']}, pack_bits={params['pack_bits']})", flush=True)
    t0 = time.perf_counter()
    circuit.compile(opt_level=int(params["opt_level"]), pack_bits=params["pack_bits"])
    result["compile_s"] = time.perf_counter() - t0
    result["opt_level"], result["pack_bits"] = params["opt_level"], params["pack_bits"]
    print(f"torchlogix Circuit.compile: {result['compile_s']:.1f} s", flush=True)

    x = bits.astype(np.bool_)  # the compiled circuit takes a bool numpy array, packs it in C
    def run():
        return circuit(x, use_compiled=True)

    scores = np.asarray(run())  # warm up, and the output checked
    times, start = [], time.perf_counter()
    while len(times) < int(params["min_reps"]) or time.perf_counter() - start < float(params["min_time"]):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    seconds = float(np.median(times))
    result.update(samples=n, seconds=seconds, samples_per_s=n / seconds, reps=len(times),
                  output_dtype=str(scores.dtype),
                  compiled_matches_eval=bool(np.array_equal(scores[:m].astype(np.float64), eval_scores)))
    np.save(folder / "scores.npy", scores.astype(np.float32))
    (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"torchlogix compiled circuit: {n / seconds / 1e6:.3f} M samples/s (median of {len(times)})", flush=True)


if __name__ == "__main__":
    main()
