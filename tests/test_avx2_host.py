"""The tests whose results depend on the CPU (gatec's engine built with -march=native, ONNX
Runtime's integer kernels, numpy's SIMD rounding in what gatec writes), run again on an x86 without
AVX-512: qemu-x86_64 emulating a Haswell (AVX2, no AVX-512, no VNNI), the compiler run under the
same emulation so that -march=native means that CPU. Slow (emulated): `make test-avx2`."""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CPU_DEPENDENT = ["test_c_target.py", "test_engine_host.py", "test_logic_forms.py", "test_quant_cpu.py", "test_quantize.py",
                 "test_release_fixtures.py", "test_flatten_logic.py", "test_ternary_plan.py"]


@pytest.mark.avx2
@pytest.mark.skipif(platform.machine() != "x86_64", reason="emulates an x86-64 CPU")
def test_cpu_dependent_tests_pass_on_an_avx2_only_x86(tmp_path):
    qemu, gcc = shutil.which("qemu-x86_64"), shutil.which("gcc")
    if qemu is None or gcc is None:
        pytest.skip("this machine has no qemu-x86_64 (Debian's qemu-user) or gcc; `make test-avx2` installs qemu-user")
    python = os.path.realpath(sys.executable)  # the interpreter itself, not a launcher script
    cc = tmp_path / "cc-haswell"
    cc.write_text(f"#!/bin/sh\nexec {qemu} -cpu Haswell {os.path.realpath(gcc)} \"$@\"\n")
    cc.chmod(0o755)
    env = {**os.environ, "CC": str(cc), "GATEC_CACHE": str(tmp_path / "cache")}
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
    for attempt in range(2):
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tests.parent)
        out = "\n".join(l for l in (proc.stdout + proc.stderr).splitlines() if "TCG doesn't support" not in l)
        if proc.returncode >= 0 and "Fatal Python error" not in out:
            break
    assert proc.returncode == 0, out[:3000] + "\n...\n" + out[-3000:]
    assert " passed" in out.splitlines()[-1]
