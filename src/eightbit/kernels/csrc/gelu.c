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
