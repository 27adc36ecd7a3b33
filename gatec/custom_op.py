"""gatec's ONNX domain (`gatec.custom_op`) as qonnx custom ops, so that qonnx's executor runs
the compact logic-network form as the reference.

LogicLayer: input x (N, in) float 0/1 -> (N, out); attributes in_a, in_b (ints, indices into
            x's columns) and ops (ints, 0..15, the truth-table ids of FIELD_NOTES section 1).
GroupSum:   input x (N, n) -> (N, k): the sum of each of k consecutive groups, divided by tau.
"""
custom_op: dict = {}
