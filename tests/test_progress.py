"""Progress: stages of long work on a terminal's stderr; nothing with --quiet or when stderr is
not a terminal."""
import os
import pty
import select
import subprocess
import sys

import pytest
import torch


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("progress") / "mlp.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval(), path)
    return path


def run_with_stderr_on_a_terminal(args, cwd) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "gatec", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(), b"".join(chunks).decode(errors="replace")


def test_stages_show_on_a_terminal(model, tmp_path):
    code, err = run_with_stderr_on_a_terminal(["compile", str(model), "--input-shape", "1,6", "-o", "out"], tmp_path)
    assert code == 0, err
    for stage in ("loading mlp.pt (torch.save)", "building the cpu artifact",
                  "verifying it against the model"):
        assert f"gatec: {stage} ..." in err and f"gatec: {stage}: done in" in err


def test_quiet_and_pipes_show_nothing(model, tmp_path):
    code, err = run_with_stderr_on_a_terminal(["compile", str(model), "--input-shape", "1,6", "-o", "out", "--quiet"],
                                              tmp_path)
    assert code == 0 and "gatec: " not in err
    proc = subprocess.run([sys.executable, "-m", "gatec", "compile", str(model), "--input-shape", "1,6", "-o", "out2"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
