/* VNNI microkernels: exact u8 x s8 -> int32 with vpdpbusd, for CPUs with AVX512F + AVX512-VNNI.
 *
 * vpdpbusd adds the four u8 x s8 products of each dword lane to an int32 accumulator without
 * intermediate saturation (4 * 255 * 128 < 2^31, then wrapping int32 adds), so it is exact for
 * full 8-bit activations: one instruction per 64 products (512-bit), where the AVX2 kernels need
 * 2 per 16 (vpmaddwd + vpaddd on int16, 8-bit) or 3 per 32 (vpmaddubsw + vpmaddwd + vpaddd,
 * 7-bit only). The kernels read raw uint8 activations and the k-quad weight layout of the 7-bit
 * path (eb_pack_weight_quad): one quad of a 16-column panel is exactly 64 bytes, one zmm, so a
 * tile row is one accumulator and a quad costs 1 weight load, mr broadcasts and mr vpdpbusd.
 * gemm.c's compute_block7 drives them unchanged and subtracts za * colsum afterwards: the int32
 * accumulators equal those of the other paths bit for bit. (A 256-bit variant, two accumulators
 * per row, measured within noise of this one on Zen 4 and needs twice the instructions.)
 *
 * The functions carry their own target attribute, so the library keeps its AVX2 flags and runs
 * them only after eb_set_vnni(1) (native.py calls it when /proc/cpuinfo lists avx512f and
 * avx512_vnni). Named accumulators, not an array: gcc keeps those in registers.
 */
#include "eightbit.h"

int eb_vnni_enabled = 0;

/* Select the VNNI kernels (1) or the AVX2 ones (0) for later calls; returns the previous value. */
int eb_set_vnni(int on) {
    int old = eb_vnni_enabled;
    eb_vnni_enabled = on != 0;
    return old;
}

#define ZLOAD(I, C)                                                                             \
    if (mr_ > I) C = cin ? _mm512_loadu_si512(cin + 16 * I) : _mm512_setzero_si512();
#define ZROW(I, C)                                                                              \
    if (mr_ > I)                                                                                \
        C = _mm512_dpbusd_epi32(C, _mm512_set1_epi32(*(const int32_t *)(a + I * lda + 4 * k)), w);
#define ZSTORE(I, C)                                                                            \
    if (mr_ > I) _mm512_storeu_si512(cout + 16 * I, C);
#define UKERNELZ(MR)                                                                            \
    __attribute__((target("avx512f,avx512vnni"))) static void ukz_##MR(                        \
        int64_t k4, const uint8_t *a, int64_t lda, const int8_t *b, const int32_t *cin,         \
        int32_t *cout) {                                                                        \
        const int mr_ = MR;                                                                     \
        __m512i z0 = _mm512_setzero_si512(), z1 = z0, z2 = z0, z3 = z0, z4 = z0, z5 = z0;       \
        ZLOAD(0, z0) ZLOAD(1, z1) ZLOAD(2, z2) ZLOAD(3, z3) ZLOAD(4, z4) ZLOAD(5, z5)           \
        for (int64_t k = 0; k < k4; k++) {                                                      \
            __m512i w = _mm512_load_si512(b + 64 * k);                                          \
            ZROW(0, z0) ZROW(1, z1) ZROW(2, z2) ZROW(3, z3) ZROW(4, z4) ZROW(5, z5)             \
        }                                                                                       \
        ZSTORE(0, z0) ZSTORE(1, z1) ZSTORE(2, z2) ZSTORE(3, z3) ZSTORE(4, z4) ZSTORE(5, z5)     \
    }
UKERNELZ(1)
UKERNELZ(2)
UKERNELZ(3)
UKERNELZ(4)
UKERNELZ(5)
UKERNELZ(6)

const eb_ukernel8_fn EB_UKV[EB_MR + 1] = {NULL, ukz_1, ukz_2, ukz_3, ukz_4, ukz_5, ukz_6};
