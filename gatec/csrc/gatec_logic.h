/* gatec logic-network interpreter: portable C99, nothing from libc beyond stdint.h/string.h.
 *
 * A network is a program of gate groups. Each group applies one op (truth-table id 0..15,
 * id = 8*f(0,0) + 4*f(0,1) + 2*f(1,0) + f(1,1)) to `count` gates; gate i reads slots
 * a_slot[i], b_slot[i] and writes slot out_slot[i]. Slots 0..n_inputs-1 hold the input bits;
 * the others are reused once no later gate reads them, so a tile's working set stays small.
 * The outputs are n_outputs slots in k equal groups; each class score is the number of
 * ones in its group (GroupSum before the division by tau).
 *
 * Bits are packed across samples: a slot holds GATEC_TILE words, bit j of word w is sample
 * w*GATEC_WORD_BITS + j of the tile. GATEC_WORD_BITS (8, 16, 32, 64) and GATEC_TILE are set
 * before including this header.
 */
#ifndef GATEC_LOGIC_H
#define GATEC_LOGIC_H
#include <stdint.h>

#ifndef GATEC_WORD_BITS
#define GATEC_WORD_BITS 64
#endif
#ifndef GATEC_TILE
#define GATEC_TILE 1
#endif

#if GATEC_WORD_BITS == 8
typedef uint8_t gatec_word;
#elif GATEC_WORD_BITS == 16
typedef uint16_t gatec_word;
#elif GATEC_WORD_BITS == 32
typedef uint32_t gatec_word;
#elif GATEC_WORD_BITS == 64
typedef uint64_t gatec_word;
#else
#error "GATEC_WORD_BITS must be 8, 16, 32 or 64"
#endif

#define GATEC_TILE_SAMPLES (GATEC_TILE * GATEC_WORD_BITS)

typedef struct {
    uint32_t n_inputs, n_slots, n_groups, n_outputs, k;
    const uint8_t *group_op;       /* n_groups */
    const uint32_t *group_count;   /* n_groups */
    const uint32_t *a_slot, *b_slot, *out_slot; /* one per gate, in group order */
    const uint32_t *output_slot;   /* n_outputs: the last layer's gates, class by class */
} gatec_program;

/* Scratch words a tile needs: the slots, the class counters, and room for packing. */
#define GATEC_COUNTER_PLANES 24
#define GATEC_SCRATCH_WORDS(n_slots, n_inputs) \
    (((uint32_t)(n_slots) + GATEC_COUNTER_PLANES + (uint32_t)(n_inputs)) * GATEC_TILE)

/* Pack one tile of unpacked bits (row-major, n_rows samples of n_inputs bytes, each 0 or 1)
 * into slots 0..n_inputs-1. Rows past n_rows are zero. */
void gatec_pack_tile(const gatec_program *p, const uint8_t *rows, uint32_t n_rows, gatec_word *act);

/* Evaluate every gate group on one tile whose input slots are filled. */
void gatec_eval_tile(const gatec_program *p, gatec_word *act);

/* Class counts for the tile's first n_rows samples: scores[s * k + c]. */
void gatec_tile_scores(const gatec_program *p, gatec_word *act, uint32_t n_rows, int32_t *scores);

/* Whole batch: unpacked input bits (n x n_inputs bytes) -> scores (n x k). */
void gatec_run(const gatec_program *p, const uint8_t *bits, uint32_t n, gatec_word *scratch, int32_t *scores);

/* Whole batch from packed input: words[(t * n_inputs + i) * GATEC_TILE + w] holds input i of
 * tile t (see gatec_pack_tile's layout). */
void gatec_run_packed(const gatec_program *p, const gatec_word *words, uint32_t n, gatec_word *scratch,
                      int32_t *scores);

#ifdef GATEC_VECTOR
/* Host engine: gatec_run, but the gates of the program's last groups count straight into their
 * class (see gatec.netlist.Program) instead of being stored and read back. */
typedef struct {
    const int32_t *group_class;  /* n_groups: the class a group's gates count for, or -1; those >= 0 last */
    const uint32_t *rest_start;  /* k + 1: rest_slot[rest_start[c]:rest_start[c + 1]] are class c's */
    const uint32_t *rest_slot;   /* the other outputs' slots, class by class */
    const int32_t *class_ones;   /* k: outputs that are the constant 1 */
} gatec_counting;

void gatec_run_counting(const gatec_program *p, const gatec_counting *cp, const uint8_t *bits, uint32_t n,
                        gatec_word *scratch, int32_t *scores);
#endif
#endif
