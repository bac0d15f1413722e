/* Fused float32 self-attention for the encoder path (AVX-512F; used where the VNNI kernels run):
 * softmax(Q K^T * scale + key_bias) V for every (sequence, head), read straight from the fused
 * query/key/value projection's output and written in the layout the output projection reads.
 *
 * qkv: (batch * seq, 3 * heads * hd) row-major, a row holding the token's query, key and value,
 * each heads * hd wide (head h at columns h * hd); out: (batch * seq, heads * hd). key_bias:
 * (batch, seq) added to every score of that key (0 or -inf for BERT's padding mask), or NULL.
 * hd must be a multiple of 16 and at most 128.
 *
 * Per (sequence, head) task: K transposed once into a (hd, seq) scratch panel, then blocks of 4
 * query rows: scores by a 4 x 64 register tile (16 zmm, one broadcast of q and 4 key loads per
 * 16 FMA), row max, exp (eb_expf16_z, eightbit.h), sum, then 4 rows x hd of P V with one
 * broadcast of p and hd / 16 value loads per row, divided by the sums at the end (a true
 * division). Not the operation order of torch's SDPA kernels, so results differ from them in the
 * last bits (tested: within 1e-5). Rows whose keys are all masked give NaN, as the exact math. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eightbit.h"

#define QR 4 /* query rows per block */

typedef struct {
    const float *qkv, *key_bias;
    float *out;
    int64_t batch, seq, heads, hd;
    float scale;
    int failed;
} attention_job;

/* scores[r][0:seqp] = scale * (q_r . k_j) + bias[j] for QR rows (rows past the block's last
 * repeat it: q_rows holds QR row pointers); kt: (hd, seqp). */
EB_AVX512 static void block_scores(const float *const *q_rows, const float *kt, int64_t seqp,
                                   int64_t hd, float scale, const float *bias, float *scores) {
    __m512 vs = _mm512_set1_ps(scale);
    for (int64_t j = 0; j < seqp; j += 64) {
        int nv = seqp - j >= 64 ? 4 : (int)((seqp - j) / 16);
        __m512 acc[QR][4];
#pragma GCC unroll 4
        for (int r = 0; r < QR; r++)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
        for (int64_t d = 0; d < hd; d++) {
            const float *kd = kt + d * seqp + j;
            __m512 kv[4];
            kv[0] = _mm512_loadu_ps(kd);
            kv[1] = nv > 1 ? _mm512_loadu_ps(kd + 16) : kv[0];
            kv[2] = nv > 2 ? _mm512_loadu_ps(kd + 32) : kv[0];
            kv[3] = nv > 3 ? _mm512_loadu_ps(kd + 48) : kv[0];
#pragma GCC unroll 4
            for (int r = 0; r < QR; r++) {
                __m512 qv = _mm512_set1_ps(q_rows[r][d]);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) acc[r][c] = _mm512_fmadd_ps(qv, kv[c], acc[r][c]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < QR; r++)
            for (int c = 0; c < nv; c++) {
                __m512 s = _mm512_mul_ps(acc[r][c], vs);
                s = _mm512_add_ps(s, _mm512_loadu_ps(bias + j + 16 * c));
                _mm512_storeu_ps(scores + r * seqp + j + 16 * c, s);
            }
    }
}

/* acc (QR rows x ND vectors) = P[0:QR, 0:seq] V[0:seq, 0:16 ND], divided by the row sums. */
#define BLOCK_PV(ND)                                                                            \
    EB_AVX512 static void block_pv##ND(const float *scores, int64_t seqp, int64_t seq,          \
                                       const float *v, int64_t ld, const float *sums, int mr,    \
                                       float *out, int64_t width) {                             \
        __m512 acc[QR][ND];                                                                     \
        _Pragma("GCC unroll 4") for (int r = 0; r < QR; r++)                                    \
            _Pragma("GCC unroll 8") for (int c = 0; c < ND; c++) acc[r][c] = _mm512_setzero_ps(); \
        for (int64_t j = 0; j < seq; j++) {                                                     \
            const float *vj = v + j * ld;                                                       \
            __m512 vv[ND];                                                                      \
            _Pragma("GCC unroll 8") for (int c = 0; c < ND; c++) vv[c] = _mm512_loadu_ps(vj + 16 * c); \
            _Pragma("GCC unroll 4") for (int r = 0; r < QR; r++) {                              \
                __m512 p = _mm512_set1_ps(scores[r * seqp + j]);                                \
                _Pragma("GCC unroll 8") for (int c = 0; c < ND; c++)                            \
                    acc[r][c] = _mm512_fmadd_ps(p, vv[c], acc[r][c]);                           \
            }                                                                                   \
        }                                                                                       \
        for (int r = 0; r < mr; r++) {                                                          \
            __m512 s = _mm512_set1_ps(sums[r]);                                                 \
            _Pragma("GCC unroll 8") for (int c = 0; c < ND; c++)                                \
                _mm512_storeu_ps(out + r * width + 16 * c, _mm512_div_ps(acc[r][c], s));       \
        }                                                                                       \
    }
