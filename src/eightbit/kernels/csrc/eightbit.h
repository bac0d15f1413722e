/* eightbit native INT8 kernels: shared declarations.
 *
 * Exact u8 x s8 -> int32 GEMM. On AVX2 CPUs without VNNI, activations are widened to int16 with
 * their zero point subtracted (a - za lies in [-255, 255]) and multiplied with int16 weights by
 * vpmaddwd, whose int32 pair sums cannot saturate (2 * 255 * 128 < 2^31); with AVX512-VNNI,
 * vpdpbusd multiplies raw uint8 activations exactly (vnni.c). See native.py.
 */
#ifndef EIGHTBIT_H
#define EIGHTBIT_H

#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define EB_NR 16 /* output columns per packed weight panel (two ymm of int32) */
#define EB_MR 6  /* rows per microkernel tile */

/* Epilogue kinds. GELU kinds: the F32 value, then eightbit's exact GELU (gelu.c); GELU_U8 then
 * quantizes it with (q_scale, zp) and clamps to [lo, hi] as eb_quantize_u8 does. */
enum {
    EB_OUT_I32 = 0,
    EB_OUT_F32 = 1,
    EB_OUT_U8 = 2,
    EB_OUT_S8 = 3,
    EB_OUT_F32_GELU = 4,
    EB_OUT_U8_GELU = 5,
    EB_OUT_ARGMAX = 6 /* the F32 values, never stored: each tile row's first maximum (eb_best) */
};

/* ARGMAX: the first maximum of one row's 16 columns of a panel (a NaN counts as the largest, the
 * first NaN wins, as torch.argmax); out holds (m, panels) of them, reduced by eb_plan_argmax. */
typedef struct {
    float value;
    int32_t index;
} eb_best;

/* What to do with a finished int32 tile; all per-column arrays have length n. */
typedef struct {
    int kind;
    void *out;                /* (m, n) row-major, element type given by kind */
    int64_t n;                /* columns of out (its row stride) */
    const float *row_scale;   /* F32: per-row scale (m,), or NULL for row_scale_const */
    float row_scale_const;
    const float *col_scale;   /* F32: per-column scale (n,) */
    const float *bias_f;      /* F32: (n,) or NULL */
    const int32_t *bias_i;    /* requant: (n,) or NULL */
    const int32_t *m0;        /* requant: fixed-point multipliers (n,) */
    const int32_t *shift;     /* requant: right shifts (n,), negative = left */
    int32_t zp, lo, hi;       /* requant, GELU_U8: output zero point and clamp bounds */
    float q_scale;            /* GELU_U8: output scale */
    const uint8_t *skip;      /* ARGMAX: (n,) nonzero = the column counts as -inf, or NULL */
    const float *bias_after;  /* ARGMAX: (n,) added after bias_f, a second rounding, or NULL */
} eb_epilogue;

/* How to turn the input rows into zero-point-free int16 pairs. */
enum { EB_IN_U8 = 0, EB_IN_F32_STATIC = 1, EB_IN_F32_ROW = 2, EB_IN_F32_TENSOR = 3 };

typedef struct {
    int kind;
    const void *x;      /* (m, k) uint8 or float32 */
    int32_t zp;         /* U8 / F32_STATIC: zero point */
    float scale;        /* F32_STATIC: scale */
    int32_t qmin, qmax; /* F32_*: clamp of the quantized values (dynamic: 0, 255 or 0, 127) */
    float *row_scale;   /* F32_ROW/TENSOR: out (m,) scales (may be scratch) */
    int32_t *row_zp;    /* F32_ROW/TENSOR: out (m,) zero points (may be NULL) */
} eb_input;

