/* Decode attention, float32: one query per (row, head) over T keys,
 *     out[r, h] = softmax(scale * q[r, h] . k[i(r, j), h, j] + mask[r, j]) v[i(r, j), h, j]
 * for incremental decoding, where torch's SDPA kernels (made for long queries) cost far more than
 * the arithmetic. Every operand is read in place through element strides (the head dimension
 * contiguous), so the same kernel reads the engine's caches and Hugging Face's tensors.
 *
 * i(r, j) = idx[r * idx_rs + j * idx_ts] (or r when idx is NULL) is the key batch row that query
 * row r reads for key j: r / beams for cross-attention K/V stored once per sentence (idx_ts 0),
 * or the slot its beam ancestor wrote at step j for a self-attention cache that is never gathered.
 * mask: an additive float row per query row (mask[r * mask_rs + j]), or NULL.
 *
 * Fixed arithmetic, whatever the strides, the batch around a row, the thread count or the ISA:
 * - score: 8-lane partial products acc[l] = fma(q[8c + l], k[8c + l], acc[l]) over the chunks c
 *   of the head dimension (a ragged last chunk padded with zeros), then the tree
 *   ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)); times scale, plus the mask;
 * - max over the keys, e_j = eb_expf(s_j - max) (eightbit.h: same bits in 8 and 16 lanes);
 * - sum: 8-lane partial sums over key chunks of 8 (padding keys add +0), then the same tree;
 * - out[d] = fma chain over j of e_j v_j[d], in key order, divided by the sum (a true division).
 * The AVX-512 path (used where eb_vnni_enabled, as attention.c) computes exactly these
 * operations, 16 lanes at a time where the order is per lane, so its bits equal the AVX2 path's.
 * A row whose keys are all masked with -inf gives NaN, as the exact math. */
#include <math.h>
#include <stdlib.h>

#include "eightbit.h"

typedef struct {
    const float *q;
    int64_t q_rs, q_hs;
    const float *k;
    int64_t k_rs, k_hs, k_ts;
    const float *v;
    int64_t v_rs, v_hs, v_ts;
    const float *mask;
    int64_t mask_rs;
    const int32_t *idx;
    int64_t idx_rs, idx_ts;
    float *out;
    int64_t out_rs, out_hs;
    int64_t rows, heads, t, hd;
    float scale;
    int failed;
} dattn_job;

/* Prefetch (into L2) n keys' or values' head vectors of hd floats at base + off[i]. */
static inline void prefetch_vectors(const float *base, const int64_t *off, int64_t n, int64_t hd) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t d = 0; d < hd; d += 16) _mm_prefetch((const char *)(base + off[i] + d), _MM_HINT_T1);
}

/* lanes < n set */
static inline __m256i tail_mask8(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* x[i] = tree(a_i), i < 8: ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) of each a_i */
static inline __m256 tree8x8(const __m256 *a) {
    __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
    __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
    /* lanes: [a0 01+23, a1 .., a2 .., a3 .. | a0 45+67, a1 .., a2 .., a3 ..] */
    __m256 lo4 = _mm256_hadd_ps(h01, h23), hi4 = _mm256_hadd_ps(h45, h67);
    __m256 first = _mm256_permute2f128_ps(lo4, hi4, 0x20);  /* low halves: l0..l3 parts */
    __m256 second = _mm256_permute2f128_ps(lo4, hi4, 0x31); /* high halves: l4..l7 parts */
    return _mm256_add_ps(first, second);
}

/* the same tree over one vector's lanes */
static inline float tree8(__m256 a) {
    __m256 h = _mm256_hadd_ps(a, a);
    h = _mm256_hadd_ps(h, h);
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

/* scores[j0 .. j0 + 8) for keys at koff[] (keys past nk repeat the last one) */
static inline __m256 dot8(const float *q, const float *kh, const int64_t *koff, int64_t nk,
                          int64_t hd, __m256i tail) {
    const float *kp[8];
    for (int i = 0; i < 8; i++) kp[i] = kh + koff[i < nk ? i : nk - 1];
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d + 8 <= hd; d += 8) {
        __m256 qv = _mm256_loadu_ps(q + d);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) acc[i] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kp[i] + d), acc[i]);
    }
    if (d < hd) {
        __m256 qv = _mm256_maskload_ps(q + d, tail);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            acc[i] = _mm256_fmadd_ps(qv, _mm256_maskload_ps(kp[i] + d, tail), acc[i]);
    }
    return tree8x8(acc);
}

