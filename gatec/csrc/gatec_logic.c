/* gatec logic-network interpreter; see gatec_logic.h. One source serves the C firmware
 * (any word size, GATEC_TILE 1) and the host engine (64-bit words, a tile of several words so
 * that the compiler vectorizes each gate over the tile). */
#include <string.h>
#include "gatec_logic.h"

#define W GATEC_TILE
#define ONES ((gatec_word)~(gatec_word)0)

#if defined(GATEC_FAST_PACK) && GATEC_WORD_BITS == 64
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
        gatec_word bit = (gatec_word)((gatec_word)1u << (r % GATEC_WORD_BITS));
        for (i = 0; i < n_in; i++)
            if (row[i] & 1u) dst[(uint64_t)i * W] |= bit;
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
 * tile's rows are prefetched a few bytes per gate, so that packing reads them from cache. */
#ifdef GATEC_FAST_PACK
#define PREFETCH_NEXT_ROWS() (__builtin_prefetch(ahead), ahead += ahead_step)
#else
#define PREFETCH_NEXT_ROWS() ((void)ahead, (void)ahead_step)
#endif

/* One loop per op, so that each loop body is a few bitwise instructions. */
#define GATE_LOOP(expr)                                                     \
    for (g = 0; g < count; g++) {                                           \
        PREFETCH_NEXT_ROWS();                                               \
        slot_t x = load(act + (uint64_t)A[g] * W), y = load(act + (uint64_t)B[g] * W); \
        store(act + (uint64_t)O[g] * W, (slot_t)(expr));                    \
        (void)x; (void)y;                                                   \
    }                                                                       \
    break;

static void eval_tile(const gatec_program *p, gatec_word *act, const uint8_t *ahead, uint32_t ahead_step) {
    const uint32_t *A = p->a_slot, *B = p->b_slot, *O = p->out_slot;
    uint32_t gi, g;
    for (gi = 0; gi < p->n_groups; gi++) {
        uint32_t count = p->group_count[gi];
        switch (p->group_op[gi]) {
        case 0: GATE_LOOP(x ^ x)
        case 1: GATE_LOOP(x & y)
        case 2: GATE_LOOP(x & ~y)
        case 3: GATE_LOOP(x)
        case 4: GATE_LOOP(~x & y)
        case 5: GATE_LOOP(y)
        case 6: GATE_LOOP(x ^ y)
        case 7: GATE_LOOP(x | y)
        case 8: GATE_LOOP(~(x | y))
        case 9: GATE_LOOP(~(x ^ y))
        case 10: GATE_LOOP(~y)
        case 11: GATE_LOOP(x | ~y)
        case 12: GATE_LOOP(~x)
        case 13: GATE_LOOP(~x | y)
        case 14: GATE_LOOP(~(x & y))
        default: GATE_LOOP(~(x ^ x))
        }
        A += count; B += count; O += count;
    }
}

void gatec_eval_tile(const gatec_program *p, gatec_word *act) { eval_tile(p, act, (const uint8_t *)act, 0); }

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

#define SLOT(i) load(act + (uint64_t)slots[i] * W)

