"""Target `c`: portable bit-packed C99 firmware for a logic network.

The artifact is self-contained: gatec's interpreter (`gatec_logic.c/.h`, the same source the
host engine is built from), the network as constant tables (`model.c/.h`), an example `main.c`
and a Makefile. Nothing from libc beyond stdint.h and string.h in the library; the word size is
chosen with --word-bits 8|16|32|64 (microcontrollers to servers). By default a network is data,
not code, so it compiles in well under a second however many gates it has; --c-form unrolled
writes its gates as straight-line C instead, with its own packing and counting (on
benchmarks/bench_logic.py's network at 64-bit words: about 2.4x the table form at -O3
-march=native; gcc compiles its 16k gates in about 2.7 s on a 2-core host, 8.2-8.5 s before the
gate functions got their own GCC options, see UNROLL_PRAGMA); networks over UNROLL_LIMIT gates
keep the tables.
"""
from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...errors import GatecError
from ...ir import IR
from ...ir.netlist import plan
from .. import Option, Plan, Target, Tolerance
from ..logic_input import network_and_encoder

CSRC = Path(__file__).resolve().parents[2] / "csrc"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]
WORD_BITS = (8, 16, 32, 64)


def c_floats(name: str, values) -> str:
    values = np.asarray(values, np.float32).reshape(-1)
    if not np.isfinite(values).all():
        raise GatecError("the input encoder has a threshold that is not finite")
    literals = [f"{np.format_float_positional(v, unique=True, trim='0')}f" for v in values]
    rows = [", ".join(literals[i:i + 8]) for i in range(0, len(literals), 8)]
    return f"static const float {name}[{len(values)}] = {{\n    " + ",\n    ".join(rows) + "\n};\n"


def word_bits(options: dict) -> int:
    bits = int(options.get("word_bits", 32))
    if bits not in WORD_BITS:
        raise GatecError(f"--word-bits {bits}: choose one of {', '.join(map(str, WORD_BITS))}")
    return bits


def c_array(ctype: str, name: str, values) -> str:
    values = [int(v) for v in np.asarray(values).reshape(-1)] or [0]
    rows = [", ".join(map(str, values[i:i + 16])) for i in range(0, len(values), 16)]
    return f"static const {ctype} {name}[{len(values)}] = {{\n    " + ",\n    ".join(rows) + "\n};\n"


MAIN_HEAD = """#include <stdio.h>
#include "model.h"

static void print_scores(const int32_t *counts) {
    uint32_t c;
    for (c = 0; c < GATEC_MODEL_CLASSES; c++)
        printf(c ? " %g" : "%g", (double)((float)counts[c] / GATEC_MODEL_TAU));
    printf("\\n");
}
"""

MAIN_BITS = """/* Example: read samples as lines of '0'/'1' characters on stdin, print class scores. */
""" + MAIN_HEAD + """
int main(void) {
    uint8_t bits[GATEC_MODEL_INPUTS];
    int32_t counts[GATEC_MODEL_CLASSES];
    uint32_t i = 0;
    int ch;
    while ((ch = getchar()) != EOF) {
        if (ch != '0' && ch != '1') continue;
        bits[i++] = (uint8_t)(ch - '0');
        if (i == GATEC_MODEL_INPUTS) {
            gatec_model_counts(bits, 1, counts);
            print_scores(counts);
            i = 0;
        }
    }
    return 0;
}
"""

MAIN_FEATURES = """/* Example: read samples of GATEC_MODEL_FEATURES numbers each on stdin, print class scores. */
""" + MAIN_HEAD + """
int main(void) {
    float x[GATEC_MODEL_FEATURES];
    int32_t counts[GATEC_MODEL_CLASSES];
    uint32_t i = 0;
    while (scanf("%f", &x[i]) == 1) {
        if (++i == GATEC_MODEL_FEATURES) {
            gatec_model_counts_features(x, 1, counts);
            print_scores(counts);
            i = 0;
        }
    }
    return 0;
}
"""


