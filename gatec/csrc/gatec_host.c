/* gatec's host engine: gatec_logic.c built for the machine it runs on (-march=native, so the
 * vector path is the CPU's own). gatec_logic.c itself is also the C firmware's source, whose
 * artifacts are pinned byte for byte, so host-only choices live here.
 *
 * A slot is 8 words (512 samples, one 64-byte cache line): one vector register with AVX-512, a
 * pair with AVX2. The gates' operands come from L2 at random, a line at a time, so a slot that
 * fills its line halves the lines a sample costs: on an AVX2-only AMD EPYC (Zen 3) 8 words ran
 * 1.06-1.17x faster than 4 (one register), once the counting folds each half of the words in a
 * pass of its own (below). The path is the compiler's choice for -march=native, which the
 * engine's cache key names, so no run-time dispatch is needed. */
#ifndef GATEC_TILE
#define GATEC_TILE 8
#endif
#define _GNU_SOURCE /* the worker pool's threads (pthreads, Linux's affinity): host code, not firmware */
#include "gatec_logic.c"
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

/* With AVX-512 the gates are vpternlogq (HOST_TERNARY): the program is
 * gatec.netlist.plan_ternary's, each group's op a truth table over three operands, the
 * instruction's immediate. */
#if defined(__AVX512F__) && GATEC_TILE == 8 && GATEC_WORD_BITS == 64
#include <immintrin.h>
#define HOST_TERNARY 1
#endif

/* gatec_counting and, for the host's gate loops, each executed gate's operand and result slots
 * (the result's unused for class-counted gates) as uint16 slot numbers, computed once per model
 * by gatec.engine: with HOST_TERNARY four a gate (a, b, c, result), else three (a, b, result).
 * A slot is one shift from its offset, and half the bytes of uint32 offsets streamed through
 * the cache beside the slots (1.11x on the AVX2 path on a Zen 3 EPYC). NULL: the loops of
 * gatec_logic.c (programs of more than 65,536 slots). */
typedef uint16_t host_record;
#define HOST_BYTES(r) ((uint32_t)(r) * (GATEC_TILE * 8))
typedef struct {
    gatec_counting counting;
    const host_record *gate_records;
    float tau; /* > 0: scores are floats, count / tau (a float division, rounded once), in place of the counts */
} gatec_host_counting;

uint32_t gatec_tile_words(void);
uint32_t gatec_host_ternary(void);
void gatec_host_run(const gatec_program *p, const gatec_host_counting *hc, const uint8_t *bits, uint32_t n,
                    gatec_word *scratch, int32_t *scores, uint32_t *shared);
typedef struct host_pool host_pool;
host_pool *gatec_host_pool_new(uint32_t n_workers, uint32_t scratch_words);
uint32_t gatec_host_pool_workers(const host_pool *pool);
uint32_t gatec_host_pool_run(host_pool *pool, const gatec_program *p, const gatec_host_counting *hc,
                             const uint8_t *bits, uint32_t n, gatec_word *scratch, int32_t *scores,
                             const int32_t *cores, uint32_t workers);
void gatec_host_pool_free(host_pool *pool);

/* Words per slot, so that the caller sizes scratch and tiles as this build does. */
uint32_t gatec_tile_words(void) { return GATEC_TILE; }

#if defined(__AVX2__) && !defined(__AVX512F__) && GATEC_TILE == 8 && GATEC_WORD_BITS == 64
#include <immintrin.h>
#define HOST_HALVES 1 /* a slot is two registers: the counting takes a half at a time (host_add_words) */
/* AVX2 packing: per 8 rows, 32 features a vector fold into bytes (byte f: bit r = row r's
 * feature f); then 8 x 8 blocks of those bytes are transposed with SSE2 unpacks so that a
 * feature's bytes of one word line up (byte b of word w: rows 64w + 8b .. 64w + 8b + 7).
 * host_fold does one step rb of the first part (8 rows, all features) into scratch past the
 * counter planes, host_unfold the second into the input slots. */
#define HOST_FOLD_STEPS (GATEC_TILE_SAMPLES / 8)
static void host_fold(const gatec_program *p, const uint8_t *rows, uint32_t n_rows, uint32_t rb, gatec_word *act) {
    uint32_t n_in = p->n_inputs, i, r;
    uint8_t *out = (uint8_t *)(act + ((uint64_t)p->n_slots + GATEC_COUNTER_PLANES) * W) + (uint64_t)rb * n_in;
    const uint8_t *row = rows + (uint64_t)rb * 8 * n_in;
    const __m256i ones = _mm256_set1_epi8(1);
    uint32_t live = n_rows > rb * 8 ? n_rows - rb * 8 : 0;
    if (live > 8) live = 8;
    for (i = 0; i + 32 <= n_in; i += 32) {
        __m256i x = _mm256_setzero_si256();
        for (r = 8; r-- > 0;) {
            x = _mm256_add_epi8(x, x);
            if (r < live)
                x = _mm256_or_si256(x, _mm256_and_si256(
                    _mm256_loadu_si256((const __m256i *)(row + (uint64_t)r * n_in + i)), ones));
        }
        _mm256_storeu_si256((__m256i *)(out + i), x);
    }
    for (; i < n_in; i++) {
        uint8_t v = 0;
        for (r = 0; r < live; r++) v |= (uint8_t)((row[(uint64_t)r * n_in + i] & 1u) << r);
        out[i] = v;
    }
}