/* quant.c */
/* 8 floats -> clamp(rint(x / s) + zp, 0, 255) as float (NaN -> 0): eightbit.core.ops.quantize */
static inline __m256 eb_quant8(__m256 x, __m256 s, __m256 z) {
    __m256 r = _mm256_round_ps(_mm256_div_ps(x, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_add_ps(r, z);
    r = _mm256_max_ps(r, _mm256_setzero_ps()); /* NaN in r -> 0 */
    return _mm256_min_ps(r, _mm256_set1_ps(255.0f));
}
void eb_row_qparams(float lo, float hi, int32_t qmax, float *scale, int32_t *zp);
void eb_quantize_row_i16(const float *x, int64_t k, float scale, int32_t zp, int32_t qmin,
                         int32_t qmax, int16_t *dst);
void eb_widen_row_u8(const uint8_t *a, int64_t k, int32_t zp, int16_t *dst);
void eb_row_minmax(const float *x, int64_t k, float *mn, float *mx);


/* eightbit's expf: IEEE float32 multiplies, adds and roundings only (no FMA), so torch
 * operations reproduce it bit for bit (eightbit.kernels.base.expf, the reference backend's).
 * d is clamped to [-104, 88.7]; q = rint(d log2(e)); s = (d - q LN2_HI) - q LN2_LO, where
 * LN2_HI = 1420/2048 has 9 significant bits, so q LN2_HI is exact for |q| <= 150 and |s| <=
 * ln(2)/2; e^s by its degree-7 Taylor polynomial (Horner; truncation < 6e-9 relative); times 2^q
 * as 2^(q>>1) 2^(q-(q>>1)), each a normal float. Below -104: 0; above 88.7: inf; NaN: NaN.
 * The 8-lane and 16-lane versions do the same operations per lane. */
#define EB_EXP_LO -104.0f
#define EB_EXP_HI 88.7f
#define EB_LOG2E 1.44269504088896341f
#define EB_LN2_HI 0.693359375f
#define EB_LN2_LO ((float)(0.69314718055994530942 - 0.693359375))
#define EB_EXP_POLY(mul, add, set1, s)                                                        \
    add(mul(add(mul(add(mul(add(mul(add(mul(add(mul(add(mul(set1((float)(1.0 / 5040.0)), s),    \
                                                          set1((float)(1.0 / 720.0))), s),    \
                                                  set1((float)(1.0 / 120.0))), s),            \
                                          set1((float)(1.0 / 24.0))), s),                     \
                                  set1((float)(1.0 / 6.0))), s),                              \
                          set1(0.5f)), s),                                                    \
                  set1(1.0f)), s),                                                            \
        set1(1.0f))

static inline __m256 eb_expf8(__m256 d) {
    __m256 x = _mm256_min_ps(_mm256_max_ps(d, _mm256_set1_ps(EB_EXP_LO)), _mm256_set1_ps(EB_EXP_HI));
    __m256 qf = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EB_LOG2E)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 s = _mm256_sub_ps(x, _mm256_mul_ps(qf, _mm256_set1_ps(EB_LN2_HI)));
    s = _mm256_sub_ps(s, _mm256_mul_ps(qf, _mm256_set1_ps(EB_LN2_LO)));
    __m256 p = EB_EXP_POLY(_mm256_mul_ps, _mm256_add_ps, _mm256_set1_ps, s);
    __m256i q = _mm256_cvtps_epi32(qf);
    __m256i h = _mm256_srai_epi32(q, 1), bias = _mm256_set1_epi32(127);
    __m256 p0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
    __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(q, h), bias), 23));
    __m256 e = _mm256_mul_ps(_mm256_mul_ps(p, p0), p1);
    e = _mm256_andnot_ps(_mm256_cmp_ps(d, _mm256_set1_ps(EB_EXP_LO), _CMP_LT_OQ), e);
    e = _mm256_blendv_ps(e, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(d, _mm256_set1_ps(EB_EXP_HI), _CMP_GT_OQ));
    return _mm256_blendv_ps(e, d, _mm256_cmp_ps(d, d, _CMP_UNORD_Q));
}

/* AVX-512F functions carry their own target: the library is built for AVX2 and calls them only
 * where eb_vnni_enabled (CPUs with AVX-512). */
#define EB_AVX512 __attribute__((target("avx512f")))

