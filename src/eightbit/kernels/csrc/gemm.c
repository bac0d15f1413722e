/* eightbit INT8 GEMM driver and microkernel (AVX2, exact).
 *
 * C[m, n] = sum_k A16[m, k] * W[n, k] where A16 = a - zero_point as int16 (prepared once per call
 * in a thread-local buffer, row stride lda pairs) and W is packed as int8 panels of 16 columns,
 * k-pairs interleaved, sign-extended to int16 on load: one vpmaddwd multiplies a broadcast
 * (a[2k], a[2k+1]) pair with 8 columns, exactly. The 6x16 microkernel keeps 12 ymm int32
 * accumulators; K is blocked by KC2 pairs (partial sums in a per-thread buffer), M by MC rows,
 * N by NCP panels. Finished tiles go straight through the fused epilogue (int32 store, float
 * scale + bias, or fixed-point requantization). Threads come from pool.c.
 *
 * Why not vpmaddubsw (u8 x s8, 32 products per instruction, what MLAS and fbgemm use): its int16
 * pair sums saturate for 8-bit activations. Measured on this Zen 3 core (3.1 GHz): vpmaddwd and
 * vpmaddubsw issue at 2 per cycle, and a vpmaddwd/vpaddd mix at about 3 per cycle, so this exact
 * kernel (vpmaddwd + vpaddd: 2 instructions per 16 products) peaks near 24 products per cycle,
 * while MLAS's saturating u8s8 loop (vpmaddubsw + vpmaddwd + vpaddd: 3 per 32 products) reaches
 * about 31 -- a ratio of 0.75-0.8 that no tile shape changes (6x16, 4x24, 3x32 and 2x48 all
 * measured alike). The exact vpmaddubsw variants considered (the vpsignb trick on activations
 * shifted by 128, 7-bit splits of activations or weights) need as many or more instructions per
 * product once several rows share the weight loads; for a single row the sign trick wins and
 * gemv.c uses it. When the caller guarantees 7-bit activations (reduce_range: a <= 127), pair
 * sums are at most 2 * 127 * 128 < 2^15 and the MLAS-style loop is exact: the "7-bit path" below
 * (uk7_*, compute_block7, weights repacked in k-quads), selected by a non-NULL quad pointer.
 * On CPUs with AVX512-VNNI, compute_block7 runs vnni.c's vpdpbusd kernels instead, which are
 * exact for 8-bit activations too (eb_vnni_enabled): then every M > 1 call takes the quad path.
 */
#include <stdlib.h>
#include <string.h>

#include "eightbit.h"

#ifndef KC2
#define KC2 256 /* k-pairs per K block (8 KiB int8 weight micro-panel, stays in L1) */
#endif
#ifndef KC4
#define KC4 256 /* k-quads per K block of the 7-bit path (16 KiB micro-panel: measured faster than 8) */
#endif
#ifndef KCV
/* k-quads per K block of the VNNI kernels: 4 panels x 1024 quads = 256 KiB of weights and 72 rows
 * x 4 KiB of activations still fit Zen 4's 1 MiB L2, from which the 6x64 tile's loads (about
 * 21 bytes per cycle) are served fast enough; K blocking only adds partial-sum round trips */
#define KCV 1024
#endif
#ifndef MC
#define MC 72 /* rows per M block */
#endif
#ifndef AMX_MC
#define AMX_MC 64 /* rows per M block of the AMX kernel: whole 16-row tiles */
#endif
#ifndef AMX_MIN_M
#define AMX_MIN_M 8 /* fewer rows leave most of a 16-row tile idle: the VNNI kernels are faster */
#endif
#ifndef NCP
#define NCP 16 /* weight panels per N block (256 columns) */
#endif

/* ---------------------------------------------------------------- microkernel */

/* One row of a tile, in assembly so that gcc neither hoists the broadcasts of all rows (it then
 * runs out of the 16 ymm registers and spills accumulators) nor reorders them. */
#define ROW(APTR, C0, C1)                                                                       \
    __asm__ volatile("vpbroadcastd %[a], %%ymm13\n\t"                                            \
                     "vpmaddwd %[b0], %%ymm13, %%ymm12\n\t"                                      \
                     "vpmaddwd %[b1], %%ymm13, %%ymm13\n\t"                                      \
                     "vpaddd %%ymm12, %[c0], %[c0]\n\t"                                          \
                     "vpaddd %%ymm13, %[c1], %[c1]"                                             \
                     : [c0] "+x"(C0), [c1] "+x"(C1)                                             \
                     : [a] "m"(*(APTR)), [b0] "x"(b0), [b1] "x"(b1)                             \
                     : "xmm12", "xmm13")

#define LOAD_ACC(I, C0, C1)                                                                     \
    if (mr_ > I) {                                                                              \
        C0 = cin ? _mm256_loadu_si256((const __m256i *)(cin + 16 * I)) : _mm256_setzero_si256(); \
        C1 = cin ? _mm256_loadu_si256((const __m256i *)(cin + 16 * I + 8))                      \
                 : _mm256_setzero_si256();                                                      \
    }
#define STORE_ACC(I, C0, C1)                                                                    \
    if (mr_ > I) {                                                                              \
        _mm256_storeu_si256((__m256i *)(cout + 16 * I), C0);                                    \
        _mm256_storeu_si256((__m256i *)(cout + 16 * I + 8), C1);                                \
    }

/* acc (mr x 16) = [cin +] A[0:mr, 0:k2 pairs] * B panel; written to cout (96 int32, row-major).
 * Per k-pair: 2 sign-extending weight loads, mr broadcasts, 2 mr vpmaddwd, 2 mr vpaddd; the 12
 * accumulators are named variables (gcc keeps those in registers, not arrays). */
#define UKERNEL(MR)                                                                             \
    static void uk##MR(int64_t k2, const int32_t *a, int64_t lda, const int8_t *b,              \
                       const int32_t *cin, int32_t *cout) {                                     \
        const int mr_ = MR;                                                                     \
        __m256i x0 = _mm256_setzero_si256(), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0;       \
        __m256i x6 = x0, x7 = x0, x8 = x0, x9 = x0, x10 = x0, x11 = x0;                         \
        LOAD_ACC(0, x0, x1) LOAD_ACC(1, x2, x3) LOAD_ACC(2, x4, x5)                             \
        LOAD_ACC(3, x6, x7) LOAD_ACC(4, x8, x9) LOAD_ACC(5, x10, x11)                           \
        for (int64_t k = 0; k < k2; k++) {                                                      \
            __m256i b0 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(b + 32 * k)));   \
            __m256i b1 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(b + 32 * k + 16))); \
            if (MR > 0) ROW(a + k, x0, x1);                                                     \
            if (MR > 1) ROW(a + lda + k, x2, x3);                                               \
            if (MR > 2) ROW(a + 2 * lda + k, x4, x5);                                           \
            if (MR > 3) ROW(a + 3 * lda + k, x6, x7);                                           \
            if (MR > 4) ROW(a + 4 * lda + k, x8, x9);                                           \
            if (MR > 5) ROW(a + 5 * lda + k, x10, x11);                                         \
        }                                                                                       \
        STORE_ACC(0, x0, x1) STORE_ACC(1, x2, x3) STORE_ACC(2, x4, x5)                          \
        STORE_ACC(3, x6, x7) STORE_ACC(4, x8, x9) STORE_ACC(5, x10, x11)                        \
    }