C_FORMS = ("table", "unrolled")
UNROLL_LIMIT = 300_000  # gates: above this the straight-line source gets too large to compile quickly
UNROLL_CHUNK = 64  # statements a function: gcc's alias walks grow with the square of a function's stores
# Around the gate functions, for GCC (not Clang or ICC, which also define __GNUC__): -O1 with the
# second scheduling pass, without the redundancy and dead-store passes (FRE, DSE), whatever the
# command line's level. The statements are already as simple as they get; of gcc -O3's time on
# them those passes and the SLP vectorizer (nothing to pair in random gates) were most, and at
# -O3 -march=native these gates ran no faster (benchmarks/bench_logic.py's network: gcc 2.6-2.7 s
# instead of 8.2-8.5 s, 6.2M samples/s instead of 5.6-5.7M).
UNROLL_PRAGMA = '("O1", "schedule-insns2", "no-tree-fre", "no-tree-dse", "no-dse")'
UNROLL_GUARD = "#if defined(__GNUC__) && !defined(__clang__) && !defined(__INTEL_COMPILER)\n"
# The 16 ops by id (gatec_logic.c's EACH_OP) over operands x and y.
C_OPS = ("x ^ x", "x & y", "x & ~y", "x", "~x & y", "y", "x ^ y", "x | y", "~(x | y)", "~(x ^ y)", "~y", "x | ~y",
         "~x", "~x | y", "~(x & y)", "~(x ^ x)")