EB_AVX512 static inline __m512 eb_expf16(__m512 d) {
    __m512 x = _mm512_min_ps(_mm512_max_ps(d, _mm512_set1_ps(EB_EXP_LO)), _mm512_set1_ps(EB_EXP_HI));
    __m512 qf = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EB_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 s = _mm512_sub_ps(x, _mm512_mul_ps(qf, _mm512_set1_ps(EB_LN2_HI)));
    s = _mm512_sub_ps(s, _mm512_mul_ps(qf, _mm512_set1_ps(EB_LN2_LO)));
    __m512 p = EB_EXP_POLY(_mm512_mul_ps, _mm512_add_ps, _mm512_set1_ps, s);
    __m512i q = _mm512_cvtps_epi32(qf);
    __m512i h = _mm512_srai_epi32(q, 1), bias = _mm512_set1_epi32(127);
    __m512 p0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(h, bias), 23));
    __m512 p1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(q, h), bias), 23));
    __m512 e = _mm512_mul_ps(_mm512_mul_ps(p, p0), p1);
    e = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(d, _mm512_set1_ps(EB_EXP_LO), _CMP_NLT_UQ), e);
    e = _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(d, _mm512_set1_ps(EB_EXP_HI), _CMP_GT_OQ),
                           _mm512_set1_ps(INFINITY));
    return _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q), d);
}

/* eb_expf8 / eb_expf16, bit for bit, without their slow path for inputs below EB_EXP_LO (masked
 * and padding attention keys, -inf): there the clamped computation ends in 2^-150-sized
 * products that underflow (a microcode assist on many x86 CPUs) before the lane is zeroed;
 * here such lanes compute exp(0) and are zeroed after. */
static inline __m256 eb_expf8_z(__m256 d) {
    __m256 below = _mm256_cmp_ps(d, _mm256_set1_ps(EB_EXP_LO), _CMP_LT_OQ);
    return _mm256_andnot_ps(below, eb_expf8(_mm256_andnot_ps(below, d)));
}

EB_AVX512 static inline __m512 eb_expf16_z(__m512 d) {
    __mmask16 keep = _mm512_cmp_ps_mask(d, _mm512_set1_ps(EB_EXP_LO), _CMP_NLT_UQ);
    return _mm512_maskz_mov_ps(keep, eb_expf16(_mm512_maskz_mov_ps(keep, d)));
}

/* gelu.c: eightbit's exact-erf GELU of 8 floats (base.gelu in torch operations, bit for bit) */
__m256 eb_gelu8(__m256 x);
void eb_gelu_f32(float *x, int64_t count); /* in place, exported */
/* AVX-512 (only with eb_vnni_enabled): one tile row through a GELU epilogue, 16 lanes */
void eb_gelu_row16(const int32_t *acc, float rs, const float *col_scale, const float *bias,
                   int nr, int quantize, float q_scale, int32_t zp, int32_t lo, int32_t hi,
                   void *out);

/* pool.c: run fn(ctx, i) for i in [0, ntasks) on up to nthreads threads (the caller included). */
typedef void (*eb_task_fn)(void *ctx, int64_t index);
void eb_parallel(int nthreads, int64_t ntasks, eb_task_fn fn, void *ctx);

/* gemm.c */
/* requantization modes (eb_shift_arrays' result, eb_epilogue_tile's vec_requant) */
enum { EB_REQUANT_SCALAR = 0, EB_REQUANT_VEC = 1, EB_REQUANT_VEC_RIGHT = 2 };
void *eb_scratch(int slot, size_t bytes);
int eb_shift_arrays(const eb_epilogue *epi, int64_t n, int64_t npad, int32_t *left,
                    int32_t *right);
void eb_epilogue_tile(const eb_epilogue *e, const int32_t *c, int64_t row, int64_t col, int mr,
                      int nr, const int32_t *left, const int32_t *right, int vec_requant);
int eb_gemm(const eb_input *in, int64_t m, int64_t k, const int8_t *packed, const int8_t *quad,
            int seven, int64_t n, const eb_epilogue *epi, int nthreads);

