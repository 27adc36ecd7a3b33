"""gatec's PyTorch modules: gated blocks (`gated.py`), logic-gate layers (`logic.py`) and k-input
LUT layers (`lut.py`)."""
import torch

from .gated import (GLU, GatedConv1d, GatedConv2d, GatedMultimodalUnit, GatedResidual, MixtureOfExperts,
                    RecurrentClassifier, SwiGLU)
from .logic import LearnedThermometerEncoder
from .lut import LUTLayer

__all__ = ["GLU", "SwiGLU", "GatedConv1d", "GatedConv2d", "GatedMultimodalUnit", "MixtureOfExperts",
           "GatedResidual", "RecurrentClassifier", "LUTLayer", "LearnedThermometerEncoder", "adopt", "reads_bits", "input_range"]


def adopt(module: torch.nn.Module) -> torch.nn.Module:
    """Swap modules gatec knows under another library's layout (difflogic's and torchlogix's logic
    layers) for gatec's own, so that they trace into the IR. Returns the module."""
    try:
        from . import logic, torchlogix
    except ImportError:
        return module
    return logic.adopt(torchlogix.adopt(module))


def input_range(module: torch.nn.Module):
    """(low, high) of the input encoder's thresholds when the model starts with one, else None."""
    from . import logic
    return logic.input_range(module)


def reads_bits(module: torch.nn.Module) -> bool:
    """True when the model's first computing layer is a logic layer (its input is bits)."""
    try:
        from . import logic
    except ImportError:
        return False
    return logic.reads_bits(module)
