"""The handler registry the layer families fill (see __init__.py)."""
from __future__ import annotations

from typing import Callable

HANDLERS: dict[str, Callable] = {}  # ONNX op type -> handler(conv, node)


def handles(*op_types: str):
    """Registers the decorated function as the handler of `op_types`."""
    def register(handler: Callable) -> Callable:
        for op in op_types:
            if op in HANDLERS:
                raise ValueError(f"two hls4ml handlers for {op}: {HANDLERS[op].__name__} and {handler.__name__}")
            HANDLERS[op] = handler
        return handler
    return register


def supported() -> list[str]:
    return sorted(HANDLERS)
