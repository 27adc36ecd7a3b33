"""`gatec sweep`: design-space exploration. Every point of a grid of target options (plus `passes`
and `O`) is compiled by gatec.compile, verified, and measured (accuracy, resources, latency,
size, compile time); Ray runs the points, one task each, on this machine or a cluster.

The output folder:

    sweep.json              the marker that makes the folder a gatec sweep folder (reusable)
    points/<key>.json       one row per point (written last: its presence means the point is done)
    points/<key>/           the point's artifact
    results.csv/.json       every row, the Pareto front marked
    *.png, report.html      the plots and a self-contained report with a sortable table

A point's key hashes the model's bytes, the target, its options and the data, so a rerun finds
what is done and recomputes nothing.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from .errors import GatecError
from .output import MARKER, check_folder, write_file, write_folder, write_report
from .version import __version__

MARKER_FILE = "sweep.json"
POINT_MEMORY = 1 << 30  # what one point may take (torch, hls4ml's g++): Ray schedules no more than fit
MAX_RETRIES = 3  # a task whose worker dies is run again; a GatecError is a row, never retried
SPECIAL_KEYS = ("passes", "O")  # grid keys that are no target option
RESOURCES = ("luts", "dsp", "nand2")  # minimized on the front, with latency_cycles; accuracy maximized
FIGURES = ("accuracy", "max_abs_err", *RESOURCES, "flip_flops", "latency_cycles", "artifact_bytes")
SOURCE_ROOT = str(Path(__file__).resolve().parents[1])  # what a worker puts on its path to import gatec


# ---- the grid ----

def split_values(text: str) -> list[str]:
    """`a,b,c` split at commas outside <...>: `ap_fixed<8,3>,ap_fixed<12,4>` is two values."""
    values, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "<") - (ch == ">")
        if ch == "," and depth == 0:
            values.append(cur)
            cur = ""
        else:
            cur += ch
    values.append(cur)
    return [v.strip() for v in values if v.strip()]


def parse_grid(target: str, items) -> dict[str, list]:
    """`["precision=a,b", "reuse_factor=1,4"]` (or a dict of lists) -> {key: [typed values]}."""
    from . import targets
    tgt = targets.get(target)
    raw = dict(items) if isinstance(items, dict) else {}
    if not isinstance(items, dict):
        for item in items:
            key, eq, values = item.partition("=")
            if not eq or not key.strip():
                raise GatecError(f"--grid {item}: expected KEY=V1,V2,... (e.g. reuse_factor=1,4,16)")
            raw[key.strip().replace("-", "_")] = split_values(values)
    grid = {}
    for key, values in raw.items():
        values = values if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise GatecError(f"--grid {key}: no values")
        grid[key] = [typed(tgt, key, v) for v in values]
    return grid


def typed(tgt, key: str, value):
    """One grid value as compile() takes it: passes a list ('+' between passes, 'none' for none),
    O an int, a target option by its Option's type and choices."""
    from .passes import LEVELS
    if key == "passes":
        if isinstance(value, (list, tuple)):
            return list(value)
        return [] if value in ("", "none") else [p for p in str(value).split("+") if p]
    if key == "O":
        try:
            level = int(value)
        except ValueError:
            level = None
        if level not in LEVELS:
            raise GatecError(f"--grid O={value}: the levels are {', '.join(map(str, LEVELS))}")
        return level
    option = tgt.option(key)
    if option is None or not option.cli:
        takes = ", ".join([o.name for o in tgt.options if o.cli] + list(SPECIAL_KEYS))
        raise GatecError(f"--grid {key}: not an option of target {tgt.name} (its keys: {takes})")
    try:
        value = option.type(value) if isinstance(value, str) else value
    except Exception:
        raise GatecError(f"--grid {key}={value}: not a valid value") from None
    if option.choices and value not in option.choices:
        raise GatecError(f"--grid {key}={value}: one of {', '.join(map(str, option.choices))}")
    return value


