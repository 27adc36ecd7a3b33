"""gatec: compile gated neural networks and logic-gate networks to verified targets."""
from .version import __version__

__all__ = ["compile", "load", "sweep", "Artifact", "GatecError", "__version__"]


def __getattr__(name):
    """The API on first use, so that `gatec --help` and `gatec targets` need not import torch."""
    if name in ("compile", "Artifact"):
        from . import compiler
        return getattr(compiler, name)
    if name == "load":
        from .frontend import load
        return load
    if name == "sweep":  # the module, callable: gatec.sweep(model, target=..., grid=...)
        import importlib
        return importlib.import_module(f"{__name__}.sweep")
    if name == "GatecError":
        from .errors import GatecError
        return GatecError
    import importlib
    try:
        return importlib.import_module(f"{__name__}.{name}")  # gatec.qat, gatec.nn, ... as attributes
    except ModuleNotFoundError:
        raise AttributeError(f"module 'gatec' has no attribute '{name}'") from None
