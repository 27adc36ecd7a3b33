"""The Triton kernels of the gpu target's logic runner (logic.py imports this module once
TRITON_INTERPRET is decided).

They use Triton's builtins only (tl.full, tl.reduce with a combine function of this module),
not the standard library's jit functions (tl.zeros, tl.sum): those are compiled functions, which
the interpreter cannot call, when Triton was imported before TRITON_INTERPRET was set (torch and
brevitas import it)."""
import triton
import triton.language as tl

BLOCK_GATES = 64  # gates of a level per program
BLOCK_WORDS = 32  # int64 words (64 samples each) per program of a level
GROUP_WORDS = 4  # words per program of the count: its block is (BLOCK_GROUP, GROUP_WORDS, 64 lanes)
BLOCK_GROUP = 8  # output rows of a class counted per step


@triton.jit
def level_kernel(state, op_ptr, a_ptr, b_ptr, first_row, n_gates, words,
                 BLOCK_G: tl.constexpr, BLOCK_W: tl.constexpr):
    """Rows first_row .. first_row+n_gates-1 of `state` from the rows their gates read: one level."""
    g = tl.program_id(0) * BLOCK_G + tl.arange(0, BLOCK_G)
    w = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    gate_ok = g < n_gates
    mask = gate_ok[:, None] & (w < words)[None, :]
    op = tl.load(op_ptr + g, mask=gate_ok, other=0)
    a = tl.load(a_ptr + g, mask=gate_ok, other=0)
    b = tl.load(b_ptr + g, mask=gate_ok, other=0)
    x = tl.load(state + a[:, None] * words + w[None, :], mask=mask, other=0)
    y = tl.load(state + b[:, None] * words + w[None, :], mask=mask, other=0)
    # op id = 8 f(0,0) + 4 f(0,1) + 2 f(1,0) + f(1,1); -(bit) is all ones when the bit is set
    f00 = -((op >> 3) & 1)[:, None]
    f01 = -((op >> 2) & 1)[:, None]
    f10 = -((op >> 1) & 1)[:, None]
    f11 = -(op & 1)[:, None]
    out = (f00 & ~x & ~y) | (f01 & ~x & y) | (f10 & x & ~y) | (f11 & x & y)
    tl.store(state + (first_row + g)[:, None] * words + w[None, :], out, mask=mask)


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def group_sum_kernel(state, rows_ptr, counts, group, words, n_samples, k,
                     BLOCK_G: tl.constexpr, BLOCK_W: tl.constexpr):
    """counts[sample, c] = ones among class c's `group` output rows, for a tile of words."""
    c = tl.program_id(0)
    w = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    lanes = tl.arange(0, 64).to(tl.int64)
    acc = tl.full([BLOCK_W, 64], 0, tl.int32)
    for start in range(0, group, BLOCK_G):
        i = start + tl.arange(0, BLOCK_G)
        row_ok = i < group
        rows = tl.load(rows_ptr + c * group + i, mask=row_ok, other=0)
        x = tl.load(state + rows[:, None] * words + w[None, :], mask=row_ok[:, None] & (w < words)[None, :], other=0)
        bits = (x[:, :, None] >> lanes[None, None, :]) & 1
        acc += tl.reduce(bits, 0, _add).to(tl.int32)
    sample = w[:, None] * 64 + lanes[None, :]
    tl.store(counts + sample * k + c, acc, mask=sample < n_samples)
