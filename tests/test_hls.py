"""Target fpga for arithmetic networks: gatec's IR -> hls4ml project -> hls4ml's C simulation
(compiled with g++), compared with PyTorch, ONNX Runtime or qonnx on the same inputs."""
from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import gatec
import hls_models
from gatec import frontend
from gatec.errors import GatecError
from gatec.nn import GLU, GatedConv1d, GatedConv2d, GatedMultimodalUnit, RecurrentClassifier
from gatec.targets import _hls4ml as hls
from gatec.targets.fpga import TARGET as fpga

SAMPLES = 1000


class GatedConvLastStep(torch.nn.Module):
    """GatedConv1d (two convolutions) -> the last position -> Linear."""

    def __init__(self):
        super().__init__()
        self.gated, self.head = GatedConv1d(4, 8, 3), torch.nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.gated(x)[:, :, -1])


class GatedConvChunkFlatten(torch.nn.Module):
    """One convolution to twice the channels + batch norm, split in two halves (a * sigmoid(b)),
    flattened in PyTorch's channels-first order -> Linear."""

    def __init__(self, length=10):
        super().__init__()
        self.conv, self.bn = torch.nn.Conv1d(4, 16, 3, padding=1), torch.nn.BatchNorm1d(16)
        self.head = torch.nn.Linear(8 * length, 5)
        with torch.no_grad():
            self.bn.running_mean.normal_(0, 0.3)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        a, b = torch.chunk(self.bn(self.conv(x)), 2, dim=1)
        return self.head((a * torch.sigmoid(b)).flatten(1))


def gated_model(name: str):
    torch.manual_seed(0)
    if name in ("gru", "gru_seq5"):
        return RecurrentClassifier(16, 32, 5, cell="gru").eval(), [[1, 8, 16]]
    if name == "lstm":
        return RecurrentClassifier(16, 32, 5, cell="lstm").eval(), [[1, 8, 16]]
    if name == "glu_chunk":
        return GLU(16, 32, 5, form="chunk").eval(), [[1, 16]]
    if name == "glu_two_linear":
        return GLU(16, 32, 5, form="two_linear").eval(), [[1, 16]]
    if name == "gated_conv1d_last":
        return GatedConvLastStep().eval(), [[1, 4, 10]]
    if name == "gated_conv1d_chunk_flatten":
        return GatedConvChunkFlatten().eval(), [[1, 4, 10]]
    if name == "gated_conv2d_pool":
        return GatedConv2d(3, 8, 5).eval(), [[1, 3, 6, 6]]
    raise KeyError(name)


def inputs_for(ir, seed=0, scale=1.0, seq=None):
    """SAMPLES inputs (for a fixed batch: that many samples, fed to the reference in batches)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in ir.inputs:
        shape = list(spec.shape)
        shape[spec.batch_axis] = SAMPLES
        if seq is not None:
            shape[1] = seq
        arrays.append((scale * rng.standard_normal(shape)).astype(np.float32))
    return arrays


def reference(source, x):
    spec = source.ir.inputs[0]
    if spec.batch_axis in spec.dynamic:
        return source.reference(x)
    step = spec.shape[spec.batch_axis]  # a fixed batch: the reference takes that many at a time
    parts = [source.reference([a[i:i + step] for a in x]) for i in range(0, SAMPLES, step)]
    return [np.concatenate(outs) for outs in zip(*parts)]


def logic_reference(ir, x):
    """gatec.ir.logic's evaluator for the logic part, numpy for the Gemm after it."""
    from gatec.ir.logic import eval_bits, group_sum, group_sum_of, layer_of
    nodes = {n.name: n for n in ir.model.graph.node}
    bits = eval_bits([layer_of(nodes["logic1"]), layer_of(nodes["logic2"])], x[0] != 0)
    scores = group_sum(bits, *group_sum_of(nodes["groupsum"]))
    w, b = (onnx.numpy_helper.to_array(i) for i in ir.model.graph.initializer)
    return [scores, scores @ w + b]