/* AVX-512 variant of dot8: keys i and i + 4 share a zmm (low / high half), same lane ops */
EB_AVX512 static inline __m256 dot8_512(const float *q, const float *kh, const int64_t *koff,
                                        int64_t nk, int64_t hd, __m256i tail) {
    const float *kp[8];
    for (int i = 0; i < 8; i++) kp[i] = kh + koff[i < nk ? i : nk - 1];
    __m512 acc[4];
    for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps();
    int64_t d = 0;
    for (; d + 8 <= hd; d += 8) {
        __m256 q8 = _mm256_loadu_ps(q + d);
        __m512 qv = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(q8)));
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m512 kv = _mm512_castps256_ps512(_mm256_loadu_ps(kp[i] + d));
            kv = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(kv),
                                                     _mm256_castps_pd(_mm256_loadu_ps(kp[i + 4] + d)), 1));
            acc[i] = _mm512_fmadd_ps(qv, kv, acc[i]);
        }
    }
    __m256 a[8];
    for (int i = 0; i < 4; i++) {
        a[i] = _mm512_castps512_ps256(acc[i]);
        a[i + 4] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[i]), 1));
    }
    if (d < hd) {
        __m256 qv = _mm256_maskload_ps(q + d, tail);
        for (int i = 0; i < 8; i++) a[i] = _mm256_fmadd_ps(qv, _mm256_maskload_ps(kp[i] + d, tail), a[i]);
    }
    return tree8x8(a);
}

/* scores -> exps in place; returns their sum (8-lane partial sums, then the tree). sc holds tp
 * (a multiple of 16) entries, -inf past the last key. */
static float softmax_exps(float *sc, int64_t tp) {
    __m256 mx = _mm256_set1_ps(-INFINITY);
    for (int64_t j = 0; j < tp; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(sc + j));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    __m256 m = _mm256_set1_ps(_mm_cvtss_f32(m4));
    __m256 sum = _mm256_setzero_ps();
    for (int64_t j = 0; j < tp; j += 8) {
        __m256 e = eb_expf8_z(_mm256_sub_ps(_mm256_loadu_ps(sc + j), m));
        _mm256_storeu_ps(sc + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    return tree8(sum);
}

EB_AVX512 static float softmax_exps_512(float *sc, int64_t tp) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < tp; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(sc + j));
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    for (int64_t j = 0; j < tp; j += 16)
        _mm512_storeu_ps(sc + j, eb_expf16_z(_mm512_sub_ps(_mm512_loadu_ps(sc + j), m)));
    __m256 sum = _mm256_setzero_ps();
    for (int64_t j = 0; j < tp; j += 8) sum = _mm256_add_ps(sum, _mm256_loadu_ps(sc + j));
    return tree8(sum);
}

/* The weighted sums of V, for all heads of a row at once: output vectors ("slots": a head and an
 * 8- or 16-float chunk of its head dimension) are computed in groups of SLOTS, so that SLOTS
 * independent fma chains run side by side (one chain, in key order, per output lane). */
#define SLOTS 8

typedef struct {
    const float *v; /* the slot's head and chunk: v + h * v_hs + d */
    const float *e; /* its head's exps */
    float *out;
    float sum;
} slot;

