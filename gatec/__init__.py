"""gatec: compile gated neural networks and logic-gate networks to verified targets."""
from .version import __version__  # noqa: F401

from .compiler import Artifact, compile  # noqa: E402
from .errors import GatecError  # noqa: E402
from .frontend import load  # noqa: E402

__all__ = ["compile", "load", "Artifact", "GatecError", "__version__"]