static void host_unfold(const gatec_program *p, gatec_word *act) {
    uint32_t n_in = p->n_inputs, f, w, b;
    const uint8_t *bytes = (const uint8_t *)(act + ((uint64_t)p->n_slots + GATEC_COUNTER_PLANES) * W);
    for (w = 0; w < W; w++) {
        const uint8_t *src = bytes + (uint64_t)w * 8 * n_in;
        for (f = 0; f + 8 <= n_in; f += 8) {
            __m128i q[8], a0, a1, a2, a3, b0, b1, b2, b3, c[4];
            for (b = 0; b < 8; b++) q[b] = _mm_loadl_epi64((const __m128i *)(src + (uint64_t)b * n_in + f));
            a0 = _mm_unpacklo_epi8(q[0], q[1]);
            a1 = _mm_unpacklo_epi8(q[2], q[3]);
            a2 = _mm_unpacklo_epi8(q[4], q[5]);
            a3 = _mm_unpacklo_epi8(q[6], q[7]);
            b0 = _mm_unpacklo_epi16(a0, a1); /* features f..f+3, rows of blocks 0-3 */
            b1 = _mm_unpackhi_epi16(a0, a1); /* f+4..f+7, 0-3 */
            b2 = _mm_unpacklo_epi16(a2, a3); /* f..f+3, 4-7 */
            b3 = _mm_unpackhi_epi16(a2, a3); /* f+4..f+7, 4-7 */
            c[0] = _mm_unpacklo_epi32(b0, b2); /* features f, f+1: 8 bytes each */
            c[1] = _mm_unpackhi_epi32(b0, b2);
            c[2] = _mm_unpacklo_epi32(b1, b3);
            c[3] = _mm_unpackhi_epi32(b1, b3);
            for (b = 0; b < 4; b++) {
                _mm_storel_epi64((__m128i *)(act + (uint64_t)(f + 2 * b) * W + w), c[b]);
                _mm_storeh_pd((double *)(act + (uint64_t)(f + 2 * b + 1) * W + w), _mm_castsi128_pd(c[b]));
            }
        }
        for (; f < n_in; f++) {
            gatec_word word = 0;
            for (b = 0; b < 8; b++) word |= (gatec_word)src[(uint64_t)b * n_in + f] << (8 * b);
            act[(uint64_t)f * W + w] = word;
        }
    }
}

/* Planes back to counts plus `offset`, 16 samples at a time in 16-bit lanes (counts below 2^15):
 * plane q's 16 bits, each lane testing its own, select an add of 2^q. */
static void host_planes_to_scores(const counter *k, uint32_t n_rows, uint32_t n_classes, uint32_t c, int32_t offset,
                                  int32_t *scores) {
    const __m256i lane = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
                                           (short)0x8000);
    uint32_t s, q, t;
    int16_t lanes[16];
    if (k->n_planes > 15) {
        planes_to_scores(k, n_rows, n_classes, c, offset, scores);
        return;
    }
    for (s = 0; s < n_rows; s += 16) {
        __m256i total = _mm256_setzero_si256();
        for (q = 0; q < k->n_planes; q++) {
            uint16_t bits;
            __m256i hit;
            memcpy(&bits, (const uint8_t *)(k->planes + q * W) + s / 8, sizeof bits);
            hit = _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16((short)bits), lane), lane);
            total = _mm256_add_epi16(total, _mm256_and_si256(hit, _mm256_set1_epi16((short)(1 << q))));
        }
        _mm256_storeu_si256((__m256i *)lanes, total);
        for (t = 0; t < 16 && s + t < n_rows; t++)
            scores[(uint64_t)(s + t) * n_classes + c] = (int32_t)(uint16_t)lanes[t] + offset;
    }
}

#elif defined(GATEC_FAST_PACK) && GATEC_TILE == 8 && defined(__AVX512BW__) && defined(__AVX512VBMI__)
/* gatec_pack_tile (gatec_logic.c) reading the rows in order: host_fold folds 8 rows (step rb)
 * into a vector per 64 features, for all features (a walk in memory order, which the hardware
 * prefetchers follow); the folded vectors wait in scratch past the counter planes (vector rb of
 * the i-th 64 features at slot 64 i + rb there: 64 slots more than gatec_logic.c's scratch,
 * see gatec.engine) until host_unfold transposes them into the input slots. */
#define HOST_FOLD_STEPS 64
static void host_fold(const gatec_program *p, const uint8_t *rows, uint32_t n_rows, uint32_t rb, gatec_word *act) {
    uint32_t n_in = p->n_inputs, n_full = n_in / 64, n_chunks = (n_in + 63) / 64, i, r;
    gatec_word *folded = act + ((uint64_t)p->n_slots + GATEC_COUNTER_PLANES) * W;
    const uint8_t *row = rows + (uint64_t)rb * 8 * n_in;
    __m512i ones = _mm512_set1_epi8(1);
    __mmask64 tail = n_in % 64 ? (((__mmask64)1 << (n_in % 64)) - 1) : ~(__mmask64)0;
    for (i = 0; i < n_chunks; i++) {  /* byte f: bit r = feature 64 i + f of row 8 rb + r */
        __mmask64 in = i < n_full ? ~(__mmask64)0 : tail;
        __m512i x = _mm512_setzero_si512();
        for (r = 8; r-- > 0;) {
            x = _mm512_add_epi8(x, x);
            if (rb * 8 + r < n_rows)
                x = _mm512_ternarylogic_epi64(x, _mm512_maskz_loadu_epi8(in, row + (uint64_t)r * n_in + 64 * i),
                                              ones, 0xF8); /* x | (row & 1) */
        }
        _mm512_storeu_si512(folded + (uint64_t)(64 * i + rb) * W, x);
    }
}

