"""What gatec's outputs may replace (gatec/output.py): only what gatec wrote or an empty folder,
unless --force; never the model's folder or the current one; nothing left behind after a
refusal, a failure, SIGTERM or two compiles racing; permissions from the umask."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHAPE = ("--input-shape", "1,8")
ORT_SESSION_FILE = ".ses"  # onnxruntime writes it in the temporary folder when it is imported, not gatec


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "mlp.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)), path)
    return path


@pytest.fixture
def compile_cli(cli, model):
    def run(output, *more, path=None):
        return cli("compile", path or model, *SHAPE, "--samples", "16", "-o", output, *more)
    return run


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def assert_refused(code, err, *words):
    assert code == 2 and err.startswith("gatec: error: ") and err.count("\n") == 1, (code, err)
    for w in words:
        assert str(w) in err, (w, err)


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def test_output_at_a_plain_file_is_refused(compile_cli, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert_refused(*compile_cli(tmp_path / "notes.txt")[::2], "notes.txt", "not a folder")
    assert_refused(*compile_cli(tmp_path / "notes.txt", "--force")[::2], "not a folder")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"


def test_output_at_a_users_folder_is_refused(compile_cli, tmp_path):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    before = tree(mine)
    assert_refused(*compile_cli(mine)[::2], "mine", "--force")
    assert tree(mine) == before and sorted(os.listdir(tmp_path)) == ["mine"]


def test_output_at_the_models_folder_is_refused_even_with_force(compile_cli, model, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(model, models / "mlp.pt")
    for more in ((), ("--force",)):
        assert_refused(*compile_cli(models, *more, path=models / "mlp.pt")[::2], "holds the model")
    assert sorted(os.listdir(models)) == ["mlp.pt"] and sorted(os.listdir(tmp_path)) == ["models"]


def test_output_at_the_current_folder_is_refused(compile_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    for output, more in ((".", ()), (".", ("--force",)), ("..", ("--force",))):
        assert_refused(*compile_cli(output, *more)[::2], "current folder")
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]  # no ..lock, no ..xxxx, no ..old.xxxx


def test_output_at_an_empty_folder_is_allowed(compile_cli, tmp_path, umask_022):
    (tmp_path / "empty").mkdir(mode=0o700)
    code, out, err = compile_cli(tmp_path / "empty")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "empty")) == ["manifest.json", "model.onnx", "verification.png"]
    assert (tmp_path / "empty").stat().st_mode & 0o777 == 0o755  # the new folder's, from the umask
    assert sorted(os.listdir(tmp_path)) == ["empty"]


def test_output_at_an_earlier_artifact_replaces_it(compile_cli, tmp_path, umask_022):
    art = tmp_path / "art"
    assert compile_cli(art)[0] == 0
    (art / "stale.txt").write_text("from an earlier build")
    code, out, err = compile_cli(art)
    assert code == 0, err
    assert sorted(os.listdir(art)) == ["manifest.json", "model.onnx", "verification.png"]
    assert art.stat().st_mode & 0o777 == 0o755 and sorted(os.listdir(tmp_path)) == ["art"]


def test_force_replaces_a_users_folder_but_not_a_parent_of_the_model(compile_cli, model, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "old.txt").write_text("mine, but replace it")
    code, out, err = compile_cli(mine, "--force")
    assert code == 0, err
    assert sorted(os.listdir(mine)) == ["manifest.json", "model.onnx", "verification.png"]
    nested = tmp_path / "project" / "models"
    nested.mkdir(parents=True)
    shutil.copy(model, nested / "mlp.pt")
    assert_refused(*compile_cli(tmp_path / "project", "--force", path=nested / "mlp.pt")[::2], "holds the model")
    assert sorted(os.listdir(nested)) == ["mlp.pt"] and sorted(os.listdir(tmp_path)) == ["mine", "project"]


def test_quantize_does_not_overwrite_a_users_file(cli, model, tmp_path):
    out = tmp_path / "q.onnx"
    out.write_bytes(b"my own onnx")
    quantize = ("quantize", model, *SHAPE, "-o", out)
    assert_refused(*cli(*quantize)[::2], "q.onnx", "gatec did not write it")
    (tmp_path / "r.png").write_bytes(b"my picture")  # where the plot beside r.json would go
    assert_refused(*cli("quantize", model, *SHAPE, "-o", tmp_path / "r.onnx")[::2], "r.png")
    assert out.read_bytes() == b"my own onnx" and (tmp_path / "r.png").read_bytes() == b"my picture"
    assert sorted(os.listdir(tmp_path)) == ["q.onnx", "r.png"]
    code, _, err = cli(*quantize, "--force")
    assert code == 0, err
    assert json.loads((tmp_path / "q.json").read_text())["gatec_version"]
    code, _, err = cli(*quantize)  # its own files, again: replaced without --force
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == ["q.json", "q.onnx", "q.png", "r.png"]


def test_json_reports_do_not_overwrite_a_users_file(cli, model, tmp_path):
    mine = tmp_path / "data.json"
    mine.write_text('{"my": "data"}')
    for command in (("verify", model, *SHAPE, "--samples", "16"), ("inspect", model, *SHAPE)):
        assert_refused(*cli(*command, "--json", mine)[::2], "data.json", "gatec did not write it")
        assert mine.read_text() == '{"my": "data"}'
        report = tmp_path / f"{command[0]}.json"
        for _ in range(2):  # a report of gatec's is replaced by the next run
            code, _, err = cli(*command, "--json", report)
            assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == ["data.json", "inspect.json", "verify.json", "verify.png"]


def test_output_whose_parent_is_a_file(cli, compile_cli, model, tmp_path):
    (tmp_path / "file").write_text("mine")
    assert_refused(*compile_cli(tmp_path / "file" / "out")[::2], "is not a folder")
    assert_refused(*cli("inspect", model, *SHAPE, "--json", tmp_path / "file" / "i.json")[::2], "is not a folder")
    assert sorted(os.listdir(tmp_path)) == ["file"]


@contextlib.contextmanager
def read_only(folder: Path):
    """The folder unwritable; for root (whom permissions do not stop) with the immutable flag."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", folder], capture_output=True).returncode:
        pytest.skip("running as root where the immutable flag cannot be set: nothing is read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", folder], check=True)


