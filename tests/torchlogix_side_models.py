"""torchlogix's side of tests/test_torchlogix_import.py: run inside the torchlogix venv (Python 3.12,
torch, torchlogix 0.2.2), not in gatec's environment; it imports nothing from gatec.

    python torchlogix_side_models.py FOLDER

Builds small networks from torchlogix's own layers with random weights (every parametrization:
raw, warp, light; fixed and learnable connections; a convolutional network with padding and OR
pooling; a thermometer binarization; a residual block, which gatec refuses), saves each with torch.save as a user would (FOLDER/NAME.pt),
and writes what torchlogix's eval forward gives on test inputs (NAME_x.npy -> NAME_y.npy), and the
gate counts of torchlogix's own Circuit of each, traced and after Circuit.simplify()
(FOLDER/circuits.json).
"""
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from torchlogix import Circuit
from torchlogix.layers import FixedBinarization, GroupSum, LogicConv2d, LogicDense, OrPooling2d
from torchlogix.modules.resblock import ResidualLogicBlock


def randomize(model: nn.Module) -> nn.Module:
    """Random gate weights (and learnable connection weights), as if partly trained."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) if "connections" not in name else torch.rand_like(p))
    return model.eval()


def dense() -> tuple[nn.Module, np.ndarray]:
    model = nn.Sequential(
        LogicDense(64, 400, parametrization="raw"),
        LogicDense(400, 300, parametrization="warp", connections="learnable",
                   connections_kwargs={"num_candidates": 4}),
        LogicDense(300, 200, parametrization="light"),
        GroupSum(10, tau=2.0))
    return randomize(model), (np.random.default_rng(0).random((300, 64)) > 0.5).astype(np.float32)


def conv() -> tuple[nn.Module, np.ndarray]:
    model = nn.Sequential(
        LogicConv2d(in_dim=8, channels=1, num_kernels=6, tree_depth=2, receptive_field_size=3, padding=1),
        OrPooling2d(kernel_size=2, stride=2),
        LogicConv2d(in_dim=4, channels=6, num_kernels=8, tree_depth=3, receptive_field_size=2,
                    parametrization="warp"),
        OrPooling2d(kernel_size=2, stride=2, padding=1),
        nn.Flatten(),
        LogicDense(32, 200, parametrization="light"),
        GroupSum(5, tau=1.0))
    return randomize(model), (np.random.default_rng(1).random((300, 1, 8, 8)) > 0.5).astype(np.float32)


def thermometer() -> tuple[nn.Module, np.ndarray]:
    rng = np.random.default_rng(2)
    fit = torch.from_numpy(rng.random((500, 16)).astype(np.float32) * 10)
    thresholds = FixedBinarization.get_initial_thresholds(fit, num_bits=3, one_per="feature")  # (16, 3)
    model = nn.Sequential(FixedBinarization(thresholds), LogicDense(48, 120), LogicDense(120, 60),
                          GroupSum(3, tau=1.5))
    return randomize(model), (rng.random((300, 16)) * 10).astype(np.float32)


def residual() -> tuple[nn.Module, np.ndarray]:
    """A residual block (an OR of two branches): one gatec refuses by name."""
    model = nn.Sequential(ResidualLogicBlock(in_dim=8, in_channels=2, out_channels=2, tree_depth=2), nn.Flatten(),
                          GroupSum(2))
    return randomize(model), (np.random.default_rng(3).random((20, 2, 8, 8)) > 0.5).astype(np.float32)


def main() -> None:
    folder = Path(sys.argv[1])
    torch.manual_seed(0)
    circuits = {}
    for name, build in (("dense", dense), ("conv", conv), ("thermometer", thermometer), ("residual", residual)):
        model, x = build()
        torch.save(model, folder / f"{name}.pt")
        with torch.no_grad():
            y = model(torch.from_numpy(x)).numpy()
        np.save(folder / f"{name}_x.npy", x)
        np.save(folder / f"{name}_y.npy", y.astype(np.float32))
        try:
            circuit = Circuit.from_model(copy.deepcopy(model), input_shape=list(x.shape[1:]))
            traced = len(circuit.gates)
            circuit.simplify()
            circuits[name] = {"traced": traced, "simplified": len(circuit.gates)}
        except Exception as e:  # noqa: BLE001  (a report, not a check: gatec's test prints it)
            circuits[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    (folder / "circuits.json").write_text(json.dumps(circuits, indent=2) + "\n")


if __name__ == "__main__":
    main()
