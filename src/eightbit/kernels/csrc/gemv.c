/* One activation row (M = 1, decoder steps): exact GEMV with vpmaddubsw.
 *
 * vpmaddubsw (u8 x s8 -> int16 pairs) saturates for a in [0, 255], w in [-127, 127]. Shift the
 * activations to s = a - 128 in [-128, 127] and use |s| * (w * sign(s)): |s| <= 128 fits the
 * unsigned operand, |w * sign(s)| <= 127 the signed one, and a pair sums to at most
 * 2 * 128 * 127 = 32512 < 2^15: exact. Then acc = sum_k s * w + (128 - za) * colsum[n].
 *
 * The packed panels hold 16 columns x one k-pair per 32 bytes (gemm.c's layout, no second copy).
 * vpmaddubsw on two consecutive k-pairs gives per column two int16 partial sums; vpunpck{l,h}wd
 * puts them side by side and vpmaddwd with ones adds them into int32. |s| and s are broadcast
 * once per call into 32-byte vectors per k-pair, so the loop has no broadcasts. Per 64 products:
 * 2 vpsignb, 2 vpmaddubsw, 2 unpacks, 2 vpmaddwd, 2 vpaddd -- 10 vector-integer instructions
 * instead of about 13 (vpmovsxbw, broadcast, vpmaddwd, vpaddd) in gemm.c's one-row tile.
 */
#include <string.h>

#include "eightbit.h"

typedef struct {
    const __m256i *act; /* per k-pair: |s| pair broadcast, then s pair broadcast (2 vectors) */
    int64_t k2, panels, n, chunk;
    const int8_t *packed;
    const int32_t *colsum;
    int32_t corr; /* 128 - za (7-bit: -za) */
    int seven;    /* activations <= 127: no sign trick */
    const eb_epilogue *epi;
    const int32_t *left, *right;
    int vec_requant;
} gemv_job;

/* int16 sums over k-pair j of the 16 columns at b (sign trick, exact). */
static inline __m256i pair_sums(const int8_t *b, const __m256i *act, int64_t j) {
    __m256i w = _mm256_load_si256((const __m256i *)(b + 32 * j));
    return _mm256_maddubs_epi16(_mm256_load_si256(act + 2 * j),
                                _mm256_sign_epi8(w, _mm256_load_si256(act + 2 * j + 1)));
}

/* 7-bit activations (all <= 127): act holds the raw pair, vpmaddubsw is exact without the sign
 * trick (2 * 127 * 128 < 2^15), -128 weights included. */
static inline __m256i pair_sums7(const int8_t *b, const __m256i *act, int64_t j) {
    return _mm256_maddubs_epi16(_mm256_load_si256(act + 2 * j),
                                _mm256_load_si256((const __m256i *)(b + 32 * j)));
}

/* NP panels at b (stride ps bytes) -> int32 lo/hi accumulators (cols 0-3|8-11 and 4-7|12-15). */
#define GEMV_PANELS(NP, NAME, pair_sums)                                                        \
    static void NAME(const gemv_job *g, const int8_t *b, int64_t ps, __m256i *lo,               \
                     __m256i *hi) {                                                             \
        const __m256i ones = _mm256_set1_epi16(1);                                              \
        __m256i l[NP], h[NP];                                                                   \
        for (int q = 0; q < NP; q++) l[q] = h[q] = _mm256_setzero_si256();                      \
        for (int64_t j = 0; j < g->k2; j += 2) { /* pair k2 (odd k2) is zeros in act */        \
            for (int q = 0; q < NP; q++) {                                                      \
                __m256i s0 = pair_sums(b + q * ps, g->act, j);                                  \
                __m256i s1 = pair_sums(b + q * ps, g->act, j + 1);                              \
                l[q] = _mm256_add_epi32(l[q], _mm256_madd_epi16(_mm256_unpacklo_epi16(s0, s1), ones)); \
                h[q] = _mm256_add_epi32(h[q], _mm256_madd_epi16(_mm256_unpackhi_epi16(s0, s1), ones)); \
            }                                                                                   \
        }                                                                                       \
        for (int q = 0; q < NP; q++) lo[q] = l[q], hi[q] = h[q];                                \
    }
GEMV_PANELS(1, gemv1, pair_sums)
GEMV_PANELS(4, gemv4, pair_sums)
GEMV_PANELS(1, gemv1_7, pair_sums7)
GEMV_PANELS(4, gemv4_7, pair_sums7)

