/* Exact (erf) GELU, bit for bit what torch's vectorized CPU kernel computes for float32:
 * gelu(x) = (x * 0.5) * (1 + erf(x * M_SQRT1_2)), erf from ATen's Vectorized<float>::erf
 * (Abramowitz-Stegun 7.1.26 polynomial with a true division, times Sleef's expf_u10 of -x^2),
 * every step rounded as there (FMA where ATen uses fmadd, no contraction elsewhere: the library
 * is built with -ffp-contract=off). IEEE operations round the same at any vector width, so these
 * 8-lane AVX2 versions equal ATen's 16-lane AVX-512 ones. Tested against torch.nn.functional.gelu
 * on dense sweeps of float32 values (tests/test_native_gelu.py).
 *
 * torch computes a parallel chunk's last elements that do not fill two vectors with libm's erff
 * instead; for the row lengths of BERT FFNs (multiples of 32) that never happens. */
#include <math.h>
#include <string.h>

#include "eightbit.h"

/* Sleef_expf8_u10 (Sleef's xexpf): exp(d) to 1 ulp; 0 below -104, inf above 100. */
static inline __m256 sleef_expf8(__m256 d) {
    const __m256 r_ln2 = _mm256_set1_ps(1.442695040888963407359924681001892137426645954152985934135449406931f);
    __m256i q = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(d, r_ln2),
                                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256 qf = _mm256_cvtepi32_ps(q);
    __m256 s = _mm256_fmadd_ps(qf, _mm256_set1_ps(-0.693145751953125f), d);
    s = _mm256_fmadd_ps(qf, _mm256_set1_ps(-1.428606765330187045e-06f), s);
    __m256 u = _mm256_set1_ps(0.000198527617612853646278381f);
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.00139304355252534151077271f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.00833336077630519866943359f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.0416664853692054748535156f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.166666671633720397949219f));
    u = _mm256_fmadd_ps(u, s, _mm256_set1_ps(0.5f));
    u = _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_mul_ps(s, s), u, s));
    /* ldexp(u, q) as u * 2^(q >> 1) * 2^(q - (q >> 1)) */
    __m256i h = _mm256_srai_epi32(q, 1);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 p0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
    __m256 p1 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(q, h), bias), 23));
    u = _mm256_mul_ps(_mm256_mul_ps(u, p0), p1);
    u = _mm256_andnot_ps(_mm256_cmp_ps(d, _mm256_set1_ps(-104.0f), _CMP_LT_OQ), u);
    return _mm256_blendv_ps(u, _mm256_set1_ps(INFINITY),
                            _mm256_cmp_ps(_mm256_set1_ps(100.0f), d, _CMP_LT_OQ));
}

/* ATen's Vectorized<float>::erf. */
static inline __m256 aten_erf8(__m256 x) {
    const __m256 neg_zero = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 sign = _mm256_and_ps(neg_zero, x);
    __m256 ax = _mm256_andnot_ps(neg_zero, x);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), ax, one));
    __m256 r = _mm256_fmadd_ps(_mm256_set1_ps(1.061405429f), t, _mm256_set1_ps(-1.453152027f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(1.421413741f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(-0.284496736f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(0.254829592f));
    __m256 e = _mm256_xor_ps(neg_zero, sleef_expf8(_mm256_xor_ps(neg_zero, _mm256_mul_ps(x, x))));
    __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(e, t), r, one);
    return _mm256_xor_ps(sign, y);
}

__m256 eb_gelu8(__m256 x) {
    __m256 half = _mm256_mul_ps(x, _mm256_set1_ps(0.5f));
    __m256 erf = aten_erf8(_mm256_mul_ps(x, _mm256_set1_ps((float)M_SQRT1_2)));
    return _mm256_mul_ps(half, _mm256_add_ps(_mm256_set1_ps(1.0f), erf));
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
    const __m512i sign_bit = _mm512_set1_epi32((int)0x80000000);
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 half = _mm512_mul_ps(x, _mm512_set1_ps(0.5f));
    __m512 a = _mm512_mul_ps(x, _mm512_set1_ps((float)M_SQRT1_2));
    __m512i ai = _mm512_castps_si512(a);
    __m512i sign = _mm512_and_si512(sign_bit, ai);
    __m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(sign_bit, ai));
    __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), ax, one));
    __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(1.061405429f), t, _mm512_set1_ps(-1.453152027f));
    r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(1.421413741f));
    r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(-0.284496736f));
    r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(0.254829592f));
    __m512 sq = _mm512_mul_ps(a, a);
    __m512 e = eb_expf16(_mm512_castsi512_ps(_mm512_xor_si512(sign_bit, _mm512_castps_si512(sq))));
    e = _mm512_castsi512_ps(_mm512_xor_si512(sign_bit, _mm512_castps_si512(e)));
    __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(e, t), r, one);
    __m512 erf = _mm512_castsi512_ps(_mm512_xor_si512(sign, _mm512_castps_si512(y)));
    return _mm512_mul_ps(half, _mm512_add_ps(one, erf));
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