static void host_unfold(const gatec_program *p, gatec_word *act) {
    uint32_t n_in = p->n_inputs, i, g, j, b;
    const gatec_word *folded = act + ((uint64_t)p->n_slots + GATEC_COUNTER_PLANES) * W;
    __m512i t[64], v[8], bytes_across;
    uint8_t across[64];
    for (j = 0; j < 64; j++) across[j] = (uint8_t)(8 * (j % 8) + j / 8);  /* 8 x 8 byte transpose in each word */
    bytes_across = _mm512_loadu_si512(across);
    for (i = 0; i < n_in; i += 64) {
        for (j = 0; j < 64; j++) t[j] = _mm512_loadu_si512(folded + (uint64_t)(i + j) * W);
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
#define host_planes_to_scores planes_to_scores

/* Scores a tile at a time: each class's counts go, in 16-bit lanes (32 samples per vector, plane
 * q's 32 bits selecting an add of 2^q), to a row of a k x 512 table in scratch (past the folded
 * rows: 16 k slots more, see gatec.engine), instead of a scatter into scores per class; then
 * the table is transposed 16 x 16 at a time into whole rows of scores (one masked store of a
 * sample's classes). Counts of 2^15 and more: planes_to_scores. */
#define HOST_TABLE_SCORES 1
static uint16_t *score_table(const gatec_program *p, gatec_word *act) {
    return (uint16_t *)(act + ((uint64_t)p->n_slots + GATEC_COUNTER_PLANES + p->n_inputs + 64) * W);
}

static void table_class(const counter *k, uint32_t n_rows, uint16_t *row) {
    uint32_t s, q;
    for (s = 0; s < n_rows; s += 32) {
        __m512i total = _mm512_setzero_si512();
        for (q = 0; q < k->n_planes; q++) {
            uint32_t bits;
            memcpy(&bits, (const uint8_t *)(k->planes + q * W) + s / 8, sizeof bits);
            total = _mm512_mask_add_epi16(total, bits, total, _mm512_set1_epi16((short)(1 << q)));
        }
        _mm512_storeu_si512(row + s, total);
    }
}

/* Transpose the 16 x 16 matrix of 32-bit lanes in v[0..15]: off-diagonal d x d blocks swapped,
 * d = 1, 2, 4, 8 (as transpose_words); lo/hi: lane j of row a and of row a + d (16 + x: lane x
 * of row a + d). */
#define SWAP_LANES(d, lo, hi)                                                 \
    do {                                                                      \
        uint32_t a_;                                                          \
        for (a_ = 0; a_ < 16; a_++)                                           \
            if (!(a_ & (d))) {                                                \
                __m512i x_ = v[a_], y_ = v[a_ + (d)];                         \
                v[a_] = _mm512_permutex2var_epi32(x_, lo, y_);                \
                v[a_ + (d)] = _mm512_permutex2var_epi32(x_, hi, y_);          \
            }                                                                 \
    } while (0)
static inline void transpose_lanes(__m512i *v) {
    const __m512i lo1 = _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
    const __m512i hi1 = _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    const __m512i lo2 = _mm512_setr_epi32(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
    const __m512i hi2 = _mm512_setr_epi32(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    const __m512i lo4 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i hi4 = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    const __m512i lo8 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i hi8 = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    SWAP_LANES(1, lo1, hi1);
    SWAP_LANES(2, lo2, hi2);
    SWAP_LANES(4, lo4, hi4);
    SWAP_LANES(8, lo8, hi8);
}

static void table_to_scores(const gatec_program *p, const int32_t *class_ones, const uint16_t *table, uint32_t n_rows,
                            int32_t *scores) {
    uint32_t k = p->k, s, c0, i, t;
    __m512i v[16];
    for (s = 0; s < n_rows; s += 16)
        for (c0 = 0; c0 < k; c0 += 16) {
            __mmask16 lanes = (__mmask16)(k - c0 >= 16 ? 0xFFFFu : (1u << (k - c0)) - 1);
            for (i = 0; i < 16; i++)
                v[i] = c0 + i < k ? _mm512_add_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(
                                                         (const __m256i *)(table + (uint64_t)(c0 + i) * 512 + s))),
                                                     _mm512_set1_epi32(class_ones[c0 + i]))
                                  : _mm512_setzero_si512();
            transpose_lanes(v);
            for (t = 0; t < 16 && s + t < n_rows; t++)
                _mm512_mask_storeu_epi32(scores + (uint64_t)(s + t) * k + c0, lanes, v[t]);
        }
}
#else
#define HOST_FOLD_STEPS 0  /* gatec_logic.c's packing, all at once */
#define host_planes_to_scores planes_to_scores
#endif

#if HOST_FOLD_STEPS
/* A whole tile's packing at once. */
static void host_pack_tile(const gatec_program *p, const uint8_t *rows, uint32_t n_rows, gatec_word *act) {
    uint32_t rb;
    for (rb = 0; rb < HOST_FOLD_STEPS; rb++) host_fold(p, rows, n_rows, rb, act);
    host_unfold(p, act);
}
#else
#define host_pack_tile gatec_pack_tile
#endif

/* Carry-save adders of the counting, one instruction per output with AVX-512 (vpternlogq:
 * majority and three-way xor); gcc makes four of the two otherwise. */
#ifdef HOST_TERNARY
#define MAJ3(a, b, c) ((slot_t)_mm512_ternarylogic_epi64((__m512i)(a), (__m512i)(b), (__m512i)(c), 0xE8))
#define XOR3(a, b, c) ((slot_t)_mm512_ternarylogic_epi64((__m512i)(a), (__m512i)(b), (__m512i)(c), 0x96))
#else
#define MAJ3(a, b, c) (((a) & (b)) | (((a) ^ (b)) & (c)))
#define XOR3(a, b, c) ((a) ^ (b) ^ (c))
#endif
#define HOST_CSA(high, low, a, b, c)                           \
    do {                                                       \
        slot_t a_ = (a), b_ = (b), c_ = (c);                   \
        high = MAJ3(a_, b_, c_);                               \
        low = XOR3(a_, b_, c_);                                \
    } while (0)

/* Fold v[0..n), n a multiple of 16, into the counter: counter_add16 with its state in registers
 * for the whole run instead of a call per 16 words. With HOST_HALVES the state of a whole slot
 * (8 registers) and its temporaries would spill: each half of the words is folded in a pass of
 * its own (half_t, 4 words), and every access to a half is one 256-bit load or store, so that
 * a half is never read from two narrower stores still in flight (a stall each). */
#ifdef HOST_HALVES
typedef gatec_word half_t __attribute__((vector_size(32)));
static inline half_t half_at(const void *slot, uint32_t h) { return (half_t)_mm256_loadu_si256((const __m256i *)slot + h); }
static inline void set_half(void *slot, uint32_t h, half_t v) { _mm256_storeu_si256((__m256i *)slot + h, (__m256i)v); }
#define HALF_CSA(high, low, a, b, c)                             \
    do {                                                         \
        half_t a_ = (a), b_ = (b), c_ = (c), u_ = a_ ^ b_;       \
        high = (a_ & b_) | (u_ & c_);                            \
        low = u_ ^ c_;                                           \
    } while (0)

/* counter_add on half h of the planes. */
static void half_add(counter *k, uint32_t h, uint32_t plane, half_t carry) {
    uint32_t q;
    for (q = plane; q < k->n_planes; q++) {
        half_t c = half_at(k->planes + q * W, h);
        set_half(k->planes + q * W, h, c ^ carry);
        carry = c & carry;
    }
}

static void host_add_words(counter *k, const slot_t *v, uint32_t n) {
    uint32_t h, i;
    for (h = 0; h < 2; h++) {
        half_t ones = half_at(&k->ones, h), twos = half_at(&k->twos, h), fours = half_at(&k->fours, h);
        half_t eights = half_at(&k->eights, h), twos_a, twos_b, fours_a, fours_b, eights_a, eights_b, sixteens;
        const slot_t *w = v;
        for (i = 0; i < n; i += 16, w += 16) {
            HALF_CSA(twos_a, ones, ones, half_at(w + 0, h), half_at(w + 1, h));
            HALF_CSA(twos_b, ones, ones, half_at(w + 2, h), half_at(w + 3, h));
            HALF_CSA(fours_a, twos, twos, twos_a, twos_b);
            HALF_CSA(twos_a, ones, ones, half_at(w + 4, h), half_at(w + 5, h));
            HALF_CSA(twos_b, ones, ones, half_at(w + 6, h), half_at(w + 7, h));
            HALF_CSA(fours_b, twos, twos, twos_a, twos_b);
            HALF_CSA(eights_a, fours, fours, fours_a, fours_b);
            HALF_CSA(twos_a, ones, ones, half_at(w + 8, h), half_at(w + 9, h));
            HALF_CSA(twos_b, ones, ones, half_at(w + 10, h), half_at(w + 11, h));
            HALF_CSA(fours_a, twos, twos, twos_a, twos_b);
            HALF_CSA(twos_a, ones, ones, half_at(w + 12, h), half_at(w + 13, h));
            HALF_CSA(twos_b, ones, ones, half_at(w + 14, h), half_at(w + 15, h));
            HALF_CSA(fours_b, twos, twos, twos_a, twos_b);
            HALF_CSA(eights_b, fours, fours, fours_a, fours_b);
            HALF_CSA(sixteens, eights, eights, eights_a, eights_b);
            half_add(k, h, 4, sixteens);
        }
        set_half(&k->ones, h, ones), set_half(&k->twos, h, twos), set_half(&k->fours, h, fours);
        set_half(&k->eights, h, eights);
    }
}

/* counter_finish, a half at a time. */
static void host_counter_finish(counter *k, const slot_t *v, uint32_t n) {
    uint32_t h, i;
    for (h = 0; h < 2; h++) {
        for (i = 0; i < n; i++) half_add(k, h, 0, half_at(v + i, h));
        half_add(k, h, 0, half_at(&k->ones, h));
        half_add(k, h, 1, half_at(&k->twos, h));
        half_add(k, h, 2, half_at(&k->fours, h));
        half_add(k, h, 3, half_at(&k->eights, h));
    }
}

/* A slot into the words to count, a half at a time. */
static inline void copy_slot(slot_t *to, const gatec_word *from) {
    set_half(to, 0, half_at(from, 0));
    set_half(to, 1, half_at(from, 1));
}
#else
static void host_add_words(counter *k, const slot_t *v, uint32_t n) {
    slot_t ones = k->ones, twos = k->twos, fours = k->fours, eights = k->eights;
    slot_t twos_a, twos_b, fours_a, fours_b, eights_a, eights_b, sixteens;
    uint32_t i;
    for (i = 0; i < n; i += 16, v += 16) {
        HOST_CSA(twos_a, ones, ones, v[0], v[1]);
        HOST_CSA(twos_b, ones, ones, v[2], v[3]);
        HOST_CSA(fours_a, twos, twos, twos_a, twos_b);
        HOST_CSA(twos_a, ones, ones, v[4], v[5]);
        HOST_CSA(twos_b, ones, ones, v[6], v[7]);
        HOST_CSA(fours_b, twos, twos, twos_a, twos_b);
        HOST_CSA(eights_a, fours, fours, fours_a, fours_b);
        HOST_CSA(twos_a, ones, ones, v[8], v[9]);
        HOST_CSA(twos_b, ones, ones, v[10], v[11]);
        HOST_CSA(fours_a, twos, twos, twos_a, twos_b);
        HOST_CSA(twos_a, ones, ones, v[12], v[13]);
        HOST_CSA(twos_b, ones, ones, v[14], v[15]);
        HOST_CSA(fours_b, twos, twos, twos_a, twos_b);
        HOST_CSA(eights_b, fours, fours, fours_a, fours_b);
        HOST_CSA(sixteens, eights, eights, eights_a, eights_b);
        counter_add(k->planes, k->n_planes, 4, sixteens);
    }
    k->ones = ones, k->twos = twos, k->fours = fours, k->eights = eights;
}

#define host_counter_finish counter_finish
static inline void copy_slot(slot_t *to, const gatec_word *from) { *to = load(from); }
#endif

/* Words a class's gates go to before they are counted: 16 KB, in L1. */
#define HOST_COUNT_BUF 256

/* While a tile's gates run, the next tile is folded (host_fold) a step every `every` gates,
 * and its rows are prefetched HOST_LEAD steps ahead of the folding, a few bytes per gate pair:
 * so the rows come from memory while the gates compute, and each stays in the cache only
 * briefly, instead of a whole tile's rows (prefetched over the tile before) evicting the slots. Without host_fold (HOST_FOLD_STEPS 0) the next tile's rows are only
 * prefetched. */
typedef struct {
    const gatec_program *p;
    gatec_word *act;
    const uint8_t *rows;     /* the next tile's rows; NULL: none */
    uint32_t n_rows, folded; /* its rows, the steps folded */
    uint32_t every, left;    /* gates between fold steps, and before the next */
    const uint8_t *ahead;    /* the next prefetch, and its step per gate */
    uint32_t ahead_step;
} host_pipe;

static void pipe_fold(host_pipe *f) {
#if HOST_FOLD_STEPS
    if (f->rows && f->folded < HOST_FOLD_STEPS) host_fold(f->p, f->rows, f->n_rows, f->folded++, f->act);
#endif
    f->left = f->every;
}

static inline slot_t load_at(const gatec_word *act, host_record r) { return load((const gatec_word *)((const char *)act + HOST_BYTES(r))); }
static inline void store_at(gatec_word *act, host_record r, slot_t v) { store((gatec_word *)((char *)act + HOST_BYTES(r)), v); }
#define HOST_LEAD 6 /* fold steps the prefetches run ahead: 2 measured 1.1x slower, 4 to 16 alike */
/* The cache level the rows are prefetched into (__builtin_prefetch's locality), which gatec.engine
 * picks by CPU vendor: on a Xeon with AVX-512, L2 (prefetcht1, 2): rows prefetched HOST_LEAD steps
 * ahead would fill L1 (6 steps of the benchmark network are 37 KB) and evict the slots the gates
 * read; 1.06x over prefetcht0 there, and prefetcht0 with a lead of 1 or 2 steps slower still. On
 * an AMD EPYC (Zen 5) prefetcht1 leaves the rows outside L1 and each fold step's loads miss it at
 * once: prefetcht0 (3) measured 1.17x faster there on the AVX-512 path and 1.08x on the AVX2
 * path, leads of 4 to 10 steps alike. */
#ifndef GATEC_PREFETCH_LOCALITY
#define GATEC_PREFETCH_LOCALITY 2
#endif
/* Where the rows go to L2, they are prefetched once more into L1 HOST_NEAR fold steps ahead of
 * the folding (6 KB a step for the benchmark network, which L1 holds beside the slots): on a Zen 4
 * EPYC the folding took 25K cycles a tile instead of 43K, 1.05x overall (1.06x on its AVX2 path). */
#define HOST_NEAR 2
#if HOST_FOLD_STEPS && GATEC_PREFETCH_LOCALITY < 3
#define HOST_PREFETCH2()                                                    \
    (__builtin_prefetch(ahead, 0, GATEC_PREFETCH_LOCALITY), __builtin_prefetch(ahead - near_back, 0, 3), \
     ahead += 2 * (uint64_t)ahead_step)
#define HOST_NEAR_BACK const uint64_t near_back = (uint64_t)(HOST_LEAD - HOST_NEAR) * 8u * p->n_inputs
#else
#define HOST_PREFETCH2() (__builtin_prefetch(ahead, 0, GATEC_PREFETCH_LOCALITY), ahead += 2 * (uint64_t)ahead_step)
#define HOST_NEAR_BACK const uint64_t near_back = 0
#endif

/* The gate loops over the gate records (gatec_host_counting.gate_records), m gates of a group, two a
 * turn with one prefetch for the two; HOST_STRIDE offsets a gate, the result's last. */
#ifdef HOST_TERNARY
#define HOST_STRIDE 4
/* Whether table imm reads operand a, b or c: most of the tables are of two operands or one
 * (AND, XOR, NOT of any two of the three), whose other operands are not loaded (`zero` instead;
 * each case's `uses` is its table, a constant): 1.03-1.07x on a Zen 4 EPYC, whose 512-bit loads
 * take two cycles of a port. */
#define READS_A(imm) (((((imm) >> 4) ^ (imm)) & 0x0F) != 0)
#define READS_B(imm) (((((imm) >> 2) ^ (imm)) & 0x33) != 0)
#define READS_C(imm) (((((imm) >> 1) ^ (imm)) & 0x55) != 0)
#define OPERAND(used, r) ((used) ? load_at(act, (r)) : zero)
#define HOST_OPERANDS(r) slot_t x = OPERAND(READS_A(uses), (r)[0]), y = OPERAND(READS_B(uses), (r)[1]), \
                                z = OPERAND(READS_C(uses), (r)[2])
#define HOST_UNUSED() ((void)x, (void)y, (void)z)
#define TERN(imm) ((slot_t)_mm512_ternarylogic_epi64((__m512i)x, (__m512i)y, (__m512i)z, (imm)))
/* The 80 tables plan_ternary emits (gatec.netlist.CANONICAL: each table's least form under
 * reordering its operands; a test checks this list against it), a loop each; any other table
 * runs through tern_any, its minterms one vpternlogq each. */
#define HOST_TERNARY_OPS(X) \
    X(0) X(1) X(2) X(3) X(6) X(7) X(8) X(9) X(10) X(11) X(14) X(15) X(22) X(23) X(24) X(25) \
    X(26) X(27) X(30) X(31) X(40) X(41) X(42) X(43) X(44) X(45) X(46) X(47) X(60) X(61) X(62) \
    X(63) X(104) X(105) X(106) X(107) X(110) X(111) X(126) X(127) X(128) X(129) X(130) X(131) \
    X(134) X(135) X(136) X(137) X(138) X(139) X(142) X(143) X(150) X(151) X(152) X(153) X(154) \
    X(155) X(158) X(159) X(168) X(169) X(170) X(171) X(172) X(173) X(174) X(175) X(188) X(189) \
    X(190) X(191) X(232) X(233) X(234) X(235) X(238) X(239) X(254) X(255)
static inline slot_t tern_any(slot_t x, slot_t y, slot_t z, uint32_t imm) {
    slot_t r = x ^ x;
    if (imm & 1u) r |= TERN(1);
    if (imm & 2u) r |= TERN(2);
    if (imm & 4u) r |= TERN(4);
    if (imm & 8u) r |= TERN(8);
    if (imm & 16u) r |= TERN(16);
    if (imm & 32u) r |= TERN(32);
    if (imm & 64u) r |= TERN(64);
    if (imm & 128u) r |= TERN(128);
    return r;
}
#define HOST_EVAL_LOOP_CASE(imm) case (imm): { enum { uses = (imm) }; HOST_EVAL_LOOP(TERN(imm)) }
#define HOST_COUNT_LOOP_CASE(imm) case (imm): { enum { uses = (imm) }; HOST_COUNT_LOOP(TERN(imm)) }
#define HOST_EACH_OP(LOOP) \
    HOST_TERNARY_OPS(LOOP##_CASE) default: { enum { uses = 0x96 }; LOOP(tern_any(x, y, z, p->group_op[gi])) }
#define HOST_LOCALS() const slot_t zero = {0}; HOST_NEAR_BACK; (void)zero, (void)near_back
#else
#define HOST_STRIDE 3
#define HOST_OPERANDS(r) slot_t x = load_at(act, (r)[0]), y = load_at(act, (r)[1])
#define HOST_UNUSED() ((void)x, (void)y)
#define HOST_EACH_OP EACH_OP
#define HOST_LOCALS() HOST_NEAR_BACK; (void)near_back
#endif
#define HOST_GATE(r, expr)                                                  \
    do {                                                                    \
        HOST_OPERANDS(r);                                                   \
        store_at(act, (r)[HOST_STRIDE - 1], (slot_t)(expr));                \
        HOST_UNUSED();                                                      \
    } while (0)
/* m gates through GATE (a gate stored, or counted), two a turn. */
#define HOST_PAIRS(GATE, expr)                                              \
    for (g = 0; g + 2 <= m; g += 2, R += 2 * HOST_STRIDE) {                 \
        HOST_PREFETCH2();                                                   \
        GATE(R, expr);                                                      \
        GATE(R + HOST_STRIDE, expr);                                        \
    }                                                                       \
    if (g < m) {                                                            \
        GATE(R, expr);                                                      \
        R += HOST_STRIDE;                                                   \
    }                                                                       \
    break;
#define HOST_EVAL_LOOP(expr) HOST_PAIRS(HOST_GATE, expr)
/* Group gi's gates through LOOP (HOST_EVAL_LOOP or HOST_COUNT_LOOP), cut where the next tile's
 * packing takes a step (pipe_fold). */
#define HOST_GROUP(LOOP)                                                    \
    do {                                                                    \
        uint32_t count = p->group_count[gi];                                \
        while (count) {                                                     \
            uint32_t m = count < f->left ? count : f->left;                 \
            switch (p->group_op[gi]) {                                      \
            HOST_EACH_OP(LOOP)                                              \
            }                                                               \
            count -= m;                                                     \
            if (!(f->left -= m)) pipe_fold(f);                              \
        }                                                                   \
    } while (0)

/* Groups [0, n_groups) of one tile; returns the next group's gate records. */
static const host_record *host_eval_tile(const gatec_program *p, const host_record *R, gatec_word *act, uint32_t n_groups,
                                      host_pipe *f) {
    const uint8_t *ahead = f->ahead;
    uint32_t gi, g, ahead_step = f->ahead_step;
    HOST_LOCALS();
    for (gi = 0; gi < n_groups; gi++) HOST_GROUP(HOST_EVAL_LOOP);
    f->ahead = ahead;
    return R;
}

#define HOST_COUNT_GATE(r, expr)                                            \
    do {                                                                    \
        HOST_OPERANDS(r);                                                   \
        v[fill++] = (slot_t)(expr);                                         \
        HOST_UNUSED();                                                      \
        if (fill == HOST_COUNT_BUF) host_add_words(&k, v, fill), fill = 0;  \
    } while (0)
#define HOST_COUNT_LOOP(expr) HOST_PAIRS(HOST_COUNT_GATE, expr)

/* count_tile (gatec_logic.c) from group `first` on (gate records R), the counted words
 * buffered and folded in runs. */
static void host_count_tile(const gatec_program *p, const gatec_counting *cp, const host_record *R, gatec_word *act,
                            uint32_t first, uint32_t n_rows, int32_t *scores, host_pipe *f) {
    const uint8_t *ahead = f->ahead;
    uint32_t gi = first, g, c, r, fill, n_planes = counter_planes(p->n_outputs / p->k), ahead_step = f->ahead_step;
    counter k;
    slot_t v[HOST_COUNT_BUF];
    HOST_LOCALS();
    for (c = 0; c < p->k; c++) {
        counter_start(&k, act + (uint64_t)p->n_slots * W, n_planes);
        fill = 0;
        for (; gi < p->n_groups && cp->group_class[gi] == (int32_t)c; gi++) HOST_GROUP(HOST_COUNT_LOOP);
        for (r = cp->rest_start[c]; r < cp->rest_start[c + 1]; r++) {
            copy_slot(v + fill++, act + (uint64_t)cp->rest_slot[r] * W);
            if (fill == HOST_COUNT_BUF) host_add_words(&k, v, fill), fill = 0;
        }
        host_add_words(&k, v, fill & ~15u);
        host_counter_finish(&k, v + (fill & ~15u), fill & 15u);
#ifdef HOST_TABLE_SCORES
        if (n_planes < 16)
            table_class(&k, n_rows, score_table(p, act) + (uint64_t)c * 512);
        else
#endif
            host_planes_to_scores(&k, n_rows, p->k, c, cp->class_ones[c], scores);
    }
#ifdef HOST_TABLE_SCORES
    if (n_planes < 16) table_to_scores(p, cp->class_ones, score_table(p, act), n_rows, scores);
#endif
    f->ahead = ahead;
}

/* A tile's counts to count / tau in place, while they are in the cache. */
static void to_floats(int32_t *scores, uint32_t n, float tau) {
    uint32_t i;
    for (i = 0; i < n; i++) {
        float x = (float)scores[i] / tau;
        memcpy(scores + i, &x, sizeof x);
    }
}

/* The next tile a run takes: from *shared, a counter that threads running one batch share (each
 * tile goes to the thread that asks first, so a core slowed by other work takes fewer; GNU C's
 * atomics, which gcc and clang have), else the one after `mine`. */
static uint32_t take_tile(uint32_t *shared, uint32_t mine) {
    return shared ? __atomic_fetch_add(shared, 1u, __ATOMIC_RELAXED) : mine + 1;
}

/* Rows of tile `tile` of a batch of n (all but the last are whole). */
static uint32_t tile_rows(uint32_t n, uint32_t tile) {
    uint32_t start = tile * GATEC_TILE_SAMPLES;
    return n - start < GATEC_TILE_SAMPLES ? n - start : GATEC_TILE_SAMPLES;
}

/* gatec_run_counting with the host's packing, gate loops and counting; without gate records,
 * gatec_run_counting itself, a tile at a time. The tiles come from take_tile: with `shared`
 * (NULL: all of them, in order) each thread calls this on the whole batch, and a tile's rows
 * are folded while the tile the thread took before it runs. */
void gatec_host_run(const gatec_program *p, const gatec_host_counting *hc, const uint8_t *bits, uint32_t n,
                    gatec_word *scratch, int32_t *scores, uint32_t *shared) {
    const gatec_counting *cp = &hc->counting;
    uint32_t tile, next, first = p->n_groups, g, gates = 0, n_in = p->n_inputs;
    uint32_t n_tiles = (uint32_t)(((uint64_t)n + GATEC_TILE_SAMPLES - 1) / GATEC_TILE_SAMPLES);
    host_pipe f;
#if HOST_FOLD_STEPS
    uint32_t folded_ahead = 0;
#endif
    if (!hc->gate_records) {
        for (tile = take_tile(shared, ~0u); tile < n_tiles; tile = take_tile(shared, tile)) {  /* ~0u + 1: tile 0 */
            uint32_t start = tile * GATEC_TILE_SAMPLES, rows = tile_rows(n, tile);
            gatec_run_counting(p, cp, bits + (uint64_t)start * n_in, rows, scratch, scores + (uint64_t)start * p->k);
            if (hc->tau > 0) to_floats(scores + (uint64_t)start * p->k, rows * p->k, hc->tau);
        }
        return;
    }
    while (first > 0 && cp->group_class[first - 1] >= 0) first--;
    for (g = 0; g < p->n_groups; g++) gates += p->group_count[g];
    f.p = p, f.act = scratch;
    f.every = HOST_FOLD_STEPS ? (gates / HOST_FOLD_STEPS ? gates / HOST_FOLD_STEPS : 1) : 0xFFFFFFFFu;
    tile = take_tile(shared, ~0u);
#if HOST_FOLD_STEPS
    if (tile < n_tiles)
        host_pack_tile(p, bits + (uint64_t)tile * GATEC_TILE_SAMPLES * n_in, tile_rows(n, tile), scratch);
#endif
    for (; tile < n_tiles; tile = next) {
        uint32_t start = tile * GATEC_TILE_SAMPLES, rows = tile_rows(n, tile);
        const host_record *R;
        next = take_tile(shared, tile);
        f.rows = next < n_tiles ? bits + (uint64_t)next * GATEC_TILE_SAMPLES * n_in : NULL;
        f.n_rows = next < n_tiles ? tile_rows(n, next) : 0;
        f.folded = 0, f.left = f.every;
        /* prefetches HOST_LEAD fold steps ahead of the folding (HOST_FOLD_STEPS 0: from the next row on) */
        f.ahead = f.rows ? f.rows + (HOST_FOLD_STEPS ? HOST_LEAD * 8u * n_in : 0) : bits;
        f.ahead_step = f.rows && gates ? (uint32_t)((uint64_t)GATEC_TILE_SAMPLES * n_in / gates) : 0;
#if HOST_FOLD_STEPS
        if (folded_ahead) host_unfold(p, scratch);  /* this tile, folded while the last one ran */
#else
        host_pack_tile(p, bits + (uint64_t)start * n_in, rows, scratch);
#endif
        R = host_eval_tile(p, hc->gate_records, scratch, first, &f);
        host_count_tile(p, cp, R, scratch, first, rows, scores + (uint64_t)start * p->k, &f);
        if (hc->tau > 0) to_floats(scores + (uint64_t)start * p->k, rows * p->k, hc->tau);
#if HOST_FOLD_STEPS
        while (f.rows && f.folded < HOST_FOLD_STEPS) pipe_fold(&f);
        folded_ahead = f.rows != NULL;
#endif
    }
}

/* A pool of worker threads for one batch at a time: gatec_host_pool_run posts the batch, runs
 * its own share of the tiles (gatec_host_run on the shared counter) and returns once the workers
 * that joined have left it. The workers are C threads, so a batch never waits on Python's GIL or
 * its thread pool: with those, each call's start and end cost a thread woken on the other core
 * (75 us median on a 2-core KVM VM) and the GIL's hand-over, 150-250 us of a 4 ms batch. A
 * worker joins only while the caller still runs its share, so a late one (asleep, its core
 * busy) never touches a batch that has returned; with no worker at all (none started, or a
 * forked child's copy of a pool) the caller runs every tile itself. */
typedef struct {
    host_pool *pool;
    gatec_word *scratch;
    pthread_t thread;
    uint32_t index;
    int core; /* the core it is kept on, -1: none */
} host_worker;

typedef struct {
    const gatec_program *p;
    const gatec_host_counting *hc;
    const uint8_t *bits;
    int32_t *scores;
    const int32_t *cores; /* each worker's core (-1: leave it), or NULL */
    uint32_t n, workers;  /* workers: the most that join */
} host_batch;

struct host_pool {
    pthread_mutex_t lock;
    pthread_cond_t posted;
    host_batch batch;
    uint64_t generation; /* batches posted */
    uint32_t open, quit, joined;
    uint32_t next_tile, active; /* the batch's take_tile counter, and the workers inside it */
    uint32_t n_workers;
    host_worker *workers;
};

static void host_keep_on_core(host_worker *w, int core) {
#ifdef __linux__
    if (core >= 0 && core != w->core && core < CPU_SETSIZE) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(core, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0) w->core = core;
    }
#else
    (void)w, (void)core;
#endif
}

static void *host_worker_main(void *arg) {
    host_worker *w = arg;
    host_pool *pool = w->pool;
    uint64_t seen = 0;
    for (;;) {
        host_batch b;
        pthread_mutex_lock(&pool->lock);
        while (!pool->quit && !(pool->open && pool->generation != seen && pool->joined < pool->batch.workers))
            pthread_cond_wait(&pool->posted, &pool->lock);
        if (pool->quit) {
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
        seen = pool->generation, b = pool->batch, pool->joined++;
        __atomic_fetch_add(&pool->active, 1u, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&pool->lock);
        host_keep_on_core(w, b.cores ? b.cores[w->index] : -1);
        gatec_host_run(b.p, b.hc, b.bits, b.n, w->scratch, b.scores, &pool->next_tile);
        __atomic_fetch_sub(&pool->active, 1u, __ATOMIC_RELEASE); /* its tiles' scores are written */
    }
}

/* A pool of n_workers threads, each with scratch of scratch_words words (64-byte aligned); NULL
 * if out of memory. Fewer start where the OS refuses a thread (gatec_host_pool_workers). */
host_pool *gatec_host_pool_new(uint32_t n_workers, uint32_t scratch_words) {
    host_pool *pool = calloc(1, sizeof *pool);
    uint32_t i;
    if (!pool || !(pool->workers = calloc(n_workers ? n_workers : 1, sizeof *pool->workers))) {
        free(pool);
        return NULL;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->posted, NULL);
    for (i = 0; i < n_workers; i++) {
        host_worker *w = &pool->workers[pool->n_workers];
        void *scratch = NULL;
        if (posix_memalign(&scratch, 64, (size_t)scratch_words * sizeof(gatec_word)) != 0) break;
        w->pool = pool, w->scratch = scratch, w->index = pool->n_workers, w->core = -1;
        if (pthread_create(&w->thread, NULL, host_worker_main, w) != 0) {
            free(scratch);
            break;
        }
#ifdef __linux__
        /* what ps, top and /proc/<pid>/task/<tid>/comm show; named here, not by the thread itself,
         * so that the name is there when this returns, before the thread has first run */
        pthread_setname_np(w->thread, "gatec-engine");
#endif
        pool->n_workers++;
    }
    return pool;
}

uint32_t gatec_host_pool_workers(const host_pool *pool) { return pool->n_workers; }

/* Runs a batch as gatec_host_run does, on the calling thread and at most `workers` of the pool's;
 * cores[i]: the core worker i is kept on (-1 or NULL: left where it is). Returns how many workers
 * joined. One batch at a time a pool (the caller's lock). */
uint32_t gatec_host_pool_run(host_pool *pool, const gatec_program *p, const gatec_host_counting *hc,
                             const uint8_t *bits, uint32_t n, gatec_word *scratch, int32_t *scores,
                             const int32_t *cores, uint32_t workers) {
    uint32_t joined, spins = 0;
    pthread_mutex_lock(&pool->lock);
    pool->batch.p = p, pool->batch.hc = hc, pool->batch.bits = bits, pool->batch.n = n;
    pool->batch.scores = scores, pool->batch.cores = cores, pool->batch.workers = workers;
    pool->next_tile = 0, pool->joined = 0, pool->open = 1, pool->generation++;
    pthread_mutex_unlock(&pool->lock);
    if (workers) pthread_cond_broadcast(&pool->posted);
    gatec_host_run(p, hc, bits, n, scratch, scores, &pool->next_tile);
    pthread_mutex_lock(&pool->lock);
    pool->open = 0, joined = pool->joined; /* no worker joins from here */
    pthread_mutex_unlock(&pool->lock);
    /* The tiles left are the ones the workers inside took: they end within a tile's time or two
     * (tens of microseconds), so the caller spins, and yields its core after 2^14 looks. */
    while (__atomic_load_n(&pool->active, __ATOMIC_ACQUIRE)) {
        if (++spins > 1u << 14) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
        else __builtin_ia32_pause();
#endif
    }
    return joined;
}

void gatec_host_pool_free(host_pool *pool) {
    uint32_t i;
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    pool->quit = 1;
    pthread_mutex_unlock(&pool->lock);
    pthread_cond_broadcast(&pool->posted);
    for (i = 0; i < pool->n_workers; i++) {
        pthread_join(pool->workers[i].thread, NULL);
        free(pool->workers[i].scratch);
    }
    pthread_cond_destroy(&pool->posted);
    pthread_mutex_destroy(&pool->lock);
    free(pool->workers);
    free(pool);
}

/* 1: the gate loops run plan_ternary's programs (HOST_TERNARY), 0: plan's. */
uint32_t gatec_host_ternary(void) {
#ifdef HOST_TERNARY
    return 1;
#else
    return 0;
#endif
}
