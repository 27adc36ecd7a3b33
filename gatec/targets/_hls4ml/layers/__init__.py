"""The ONNX ops the hls4ml conversion takes: one handler per op type, registered with `@handles`.

A handler is `handler(conv, node)`: it reads its inputs from the Converter `conv`
(gatec/targets/_hls4ml/convert.py), adds hls4ml layers and sets `conv.values` for the node's
outputs. Adding an op is one function in the module of its family (or a new module imported
below) and a test; the list of supported ops in error messages is this registry's keys.
"""
from __future__ import annotations

from .registry import HANDLERS, handles, supported  # noqa: F401

# importing the families fills HANDLERS
from . import (activations, arithmetic, conv, dense, logic, lookup, padding, pooling, quantizers,  # noqa: E402,F401
               recurrent, structure, normalization, embedding)
from . import threshold  # noqa: E402,F401  (QONNX/FINN MultiThreshold: an extension layer)