static void weighted_sums(slot *sl, int n, const int64_t *voff, int64_t t) {
    for (int g = 0; g < n; g += SLOTS) {
        slot *s = sl + g;
        int m = n - g < SLOTS ? n - g : SLOTS, last = m - 1;
        const float *vp[SLOTS], *ep[SLOTS];
        for (int i = 0; i < SLOTS; i++) { /* slots past the last repeat it, never stored */
            vp[i] = s[i < m ? i : last].v;
            ep[i] = s[i < m ? i : last].e;
        }
        __m256 acc[SLOTS];
        for (int i = 0; i < SLOTS; i++) acc[i] = _mm256_setzero_ps();
        for (int64_t j = 0; j < t; j++) {
            int64_t o = voff[j];
#pragma GCC unroll 8
            for (int i = 0; i < SLOTS; i++)
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(ep[i][j]), _mm256_loadu_ps(vp[i] + o), acc[i]);
        }
        for (int i = 0; i < m; i++)
            _mm256_storeu_ps(s[i].out, _mm256_div_ps(acc[i], _mm256_set1_ps(s[i].sum)));
    }
}

EB_AVX512 static void weighted_sums_512(slot *sl, int n, const int64_t *voff, int64_t t) {
    for (int g = 0; g < n; g += SLOTS) {
        slot *s = sl + g;
        int m = n - g < SLOTS ? n - g : SLOTS, last = m - 1;
        const float *vp[SLOTS], *ep[SLOTS];
        for (int i = 0; i < SLOTS; i++) {
            vp[i] = s[i < m ? i : last].v;
            ep[i] = s[i < m ? i : last].e;
        }
        __m512 acc[SLOTS];
        for (int i = 0; i < SLOTS; i++) acc[i] = _mm512_setzero_ps();
        for (int64_t j = 0; j < t; j++) {
            int64_t o = voff[j];
#pragma GCC unroll 8
            for (int i = 0; i < SLOTS; i++)
                acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(ep[i][j]), _mm512_loadu_ps(vp[i] + o), acc[i]);
        }
        for (int i = 0; i < m; i++)
            _mm512_storeu_ps(s[i].out, _mm512_div_ps(acc[i], _mm512_set1_ps(s[i].sum)));
    }
}

/* A ragged last chunk (head_dim not a multiple of the vector width): lanes below n only. */
static void weighted_sum_tail(const slot *s, int64_t n, const int64_t *voff, int64_t t) {
    __m256i lanes = tail_mask8(n);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < t; j++)
        acc = _mm256_fmadd_ps(_mm256_set1_ps(s->e[j]), _mm256_maskload_ps(s->v + voff[j], lanes), acc);
    _mm256_maskstore_ps(s->out, lanes, _mm256_div_ps(acc, _mm256_set1_ps(s->sum)));
}

/* Where query row r reads key/value j (element offsets into k and v), for j < t. */
static void row_offsets(const dattn_job *jb, int64_t r, int64_t *koff, int64_t *voff) {
    for (int64_t j = 0; j < jb->t; j++) {
        int64_t row = jb->idx ? jb->idx[r * jb->idx_rs + j * jb->idx_ts] : r;
        koff[j] = row * jb->k_rs + j * jb->k_ts;
        voff[j] = row * jb->v_rs + j * jb->v_ts;
    }
}