UNROLLED_RUN = """
/* Pack a tile: per 8 rows and 8 features, a 64-bit value collects the 64 bits (byte k: feature
 * k's bits of the 8 rows, bit r = row r), from one 8-byte read of each row (the bytes put in
 * place by value, so no byte order is assumed); then each input's word gathers its bytes of
 * the tile's 8-row blocks (at 64-bit words an 8 x 8 byte transpose of 8 such values). */
#define N_EIGHTS (GATEC_MODEL_INPUTS / 8u)
#define ROW_BLOCKS (GATEC_WORD_BITS / 8)
static uint64_t across[ROW_BLOCKS * (N_EIGHTS + 1u)];

static uint64_t read8(const uint8_t *p) {{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}}

static void pack_tile(const uint8_t *rows, uint32_t n_rows, gatec_word *s) {{
    uint32_t rb, r, j, i;
    for (rb = 0; rb < ROW_BLOCKS; rb++) {{
        uint64_t *out = across + rb * (N_EIGHTS + 1u);
        uint32_t live = n_rows > rb * 8u ? (n_rows - rb * 8u < 8u ? n_rows - rb * 8u : 8u) : 0u;
        const uint8_t *row = rows + (uint64_t)rb * 8u * GATEC_MODEL_INPUTS;
        if (live == 8u) {{
            for (j = 0; j + 1u <= N_EIGHTS; j++) {{ /* not j < N_EIGHTS: N_EIGHTS may be 0 */
                uint64_t v = 0;
                for (r = 0; r < 8u; r++)
                    v |= (read8(row + (uint64_t)r * GATEC_MODEL_INPUTS + 8u * j) & 0x0101010101010101u) << r;
                out[j] = v;
            }}
        }} else {{
            for (j = 0; j + 1u <= N_EIGHTS; j++) {{
                uint64_t v = 0;
                for (r = 0; r < live; r++)
                    v |= (read8(row + (uint64_t)r * GATEC_MODEL_INPUTS + 8u * j) & 0x0101010101010101u) << r;
                out[j] = v;
            }}
        }}
        out[N_EIGHTS] = 0; /* the last inputs past a multiple of 8, byte by byte */
        for (r = 0; r < live; r++)
            for (i = 8u * N_EIGHTS; i < GATEC_MODEL_INPUTS; i++)
                out[N_EIGHTS] |= (uint64_t)(row[(uint64_t)r * GATEC_MODEL_INPUTS + i] & 1u) << (8u * (i % 8u) + r);
    }}
#if GATEC_WORD_BITS == 64
    for (j = 0; j <= N_EIGHTS && 8u * j < GATEC_MODEL_INPUTS; j++) {{
        uint64_t m[8], t;
        for (rb = 0; rb < 8u; rb++) m[rb] = across[rb * (N_EIGHTS + 1u) + j];
        /* transpose the 8 x 8 bytes: byte k of m[rb] -> byte rb of m[k] */
        for (i = 0; i < 8u; i += 2) {{
            t = ((m[i] >> 8) ^ m[i + 1]) & 0x00FF00FF00FF00FFu;
            m[i + 1] ^= t, m[i] ^= t << 8;
        }}
        for (i = 0; i < 8u; i += (i % 4u == 1u) ? 3u : 1u) {{
            t = ((m[i] >> 16) ^ m[i + 2]) & 0x0000FFFF0000FFFFu;
            m[i + 2] ^= t, m[i] ^= t << 16;
        }}
        for (i = 0; i < 4u; i++) {{
            t = ((m[i] >> 32) ^ m[i + 4]) & 0x00000000FFFFFFFFu;
            m[i + 4] ^= t, m[i] ^= t << 32;
        }}
        for (i = 0; i < 8u && 8u * j + i < GATEC_MODEL_INPUTS; i++) s[8u * j + i] = m[i];
    }}
#else
    for (i = 0; i < GATEC_MODEL_INPUTS; i++) {{
        gatec_word w = 0;
        for (rb = 0; rb < ROW_BLOCKS; rb++)
            w |= (gatec_word)((gatec_word)((across[rb * (N_EIGHTS + 1u) + i / 8u] >> (8u * (i % 8u))) & 0xFFu)
                              << (8u * rb));
        s[i] = w;
    }}
#endif
}}

{functions}
/* While a tile's gates run, the next tile's rows are prefetched a part after each chunk of gates
 * (GCC and Clang; elsewhere nothing), so that packing reads them from the cache. */
#define AHEAD_LINES ((GATEC_WORD_BITS * GATEC_MODEL_INPUTS + 63u) / 64u)
#define AHEAD_PARTS {parts}u
static void prefetch_part(const uint8_t *ahead, uint32_t part) {{
#if defined(__GNUC__)
    uint32_t line = AHEAD_LINES * part / AHEAD_PARTS, end = AHEAD_LINES * (part + 1u) / AHEAD_PARTS;
    if (ahead)
        for (; line < end; line++) __builtin_prefetch(ahead + 64u * line, 0, 2);
#else
    (void)ahead, (void)part;
#endif
}}

static void eval_gates(const uint8_t *ahead) {{
    uint32_t i;
    (void)i, (void)ahead; /* a network of wires only has no gates */
{calls}    prefetch_part(ahead, AHEAD_PARTS - 1u);
}}

/* Class counts. The outputs that are not constant are words of `counted` (the gates that only
 * GroupSum reads are written there as they are computed, the others copied from their slots),
 * output i of class c at counted[i * CLASSES + c] (classes with fewer outputs padded with zero
 * words, which count nothing); Harley-Seal carry-save adders fold 16 at a time into each
 * class's (ones, twos, fours, eights) and one word of weight 16 for its bit-sliced counter
 * planes, all classes side by side, so that a compiler may count several classes in one vector
 * instruction. Constant-one outputs add class_ones. */
#define CLASSES GATEC_MODEL_CLASSES
#define N_PLANES {n_planes}u
#define CSA(high, low, a, b, c) \\
    do {{ gatec_word u_ = (gatec_word)((a) ^ (b)); high = (gatec_word)(((a) & (b)) | (u_ & (c))); \\
         low = (gatec_word)(u_ ^ (c)); }} while (0)

/* Add carry, of weight 2^q, into class c's planes. */
static void add_plane(gatec_word planes[N_PLANES][CLASSES], uint32_t c, uint32_t q, gatec_word carry) {{
    for (; q < N_PLANES; q++) {{ /* no early exit: a branch on the carry costs more than it saves */
        gatec_word x = planes[q][c];
        planes[q][c] = (gatec_word)(x ^ carry);
        carry = (gatec_word)(x & carry);
    }}
}}

/* Transpose an 8x8 bit matrix held as 8 bytes (byte r = row r): Hacker's Delight, 7-3. */
static uint64_t transpose8(uint64_t x) {{
    uint64_t t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
    x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
    x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
    return x ^ t ^ (t << 28);
}}

static void tile_scores(uint32_t n_rows, int32_t *scores) {{
    gatec_word planes[N_PLANES][CLASSES], ones[CLASSES], twos[CLASSES], fours[CLASSES], eights[CLASSES];
    uint32_t c, i, q, t;
    memset(planes, 0, sizeof planes);
    memset(ones, 0, sizeof ones);
    memset(twos, 0, sizeof twos);
    memset(fours, 0, sizeof fours);
    memset(eights, 0, sizeof eights);
    for (i = 0; i + 16 <= COUNTED; i += 16) {{
        const gatec_word *v = counted + i * CLASSES;
        for (c = 0; c < CLASSES; c++) {{
            gatec_word o = ones[c], tw = twos[c], fo = fours[c], ei = eights[c], ta, tb, fa, fb, x, carry;
            CSA(ta, o, o, v[c], v[CLASSES + c]);
            CSA(tb, o, o, v[2 * CLASSES + c], v[3 * CLASSES + c]);
            CSA(fa, tw, tw, ta, tb);
            CSA(ta, o, o, v[4 * CLASSES + c], v[5 * CLASSES + c]);
            CSA(tb, o, o, v[6 * CLASSES + c], v[7 * CLASSES + c]);
            CSA(fb, tw, tw, ta, tb);
            CSA(ta, fo, fo, fa, fb); /* ta: eights */
            CSA(fa, o, o, v[8 * CLASSES + c], v[9 * CLASSES + c]);
            CSA(fb, o, o, v[10 * CLASSES + c], v[11 * CLASSES + c]);
            CSA(tb, tw, tw, fa, fb); /* tb: fours */
            CSA(fa, o, o, v[12 * CLASSES + c], v[13 * CLASSES + c]);
            CSA(fb, o, o, v[14 * CLASSES + c], v[15 * CLASSES + c]);
            CSA(x, tw, tw, fa, fb); /* x: fours */
            CSA(fa, fo, fo, tb, x); /* fa: eights */
            CSA(carry, ei, ei, ta, fa);
            ones[c] = o, twos[c] = tw, fours[c] = fo, eights[c] = ei;
            for (q = 4; q < N_PLANES; q++) {{ /* sixteens into the planes */
                x = planes[q][c];
                planes[q][c] = (gatec_word)(x ^ carry);
                carry = (gatec_word)(x & carry);
            }}
        }}
    }}
    for (c = 0; c < CLASSES; c++) {{
        uint32_t j;
        for (j = COUNTED / 16u * 16u; j + 1u <= COUNTED; j++) add_plane(planes, c, 0, counted[j * CLASSES + c]);
        add_plane(planes, c, 0, ones[c]);
        add_plane(planes, c, 1, twos[c]);
        add_plane(planes, c, 2, fours[c]);
        add_plane(planes, c, 3, eights[c]);
        for (t = 0; t < n_rows; t += 8) {{ /* 8 planes' bytes, transposed: one sample's count bits a byte */
            uint32_t total[8] = {{0, 0, 0, 0, 0, 0, 0, 0}}, base, u;
            for (base = 0; base < N_PLANES; base += 8) {{
                uint64_t m = 0;
                for (q = base; q < N_PLANES && q < base + 8; q++)
                    m |= (uint64_t)((planes[q][c] >> t) & 0xFFu) << (8 * (q - base));
                m = transpose8(m);
                for (u = 0; u < 8; u++) total[u] |= (uint32_t)((m >> (8 * u)) & 0xFFu) << base;
            }}
            for (u = 0; u < 8 && t + u < n_rows; u++)
                scores[(uint64_t)(t + u) * CLASSES + c] = (int32_t)total[u] + class_ones[c];
        }}
    }}
}}

static void run(const uint8_t *bits, uint32_t n, int32_t *counts) {{
    uint32_t start;
    for (start = 0; start < n; start += GATEC_WORD_BITS) {{
        uint32_t rows = n - start < GATEC_WORD_BITS ? n - start : GATEC_WORD_BITS;
        pack_tile(bits + (uint64_t)start * GATEC_MODEL_INPUTS, rows, scratch);
        eval_gates(n - start >= 2u * GATEC_WORD_BITS ? bits + (uint64_t)(start + rows) * GATEC_MODEL_INPUTS : 0);
        tile_scores(rows, counts + (uint64_t)start * GATEC_MODEL_CLASSES);
    }}
}}

void gatec_model_counts(const uint8_t *bits, uint32_t n, int32_t *counts) {{
    run(bits, n, counts);
}}

void gatec_model_counts_packed(const gatec_word *words, uint32_t n, int32_t *counts) {{
    uint32_t start, tile = 0;
    for (start = 0; start < n; start += GATEC_WORD_BITS, tile++) {{
        uint32_t rows = n - start < GATEC_WORD_BITS ? n - start : GATEC_WORD_BITS;
        memcpy(scratch, words + (uint64_t)tile * GATEC_MODEL_INPUTS, sizeof(gatec_word) * GATEC_MODEL_INPUTS);
        eval_gates(0);
        tile_scores(rows, counts + (uint64_t)start * GATEC_MODEL_CLASSES);
    }}
}}
"""


