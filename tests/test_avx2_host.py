"""The tests whose results depend on the CPU (gatec's engine built with -march=native, ONNX
Runtime's integer kernels, numpy's SIMD rounding in what gatec writes), run again on an x86 without
AVX-512: qemu-x86_64 emulating a Haswell (AVX2, no AVX-512, no VNNI), the compiler run under the
same emulation so that -march=native means that CPU. Slow (emulated): `make test-avx2`."""
import os
import platform
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# Files, or the single test of a file whose others exercise torch (the mixed-precision search: float
# tolerances on any CPU, and under the emulator 100-400x slower than natively, minutes a test)
CPU_DEPENDENT = ["test_c_target.py", "test_engine_host.py", "test_logic_forms.py", "test_quant_cpu.py",
                 "test_quantize.py::test_quant_form_option_writes_quantize_linear",
                 "test_release_fixtures.py", "test_flatten_logic.py", "test_ternary_plan.py"]
EMULATED_RUN_S = 1200


@pytest.mark.avx2
@pytest.mark.skipif(platform.machine() != "x86_64", reason="emulates an x86-64 CPU")
def test_cpu_dependent_tests_pass_on_an_avx2_only_x86(tmp_path):
    qemu, gcc = shutil.which("qemu-x86_64"), shutil.which("gcc")
    if qemu is None or gcc is None:
        pytest.skip("this machine has no qemu-x86_64 (Debian's qemu-user) or gcc; `make test-avx2` installs qemu-user")
    # the interpreter itself, not a launcher script; by the path this process runs it from where
    # that is a link to it, so that a virtual environment's interpreter keeps its packages
    with open(sys.executable, "rb") as f:
        python = sys.executable if f.read(4) == b"\x7fELF" else os.path.realpath(sys.executable)
    cc = tmp_path / "cc-haswell"
    cc.write_text(f"#!/bin/sh\nexec {qemu} -cpu Haswell {os.path.realpath(gcc)} \"$@\"\n")
    cc.chmod(0o755)
    # the guest runs on one core (below): one OpenMP thread for torch there, none spinning beside it
    # (GATEC_EMULATED: tests that fork a process running threads skip, as qemu-user can hang there)
    env = {**os.environ, "CC": str(cc), "GATEC_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "GATEC_EMULATED": "qemu-user"}
    probe = subprocess.run([qemu, "-cpu", "Haswell", python, "-c",
                            "import numpy._core._multiarray_umath as m; f = m.__cpu_features__; "
                            "print(f['AVX2'], f['AVX512F'], f['AVX512_ICL'])"],
                           capture_output=True, text=True, env=env)
    assert probe.stdout.split() == ["True", "False", "False"], probe.stdout + probe.stderr
    tests = Path(__file__).parent
    # one core: fewer guest threads, which qemu-user runs least reliably; a guest that the emulator
    # itself crashes (a fatal signal, not a failed test) gets one more run
    command = [qemu, "-cpu", "Haswell", python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not avx2",
               *[str(tests / t) for t in CPU_DEPENDENT]]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(min(os.sched_getaffinity(0))), *command]
    # a guest that forks while it runs threads can hang in the child (qemu-user's own locks): a run
    # past EMULATED_RUN_S (about 10 minutes take 20) is stopped, its process group with it, and run again
    for attempt in range(2):
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=tests.parent, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=EMULATED_RUN_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            out += f"\n(stopped after {EMULATED_RUN_S} s: the emulated guest hung)"
            continue
        out = "\n".join(l for l in out.splitlines() if "TCG doesn't support" not in l)
        if proc.returncode >= 0 and "Fatal Python error" not in out:
            break
    assert proc.returncode == 0, out[:3000] + "\n...\n" + out[-3000:]
    assert " passed" in out.splitlines()[-1]
