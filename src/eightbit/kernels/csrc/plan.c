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
    for (int64_t r = 0; r < m; r++) {
        const eb_best *row = best + r * panels;
        eb_best b = row[0];
        for (int64_t q = 1; q < panels && !isnan(b.value); q++)
            if (isnan(row[q].value) || row[q].value > b.value) b = row[q];
        out[r] = b.index;
    }
    return 0;
}
