/* VNNI microkernels: exact u8 x s8 -> int32 with vpdpbusd, for CPUs with AVX512F + AVX512-VNNI.
 *
 * vpdpbusd adds the four u8 x s8 products of each dword lane to an int32 accumulator without
 * intermediate saturation (4 * 255 * 128 < 2^31, then wrapping int32 adds), so it is exact for
 * full 8-bit activations: one instruction per 64 products (512-bit), where the AVX2 kernels need
 * 2 per 16 (vpmaddwd + vpaddd on int16, 8-bit) or 3 per 32 (vpmaddubsw + vpmaddwd + vpaddd,
 * 7-bit only). The kernels read raw uint8 activations and the k-quad weight layout of the 7-bit
 * path (eb_pack_weight_quad): one quad of a 16-column panel is exactly 64 bytes, one zmm.
 *
 * Tile: up to 6 rows x up to 4 panels (64 columns), 24 zmm accumulators. Per k-quad: nz weight
 * loads, mr broadcasts, mr * nz vpdpbusd. Measured on Zen 4 (2 vpdpbusd per cycle) with L1-resident
 * data: 6x16 (one panel, the previous kernel) reaches about 280 GMAC/s per core, 6x32 and wider
 * about 430-445 (near the 2-per-cycle peak): with one panel, the 7 loads per 6 vpdpbusd, not the
 * multiplies, set the pace. The k loop is one asm block with fixed registers (gcc spills
 * accumulator arrays; more than 30 asm operands are not allowed), rows and panels beyond (mr, nz)
 * dropped at assembly time by gas .if. Output: nz consecutive 6x16 row-major tiles (96 int32
 * each), the layout gemm.c's epilogue and K-blocking partial sums use for one panel.
 *
 * gemm.c's compute_block7 drives them and subtracts za * colsum afterwards: the int32
 * accumulators equal those of the other paths bit for bit. The functions carry their own target
 * attribute, so the library keeps its AVX2 flags and runs them only after eb_set_vnni(1)
 * (native.py calls it when /proc/cpuinfo lists avx512f and avx512_vnni).
 */
#include "eightbit.h"

int eb_vnni_enabled = 0;

/* Select the VNNI kernels (1) or the AVX2 ones (0) for later calls; returns the previous value. */
int eb_set_vnni(int on) {
    int old = eb_vnni_enabled;
    eb_vnni_enabled = on != 0;
    return old;
}

/* Accumulator of row i, panel j: zmm(4 i + j) (ACC_i_j); weights of panel j: zmm(24 + j) (W_j);
 * row broadcasts alternate between zmm28 and zmm29. A line is kept by gas only when its row
 * I < EBV_MR and its panel J < EBV_NZ (set per kernel with .set). */
#define IFR(I, S) ".if " #I " < EBV_MR\n\t" S "\n\t.endif\n\t"
#define IFRP(I, J, S) ".if (" #I " < EBV_MR) && (" #J " < EBV_NZ)\n\t" S "\n\t.endif\n\t"
#define EACH_PANEL(I, F, ...)                                                                   \
    IFRP(I, 0, F(I, 0, __VA_ARGS__)) IFRP(I, 1, F(I, 1, __VA_ARGS__))                           \
    IFRP(I, 2, F(I, 2, __VA_ARGS__)) IFRP(I, 3, F(I, 3, __VA_ARGS__))
#define EACH_ROW(F, ...)                                                                        \
    EACH_PANEL(0, F, __VA_ARGS__) EACH_PANEL(1, F, __VA_ARGS__) EACH_PANEL(2, F, __VA_ARGS__)   \
    EACH_PANEL(3, F, __VA_ARGS__) EACH_PANEL(4, F, __VA_ARGS__) EACH_PANEL(5, F, __VA_ARGS__)
/* tile j of the output at byte 384 j, its row i at 64 i */
#define LOADF(I, J, _) "vmovdqu32 64*" #I "+384*" #J "(%[cin]), %%zmm" ACC_##I##_##J
#define STOREF(I, J, _) "vmovdqu32 %%zmm" ACC_##I##_##J ", 64*" #I "+384*" #J "(%[cout])"
#define ZEROF(I, J, _) "vpxord %%zmm" ACC_##I##_##J ", %%zmm" ACC_##I##_##J ", %%zmm" ACC_##I##_##J
#define DPF(I, J, T) "vpdpbusd %%zmm" W_##J ", %%zmm" T ", %%zmm" ACC_##I##_##J
#define ROWK(I, ADDR, T) IFR(I, "vpbroadcastd " ADDR ", %%zmm" T) EACH_PANEL(I, DPF, T)

