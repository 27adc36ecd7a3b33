"""The `gatec` command line: compile, verify, inspect, bench, quantize, sweep, passes, targets."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import GatecError
from .output import (Terminated, check_files, check_folder, replacing_file, sigterm_unwinds,
                     write_file, write_report)
from .version import __version__


def shape_arg(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape '{text}': expected integers like 1,50,16") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"bad shape '{text}': expected positive integers like 1,50,16")
    return dims


def percentile_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 100], got '{text}'") from None
    if not 0 < value <= 100:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number in (0, 100], got {text}")
    return value


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file: .pt (TorchScript or torch.save), .pt2 (torch.export), .onnx")
    p.add_argument("--input-shape", type=shape_arg, action="append", dest="input_shapes", metavar="SHAPE",
                   help="example input shape, e.g. 1,50,16; repeat for several inputs")
    p.add_argument("--import", action="append", dest="imports", default=[], metavar="MODULE_OR_FILE.py",
                   help="module, file or package folder whose classes a pickled model may use (nothing else is "
                        "unpickled)")
    p.add_argument("--batch-axis", type=int, default=0, help="the batch axis of the inputs (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on the terminal (none is shown when "
                                                               "stderr is not a terminal either)")
    p.add_argument("--force", action="store_true",
                   help="replace an output gatec did not write (a folder, a file); never the model, its folder "
                        "or the current one")


def add_target_options(p: argparse.ArgumentParser) -> None:
    """One group of flags per target, from the options each target declares; a flag two targets
    share is added once, in the first one's group, with each target's help (and its values
    checked by the target that is chosen)."""
    from . import targets
    declared = {}
    for name in targets.names():
        for o in targets.get(name).options:
            if o.cli:
                declared.setdefault(o.name, []).append(o)
    seen = set()
    for name in targets.names():
        group = p.add_argument_group(f"target {name} options")
        for o in targets.get(name).options:
            if not o.cli or o.name in seen:
                continue
            seen.add(o.name)
            same = declared[o.name]
            kwargs = {"choices": o.choices} if o.choices and len(same) == 1 else {}
            group.add_argument(o.flag, dest=o.name, type=o.type, metavar=o.metavar,
                               help="; ".join(x.help for x in same), **kwargs)


def target_options(args) -> dict:
    """The target options given on the command line (none given: the target's defaults apply);
    one that the chosen target does not take is refused by compile()."""
    from . import targets
    names = {o.name for t in targets.names() for o in targets.get(t).options if o.cli}
    return {n: getattr(args, n) for n in sorted(names) if getattr(args, n, None) is not None}


def add_opt_args(p: argparse.ArgumentParser) -> None:
    from .passes import LEVELS
    p.add_argument("-O", dest="opt_level", type=int, choices=tuple(LEVELS), default=1, metavar="LEVEL",
                   help="optimization level: -O0 no passes, -O1 exact logic simplifications (default), "
                        "-O2 also resynthesis and pruning of gates that are off")
    p.add_argument("--passes", help="comma-separated passes to run instead of the level's (see `gatec passes`)")


def parser() -> argparse.ArgumentParser:
    from . import targets
    ap = argparse.ArgumentParser(prog="gatec", description="Compile gated and logic-gate networks to verified targets.")
    ap.add_argument("--version", action="version", version=f"gatec {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile a model for a target (verified unless --no-verify)")
    add_model_args(p)
    p.add_argument("--target", default=targets.DEFAULT, help=f"one of: {', '.join(targets.names())} "
                                                               f"(default {targets.DEFAULT})")
    p.add_argument("-o", "--output", help="artifact folder (default build/<model>_<target>)")
    add_opt_args(p)
    p.add_argument("--no-verify", action="store_true", help="skip the emulator check")
    p.add_argument("--samples", type=targets.integer_at_least(1), default=256)
    p.add_argument("--data", help="verification inputs: .npy (one input) or .npz (one array per input)")
    add_target_options(p)

    p = sub.add_parser("verify", help="run the model and each target on the same inputs and compare")
    add_model_args(p)
    p.add_argument("--targets", default=targets.DEFAULT, help="comma-separated targets")
    add_opt_args(p)
    p.add_argument("--samples", type=targets.integer_at_least(1), default=256)
    p.add_argument("--data")
    p.add_argument("--json", help="write the report here")

    p = sub.add_parser("inspect", help="ops, parameters, MACs and gates of a model")
    add_model_args(p)
    p.add_argument("--json", help="write the summary here")

    p = sub.add_parser("bench", help="latency (batch 1) and throughput (batch 64) against PyTorch eager")
    add_model_args(p)
    p.add_argument("--targets", default=targets.DEFAULT)
    add_opt_args(p)
    p.add_argument("--threads", type=targets.integer_at_least(1), default=1)
    p.add_argument("--json", help="write the rows here")

    p = sub.add_parser("quantize", help="post-training quantization to QONNX (uniform or Hessian-aware mixed precision)")
    add_model_args(p)
    p.add_argument("--data", help="calibration inputs: .npy (one input) or .npz (one array per input); "
                                  "default: random draws from the input specs")
    p.add_argument("--labels", help=".npy of class labels (or real targets) for the data: accuracy, Hessian loss")
    p.add_argument("--bits", type=int, default=8, help="weight bits of every layer (default 8)")
    p.add_argument("--act-bits", type=int, default=8, help="bits of every layer's input activation (default 8)")
    p.add_argument("--calibration", choices=("minmax", "percentile"), default="minmax")
    p.add_argument("--percentile", type=percentile_arg, default=99.99,
                   help="with --calibration percentile (default 99.99)")
    p.add_argument("--per-channel", action="store_true", help="one weight scale per output channel")
    p.add_argument("--float-scales", action="store_true", help="any scale, not only powers of two")
    p.add_argument("--budget-bops", metavar="N|P%", help="mixed precision: at most N bit operations, or P%% of "
                                                         "uniform 8-bit weights")
    p.add_argument("--budget-size", metavar="N|P%", help="mixed precision: at most N bits of weights, or P%%")
    p.add_argument("--bit-choices", default="2,3,4,5,6,7,8", help="mixed precision: weight widths to choose from")
    p.add_argument("-o", "--output", help="QONNX file to write (default build/<model>_q.onnx)")
    p.add_argument("--json", help="write the report here (default: beside the output)")

    p = sub.add_parser("sweep", help="compile, verify and measure a grid of options on Ray; the Pareto front")
    add_model_args(p)
    p.add_argument("--target", default=targets.DEFAULT, help=f"one of: {', '.join(targets.names())} "
                                                               f"(default {targets.DEFAULT})")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a target option, passes (e.g. passes=simplify,simplify+abc) or O; repeat for each key")
    p.add_argument("--data", help="inputs: .npy (one input) or .npz (one array per input); verification and accuracy")
    p.add_argument("--labels", help=".npy of class labels for --data: accuracy (else argmax agreement with the model)")
    p.add_argument("--samples", type=targets.integer_at_least(1), default=256)
    p.add_argument("--address", help="an existing Ray cluster, HOST:PORT (default $RAY_ADDRESS, else Ray on this "
                                     "machine)")
    p.add_argument("-o", "--output", help="sweep folder (default build/<model>_sweep)")

    p = sub.add_parser("passes", help="list the passes, or describe one")
    p.add_argument("name", nargs="?", help="a pass: print its long help and its parameter")
    sub.add_parser("targets", help="list the targets")
    return ap


def load_source(args):
    from .frontend import load
    return load(args.model, args.input_shapes, args.imports, args.batch_axis)


def cmd_compile(args) -> int:
    from .compiler import compile
    from .emulator import load_data
    output = args.output or f"build/{Path(args.model).stem}_{args.target}"
    check_folder(output, args.force, [args.model])  # before the work; compile() checks again under its lock
    source = load_source(args)
    data = load_data(args.data, source.ir) if args.data else None
    art = compile(args.model, args.target, output, force=args.force, source=source, passes_to_run=pass_list(args),
                  verify=not args.no_verify, samples=args.samples, data=data, options=target_options(args), log=print,
                  opt_level=args.opt_level)
    print(f"wrote {art.path} ({', '.join(art.manifest['files'])})")
    return 0


def pass_list(args) -> list[str] | None:
    return None if args.passes is None else [p for p in args.passes.split(",") if p]


def compile_targets(source, names, threads=0, opt_level=1, pass_names=None, data=None, synthesize=True,
                    refused: dict | None = None) -> dict:
    """Each named target compiled (unverified: the caller compares them) into a temporary folder;
    synthesize=False skips what only reports resources (yosys for fpga/asic). With `refused`, a
    target that refuses the model goes there ({name: GatecError}) and the others are still built."""
    from . import targets
    from .compiler import compile
    wanted = {"threads": threads} if synthesize else {"threads": threads, "synthesize": False}
    built = {}
    for name in names:
        target = targets.get(name)
        options = {k: v for k, v in wanted.items() if target.option(k) is not None}
        try:
            built[name] = compile(None, name, source=source, verify=False, options=options, data=data,
                                  opt_level=opt_level, passes_to_run=pass_names)
        except GatecError as e:
            if refused is None:
                raise
            refused[name] = e
    return built


def cmd_verify(args) -> int:
    from . import emulator
    plot = Path(args.json).with_suffix(".png") if args.json else None
    if args.json:
        check_files([args.json, plot], args.force, [args.model])
    source = load_source(args)
    data = emulator.load_data(args.data, source.ir) if args.data else None
    names, refused = [t for t in args.targets.split(",") if t], {}
    built = compile_targets(source, names, 0, args.opt_level, pass_list(args), data, synthesize=False, refused=refused)
    checks = emulator.verify(source.ir, source.reference, {n: (art.run, art.tolerance) for n, art in built.items()},
                             args.samples, data)
    # a target that refused the model is a failed row of the report, beside the others
    checks += [c for n, e in refused.items() for c in emulator.refused(source.ir, n, e)]
    checks.sort(key=lambda c: names.index(c.target))
    print(emulator.format_table(checks))
    report = emulator.per_target(checks)
    if args.json:
        write_report(args.json, report, args.force, [args.model])
        with replacing_file(plot, args.force, [args.model]) as tmp:
            emulator.plot_errors(checks, tmp)
    ok = all(t["ok"] for t in report.values())
    print("verification " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def cmd_inspect(args) -> int:
    from .ir.summary import format_inspect, inspect_ir
    if args.json:
        check_files([args.json], args.force, [args.model])
    info = inspect_ir(load_source(args).ir)
    print(format_inspect(info))
    if args.json:
        write_report(args.json, info, args.force, [args.model])
    return 0


def cmd_bench(args) -> int:
    from .bench import bench, format_rows
    if args.json:
        check_files([args.json], args.force, [args.model])
    source = load_source(args)
    built = compile_targets(source, [t for t in args.targets.split(",") if t], args.threads, args.opt_level,
                            pass_list(args))
    # a target that runs emulated here says so in its row ("<target> (emulated fp16)")
    rows = bench(source, {f"{n} ({art.label})" if art.label else n: art.run for n, art in built.items()},
                 threads=args.threads,
                 progress=sys.stderr.isatty())
    print(format_rows(rows))
    if args.json:
        write_report(args.json, {"rows": rows}, args.force, [args.model])  # an object, to carry gatec's marker
    return 0


def cmd_quantize(args) -> int:
    import numpy as np
    from .emulator import load_data
    from .ir.sampling import input_sets
    from .quantize import format_report, plot_report, quantize_model
    output = Path(args.output or f"build/{Path(args.model).stem}_q.onnx")
    json_path = Path(args.json) if args.json else output.with_suffix(".json")
    check_files([output, json_path, json_path.with_suffix(".png")], args.force, [args.model])
    source = load_source(args)
    data = load_data(args.data, source.ir, any_rows=False) if args.data else input_sets(source.ir, 1024)[0]
    labels = None
    if args.labels:
        try:
            labels = np.load(args.labels)
        except Exception as e:
            raise GatecError(f"--labels {args.labels}: cannot read it ({str(e).splitlines()[0]})") from None
        if len(labels) != len(data[0]):
            raise GatecError(f"--labels {args.labels}: {len(labels)} labels for {len(data[0])} samples")
    try:
        choices = tuple(sorted({int(b) for b in args.bit_choices.split(",")}))
    except ValueError:
        raise GatecError(f"bad --bit-choices '{args.bit_choices}': integers like 2,4,8") from None
    qir, report = quantize_model(source, data, labels, args.bits, args.act_bits, args.calibration, args.per_channel,
                                 not args.float_scales, args.budget_bops, args.budget_size, choices, args.percentile)
    print(format_report(report))
    write_file(output, qir.to_bytes(), args.force, [args.model])
    write_report(json_path, report, args.force, [args.model])
    with replacing_file(json_path.with_suffix(".png"), args.force, [args.model]) as tmp:
        plot_report(report, tmp)
    print(f"wrote {output} (QONNX), {json_path}, {json_path.with_suffix('.png')}")
    return 0


def cmd_sweep(args) -> int:
    import numpy as np
    from .sweep import sweep
    output = args.output or f"build/{Path(args.model).stem}_sweep"
    loaded = {}
    for flag, path in (("--data", args.data), ("--labels", args.labels)):
        if path:
            try:
                loaded[flag] = np.load(path)
            except Exception as e:
                raise GatecError(f"{flag} {path}: cannot read it ({str(e).splitlines()[0]})") from None
    rows = sweep(args.model, args.target, args.grid, args.address, output, loaded.get("--data"),
                 loaded.get("--labels"), args.input_shapes, args.imports, args.samples, args.force)
    keys = [g.partition("=")[0].strip().replace("-", "_") for g in args.grid]
    for r in rows:
        figures = ", ".join(f"{k} {r[k]:.4g}" if isinstance(r[k], float) else f"{k} {r[k]}"
                            for k in ("accuracy", "luts", "dsp", "nand2", "latency_cycles", "compile_s")
                            if r.get(k) is not None)
        where = "front" if r["pareto"] else ("ok" if r["ok"] else "FAILED")
        print(f"{' '.join(f'{k}={r[k]}' for k in keys):<48} {where:<6} {figures or r['error']}")
    print(f"wrote {output} ({len(rows)} points, {sum(r['pareto'] for r in rows)} on the Pareto front): "
          f"results.csv, results.json, report.html")
    return 0


def cmd_passes(args) -> int:
    from .passes import get, load_all
    if args.name:
        print(get(args.name).describe())
        return 0
    for p in sorted(load_all().values(), key=lambda p: p.name):
        print(f"{p.name:<16} {p.kind:<10} {p.help}")
    return 0


def cmd_targets(args) -> int:
    from . import targets
    for name in targets.names():
        print(f"{name:<8} {targets.get(name).describe()}")
    return 0


def main(argv=None) -> int:
    try:  # the parser imports too (the targets, torch): Ctrl-C there is exit 130 like anywhere else
        args = parser().parse_args(argv)
        from . import progress
        progress.quiet = getattr(args, "quiet", False)
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        import warnings
        warnings.filterwarnings("ignore")
        with sigterm_unwinds():  # SIGTERM unwinds like Ctrl-C: temporary files are removed on the way out
            return {"compile": cmd_compile, "verify": cmd_verify, "inspect": cmd_inspect, "bench": cmd_bench,
                    "quantize": cmd_quantize, "sweep": cmd_sweep, "passes": cmd_passes, "targets": cmd_targets}[args.command](args)
    except GatecError as e:
        print(f"gatec: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        return 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended
    except KeyboardInterrupt:
        return 130
    except ImportError as e:  # Ctrl-C while a C extension initialises: pybind11 raises "initialization failed" from it
        if not interrupted(e):
            raise
        return 130
    # last resorts for what a user's input can cause anywhere; any other exception is a bug and keeps its traceback
    except MemoryError as e:
        print(f"gatec: error: out of memory ({first_line(e)})", file=sys.stderr)
        return 2
    except OSError as e:  # a path that cannot be read or written
        where = f"{e.filename}: " if e.filename is not None else ""
        print(f"gatec: error: {where}{e.strerror or first_line(e)}", file=sys.stderr)
        return 2


def first_line(e: BaseException) -> str:
    return (str(e).strip() or type(e).__name__).splitlines()[0]


def interrupted(e: BaseException | None) -> bool:
    while e is not None and not isinstance(e, KeyboardInterrupt):
        e = e.__cause__ or e.__context__
    return e is not None
