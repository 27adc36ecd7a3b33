"""`gatec sweep` on a real local Ray cluster (a head and a second worker node, one CPU each): a
gated model to fpga (hls4ml) and a logic network to fpga (Verilog) and c, 12 points in all, each
row and artifact equal to a single gatec.compile with the same options; a worker killed mid-sweep
loses nothing; a rerun recomputes nothing."""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import gatec
from gatec import sweep as sweep_module
from gatec.errors import GatecError
from gatec.nn import GLU
from test_c_target import logic_onnx, random_layers

pytest.importorskip("ray")

SAMPLES = 64
HLS_GRID = {"precision": ["ap_fixed<10,4>", "ap_fixed<16,6>"], "reuse_factor": [1, 4]}
RTL_GRID = ["pipeline=0,2", "O=0,1"]
C_GRID = ["word_bits=8,16,32,64"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"


def ray_cli(*args, env):
    subprocess.run([RAY, *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` and a second node joining it, stopped with `ray stop` at the end."""
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    try:
        ray_cli("start", "--head", f"--port={port}", "--include-dashboard=false",
                f"--dashboard-agent-listen-port={free_port()}", *common, env=env)
        ray_cli("start", f"--address=127.0.0.1:{port}", f"--dashboard-agent-listen-port={free_port()}", *common, env=env)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    glu = GLU(16, 32, 5, form="two_linear").eval()
    torch.jit.save(torch.jit.trace(glu, torch.randn(1, 16)), str(root / "glu.pt"))
    logic = logic_onnx(root / "logic.onnx", 20, random_layers(np.random.default_rng(2), 20, [80, 80, 40]), 4, 2.5)
    rng = np.random.default_rng(3)
    np.save(root / "bits.npy", rng.integers(0, 2, (100, 20)).astype(np.float32))
    np.save(root / "labels.npy", rng.integers(0, 4, 100))
    return {"glu": str(root / "glu.pt"), "logic": str(logic), "bits": root / "bits.npy",
            "labels": root / "labels.npy"}


def file_hashes(folder: Path) -> dict:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


def single_compile(model, target, row, grid_keys, tmp, data=None, labels=None, input_shapes=None):
    """What one gatec.compile with the row's options gives: its figures and its files."""
    point = {k: row[k] for k in grid_keys}
    options = {k: v for k, v in point.items() if k not in ("passes", "O")}
    passes = None if "passes" not in point else [p for p in point["passes"].split("+") if p not in ("", "none")]
    art = gatec.compile(model, target, tmp / row["key"], input_shapes=input_shapes, samples=SAMPLES, options=options,
                        data=data, opt_level=point.get("O", 1), passes_to_run=passes)
    return sweep_module.measure(art, data, labels), file_hashes(art.path)


@pytest.fixture(scope="module")
def swept(cluster, models, tmp_path_factory):
    """The three sweeps (hls4ml, Verilog, C firmware through the CLI) on the cluster."""
    out = tmp_path_factory.mktemp("sweeps")
    hls = gatec.sweep(models["glu"], target="fpga", grid=HLS_GRID, address=cluster, output=out / "hls",
                      input_shapes=[[1, 16]], samples=SAMPLES)
    rtl = gatec.sweep(models["logic"], target="fpga", grid=RTL_GRID, address=cluster, output=out / "rtl",
                      samples=SAMPLES)
    from gatec.cli import main
    code = main(["sweep", models["logic"], "--target", "c", "--grid", C_GRID[0], "--data", str(models["bits"]),
                 "--labels", str(models["labels"]), "--samples", str(SAMPLES), "--address", cluster,
                 "-o", str(out / "c")])
    assert code == 0
    c = json.loads((out / "c" / "results.json").read_text())["rows"]
    return out, {"hls": hls, "rtl": rtl, "c": c}


def test_every_row_equals_a_single_compile(swept, models, tmp_path):
    out, sweeps = swept
    assert sum(len(rows) for rows in sweeps.values()) == 12
    bits, labels = np.load(models["bits"]), np.load(models["labels"])
    cases = {"hls": (models["glu"], "fpga", list(HLS_GRID), {"input_shapes": [[1, 16]]}),
             "rtl": (models["logic"], "fpga", ["pipeline", "O"], {}),
             "c": (models["logic"], "c", ["word_bits"], {"data": [bits], "labels": labels})}
    for name, (model, target, keys, extra) in cases.items():
        for row in sweeps[name]:
            assert row["ok"], row
            figures, hashes = single_compile(model, target, row, keys, tmp_path / name, **extra)
            assert {k: row[k] for k in figures} == figures, (name, row)
            assert file_hashes(out / name / "points" / row["key"]) == hashes, (name, row)
    hls = sweeps["hls"]
    assert {r["dsp"] for r in hls} == {1216, 304} and all(r["latency_cycles"] > 0 for r in hls)
    assert all(r["luts"] > 0 for r in sweeps["rtl"]) and all(0 <= r["accuracy"] <= 1 for r in sweeps["c"])
    assert any(r["pareto"] for r in hls) and not all(r["pareto"] for r in hls)  # the coarse, same-DSP points lose


def test_outputs_of_a_sweep(swept):
    out, sweeps = swept
    folder = out / "hls"
    assert json.loads((folder / "sweep.json").read_text())["gatec_version"] == gatec.__version__
    header = (folder / "results.csv").read_text().splitlines()[0].split(",")
    assert {"precision", "reuse_factor", "accuracy", "dsp", "latency_cycles", "pareto", "compile_s"} <= set(header)
    for png in ("accuracy_vs_dsp.png", "latency_cycles_vs_dsp.png"):
        assert (folder / png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "rtl" / "accuracy_vs_luts.png").is_file()
    html = (folder / "report.html").read_text()
    assert "sortBy" in html and "data:image/png;base64," in html and not re.search(r"(src|href)=['\"]?https?:", html)


def test_a_rerun_recomputes_nothing(swept, cluster, models, monkeypatch):
    out, sweeps = swept
    computed = []
    real = sweep_module.run_on_ray

    def counted(missing, args, address):
        computed.extend(k for k, _ in missing)
        yield from real(missing, args, address)
    monkeypatch.setattr(sweep_module, "run_on_ray", counted)
    again = gatec.sweep(models["logic"], target="fpga", grid=RTL_GRID, address=cluster, output=out / "rtl",
                        samples=SAMPLES)
    assert computed == [] and again == sweeps["rtl"]
    # one point gone: only that one is compiled again
    gone = sweeps["rtl"][1]["key"]
    (out / "rtl" / "points" / f"{gone}.json").unlink()
    again = gatec.sweep(models["logic"], target="fpga", grid=RTL_GRID, address=cluster, output=out / "rtl",
                        samples=SAMPLES)
    assert computed == [gone]
    assert [{k: v for k, v in r.items() if k != "compile_s"} for r in again] == \
        [{k: v for k, v in r.items() if k != "compile_s"} for r in sweeps["rtl"]]


def ray_task_pids() -> list[int]:
    """Workers running a point: Ray titles a busy worker process `ray::<task>`."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in ps.splitlines() if line.split(None, 1)[1:2]
            and line.split(None, 1)[1].startswith("ray::run_point")]


def test_a_killed_worker_loses_no_point(swept, cluster, models, tmp_path):
    out, sweeps = swept
    killed = []

    def kill_one():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            pids = ray_task_pids()
            if pids:
                time.sleep(1.0)  # into the compile
                try:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                except ProcessLookupError:
                    continue
            time.sleep(0.1)
    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    rows = gatec.sweep(models["glu"], target="fpga", grid=HLS_GRID, address=cluster, output=tmp_path / "hls",
                       input_shapes=[[1, 16]], samples=SAMPLES)
    killer.join()
    assert killed, "no worker was running a point"
    strip = lambda rs: [{k: v for k, v in r.items() if k != "compile_s"} for r in rs]
    assert strip(rows) == strip(sweeps["hls"])
    for r in rows:
        assert file_hashes(tmp_path / "hls" / "points" / r["key"]) == file_hashes(out / "hls" / "points" / r["key"])


def test_a_failing_point_is_a_row_and_bad_grids_are_refused(cluster, models, tmp_path):
    rows = gatec.sweep(models["logic"], target="fpga", grid={"pipeline": [-1, 1]}, address=cluster,
                       output=tmp_path / "s", samples=SAMPLES)
    assert [r["ok"] for r in rows] == [False, True] and "pipeline" in rows[0]["error"]
    with pytest.raises(GatecError, match="not an option of target fpga"):
        gatec.sweep(models["logic"], target="fpga", grid=["word_bits=8"], output=tmp_path / "t")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(GatecError, match="gatec did not write"):
        gatec.sweep(models["logic"], target="fpga", grid=["pipeline=1"], output=tmp_path / "mine")
    assert sweep_module.split_values("ap_fixed<8,3>,ap_fixed<12,4>") == ["ap_fixed<8,3>", "ap_fixed<12,4>"]
    assert sweep_module.parse_grid("fpga", ["passes=simplify,simplify+abc"]) == \
        {"passes": [["simplify"], ["simplify", "abc"]]}


@pytest.mark.slow
def test_the_default_starts_ray_on_this_machine(models, tmp_path, cli, monkeypatch):
    """No --address and no RAY_ADDRESS: a new Ray instance here, one worker per core."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code, out, err = cli("sweep", models["logic"], "--target", "c", "--grid", "word_bits=8,64", "--samples", SAMPLES,
                         "-o", tmp_path / "local")
    assert code == 0, err
    rows = json.loads((tmp_path / "local" / "results.json").read_text())["rows"]
    assert [r["word_bits"] for r in rows] == [8, 64] and all(r["ok"] for r in rows)
    assert "2 points" in out
