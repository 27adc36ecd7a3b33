"""QONNX in the forms other tools write it. Brevitas's export_onnx_qcdq writes QuantizeLinear/Clip/
DequantizeLinear chains: gatec reads them as QONNX Quant nodes (qonnx's QCDQToQuant), and the
reference runs the file as the ONNX semantics say (not ONNX Runtime's fused integer kernels, which
were 0.0117 off on this model); Brevitas's fixed-point quantizers with float biases then compile
to cpu, fpga and gpu int8, each equal to the reference. qonnx's ConvertToChannelsLastAndClean
writes channels-last Conv/MaxPool/BatchNormalization (hls4ml's example models `*_ch_last.onnx`):
read as the standard ops between Transposes, as qonnx executes them."""
import numpy as np
import onnx
import pytest
import torch

import gatec


def brevitas_fixed_point_mlp():
    import brevitas.nn as qnn
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint
    torch.manual_seed(0)
    return torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(16, 24, bias=True, weight_quant=Int8WeightPerTensorFixedPoint),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(24, 5, bias=True, weight_quant=Int8WeightPerTensorFixedPoint)).eval()


@pytest.mark.parametrize("form", ["qcdq", "qonnx"])
def test_brevitas_export_compiles_exactly_to_cpu_fpga_and_gpu_int8(form, tmp_path):
    from brevitas.export import export_onnx_qcdq, export_qonnx
    model = brevitas_fixed_point_mlp()
    path = tmp_path / f"mlp_{form}.onnx"
    export = export_onnx_qcdq if form == "qcdq" else export_qonnx
    export(model, torch.randn(1, 16), str(path), input_names=["x"], output_names=["y"],
           dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    if form == "qcdq":
        assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(str(path)).graph.node}
        source = gatec.load(str(path))
        assert source.ir.is_qonnx and source.ir.source["normalised"] == ["4 QuantizeLinear/DequantizeLinear chain(s) "
                                                                          "as QONNX Quant"]
    x = np.random.default_rng(3).standard_normal((300, 16)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for target, options in (("cpu", {}), ("fpga", {}), ("gpu", {"precision": "int8"})):
        art = gatec.compile(str(path), target, tmp_path / f"{form}_{target}", options=options, samples=200)
        v = art.manifest["verification"]
        assert v["ok"] and v["max_abs_err"] == 0, (target, v)
        # and Brevitas's own forward, within float32 rounding
        assert np.abs(art.run(x)[0] - want).max() <= 1e-4 * (1 + np.abs(want).max()), target


@pytest.mark.parametrize("input_channels_last", [False, True])
def test_qonnx_channels_last_files_compile_exactly(input_channels_last, tmp_path):
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.util.cleanup import cleanup_model
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantConv2d(3, 4, 3, weight_quant=Int8WeightPerTensorFixedPoint, bias=False), torch.nn.BatchNorm2d(4),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        qnn.QuantLinear(36, 5, bias=True, weight_quant=Int8WeightPerTensorFixedPoint)).eval()
    export_qonnx(model, torch.randn(1, 3, 8, 8), str(tmp_path / "cnn.onnx"), input_names=["x"], output_names=["y"])
    wrapped = cleanup_model(ModelWrapper(str(tmp_path / "cnn.onnx")))
    wrapped = wrapped.transform(ConvertToChannelsLastAndClean(make_input_channels_last=input_channels_last))
    path = tmp_path / "cnn_ch_last.onnx"
    wrapped.save(str(path))
    assert {"Conv", "MaxPool", "BatchNormalization"} <= {n.op_type for n in wrapped.model.graph.node
                                                         if n.domain == "qonnx.custom_op.channels_last"}
    for target in ("cpu", "fpga"):
        art = gatec.compile(str(path), target, tmp_path / target, samples=100)
        v = art.manifest["verification"]
        assert v["ok"] and v["max_abs_err"] == 0, (target, v)
        assert art.manifest["source"]["normalised"] == ["3 channels-last node(s) as standard ops between Transposes"]
    x = np.random.default_rng(0).standard_normal((50, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = art.run(x.transpose(0, 2, 3, 1) if input_channels_last else x)[0]
    assert np.abs(got - want).max() <= 1e-4 * (1 + np.abs(want).max())  # Brevitas's own forward