/* Panels of chunk c: accumulate, fix the zero point, run the epilogue. */
static void gemv_task(void *ctx, int64_t c) {
    const gemv_job *g = (const gemv_job *)ctx;
    int64_t p0 = c * g->chunk, p1 = p0 + g->chunk < g->panels ? p0 + g->chunk : g->panels;
    int64_t ps = g->k2 * 32;
    int32_t tile[16] __attribute__((aligned(32)));
    __m256i corr = _mm256_set1_epi32(g->corr);
    for (int64_t p = p0; p < p1;) {
        __m256i lo[4], hi[4];
        int np = p + 4 <= p1 ? 4 : 1;
        const int8_t *b = g->packed + p * ps;
        if (g->seven)
            (np == 4 ? gemv4_7 : gemv1_7)(g, b, ps, lo, hi);
        else
            (np == 4 ? gemv4 : gemv1)(g, b, ps, lo, hi);
        for (int q = 0; q < np; q++) {
            int64_t col = (p + q) * 16;
            __m256i c0 = _mm256_permute2x128_si256(lo[q], hi[q], 0x20);
            __m256i c1 = _mm256_permute2x128_si256(lo[q], hi[q], 0x31);
            __m256i s0 = _mm256_loadu_si256((const __m256i *)(g->colsum + col));
            __m256i s1 = _mm256_loadu_si256((const __m256i *)(g->colsum + col + 8));
            _mm256_store_si256((__m256i *)tile, _mm256_add_epi32(c0, _mm256_mullo_epi32(corr, s0)));
            _mm256_store_si256((__m256i *)(tile + 8),
                               _mm256_add_epi32(c1, _mm256_mullo_epi32(corr, s1)));
            int nr = g->n - col < 16 ? (int)(g->n - col) : 16;
            eb_epilogue_tile(g->epi, tile, 0, col, 1, nr, g->left, g->right, g->vec_requant);
        }
        p += np;
    }
}

/* The row as uint8 (quantized when the input is float) and its zero point. */
static const uint8_t *row_u8(const eb_input *in, int64_t k, uint8_t *buf, int32_t *za) {
    if (in->kind == EB_IN_U8) {
        *za = in->zp;
        return (const uint8_t *)in->x;
    }
    const float *x = (const float *)in->x;
    float s = in->scale;
    int32_t z = in->zp, qmin = in->qmin, qmax = in->qmax;
    if (in->kind == EB_IN_F32_ROW) {
        float lo, hi;
        eb_row_minmax(x, k, &lo, &hi);
        eb_row_qparams(lo, hi, qmax, &s, &z);
        in->row_scale[0] = s;
        if (in->row_zp) in->row_zp[0] = z;
    } else if (in->kind == EB_IN_F32_TENSOR) {
        s = in->row_scale[0];
        z = in->row_zp[0];
    }
    eb_quantize_u8(x, k, s, z, qmin, qmax, buf);
    *za = z;
    return buf;
}

int eb_gemv(const eb_input *in, int64_t k, const int8_t *packed, int64_t n,
            const eb_epilogue *epi, int seven, int nthreads) {
    gemv_job g;
    g.seven = seven;
    g.k2 = (k + 1) / 2;
    g.panels = (n + 15) / 16;
    g.n = n;
    g.packed = packed;
    g.colsum = (const int32_t *)(packed + g.panels * g.k2 * 32);
    g.epi = epi;
    int64_t pairs = g.k2 + 1, npad = g.panels * 16; /* one zero pair past the end */
    size_t vbytes = (size_t)pairs * 64, qbytes = ((size_t)k + 63) & ~(size_t)31;
    char *buf = (char *)eb_scratch(3, vbytes + qbytes + 2 * (size_t)npad * 4 + 64);
    if (!buf) return -1;
    __m256i *act = (__m256i *)buf;
    uint8_t *q = (uint8_t *)(buf + vbytes);
    int32_t *left = (int32_t *)(buf + vbytes + qbytes), *right = left + npad;
    g.vec_requant = eb_shift_arrays(epi, n, npad, left, right);
    g.left = left;
    g.right = right;
    int32_t za;
    const uint8_t *a = row_u8(in, k, q, &za);
    g.corr = seven ? -za : 128 - za;
    for (int64_t j = 0; j < pairs && seven; j++) {
        int a0 = 2 * j < k ? a[2 * j] : 0, a1 = 2 * j + 1 < k ? a[2 * j + 1] : 0;
        act[2 * j] = _mm256_set1_epi16((int16_t)(uint16_t)(a0 | a1 << 8));
    }
    for (int64_t j = 0; j < pairs && !seven; j++) {
        int s0 = 2 * j < k ? (int)a[2 * j] - 128 : 0;
        int s1 = 2 * j + 1 < k ? (int)a[2 * j + 1] - 128 : 0;
        uint16_t u = (uint16_t)((s0 < 0 ? -s0 : s0) | (s1 < 0 ? -s1 : s1) << 8);
        uint16_t v = (uint16_t)((uint8_t)(int8_t)s0 | (uint8_t)(int8_t)s1 << 8);
        act[2 * j] = _mm256_set1_epi16((int16_t)u);
        act[2 * j + 1] = _mm256_set1_epi16((int16_t)v);
    }
    g.act = act;
    int nt = nthreads < 1 ? 1 : nthreads;
    if ((double)k * (double)n < 65536.0) nt = 1;
    g.chunk = 8; /* panels (128 columns) per task, fewer when that leaves threads idle */
    while (g.chunk > 1 && (g.panels + g.chunk - 1) / g.chunk < 4 * nt) g.chunk /= 2;
    eb_parallel(nt, (g.panels + g.chunk - 1) / g.chunk, gemv_task, &g);
    return 0;
}
