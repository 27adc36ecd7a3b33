"""Fuzzing the front end and the compiler in-process: thousands of mutated ONNX files and
pickles through `gatec.compile` and the emulator. Only gatec's own error may escape, nothing is
written outside the output folder, and nothing a pickle names is ever run."""
import io
import os
import random
import zipfile

import onnx
import pytest
import torch

import gatec
from gatec.errors import GatecError

CASES = int(os.environ.get("GATEC_FUZZ_CASES", "2000"))
RAN = []  # a pickle's payload appends here if it ever runs


def payload():
    RAN.append(True)


class Sneaky:
    """Unpickling this calls tests.test_fuzz.payload: an allowlisting unpickler must refuse it."""

    def __reduce__(self):
        return (payload, ())


def seeds(folder):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).eval()
    onnx_path = folder / "seed.onnx"
    torch.onnx.export(model, (torch.zeros(1, 4),), str(onnx_path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    buf = io.BytesIO()
    torch.save(model, buf)
    sneaky = io.BytesIO()
    torch.save({"model": model, "extra": Sneaky()}, sneaky)
    return onnx_path.read_bytes(), buf.getvalue(), sneaky.getvalue()


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        kind = rng.random()
        i = rng.randrange(len(data))
        if kind < 0.4:
            data[i] ^= 1 << rng.randrange(8)
        elif kind < 0.6:
            data[i] = rng.choice([0, 0xFF, 0x7F, 0x80])
        elif kind < 0.75:
            del data[i:i + rng.randint(1, 16)]
        elif kind < 0.9:
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            data = data[:i]
        if not data:
            break
    return bytes(data)


def mutate_onnx(rng: random.Random, data: bytes) -> bytes:
    """Structural mutations that keep the file parseable: the cases a checker or runtime must catch."""
    m = onnx.load_from_string(data)
    g = m.graph
    kind = rng.randrange(8)
    if kind == 0 and g.node:
        g.node[rng.randrange(len(g.node))].op_type = rng.choice(["Gemm", "Foo", "LSTM", "Relu", "", "Reshape"])
    elif kind == 1 and g.initializer:
        t = g.initializer[rng.randrange(len(g.initializer))]
        t.dims[:] = [rng.choice([0, 1, 3, 7, 2 ** 31]) for _ in range(rng.randint(0, 3))]
    elif kind == 2 and g.node:
        n = g.node[rng.randrange(len(g.node))]
        if n.input:
            n.input[rng.randrange(len(n.input))] = rng.choice(["x", "nope", "", n.output[0]])
    elif kind == 3:
        dims = g.input[0].type.tensor_type.shape.dim
        if dims:
            dims[-1].Clear()
            dims[-1].dim_value = rng.choice([0, 1, 3, 9, 10 ** 9])
    elif kind == 4:
        m.opset_import[0].version = rng.choice([1, 6, 9, 13, 99])
    elif kind == 5 and g.node:
        del g.node[rng.randrange(len(g.node))]
    elif kind == 6:
        g.input[0].type.tensor_type.elem_type = rng.choice([0, 2, 7, 9, 11, 14, 16])
    else:
        m.ir_version = rng.choice([0, 1, 3, 12, 99])
    out = m.SerializeToString()
    return mutate_bytes(rng, out) if rng.random() < 0.3 else out


def mutate_zip(rng: random.Random, data: bytes) -> bytes:
    """A torch.save archive with one member's bytes mutated (the pickle or a tensor's storage)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    names = src.namelist()
    victim = rng.choice(names)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in names:
            blob = src.read(name)
            dst.writestr(name, mutate_bytes(rng, blob) if name == victim else blob)
    return out.getvalue()


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_mutated_models_give_gatec_errors_only(tmp_path, monkeypatch):
    onnx_seed, pickle_seed, sneaky_seed = seeds(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rng = random.Random(1234)
    outcomes = {"refused": 0, "compiled": 0}
    for case in range(CASES):
        pick = rng.random()
        if pick < 0.35:
            data, name = mutate_onnx(rng, onnx_seed), "m.onnx"
        elif pick < 0.55:
            data, name = mutate_bytes(rng, onnx_seed), "m.onnx"
        elif pick < 0.8:
            data, name = mutate_zip(rng, pickle_seed), "m.pt"
        elif pick < 0.9:
            data, name = mutate_zip(rng, sneaky_seed), "m.pt"
        else:
            data, name = mutate_bytes(rng, pickle_seed), "m.pt"
        model = work / name
        model.write_bytes(data)
        before = set(listing(work))
        try:
            gatec.compile(model, "cpu", work / "out", input_shapes=[[1, 4]], samples=4, passes_to_run=[])
            outcomes["compiled"] += 1
        except GatecError:
            outcomes["refused"] += 1
        except Exception as e:  # anything else is a bug: say which case makes it
            pytest.fail(f"case {case} ({name}): {type(e).__name__}: {e}")
        written = set(listing(work)) - before
        assert all(p == "out" or p.startswith("out/") for p in written), (case, written)
        assert not RAN, f"case {case}: a pickle ran code"
    assert outcomes["refused"] > CASES // 4 and outcomes["compiled"] > 0, outcomes