void gatec_tile_scores(const gatec_program *p, gatec_word *act, uint32_t n_rows, int32_t *scores) {
    uint32_t per_class = p->n_outputs / p->k, c, i, s, q, n_planes = 1;
    gatec_word *planes = act + (uint64_t)p->n_slots * W;
    while (n_planes < GATEC_COUNTER_PLANES && (1ul << n_planes) <= per_class) n_planes++;
    for (c = 0; c < p->k; c++) {
        const uint32_t *slots = p->output_slot + c * per_class;
        slot_t zero, ones, twos, fours, eights, twos_a, twos_b, fours_a, fours_b, sixteens;
        memset(&zero, 0, sizeof zero);
        ones = twos = fours = eights = zero;
        memset(planes, 0, sizeof(gatec_word) * n_planes * W);
        /* Harley-Seal: carry-save adders fold sixteen words into (eights, fours, twos, ones)
         * and one word of weight 16, so the counter planes see one word in sixteen. */
        for (i = 0; i + 16 <= per_class; i += 16) {
            CSA(twos_a, ones, ones, SLOT(i), SLOT(i + 1));
            CSA(twos_b, ones, ones, SLOT(i + 2), SLOT(i + 3));
            CSA(fours_a, twos, twos, twos_a, twos_b);
            CSA(twos_a, ones, ones, SLOT(i + 4), SLOT(i + 5));
            CSA(twos_b, ones, ones, SLOT(i + 6), SLOT(i + 7));
            CSA(fours_b, twos, twos, twos_a, twos_b);
            CSA(twos_a, fours, fours, fours_a, fours_b);  /* twos_a: eights */
            CSA(fours_a, ones, ones, SLOT(i + 8), SLOT(i + 9));
            CSA(fours_b, ones, ones, SLOT(i + 10), SLOT(i + 11));
            CSA(twos_b, twos, twos, fours_a, fours_b);    /* twos_b: fours */
            CSA(fours_a, ones, ones, SLOT(i + 12), SLOT(i + 13));
            CSA(fours_b, ones, ones, SLOT(i + 14), SLOT(i + 15));
            CSA(sixteens, twos, twos, fours_a, fours_b);  /* sixteens: fours */
            CSA(fours_a, fours, fours, twos_b, sixteens); /* fours_a: eights */
            CSA(sixteens, eights, eights, twos_a, fours_a);
            counter_add(planes, n_planes, 4, sixteens);
        }
        for (; i < per_class; i++) counter_add(planes, n_planes, 0, SLOT(i));
        counter_add(planes, n_planes, 0, ones);
        counter_add(planes, n_planes, 1, twos);
        counter_add(planes, n_planes, 2, fours);
        counter_add(planes, n_planes, 3, eights);
        /* Planes back to counts, 8 samples at a time: 8 planes' bytes form an 8x8 bit matrix whose
         * transpose holds one sample's count bits per byte. */
        for (s = 0; s < n_rows; s += 8) {
            uint32_t word = s / GATEC_WORD_BITS, shift = s % GATEC_WORD_BITS, t, base;
            uint32_t total[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (base = 0; base < n_planes; base += 8) {
                uint64_t m = 0;
                for (q = base; q < n_planes && q < base + 8; q++)
                    m |= (uint64_t)((planes[q * W + word] >> shift) & 0xFFu) << (8 * (q - base));
                m = transpose8(m);
                for (t = 0; t < 8; t++) total[t] |= (uint32_t)((m >> (8 * t)) & 0xFFu) << base;
            }
            for (t = 0; t < 8 && s + t < n_rows; t++) scores[(uint64_t)(s + t) * p->k + c] = (int32_t)total[t];
        }
    }
}

void gatec_run(const gatec_program *p, const uint8_t *bits, uint32_t n, gatec_word *scratch, int32_t *scores) {
    uint32_t start, g, gates = 0, step;
    for (g = 0; g < p->n_groups; g++) gates += p->group_count[g];
    step = gates ? (uint32_t)((uint64_t)GATEC_TILE_SAMPLES * p->n_inputs / gates) : 0;
    for (start = 0; start < n; start += GATEC_TILE_SAMPLES) {
        uint32_t rows = n - start < GATEC_TILE_SAMPLES ? n - start : GATEC_TILE_SAMPLES;
        int full_next = n - start >= 2u * GATEC_TILE_SAMPLES;
        gatec_pack_tile(p, bits + (uint64_t)start * p->n_inputs, rows, scratch);
        eval_tile(p, scratch, bits + (uint64_t)(start + (full_next ? GATEC_TILE_SAMPLES : 0)) * p->n_inputs,
                  full_next ? step : 0);
        gatec_tile_scores(p, scratch, rows, scores + (uint64_t)start * p->k);
    }
}

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
