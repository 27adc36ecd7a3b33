"""One GRU->LSTM model saved in every format gatec reads; each loads, compiles to `cpu`, verifies,
and agrees with PyTorch at a second batch size and sequence length where the format allows one."""
import dataclasses
import importlib.util
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch

import gatec
from gatec import frontend
from gatec.errors import GatecError
from gatec.nn import SwiGLU

D, HIDDEN, CLASSES = 8, 12, 5
EXAMPLE = [2, 10, D]
CHECKS = [(3, 50), (17, 23)]  # (batch, sequence length)

MODEL_FILE = '''
import torch
from torch import nn


class GRUThenLSTM(nn.Module):
    def __init__(self, d, hidden, classes):
        super().__init__()
        self.gru = nn.GRU(d, hidden, batch_first=True)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        y, _ = self.gru(x)
        y, _ = self.lstm(y)
        return self.head(y[:, -1])
'''


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{format: path} for one model, plus the live module and the file defining its class."""
    folder = tmp_path_factory.mktemp("formats")
    source = folder / "formats_seq_model.py"
    source.write_text(MODEL_FILE)
    spec = importlib.util.spec_from_file_location("formats_seq_model", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["formats_seq_model"] = module
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.GRUThenLSTM(D, HIDDEN, CLASSES).eval()
    x = torch.randn(*EXAMPLE)
    paths = {name: folder / file for name, file in [("script", "script.pt"), ("trace", "trace.pt"),
                                                     ("pickle", "pickle.pt"), ("export", "program.pt2"),
                                                     ("onnx", "model.onnx")]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(model), paths["script"])
        torch.jit.save(torch.jit.trace(model, x), paths["trace"])
        torch.save(model, paths["pickle"])
        program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, paths["export"])
        torch.onnx.export(model, (x,), paths["onnx"], dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 1: "time"}})
    return {"paths": paths, "model": model, "source": source}


def random_input(batch, t, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, t, D)).astype(np.float32)


def torch_output(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def checked_shapes(art):
    return [s[0] for o in art.manifest["verification"]["outputs"] for s in o["shapes"]]


@pytest.mark.parametrize("fmt, recorded", [("script", "torchscript"), ("trace", "torchscript"),
                                           ("pickle", "pickle"), ("onnx", "onnx")])
def test_format_loads_verifies_and_generalises(saved, fmt, recorded):
    imports = [str(saved["source"])] if fmt == "pickle" else []
    art = gatec.compile(saved["paths"][fmt], "cpu", input_shapes=[EXAMPLE], imports=imports, samples=64)
    assert art.manifest["source"]["format"] == recorded
    assert art.manifest["verification"]["ok"]
    assert art.manifest["inputs"][0]["dynamic_axes"] == [0, 1]
    assert len({s[1] for s in checked_shapes(art)}) == 2  # verified at two sequence lengths
    for seed, (batch, t) in enumerate(CHECKS):
        x = random_input(batch, t, seed)
        assert np.abs(art.run([x])[0] - torch_output(saved["model"], x)).max() <= 1e-4


def test_onnx_reference_is_onnx_runtime_on_the_original_file(saved):
    import onnxruntime as ort
    source = gatec.load(saved["paths"]["onnx"], [EXAMPLE])
    session = ort.InferenceSession(str(saved["paths"]["onnx"]), providers=["CPUExecutionProvider"])
    x = random_input(5, 7)
    assert np.array_equal(source.reference([x])[0], session.run(None, {"x": x})[0])
    assert source.module is None


def test_export_program_reports_the_length_it_fixed(saved):
    # torch.export specialises a GRU's sequence length: only the batch Dim stays dynamic
    art = gatec.compile(saved["paths"]["export"], "cpu", input_shapes=[EXAMPLE], samples=64)
    assert art.manifest["source"]["format"] == "export"
    assert art.manifest["verification"]["ok"]
    assert art.manifest["inputs"][0]["dynamic_axes"] == [0]
    shapes = checked_shapes(art)
    assert {s[1] for s in shapes} == {EXAMPLE[1]}  # no second length claimed
    assert len({s[0] for s in shapes}) == 2  # but two batch sizes
    for seed, batch in enumerate((3, 17)):
        x = random_input(batch, EXAMPLE[1], seed)
        assert np.abs(art.run([x])[0] - torch_output(saved["model"], x)).max() <= 1e-4
    with pytest.raises(Exception):
        art.run([random_input(3, EXAMPLE[1] + 1)])


def test_export_program_shapes_come_from_its_example_inputs(saved):
    source = gatec.load(saved["paths"]["export"])
    assert source.ir.inputs[0].shape == EXAMPLE


def test_export_program_with_dynamic_length(tmp_path):
    torch.manual_seed(0)
    model = SwiGLU(D, 16, form="chunk").eval()
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("time")}
    program = torch.export.export(model, (torch.randn(*EXAMPLE),), dynamic_shapes=(dims,))
    torch.export.save(program, tmp_path / "swiglu.pt2")
    art = gatec.compile(tmp_path / "swiglu.pt2", "cpu", input_shapes=[EXAMPLE], samples=64)
    assert art.manifest["verification"]["ok"]
    assert art.manifest["inputs"][0]["dynamic_axes"] == [0, 1]
    for seed, (batch, t) in enumerate(CHECKS):
        x = random_input(batch, t, seed)
        assert np.abs(art.run([x])[0] - torch_output(model, x)).max() <= 1e-4


def test_pickled_module_needs_the_file_that_defines_it(saved):
    with pytest.raises(GatecError, match="--import"):
        gatec.load(saved["paths"]["pickle"], [EXAMPLE])


def test_traced_onnx_records_dynamic_axes(saved):
    art = gatec.compile(saved["paths"]["script"], "cpu", input_shapes=[EXAMPLE], verify=False)
    dims = onnx.load(art.path / "model.onnx").graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField("dim_value") for d in dims] == [False, False, True]
    assert dims[2].dim_value == D


def test_export_program_refuses_a_length_it_fixed(saved):
    with pytest.raises(GatecError, match="does not fit the program"):
        gatec.load(saved["paths"]["export"], [[2, EXAMPLE[1] + 5, D]])


def test_onnx_file_that_baked_its_length_gets_that_axis_fixed(tmp_path):
    """A graph that declares its time axis dynamic but reshapes to a constant length (as torch's
    dynamo exporter did to a GRU->LSTM model) runs only at that length: the axis is reported fixed."""
    from onnx import TensorProto, helper, numpy_helper
    steps = 6
    weight = np.random.default_rng(0).standard_normal((steps * D, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "baked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.array([-1, steps * D], np.int64), "flat_shape"), numpy_helper.from_array(weight, "w")])
    path = tmp_path / "baked.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    art = gatec.compile(path, "cpu", input_shapes=[[2, steps, D]], samples=64)
    assert art.manifest["inputs"][0]["dynamic_axes"] == [0]
    assert art.manifest["verification"]["ok"]
    x = random_input(5, steps)
    assert np.abs(art.run([x])[0] - x.reshape(5, -1) @ weight).max() <= 1e-4
    assert onnx.load(path).graph.input[0].type.tensor_type.shape.dim[1].dim_param == "time"  # file untouched


def test_load_goes_through_the_format_table(saved, monkeypatch, tmp_path):
    """Each format is one module of gatec.frontend and one row of its table: load() calls the loader
    of the row that detects the file, and a file no row detects is refused naming every row."""
    modules = {name: (fmt.detect.__module__, fmt.load.__module__) for name, fmt in frontend.FORMATS.items()}
    assert modules == {name: (f"gatec.frontend.{m}",) * 2 for name, m in [
        ("torchscript", "torchscript"), ("pickle", "pickled"), ("export", "exported"), ("onnx", "onnx_file")]}
    for name, fmt in frontend.FORMATS.items():
        stub = dataclasses.replace(fmt, load=lambda *args, name=name: name)
        monkeypatch.setitem(frontend.FORMATS, name, stub)
    for file, name in [("script", "torchscript"), ("trace", "torchscript"), ("pickle", "pickle"),
                       ("export", "export"), ("onnx", "onnx")]:
        assert frontend.load(saved["paths"][file]) == name

    unknown = tmp_path / "model.xyz"
    unknown.write_bytes(b"\x00garbage" * 20)
    with pytest.raises(GatecError, match=r"\(expected TorchScript or torch\.save \.pt, torch\.export \.pt2, "
                                         r"or ONNX \.onnx\)"):
        frontend.load(unknown)
    never = frontend.Format("Keras", ".keras", lambda file: None, lambda *args: None)
    monkeypatch.setitem(frontend.FORMATS, "keras", never)
    with pytest.raises(GatecError, match=r"torch\.export \.pt2, ONNX \.onnx, or Keras \.keras\)"):
        frontend.load(unknown)


@pytest.mark.parametrize("domain", ["qonnx.custom_op.general", "finn.custom_op.general"])
def test_qonnx_files_from_qonnx_and_finn_tools_are_repaired_and_compile(tmp_path, domain):
    """qonnx's and FINN's tools write IR version 3 and no opset import for their own domain;
    onnx.checker refuses such files, their own loaders take them, and so does gatec."""
    from onnx import TensorProto, helper, numpy_helper
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32(0.125), "s"),
             numpy_helper.from_array(np.float32(0), "z"), numpy_helper.from_array(np.float32(8), "b")]
    nodes = [helper.make_node("Quant", ["x", "s", "z", "b"], ["xq"], domain=domain, signed=1, narrow=0,
                              rounding_mode="ROUND"), helper.make_node("MatMul", ["xq", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 3
    path = tmp_path / "finn_style.onnx"
    onnx.save(model, path)
    with pytest.raises(Exception):
        onnx.checker.check_model(onnx.load(path))  # what refused it before
    source = gatec.load(path)
    assert source.ir.source["repaired"] == [f"opset import for {domain}", "IR version 3 -> 7"]
    x = np.random.default_rng(1).standard_normal((9, 4)).astype(np.float32)
    want = (np.clip(np.round(x / 0.125), -128, 127) * 0.125) @ w
    np.testing.assert_allclose(source.reference([x])[0], want, rtol=1e-6, atol=1e-6)
    art = gatec.compile(path, "cpu", tmp_path / "cpu")
    assert art.manifest["verification"]["ok"]
    np.testing.assert_allclose(art.run(x)[0], want, rtol=1e-5, atol=1e-5)


def test_a_damaged_onnx_file_is_still_refused_after_the_repairs(tmp_path):
    from onnx import TensorProto, helper
    node = helper.make_node("MatMul", ["x", "missing"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 3
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    with pytest.raises(gatec.GatecError, match="corrupt or invalid ONNX file"):
        gatec.load(path)
