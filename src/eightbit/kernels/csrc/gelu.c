/* eightbit's exact (erf) GELU: gelu(x) = (x * 0.5) * (1 + erf(x / sqrt(2))), with erf by
 * Abramowitz & Stegun 7.1.26, erf(a) = 1 - (a1 t + ... + a5 t^5) e^(-a^2), t = 1 / (1 + p |a|)
 * (absolute error below 1.5e-7), odd in a, and e^(-a^2) by eb_expf8 (eightbit.h). Only IEEE
 * float32 multiplies, adds and divisions, each rounded (no FMA; the library is built with
 * -ffp-contract=off), so eightbit.core.elementwise.gelu computes the same values with torch
 * operations, bit for bit: that is the reference backend's GELU, and the test
 * (tests/kernels/test_backends.py). The 16-lane AVX-512 version below does the same operations
 * per lane. Within 5e-7 of the exact GELU (tests/core/test_elementwise.py). */
#include <math.h>
#include <string.h>

#include "eightbit.h"

#define AS_P 0.3275911f
#define AS_A1 0.254829592f
#define AS_A2 -0.284496736f
#define AS_A3 1.421413741f
#define AS_A4 -1.453152027f
#define AS_A5 1.061405429f

/* The erf polynomial of t, (((a5 t + a4) t + a3) t + a2) t + a1, then times t. */
#define AS_POLY(mul, add, set1, t)                                                              \
    mul(add(mul(add(mul(add(mul(add(mul(set1(AS_A5), t), set1(AS_A4)), t), set1(AS_A3)), t),   \
                        set1(AS_A2)), t), set1(AS_A1)), t)

__m256 eb_gelu8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f), sign_bit = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_mul_ps(x, _mm256_set1_ps((float)M_SQRT1_2));
    __m256 ax = _mm256_andnot_ps(sign_bit, a);
    __m256 t = _mm256_div_ps(one, _mm256_add_ps(one, _mm256_mul_ps(_mm256_set1_ps(AS_P), ax)));
    __m256 e = eb_expf8(_mm256_xor_ps(sign_bit, _mm256_mul_ps(a, a)));
    __m256 y = _mm256_sub_ps(one, _mm256_mul_ps(AS_POLY(_mm256_mul_ps, _mm256_add_ps, _mm256_set1_ps, t), e));
    __m256 erf = _mm256_xor_ps(y, _mm256_and_ps(sign_bit, a));
    return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), _mm256_add_ps(one, erf));
}

/* In place on count floats (whole vectors; a tail of fewer than 8 goes through a padded one). */
void eb_gelu_f32(float *x, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(x + i, eb_gelu8(_mm256_loadu_ps(x + i)));
    if (i < count) {
        float tmp[8] = {0};
        for (int64_t j = i; j < count; j++) tmp[j - i] = x[j];
        _mm256_storeu_ps(tmp, eb_gelu8(_mm256_loadu_ps(tmp)));
        for (int64_t j = i; j < count; j++) x[j] = tmp[j - i];
    }
}

/* ---- AVX-512 (CPUs with the VNNI kernels): the same operations on 16 lanes, for the GEMM's
 * GELU epilogues, whose tiles are 16 columns wide; only called when eb_vnni_enabled. */

EB_AVX512 static inline __m512 gelu16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512i sign_bit = _mm512_set1_epi32((int)0x80000000);
    __m512 a = _mm512_mul_ps(x, _mm512_set1_ps((float)M_SQRT1_2));
    __m512i ai = _mm512_castps_si512(a);
    __m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(sign_bit, ai));
    __m512 t = _mm512_div_ps(one, _mm512_add_ps(one, _mm512_mul_ps(_mm512_set1_ps(AS_P), ax)));
    __m512 sq = _mm512_mul_ps(a, a);
    __m512 e = eb_expf16(_mm512_castsi512_ps(_mm512_xor_si512(sign_bit, _mm512_castps_si512(sq))));
    __m512 y = _mm512_sub_ps(one, _mm512_mul_ps(AS_POLY(_mm512_mul_ps, _mm512_add_ps, _mm512_set1_ps, t), e));
    __m512 erf = _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(y), _mm512_and_si512(sign_bit, ai)));
    return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), _mm512_add_ps(one, erf));
}

/* One row of a GEMM tile through a GELU epilogue: v = float(acc) * (rs * col_scale) + bias,
 * GELU, then either float out or quantized (q_scale, zp, clamp [lo, hi]) uint8 out; nr <= 16
 * columns are written. Equals gemm.c's AVX2 epilogue bit for bit. */
EB_AVX512 void eb_gelu_row16(const int32_t *acc, float rs, const float *col_scale,
                             const float *bias, int nr, int quantize, float q_scale, int32_t zp,
                             int32_t lo, int32_t hi, void *out) {
    __mmask16 m = (__mmask16)((1u << nr) - 1u);
    __m512 s = _mm512_mul_ps(_mm512_set1_ps(rs), _mm512_maskz_loadu_ps(m, col_scale));
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(acc)), s);
    if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias));
    v = gelu16(v);
    if (!quantize) {
        _mm512_mask_storeu_ps(out, m, v);
        return;
    }
    __m512 q = _mm512_roundscale_ps(_mm512_div_ps(v, _mm512_set1_ps(q_scale)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm512_add_ps(q, _mm512_set1_ps((float)zp));
    q = _mm512_max_ps(q, _mm512_setzero_ps()); /* NaN -> 0, as eb_quant8 */
    q = _mm512_min_ps(q, _mm512_set1_ps(255.0f));
    q = _mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps((float)lo)), _mm512_set1_ps((float)hi));
    __m128i b = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q));
    if (nr == 16) {
        _mm_storeu_si128((__m128i *)out, b);
    } else {
        uint8_t tmp[16];
        _mm_storeu_si128((__m128i *)tmp, b);
        memcpy(out, tmp, (size_t)nr);
    }
}