class Case:
    """One model: built here (hls4ml writes the project), then compiled and simulated (g++ and
    the C simulation, in a worker thread: the compiles are most of the time)."""

    def __init__(self, source, folder: Path, scale=1.0, seq=None, bits=False):
        self.source, self.folder = source, folder
        self.x = inputs_for(source.ir, scale=scale, seq=seq)
        if bits:
            self.x = [(a > 0).astype(np.float32) for a in self.x]
        start = time.perf_counter()
        plan = fpga.plan(source.ir, {})
        fpga.build(plan, folder)
        self.build_seconds = time.perf_counter() - start
        self.want = [np.asarray(r) for r in (logic_reference(source.ir, self.x) if bits else reference(source, self.x))]
        self.tolerance = fpga.tolerance(plan).atol

    def simulate(self):
        start = time.perf_counter()
        self.got = fpga.load(self.folder, {}).run(self.x)
        self.seconds = self.build_seconds + time.perf_counter() - start
        return self

    def err(self, i=0) -> float:
        assert self.got[i].shape == self.want[i].shape
        return float(np.abs(self.got[i].astype(np.float64) - self.want[i]).max())

    def agree(self, i=0) -> float:
        return float((self.got[i].argmax(-1) == self.want[i].argmax(-1)).mean())


def onnx_source(folder: Path, model: onnx.ModelProto):
    path = folder / f"{model.graph.name}.onnx"
    onnx.save(model, str(path))
    return frontend.load(str(path))


