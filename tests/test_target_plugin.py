"""A new target is one folder: a throwaway target written here, found the way gatec finds its
own (a package in a folder on gatec.targets.__path__), compiles, verifies, is listed by
`gatec targets` and brings its own option to `gatec compile --help`."""
import sys
import textwrap

import numpy as np
import pytest
import torch

import gatec
from gatec import targets

ECHO = textwrap.dedent('''
    """Target `echo`: the IR's ONNX graph as it is, run by ONNX Runtime, with a note beside it."""
    from pathlib import Path

    from gatec.ir.runtime import ort_session
    from gatec.targets import Option, Plan, Target, Tolerance


    class EchoTarget(Target):
        name = "echo"
        options = (Option("echo_note", "echo: a line written to note.txt beside the model", default="none"),)

        def describe(self):
            return "the IR as ONNX, run by ONNX Runtime (a target written by a test)"

        def plan(self, ir, options, data=None):
            return Plan(ir, options, ir.model)

        def build(self, plan, folder):
            (Path(folder) / "model.onnx").write_bytes(plan.parts.SerializeToString(deterministic=True))
            (Path(folder) / "note.txt").write_text(self.settings(plan.options)["echo_note"] + "\\n")
            return ["model.onnx", "note.txt"]

        def load(self, folder, options):
            session = ort_session(Path(folder) / "model.onnx")
            names = [i.name for i in session.get_inputs()]
            class Runner:
                def run(self, arrays):
                    return session.run(None, dict(zip(names, arrays)))
            return Runner()

        def tolerance(self, plan):
            return Tolerance(atol=1e-5, rtol=1e-5)


    TARGET = EchoTarget()
''')


@pytest.fixture
def echo_target(tmp_path, monkeypatch):
    folder = tmp_path / "more_targets" / "echo"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(ECHO)
    monkeypatch.setattr(targets, "__path__", [*targets.__path__, str(tmp_path / "more_targets")])
    yield "echo"
    sys.modules.pop("gatec.targets.echo", None)


@pytest.fixture
def mlp(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "mlp.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).eval(), path)
    return path


def test_a_target_in_its_own_folder_compiles_and_verifies(echo_target, mlp, tmp_path):
    art = gatec.compile(mlp, echo_target, tmp_path / "out", input_shapes=[[1, 6]], options={"echo_note": "hello"})
    assert art.manifest["target"] == "echo" and art.manifest["verification"]["ok"]
    assert (tmp_path / "out" / "note.txt").read_text() == "hello\n"
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    with torch.no_grad():
        want = torch.load(mlp, weights_only=False)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(gatec.Artifact.open(tmp_path / "out").run(x)[0], want, rtol=1e-5, atol=1e-5)


def test_the_cli_lists_the_target_and_takes_its_option(echo_target, mlp, tmp_path, cli, capsys):
    code, out, _ = cli("targets")
    assert code == 0 and any(line.split()[0] == "echo" for line in out.splitlines())
    with pytest.raises(SystemExit):
        cli("compile", "--help")
    help_text = capsys.readouterr().out
    assert "target echo options" in help_text and "--echo-note" in help_text
    code, out, err = cli("compile", mlp, "--input-shape", "1,6", "--target", "echo", "--echo-note", "from the cli",
                         "-o", tmp_path / "cli_out")
    assert code == 0, err
    assert (tmp_path / "cli_out" / "note.txt").read_text() == "from the cli\n"


def test_an_option_of_another_target_is_refused_by_name(echo_target, mlp, tmp_path, cli):
    code, _, err = cli("compile", mlp, "--input-shape", "1,6", "--target", "cpu", "--echo-note", "x",
                       "-o", tmp_path / "refused")
    assert code == 2 and "--echo-note is an option of target echo, not of target cpu" in err
    assert not (tmp_path / "refused").exists()
    with pytest.raises(gatec.GatecError, match="--word-bits is an option of target c, not of target echo"):
        gatec.compile(mlp, echo_target, tmp_path / "api", input_shapes=[[1, 6]], options={"word_bits": 8})