UKERNEL(1)
UKERNEL(2)
UKERNEL(3)
UKERNEL(4)
UKERNEL(5)
UKERNEL(6)

typedef void (*ukernel_fn)(int64_t, const int32_t *, int64_t, const int8_t *, const int32_t *,
                           int32_t *);
static const ukernel_fn UK[7] = {NULL, uk1, uk2, uk3, uk4, uk5, uk6};

/* ---------------------------------------------------------------- 7-bit microkernel
 * Activations known to lie in [0, 127] (reduce_range): vpmaddubsw multiplies a broadcast k-quad
 * of raw uint8 activations with 8 columns x 4 int8 weights; an int16 pair sum is at most
 * 2 * 127 * 128 = 32512 < 2^15, so it never saturates. vpmaddwd with ones widens each to int32
 * (the quad's sum per column) and vpaddd accumulates: 3 instructions per 32 products. The zero
 * point is applied after the last K block as acc -= za * colsum[n] (int32 wrap-around, exact since
 * the true result fits). Weights: the quad layout of eb_pack_weight_quad, read as memory operands
 * of vpmaddubsw (ones stays in a register: measured 2-4% faster than the reverse). */

#define ROW7(APTR, C0, C1)                                                                      \
    __asm__ volatile("vpbroadcastd %[a], %%ymm13\n\t"                                            \
                     "vpmaddubsw %[b0], %%ymm13, %%ymm12\n\t"                                    \
                     "vpmaddwd %[ones], %%ymm12, %%ymm12\n\t"                                    \
                     "vpaddd %%ymm12, %[c0], %[c0]\n\t"                                          \
                     "vpmaddubsw %[b1], %%ymm13, %%ymm13\n\t"                                    \
                     "vpmaddwd %[ones], %%ymm13, %%ymm13\n\t"                                    \
                     "vpaddd %%ymm13, %[c1], %[c1]"                                             \
                     : [c0] "+x"(C0), [c1] "+x"(C1)                                             \
                     : [a] "m"(*(const int32_t *)(APTR)), [b0] "m"(*(const __m256i *)(bp)),     \
                       [b1] "m"(*(const __m256i *)(bp + 32)), [ones] "x"(ones)                  \
                     : "xmm12", "xmm13")

/* acc (mr x 16) = [cin +] A8[0:mr, 0:k4 quads] * B quad panel (64 bytes per quad). */
#define UKERNEL7(MR)                                                                            \
    static void uk7_##MR(int64_t k4, const uint8_t *a, int64_t lda, const int8_t *b,            \
                         int64_t ps, const int32_t *cin, int32_t *cout) {                       \
        (void)ps; /* one panel */                                                               \
        const int mr_ = MR;                                                                     \
        const __m256i ones = _mm256_set1_epi16(1);                                              \
        __m256i x0 = _mm256_setzero_si256(), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0;       \
        __m256i x6 = x0, x7 = x0, x8 = x0, x9 = x0, x10 = x0, x11 = x0;                         \
        LOAD_ACC(0, x0, x1) LOAD_ACC(1, x2, x3) LOAD_ACC(2, x4, x5)                             \
        LOAD_ACC(3, x6, x7) LOAD_ACC(4, x8, x9) LOAD_ACC(5, x10, x11)                           \
        for (int64_t k = 0; k < k4; k++) {                                                      \
            const int8_t *bp = b + 64 * k;                                                      \
            if (MR > 0) ROW7(a + 4 * k, x0, x1);                                                \
            if (MR > 1) ROW7(a + lda + 4 * k, x2, x3);                                          \
            if (MR > 2) ROW7(a + 2 * lda + 4 * k, x4, x5);                                      \
            if (MR > 3) ROW7(a + 3 * lda + 4 * k, x6, x7);                                      \
            if (MR > 4) ROW7(a + 4 * lda + 4 * k, x8, x9);                                      \
            if (MR > 5) ROW7(a + 5 * lda + 4 * k, x10, x11);                                    \
        }                                                                                       \
        STORE_ACC(0, x0, x1) STORE_ACC(1, x2, x3) STORE_ACC(2, x4, x5)                          \
        STORE_ACC(3, x6, x7) STORE_ACC(4, x8, x9) STORE_ACC(5, x10, x11)                        \
    }
UKERNEL7(1)
UKERNEL7(2)
UKERNEL7(3)
UKERNEL7(4)
UKERNEL7(5)
UKERNEL7(6)

/* indexed like EB_UKV ([mr][nz], flattened): one panel per call */
static const eb_ukernel8_fn UK7[EB_MR + 1][EB_VNNI_NZ + 1] = {
    {NULL}, {NULL, uk7_1}, {NULL, uk7_2}, {NULL, uk7_3}, {NULL, uk7_4}, {NULL, uk7_5}, {NULL, uk7_6}};

/* ---------------------------------------------------------------- epilogues */

/* gemmlowp SaturatingRoundingDoublingHighMul on 8 lanes: floor((x * m + 2^30) / 2^31), which
 * equals the nudged truncating division for both signs. Its one overflow, x = m = INT32_MIN, needs
 * no test: m is a multiplier M0 in [0, 2^31) (native.Requantization rejects negative ones, and
 * quantize_multiplier never makes one), so m != INT32_MIN, and |x * m| < 2^62 fits the 64-bit
 * products, whose high half then lies in [-2^31, 2^31) (|x * m| / 2^31 < 2^31). */
static inline __m256i srdhm(__m256i x, __m256i m) {
    const __m256i half = _mm256_set1_epi64x(1LL << 30);
    __m256i ev = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, m), half), 31);
    __m256i od = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(m, 32)), half);
    od = _mm256_slli_epi64(_mm256_srli_epi64(od, 31), 32);
    return _mm256_blend_epi32(ev, od, 0xAA);
}

/* Requantize 8 accumulators of columns [j, j+8) (all right shifts <= 30, left shifts >= 0);
 * shift_left = 0 when every left shift is 0 (decided once per call by eb_shift_arrays): then the
 * left shift and its saturation are skipped, r << 0 being r. */