/* All heads of query row r. */
static void dattn_row(void *ctx, int64_t r) {
    dattn_job *jb = (dattn_job *)ctx;
    int64_t t = jb->t, hd = jb->hd, heads = jb->heads, tp = (t + 15) & ~(int64_t)15;
    int wide = eb_vnni_enabled, width = wide ? 16 : 8;
    int64_t chunks = hd / width, nslots = heads * chunks;
    size_t bytes = 4 * t * sizeof(int64_t) + (heads * tp + heads) * sizeof(float) +
                   (nslots + heads * 2) * sizeof(slot);
    char *buf = (char *)eb_scratch(1, bytes);
    if (!buf) {
        __atomic_store_n(&jb->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    int64_t *koff = (int64_t *)buf, *voff = koff + t, *next_k = voff + t, *next_v = next_k + t;
    float *sc = (float *)(next_v + t), *sums = sc + heads * tp;
    slot *slots = (slot *)(sums + heads), *tails = slots + nslots;
    row_offsets(jb, r, koff, voff);
    /* Decoding reads each row's K/V once per step, from memory more often than from cache (a
     * step's other layers and GEMMs evict them), in short runs that the hardware prefetchers
     * pick up late: while row r computes, the next row's keys and values are fetched. */
    int64_t next = r + 1 < jb->rows ? r + 1 : -1;
    if (next >= 0) row_offsets(jb, next, next_k, next_v);
    const float *mask = jb->mask ? jb->mask + r * jb->mask_rs : NULL;
    __m256i tail = tail_mask8(hd % 8);
    __m256 scale = _mm256_set1_ps(jb->scale);
    int64_t ntails = 0; /* slots of the ragged rest, in (head, chunk) order */
    for (int64_t h = 0; h < heads; h++) {
        const float *q = jb->q + r * jb->q_rs + h * jb->q_hs, *kh = jb->k + h * jb->k_hs;
        float *e = sc + h * tp;
        for (int64_t j = 0; j < t; j += 8) {
            int64_t nk = t - j < 8 ? t - j : 8;
            if (next >= 0) prefetch_vectors(kh, next_k + j, nk, hd);
            __m256 s = wide ? dot8_512(q, kh, koff + j, nk, hd, tail)
                            : dot8(q, kh, koff + j, nk, hd, tail);
            s = _mm256_mul_ps(s, scale);
            if (mask) s = _mm256_add_ps(s, _mm256_maskload_ps(mask + j, tail_mask8(nk)));
            _mm256_storeu_ps(e + j, s);
        }
        for (int64_t j = t; j < tp; j++) e[j] = -INFINITY;
        sums[h] = wide ? softmax_exps_512(e, tp) : softmax_exps(e, tp);
        const float *vh = jb->v + h * jb->v_hs;
        if (next >= 0) prefetch_vectors(vh, next_v, t, hd);
        float *out = jb->out + r * jb->out_rs + h * jb->out_hs;
        for (int64_t c = 0; c < chunks; c++)
            slots[h * chunks + c] = (slot){vh + c * width, e, out + c * width, sums[h]};
        for (int64_t d = chunks * width; d < hd; d += 8) /* the rest in 8-lane chunks */
            tails[ntails++] = (slot){vh + d, e, out + d, sums[h]};
    }
    if (wide)
        weighted_sums_512(slots, (int)nslots, voff, t);
    else
        weighted_sums(slots, (int)nslots, voff, t);
    for (int64_t h = 0, i = 0; h < heads; h++)
        for (int64_t d = chunks * width; d < hd; d += 8, i++)
            weighted_sum_tail(tails + i, hd - d, voff, t);
}

#define MIN_PARALLEL_WORK 32768 /* multiply-adds below which threads cost more than they save */

/* Returns 0, or -1 when scratch memory ran out. */
int eb_decode_attention(const float *q, int64_t q_rs, int64_t q_hs, const float *k, int64_t k_rs,
                        int64_t k_hs, int64_t k_ts, const float *v, int64_t v_rs, int64_t v_hs,
                        int64_t v_ts, const float *mask, int64_t mask_rs, const int32_t *idx,
                        int64_t idx_rs, int64_t idx_ts, float *out, int64_t out_rs,
                        int64_t out_hs, int64_t rows, int64_t heads, int64_t t, int64_t hd,
                        float scale, int nthreads) {
    if (rows <= 0 || heads <= 0 || t <= 0 || hd <= 0) return 0;
    dattn_job jb = {q,    q_rs, q_hs, k,      k_rs,   k_hs,   k_ts,  v,  v_rs,
                    v_hs, v_ts, mask, mask_rs, idx,    idx_rs, idx_ts, out, out_rs,
                    out_hs, rows, heads, t, hd, scale, 0};
    if (rows * heads * t * hd < MIN_PARALLEL_WORK) nthreads = 1;
    eb_parallel(nthreads < 1 ? 1 : nthreads, rows, dattn_row, &jb);
    return jb.failed ? -1 : 0;
}
