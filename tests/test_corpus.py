"""The model corpus (tests/corpus.py) compiled by gatec: on `cpu` every case verifies against the
model; on `fpga` every case verifies (hls4ml's C simulation within the artifact's bound) or is
refused with one line, never verified wrong and never a traceback. The fpga cases outside the fast
part are marked slow: `python -m pytest -m slow tests/test_corpus.py` runs them, and
`python benchmarks/fpga_corpus.py` prints the whole table."""
from __future__ import annotations

import corpus
import pytest
from corpus import CASES, FAST, KINDS, SLOW


def compiled(name, target, folder):
    case = CASES[name]
    given, shapes = case.prepare(folder)
    return corpus.compile_case(case, target, given, shapes, folder)


def test_the_corpus_covers_every_kind():
    assert len(CASES) >= 95
    assert {k for c in CASES.values() for k in c.kinds} == set(KINDS)
    assert {"module", "exported", "onnx", "brevitas"} == {c.form for c in CASES.values()}


@pytest.mark.parametrize("name", list(CASES))
def test_cpu_verifies_every_case(name, tmp_path):
    result = compiled(name, "cpu", tmp_path)
    assert result["status"] == "verified", result


def check_fpga(name, folder):
    result = compiled(name, "fpga", folder)
    assert result["status"] in ("verified", "refused"), result  # never verified wrong
    if result["status"] == "refused":
        assert result["reason"] and "\n" not in result["reason"], result
    print(name, result)


@pytest.mark.parametrize("name", FAST)
def test_fpga_verifies_or_refuses_in_one_line(name, tmp_path):
    check_fpga(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_fpga_verifies_or_refuses_in_one_line_slow(name, tmp_path):
    check_fpga(name, tmp_path)
