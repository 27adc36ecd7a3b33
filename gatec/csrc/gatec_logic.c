/* gatec logic-network interpreter; see gatec_logic.h. One source serves the C firmware
 * (any word size, GATEC_TILE 1) and the host engine (64-bit words, a tile of several words so
 * that the compiler vectorizes each gate over the tile). */
#include <string.h>
#include "gatec_logic.h"

#define W GATEC_TILE
#define ONES ((gatec_word)~(gatec_word)0)

#if defined(GATEC_FAST_PACK) && GATEC_WORD_BITS == 64 && GATEC_TILE == 8 && defined(__AVX512BW__) && \
    defined(__AVX512VBMI__)
#include <immintrin.h>
/* Host engine with AVX-512: a slot is one 64-byte vector whose byte b holds samples 8b..8b+7.
 * Per 64 features: each 8 rows fold into one vector (byte f: bit r = row r's feature f), then
 * the 64 x 64 byte matrix of these vectors is transposed so that each feature's bytes line up. */

/* Swap the off-diagonal d x d blocks of each 2d x 2d block of 64-bit words between rows a and
 * a + d; lo/hi pick row a's and row a + d's new words (8 + x: word x of row a + d). */
#define SWAP_BLOCKS(v, a, d, lo, hi)                              \
    do {                                                          \
        __m512i x_ = v[a], y_ = v[(a) + (d)];                     \
        v[a] = _mm512_permutex2var_epi64(x_, lo, y_);             \
        v[(a) + (d)] = _mm512_permutex2var_epi64(x_, hi, y_);     \
    } while (0)

/* Transpose the 8 x 8 matrix of 64-bit words held in v[0..7] (row i = v[i]), d = 1, 2, 4. */
static inline void transpose_words(__m512i *v) {
    const __m512i lo1 = _mm512_setr_epi64(0, 8, 2, 10, 4, 12, 6, 14), hi1 = _mm512_setr_epi64(1, 9, 3, 11, 5, 13, 7, 15);
    const __m512i lo2 = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi2 = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    const __m512i lo4 = _mm512_setr_epi64(0, 1, 2, 3, 8, 9, 10, 11), hi4 = _mm512_setr_epi64(4, 5, 6, 7, 12, 13, 14, 15);
    SWAP_BLOCKS(v, 0, 1, lo1, hi1); SWAP_BLOCKS(v, 2, 1, lo1, hi1); SWAP_BLOCKS(v, 4, 1, lo1, hi1); SWAP_BLOCKS(v, 6, 1, lo1, hi1);
    SWAP_BLOCKS(v, 0, 2, lo2, hi2); SWAP_BLOCKS(v, 1, 2, lo2, hi2); SWAP_BLOCKS(v, 4, 2, lo2, hi2); SWAP_BLOCKS(v, 5, 2, lo2, hi2);
    SWAP_BLOCKS(v, 0, 4, lo4, hi4); SWAP_BLOCKS(v, 1, 4, lo4, hi4); SWAP_BLOCKS(v, 2, 4, lo4, hi4); SWAP_BLOCKS(v, 3, 4, lo4, hi4);
}