def unrolled_gates(p) -> tuple[str, str, int, int]:
    """The plan's gates as straight-line C, UNROLL_CHUNK statements a function (compiled with
    UNROLL_PRAGMA's options where the compiler is GCC), and the calls; the gates only GroupSum
    reads write their word of `counted` (see UNROLLED_RUN) instead of a slot, and the other
    outputs that are not constant are copied there from their slots at the end (a loop over two
    tables). Also the outputs a class has there at the most, and the parts the next tile's rows
    are prefetched in (one after each chunk, and one more). The functions read and write the
    static `scratch` itself, not through a pointer argument: gcc -O3 had made that substitution
    in clones of its own, and through a pointer at these options the gates ran at half the speed
    on an AMD EPYC (3.1M samples/s instead of 6.1M; the instructions the same but for addresses
    from a register instead of RIP-relative ones)."""
    ops = np.repeat(p.group_op, p.group_count)
    gate_class = np.repeat(p.group_class, p.group_count)
    k = p.k
    filled = [0] * k  # words of `counted` each class has so far
    target = []
    for c in gate_class.tolist():
        if c < 0:
            target.append(None)
        else:
            target.append(filled[c] * k + c)
            filled[c] += 1
    copies = []  # (word of counted, slot)
    for c in range(k):
        for slot in p.rest_slot[p.rest_start[c]:p.rest_start[c + 1]].tolist():
            copies.append((filled[c] * k + c, slot))
            filled[c] += 1
    lines = [(f"    s[{o}] = " if t is None else f"    counted[{t}] = ") +
             f"(gatec_word)({C_OPS[op].replace('x', f's[{a}]').replace('y', f's[{b}]')});"
             for op, a, b, o, t in zip(ops.tolist(), p.a_slot.tolist(), p.b_slot.tolist(), p.out_slot.tolist(), target)]
    chunks = [lines[i:i + UNROLL_CHUNK] for i in range(0, len(lines), UNROLL_CHUNK)]
    functions = "".join(f"static void gates_{i}(void) {{\n    gatec_word *const s = scratch;\n" + "\n".join(c) +
                        "\n}\n\n" for i, c in enumerate(chunks))
    if chunks:
        functions = (f"{UNROLL_GUARD}#pragma GCC push_options\n#pragma GCC optimize {UNROLL_PRAGMA}\n#endif\n\n"
                     f"{functions}{UNROLL_GUARD}#pragma GCC pop_options\n#endif\n\n")
    calls = "".join(f"    gates_{i}();\n    prefetch_part(ahead, {i}u);\n" for i in range(len(chunks)))
    if copies:  # a loop, not statements: the compile time grows with the statements
        functions += (c_array("uint32_t", "copy_to", [t for t, _ in copies]) +
                      c_array("uint32_t", "copy_from", [f for _, f in copies]) + "\n")
        calls += f"    for (i = 0; i < {len(copies)}u; i++) counted[copy_to[i]] = scratch[copy_from[i]];\n"
    return functions, calls, max(filled, default=0), len(chunks) + 1


