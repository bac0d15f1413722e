/* Activation quantization and weight packing for the eightbit INT8 GEMM.
 *
 * Quantization matches eightbit.core.ops.quantize bit for bit: q = clamp(rint(x / s) + zp, 0, 255)
 * with a true IEEE float32 division, round-half-to-even, and the add/clamp done in float32.
 * Per-row parameters match eightbit.core.qparams.qparams_from_range (float64 scale, then float32).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "eightbit.h"

/* qparams_from_range(lo, hi) for uint8 levels [0, qmax] (255, or 127 for reduce_range): range
 * widened to contain 0, scale computed in float64, clamped to float32 epsilon, cast to float32;
 * zero point from the float64 scale. */
void eb_row_qparams(float lo, float hi, int32_t qmax, float *scale, int32_t *zp) {
    double l = lo < 0.0f ? (double)lo : 0.0;
    double h = hi > 0.0f ? (double)hi : 0.0;
    double s = (h - l) / (double)qmax;
    if (s < (double)FLT_EPSILON) s = (double)FLT_EPSILON;
    double z = nearbyint(0.0 - l / s);
    if (z < 0.0) z = 0.0;
    if (z > (double)qmax) z = (double)qmax;
    *scale = (float)s;
    *zp = (int32_t)z;
}

void eb_row_minmax(const float *x, int64_t k, float *mn, float *mx) {
    __m256 vmn = _mm256_set1_ps(INFINITY), vmx = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        vmn = _mm256_min_ps(vmn, v);
        vmx = _mm256_max_ps(vmx, v);
    }
    float a[8], b[8];
    _mm256_storeu_ps(a, vmn);
    _mm256_storeu_ps(b, vmx);
    float lo = a[0], hi = b[0];
    for (int j = 1; j < 8; j++) {
        lo = a[j] < lo ? a[j] : lo;
        hi = b[j] > hi ? b[j] : hi;
    }
    for (; i < k; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    *mn = lo;
    *mx = hi;
}

static inline float quant1(float x, float s, float z) {
    float r = nearbyintf(x / s) + z;
    r = r > 0.0f ? r : 0.0f;
    return r < 255.0f ? r : 255.0f;
}

/* x (k,) -> int16 (q - zp) with q clamped to [qmin, qmax], padded with one zero when k is odd. */
void eb_quantize_row_i16(const float *x, int64_t k, float scale, int32_t zp, int32_t qmin,
                         int32_t qmax, int16_t *dst) {
    __m256 s = _mm256_set1_ps(scale), z = _mm256_set1_ps((float)zp);
    __m256 lo = _mm256_set1_ps((float)qmin), hi = _mm256_set1_ps((float)qmax);
    __m256i vz = _mm256_set1_epi32(zp);
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        __m256 r0 = _mm256_min_ps(_mm256_max_ps(eb_quant8(_mm256_loadu_ps(x + i), s, z), lo), hi);
        __m256 r1 = _mm256_min_ps(_mm256_max_ps(eb_quant8(_mm256_loadu_ps(x + i + 8), s, z), lo), hi);
        __m256i q0 = _mm256_sub_epi32(_mm256_cvtps_epi32(r0), vz);
        __m256i q1 = _mm256_sub_epi32(_mm256_cvtps_epi32(r1), vz);
        __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
        _mm256_storeu_si256((__m256i *)(dst + i), p);
    }
    for (; i < k; i++) {
        float r = quant1(x[i], scale, (float)zp);
        r = r > (float)qmin ? r : (float)qmin;
        r = r < (float)qmax ? r : (float)qmax;
        dst[i] = (int16_t)((int32_t)r - zp);
    }
    if (k & 1) dst[k] = 0;
}

/* a (k,) uint8 -> int16 (a - zp), padded with one zero when k is odd. */
void eb_widen_row_u8(const uint8_t *a, int64_t k, int32_t zp, int16_t *dst) {
    __m256i vz = _mm256_set1_epi16((int16_t)zp);
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_sub_epi16(v, vz));
    }
    for (; i < k; i++) dst[i] = (int16_t)((int32_t)a[i] - zp);
    if (k & 1) dst[k] = 0;
}

/* ---- exported ---- */