#define W_0 "24"
#define W_1 "25"
#define W_2 "26"
#define W_3 "27"
#define ACC_0_0 "0"
#define ACC_0_1 "1"
#define ACC_0_2 "2"
#define ACC_0_3 "3"
#define ACC_1_0 "4"
#define ACC_1_1 "5"
#define ACC_1_2 "6"
#define ACC_1_3 "7"
#define ACC_2_0 "8"
#define ACC_2_1 "9"
#define ACC_2_2 "10"
#define ACC_2_3 "11"
#define ACC_3_0 "12"
#define ACC_3_1 "13"
#define ACC_3_2 "14"
#define ACC_3_3 "15"
#define ACC_4_0 "16"
#define ACC_4_1 "17"
#define ACC_4_2 "18"
#define ACC_4_3 "19"
#define ACC_5_0 "20"
#define ACC_5_1 "21"
#define ACC_5_2 "22"
#define ACC_5_3 "23"

#define ZMM_CLOBBERS                                                                            \
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",     \
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19",        \
        "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29"

/* acc (mr x 16 nz) = [cin +] A8[0:mr, 0:k4 quads] * nz quad panels at b, b + ps, ...; cin/cout:
 * nz consecutive 6x16 tiles. */
#define UKERNELZ(MR, NZ)                                                                        \
    __attribute__((target("avx512f,avx512vnni"))) static void ukz_##MR##_##NZ(                 \
        int64_t k4, const uint8_t *a, int64_t lda, const int8_t *b, int64_t ps,                 \
        const int32_t *cin, int32_t *cout) {                                                    \
        const uint8_t *a3 = a + 3 * lda;                                                        \
        const int8_t *b2 = b + 2 * ps;                                                          \
        __asm__ volatile(                                                                       \
            ".set EBV_MR, " #MR "\n\t.set EBV_NZ, " #NZ "\n\t"                                 \
            "test %[cin], %[cin]\n\tjz 2f\n\t" EACH_ROW(LOADF, _) "jmp 3f\n2:\n\t"              \
            EACH_ROW(ZEROF, _) "3:\n\t"                                                         \
            "test %[k], %[k]\n\tjz 5f\n4:\n\t"                                                  \
            IFRP(0, 0, "vmovdqa64 (%[b]), %%zmm24") IFRP(0, 1, "vmovdqa64 (%[b],%[ps]), %%zmm25") \
            IFRP(0, 2, "vmovdqa64 (%[b2]), %%zmm26")                                            \
            IFRP(0, 3, "vmovdqa64 (%[b2],%[ps]), %%zmm27")                                      \
            ROWK(0, "(%[a])", "28") ROWK(1, "(%[a],%[lda])", "29")                              \
            ROWK(2, "(%[a],%[lda],2)", "28") ROWK(3, "(%[a3])", "29")                           \
            ROWK(4, "(%[a3],%[lda])", "28") ROWK(5, "(%[a3],%[lda],2)", "29")                   \
            "add $4, %[a]\n\tadd $4, %[a3]\n\tadd $64, %[b]\n\tadd $64, %[b2]\n\t"              \
            "dec %[k]\n\tjnz 4b\n5:\n\t" EACH_ROW(STOREF, _) "vzeroupper"                       \
            : [a] "+r"(a), [a3] "+r"(a3), [b] "+r"(b), [b2] "+r"(b2), [k] "+r"(k4)              \
            : [lda] "r"(lda), [ps] "r"(ps), [cin] "r"(cin), [cout] "r"(cout)                    \
            : ZMM_CLOBBERS, "memory", "cc");                                                    \
    }
#define UKERNELZ_ROWS(MR) UKERNELZ(MR, 1) UKERNELZ(MR, 2) UKERNELZ(MR, 3) UKERNELZ(MR, 4)
UKERNELZ_ROWS(1)
UKERNELZ_ROWS(2)
UKERNELZ_ROWS(3)
UKERNELZ_ROWS(4)
UKERNELZ_ROWS(5)
UKERNELZ_ROWS(6)

#define UKZ_ROW(MR) {NULL, ukz_##MR##_1, ukz_##MR##_2, ukz_##MR##_3, ukz_##MR##_4}
const eb_ukernel8_fn EB_UKV[EB_MR + 1][EB_VNNI_NZ + 1] = {
    {NULL}, UKZ_ROW(1), UKZ_ROW(2), UKZ_ROW(3), UKZ_ROW(4), UKZ_ROW(5), UKZ_ROW(6)};