void gatec_pack_tile(const gatec_program *p, const uint8_t *rows, uint32_t n_rows, gatec_word *act) {
    uint32_t n_in = p->n_inputs, i, rb, r, g, j, b;
    __m512i t[64], v[8], ones = _mm512_set1_epi8(1), bytes_across;
    uint8_t across[64];
    for (j = 0; j < 64; j++) across[j] = (uint8_t)(8 * (j % 8) + j / 8);  /* 8 x 8 byte transpose in each word */
    bytes_across = _mm512_loadu_si512(across);
    for (i = 0; i < n_in; i += 64) {
        __mmask64 in = n_in - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n_in - i)) - 1);
        for (rb = 0; rb < 64; rb++) {  /* t[rb], byte f: bit r = feature i + f of row 8 rb + r */
            __m512i x = _mm512_setzero_si512();
            for (r = 8; r-- > 0;) {
                x = _mm512_add_epi8(x, x);
                if (rb * 8 + r < n_rows)
                    x = _mm512_ternarylogic_epi64(x, _mm512_maskz_loadu_epi8(in, rows + (uint64_t)(rb * 8 + r) * n_in + i),
                                                  ones, 0xF8); /* x | (row & 1) */
            }
            t[rb] = x;
        }
        /* t[8g + r] word j -> v[j] word r; bytes across -> word b of v[j] holds byte b of those. */
        for (g = 0; g < 8; g++) {
            for (j = 0; j < 8; j++) v[j] = t[8 * g + j];
            transpose_words(v);
            for (j = 0; j < 8; j++) t[8 * g + j] = _mm512_permutexvar_epi8(bytes_across, v[j]);
        }
        /* Word b of t[8g + j] is word g of feature 8j + b's slot. */
        for (j = 0; j < 8 && i + 8 * j < n_in; j++) {
            for (g = 0; g < 8; g++) v[g] = t[8 * g + j];
            transpose_words(v);
            for (b = 0; b < 8 && i + 8 * j + b < n_in; b++) _mm512_storeu_si512(act + (uint64_t)(i + 8 * j + b) * W, v[b]);
        }
    }
}
#elif defined(GATEC_FAST_PACK) && GATEC_WORD_BITS == 64
/* Host engine (little-endian): 8 rows at a time, 8 features per uint64 load, so that byte k of
 * `v` collects feature i+k of the 8 rows; then the bytes of each word are gathered. */
void gatec_pack_tile(const gatec_program *p, const uint8_t *rows, uint32_t n_rows, gatec_word *act) {
    uint32_t n_in = p->n_inputs, i, r, rb, f, w, b;
    uint8_t *bytes = (uint8_t *)(act + ((uint64_t)p->n_slots + GATEC_COUNTER_PLANES) * W);
    for (rb = 0; rb < GATEC_TILE_SAMPLES / 8; rb++) {
        uint8_t *out = bytes + (uint64_t)rb * n_in;
        uint32_t live = n_rows > rb * 8 ? n_rows - rb * 8 : 0;
        if (live >= 8) {
            const uint8_t *row = rows + (uint64_t)rb * 8 * n_in;
            for (i = 0; i + 8 <= n_in; i += 8) {
                uint64_t v = 0, x;
                for (r = 0; r < 8; r++) {
                    memcpy(&x, row + (uint64_t)r * n_in + i, 8);
                    v |= (x & 0x0101010101010101ull) << r;
                }
                memcpy(out + i, &v, 8);
            }
            for (; i < n_in; i++) {
                uint8_t v = 0;
                for (r = 0; r < 8; r++) v |= (uint8_t)((row[(uint64_t)r * n_in + i] & 1u) << r);
                out[i] = v;
            }
        } else {
            memset(out, 0, n_in);
            for (r = 0; r < live; r++)
                for (i = 0; i < n_in; i++) out[i] |= (uint8_t)((rows[(uint64_t)(rb * 8 + r) * n_in + i] & 1u) << r);
        }
    }
    for (f = 0; f < n_in; f++)
        for (w = 0; w < W; w++) {
            gatec_word word = 0;
            for (b = 0; b < 8; b++) word |= (gatec_word)bytes[(uint64_t)(w * 8 + b) * n_in + f] << (8 * b);
            act[(uint64_t)f * W + w] = word;
        }
}
#else
void gatec_pack_tile(const gatec_program *p, const uint8_t *rows, uint32_t n_rows, gatec_word *act) {
    uint32_t n_in = p->n_inputs, i, r;
    memset(act, 0, sizeof(gatec_word) * n_in * W);
    for (r = 0; r < n_rows; r++) {
        const uint8_t *row = rows + (uint64_t)r * n_in;
        gatec_word *dst = act + r / GATEC_WORD_BITS;
        uint32_t shift = r % GATEC_WORD_BITS;
        /* no branch on the bit: on random inputs half of them would be mispredicted (the table
         * firmware packed at a fifth of its 32-bit speed on a Xeon) */
        for (i = 0; i < n_in; i++) dst[(uint64_t)i * W] |= (gatec_word)((gatec_word)(row[i] & 1u) << shift);
    }
}
#endif