BLOCK_PV(1)
BLOCK_PV(2)
BLOCK_PV(3)
BLOCK_PV(4)
BLOCK_PV(5)
BLOCK_PV(6)
BLOCK_PV(7)
BLOCK_PV(8)

typedef void (*block_pv_fn)(const float *, int64_t, int64_t, const float *, int64_t,
                            const float *, int, float *, int64_t);
static const block_pv_fn BLOCK_PV_FN[9] = {NULL,        block_pv1, block_pv2, block_pv3, block_pv4,
                                           block_pv5,   block_pv6, block_pv7, block_pv8};

EB_AVX512 static void attention_task(void *ctx, int64_t t) {
    attention_job *jb = (attention_job *)ctx;
    int64_t seq = jb->seq, hd = jb->hd, heads = jb->heads, width = heads * hd;
    int64_t b = t / heads, h = t % heads, ld = 3 * width;
    int64_t seqp = (seq + 15) & ~(int64_t)15; /* keys padded to whole vectors */
    size_t need = (size_t)(hd * seqp + QR * seqp + seqp + QR * 16) * sizeof(float);
    float *buf = (float *)eb_scratch(1, need);
    if (!buf) {
        __atomic_store_n(&jb->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    float *kt = buf, *scores = kt + hd * seqp, *bias = scores + QR * seqp;
    const float *base = jb->qkv + b * seq * ld;
    const float *q = base + h * hd, *k = base + width + h * hd, *v = base + 2 * width + h * hd;
    /* K^T, padded keys zero; bias of padded keys -inf so they get probability 0 */
    for (int64_t j = 0; j < seqp; j++) {
        for (int64_t d = 0; d < hd; d++) kt[d * seqp + j] = j < seq ? k[j * ld + d] : 0.0f;
        bias[j] = j < seq ? (jb->key_bias ? jb->key_bias[b * seq + j] : 0.0f) : -INFINITY;
    }
    float *out = jb->out + b * seq * width + h * hd;
    block_pv_fn pv = BLOCK_PV_FN[hd / 16];
    for (int64_t i = 0; i < seq; i += QR) {
        int mr = seq - i >= QR ? QR : (int)(seq - i);
        const float *q_rows[QR];
        for (int r = 0; r < QR; r++) q_rows[r] = q + (i + (r < mr ? r : mr - 1)) * ld;
        block_scores(q_rows, kt, seqp, hd, jb->scale, bias, scores);
        float sums[QR];
        for (int r = 0; r < mr; r++) {
            float *s = scores + r * seqp;
            __m512 mx = _mm512_set1_ps(-INFINITY);
            for (int64_t j = 0; j < seqp; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + j));
            __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
            __m512 sum = _mm512_setzero_ps();
            for (int64_t j = 0; j < seqp; j += 16) {
                __m512 e = eb_expf16_z(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
                _mm512_storeu_ps(s + j, e);
                sum = _mm512_add_ps(sum, e);
            }
            sums[r] = _mm512_reduce_add_ps(sum);
        }
        for (int r = mr; r < QR; r++) /* rows past the block: copies, never stored */
            memcpy(scores + r * seqp, scores + (mr - 1) * seqp, (size_t)seqp * sizeof(float));
        pv(scores, seqp, seq, v, ld, sums, mr, out + i * width, width);
    }
}

/* Returns 0, -1 when scratch memory ran out, -2 for an unsupported head size. */
int eb_attention_f32(const float *qkv, const float *key_bias, int64_t batch, int64_t seq,
                     int64_t heads, int64_t hd, float scale, float *out, int nthreads) {
    if (hd % 16 || hd > 128 || hd <= 0) return -2;
    if (batch <= 0 || seq <= 0 || heads <= 0) return 0;
    attention_job jb = {qkv, key_bias, out, batch, seq, heads, hd, scale, 0};
    eb_parallel(nthreads < 1 ? 1 : nthreads, batch * heads, attention_task, &jb);
    return jb.failed ? -1 : 0;
}