/* Microkernel over raw uint8 rows and k-quad weights (gemm.c's 7-bit uk7_*, vnni.c's ukz_*):
 * acc (mr x 16 nz) = [cin +] A8[0:mr, 0:k4 quads] * nz quad panels at b, b + ps, ... (ps: the
 * panel stride in bytes), written to cout; cin/cout hold nz consecutive 6x16 row-major tiles.
 * The AVX2 kernels take one panel (nz = 1) and ignore ps. */
typedef void (*eb_ukernel8_fn)(int64_t k4, const uint8_t *a, int64_t lda, const int8_t *b,
                               int64_t ps, const int32_t *cin, int32_t *cout);

/* vnni.c: AVX512-VNNI (vpdpbusd) microkernels, used when eb_vnni_enabled (set by eb_set_vnni);
 * EB_UKV[mr][nz] for mr rows x nz panels */
#define EB_VNNI_NZ 4
extern int eb_vnni_enabled;
extern const eb_ukernel8_fn EB_UKV[EB_MR + 1][EB_VNNI_NZ + 1];
int eb_set_vnni(int on);

/* amx.c: AMX-INT8 (tdpbusd) tile kernel over the same k-quad weights, used by gemm.c when
 * eb_amx_enabled (set by eb_set_amx) and eb_vnni_enabled (K tails run EB_UKV) */
extern int eb_amx_enabled;
int eb_set_amx(int on);
void eb_amx_begin(void);
void eb_amx_end(void);
void eb_amx_tile(int64_t k4, const uint8_t *a, int64_t lda, const int8_t *b, int64_t ps, int na,
                 int nb, int32_t *c);

/* gemv.c */
int eb_gemv(const eb_input *in, int64_t k, const int8_t *packed, int64_t n,
            const eb_epilogue *epi, int seven, int nthreads);

/* gemm.c, exported (plan.c calls them with a plan's arguments) */
int eb_linear_f32_static(const float *x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                         int64_t m, int64_t k, const int8_t *packed, const int8_t *quad, int seven,
                         int64_t n, const float *w_scale, const float *bias, float *out,
                         int nthreads);
int eb_linear_f32_dynamic(const float *x, int per_row, int64_t m, int64_t k,
                          const int8_t *packed, const int8_t *quad, int seven, int64_t n,
                          const float *w_scale, const float *bias, float *out, float *row_scale,
                          int32_t *row_zp, int nthreads);
int eb_linear_f32_static_gelu(const float *x, float scale, int32_t zp, int32_t qmin, int32_t qmax,
                              int64_t m, int64_t k, const int8_t *packed, const int8_t *quad,
                              int seven, int64_t n, const float *w_scale, const float *bias,
                              float out_scale, int32_t out_zp, int32_t out_lo, int32_t out_hi,
                              void *out, int nthreads);
int eb_linear_f32_dynamic_gelu(const float *x, int per_row, int64_t m, int64_t k,
                               const int8_t *packed, const int8_t *quad, int seven, int64_t n,
                               const float *w_scale, const float *bias, float *out, int nthreads);

int eb_linear_f32_static_kind(int kind, const float *x, float scale, int32_t zp, int32_t qmin,
                              int32_t qmax, int64_t m, int64_t k, const int8_t *packed,
                              const int8_t *quad, int seven, int64_t n, const float *w_scale,
                              const float *bias, void *out, const uint8_t *skip,
                              const float *bias_after, int nthreads);
int eb_linear_f32_dynamic_kind(int kind, const float *x, int per_row, int64_t m, int64_t k,
                               const int8_t *packed, const int8_t *quad, int seven, int64_t n,
                               const float *w_scale, const float *bias, void *out,
                               const uint8_t *skip, const float *bias_after, int nthreads);

/* quant.c, exported */
void eb_quantize_u8(const float *x, int64_t count, float scale, int32_t zp, int32_t qmin,
                    int32_t qmax, uint8_t *out);

#endif