static inline __m256i requant8(__m256i acc, const eb_epilogue *e, const int32_t *left,
                               const int32_t *right, int64_t j, int shift_left) {
    __m256i x = acc;
    if (e->bias_i) x = _mm256_add_epi32(x, _mm256_loadu_si256((const __m256i *)(e->bias_i + j)));
    if (shift_left) {
        __m256i l = _mm256_loadu_si256((const __m256i *)(left + j));
        __m256i r = x;
        x = _mm256_sllv_epi32(r, l);
        __m256i ok = _mm256_cmpeq_epi32(_mm256_srav_epi32(x, l), r);
        __m256i sat = _mm256_xor_si256(_mm256_srai_epi32(r, 31), _mm256_set1_epi32(INT32_MAX));
        x = _mm256_blendv_epi8(sat, x, ok);
    }
    __m256i h = srdhm(x, _mm256_loadu_si256((const __m256i *)(e->m0 + j)));
    __m256i rt = _mm256_loadu_si256((const __m256i *)(right + j));
    __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(_mm256_set1_epi32(1), rt),
                                    _mm256_set1_epi32(1));
    __m256i rem = _mm256_and_si256(h, mask);
    __m256i thr = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), _mm256_srai_epi32(h, 31));
    __m256i q = _mm256_sub_epi32(_mm256_srav_epi32(h, rt), _mm256_cmpgt_epi32(rem, thr));
    /* clamp(q + zp, lo, hi) == clamp(q, lo - zp, hi - zp) + zp, without overflow */
    q = _mm256_max_epi32(q, _mm256_set1_epi32(e->lo - e->zp));
    q = _mm256_min_epi32(q, _mm256_set1_epi32(e->hi - e->zp));
    return _mm256_add_epi32(q, _mm256_set1_epi32(e->zp));
}

/* Scalar requantization for any shift in [-31, 62] (used when some right shift exceeds 30). */
static int32_t requant1(int32_t acc, const eb_epilogue *e, int64_t j) {
    int64_t r = (int64_t)acc + (e->bias_i ? e->bias_i[j] : 0);
    r = (int32_t)r; /* int32 wrap-around of acc + bias, as in int32 tensors */
    int32_t s = e->shift[j];
    int left = s < 0 ? -s : 0, right = s > 0 ? s : 0;
    int64_t x = r * ((int64_t)1 << left);
    x = x > INT32_MAX ? INT32_MAX : (x < INT32_MIN ? INT32_MIN : x);
    int64_t p = x * (int64_t)e->m0[j]; /* m0 >= 0: no INT32_MIN * INT32_MIN (see srdhm) */
    int64_t high = (p + (p >= 0 ? (1LL << 30) : 1 - (1LL << 30))) / (1LL << 31);
    int64_t mask = ((int64_t)1 << right) - 1;
    int64_t rem = high & mask, thr = (mask >> 1) + (high < 0);
    int64_t q = (high >> right) + (rem > thr) + e->zp;
    return (int32_t)(q < e->lo ? e->lo : (q > e->hi ? e->hi : q));
}

/* The first maximum of v[0, nr) (columns col..), skipped columns counting as -inf (what
 * suppressing them before torch.argmax does: one may still win a row of -inf), a NaN counting as
 * the largest value (the first NaN wins). */
static eb_best best16(float *v, int nr, const uint8_t *skip, int64_t col) {
    for (int j = nr; j < 16; j++) v[j] = -INFINITY; /* padding never wins: ties go to the first */
    if (skip)
        for (int j = 0; j < nr; j++)
            if (skip[j]) v[j] = -INFINITY;
    __m256 a = _mm256_loadu_ps(v), b = _mm256_loadu_ps(v + 8);
    int nan = _mm256_movemask_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)) |
              (_mm256_movemask_ps(_mm256_cmp_ps(b, b, _CMP_UNORD_Q)) << 8);
    if (nan) return (eb_best){NAN, (int32_t)(col + __builtin_ctz((unsigned)nan))};
    __m256 m = _mm256_max_ps(a, b);
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    __m256 mx = _mm256_set1_ps(_mm_cvtss_f32(m4));
    int eq = _mm256_movemask_ps(_mm256_cmp_ps(a, mx, _CMP_EQ_OQ)) |
             (_mm256_movemask_ps(_mm256_cmp_ps(b, mx, _CMP_EQ_OQ)) << 8);
    return (eb_best){_mm_cvtss_f32(m4), (int32_t)(col + __builtin_ctz((unsigned)eq))};
}

/* best16 of one tile row in 16 AVX-512 lanes (used where eb_vnni_enabled): the same values as
 * the F32 epilogue (the same operations in the same order, per lane), kept in one register, and
 * the first maximum found with one reduction and one compare mask instead of two 8-lane halves
 * stored, reloaded and reduced. Same result as best16, bit for bit (tested on both paths). */
EB_AVX512 static inline eb_best best_row16(const eb_epilogue *e, const int32_t *acc, float rs,
                                           int64_t col, int nr) {
    __mmask16 m = (__mmask16)((1u << nr) - 1u);
    __m512 s = _mm512_mul_ps(_mm512_set1_ps(rs), _mm512_maskz_loadu_ps(m, e->col_scale + col));
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(acc)), s);
    if (e->bias_f) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, e->bias_f + col));
    if (e->bias_after) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, e->bias_after + col));
    __mmask16 out = (__mmask16)~m; /* padding never wins */
    if (e->skip) {
        __m128i sk = _mm_setzero_si128();
        memcpy(&sk, e->skip + col, (size_t)nr);
        out |= (__mmask16)~_mm_movemask_epi8(_mm_cmpeq_epi8(sk, _mm_setzero_si128()));
    }
    v = _mm512_mask_mov_ps(v, out, _mm512_set1_ps(-INFINITY));
    unsigned nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    if (nan) return (eb_best){NAN, (int32_t)(col + __builtin_ctz(nan))};
    float mx = _mm512_reduce_max_ps(v);
    unsigned eq = _mm512_cmp_ps_mask(v, _mm512_set1_ps(mx), _CMP_EQ_OQ);
    return (eb_best){mx, (int32_t)(col + __builtin_ctz(eq))};
}

/* best_row16 for the mr rows of a tile (one call: the rows' reductions overlap) */
EB_AVX512 static void best_tile16(const eb_epilogue *e, const int32_t *c, int64_t row, int64_t col,
                                  int mr, int nr) {
    int64_t stride = (e->n + 15) / 16; /* panels: eb_best entries per row */
    eb_best *out = (eb_best *)e->out + row * stride + col / 16;
    for (int i = 0; i < mr; i++)
        out[i * stride] =
            best_row16(e, c + 16 * i, e->row_scale ? e->row_scale[row + i] : e->row_scale_const,
                       col, nr);
}

