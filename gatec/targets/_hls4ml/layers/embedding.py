"""Embeddings: an ONNX Gather of a constant table by integer per-sample indices (nn.Embedding as
PyTorch exports it: Gather(weight, ids), token ids int64) is hls4ml's Embedding layer (Vivado/Vitis
nnet_embed.h: res[j, :] = table[ids[j], :], a copy: exact but for the table's weight type). The ids
must be a model input: its hls4ml InputLayer gets the unsigned integer type that holds the
vocabulary's indices (ap_uint<k>; the C simulation reads floats and casts, exact for ids), set as
the input layer's 'result' precision. Ids outside [0, vocabulary) are not valid inputs (PyTorch
refuses them; the firmware would read outside the table). Every other Gather is structure.gather.
"""
from __future__ import annotations

import math

import numpy as np

from ..act import Act
from . import structure
from .registry import HANDLERS, handles

HANDLERS.pop("Gather")  # structure.gather, called below for everything that is not an embedding


@handles("Gather")
def gather(conv, node):
    table, ids = conv.const(node.input[0]), conv.values.get(node.input[1])
    if table is None or not isinstance(ids, Act):
        structure.gather(conv, node)
        return
    embedding(conv, node, table, ids)


def embedding(conv, node, table: np.ndarray, ids: Act) -> None:
    axis = int(next((a.i for a in node.attribute if a.name == "axis"), 0))
    if axis % table.ndim != 0 or table.ndim < 2:
        raise conv.fail(node, "a Gather of a constant by per-sample indices is supported as an embedding only: "
                              "rows of a table of rank 2 or more (axis 0)")
    source = conv.layer(ids.layer)
    if source["class_name"] != "InputLayer" or not integer_input(conv, ids.layer):
        raise conv.fail(node, "an embedding's indices must be an integer model input (hls4ml's Embedding "
                              "indexes its table with the input's integer type)")
    vocab, width = int(table.shape[0]), int(np.prod(table.shape[1:]))
    src, n_in = conv.flat(node, ids)
    bits = max(1, math.ceil(math.log2(vocab)))
    conv.precisions.setdefault(ids.layer, {})["result"] = f"ap_uint<{bits}>"
    name = conv.add({"name": conv.new_name("embedding"), "class_name": "Embedding", "inputs": [src],
                     "n_in": n_in, "n_out": width, "vocab_size": vocab,
                     "embeddings_data": np.ascontiguousarray(table.reshape(vocab, width), dtype=np.float64)})
    r = len(ids.shape)
    extra = tuple(range(r, r + table.ndim - 1))
    conv.values[node.output[0]] = Act(name, tuple(ids.shape) + tuple(table.shape[1:]), ids.batch,
                                      tuple(sorted(ids.order)) + extra, (n_in, width))


def integer_input(conv, layer: str) -> bool:
    """Is the model input that InputLayer `layer` reads of an integer type?"""
    import onnx
    index = conv.inputs.index(layer)
    spec = conv.ir.inputs[index]
    graph_input = next((i for i in conv.graph.input if i.name == spec.name), None)
    if graph_input is None:
        return False
    elem = graph_input.type.tensor_type.elem_type
    return elem in (onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
                    onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64)
