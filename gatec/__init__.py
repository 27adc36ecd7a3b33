"""gatec: compile gated neural networks and logic-gate networks to verified targets."""
__version__ = "0.1.0"

from .compiler import Artifact, compile  # noqa: E402
from .errors import GatecError  # noqa: E402
from .frontend import load  # noqa: E402

__all__ = ["compile", "load", "Artifact", "GatecError", "__version__"]
