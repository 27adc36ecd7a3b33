/* gatec's host engine: gatec_logic.c built for the machine it runs on (-march=native, so the
 * vector path is the CPU's own). gatec_logic.c itself is also the C firmware's source, whose
 * artifacts are pinned byte for byte, so host-only choices live here.
 *
 * A slot is one vector register with AVX-512 (8 words) and with AVX2 (4 words); other hosts keep
 * 8 words (measured best on AVX-512, not tuned elsewhere). With AVX2 a 512-bit slot is a pair of
 * registers and the counters' carry-save state (20 slots) spills; 4 words measured 1.2x faster
 * on the AVX2 path than 8, and the AVX2 packing and counting below another 1.25x
 * (benchmarks/bench_logic.py's network on an AVX-512 host built with -mno-avx512f). The path is
 * the compiler's choice for -march=native, which the engine's cache key names, so no run-time
 * dispatch is needed. */
#ifndef GATEC_TILE
#if defined(__AVX2__) && !defined(__AVX512F__)
#define GATEC_TILE 4
#else
#define GATEC_TILE 8
#endif
#endif
#include "gatec_logic.c"

uint32_t gatec_tile_words(void);
void gatec_host_run(const gatec_program *p, const gatec_counting *cp, const uint8_t *bits, uint32_t n,
                    gatec_word *scratch, int32_t *scores);

/* Words per slot, so that the caller sizes scratch and tiles as this build does. */
uint32_t gatec_tile_words(void) { return GATEC_TILE; }

#if defined(__AVX2__) && GATEC_TILE == 4 && !(defined(__AVX512BW__) && defined(__AVX512VBMI__))
#include <immintrin.h>
/* AVX2 packing: per 8 rows, 32 features a vector fold into bytes (byte f: bit r = row r's
 * feature f); then 8 x 8 blocks of those bytes are transposed with SSE2 unpacks so that a
 * feature's bytes of one word line up (byte b of word w: rows 64w + 8b .. 64w + 8b + 7). */
