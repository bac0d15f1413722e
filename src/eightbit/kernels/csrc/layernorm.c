/* Residual add + LayerNorm for the encoder path: h[r] <- LayerNorm(h[r] + x[r]) * gamma + beta,
 * row by row on the thread pool (AVX-512F; used where the VNNI kernels run, like attention.c).
 *
 * Two passes over each row in float32 (16-lane partial sums): mean, then the biased variance of
 * the deviations, rstd = 1 / sqrt(var + eps) (true square root and division), and
 * y = (s - mean) * rstd * gamma + beta rounded after each operation. torch's kernel sums in
 * another order (and may contract to FMA), so results differ from it in the last bits. */
#include <math.h>

#include "eightbit.h"

#define ROWS_PER_TASK 16

typedef struct {
    float *h;
    const float *x, *gamma, *beta;
    int64_t m, n;
    float eps;
} norm_job;

EB_AVX512 static void norm_task(void *ctx, int64_t t) {
    norm_job *jb = (norm_job *)ctx;
    int64_t n = jb->n, r1 = (t + 1) * ROWS_PER_TASK < jb->m ? (t + 1) * ROWS_PER_TASK : jb->m;
    __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1u);
    int64_t nv = n - n % 16;
    for (int64_t r = t * ROWS_PER_TASK; r < r1; r++) {
        float *h = jb->h + r * n;
        const float *x = jb->x + r * n;
        __m512 sum = _mm512_setzero_ps();
        for (int64_t j = 0; j < nv; j += 16) {
            __m512 s = _mm512_add_ps(_mm512_loadu_ps(h + j), _mm512_loadu_ps(x + j));
            _mm512_storeu_ps(h + j, s);
            sum = _mm512_add_ps(sum, s);
        }
        if (tail) {
            __m512 s = _mm512_add_ps(_mm512_maskz_loadu_ps(tail, h + nv),
                                     _mm512_maskz_loadu_ps(tail, x + nv));
            _mm512_mask_storeu_ps(h + nv, tail, s);
            sum = _mm512_add_ps(sum, s);
        }
        float mean = _mm512_reduce_add_ps(sum) / (float)n;
        __m512 vm = _mm512_set1_ps(mean), sq = _mm512_setzero_ps();
        for (int64_t j = 0; j < nv; j += 16) {
            __m512 d = _mm512_sub_ps(_mm512_loadu_ps(h + j), vm);
            sq = _mm512_fmadd_ps(d, d, sq);
        }
        if (tail) {
            __m512 d = _mm512_maskz_sub_ps(tail, _mm512_maskz_loadu_ps(tail, h + nv), vm);
            sq = _mm512_fmadd_ps(d, d, sq);
        }
        float var = _mm512_reduce_add_ps(sq) / (float)n;
        __m512 rstd = _mm512_set1_ps(1.0f / sqrtf(var + jb->eps));
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 k = j < nv ? (__mmask16)0xFFFF : tail;
            __m512 y = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, h + j), vm), rstd);
            if (jb->gamma) y = _mm512_mul_ps(y, _mm512_maskz_loadu_ps(k, jb->gamma + j));
            if (jb->beta) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(k, jb->beta + j));
            _mm512_mask_storeu_ps(h + j, k, y);
        }
    }
}

/* h (m, n) <- LayerNorm(h + x) with weight gamma and bias beta (n,), either may be NULL. */
void eb_add_layernorm(float *h, const float *x, int64_t m, int64_t n, const float *gamma,
                      const float *beta, float eps, int nthreads) {
    if (m <= 0 || n <= 0) return;
    norm_job jb = {h, x, gamma, beta, m, n, eps};
    int64_t tasks = (m + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    eb_parallel(m * n < 32768 ? 1 : (nthreads < 1 ? 1 : nthreads), tasks, norm_task, &jb);
}