/* Quantize count floats to uint8 with one (scale, zp), then clamp to [qmin, qmax]. */
void eb_quantize_u8(const float *x, int64_t count, float scale, int32_t zp, int32_t qmin,
                    int32_t qmax, uint8_t *out) {
    __m256 s = _mm256_set1_ps(scale), z = _mm256_set1_ps((float)zp);
    __m256 lo = _mm256_set1_ps((float)qmin), hi = _mm256_set1_ps((float)qmax);
    int64_t i = 0;
    for (; i + 32 <= count; i += 32) {
        __m256i q[4];
        for (int j = 0; j < 4; j++) {
            __m256 r = eb_quant8(_mm256_loadu_ps(x + i + 8 * j), s, z);
            r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
            q[j] = _mm256_cvtps_epi32(r);
        }
        __m256i w0 = _mm256_packs_epi32(q[0], q[1]); /* lanes: 0-3 8-11 | 4-7 12-15 */
        __m256i w1 = _mm256_packs_epi32(q[2], q[3]);
        __m256i b = _mm256_packus_epi16(w0, w1); /* 0-3 8-11 16-19 24-27 | 4-7 12-15 20-23 28-31 */
        b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(out + i), b);
    }
    for (; i < count; i++) {
        float r = quant1(x[i], scale, (float)zp);
        r = r > (float)qmin ? r : (float)qmin;
        r = r < (float)qmax ? r : (float)qmax;
        out[i] = (uint8_t)(int32_t)r;
    }
}

/* Per-row dynamic quantization: out (m, k) uint8, scale (m,), zp (m,). */
void eb_quantize_u8_rows(const float *x, int64_t m, int64_t k, uint8_t *out, float *scale,
                         int32_t *zp) {
    for (int64_t r = 0; r < m; r++) {
        float lo = 0.0f, hi = 0.0f;
        if (k > 0) eb_row_minmax(x + r * k, k, &lo, &hi);
        eb_row_qparams(lo, hi, 255, scale + r, zp + r);
        eb_quantize_u8(x + r * k, k, scale[r], zp[r], 0, 255, out + r * k);
    }
}

/* Pack int8 weights w (n, k) into panels [n/16][k2][16][2] (zero padded), k2 = ceil(k/2), so
 * that one sign-extending load gives 8 columns x one k-pair as int16; and column sums, padded
 * with zeros to whole panels. gemv.c expects the sums right after the panels (colsum ==
 * packed + panels * k2 * 32). */
void eb_pack_weight(const int8_t *w, int64_t n, int64_t k, int8_t *packed, int32_t *colsum) {
    int64_t k2 = (k + 1) / 2, panels = (n + EB_NR - 1) / EB_NR;
    memset(packed, 0, (size_t)(panels * k2 * EB_NR * 2));
    for (int64_t c = 0; c < n; c++) {
        const int8_t *row = w + c * k;
        int8_t *dst = packed + (c / EB_NR) * k2 * EB_NR * 2 + (c % EB_NR) * 2;
        int32_t sum = 0;
        for (int64_t j = 0; j < k; j++) {
            dst[(j / 2) * EB_NR * 2 + (j & 1)] = row[j];
            sum += row[j];
        }
        colsum[c] = sum;
    }
    for (int64_t c = n; c < panels * EB_NR; c++) colsum[c] = 0;
}

/* Weights for the 7-bit path, rearranged from eb_pack_weight's pair panels: panels
 * [ceil(n/16)][ceil(k/4)][16][4] int8 (a column's k-quad is 4 consecutive bytes; zero padded). */
void eb_pack_weight_quad(const int8_t *pairs, int64_t n, int64_t k, int8_t *packed) {
    int64_t k2 = (k + 1) / 2, k4 = (k + 3) / 4, panels = (n + EB_NR - 1) / EB_NR;
    memset(packed, 0, (size_t)(panels * k4 * EB_NR * 4));
    for (int64_t p = 0; p < panels; p++) {
        const int8_t *src = pairs + p * k2 * EB_NR * 2;
        int8_t *dst = packed + p * k4 * EB_NR * 4;
        for (int64_t j = 0; j < 2 * k2; j++)
            for (int c = 0; c < EB_NR; c++)
                dst[(j / 4) * EB_NR * 4 + c * 4 + (j & 3)] = src[(j / 2) * EB_NR * 2 + c * 2 + (j & 1)];
    }
}