/* A slot is GATEC_TILE words. The host engine (GATEC_VECTOR, GCC/Clang) handles a slot as one
 * vector so that each gate is a few SIMD instructions; the firmware uses one word a slot. */
#ifdef GATEC_VECTOR
typedef gatec_word slot_t __attribute__((vector_size(sizeof(gatec_word) * GATEC_TILE)));
static inline int nonzero(slot_t v) {
    gatec_word r = 0;
    int i;
    for (i = 0; i < GATEC_TILE; i++) r |= v[i];
    return r != 0;
}
#else
#if GATEC_TILE != 1
#error "GATEC_TILE > 1 needs GATEC_VECTOR"
#endif
typedef gatec_word slot_t;
#define nonzero(v) ((v) != 0)
#endif

static inline slot_t load(const gatec_word *p) {
    slot_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void store(gatec_word *p, slot_t v) { memcpy(p, &v, sizeof v); }

/* The host engine's input is too large for the cache: while a tile's gates run, the next
 * tile's rows are prefetched a few bytes per gate, so that packing reads them from cache. Low
 * temporal locality (prefetcht1): into L2 but not L1, where the gates' slots are. */
#ifdef GATEC_FAST_PACK
#define PREFETCH_NEXT_ROWS() (__builtin_prefetch(ahead, 0, 2), ahead += ahead_step)
#else
#define PREFETCH_NEXT_ROWS() ((void)ahead, (void)ahead_step)
#endif

/* One loop per op, so that each loop body is a few bitwise instructions. */
/* The 16 ops by id (difflogic's order), each as an expression of the two operand words x and y:
   one switch body for every loop that evaluates gates. */
#define EACH_OP(LOOP)                                                                              \
    case 0: LOOP(x ^ x)                                                                            \
    case 1: LOOP(x & y)                                                                            \
    case 2: LOOP(x & ~y)                                                                           \
    case 3: LOOP(x)                                                                                \
    case 4: LOOP(~x & y)                                                                           \
    case 5: LOOP(y)                                                                                \
    case 6: LOOP(x ^ y)                                                                            \
    case 7: LOOP(x | y)                                                                            \
    case 8: LOOP(~(x | y))                                                                         \
    case 9: LOOP(~(x ^ y))                                                                         \
    case 10: LOOP(~y)                                                                              \
    case 11: LOOP(x | ~y)                                                                          \
    case 12: LOOP(~x)                                                                              \
    case 13: LOOP(~x | y)                                                                          \
    case 14: LOOP(~(x & y))                                                                        \
    default: LOOP(~(x ^ x))

#define GATE_LOOP(expr)                                                     \
    for (g = 0; g < count; g++) {                                           \
        PREFETCH_NEXT_ROWS();                                               \
        slot_t x = load(act + (uint64_t)A[g] * W), y = load(act + (uint64_t)B[g] * W); \
        store(act + (uint64_t)O[g] * W, (slot_t)(expr));                    \
        (void)x; (void)y;                                                   \
    }                                                                       \
    break;

static void eval_tile(const gatec_program *p, gatec_word *act, uint32_t n_groups, const uint8_t *ahead,
                      uint32_t ahead_step) {
    const uint32_t *A = p->a_slot, *B = p->b_slot, *O = p->out_slot;
    uint32_t gi, g;
    for (gi = 0; gi < n_groups; gi++) {
        uint32_t count = p->group_count[gi];
        switch (p->group_op[gi]) {
        EACH_OP(GATE_LOOP)
        }
        A += count; B += count; O += count;
    }
}

void gatec_eval_tile(const gatec_program *p, gatec_word *act) { eval_tile(p, act, p->n_groups, (const uint8_t *)act, 0); }

/* Add x, of weight 2^plane, into the bit-sliced counters. */
static void counter_add(gatec_word *planes, uint32_t n_planes, uint32_t plane, slot_t carry) {
    uint32_t q;
    for (q = plane; q < n_planes; q++) {
        slot_t c = load(planes + q * W);
        store(planes + q * W, c ^ carry);
        carry = c & carry;
    }
}

/* Carry-save adder: (high, low) = a + b + c, bit for bit. */
#define CSA(high, low, a, b, c)            \
    do {                                   \
        slot_t u_ = (a) ^ (b);             \
        high = ((a) & (b)) | (u_ & (c));   \
        low = u_ ^ (c);                    \
    } while (0)

/* One class's count: Harley-Seal carry-save adders fold sixteen words at a time into (eights,
 * fours, twos, ones) and one word of weight 16, so the counter planes see one word in sixteen. */
typedef struct {
    slot_t ones, twos, fours, eights;
    gatec_word *planes;
    uint32_t n_planes;
} counter;

static void counter_start(counter *k, gatec_word *planes, uint32_t n_planes) {
    memset(&k->ones, 0, sizeof k->ones);
    k->twos = k->fours = k->eights = k->ones;
    k->planes = planes;
    k->n_planes = n_planes;
    memset(planes, 0, sizeof(gatec_word) * n_planes * W);
}

static void counter_add16(counter *k, const slot_t *v) {
    slot_t twos_a, twos_b, fours_a, fours_b, sixteens;
    CSA(twos_a, k->ones, k->ones, v[0], v[1]);
    CSA(twos_b, k->ones, k->ones, v[2], v[3]);
    CSA(fours_a, k->twos, k->twos, twos_a, twos_b);
    CSA(twos_a, k->ones, k->ones, v[4], v[5]);
    CSA(twos_b, k->ones, k->ones, v[6], v[7]);
    CSA(fours_b, k->twos, k->twos, twos_a, twos_b);
    CSA(twos_a, k->fours, k->fours, fours_a, fours_b);  /* twos_a: eights */
    CSA(fours_a, k->ones, k->ones, v[8], v[9]);
    CSA(fours_b, k->ones, k->ones, v[10], v[11]);
    CSA(twos_b, k->twos, k->twos, fours_a, fours_b);    /* twos_b: fours */
    CSA(fours_a, k->ones, k->ones, v[12], v[13]);
    CSA(fours_b, k->ones, k->ones, v[14], v[15]);
    CSA(sixteens, k->twos, k->twos, fours_a, fours_b);  /* sixteens: fours */
    CSA(fours_a, k->fours, k->fours, twos_b, sixteens); /* fours_a: eights */
    CSA(sixteens, k->eights, k->eights, twos_a, fours_a);
    counter_add(k->planes, k->n_planes, 4, sixteens);
}

/* Fold the last n (< 16) words of v and the carry-save state into the planes. */
static void counter_finish(counter *k, const slot_t *v, uint32_t n) {
    uint32_t i;
    for (i = 0; i < n; i++) counter_add(k->planes, k->n_planes, 0, v[i]);
    counter_add(k->planes, k->n_planes, 0, k->ones);
    counter_add(k->planes, k->n_planes, 1, k->twos);
    counter_add(k->planes, k->n_planes, 2, k->fours);
    counter_add(k->planes, k->n_planes, 3, k->eights);
}

#if defined(GATEC_VECTOR) && defined(__AVX512F__) && GATEC_WORD_BITS == 64
#include <immintrin.h>
/* Planes back to counts plus `offset` into scores[s * k + c], 16 samples at a time: plane q's 16
 * bits mask an add of 2^q into 16 lanes. */
static void planes_to_scores(const counter *k, uint32_t n_rows, uint32_t n_classes, uint32_t c, int32_t offset,
                             int32_t *scores) {
    uint32_t s, q, t;
    int32_t lanes[16];
    for (s = 0; s < n_rows; s += 16) {
        __m512i total = _mm512_set1_epi32(offset);
        for (q = 0; q < k->n_planes; q++) {
            uint16_t bits;
            memcpy(&bits, (const uint8_t *)(k->planes + q * W) + s / 8, sizeof bits);
            total = _mm512_mask_add_epi32(total, bits, total, _mm512_set1_epi32(1 << q));
        }
        _mm512_storeu_si512(lanes, total);
        for (t = 0; t < 16 && s + t < n_rows; t++) scores[(uint64_t)(s + t) * n_classes + c] = lanes[t];
    }
}
#else
/* Transpose an 8x8 bit matrix held as 8 bytes (byte r = row r): Hacker's Delight, 7-3. */
static uint64_t transpose8(uint64_t x) {
    uint64_t t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
    x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
    x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
    return x ^ t ^ (t << 28);
}

/* Planes back to counts plus `offset` into scores[s * k + c], 8 samples at a time: 8 planes' bytes
 * form an 8x8 bit matrix whose transpose holds one sample's count bits per byte. */
static void planes_to_scores(const counter *k, uint32_t n_rows, uint32_t n_classes, uint32_t c, int32_t offset,
                             int32_t *scores) {
    uint32_t s, q, t, base;
    for (s = 0; s < n_rows; s += 8) {
        uint32_t word = s / GATEC_WORD_BITS, shift = s % GATEC_WORD_BITS;
        uint32_t total[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (base = 0; base < k->n_planes; base += 8) {
            uint64_t m = 0;
            for (q = base; q < k->n_planes && q < base + 8; q++)
                m |= (uint64_t)((k->planes[q * W + word] >> shift) & 0xFFu) << (8 * (q - base));
            m = transpose8(m);
            for (t = 0; t < 8; t++) total[t] |= (uint32_t)((m >> (8 * t)) & 0xFFu) << base;
        }
        for (t = 0; t < 8 && s + t < n_rows; t++) scores[(uint64_t)(s + t) * n_classes + c] = (int32_t)total[t] + offset;
    }
}
#endif

static uint32_t counter_planes(uint32_t most) {
    uint32_t n_planes = 1;
    while (n_planes < GATEC_COUNTER_PLANES && (1ul << n_planes) <= most) n_planes++;
    return n_planes;
}

void gatec_tile_scores(const gatec_program *p, gatec_word *act, uint32_t n_rows, int32_t *scores) {
    uint32_t per_class = p->n_outputs / p->k, c, i, j;
    counter k;
    slot_t v[16];
    for (c = 0; c < p->k; c++) {
        const uint32_t *slots = p->output_slot + c * per_class;
        counter_start(&k, act + (uint64_t)p->n_slots * W, counter_planes(per_class));
        for (i = 0; i + 16 <= per_class; i += 16) {
            for (j = 0; j < 16; j++) v[j] = load(act + (uint64_t)slots[i + j] * W);
            counter_add16(&k, v);
        }
        for (j = 0; i < per_class; i++, j++) v[j] = load(act + (uint64_t)slots[i] * W);
        counter_finish(&k, v, j);
        planes_to_scores(&k, n_rows, p->k, c, 0, scores);
    }
}

/* Gates read from the next tile's rows between prefetches (see PREFETCH_NEXT_ROWS). */
static uint32_t prefetch_step(const gatec_program *p) {
    uint32_t g, gates = 0;
    for (g = 0; g < p->n_groups; g++) gates += p->group_count[g];
    return gates ? (uint32_t)((uint64_t)GATEC_TILE_SAMPLES * p->n_inputs / gates) : 0;
}

void gatec_run(const gatec_program *p, const uint8_t *bits, uint32_t n, gatec_word *scratch, int32_t *scores) {
    uint32_t start, step = prefetch_step(p);
    for (start = 0; start < n; start += GATEC_TILE_SAMPLES) {
        uint32_t rows = n - start < GATEC_TILE_SAMPLES ? n - start : GATEC_TILE_SAMPLES;
        int full_next = n - start >= 2u * GATEC_TILE_SAMPLES;
        gatec_pack_tile(p, bits + (uint64_t)start * p->n_inputs, rows, scratch);
        eval_tile(p, scratch, p->n_groups, bits + (uint64_t)(start + (full_next ? GATEC_TILE_SAMPLES : 0)) * p->n_inputs,
                  full_next ? step : 0);
        gatec_tile_scores(p, scratch, rows, scores + (uint64_t)start * p->k);
    }
}

#ifdef GATEC_VECTOR
/* The counted groups' gates go to a 16-word buffer instead of their slots; every 16 go to the counter. */
#define COUNT_LOOP(expr)                                                    \
    for (g = 0; g < count; g++) {                                           \
        PREFETCH_NEXT_ROWS();                                               \
        slot_t x = load(act + (uint64_t)A[g] * W), y = load(act + (uint64_t)B[g] * W); \
        v[fill++] = (slot_t)(expr);                                         \
        (void)x; (void)y;                                                   \
        if (fill == 16) counter_add16(&k, v), fill = 0;                     \
    }                                                                       \
    break;

static void count_tile(const gatec_program *p, const gatec_counting *cp, gatec_word *act, uint32_t first,
                       uint32_t n_rows, int32_t *scores, const uint8_t *ahead, uint32_t ahead_step) {
    const uint32_t *A = p->a_slot, *B = p->b_slot;
    uint32_t gi = first, g, c, r, fill, n_planes = counter_planes(p->n_outputs / p->k);
    counter k;
    slot_t v[16];
    for (g = 0; g < first; g++) A += p->group_count[g], B += p->group_count[g];
    for (c = 0; c < p->k; c++) {
        counter_start(&k, act + (uint64_t)p->n_slots * W, n_planes);
        fill = 0;
        for (; gi < p->n_groups && cp->group_class[gi] == (int32_t)c; gi++) {
            uint32_t count = p->group_count[gi];
            switch (p->group_op[gi]) {
            EACH_OP(COUNT_LOOP)
            }
            A += count; B += count;
        }
        for (r = cp->rest_start[c]; r < cp->rest_start[c + 1]; r++) {
            v[fill++] = load(act + (uint64_t)cp->rest_slot[r] * W);
            if (fill == 16) counter_add16(&k, v), fill = 0;
        }
        counter_finish(&k, v, fill);
        planes_to_scores(&k, n_rows, p->k, c, cp->class_ones[c], scores);
    }
}

void gatec_run_counting(const gatec_program *p, const gatec_counting *cp, const uint8_t *bits, uint32_t n,
                        gatec_word *scratch, int32_t *scores) {
    uint32_t start, step = prefetch_step(p), first = p->n_groups, g, before = 0;
    while (first > 0 && cp->group_class[first - 1] >= 0) first--;
    for (g = 0; g < first; g++) before += p->group_count[g];
    for (start = 0; start < n; start += GATEC_TILE_SAMPLES) {
        uint32_t rows = n - start < GATEC_TILE_SAMPLES ? n - start : GATEC_TILE_SAMPLES;
        int full_next = n - start >= 2u * GATEC_TILE_SAMPLES;
        const uint8_t *ahead = bits + (uint64_t)(start + (full_next ? GATEC_TILE_SAMPLES : 0)) * p->n_inputs;
        uint32_t ahead_step = full_next ? step : 0;
        gatec_pack_tile(p, bits + (uint64_t)start * p->n_inputs, rows, scratch);
        eval_tile(p, scratch, first, ahead, ahead_step);
        count_tile(p, cp, scratch, first, rows, scores + (uint64_t)start * p->k, ahead + (uint64_t)before * ahead_step,
                   ahead_step);
    }
}
#endif

void gatec_run_packed(const gatec_program *p, const gatec_word *words, uint32_t n, gatec_word *scratch,
                      int32_t *scores) {
    uint32_t start, tile = 0;
    for (start = 0; start < n; start += GATEC_TILE_SAMPLES, tile++) {
        uint32_t rows = n - start < GATEC_TILE_SAMPLES ? n - start : GATEC_TILE_SAMPLES;
        memcpy(scratch, words + (uint64_t)tile * p->n_inputs * W, sizeof(gatec_word) * p->n_inputs * W);
        gatec_eval_tile(p, scratch);
        gatec_tile_scores(p, scratch, rows, scores + (uint64_t)start * p->k);
    }
}
