"""Logic-network engines side by side on one network: 784 inputs, 6 x 8,000 gates with random ops,
GroupSum over 10 classes, 65,536 samples, one thread unless a row says otherwise, input packing
included (every engine gets the same unpacked 0/1 input).

Rows: gatec's engine (the cpu target's runtime for logic networks) on one thread and on all
cores; on an x86 host with AVX-512, also its AVX2 code path (the engine built with -mno-avx512f:
the AVX2 path on this CPU, not an AVX2-only host); ONNX Runtime on the bit-packed graph (the cpu
target with --engine onnxruntime); the C firmware (target c) at 64- and 32-bit words, table form
and --c-form unrolled at 64; the discrete PyTorch model (timed on the first --torch-samples
samples: at under a thousand samples a second the whole set would take minutes); and torchlogix's
compiled circuit (below). Every row's output is checked against PyTorch's. Also, each in a fresh
process: model file to first result (from the .pt, which a plain logic network's file reads
without torch, and from the same network's .onnx), and opening an artifact compiled before
to its first result (no torch). difflogic is not run (see DIFFLOGIC).

torchlogix (0.2.2, from PyPI) runs in its own Python 3.12 venv, since its circuit.py
needs 3.12's f-strings: set up on first use in ~/.cache/gatec/torchlogix-py312 (or
$GATEC_TORCHLOGIX_VENV; reused while its gatec-ready.json is there) from $GATEC_PYTHON312, a
pyenv 3.12 or python3.12 on PATH, with pip: numpy and torch at gatec's torch version (the CPU
build where an index offers one, else PyPI's CUDA build with its nvidia-* wheels: about 2.6 GB
to download, 4.7 GB installed, under a minute here), then torchlogix --no-deps (it declares
torchvision and torch-geometric, which it does not need here). The network's gate
inputs and ops, read from the LogicLayers, and the input bits go to a temporary folder;
benchmarks/torchlogix_side.py, run there in a subprocess, builds the same network from
torchlogix's LogicDense and GroupSum layers, checks their eval forward, traces it into a Circuit,
simplifies it and compiles it (Circuit.compile: C, then gcc; opt_level 3 and 64-bit packing, its
fastest form), and times the compiled circuit on all samples, one thread, input packing included.
Its row's compile_s is that compile (trace and simplify seconds are in the JSON), its outputs are
checked against gatec's engine's and PyTorch's. Without a Python 3.12 or when the install fails,
the table says so in one line and the rest runs as before.

    python benchmarks/bench_logic.py [--quick] [--float-form] [--engine-only] [--no-torchlogix]

Each row is timed --repeats times (30), the rows taken in turn, so that other jobs' load on these
shared cores falls on every row alike; its median and best are reported. The two "streaming" rows
time gatec's engine on STREAM batches back to back a run (one thread, and all cores), as a user
streaming batches runs it: in the rows taken in turn, a worker's core has idled through the
other rows before each batch, and on a VM an idle core came back slower (2-thread batches 19.5M
samples/s back to back, 15.5M after 20 ms of idle, 14.4M after 400 ms, on a Zen 4 EPYC VM).
Prints a table and writes benchmarks/results/logic.json (--engine-only: gatec's engine and PyTorch alone, written to
logic_engine.json).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

import gatec  # noqa: E402
from gatec.nn.logic import GroupSum, LogicLayer  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DIFFLOGIC = ("difflogic: not run. Its pip install needs CUDA (none here), and its CompiledLogicNet's C could "
             "be built here only from its source, which gatec does not vendor.")

STREAM = 8  # batches back to back in a run of the streaming rows
TORCHLOGIX_VERSION = "0.2.2"
TORCHLOGIX_ROW = "torchlogix compiled circuit"
TORCHLOGIX_SIDE = Path(__file__).parent / "torchlogix_side.py"

FIRST_RESULT = """
import sys
import numpy as np, gatec
art = gatec.compile(sys.argv[1], "cpu", sys.argv[2], input_shapes=[[1, int(sys.argv[3])]], verify=False)
art.run(np.ones((1, int(sys.argv[3])), np.uint8))
print("torch" in sys.modules)
"""

OPEN_RESULT = """
import sys
import numpy as np, gatec
gatec.Artifact.open(sys.argv[1]).run(np.ones((1, int(sys.argv[2])), np.uint8))
print("torch" in sys.modules)
"""


def cpu() -> dict:
    """The CPU's model and its vector extensions (x86 flags, or arm's Features)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and model == (platform.processor() or platform.machine()):
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    vector = sorted(f for f in flags if f.startswith(("sse4", "avx", "asimd", "sve", "neon")))
    return {"model": model, "vector_extensions": vector}