/* Apply the epilogue to an mr x nr tile at (row, col); c is 6 x 16 int32 row-major. */
void eb_epilogue_tile(const eb_epilogue *e, const int32_t *c, int64_t row, int64_t col, int mr,
                          int nr, const int32_t *left, const int32_t *right, int vec_requant) {
    int64_t n = e->n;
    if (eb_vnni_enabled && e->kind == EB_OUT_ARGMAX) {
        best_tile16(e, c, row, col, mr, nr);
        return;
    }
    for (int i = 0; i < mr; i++) {
        const int32_t *ci = c + 16 * i;
        int64_t o = (row + i) * n + col;
        if (e->kind == EB_OUT_I32) {
            int32_t *out = (int32_t *)e->out + o;
            if (nr == 16) {
                _mm256_storeu_si256((__m256i *)out, _mm256_loadu_si256((const __m256i *)ci));
                _mm256_storeu_si256((__m256i *)(out + 8),
                                    _mm256_loadu_si256((const __m256i *)(ci + 8)));
            } else {
                memcpy(out, ci, (size_t)nr * sizeof(int32_t));
            }
        } else if (eb_vnni_enabled && (e->kind == EB_OUT_F32_GELU || e->kind == EB_OUT_U8_GELU)) {
            int u8 = e->kind == EB_OUT_U8_GELU;
            eb_gelu_row16(ci, e->row_scale ? e->row_scale[row + i] : e->row_scale_const,
                          e->col_scale + col, e->bias_f ? e->bias_f + col : NULL, nr, u8,
                          e->q_scale, e->zp, e->lo, e->hi,
                          u8 ? (void *)((uint8_t *)e->out + o) : (void *)((float *)e->out + o));
        } else if (e->kind == EB_OUT_F32 || e->kind == EB_OUT_F32_GELU ||
                   e->kind == EB_OUT_U8_GELU || e->kind == EB_OUT_ARGMAX) {
            float tmp[16];
            int stored = e->kind == EB_OUT_F32 || e->kind == EB_OUT_F32_GELU;
            float *out = stored ? (float *)e->out + o : tmp;
            float *dst = nr == 16 ? out : tmp;
            __m256 rs = _mm256_set1_ps(e->row_scale ? e->row_scale[row + i] : e->row_scale_const);
            __m256 q[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int h = 0; h < 2; h++) {
                /* out = float(acc) * (row_scale * col_scale) + bias, rounded after each op */
                __m256 s = _mm256_mul_ps(rs, _mm256_loadu_ps(e->col_scale + col + 8 * h));
                __m256 v = _mm256_mul_ps(
                    _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(ci + 8 * h))), s);
                if (e->bias_f) v = _mm256_add_ps(v, _mm256_loadu_ps(e->bias_f + col + 8 * h));
                if (e->bias_after)
                    v = _mm256_add_ps(v, _mm256_loadu_ps(e->bias_after + col + 8 * h));
                if (e->kind == EB_OUT_F32_GELU || e->kind == EB_OUT_U8_GELU) v = eb_gelu8(v);
                if (e->kind == EB_OUT_U8_GELU) {
                    q[h] = eb_quant8(v, _mm256_set1_ps(e->q_scale), _mm256_set1_ps((float)e->zp));
                    q[h] = _mm256_min_ps(_mm256_max_ps(q[h], _mm256_set1_ps((float)e->lo)),
                                         _mm256_set1_ps((float)e->hi));
                } else {
                    _mm256_storeu_ps(dst + 8 * h, v);
                }
            }
            if (e->kind == EB_OUT_U8_GELU) {
                __m256i w = _mm256_packs_epi32(_mm256_cvtps_epi32(q[0]), _mm256_cvtps_epi32(q[1]));
                w = _mm256_permute4x64_epi64(w, 0xD8); /* the 16 values in order, int16 */
                __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(w),
                                             _mm256_extracti128_si256(w, 1));
                uint8_t bytes[16];
                _mm_storeu_si128((__m128i *)bytes, b);
                memcpy((uint8_t *)e->out + o, bytes, (size_t)nr);
            } else if (e->kind == EB_OUT_ARGMAX) {
                ((eb_best *)e->out)[(row + i) * ((n + 15) / 16) + col / 16] =
                    best16(tmp, nr, e->skip ? e->skip + col : NULL, col);
            } else if (nr != 16) {
                memcpy(out, tmp, (size_t)nr * sizeof(float));
            }
        } else {
            uint8_t *out = (uint8_t *)e->out + o;
            uint8_t tmp[16];
            if (vec_requant) {
                int sl = vec_requant == EB_REQUANT_VEC; /* else EB_REQUANT_VEC_RIGHT */
                __m256i q0 =
                    requant8(_mm256_loadu_si256((const __m256i *)ci), e, left, right, col, sl);
                __m256i q1 = requant8(_mm256_loadu_si256((const __m256i *)(ci + 8)), e, left, right,
                                      col + 8, sl);
                __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
                __m128i lo = _mm256_castsi256_si128(p), hi = _mm256_extracti128_si256(p, 1);
                __m128i b = e->kind == EB_OUT_U8 ? _mm_packus_epi16(lo, hi) : _mm_packs_epi16(lo, hi);
                _mm_storeu_si128((__m128i *)tmp, b);
            } else {
                for (int j = 0; j < nr; j++) tmp[j] = (uint8_t)requant1(ci[j], e, col + j);
            }
            memcpy(out, tmp, (size_t)nr);
        }
    }
}

/* ---------------------------------------------------------------- thread-local scratch */

/* Per-thread buffers that only grow: slot 0 holds the prepared A rows of a call (owned by the
 * calling thread), slot 1 the K-blocking partial sums of each worker, slot 2 per-row activation
 * parameters of dynamic calls (calling thread), slot 3 the activation vectors of gemv.c. */
static __thread void *tls_buf[4] = {NULL, NULL, NULL, NULL};
static __thread size_t tls_cap[4] = {0, 0, 0, 0};

void *eb_scratch(int slot, size_t bytes) {
    if (bytes > tls_cap[slot]) {
        free(tls_buf[slot]);
        tls_cap[slot] = (bytes + 4095) & ~(size_t)4095;
        tls_buf[slot] = aligned_alloc(64, tls_cap[slot]);
        if (!tls_buf[slot]) tls_cap[slot] = 0;
    }
    return tls_buf[slot];
}

/* ---------------------------------------------------------------- driver */