def unrolled_source(p) -> str:
    """model.c's tables and runs for --c-form unrolled: only the copied outputs' places and the
    constant-one outputs' count per class are tables."""
    functions, calls, most, parts = unrolled_gates(p)
    return f"""/* Generated by gatec: the gates as straight-line code (--c-form unrolled), packing and
 * counting here too; of gatec_logic.c/.h this form uses only the word type and the scratch size. */
#include <string.h>
#include "model.h"

#define COUNTED {most}u
static gatec_word counted[(COUNTED ? COUNTED : 1u) * GATEC_MODEL_CLASSES];
{c_array("int32_t", "class_ones", p.class_ones)}
static gatec_word scratch[GATEC_SCRATCH_WORDS({p.n_slots}u, {p.n_inputs}u)];
""" + UNROLLED_RUN.format(functions=functions, calls=calls, parts=parts,
                          n_planes=int(len(p.output_slot) // p.k).bit_length() or 1)


def model_sources(ir: IR, net, encoder, bits: int, form: str = "table") -> dict[str, str]:
    # The straight-line gates reuse a slot as soon as its last reader is done (reuse "gate"): on
    # the benchmark network 5,280 slots instead of 8,321, a third less RAM, and 1.12x faster on a
    # Zen 4 EPYC, whose 32 KB L1 now holds more of them. The tables keep their slots (no faster).
    p = plan(net, reuse="gate" if form == "unrolled" else "level")
    n_features = int(np.prod(ir.inputs[0].shape[1:])) if encoder else 0
    unrolled = form == "unrolled" and p.gates_executed <= UNROLL_LIMIT  # else the table interpreter
    if form == "unrolled" and not unrolled:
        p = plan(net)
    header = f"""/* Generated by gatec: a logic network of {net.n_gates} gates ({p.gates_executed} after wires and
 * unused gates are folded away), {p.n_inputs} input bits, {p.k} classes. */
#ifndef GATEC_MODEL_H
#define GATEC_MODEL_H
#define GATEC_WORD_BITS {bits}
#include "gatec_logic.h"

#define GATEC_MODEL_INPUTS {p.n_inputs}u
#define GATEC_MODEL_CLASSES {p.k}u
#define GATEC_MODEL_TAU {float(p.tau)!r}f

/* Class scores before the division by tau (the number of ones in each class's group), for
 * n samples of GATEC_MODEL_INPUTS unpacked bits (bytes 0 or 1), row by row. */
void gatec_model_counts(const uint8_t *bits, uint32_t n, int32_t *counts);

/* The same from packed input: words[t * GATEC_MODEL_INPUTS + i], bit j = input i of sample
 * t * GATEC_WORD_BITS + j. */
void gatec_model_counts_packed(const gatec_word *words, uint32_t n, int32_t *counts);
""" + ("" if not encoder else f"""
/* The model's input encoder: bit j = x[feature[j]] > threshold[j], for GATEC_MODEL_FEATURES
 * real-valued features. */
#define GATEC_MODEL_FEATURES {n_features}u
void gatec_model_encode(const float *x, uint8_t *bits);

/* Class counts from n samples of GATEC_MODEL_FEATURES features, row by row. */
void gatec_model_counts_features(const float *x, uint32_t n, int32_t *counts);
""") + "#endif\n"
    source = f"""/* Generated by gatec. */
#include "model.h"

{c_array("uint8_t", "group_op", p.group_op)}
{c_array("uint32_t", "group_count", p.group_count)}
{c_array("uint32_t", "a_slot", p.a_slot)}
{c_array("uint32_t", "b_slot", p.b_slot)}
{c_array("uint32_t", "out_slot", p.out_slot)}
{c_array("uint32_t", "output_slot", p.output_slot)}
static const gatec_program program = {{{p.n_inputs}u, {p.n_slots}u, {len(p.group_op)}u, {len(p.output_slot)}u, {p.k}u,
    group_op, group_count, a_slot, b_slot, out_slot, output_slot}};
static gatec_word scratch[GATEC_SCRATCH_WORDS({p.n_slots}u, {p.n_inputs}u)];

void gatec_model_counts(const uint8_t *bits, uint32_t n, int32_t *counts) {{
    gatec_run(&program, bits, n, scratch, counts);
}}

void gatec_model_counts_packed(const gatec_word *words, uint32_t n, int32_t *counts) {{
    gatec_run_packed(&program, words, n, scratch, counts);
}}
""" + ("" if not encoder else f"""
{c_array("uint32_t", "encoder_feature", encoder[0])}
{c_floats("encoder_threshold", encoder[1])}
void gatec_model_encode(const float *x, uint8_t *bits) {{
    uint32_t j;
    for (j = 0; j < GATEC_MODEL_INPUTS; j++) bits[j] = (uint8_t)(x[encoder_feature[j]] > encoder_threshold[j]);
}}

static uint8_t encoded[GATEC_TILE_SAMPLES * GATEC_MODEL_INPUTS];

void gatec_model_counts_features(const float *x, uint32_t n, int32_t *counts) {{
    uint32_t start, r;
    for (start = 0; start < n; start += GATEC_TILE_SAMPLES) {{
        uint32_t rows = n - start < GATEC_TILE_SAMPLES ? n - start : GATEC_TILE_SAMPLES;
        for (r = 0; r < rows; r++)
            gatec_model_encode(x + (uint64_t)(start + r) * GATEC_MODEL_FEATURES, encoded + r * GATEC_MODEL_INPUTS);
        gatec_run(&program, encoded, rows, scratch, counts + (uint64_t)start * GATEC_MODEL_CLASSES);
    }}
}}
""")
    if unrolled:  # the same encoder code, around the straight-line gates instead of the tables
        source = unrolled_source(p) + (source[source.index("\nstatic const uint32_t encoder_feature"):].replace(
            "gatec_run(&program, encoded, rows, scratch, ", "run(encoded, rows, ") if encoder else "")
    main = MAIN_FEATURES if encoder else MAIN_BITS
    makefile = f"""# Builds the example program and a static library; CC and CFLAGS may be overridden.
CC ?= cc
CFLAGS ?= {' '.join(CFLAGS)}

all: model libmodel.a

model: main.c model.c gatec_logic.c model.h gatec_logic.h
\t$(CC) $(CFLAGS) -o $@ main.c model.c gatec_logic.c

libmodel.a: model.o gatec_logic.o
\t$(AR) rcs $@ $^

model.o gatec_logic.o: model.h gatec_logic.h

clean:
\trm -f model libmodel.a *.o

.PHONY: all clean
"""
    logic_c = (CSRC / "gatec_logic.c").read_text().replace('#include "gatec_logic.h"', '#include "model.h"')
    return {"model.h": header, "model.c": source, "main.c": main, "Makefile": makefile,
            "gatec_logic.h": (CSRC / "gatec_logic.h").read_text(), "gatec_logic.c": logic_c}


class Runner:
    """Builds the firmware as a shared library with the artifact's own sources and flags, and
    runs it on the emulator's inputs."""

    def __init__(self, folder: Path, tau: float, n_inputs: int, k: int, extra_flags: list[str] = (),
                 features: bool = False):
        self.tmp = tempfile.TemporaryDirectory(prefix="gatec-c-")
        lib = Path(self.tmp.name) / "libmodel.so"
        cc = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc") or ""]
        if not shutil.which(cc[0]):
            raise GatecError(f"the c target needs a C compiler ({cc[0] or 'cc or gcc'}, from $CC or PATH) "
                             f"to verify the firmware")
        proc = subprocess.run([*cc, *CFLAGS, *extra_flags, "-shared", "-fPIC", "-o", str(lib), "model.c", "gatec_logic.c"],
                              cwd=folder, capture_output=True, text=True)
        if proc.returncode != 0:
            raise GatecError(f"the firmware does not compile: {proc.stderr.strip()[:500]}")
        self.lib = ctypes.CDLL(str(lib))
        self.entry = self.lib.gatec_model_counts_features if features else self.lib.gatec_model_counts
        self.entry.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p]
        self.dtype = np.float32 if features else np.uint8
        self.tau, self.n_inputs, self.k = np.float32(tau), n_inputs, k

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        x = np.ascontiguousarray(arrays[0], dtype=self.dtype).reshape(len(arrays[0]), -1)
        counts = np.empty((len(x), self.k), np.int32)
        self.entry(x.ctypes.data, len(x), counts.ctypes.data)
        return [counts.astype(np.float32) / self.tau]


class CTarget(Target):
    name = "c"
    options = (
        Option("word_bits", "c: the firmware's word size (default 32)", type=int, choices=WORD_BITS, default=32),
        Option("cflags", "c: extra compiler flags for building the firmware while verifying", cli=False),
        Option("c_form", "c: the network as tables read by the interpreter (default), or its gates as straight-line "
                         f"code (faster; networks over {UNROLL_LIMIT:,} gates stay tables)", choices=C_FORMS,
               default="table"),
    )

    def describe(self) -> str:
        return "portable bit-packed C99 firmware for logic networks (gatec_logic.c + model tables)"

    def plan(self, ir: IR, options: dict, data=None) -> Plan:
        net, encoder = network_and_encoder(ir)
        form = options.get("c_form", "table")
        if form not in C_FORMS:
            raise GatecError(f"--c-form {form}: choose {' or '.join(C_FORMS)}")
        return Plan(ir, options, (net, encoder, word_bits(options), form))

    def build(self, plan: Plan, folder: Path) -> list[str]:
        files = model_sources(plan.ir, *plan.parts)
        for name, text in files.items():
            (Path(folder) / name).write_text(text)
        return sorted(files)

    def load(self, folder: Path, options: dict) -> Runner:
        header = (Path(folder) / "model.h").read_text()

        def define(name):
            return next(line.split()[2] for line in header.splitlines() if line.startswith(f"#define {name} "))
        return Runner(Path(folder), float(define("GATEC_MODEL_TAU").rstrip("f")),
                      int(define("GATEC_MODEL_INPUTS")[:-1]), int(define("GATEC_MODEL_CLASSES")[:-1]),
                      str(options.get("cflags", "")).split(), "GATEC_MODEL_FEATURES" in header)

    def tolerance(self, plan: Plan) -> Tolerance:
        return Tolerance(exact=True)


TARGET = CTarget()
