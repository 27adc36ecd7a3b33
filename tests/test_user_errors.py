"""A user's mistakes end in one line on stderr and exit 2 (Ctrl-C: 130), never in a traceback;
models with a per-input batch axis (a GRU's initial state) and the forms --import takes."""
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def assert_one_line_error(code, err, *words):
    assert code == 2
    assert err.startswith("gatec: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture
def mlp(tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3)), path)
    return path


def test_an_absurd_input_shape_is_refused_before_allocating(cli, mlp, tmp_path):
    code, _, err = cli("compile", mlp, "--input-shape", "1,99999999999", "-o", tmp_path / "out")
    assert_one_line_error(code, err, "input shape 1x99999999999", "too large")


@pytest.mark.parametrize("command,flag,value", [("compile", "--samples", "-5"), ("compile", "--samples", "0"),
                                                ("verify", "--samples", "-5"), ("quantize", "--percentile", "200"),
                                                ("quantize", "--percentile", "0"), ("compile", "--threads", "-1"),
                                                ("bench", "--threads", "-1")])
def test_bad_numbers_are_refused_while_parsing(cli, capsys, mlp, command, flag, value):
    with pytest.raises(SystemExit) as exc:  # argparse's refusal: usage, then one error line
        cli(command, mlp, "--input-shape", "1,4", flag, value)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"gatec {command}: error: argument {flag}: "), err


def test_a_pt2_with_junk_members_gives_one_line(tmp_path):
    path = tmp_path / "bad.pt2"
    with zipfile.ZipFile(path, "w") as z:  # a .pt2 layout whose members are junk
        for member in ("archive_format", "version", "models/model.json", "data/weights/model_weights_config.json"):
            z.writestr(f"bad/{member}", "junk")
    # a subprocess: torch's log handlers write to the stderr that was there when torch was imported
    proc = subprocess.run([sys.executable, "-m", "gatec", "inspect", str(path), "--input-shape", "1,4"],
                          capture_output=True, text=True, cwd=REPO)
    assert_one_line_error(proc.returncode, proc.stderr, str(path), "corrupt torch.export archive", "junk")


def test_a_model_over_two_gib_is_refused_by_its_cause(cli, mlp, monkeypatch):
    import gatec.frontend.trace as trace
    monkeypatch.setattr(trace, "PROTOBUF_LIMIT", 16)  # a real 2 GiB model takes too long to build
    code, _, err = cli("inspect", mlp, "--input-shape", "1,4")
    assert_one_line_error(code, err, "too large", "weights take", "2 GiB")
    monkeypatch.undo()

    def export(*args, **kwargs):  # what torch's exporter raises when the graph it serialized is over 2 GiB
        raise RuntimeError("The serialized model is larger than the 2GiB limit imposed by the protobuf library. \n"
                           "Therefore the output file must be a file path, so that the ONNX external data can \n"
                           "be written to the same directory. Please specify the output file name.")
    monkeypatch.setattr(torch.onnx, "export", export)
    code, _, err = cli("inspect", mlp, "--input-shape", "1,4")
    assert_one_line_error(code, err, "too large", "2 GiB")
    assert "file name" not in err


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches /proc/PID/maps")
@pytest.mark.parametrize("library", ["onnxruntime", "libtorch"])  # imported by the parser / by the command
def test_ctrl_c_while_importing_exits_130_quietly(mlp, tmp_path, library):
    proc = subprocess.Popen([sys.executable, "-m", "gatec", "compile", str(mlp), "--input-shape", "1,4", "-o",
                             str(tmp_path / "out")], stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.time() + 60
    while library not in Path(f"/proc/{proc.pid}/maps").read_text() and time.time() < deadline:
        time.sleep(0.002)  # Ctrl-C once the library is being loaded
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "Traceback" not in err, err


class GruWithState(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(4, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x, h0):
        y, _ = self.gru(x, h0)
        return self.head(y[:, -1])


def test_a_gru_whose_initial_state_is_an_input(cli, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "gru_h0.pt"
    torch.jit.save(torch.jit.script(GruWithState()), str(path))
    shapes = ("--input-shape", "1,5,4", "--input-shape", "1,1,8")  # h0: (layers, batch, hidden)
    code, out, err = cli("compile", path, *shapes, "-o", tmp_path / "art", "--samples", "16")
    assert code == 0 and "PASS" in out, err
    code, out, err = cli("verify", path, *shapes, "--samples", "7")
    assert code == 0 and "verification passed" in out, err
    assert "7x5x4 + 1x7x8" in out  # the batch is on axis 1 of h0


@pytest.fixture
def difflogic_tree(tmp_path):
    """difflogic's source layout (a package whose module imports relatively) in tmp_path, and a
    model pickled with its classes; the package is forgotten again, so gatec imports it anew."""
    text = (REPO / "tests" / "difflogic_standin.py").read_text()
    head, rest = text.split("class LogicLayer", 1)
    package = tmp_path / "src" / "difflogic"
    package.mkdir(parents=True)
    (package / "functional.py").write_text(head)
    (package / "difflogic.py").write_text("import torch\n\nfrom .functional import bin_op\n\n\nclass LogicLayer" + rest)
    (package / "__init__.py").write_text("from .difflogic import GroupSum, LogicLayer  # noqa: F401\n")
    saved_path = sys.path[:]

    def forget():
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if n == "difflogic" or n.startswith("difflogic.")]:
            del sys.modules[name]
    sys.path.insert(0, str(package.parent))
    from difflogic.difflogic import GroupSum, LogicLayer
    torch.manual_seed(0)
    model = tmp_path / "model.pt"
    torch.save(torch.nn.Sequential(LogicLayer(8, 16), GroupSum(2)).eval(), model)
    forget()
    yield package, model
    forget()


@pytest.mark.parametrize("form", ["file in the package", "package folder", "dotted name"])
def test_import_forms(cli, difflogic_tree, form):
    package, model = difflogic_tree
    spec = {"file in the package": package / "difflogic.py", "package folder": package,
            "dotted name": "difflogic.difflogic"}[form]
    if form == "dotted name":
        sys.path.insert(0, str(package.parent))  # what PYTHONPATH does (the fixture restores sys.path)
    code, out, err = cli("inspect", model, "--input-shape", "1,8", "--import", spec)
    assert code == 0 and "16 gates" in out, err


def test_import_of_a_missing_path(cli, difflogic_tree):
    package, model = difflogic_tree
    code, _, err = cli("inspect", model, "--input-shape", "1,8", "--import", package.parent / "nope")
    assert_one_line_error(code, err, "--import", "nope", "no such file")


@pytest.mark.parametrize("error,words", [(PermissionError(13, "Permission denied", "/ro/out.json"),
                                          ["/ro/out.json: Permission denied"]),
                                         (MemoryError("Unable to allocate 745. GiB"), ["out of memory", "745"])])
def test_last_resort_errors_are_one_line(cli, monkeypatch, error, words):
    import gatec.cli

    def fail(args):
        raise error
    monkeypatch.setattr(gatec.cli, "cmd_inspect", fail)
    code, _, err = cli("inspect", "model.pt")
    assert_one_line_error(code, err, *words)


def test_a_bug_keeps_its_traceback(cli, monkeypatch):
    import gatec.cli

    def bug(args):
        raise ValueError("a bug in gatec")
    monkeypatch.setattr(gatec.cli, "cmd_inspect", bug)
    with pytest.raises(ValueError, match="a bug in gatec"):
        cli("inspect", "model.pt")