CONV_MODELS = ("gated_conv1d_last", "gated_conv1d_chunk_flatten", "gated_conv2d_pool")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Every model of this file built, then compiled and simulated two at a time."""
    root = tmp_path_factory.mktemp("hls")
    built = {}
    for name in ("gru", "lstm", "glu_chunk", *CONV_MODELS):
        model, shapes = gated_model(name)
        built[name] = Case(frontend.load(model, shapes), root / name)
    model, shapes = gated_model("gru")
    # the runner at another sequence length than the project's: the same conversion, compiled apart
    built["gru_seq5"] = Case(frontend.load(model, shapes), root / "gru_seq5", seq=5)
    built["exporter_mlp"] = Case(onnx_source(root, hls_models.exporter_mlp()), root / "exporter_mlp")
    built["binarized"] = Case(onnx_source(root, hls_models.binarized()), root / "binarized", scale=3.0)
    built["conv_batchnorm"] = Case(onnx_source(root, hls_models.conv_batchnorm()), root / "conv_batchnorm")
    built["logic_then_linear"] = Case(onnx_source(root, hls_models.logic_then_linear()), root / "logic_then_linear",
                                      bits=True)
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(built, pool.map(Case.simulate, built.values())))


@pytest.mark.parametrize("name", ["gru", "lstm", "glu_chunk", *CONV_MODELS])
def test_gated_models_match_pytorch_at_the_default_precision(cases, name):
    c = cases[name]
    print(f"{name}: max abs err {c.err():.4f}, argmax agreement {100 * c.agree():.1f}%, "
          f"build+compile+csim {c.seconds:.1f} s")
    assert c.err() <= 0.05
    assert c.agree() >= 0.99
    assert c.err() <= c.tolerance  # the target's own bound holds
    assert c.err() > 0  # fixed point: a C simulation that returned the float model would be suspect


def layer_classes(folder: Path) -> list[str]:
    return [l["class"] for l in json.loads((folder / "hls_summary.json").read_text())["layers"]]


def test_gated_convolutions_run_channels_last(cases):
    # ONNX's (N, C, L) input is transposed once for both convolutions; the last position is a
    # crop of the channels-last output; global average pooling is hls4ml's own layer
    last = layer_classes(cases["gated_conv1d_last"].folder)
    assert last.count("Transpose") == 1 and last.count("Conv1D") == 2 and "Cropping1D" in last
    pooled = layer_classes(cases["gated_conv2d_pool"].folder)
    assert pooled.count("Conv2D") == 2 and "GlobalPooling2D" in pooled
    summary = json.loads((cases["gated_conv1d_last"].folder / "hls_summary.json").read_text())
    convs = [l for l in summary["layers"] if l["class"] == "Conv1D"]
    # 10 positions x 8 filters x 4 channels x 3 taps; one position at a time: 96 multipliers
    assert [l["estimate"]["macs"] for l in convs] == [10 * 8 * 4 * 3] * 2
    assert [l["estimate"]["multipliers"] for l in convs] == [8 * 4 * 3] * 2


def test_chunked_convolution_is_cut_and_flattened_in_onnx_order(cases):
    # torch.chunk of one convolution's channels: two convolutions of 8 filters each; the Flatten
    # reads channels first, the hls4ml tensor is channels last: the Transpose before the Linear is
    # folded into the Linear's weights (rows permuted; layers/dense.py), only the input's is left
    from gatec.targets._hls4ml.convert import convert
    c = cases["gated_conv1d_chunk_flatten"]
    layers = convert(c.source.ir).layers
    converted = [l["class_name"] for l in layers]
    assert converted.count("Transpose") == 1 and converted.index("Transpose") < converted.index("Conv1D")
    classes = layer_classes(c.folder)
    assert classes.count("Conv1D") == 2 and classes.count("Transpose") == 1
    weights = [l["weights"]["weight"]["count"] for l in json.loads((c.folder / "hls_summary.json").read_text())["layers"]
               if l["class"] == "Conv1D"]
    assert weights == [3 * 4 * 8] * 2
    # the same Linear fed the channels-last values (the Transpose left out) is far off
    flat_last = np.moveaxis(np.asarray(reference_hidden(c.source, c.x[0])), 1, 2).reshape(SAMPLES, -1)
    head = c.source.module.head
    with torch.no_grad():
        wrong = head(torch.from_numpy(flat_last)).numpy()
    assert np.abs(wrong - c.want[0]).max() > 20 * c.err()


def reference_hidden(source, x):
    m = source.module
    with torch.no_grad():
        a, b = torch.chunk(m.bn(m.conv(torch.from_numpy(x))), 2, dim=1)
        return (a * torch.sigmoid(b)).numpy()


def test_convolution_with_batchnorm_stride_and_same_padding_matches_onnx_runtime(cases):
    c = cases["conv_batchnorm"]
    print(f"conv_batchnorm: max abs err {c.err():.4f}, argmax agreement {100 * c.agree():.1f}%")
    assert 0 < c.err() <= c.tolerance and c.err() <= 0.05 and c.agree() >= 0.99
    classes = layer_classes(c.folder)
    assert classes.count("Conv1D") == 2 and "ApplyAlpha" not in classes  # the batch norm folded into the conv
    outs = [l["output_shape"] for l in json.loads((c.folder / "hls_summary.json").read_text())["layers"]
            if l["class"] == "Conv1D"]
    assert outs == [[5, 6], [5, 4]]  # (12 - 3) // 2 + 1 positions, kept by SAME_UPPER


def test_recurrent_model_at_another_sequence_length(cases):
    c = cases["gru_seq5"]
    assert c.x[0].shape[1] == 5 and json.loads((c.folder / "hls_config.json").read_text())["sample_shapes"] == [[8, 16]]
    assert c.err() <= c.tolerance and c.agree() >= 0.99


def test_gated_multimodal_unit_compiles_and_verifies_end_to_end(tmp_path):
    torch.manual_seed(0)
    model = GatedMultimodalUnit(12, 8, 16, 5).eval()
    art = gatec.compile(model, target="fpga", output=tmp_path / "gmu", input_shapes=[[1, 12], [1, 8]],
                        samples=SAMPLES)
    v = art.manifest["verification"]
    assert v["ok"] and v["max_abs_err"] <= 0.05 and v["argmax_agreement"] >= 0.99
    files = set(art.manifest["files"])
    assert {"hls4ml_prj/", "hls_summary.json", "resources.png", "model.onnx", "verification.png"} <= files
    assert (tmp_path / "gmu" / "hls4ml_prj" / "firmware" / "gatec_model.cpp").exists()
    assert (tmp_path / "gmu" / "hls4ml_prj" / "build_prj.tcl").exists()
    summary = json.loads((tmp_path / "gmu" / "hls_summary.json").read_text())
    assert summary["synthesized"] is False and "estimate" in summary["note"]
    c = summary["configured"]
    assert (c["backend"], c["io_type"], c["strategy"], c["reuse_factor"]) == ("Vitis", "io_parallel", "Latency", 1)
    assert c["default_precision"]["default"] == "ap_fixed<16,6>"
    # three Linear layers of 12x16, 20x16 (on the concatenation) and 8x16, a 16x5 head
    dense_macs = sorted(l["estimate"]["macs"] for l in summary["layers"] if l["class"] == "Dense")
    assert dense_macs == sorted([12 * 16, 20 * 16, 8 * 16, 16 * 5])
    x1, x2 = np.random.default_rng(5).standard_normal((3, 12)), np.random.default_rng(6).standard_normal((3, 8))
    (y,) = art.run([x1.astype(np.float32), x2.astype(np.float32)])
    with torch.no_grad():
        ref = model(torch.from_numpy(x1).float(), torch.from_numpy(x2).float()).numpy()
    assert np.abs(y - ref).max() <= 0.05


# ---------------------------------------------------------------- ONNX from other exporters

def test_opset9_fixed_batch_wrapped_batchnorms_softmax_and_sigmoid(cases):
    c = cases["exporter_mlp"]
    probs, gates = c.got
    assert probs.shape == (SAMPLES, 6) and gates.shape == (SAMPLES, 5)
    print(f"exporter_mlp: softmax max abs err {c.err(0):.4f} (argmax {100 * c.agree(0):.1f}%), "
          f"sigmoid {c.err(1):.4f}")
    assert c.err(0) <= c.tolerance and c.err(0) <= 0.02 and c.agree(0) >= 0.99
    assert c.err(1) <= c.tolerance and c.err(1) <= 0.02
    # hls4ml's default softmax types give every class about the same (the silent failure): not here
    assert np.abs(probs.sum(-1) - 1).max() < 0.02
    assert probs.max(-1).mean() > 0.5


def test_binarized_qonnx_network_is_bit_exact(cases):
    c = cases["binarized"]
    assert c.err() == 0.0  # BipolarQuant/Quant with power-of-two scales: the same integers
    assert np.abs(c.want[0]).max() > 1  # and not trivially so
    summary = json.loads((c.folder / "hls_summary.json").read_text())
    assert summary["configured"]["quantized"] is True
    weights = [w["type"] for l in summary["layers"] for w in l["weights"].values()]
    assert any(t.startswith("fixed<2,2") for t in weights)  # binary weights
    assert any(t.startswith("fixed<4,1") for t in weights)  # 4-bit weights, scale 2**-3


def test_logic_layers_mixed_with_arithmetic_go_through_hls4ml(cases):
    c = cases["logic_then_linear"]
    # the Verilog flow refuses the Gemm
    assert c.source.ir.kind == "logic" and fpga.flow(fpga.plan(c.source.ir, {})) is hls
    scores, y = c.got
    assert np.array_equal(scores, c.want[0])  # the logic layers and GroupSum: bit for bit
    assert len(np.unique(scores)) > 3
    assert c.err(1) <= c.tolerance and c.err(1) <= 0.02
    cpp = (c.folder / "hls4ml_prj" / "firmware" / "gatec_model.cpp").read_text()
    assert cpp.count("ap_uint<1>(") >= 2 * (64 + 40) - 2 * 2  # one assignment per gate (constants read nothing)


# ---------------------------------------------------------------- no C compile needed

def test_same_input_writes_the_same_bytes(tmp_path):
    model, shapes = gated_model("glu_chunk")
    source = frontend.load(model, shapes)
    hls.build(hls.plan(source.ir, {}), tmp_path / "a")
    hls.build(hls.plan(source.ir, {}), tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 20
    differ = [str(f) for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()]
    assert differ == []
    assert str(tmp_path) not in (tmp_path / "a" / "hls4ml_prj" / "hls4ml_config.yml").read_text()


@pytest.mark.parametrize("hls4ml_stamp", ["01434132", "98765432"])
def test_a_stamp_yaml_reads_as_a_number_is_still_replaced_everywhere(tmp_path, monkeypatch, hls4ml_stamp):
    """hls4ml's random stamp can be digits alone (YAML then writes it quoted):
    the written project is the same as with any other stamp, and its stamp reads back as a string."""
    import hls4ml.model.graph as graph
    import yaml
    model, shapes = gated_model("glu_chunk")
    ir = frontend.load(model, shapes).ir
    hls.build(hls.plan(ir, {}), tmp_path / "a")
    monkeypatch.setattr(graph.uuid, "uuid4", lambda: "0000-" + hls4ml_stamp)
    hls.build(hls.plan(ir, {}), tmp_path / "b")
    for name in ("hls4ml_config.yml", "build_lib.sh"):
        a, b = (tmp_path / d / "hls4ml_prj" / name for d in "ab")
        assert a.read_bytes() == b.read_bytes(), name
        assert hls4ml_stamp not in b.read_text()
    config = yaml.safe_load((tmp_path / "b" / "hls4ml_prj" / "hls4ml_config.yml").read_text())
    assert isinstance(config["Stamp"], str)
    assert f"LIB_STAMP={config['Stamp']}\n" in (tmp_path / "b" / "hls4ml_prj" / "build_lib.sh").read_text()


def test_cli_options_reach_the_project(tmp_path, cli):
    model, _ = gated_model("glu_two_linear")
    torch.save(model, tmp_path / "glu.pt")
    out = tmp_path / "glu_fpga"
    code, _, err = cli("compile", tmp_path / "glu.pt", "--target", "fpga", "--input-shape", "1,16", "-o", out,
                       "--no-verify", "--backend", "vivado", "--reuse-factor", "4", "--strategy", "resource",
                       "--precision", "ap_fixed<18,8>", "--part", "xc7z020clg400-1")
    assert code == 0, err
    c = json.loads((out / "hls_summary.json").read_text())["configured"]
    assert (c["backend"], c["part"], c["strategy"], c["reuse_factor"]) == ("Vivado", "xc7z020clg400-1", "Resource", 4)
    assert c["default_precision"]["default"] == "ap_fixed<18,8>"
    config = (out / "hls4ml_prj" / "hls4ml_config.yml").read_text()
    assert "ReuseFactor: 4" in config and "xc7z020clg400-1" in config
    summary = json.loads((out / "hls_summary.json").read_text())
    dense = [l for l in summary["layers"] if l["class"] == "Dense"]
    assert all(l["estimate"]["multipliers"] == -(-l["estimate"]["macs"] // 4) for l in dense)

    code, _, err = cli("compile", tmp_path / "glu.pt", "--target", "fpga", "--input-shape", "1,16", "-o",
                       tmp_path / "bad", "--no-verify", "--reuse-factor", "0")
    assert code == 2 and "--reuse-factor" in err
    assert not (tmp_path / "bad").exists()


def test_unsupported_op_is_named(tmp_path):
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Cos", ["x"], ["y"], name="the_cosine")], "cos",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    source = onnx_source(tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    with pytest.raises(GatecError, match="the_cosine.*Cos"):
        fpga.plan(source.ir, {})


def test_the_supported_ops_named_in_a_refusal_are_the_registered_handlers(tmp_path):
    from onnx import TensorProto, helper
    from gatec.targets._hls4ml.layers import HANDLERS
    graph = helper.make_graph([helper.make_node("Cos", ["x"], ["y"])], "cos",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    source = onnx_source(tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    with pytest.raises(GatecError) as refused:
        hls.plan(source.ir, {})
    named = re.search(r"\(supported: (.*)\)$", str(refused.value)).group(1).split(", ")
    assert named == sorted(HANDLERS)
    assert {"LogicLayer", "GroupSum"} <= set(named)
    assert not {"Constant", "ConstantOfShape", "Cos"} & set(named)  # folded, or unknown: no handler


def test_grouped_convolution_is_one_convolution_with_a_block_diagonal_kernel():
    from gatec.targets._hls4ml.convert import convert
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3, groups=2), torch.nn.Flatten(), torch.nn.Linear(48, 3)).eval()
    converted = convert(frontend.load(model, [[1, 4, 8]]).ir)
    (layer,) = [l for l in converted.layers if l["class_name"] == "Conv1D"]
    kernel = layer["weight_data"]  # Keras' layout (K, C, F)
    w = model[0].weight.detach().numpy()  # (F, C / groups, K)
    assert kernel.shape == (3, 4, 8) and not kernel[:, 2:, :4].any() and not kernel[:, :2, 4:].any()
    np.testing.assert_array_equal(kernel[:, :2, :4], np.transpose(w[:4], (2, 1, 0)))
    np.testing.assert_array_equal(kernel[:, 2:, 4:], np.transpose(w[4:], (2, 1, 0)))
    assert converted.macs[layer["name"]] == 6 * 8 * 2 * 3  # the products that are not by zero


def test_qat_gru_goes_through_hls4ml(tmp_path):
    # QAT quantizes the GRU's whole output sequence before the last step is taken: the fpga
    # target commutes the quantizer past the Gather and checks the C simulation against qonnx
    import gatec.qat as qat
    torch.manual_seed(0)
    model = qat.prepare(RecurrentClassifier(8, 16, 4).eval(), qat.QATConfig(weight_bits=8, act_bits=8))
    model.train()
    model(torch.randn(64, 6, 8))
    qat.export(model.eval(), tmp_path / "gru_q.onnx", torch.randn(1, 6, 8))
    art = gatec.compile(tmp_path / "gru_q.onnx", target="fpga", output=tmp_path / "fpga", samples=64)
    v = art.manifest["verification"]
    assert v["ok"] and v["argmax_agreement"] >= 0.95 and 0 < v["max_abs_err"] < 0.05


def test_qonnx_reference_runs_logic_layers_feeding_arithmetic_at_any_batch(tmp_path):
    source = onnx_source(tmp_path, hls_models.logic_then_linear())
    x = [(np.random.default_rng(4).standard_normal((37, 32)) > 0).astype(np.float32)]
    got, want = source.reference(x), logic_reference(source.ir, x)
    assert got[1].shape == (37, 3)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)


def test_a_coarser_precision_is_held_to_its_own_bound(tmp_path):
    model, shapes = gated_model("glu_two_linear")
    source = frontend.load(model, shapes)
    default = hls.tolerance(hls.plan(source.ir, {"precision": "ap_fixed<16,6>"})).atol
    coarse = hls.tolerance(hls.plan(source.ir, {"precision": "ap_fixed<10,4>"})).atol  # 6 fractional bits, not 10
    assert 8 * default < coarse < 16 * default  # the LSB terms grow 16x, the tables' do not
    art = gatec.compile(model, target="fpga", output=tmp_path / "coarse", input_shapes=shapes, samples=200,
                        options={"precision": "ap_fixed<10,4>"})
    v = art.manifest["verification"]
    assert v["ok"] and default < v["max_abs_err"] <= coarse  # coarser than ap_fixed<16,6> could pass


def test_opset_6_exporter_file_compiles_and_verifies(tmp_path):
    # Gemm-6 (broadcast) and BatchNormalization-6 (is_test): upgraded by the front end, then
    # checked against ONNX Runtime on the upgraded graph
    source = onnx_source(tmp_path, hls_models.exporter_mlp(opset=6))
    assert source.ir.model.opset_import[0].version >= 13
    art = gatec.compile(None, target="fpga", output=tmp_path / "fpga", source=source, samples=64)
    v = art.manifest["verification"]
    assert v["ok"] and 0 < v["max_abs_err"] < 0.05 and v["argmax_agreement"] >= 0.95


def test_the_c_simulation_runs_on_a_stack_for_whole_feature_maps(tmp_path):
    """hls4ml's io_stream simulation of a 512 x 512 image keeps a 16 MB frame on the stack: past the
    usual 8 MB the process ends in a segfault, with no message. Here a C function with a 64 MB frame."""
    import ctypes
    import subprocess
    source = tmp_path / "frame.c"
    source.write_text("int deep(void) { volatile char frame[64 << 20]; frame[0] = 1; frame[sizeof frame - 1] = 2;\n"
                      "  return frame[0] + frame[sizeof frame - 1]; }\n")
    subprocess.run(["gcc", "-O0", "-shared", "-fPIC", str(source), "-o", str(tmp_path / "frame.so")], check=True)
    deep = ctypes.CDLL(str(tmp_path / "frame.so")).deep
    assert hls.on_a_large_stack(deep) == 3
    with pytest.raises(ZeroDivisionError):  # a failure in the thread is raised in the caller's
        hls.on_a_large_stack(lambda: 1 / 0)