typedef struct {
    const eb_input *in;
    int64_t m, k, n, k2, lda, panels;
    int32_t *a16; /* (m, lda) int16 pairs */
    const int8_t *packed;
    /* 7-bit path (quad != NULL): uint8 rows (m, lda8 bytes), k4 quads, column sums */
    const int8_t *quad;
    uint8_t *a8;
    int64_t k4, lda8;
    const int32_t *colsum;
    const eb_ukernel8_fn *uk8; /* UK7, or EB_UKV on VNNI CPUs (exact for 8-bit activations too),
                                  flattened [mr][nz] */
    int group;                 /* panels per microkernel call: 1 (UK7) or EB_VNNI_NZ */
    int amx;                   /* quad path on amx.c's tile kernel (eb_amx_enabled, M >= AMX_MIN_M) */
    int64_t mc;                /* rows per M block: MC, or AMX_MC (whole 16-row tiles) */
    int64_t kc4;               /* k-quads per K block: KC4 (UK7) or KCV */
    const eb_epilogue *epi;
    const int32_t *left, *right; /* padded to panels * 16 */
    int vec_requant;
    /* chunks of MC rows x nch panels, run by the thread pool */
    int64_t nch, chunks_n, chunks;
    int32_t *ready; /* atomic per M block: 0 raw, 1 being prepared, 2 prepared */
    int failed;     /* atomic: some chunk could not get scratch memory */
} job;

/* Quantization parameters of float row r (static, per-row measured, or per-tensor given). */
static void row_params(const eb_input *in, const float *x, int64_t k, int64_t r, float *s,
                       int32_t *z) {
    *s = in->scale;
    *z = in->zp;
    if (in->kind == EB_IN_F32_ROW) {
        float lo = 0.0f, hi = 0.0f;
        if (k > 0) eb_row_minmax(x, k, &lo, &hi);
        eb_row_qparams(lo, hi, in->qmax, s, z);
        in->row_scale[r] = *s;
        if (in->row_zp) in->row_zp[r] = *z;
    } else if (in->kind == EB_IN_F32_TENSOR) {
        *s = in->row_scale[r];
        *z = in->row_zp[r];
    }
}