static void host_pack_tile(const gatec_program *p, const uint8_t *rows, uint32_t n_rows, gatec_word *act) {
    uint32_t n_in = p->n_inputs, i, r, rb, f, w, b;
    uint8_t *bytes = (uint8_t *)(act + ((uint64_t)p->n_slots + GATEC_COUNTER_PLANES) * W);
    const __m256i ones = _mm256_set1_epi8(1);
    for (rb = 0; rb < GATEC_TILE_SAMPLES / 8; rb++) {
        const uint8_t *row = rows + (uint64_t)rb * 8 * n_in;
        uint8_t *out = bytes + (uint64_t)rb * n_in;
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
/* gatec_pack_tile (gatec_logic.c) reading the rows in order: it folds 8 rows into a vector per
 * 64 features, for all features, before the next 8 rows, instead of walking the tile's 512
 * rows once per 64 features: a walk in memory order, which the hardware prefetchers follow
 * (1.07x the whole run from memory on the benchmark network). The folded vectors wait in the
 * slots that their 64 features' words go to (a partial last 64 on the stack), so no more
 * scratch is needed. */
static void host_pack_tile(const gatec_program *p, const uint8_t *rows, uint32_t n_rows, gatec_word *act) {
    uint32_t n_in = p->n_inputs, n_full = n_in / 64, n_chunks = (n_in + 63) / 64, i, rb, r, g, j, b;
    __m512i t[64], v[8], last[64], ones = _mm512_set1_epi8(1), bytes_across;
    __mmask64 tail = n_in % 64 ? (((__mmask64)1 << (n_in % 64)) - 1) : ~(__mmask64)0;
    uint8_t across[64];
    for (j = 0; j < 64; j++) across[j] = (uint8_t)(8 * (j % 8) + j / 8);  /* 8 x 8 byte transpose in each word */
    bytes_across = _mm512_loadu_si512(across);
    for (rb = 0; rb < 64; rb++) {  /* chunk i's vector rb, byte f: bit r = feature 64 i + f of row 8 rb + r */
        const uint8_t *row = rows + (uint64_t)rb * 8 * n_in;
        for (i = 0; i < n_chunks; i++) {
            __mmask64 in = i < n_full ? ~(__mmask64)0 : tail;
            __m512i x = _mm512_setzero_si512();
            for (r = 8; r-- > 0;) {
                x = _mm512_add_epi8(x, x);
                if (rb * 8 + r < n_rows)
                    x = _mm512_ternarylogic_epi64(x, _mm512_maskz_loadu_epi8(in, row + (uint64_t)r * n_in + 64 * i),
                                                  ones, 0xF8); /* x | (row & 1) */
            }
            _mm512_storeu_si512(i < n_full ? (void *)(act + (uint64_t)(64 * i + rb) * W) : (void *)&last[rb], x);
        }
    }
    for (i = 0; i < n_in; i += 64) {
        const __m512i *src = i < 64 * n_full ? (const __m512i *)(act + (uint64_t)i * W) : last;
        for (j = 0; j < 64; j++) t[j] = _mm512_loadu_si512(src + j);
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
#else
#define host_pack_tile gatec_pack_tile
#define host_planes_to_scores planes_to_scores
#endif

/* Carry-save adders of the counting, one instruction per output with AVX-512 (vpternlogq:
 * majority and three-way xor); gcc makes four of the two otherwise. */
#if defined(__AVX512F__) && GATEC_TILE == 8 && GATEC_WORD_BITS == 64
#include <immintrin.h>
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
 * for the whole run instead of a call per 16 words. */
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

/* Words a class's gates go to before they are counted: 16 KB, in L1. */
#define HOST_COUNT_BUF 256

#define HOST_COUNT_LOOP(expr)                                               \
    for (g = 0; g < count; g++) {                                           \
        PREFETCH_NEXT_ROWS();                                                \
        slot_t x = load(act + (uint64_t)A[g] * W), y = load(act + (uint64_t)B[g] * W); \
        v[fill++] = (slot_t)(expr);                                         \
        (void)x; (void)y;                                                   \
        if (fill == HOST_COUNT_BUF) host_add_words(&k, v, fill), fill = 0;  \
    }                                                                       \
    break;

/* count_tile (gatec_logic.c), the counted words buffered and folded in runs. */
static void host_count_tile(const gatec_program *p, const gatec_counting *cp, gatec_word *act, uint32_t first,
                            uint32_t n_rows, int32_t *scores, const uint8_t *ahead, uint32_t ahead_step) {
    const uint32_t *A = p->a_slot, *B = p->b_slot;
    uint32_t gi = first, g, c, r, fill, n_planes = counter_planes(p->n_outputs / p->k);
    counter k;
    slot_t v[HOST_COUNT_BUF];
    for (g = 0; g < first; g++) A += p->group_count[g], B += p->group_count[g];
    for (c = 0; c < p->k; c++) {
        counter_start(&k, act + (uint64_t)p->n_slots * W, n_planes);
        fill = 0;
        for (; gi < p->n_groups && cp->group_class[gi] == (int32_t)c; gi++) {
            uint32_t count = p->group_count[gi];
            switch (p->group_op[gi]) {
            EACH_OP(HOST_COUNT_LOOP)
            }
            A += count; B += count;
        }
        for (r = cp->rest_start[c]; r < cp->rest_start[c + 1]; r++) {
            v[fill++] = load(act + (uint64_t)cp->rest_slot[r] * W);
            if (fill == HOST_COUNT_BUF) host_add_words(&k, v, fill), fill = 0;
        }
        host_add_words(&k, v, fill & ~15u);
        counter_finish(&k, v + (fill & ~15u), fill & 15u);
        host_planes_to_scores(&k, n_rows, p->k, c, cp->class_ones[c], scores);
    }
}

/* gatec_run_counting with the host's packing and counting. */
void gatec_host_run(const gatec_program *p, const gatec_counting *cp, const uint8_t *bits, uint32_t n,
                    gatec_word *scratch, int32_t *scores) {
    uint32_t start, step = prefetch_step(p), first = p->n_groups, g, before = 0;
    while (first > 0 && cp->group_class[first - 1] >= 0) first--;
    for (g = 0; g < first; g++) before += p->group_count[g];
    for (start = 0; start < n; start += GATEC_TILE_SAMPLES) {
        uint32_t rows = n - start < GATEC_TILE_SAMPLES ? n - start : GATEC_TILE_SAMPLES;
        int full_next = n - start >= 2u * GATEC_TILE_SAMPLES;
        const uint8_t *ahead = bits + (uint64_t)(start + (full_next ? GATEC_TILE_SAMPLES : 0)) * p->n_inputs;
        uint32_t ahead_step = full_next ? step : 0;
        host_pack_tile(p, bits + (uint64_t)start * p->n_inputs, rows, scratch);
        eval_tile(p, scratch, first, ahead, ahead_step);
        host_count_tile(p, cp, scratch, first, rows, scores + (uint64_t)start * p->k,
                        ahead + (uint64_t)before * ahead_step, ahead_step);
    }
}