def avx2_path_engine(program):
    """gatec's engine built with -mno-avx512f: its AVX2 code path, on a host that has AVX-512."""
    from gatec import engine
    so = Path(tempfile.mkdtemp(prefix="gatec-avx2-")) / "engine.so"
    subprocess.run([os.environ.get("CC", "gcc"), *engine.build_flags(), "-mno-avx512f", "-Wno-psabi", str(engine.SOURCE),
                    "-o", str(so)], check=True)
    eng = engine.Engine(program, threads=1)
    eng.lib = ctypes.CDLL(str(so))
    eng.lib.gatec_host_run.argtypes = engine.library().gatec_host_run.argtypes
    return eng


def network(n_in: int, width: int, depth: int, classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [LogicLayer(n_in if i == 0 else width, width) for i in range(depth)]  # randn weights: uniform ops
    return torch.nn.Sequential(*layers, GroupSum(classes, 1.0)).eval()


def first_result_seconds(model_file: Path, work: Path, n_in: int, runs: int = 3) -> tuple[float, bool]:
    """Model file to first result in a fresh process, timed from outside it (interpreter start to
    exit) after one run that builds the engine's cache: the median of `runs`, and whether torch
    was imported."""
    walls, out = [], []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        out_dir = work / f"first-{model_file.suffix[1:]}{i}"
        proc = subprocess.run([sys.executable, "-c", FIRST_RESULT, str(model_file), str(out_dir), str(n_in)],
                              capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - t0)
        out.append(proc.stdout.strip())
    return float(np.median(walls[1:])), any(o == "True" for o in out[1:])


def open_result_seconds(artifact: Path, n_in: int, runs: int = 5) -> tuple[float, bool]:
    """A compiled artifact opened and run on one sample in a fresh process, timed from outside it:
    median seconds, and whether torch was imported."""
    walls, out = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        out.append(subprocess.run([sys.executable, "-c", OPEN_RESULT, str(artifact), str(n_in)], capture_output=True,
                                  text=True, check=True).stdout.strip())
        walls.append(time.perf_counter() - t0)
    return float(np.median(walls)), any(o == "True" for o in out)


def python312() -> str | None:
    """A Python 3.12 interpreter for torchlogix's venv: $GATEC_PYTHON312, pyenv's, or python3.12 on
    PATH, the first that runs and says 3.12 (a pyenv shim on PATH may not)."""
    found = [os.environ.get("GATEC_PYTHON312")]
    found += sorted(str(p) for p in Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob(
        "versions/3.12*/bin/python3.12"))
    found.append(shutil.which("python3.12"))
    for p in found:
        if p and Path(p).exists() and subprocess.run([p, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                                                     capture_output=True, check=False).returncode == 0:
            return p
    return None


def torchlogix_venv() -> tuple[Path | None, dict | str]:
    """torchlogix's venv (Python 3.12, torch, numpy, torchlogix): its python and its setup record,
    set up on first use; or None and why not (one line)."""
    venv = Path(os.environ.get("GATEC_TORCHLOGIX_VENV", Path.home() / ".cache" / "gatec" / "torchlogix-py312"))
    py, ready = venv / "bin" / "python", venv / "gatec-ready.json"
    if py.exists() and ready.exists():
        record = json.loads(ready.read_text())
        if record.get("torchlogix") == TORCHLOGIX_VERSION:
            return py, record
    if venv.exists() and any(venv.iterdir()) and not (venv / "pyvenv.cfg").exists():
        return None, f"{venv} exists and is not a venv: not touched"
    base = python312()
    if base is None:
        return None, "no Python 3.12 found (python3.12 on PATH, pyenv, or $GATEC_PYTHON312)"
    torch_version = torch.__version__.split("+")[0]
    print(f"torchlogix: setting up {venv} (once): {base} -m venv, then pip install numpy torch=={torch_version} "
          f"(CPU build if an index offers it, else the CUDA build: a few GB), torchlogix=={TORCHLOGIX_VERSION} "
          f"--no-deps; log in {venv / 'setup.log'}", flush=True)
    shutil.rmtree(venv, ignore_errors=True)  # a venv left half set up, or for another torchlogix
    venv.mkdir(parents=True)
    t0 = time.perf_counter()
    log = (venv / "setup.log").open("w")
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check"]

    def step(*cmd) -> bool:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode == 0

    ok = step(base, "-m", "venv", str(venv))
    if ok:  # the CPU build where some configured index has it (fails fast where none does), else PyPI's
        cpu_build = step(*pip, "numpy", f"torch=={torch_version}+cpu")
        ok = cpu_build or step(*pip, "numpy", f"torch=={torch_version}")
    ok = ok and step(*pip, "--no-deps", f"torchlogix=={TORCHLOGIX_VERSION}")
    probe = "import json, torch, numpy, torchlogix.circuit; print(json.dumps([torch.__version__, torch.version.cuda]))"
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=False) if ok else None
    log.close()
    if out is None or out.returncode:
        why = "install failed" if out is None else "import failed: " + (out.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"torchlogix venv setup in {venv}: {why} (see {venv / 'setup.log'})"
    torch_312, cuda = json.loads(out.stdout)
    size = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True, check=False).stdout.split()
    record = {"torchlogix": TORCHLOGIX_VERSION, "python": str(base), "torch": torch_312, "torch_cuda_build": cuda,
              "setup_s": round(time.perf_counter() - t0, 1), "venv_mib": int(size[0]) if size else None,
              "venv": str(venv)}
    ready.write_text(json.dumps(record, indent=2) + "\n")
    print(f"torchlogix: venv ready in {record['setup_s']} s, {record['venv_mib']} MiB (torch {torch_312})", flush=True)
    return py, record


def torchlogix_side(model: torch.nn.Module, bits: np.ndarray, work: Path, quick: bool) -> tuple[dict | None, str]:
    """The network and input bits saved to a folder, torchlogix_side.py run on them in
    torchlogix's venv: (its result.json with scores and eval_scores added, "") or (None, why not)."""
    py, record = torchlogix_venv()
    if py is None:
        return None, record
    folder = work / "torchlogix"
    folder.mkdir()
    layers = [m for m in model if isinstance(m, LogicLayer)]
    group = next(m for m in model if isinstance(m, GroupSum))
    arrays = {"n_in": layers[0].in_dim, "depth": len(layers), "classes": group.k, "tau": group.tau}
    for i, layer in enumerate(layers):
        arrays.update({f"a{i}": layer.in_a.numpy(), f"b{i}": layer.in_b.numpy(), f"op{i}": layer.ops.numpy()})
    np.savez(folder / "network.npz", **arrays)
    np.save(folder / "bits.npy", bits)
    (folder / "params.json").write_text(json.dumps({"opt_level": 3, "pack_bits": 64, "simplify": True,
                                                    "min_time": 0.3 if quick else 2.0, "min_reps": 3,
                                                    "eval_samples": 256}))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(py), str(TORCHLOGIX_SIDE), str(folder)], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("torchlogix"):
            print(f"  {line}", flush=True)
    if proc.returncode or not (folder / "result.json").exists():
        tail = (proc.stdout.strip().splitlines() or ["no output"])[-1]
        return None, f"torchlogix_side.py failed (exit {proc.returncode}): {tail}"
    result = json.loads((folder / "result.json").read_text())
    result["venv"] = record
    result["scores"] = np.load(folder / "scores.npy")
    result["eval_scores"] = np.load(folder / "eval_scores.npy")
    shutil.rmtree(folder)  # the input bits again and the scores: tens of MB at full size
    return result, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller network and batch (a smoke run)")
    ap.add_argument("--torch-samples", type=int, default=8192)
    ap.add_argument("--float-form", action="store_true", help="also time ONNX Runtime on the float form")
    ap.add_argument("--engine-only", action="store_true", help="time gatec's engine alone (a quick check)")
    ap.add_argument("--repeats", type=int, default=30, help="timed runs of each row, taken in turn")
    ap.add_argument("--no-torchlogix", action="store_true", help="skip the torchlogix row (and its venv setup)")
    args = ap.parse_args()
    n_in, width, depth, classes, n = (784, 8000, 6, 10, 65536) if not args.quick else (784, 1000, 3, 10, 4096)
    torch.set_num_threads(1)
    model = network(n_in, width, depth, classes)
    bits = np.random.default_rng(0).integers(0, 2, (n, n_in)).astype(np.uint8)
    work = Path(tempfile.mkdtemp(prefix="gatec-bench-"))
    model_file = work / "model.pt"
    torch.save(model, model_file)
    host = cpu()
    cores = gatec.engine.default_threads()
    print(f"network: {n_in} inputs, {depth} x {width} gates (random ops), {classes} classes; {n} samples, "
          f"one thread unless named", flush=True)
    print(f"CPU: {host['model']}, {cores} cores; vector extensions: {' '.join(host['vector_extensions'])}", flush=True)
    load_before = os.getloadavg()  # other jobs on these shared cores: the threads row depends on them

    source = gatec.load(str(model_file), [[1, n_in]])
    builds = {"gatec engine (cpu target)": ("cpu", {"threads": 1}),
              f"gatec engine, {cores} threads": ("cpu", {"threads": cores}),
              "ONNX Runtime bit-packed": ("cpu", {"threads": 1, "engine": "onnxruntime"}),
              "C firmware, 64-bit words": ("c", {"word_bits": 64, "cflags": "-O3 -march=native"}),
              "C fw unrolled, 64-bit": ("c", {"word_bits": 64, "cflags": "-O3 -march=native", "c_form": "unrolled"}),
              "C firmware, 32-bit words": ("c", {"word_bits": 32, "cflags": "-O3 -march=native"})}
    if args.engine_only:
        builds = dict(list(builds.items())[:2])
    if args.float_form:
        builds["ONNX Runtime float form"] = ("cpu", {"threads": 1, "engine": "onnxruntime", "logic_form": "float"})
    engines, compile_s, artifacts = {}, {}, {}
    for i, (name, (target, options)) in enumerate(builds.items()):
        t0 = time.perf_counter()
        art = gatec.compile(None, target, work / f"a{i}", source=source, verify=False, options=options)
        compile_s[name] = time.perf_counter() - t0
        engines[name], artifacts[name] = (lambda a: lambda x: a.run(x)[0])(art), art
    one_thread, all_cores = artifacts["gatec engine (cpu target)"], artifacts[f"gatec engine, {cores} threads"]
    batches = {}  # a row's batches a timed run, where more than one
    for name, art in (("engine streaming, 1 thread", one_thread), (f"engine streaming, {cores} threads", all_cores)):
        engines[name] = (lambda a: lambda x: [a.run(x) for _ in range(STREAM)][-1][0])(art)
        batches[name] = STREAM
    if "avx512f" in host["vector_extensions"] and "avx2" in host["vector_extensions"]:
        eng = avx2_path_engine(one_thread.runner.engine.program)
        engines["gatec engine, AVX2 path"] = lambda x, e=eng: e.run(x)

    m = min(n, args.torch_samples)
    x_torch = torch.from_numpy(bits[:m].astype(np.float32))
    with torch.no_grad():
        t0 = time.perf_counter()
        expected = model(x_torch).numpy()
        torch_seconds = time.perf_counter() - t0
    rows = [{"engine": "PyTorch (discrete, eval)", "samples": m, "seconds": torch_seconds,
             "samples_per_s": m / torch_seconds, "bit_exact": True}]
    print(f"  {rows[0]['engine']:<28} {rows[0]['samples_per_s'] / 1e6:8.4f} M samples/s  (on {m} samples)", flush=True)
    reference = None
    times = {name: [] for name in engines}
    outputs = {name: run(bits) for name, run in engines.items()}  # also the first (warm-up) run of each
    for _ in range(args.repeats):  # round robin, so that other jobs' load falls on every row alike
        for name, run in engines.items():
            t0 = time.perf_counter()
            run(bits)
            times[name].append(time.perf_counter() - t0)
    for name, out in outputs.items():
        exact = bool(np.array_equal(out[:m], expected)) and (reference is None or np.array_equal(out, reference))
        reference = out if reference is None else reference
        runs, samples = times[name], n * batches.get(name, 1)
        seconds = float(np.median(runs))
        rows.append({"engine": name, "samples": samples, "batches": batches.get(name, 1), "seconds": seconds,
                     "samples_per_s": samples / seconds, "best_samples_per_s": samples / min(runs), "bit_exact": exact,
                     "compile_s": compile_s.get(name)})
        print(f"  {name:<28} {samples / seconds / 1e6:8.3f} M samples/s median, {samples / min(runs) / 1e6:.3f} best "
              f"of {args.repeats}  bit-exact: {exact}", flush=True)
    torchlogix = "not run (--no-torchlogix)" if args.no_torchlogix else "not run (--engine-only)"
    if not (args.no_torchlogix or args.engine_only):
        tlx, why = torchlogix_side(model, bits, work, args.quick)
        if tlx is None:
            torchlogix = f"not run: {why}"
        else:
            scores, ev = tlx.pop("scores"), tlx.pop("eval_scores")
            k = min(len(ev), m)  # its eval forward ran on the first k samples that PyTorch ran on too
            tlx.update(outputs_equal_engine=bool(np.array_equal(scores, reference)),
                       outputs_equal_pytorch=bool(np.array_equal(scores[:m], expected)),
                       eval_equals_pytorch=bool(np.array_equal(ev[:k], expected[:k])))
            exact = all(tlx[key] for key in ("outputs_equal_engine", "outputs_equal_pytorch", "eval_equals_pytorch",
                                             "eval_matches_reference", "compiled_matches_eval"))
            tlx["bit_exact"] = exact
            rows.append({"engine": TORCHLOGIX_ROW, "samples": n, "seconds": tlx["seconds"],
                         "samples_per_s": tlx["samples_per_s"], "bit_exact": exact, "compile_s": tlx["compile_s"]})
            print(f"  {TORCHLOGIX_ROW:<28} {tlx['samples_per_s'] / 1e6:8.3f} M samples/s  bit-exact: {exact}",
                  flush=True)
            torchlogix = tlx
    first, first_torch = first_result_seconds(model_file, work, n_in)
    onnx_file = work / "model.onnx"  # the same network as ONNX (gatec's IR: what `gatec.load(...).ir.save` writes)
    source.ir.save(onnx_file)
    first_onnx, _ = first_result_seconds(onnx_file, work, n_in)
    opened, torch_imported = open_result_seconds(work / "a0", n_in)

    base = rows[0]["samples_per_s"]
    engine_1 = rows[1]["samples_per_s"] if len(rows) > 1 else base
    load = [round(x, 2) for x in (load_before[0], os.getloadavg()[0])]
    print(f"\nCPU: {host['model']}; vector extensions: {' '.join(host['vector_extensions'])}; "
          f"load average (1 min) before and after: {load[0]}, {load[1]}")
    print(f"{'engine':<28} {'samples/s':>14} {'vs PyTorch':>11} {'vs engine, 1 thread':>20} {'compile s':>10} "
          f"{'bit-exact':>10}")
    for r in rows:
        r["vs_pytorch"] = r["samples_per_s"] / base
        r["vs_engine_one_thread"] = r["samples_per_s"] / engine_1
        built = "" if r.get("compile_s") is None else f"{r['compile_s']:.1f}"
        print(f"{r['engine']:<28} {r['samples_per_s']:>14,.0f} {r['vs_pytorch']:>10.1f}x "
              f"{r['vs_engine_one_thread']:>19.2f}x {built:>10} {str(r['bit_exact']):>10}")
    print(f"model file to first result (fresh process, interpreter start to exit, median of 3; cpu target, -O1): "
          f"{first:.2f} s from the .pt (torch imported: "
          f"{first_torch}), {first_onnx:.2f} s from the same network's .onnx")
    print(f"compiled artifact to first result (fresh process, interpreter start to exit, open + run, median of 5): "
          f"{opened:.2f} s, "
          f"torch imported: {torch_imported}")
    if isinstance(torchlogix, str):
        print(f"torchlogix: {torchlogix}")
    else:
        eng = rows[1]
        torchlogix["engine_speedup"] = eng["samples_per_s"] / torchlogix["samples_per_s"]
        print(f"torchlogix {torchlogix['torchlogix']} (Python {torchlogix['python']}, torch {torchlogix['torch']}): "
              f"Circuit.compile(opt_level={torchlogix['opt_level']}, pack_bits={torchlogix['pack_bits']}) "
              f"{torchlogix['compile_s']:.1f} s for {torchlogix['gates_compiled']:,} gates (after from_model "
              f"{torchlogix['trace_s']:.1f} s, {torchlogix['gates_traced']:,} gates, and simplify "
              f"{torchlogix.get('simplify_s', 0):.1f} s); gatec's engine {eng['compile_s']:.1f} s; gatec's engine "
              f"runs {torchlogix['engine_speedup']:.1f}x its samples/s; outputs equal the engine's: "
              f"{torchlogix['outputs_equal_engine']}")
    rate = {r["engine"]: r["samples_per_s"] for r in rows}
    scaling = None
    if cores > 1:
        scaling = {"per_batch": rate[f"gatec engine, {cores} threads"] / rate["gatec engine (cpu target)"],
                   "streaming": rate[f"engine streaming, {cores} threads"] / rate["engine streaming, 1 thread"]}
        print(f"{cores} threads / 1 thread: {scaling['per_batch']:.2f}x a batch at a time, the rows in turn; "
              f"{scaling['streaming']:.2f}x streaming ({STREAM} batches back to back)")
    print(DIFFLOGIC)
    if not all(r["bit_exact"] for r in rows):
        raise SystemExit("an engine disagrees with PyTorch")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("logic_quick.json" if args.quick else "logic_engine.json" if args.engine_only else "logic.json")
    out.write_text(json.dumps({"network": {"inputs": n_in, "layers": depth, "width": width, "classes": classes,
                                           "samples": n, "threads": 1},
                               "machine": platform.machine(), "cpu": host, "cores": cores, "load_average": load,
                               "torch": torch.__version__,
                               "onnxruntime": ort.__version__, "rows": rows, "thread_scaling": scaling, "first_result_s": first,
                               "first_result_imports_torch": first_torch, "first_result_onnx_s": first_onnx,
                               "open_first_result_s": opened, "open_imports_torch": torch_imported,
                               "difflogic": DIFFLOGIC, "torchlogix": torchlogix}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