static void prepare_rows(const job *jb, int64_t r0, int64_t r1) {
    const eb_input *in = jb->in;
    int64_t k = jb->k;
    if (jb->quad) { /* quad path: raw uint8 rows, zero padded to whole quads */
        for (int64_t r = r0; r < r1; r++) {
            uint8_t *dst = jb->a8 + r * jb->lda8;
            if (in->kind == EB_IN_U8) {
                memcpy(dst, (const uint8_t *)in->x + r * k, (size_t)k);
            } else {
                const float *x = (const float *)in->x + r * k;
                float s;
                int32_t z;
                row_params(in, x, k, r, &s, &z);
                eb_quantize_u8(x, k, s, z, in->qmin, in->qmax, dst);
            }
            memset(dst + k, 0, (size_t)(jb->k4 * 4 - k));
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        int16_t *dst = (int16_t *)(jb->a16 + r * jb->lda);
        if (in->kind == EB_IN_U8) {
            eb_widen_row_u8((const uint8_t *)in->x + r * k, k, in->zp, dst);
        } else {
            const float *x = (const float *)in->x + r * k;
            float s;
            int32_t z;
            row_params(in, x, k, r, &s, &z);
            eb_quantize_row_i16(x, k, s, z, in->qmin, in->qmax, dst);
        }
    }
}

/* Rows [m0, m1) x panels [p0, p1) of the output. */
static void compute_block(const job *jb, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                          int32_t *partial) {
    int32_t tile[EB_MR * 16] __attribute__((aligned(64)));
    int64_t k2 = jb->k2, lda = jb->lda;
    for (int64_t ic = m0; ic < m1; ic += MC) {
        int64_t ie = ic + MC < m1 ? ic + MC : m1;
        for (int64_t jc = p0; jc < p1; jc += NCP) {
            int64_t je = jc + NCP < p1 ? jc + NCP : p1;
            for (int64_t pc = 0; pc < k2 || pc == 0; pc += KC2) {
                int64_t kc = k2 - pc < KC2 ? k2 - pc : KC2;
                int first = pc == 0, last = pc + KC2 >= k2;
                for (int64_t jr = jc; jr < je; jr++) {
                    const int8_t *b = jb->packed + (jr * k2 + pc) * 32;
                    for (int64_t ir = ic; ir < ie; ir += EB_MR) {
                        int mr = ie - ir < EB_MR ? (int)(ie - ir) : EB_MR;
                        int32_t *part =
                            partial + (((ir - ic) / EB_MR) * NCP + (jr - jc)) * (EB_MR * 16);
                        UK[mr](kc, jb->a16 + ir * lda + pc, lda, b, first ? NULL : part,
                               last ? tile : part);
                        if (last) {
                            int64_t col = jr * 16;
                            int nr = jb->n - col < 16 ? (int)(jb->n - col) : 16;
                            eb_epilogue_tile(jb->epi, tile, ir, col, mr, nr, jb->left, jb->right,
                                          jb->vec_requant);
                        }
                    }
                }
            }
        }
    }
}

/* A finished quad-path tile (mr rows of 16 int32, row stride 16) of rows ir.., columns col..:
 * subtract za * colsum (the kernels multiply raw uint8 activations), then the epilogue. */
static void finish_quad_tile(const job *jb, int32_t *t, int64_t ir, int64_t col, int mr) {
    const int32_t *row_zp = jb->in->kind == EB_IN_F32_ROW || jb->in->kind == EB_IN_F32_TENSOR
                                ? jb->in->row_zp
                                : NULL; /* dynamic: one zero point per row */
    __m256i za = _mm256_set1_epi32(jb->in->zp);
    __m256i cs0 = _mm256_loadu_si256((const __m256i *)(jb->colsum + col));
    __m256i cs1 = _mm256_loadu_si256((const __m256i *)(jb->colsum + col + 8));
    __m256i zs0 = _mm256_mullo_epi32(za, cs0);
    __m256i zs1 = _mm256_mullo_epi32(za, cs1);
    for (int i = 0; i < mr; i++) {
        __m256i *ti = (__m256i *)(t + 16 * i);
        if (row_zp) {
            __m256i z = _mm256_set1_epi32(row_zp[ir + i]);
            zs0 = _mm256_mullo_epi32(z, cs0);
            zs1 = _mm256_mullo_epi32(z, cs1);
        }
        _mm256_store_si256(ti, _mm256_sub_epi32(_mm256_load_si256(ti), zs0));
        _mm256_store_si256(ti + 1, _mm256_sub_epi32(_mm256_load_si256(ti + 1), zs1));
    }
    int nr = jb->n - col < 16 ? (int)(jb->n - col) : 16;
    eb_epilogue_tile(jb->epi, t, ir, col, mr, nr, jb->left, jb->right, jb->vec_requant);
}

/* The quad path's compute_block (7-bit AVX2 or VNNI microkernels): quads instead of pairs, up to
 * jb->group panels per microkernel call (VNNI: 4), zero point fixed before the epilogue. */
static void compute_block7(const job *jb, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                           int32_t *partial) {
    int32_t tile[EB_VNNI_NZ * EB_MR * 16] __attribute__((aligned(64)));
    int64_t k4 = jb->k4, lda = jb->lda8, ps = k4 * 64;
    for (int64_t ic = m0; ic < m1; ic += MC) {
        int64_t ie = ic + MC < m1 ? ic + MC : m1;
        for (int64_t jc = p0; jc < p1; jc += NCP) {
            int64_t je = jc + NCP < p1 ? jc + NCP : p1;
            for (int64_t pc = 0; pc < k4 || pc == 0; pc += jb->kc4) {
                int64_t kc = k4 - pc < jb->kc4 ? k4 - pc : jb->kc4;
                int first = pc == 0, last = pc + jb->kc4 >= k4;
                for (int64_t jr = jc; jr < je; jr += jb->group) {
                    int nz = je - jr < jb->group ? (int)(je - jr) : jb->group;
                    const int8_t *b = jb->quad + (jr * k4 + pc) * 64;
                    for (int64_t ir = ic; ir < ie; ir += EB_MR) {
                        int mr = ie - ir < EB_MR ? (int)(ie - ir) : EB_MR;
                        int32_t *part =
                            partial + (((ir - ic) / EB_MR) * NCP + (jr - jc)) * (EB_MR * 16);
                        jb->uk8[mr * (EB_VNNI_NZ + 1) + nz](kc, jb->a8 + ir * lda + 4 * pc, lda,
                                                            b, ps, first ? NULL : part,
                                                            last ? tile : part);
                        if (!last) continue;
                        for (int q = 0; q < nz; q++)
                            finish_quad_tile(jb, tile + q * EB_MR * 16, ir, (jr + q) * 16, mr);
                    }
                }
            }
        }
    }
}

/* The quad path's compute_block on amx.c's tile kernel: 32 x 32 tiles over all of K at once. */
static void compute_block_amx(const job *jb, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
    int32_t tile[2 * 512] __attribute__((aligned(64)));
    int64_t k4 = jb->k4, lda = jb->lda8, ps = k4 * 64;
    for (int64_t jr = p0; jr < p1; jr += 2) {
        int nb = p1 - jr < 2 ? (int)(p1 - jr) : 2;
        for (int64_t ir = m0; ir < m1; ir += 32) {
            int mr = m1 - ir < 32 ? (int)(m1 - ir) : 32;
            eb_amx_tile(k4, jb->a8 + ir * lda, lda, jb->quad + jr * ps, ps, (mr + 15) / 16, nb,
                        tile);
            for (int q = 0; q < nb; q++) finish_quad_tile(jb, tile + 512 * q, ir, (jr + q) * 16, mr);
        }
    }
}

/* Make sure the A rows of M block mb are prepared: prepare them ourselves if nobody has. */
static void ensure_rows(job *jb, int64_t mb) {
    int32_t *flag = jb->ready + mb;
    if (__atomic_load_n(flag, __ATOMIC_ACQUIRE) == 2) return;
    int32_t expected = 0;
    if (__atomic_compare_exchange_n(flag, &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        int64_t r1 = (mb + 1) * jb->mc < jb->m ? (mb + 1) * jb->mc : jb->m;
        prepare_rows(jb, mb * jb->mc, r1);
        __atomic_store_n(flag, 2, __ATOMIC_RELEASE);
        return;
    }
    while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != 2) _mm_pause();
}

/* One chunk: jb->mc rows x nch weight panels, all of K, epilogue included. Threads take chunks until
 * none is left (pool.c), so a thread that the OS delays just takes fewer. */
static void gemm_task(void *ctx, int64_t c) {
    job *jb = (job *)ctx;
    int32_t *partial = NULL;
    if (!jb->amx && (jb->quad ? jb->k4 > jb->kc4 : jb->k2 > KC2)) {
        size_t pbytes = (size_t)((MC + EB_MR) / EB_MR) * NCP * EB_MR * 16 * sizeof(int32_t);
        partial = (int32_t *)eb_scratch(1, pbytes);
        if (!partial) {
            __atomic_store_n(&jb->failed, 1, __ATOMIC_RELAXED);
            return;
        }
    }
    int64_t mb = c / jb->chunks_n, nb = c % jb->chunks_n;
    ensure_rows(jb, mb);
    int64_t m0 = mb * jb->mc, m1 = m0 + jb->mc < jb->m ? m0 + jb->mc : jb->m;
    int64_t p0 = nb * jb->nch, p1 = p0 + jb->nch < jb->panels ? p0 + jb->nch : jb->panels;
    if (jb->amx) {
        eb_amx_begin();
        compute_block_amx(jb, m0, m1, p0, p1);
        eb_amx_end();
    } else if (jb->quad) {
        compute_block7(jb, m0, m1, p0, p1, partial);
    } else {
        compute_block(jb, m0, m1, p0, p1, partial);
    }
}

/* Split requantization shifts into left/right arrays padded to npad. Returns how to requantize:
 * EB_REQUANT_SCALAR when some right shift exceeds 30, else EB_REQUANT_VEC, or
 * EB_REQUANT_VEC_RIGHT when no shift is negative (no left shifts to saturate). */
int eb_shift_arrays(const eb_epilogue *epi, int64_t n, int64_t npad, int32_t *left,
                    int32_t *right) {
    if (epi->kind != EB_OUT_U8 && epi->kind != EB_OUT_S8) return EB_REQUANT_VEC;
    int32_t lo = 0, hi = 0;
    for (int64_t j = 0; j < n; j++) { /* branch-free: vectorized */
        int32_t s = epi->shift[j];
        left[j] = s < 0 ? -s : 0;
        right[j] = s > 0 ? s : 0;
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
    }
    for (int64_t j = n; j < npad; j++) left[j] = right[j] = 0;
    if (hi > 30) return EB_REQUANT_SCALAR;
    return lo < 0 ? EB_REQUANT_VEC : EB_REQUANT_VEC_RIGHT;
}

int eb_gemm(const eb_input *in, int64_t m, int64_t k, const int8_t *packed, const int8_t *quad,
            int seven, int64_t n, const eb_epilogue *epi, int nthreads) {
    if (m <= 0 || n <= 0) return 0;
    if (m == 1 && k > 0) return eb_gemv(in, k, packed, n, epi, seven, nthreads);
    if (!seven && !eb_vnni_enabled) quad = NULL; /* uk7_* would saturate on 8-bit activations */
    job jb;
    jb.in = in;
    jb.m = m;
    jb.k = k;
    jb.n = n;
    jb.k2 = (k + 1) / 2;
    jb.lda = (jb.k2 + 15) & ~(int64_t)15; /* 64-byte rows */
    jb.panels = (n + 15) / 16;
    jb.packed = packed;
    jb.quad = quad;
    jb.k4 = (k + 3) / 4;
    jb.lda8 = (jb.k4 * 4 + 63) & ~(int64_t)63;
    jb.colsum = (const int32_t *)(packed + ((n + 15) / 16) * jb.k2 * 32);
    jb.uk8 = eb_vnni_enabled ? &EB_UKV[0][0] : &UK7[0][0];
    jb.group = eb_vnni_enabled ? EB_VNNI_NZ : 1;
    jb.kc4 = eb_vnni_enabled ? KCV : KC4;
    jb.amx = quad && eb_amx_enabled && eb_vnni_enabled && m >= AMX_MIN_M && jb.k4 >= 16;
    jb.mc = jb.amx ? AMX_MC : MC;
    jb.epi = epi;
    jb.vec_requant = 1;
    int64_t npad = jb.panels * 16;
    /* one scratch block: A int16 rows, then left/right shift arrays */
    /* AMX loads whole 16-row tiles: rows up to the next multiple of 16 must be readable */
    int64_t rows = jb.amx ? (m + 15) & ~(int64_t)15 : m;
    size_t abytes = quad ? (size_t)(rows * jb.lda8) : (size_t)(m * jb.lda) * sizeof(int32_t);
    size_t sbytes = (size_t)npad * sizeof(int32_t);
    int64_t blocks_m = (m + jb.mc - 1) / jb.mc;
    char *buf = (char *)eb_scratch(0, abytes + 2 * sbytes + (size_t)blocks_m * 4 + 64);
    if (!buf) return -1;
    jb.a16 = (int32_t *)buf;
    jb.a8 = (uint8_t *)buf;
    int32_t *left = (int32_t *)(buf + abytes), *right = left + npad;
    jb.ready = right + npad;
    memset(jb.ready, 0, (size_t)blocks_m * 4);
    jb.left = left;
    jb.right = right;
    jb.vec_requant = eb_shift_arrays(epi, n, npad, left, right);
    if (k == 0) memset(buf, 0, abytes);
    /* small problems are not worth waking a second thread */
    double work = (double)m * (double)k * (double)n;
    int nt = nthreads < 1 ? 1 : nthreads;
    if (work < 65536.0) nt = 1;
    /* chunks: jb.mc rows x up to NCP panels, narrower when that leaves too few chunks to balance */
    jb.nch = NCP;
    while (jb.nch > 2 && blocks_m * ((jb.panels + jb.nch - 1) / jb.nch) < 4 * nt) jb.nch /= 2;
    jb.chunks_n = (jb.panels + jb.nch - 1) / jb.nch;
    jb.chunks = blocks_m * jb.chunks_n;
    jb.failed = 0;
    eb_parallel(nt, jb.chunks, gemm_task, &jb);
    return jb.failed ? -1 : 0; /* a chunk fails only when scratch memory ran out */
}

/* ---------------------------------------------------------------- exported entry points
 * GEMM entry points return 0, or -1 when scratch memory could not be allocated. quad: NULL, or
 * the weights in eb_pack_weight_quad's layout, which the 7-bit path and the VNNI kernels (any
 * activations) read; seven != 0: the caller guarantees that every uint8 activation (after
 * quantization and clamping, for float input) is <= 127, and then quad must not be NULL. */

/* Raw int32 GEMM: out (m, n) = a (m, k) u8 @ w.T, minus za * colsum when za != 0. */
int eb_gemm_u8_i32(const uint8_t *a, int32_t za, int64_t m, int64_t k, const int8_t *packed,
                   const int8_t *quad, int seven, int64_t n, int32_t *out, int nthreads) {
    eb_input in = {EB_IN_U8, a, za, 1.0f, 0, 255, NULL, NULL};
    eb_epilogue e = {EB_OUT_I32, out, n, NULL, 1.0f, NULL, NULL, NULL, NULL, NULL, 0, 0, 0};
    return eb_gemm(&in, m, k, packed, quad, seven, n, &e, nthreads);
}

/* Static linear, uint8 input: out = float(acc) * out_scale[n] + bias[n]. */
int eb_linear_u8_f32(const uint8_t *a, int32_t za, int64_t m, int64_t k, const int8_t *packed,
                     const int8_t *quad, int seven, int64_t n, const float *out_scale, const float *bias, float *out,
                      int nthreads) {
    eb_input in = {EB_IN_U8, a, za, 1.0f, 0, 255, NULL, NULL};
    eb_epilogue e = {EB_OUT_F32, out, n, NULL, 1.0f, out_scale, bias, NULL, NULL, NULL, 0, 0, 0};
    return eb_gemm(&in, m, k, packed, quad, seven, n, &e, nthreads);
}

/* Static linear, float input quantized on the fly with (scale, zp, [qmin, qmax]): out = float(acc) * fl(scale *
 * w_scale[n]) + bias[n]. */
int eb_linear_f32_static(const float *x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                         int64_t m, int64_t k, const int8_t *packed, const int8_t *quad, int seven,
                         int64_t n, const float *w_scale,
                          const float *bias, float *out, int nthreads) {
    return eb_linear_f32_static_kind(EB_OUT_F32, x, scale, zp, qmin, qmax, m, k, packed, quad,
                                     seven, n, w_scale, bias, out, NULL, NULL, nthreads);
}

/* eb_linear_f32_static with a float epilogue kind: EB_OUT_F32, or EB_OUT_ARGMAX (out: eb_best
 * (m, ceil(n / 16)), skip and bias_after as in eb_epilogue). */
int eb_linear_f32_static_kind(int kind, const float *x, float scale, int32_t zp, int32_t qmin,
                              int32_t qmax, int64_t m, int64_t k, const int8_t *packed,
                              const int8_t *quad, int seven, int64_t n, const float *w_scale,
                              const float *bias, void *out, const uint8_t *skip,
                              const float *bias_after, int nthreads) {
    eb_input in = {EB_IN_F32_STATIC, x, zp, scale, qmin, qmax, NULL, NULL};
    eb_epilogue e = {kind, out, n, NULL, scale, w_scale, bias, NULL, NULL, NULL, 0, 0, 0, 0.0f,
                     skip, bias_after};
    return eb_gemm(&in, m, k, packed, quad, seven, n, &e, nthreads);
}

/* Dynamic linear: per-row (per_row != 0) or per-tensor activation qparams measured on x; they
 * are written to row_scale / row_zp (m,) unless those are NULL. */
static int linear_f32_dynamic(int kind, const float *x, int per_row, int64_t m, int64_t k,
                              const int8_t *packed, const int8_t *quad, int seven, int64_t n,
                              const float *w_scale, const float *bias, void *out,
                              float *row_scale, int32_t *row_zp, const uint8_t *skip,
                              const float *bias_after, int nthreads) {
    if (!row_scale || !row_zp) { /* caller does not want them (all) back */
        float *buf = (float *)eb_scratch(2, (size_t)(m > 0 ? m : 1) * 8);
        if (!buf) return -1;
        if (!row_scale) row_scale = buf;
        row_zp = (int32_t *)(buf + m);
    }
    /* seven: 7-bit activations, qparams for levels [0, 127] (reduce_range) */
    int32_t qmax = seven ? 127 : 255;
    eb_input in = {
        per_row ? EB_IN_F32_ROW : EB_IN_F32_TENSOR, x, 0, 1.0f, 0, qmax, row_scale, row_zp};
    if (!per_row && m > 0) {
        float lo = 0.0f, hi = 0.0f;
        if (k > 0) eb_row_minmax(x, m * k, &lo, &hi);
        float s;
        int32_t z;
        eb_row_qparams(lo, hi, qmax, &s, &z);
        for (int64_t i = 0; i < m; i++) {
            row_scale[i] = s;
            row_zp[i] = z;
        }
    }
    eb_epilogue e = {kind, out, n, row_scale, 1.0f, w_scale, bias, NULL, NULL, NULL, 0, 0, 0,
                     0.0f, skip, bias_after};
    return eb_gemm(&in, m, k, packed, quad, seven, n, &e, nthreads);
}

/* eb_linear_f32_dynamic with a float epilogue kind (see eb_linear_f32_static_kind). */
int eb_linear_f32_dynamic_kind(int kind, const float *x, int per_row, int64_t m, int64_t k,
                               const int8_t *packed, const int8_t *quad, int seven, int64_t n,
                               const float *w_scale, const float *bias, void *out,
                               const uint8_t *skip, const float *bias_after, int nthreads) {
    return linear_f32_dynamic(kind, x, per_row, m, k, packed, quad, seven, n, w_scale, bias, out,
                              NULL, NULL, skip, bias_after, nthreads);
}

int eb_linear_f32_dynamic(const float *x, int per_row, int64_t m, int64_t k,
                          const int8_t *packed, const int8_t *quad, int seven, int64_t n,
                          const float *w_scale, const float *bias, float *out, float *row_scale,
                          int32_t *row_zp, int nthreads) {
    return linear_f32_dynamic(EB_OUT_F32, x, per_row, m, k, packed, quad, seven, n, w_scale, bias,
                              out, row_scale, row_zp, NULL, NULL, nthreads);
}

/* eb_linear_f32_dynamic followed by eightbit's exact GELU (gelu.c), in the epilogue. */
int eb_linear_f32_dynamic_gelu(const float *x, int per_row, int64_t m, int64_t k,
                               const int8_t *packed, const int8_t *quad, int seven, int64_t n,
                               const float *w_scale, const float *bias, float *out, int nthreads) {
    return linear_f32_dynamic(EB_OUT_F32_GELU, x, per_row, m, k, packed, quad, seven, n, w_scale,
                              bias, out, NULL, NULL, NULL, NULL, nthreads);
}

/* eb_linear_f32_static followed by eightbit's exact GELU (gelu.c), in the epilogue; out_scale > 0:
 * then quantized to uint8 with (out_scale, out_zp) and clamped to [out_lo, out_hi] (the input of
 * the next static layer: the fp32 GELU output never reaches memory), else written as float. */
int eb_linear_f32_static_gelu(const float *x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                              int64_t m, int64_t k, const int8_t *packed, const int8_t *quad,
                              int seven, int64_t n, const float *w_scale, const float *bias,
                              float out_scale, int32_t out_zp, int32_t out_lo, int32_t out_hi,
                              void *out, int nthreads) {
    eb_input in = {EB_IN_F32_STATIC, x, zp, scale, qmin, qmax, NULL, NULL};
    eb_epilogue e = {out_scale > 0.0f ? EB_OUT_U8_GELU : EB_OUT_F32_GELU, out, n, NULL, scale,
                     w_scale, bias, NULL, NULL, NULL, out_zp, out_lo, out_hi, out_scale};
    return eb_gemm(&in, m, k, packed, quad, seven, n, &e, nthreads);
}

/* Requantized linear: out = clamp(zp + M[n] * (acc + bias_i[n]), lo, hi) as uint8 or int8. */
int eb_linear_u8_requant(const uint8_t *a, int32_t za, int64_t m, int64_t k,
                         const int8_t *packed, const int8_t *quad, int seven, int64_t n, const int32_t *bias_i,
                          const int32_t *m0, const int32_t *shift, int32_t out_zp, int32_t lo,
                          int32_t hi, int out_signed, void *out, int nthreads) {
    eb_input in = {EB_IN_U8, a, za, 1.0f, 0, 255, NULL, NULL};
    eb_epilogue e = {out_signed ? EB_OUT_S8 : EB_OUT_U8, out, n, NULL, 1.0f, NULL, NULL, bias_i, m0,
                     shift, out_zp, lo, hi};
    return eb_gemm(&in, m, k, packed, quad, seven, n, &e, nthreads);
}

/* Requantized linear, float input quantized on the fly as in eb_linear_f32_static (the uint8
 * activations are never written to memory): out = clamp(zp + M[n] * (acc + bias_i[n]), lo, hi). */
int eb_linear_f32_requant(const float *x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                          int64_t m, int64_t k, const int8_t *packed, const int8_t *quad, int seven,
                          int64_t n, const int32_t *bias_i, const int32_t *m0,
                          const int32_t *shift, int32_t out_zp, int32_t lo, int32_t hi,
                          int out_signed, void *out, int nthreads) {
    eb_input in = {EB_IN_F32_STATIC, x, zp, scale, qmin, qmax, NULL, NULL};
    eb_epilogue e = {out_signed ? EB_OUT_S8 : EB_OUT_U8, out, n, NULL, 1.0f, NULL, NULL, bias_i, m0,
                     shift, out_zp, lo, hi};
    return eb_gemm(&in, m, k, packed, quad, seven, n, &e, nthreads);
}