def test_read_only_output_folder(compile_cli, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):  # the output's parent
        assert_refused(*compile_cli(locked / "art")[::2], "locked")
    assert os.listdir(locked) == []
    art = tmp_path / "art"
    assert compile_cli(art)[0] == 0
    before = tree(art)
    with read_only(art):  # an earlier artifact that cannot be moved away
        assert_refused(*compile_cli(art)[::2], "cannot replace")
    assert tree(art) == before and sorted(os.listdir(tmp_path)) == ["art", "locked"]


# `gatec compile` whose build (the cpu target's, then this) makes a temporary folder the way yosys and
# the simulators do, logs its start and end, and waits GATEC_TEST_WAIT seconds or until two builds started
SLOW_COMPILE = """
import os, sys, tempfile, time
from gatec import targets
from gatec.cli import main
target = targets.get("cpu")
build, log = target.build, os.environ["GATEC_TEST_LOG"]
def slow_build(plan, folder):
    files = build(plan, folder)
    tempfile.mkdtemp(prefix="gatec-test-")
    with open(log, "a") as f:
        f.write("start\\n")
    print("building", flush=True)
    deadline = time.time() + float(os.environ["GATEC_TEST_WAIT"])
    while time.time() < deadline and open(log).read().count("start") < 2:
        time.sleep(0.05)
    with open(log, "a") as f:
        f.write("end\\n")
    return files
target.build = slow_build
sys.exit(main(sys.argv[1:]))
"""


def slow_compile(model, output, tmp_path, wait):
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "GATEC_TEST_LOG": str(tmp_path / "log"),
           "GATEC_TEST_WAIT": str(wait), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", SLOW_COMPILE, "compile", str(model), *SHAPE, "--samples", "16",
                             "-o", str(output)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigterm_mid_build_leaves_nothing_behind(model, tmp_path):
    proc = slow_compile(model, tmp_path / "art", tmp_path, wait=120)
    for line in proc.stdout:
        if line.strip() == "building":
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert sorted(os.listdir(tmp_path)) == ["log", "tmp"]  # no art, no .art.xxxx, no .art.lock
    assert set(os.listdir(tmp_path / "tmp")) <= {ORT_SESSION_FILE}  # the build's temporary folder went with it


def test_concurrent_compiles_to_one_output(model, tmp_path):
    import gatec
    procs = [slow_compile(model, tmp_path / "art", tmp_path, wait=3) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert (tmp_path / "log").read_text() == "start\nend\n" * 2  # they took turns
    assert sorted(os.listdir(tmp_path)) == ["art", "log", "tmp"]
    assert set(os.listdir(tmp_path / "tmp")) <= {ORT_SESSION_FILE}
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    assert gatec.Artifact.open(tmp_path / "art").run(x)[0].shape == (3, 4)


def test_umask_gives_0755_folders_and_0644_files(cli, compile_cli, model, tmp_path, umask_022):
    code, _, err = compile_cli(tmp_path / "build" / "art")
    assert code == 0, err
    code, _, err = cli("quantize", model, *SHAPE, "-o", tmp_path / "q.onnx")
    assert code == 0, err
    for folder in (tmp_path / "build", tmp_path / "build" / "art"):
        assert folder.stat().st_mode & 0o777 == 0o755, folder
    files = [*(tmp_path / "build" / "art").iterdir(), *(tmp_path / p for p in ("q.onnx", "q.json", "q.png"))]
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: 0o644 for p in files}
