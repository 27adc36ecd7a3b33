"""Logic networks on the GPU: a Triton kernel over bit-packed samples (64 per int64 word).

The netlist comes from the passes with its wires resolved and dead gates dropped (gatec.ir.
netlist.fold); live gates get rows of one state buffer (inputs first, then gates level by
level), and each level is one launch that computes every gate of the level for a tile of
words. GroupSum is a second launch: per class and tile of words, the ones of the class's output
rows are counted lane by lane (sample by sample). On a machine without CUDA the same kernels run
under Triton's interpreter (TRITON_INTERPRET=1, numpy underneath): bit for bit the same, slowly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ...ir.netlist import Netlist, by_level, fold
from ...ir.logic import READS_A, READS_B


def cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


def kernels():
    """The Triton kernels, compiled for CUDA or run by the interpreter; imported on first use,
    after TRITON_INTERPRET is set (Triton reads it when a kernel is decorated)."""
    global _KERNELS
    if _KERNELS is None:
        if not cuda_available():
            os.environ["TRITON_INTERPRET"] = "1"
        from . import logic_kernels
        _KERNELS = logic_kernels
    return _KERNELS


_KERNELS = None


@dataclass
class LevelPlan:
    """The network as the kernels take it: per level, the truth-table ids and the state rows of
    the operands of its gates (the level's own gates get consecutive rows)."""
    n_inputs: int
    n_rows: int
    levels: list  # [(first_row, op, a_row, b_row)] with int64 arrays
    output_rows: np.ndarray  # int64, class by class
    k: int
    tau: float


def level_plan(net: Netlist) -> LevelPlan:
    folded = fold(net)
    n_in = net.n_inputs
    row = np.full(n_in + net.n_gates, -1, np.int64)
    row[:n_in] = np.arange(n_in)
    levels, next_row = [], n_in
    for gates in by_level(n_in, folded.a, folded.b, net.op, folded.live):
        row[n_in + gates] = np.arange(next_row, next_row + len(gates))
        ops = net.op[gates].astype(np.int64)
        # an operand the op does not read may be a dead node without a row: read row 0 instead
        a = np.where(READS_A[ops].astype(bool), row[folded.a[gates]], 0)
        b = np.where(READS_B[ops].astype(bool), row[folded.b[gates]], 0)
        levels.append((next_row, ops, a, b))
        next_row += len(gates)
    return LevelPlan(n_in, next_row, levels, row[folded.outputs], net.k, net.tau)


class TritonLogicRunner:
    """Runs a LevelPlan with the Triton kernels on the GPU, or under the interpreter."""

    def __init__(self, plan: LevelPlan):
        import torch
        self.plan = plan
        self.device = "cuda" if cuda_available() else "cpu"
        self.label = "" if self.device == "cuda" else "Triton interpreter"
        as_tensor = (lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.int64, device=self.device))
        self.levels = [(first, as_tensor(op), as_tensor(a), as_tensor(b)) for first, op, a, b in plan.levels]
        self.output_rows = as_tensor(plan.output_rows)

    def pack(self, bits: np.ndarray):
        """(N, n_inputs) 0/1 -> (n_inputs, words) int64, sample 64*w + l in bit l of word w."""
        import torch
        n, words = len(bits), max(1, -(-len(bits) // 64))
        padded = np.zeros((words * 64, self.plan.n_inputs), np.uint8)
        padded[:n] = bits != 0
        packed = np.packbits(padded.reshape(words, 64, -1).transpose(2, 0, 1), axis=-1, bitorder="little")
        return torch.from_numpy(np.ascontiguousarray(packed).view(np.int64).reshape(self.plan.n_inputs, words))

    def counts(self, bits: np.ndarray) -> np.ndarray:
        """Class counts (N, k) int32."""
        return self.counts_packed(self.pack(bits).to(self.device), len(bits)).cpu().numpy()

    def counts_packed(self, packed, n: int):
        """Class counts (n, k) int32 on the device, from packed input words already there (what a
        pipeline that keeps its samples on the GPU calls, and what benchmarks/bench_gpu.py times)."""
        import torch
        k = kernels()
        words = packed.shape[1]
        state = torch.empty((self.plan.n_rows, words), dtype=torch.int64, device=self.device)
        state[: self.plan.n_inputs] = packed
        bw = min(k.BLOCK_WORDS, triton_block(words))
        for first, op, a, b in self.levels:
            grid = (-(-len(op) // k.BLOCK_GATES), -(-words // bw))
            k.level_kernel[grid](state, op, a, b, first, len(op), words, BLOCK_G=k.BLOCK_GATES, BLOCK_W=bw)
        group = len(self.plan.output_rows) // max(self.plan.k, 1)
        counts = torch.zeros((n, self.plan.k), dtype=torch.int32, device=self.device)
        gw = min(k.GROUP_WORDS, bw)  # a 3-D block (rows, words, lanes): kept small enough for registers
        k.group_sum_kernel[(self.plan.k, -(-words // gw))](state, self.output_rows, counts, group, words, n,
                                                          self.plan.k, BLOCK_G=k.BLOCK_GROUP, BLOCK_W=gw)
        return counts

    def scores(self, bits: np.ndarray) -> np.ndarray:
        """GroupSum's scores, counts / tau in float32 as the reference divides."""
        counts = self.counts(bits)
        return np.divide(counts, np.float32(self.plan.tau), dtype=np.float32)


def triton_block(n: int) -> int:
    """The power of two at least n (Triton's block sizes are powers of two)."""
    return 1 << max(0, int(n - 1).bit_length())
