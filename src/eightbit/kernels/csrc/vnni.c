/* VNNI microkernels: exact u8 x s8 -> int32 with vpdpbusd, for CPUs with AVX512-VNNI + AVX512VL.
 *
 * vpdpbusd adds the four u8 x s8 products of each dword lane to an int32 accumulator without
 * intermediate saturation (4 * 255 * 128 < 2^31, then wrapping int32 adds), so it is exact for
 * full 8-bit activations: one instruction per 32 products, where the AVX2 kernels need 2 per 16
 * (vpmaddwd + vpaddd on int16, 8-bit) or 3 per 32 (vpmaddubsw + vpmaddwd + vpaddd, 7-bit only).
 * The kernels read raw uint8 activations and the k-quad weight layout of the 7-bit path
 * (eb_pack_weight_quad), so gemm.c's compute_block7 drives them unchanged and subtracts
 * za * colsum afterwards: the int32 accumulators equal those of the other paths bit for bit.
 *
 * The instruction is written with an explicit {evex} prefix: the 256-bit form needs AVX512VL, and
 * the VEX form (AVX-VNNI) is a different extension that e.g. AMD Zen 4 lacks. The assembler
 * accepts it without -mavx512vnni, so the library keeps its AVX2 flags and runs these kernels only
 * when eb_set_vnni(1) was called (native.py does so when /proc/cpuinfo lists avx512_vnni and
 * avx512vl).
 */
#include "eightbit.h"

int eb_vnni_enabled = 0;

/* Select the VNNI kernels (1) or the AVX2 ones (0) for later calls; returns the previous value. */
int eb_set_vnni(int on) {
    int old = eb_vnni_enabled;
    eb_vnni_enabled = on != 0;
    return old;
}

/* One row of a tile: broadcast the row's k-quad, 2 vpdpbusd into its two accumulators. */
#define ROWV(APTR, C0, C1)                                                                      \
    __asm__ volatile("vpbroadcastd %[a], %%ymm13\n\t"                                            \
                     "%{evex%} vpdpbusd %[b0], %%ymm13, %[c0]\n\t"                               \
                     "%{evex%} vpdpbusd %[b1], %%ymm13, %[c1]"                                   \
                     : [c0] "+x"(C0), [c1] "+x"(C1)                                             \
                     : [a] "m"(*(const int32_t *)(APTR)), [b0] "x"(b0), [b1] "x"(b1)            \
                     : "xmm13")

#define LOAD_ACCV(I, C0, C1)                                                                    \
    if (mr_ > I && cin) {                                                                       \
        C0 = _mm256_loadu_si256((const __m256i *)(cin + 16 * I));                               \
        C1 = _mm256_loadu_si256((const __m256i *)(cin + 16 * I + 8));                           \
    }
#define STORE_ACCV(I, C0, C1)                                                                   \
    if (mr_ > I) {                                                                              \
        _mm256_storeu_si256((__m256i *)(cout + 16 * I), C0);                                    \
        _mm256_storeu_si256((__m256i *)(cout + 16 * I + 8), C1);                                \
    }

/* acc (mr x 16) = [cin +] A8[0:mr, 0:k4 quads] * B quad panel (64 bytes per quad), as gemm.c's
 * uk7_*: same arguments, same results. Per quad: 2 weight loads, mr broadcasts, 2 mr vpdpbusd. */
#define UKERNELV(MR)                                                                            \
    static void ukv_##MR(int64_t k4, const uint8_t *a, int64_t lda, const int8_t *b,            \
                         const int32_t *cin, int32_t *cout) {                                   \
        const int mr_ = MR;                                                                     \
        __m256i x0 = _mm256_setzero_si256(), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0;       \
        __m256i x6 = x0, x7 = x0, x8 = x0, x9 = x0, x10 = x0, x11 = x0;                         \
        LOAD_ACCV(0, x0, x1) LOAD_ACCV(1, x2, x3) LOAD_ACCV(2, x4, x5)                          \
        LOAD_ACCV(3, x6, x7) LOAD_ACCV(4, x8, x9) LOAD_ACCV(5, x10, x11)                        \
        for (int64_t k = 0; k < k4; k++) {                                                      \
            __m256i b0 = _mm256_load_si256((const __m256i *)(b + 64 * k));                      \
            __m256i b1 = _mm256_load_si256((const __m256i *)(b + 64 * k + 32));                 \
            if (MR > 0) ROWV(a + 4 * k, x0, x1);                                                \
            if (MR > 1) ROWV(a + lda + 4 * k, x2, x3);                                          \
            if (MR > 2) ROWV(a + 2 * lda + 4 * k, x4, x5);                                      \
            if (MR > 3) ROWV(a + 3 * lda + 4 * k, x6, x7);                                      \
            if (MR > 4) ROWV(a + 4 * lda + 4 * k, x8, x9);                                      \
            if (MR > 5) ROWV(a + 5 * lda + 4 * k, x10, x11);                                    \
        }                                                                                       \
        STORE_ACCV(0, x0, x1) STORE_ACCV(1, x2, x3) STORE_ACCV(2, x4, x5)                       \
        STORE_ACCV(3, x6, x7) STORE_ACCV(4, x8, x9) STORE_ACCV(5, x10, x11)                     \
    }
UKERNELV(1)
UKERNELV(2)
UKERNELV(3)
UKERNELV(4)
UKERNELV(5)
UKERNELV(6)

const eb_ukernel8_fn EB_UKV[EB_MR + 1] = {NULL, ukv_1, ukv_2, ukv_3, ukv_4, ukv_5, ukv_6};