def points(grid: dict) -> list[dict]:
    """Every combination, in the grid's order."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def point_key(model_bytes: bytes, target: str, point: dict, extra: dict) -> str:
    """The point's name in the output folder: a hash of everything its row depends on."""
    h = hashlib.sha256(model_bytes)
    h.update(json.dumps({"target": target, "point": point, **extra, "gatec_version": __version__},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def array_hash(arrays) -> str | None:
    if arrays is None:
        return None
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---- one point (a Ray task; also runs in-process) ----

def run_point(model_path: str, model_bytes: bytes, target: str, point: dict, input_shapes, imports, samples: int,
              data, labels) -> tuple[dict, bytes | None]:
    """Compiles and measures one point. Returns (row, the artifact as a tar, or None when it
    failed). A GatecError (a refusal, a failed verification) is the row's reason."""
    options = {k: v for k, v in point.items() if k not in SPECIAL_KEYS}
    row = {**{k: ("+".join(v) if k == "passes" else v) for k, v in point.items()}, "ok": False, "error": None,
           **dict.fromkeys(FIGURES), "compile_s": None}
    with tempfile.TemporaryDirectory(prefix="gatec-sweep-") as tmp:
        path = model_path
        if not (os.path.isfile(path) and hashlib.sha256(Path(path).read_bytes()).digest()
                == hashlib.sha256(model_bytes).digest()):
            path = os.path.join(tmp, os.path.basename(model_path))  # another machine: the bytes, same name
            Path(path).write_bytes(model_bytes)
        from .compiler import compile
        from .frontend import load
        start = time.perf_counter()
        try:
            source = load(path, input_shapes, imports)
            arrays = None if data is None else model_inputs(data, source.ir)
            art = compile(path, target, os.path.join(tmp, "artifact"), source=source, samples=samples, data=arrays,
                          options=options, passes_to_run=point.get("passes"), opt_level=point.get("O", 1))
        except GatecError as e:
            row["error"] = str(e).splitlines()[0]
            row["compile_s"] = round(time.perf_counter() - start, 3)
            return row, None
        row["compile_s"] = round(time.perf_counter() - start, 3)
        row.update(measure(art, arrays, labels))
        row["ok"] = True
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in sorted(art.path.rglob("*")):
                if f.is_file():
                    tar.add(f, arcname=str(f.relative_to(art.path)), recursive=False)
        return row, buf.getvalue()


def model_inputs(data, ir) -> list:
    """The data as one array per model input: a dict by input name (an .npz), else a list in order."""
    if isinstance(data, dict):
        missing = [s.name for s in ir.inputs if s.name not in data]
        return [data[s.name] for s in ir.inputs] if not missing else list(data.values())
    return list(data)


def measure(art, data, labels) -> dict:
    """The row's figures from the artifact: accuracy (on the labels, else argmax agreement with
    the model on the verification inputs), resources, latency, size."""
    import numpy as np
    v = art.manifest.get("verification") or {}
    out = {"max_abs_err": v.get("max_abs_err"), "accuracy": v.get("argmax_agreement")}
    if data is not None and labels is not None:
        pred = np.asarray(art.run(data)[0]).argmax(axis=-1).reshape(-1)
        out["accuracy"] = float((pred == np.asarray(labels).reshape(-1)).mean())
    hls = read_json(art.path / "hls_summary.json")
    if hls:  # hls4ml's estimate: multipliers (DSPs), cycles
        out["dsp"] = hls["estimate"]["multipliers"]
        out["latency_cycles"] = hls["estimate"]["latency_cycles"]
    res = read_json(art.path / "resources.json")
    if res:  # yosys: LUT6 (fpga) or NAND2 equivalents (asic)
        synth = res.get("synthesized_by_yosys", {})
        out["luts"] = synth.get("luts")
        out["nand2"] = synth.get("nand2_equivalents")
        out["flip_flops"] = synth.get("flip_flops")
        out["latency_cycles"] = res.get("estimated", {}).get("latency_cycles")
    out["artifact_bytes"] = sum(f.stat().st_size for f in art.path.rglob("*") if f.is_file())
    return out


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---- the sweep ----

def check_sweep_folder(output: Path, force: bool) -> None:
    """The folder may be reused only if it is a gatec sweep folder (or empty, or new)."""
    if (output / MARKER_FILE).is_file() and MARKER in (read_json(output / MARKER_FILE) or {}):
        return
    if os.path.lexists(output) and output.is_dir() and any(output.iterdir()) and not force:
        raise GatecError(f"{output} is a folder gatec did not write (it holds no {MARKER_FILE}); --force writes "
                         f"into it anyway")
    check_folder(output, force)


def sweep(model, target: str | None = None, grid: dict | None = None, address: str | None = None,
          output: str | Path = "build/sweep", data=None, labels=None, input_shapes=None, imports=(),
          samples: int = 256, force: bool = False) -> list[dict]:
    """Compiles every point of `grid` ({key: [values]} or ["key=v1,v2", ...]) for `target` on Ray
    and writes the results under `output`; returns the rows (one per point, grid order).
    `address` (or RAY_ADDRESS): an existing cluster; else Ray starts on this machine."""
    import numpy as np
    if not isinstance(model, (str, Path)) or not Path(model).is_file():
        raise GatecError(f"sweep: {model} is not a model file")
    from . import targets
    target = target or targets.DEFAULT
    grid = parse_grid(target, grid or {})
    todo = points(grid)
    output = Path(output)
    check_sweep_folder(output, force)
    model_bytes = Path(model).read_bytes()
    if data is not None:  # an array (one input), a list (one per input) or a dict by input name (an .npz)
        data = dict(data) if isinstance(data, dict) or hasattr(data, "files") else \
            [data] if isinstance(data, np.ndarray) else list(data)
    arrays = None if data is None else list(data.values()) if isinstance(data, dict) else data
    if labels is not None:
        labels = np.asarray(labels)
        if arrays is None or len(labels) != len(arrays[0]):
            raise GatecError(f"sweep: {len(labels)} labels for {len(arrays[0]) if arrays else 'no'} data rows")
    extra = {"input_shapes": input_shapes, "samples": samples, "data": array_hash(arrays),
             "labels": array_hash(None if labels is None else [labels])}
    keys = [point_key(model_bytes, target, p, extra) for p in todo]

    (output / "points").mkdir(parents=True, exist_ok=True)
    write_report(output / MARKER_FILE, {"model": str(model), "target": target,
                                        "grid": {k: [str(v) for v in vs] for k, vs in grid.items()}}, force=True)
    done = {k: read_json(output / "points" / f"{k}.json") for k in keys}
    done = {k: r["row"] for k, r in done.items() if r and "row" in r}
    missing = [(k, p) for k, p in zip(keys, todo) if k not in done]
    if missing:
        args = (str(model), model_bytes, target, input_shapes, list(imports), samples, data, labels)
        for key, row, tar in run_on_ray(missing, args, address):
            store(output, key, row, tar)
            done[key] = row
    rows = [{"key": k, **done[k]} for k in keys]
    mark_pareto(rows)
    write_results(output, rows, list(grid))
    return rows


def run_on_ray(missing, args, address):
    """Yields (key, row, artifact tar) as the points finish: one Ray task each, with its needs
    declared; a task whose worker dies is retried (max_retries), one that still fails is a row."""
    import ray
    from . import progress
    started = not ray.is_initialized()
    if started:
        # workers import gatec from this source tree (an editable install works too)
        path = os.pathsep.join([SOURCE_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        # "local": a new instance on this machine, one worker per core (not a cluster someone started here)
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                 log_to_driver=False, configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        task = ray.remote(num_cpus=1, memory=POINT_MEMORY, max_retries=MAX_RETRIES, retry_exceptions=False)(run_point)
        model_path, model_bytes, target, input_shapes, imports, samples, data, labels = args
        shared = [ray.put(model_bytes), ray.put(data), ray.put(labels)]
        refs = {task.remote(model_path, shared[0], target, p, input_shapes, imports, samples, shared[1], shared[2]):
                (k, p) for k, p in missing}
        bar = progress.steps(range(len(refs)), "sweep points", total=len(refs)) if progress.shown() else None
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            key, point = refs[ready[0]]
            try:
                row, tar = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # lost after its retries: a row, not the end of the sweep
                row, tar = {**point, "ok": False, "error": f"ray: {str(e).splitlines()[0]}",
                            **dict.fromkeys(FIGURES), "compile_s": None, "lost": True}, None
            if bar is not None:
                bar.update(1)
            yield key, row, tar
        if bar is not None:
            bar.close()
    finally:
        if started:
            ray.shutdown()


def store(output: Path, key: str, row: dict, tar: bytes | None) -> None:
    """The artifact under points/<key>/, then the row (points/<key>.json) that marks it done; a point
    Ray lost is not stored, so a rerun tries it again."""
    if row.get("lost"):
        return
    if tar is not None:
        def unpack(folder: Path):
            with tarfile.open(fileobj=io.BytesIO(tar)) as t:
                t.extractall(folder, filter="data")
        write_folder(unpack, output / "points" / key)
    write_report(output / "points" / f"{key}.json", {"row": row})


def mark_pareto(rows: list[dict]) -> None:
    """row["pareto"]: no other good row is at least as good on every objective and better on one
    (accuracy up; LUT, DSP, NAND2 and latency down; an unknown figure counts as the worst)."""
    inf = float("inf")

    def objectives(r):
        acc = r.get("accuracy")
        return [-(acc if acc is not None else -inf)] + [r.get(k) if r.get(k) is not None else inf
                                                        for k in (*RESOURCES, "latency_cycles")]
    good = [r for r in rows if r.get("ok")]
    for r in rows:
        r["pareto"] = False
    for r in good:
        a = objectives(r)
        r["pareto"] = not any(all(x <= y for x, y in zip(objectives(o), a)) and objectives(o) != a
                              for o in good if o is not r)


def columns(rows, grid_keys) -> list[str]:
    """The table's columns: the point, then the figures some row has."""
    figures = [c for c in (*FIGURES, "compile_s") if any(r.get(c) is not None for r in rows)]
    return ["key", *grid_keys, "ok", "pareto", *figures, "error"]


def write_results(output: Path, rows: list[dict], grid_keys: list[str]) -> None:
    """results.csv, results.json, the plots and report.html; the folder is a sweep folder (checked
    in sweep()), so these are gatec's own files and are replaced."""
    cols = columns(rows, grid_keys)
    text = io.StringIO()
    writer = csv.DictWriter(text, cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_file(output / "results.csv", text.getvalue().encode(), force=True)
    write_report(output / "results.json", {"columns": cols, "rows": rows}, force=True)
    plots = write_plots(output, rows)
    write_file(output / "report.html", html_report(rows, cols, plots).encode(), force=True)


def write_plots(output: Path, rows: list[dict]) -> list[tuple[str, bytes]]:
    """accuracy vs each resource and latency vs each resource, the Pareto front in red."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    good = [r for r in rows if r.get("ok")]
    names = []
    for y in ("accuracy", "latency_cycles"):
        for x in RESOURCES:
            pts = [r for r in good if r.get(x) is not None and r.get(y) is not None]
            if not pts:
                continue
            fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
            for front, color in ((False, "tab:blue"), (True, "tab:red")):
                sel = [r for r in pts if r["pareto"] == front]
                ax.scatter([r[x] for r in sel], [r[y] for r in sel], c=color,
                           label="Pareto front" if front else "other points")
            ax.set_xlabel({"luts": "LUT6 (yosys)", "dsp": "multipliers / DSP (hls4ml estimate)",
                           "nand2": "NAND2 equivalents (yosys)"}[x])
            ax.set_ylabel(y.replace("_", " "))
            ax.legend(fontsize=8)
            fig.tight_layout()
            name = f"{y}_vs_{x}.png"
            buf = io.BytesIO()
            fig.savefig(buf, format="png", metadata={"Software": None})
            plt.close(fig)
            write_file(output / name, buf.getvalue(), force=True)
            names.append((name, buf.getvalue()))
    return names


def html_report(rows, cols, plots) -> str:
    """One file: the table (click a header to sort) and the plots inline; nothing from the network."""
    import base64
    import html

    def cell(v):
        return "" if v is None else html.escape(f"{v:.6g}" if isinstance(v, float) else str(v))
    head = "".join(f"<th onclick='sortBy({i})'>{html.escape(c)}</th>" for i, c in enumerate(cols))
    body = "".join("<tr" + (" class='front'" if r.get("pareto") else "") + ">" +
                   "".join(f"<td>{cell(r.get(c))}</td>" for c in cols) + "</tr>\n" for r in rows)
    images = "".join(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>"
                     for name, data in plots)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>gatec sweep</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px}} th{{cursor:pointer;background:#eee}} tr.front{{background:#fde}}</style>
</head><body><h1>gatec sweep ({len(rows)} points, gatec {__version__})</h1>
<p>Rows on the Pareto front (accuracy up; LUT, DSP, NAND2, latency down) are shaded. Click a header to sort.</p>
<table id="t"><thead><tr>{head}</tr></thead><tbody>
{body}</tbody></table>
<div>{images}</div>
<script>
var dir = {{}};
function sortBy(i) {{
  var tb = document.getElementById("t").tBodies[0], rs = Array.from(tb.rows);
  dir[i] = -(dir[i] || -1);
  rs.sort(function (a, b) {{
    var x = a.cells[i].textContent, y = b.cells[i].textContent, nx = parseFloat(x), ny = parseFloat(y);
    if (x === "") return 1; if (y === "") return -1;
    return dir[i] * (isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny);
  }});
  rs.forEach(function (r) {{ tb.appendChild(r); }});
}}
</script></body></html>
"""


class _CallableModule(type(sys)):
    """`gatec.sweep(...)` calls sweep() while `gatec.sweep` stays this module (an import of the
    submodule binds the module to the package's attribute, whatever __getattr__ returned)."""

    def __call__(self, *args, **kwargs):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
