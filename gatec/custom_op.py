"""gatec's ONNX domain (`gatec.custom_op`) as qonnx custom ops, so that qonnx's executor runs
the compact logic-network form as the reference.

LogicLayer: input x (N, in) float 0/1 -> (N, out); attributes in_a, in_b (ints, indices into
            x's columns) and ops (ints, 0..15, the truth-table ids of gatec/ir/logic.py; docs/FACTS.md has the table).
GroupSum:   input x (N, n) -> (N, k): the sum of each of k consecutive groups, divided by tau.

qonnx finds these by importing the module named like the node's domain, this one.
"""
from __future__ import annotations

from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from .ir import LOGIC_OP_TYPES
from .ir.logic import eval_bits, group_sum, group_sum_of, layer_of


class LogicLayer(CustomOp):
    def get_nodeattr_types(self):
        return {"in_a": ("ints", True, []), "in_b": ("ints", True, []), "ops": ("ints", True, [])}

    def make_shape_compatible_op(self, model):
        return self.make_const_shape_op(out_shape(model, self.onnx_node, len(self.get_nodeattr("ops"))))

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["BINARY"])

    def execute_node(self, context, graph):
        x = context[self.onnx_node.input[0]]
        bits = eval_bits([layer_of(self.onnx_node)], x.reshape(-1, x.shape[-1]) != 0)
        context[self.onnx_node.output[0]] = bits.astype(x.dtype).reshape(*x.shape[:-1], bits.shape[-1])

    def verify_node(self):
        info = []
        try:
            layer = layer_of(self.onnx_node)
            info.append(f"LogicLayer with {len(layer)} gates")
        except Exception as e:
            info.append(f"LogicLayer attributes are wrong: {e}")
        info.append("The number of inputs is correct" if len(self.onnx_node.input) == 1 else "LogicLayer needs 1 input")
        return info


class GroupSum(CustomOp):
    def get_nodeattr_types(self):
        return {"k": ("i", True, 1), "tau": ("f", False, 1.0)}

    def make_shape_compatible_op(self, model):
        return self.make_const_shape_op(out_shape(model, self.onnx_node, self.get_nodeattr("k")))

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])

    def execute_node(self, context, graph):
        x = context[self.onnx_node.input[0]]
        context[self.onnx_node.output[0]] = group_sum(x != 0, *group_sum_of(self.onnx_node)).astype(x.dtype)

    def verify_node(self):
        info = []
        try:
            k, tau = group_sum_of(self.onnx_node)
            info.append(f"GroupSum k={k}, tau={tau}")
        except Exception as e:
            info.append(f"GroupSum attributes are wrong: {e}")
        info.append("The number of inputs is correct" if len(self.onnx_node.input) == 1 else "GroupSum needs 1 input")
        return info


def out_shape(model, node, width: int) -> list[int]:
    """The input's shape with the last axis replaced by `width` (qonnx infers shapes on concrete
    batch sizes; see gatec.ir.reference.qonnx_reference). qonnx asks before it has inferred the shapes of
    intermediate tensors: then the input is taken as (batch, n), the batch being the graph
    input's first axis, as logic layers read it."""
    shape = model.get_tensor_shape(node.input[0])
    if not shape:
        graph_input = model.get_tensor_shape(model.graph.input[0].name) or [1]
        shape = [graph_input[0], 0]
    return [int(d) if isinstance(d, int) else 1 for d in shape[:-1]] + [int(width)]


custom_op = {"LogicLayer": LogicLayer, "GroupSum": GroupSum}
assert tuple(sorted(custom_op)) == LOGIC_OP_TYPES
