/* Per-layer call plans: the arguments of a linear layer's GEMM that do not change between calls
 * (weights, scales, bias, static activation parameters), kept in one struct that Python builds
 * once (native.LinearPlan, a ctypes mirror of eb_plan). A call then passes 5 arguments instead of
 * 14-15: ctypes converts each argument on every call (about 1.2 us for 15, 0.35 us for 4). */
#include "eightbit.h"

/* Field order and types must match native._PlanStruct. */
typedef struct {
    int64_t k, n;
    const int8_t *packed, *quad; /* quad: NULL unless the VNNI kernels or the 7-bit path read it */
    const float *w_scale, *bias; /* (n,); bias may be NULL */
    float scale;                 /* static: activation scale, zero point and clamp */
    int32_t zp, qmin, qmax;
    int32_t seven;               /* activations known to be <= 127 (static qmax, or dynamic 7-bit) */
    int32_t per_row;             /* dynamic: per-row (1) or per-tensor (0) activation ranges */
} eb_plan;

/* Static linear, float in and out (eb_linear_f32_static with the plan's arguments). */
int eb_plan_static(const eb_plan *p, const float *x, int64_t m, float *out, int nthreads) {
    return eb_linear_f32_static(x, p->scale, p->zp, p->qmin, p->qmax, m, p->k, p->packed, p->quad,
                                p->seven, p->n, p->w_scale, p->bias, out, nthreads);
}

/* Dynamic linear, float in and out (eb_linear_f32_dynamic with the plan's arguments). */
int eb_plan_dynamic(const eb_plan *p, const float *x, int64_t m, float *out, int nthreads) {
    return eb_linear_f32_dynamic(x, p->per_row, m, p->k, p->packed, p->quad, p->seven, p->n,
                                 p->w_scale, p->bias, out, NULL, NULL, nthreads);
}

/* Static linear + GELU: uint8 out quantized with (out_scale, out_zp, [out_lo, out_hi]) when
 * out_scale > 0, else float (eb_linear_f32_static_gelu with the plan's arguments). */
int eb_plan_static_gelu(const eb_plan *p, const float *x, int64_t m, void *out, float out_scale,
                        int32_t out_zp, int32_t out_lo, int32_t out_hi, int nthreads) {
    return eb_linear_f32_static_gelu(x, p->scale, p->zp, p->qmin, p->qmax, m, p->k, p->packed,
                                     p->quad, p->seven, p->n, p->w_scale, p->bias, out_scale,
                                     out_zp, out_lo, out_hi, out, nthreads);
}

/* Dynamic linear + GELU, float out (eb_linear_f32_dynamic_gelu with the plan's arguments). */
int eb_plan_dynamic_gelu(const eb_plan *p, const float *x, int64_t m, float *out, int nthreads) {
    return eb_linear_f32_dynamic_gelu(x, p->per_row, m, p->k, p->packed, p->quad, p->seven, p->n,
                                      p->w_scale, p->bias, out, nthreads);
}

/* The index of the first maximum of a row's per-panel maxima (NaN the largest, the first NaN
 * winning), 8 panels at a time: each lane keeps its first maximum (panels q, q + 8, ... in
 * column order; a later one replaces it only when strictly larger), then the smallest index
 * among the lanes that hold the largest value. A scan one panel at a time took about 2 ns a
 * panel, 50 us a step for 48 rows x 500 panels of an 8k vocabulary. */
static int32_t first_best(const eb_best *row, int64_t panels) {
    eb_best b = row[0];
    int64_t q = 1;
    if (panels >= 8) {
        const __m256i even_odd = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        __m256 bv = _mm256_setzero_ps();
        __m256i bi = _mm256_setzero_si256();
        for (q = 0; q + 8 <= panels; q += 8) {
            __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps((const float *)(row + q)), even_odd);
            __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps((const float *)(row + q + 4)),
                                                 even_odd); /* values then indices, 4 + 4 each */
            __m256 v = _mm256_permute2f128_ps(lo, hi, 0x20);
            __m256i ix = _mm256_castps_si256(_mm256_permute2f128_ps(lo, hi, 0x31));
            if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) /* none before q */
                for (int64_t j = q;; j++)
                    if (isnan(row[j].value)) return row[j].index;
            if (q == 0) {
                bv = v;
                bi = ix;
                continue;
            }
            __m256 gt = _mm256_cmp_ps(v, bv, _CMP_GT_OQ);
            bv = _mm256_blendv_ps(bv, v, gt);
            bi = _mm256_castps_si256(
                _mm256_blendv_ps(_mm256_castsi256_ps(bi), _mm256_castsi256_ps(ix), gt));
        }
        float value[8];
        int32_t index[8];
        _mm256_storeu_ps(value, bv);
        _mm256_storeu_si256((__m256i *)index, bi);
        b = (eb_best){value[0], index[0]};
        for (int l = 1; l < 8; l++)
            if (value[l] > b.value || (value[l] == b.value && index[l] < b.index))
                b = (eb_best){value[l], index[l]};
    }
    for (; q < panels && !isnan(b.value); q++) /* the rest, in column order */
        if (isnan(row[q].value) || row[q].value > b.value) b = row[q];
    return b.index;
}

/* Greedy search's next tokens: out[r] = argmax_j logits[r, j] over the columns not in skip
 * (skip: (n,) nonzero = suppressed, as -inf; or NULL), first maximum, a NaN counting as the
 * largest, as torch.argmax. logits: what eb_plan_static / eb_plan_dynamic compute, plus
 * bias_after (n,) when not NULL (a second addition, as adding a logits bias to their output),
 * tile by tile, never stored; best holds (m, ceil(n / 16)) per-panel maxima. dynamic: the
 * plan's dynamic (1) or static (0) activation quantization. */
int eb_plan_argmax(const eb_plan *p, int dynamic, const float *x, int64_t m, const uint8_t *skip,
                   const float *bias_after, eb_best *best, int64_t *out, int nthreads) {
    int status = dynamic ? eb_linear_f32_dynamic_kind(EB_OUT_ARGMAX, x, p->per_row, m, p->k,
                                                      p->packed, p->quad, p->seven, p->n,
                                                      p->w_scale, p->bias, best, skip, bias_after,
                                                      nthreads)
                         : eb_linear_f32_static_kind(EB_OUT_ARGMAX, x, p->scale, p->zp, p->qmin,
                                                     p->qmax, m, p->k, p->packed, p->quad,
                                                     p->seven, p->n, p->w_scale, p->bias, best,
                                                     skip, bias_after, nthreads);
    if (status != 0) return status;
    int64_t panels = (p->n + 15) / 16; /* >= 1: the caller rejects n == 0 (no argmax) */
    for (int64_t r = 0; r < m; r++) out[r] = first_best(best + r * panels, panels);
    return 0;
}
