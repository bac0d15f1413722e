/* AMX microkernel: exact u8 x s8 -> int32 with tdpbusd, for CPUs with AMX-INT8 (Intel Sapphire
 * Rapids and later).
 *
 * tdpbusd multiplies a 16 x 64 uint8 tile A by a 16 x (16 x 4) int8 tile B holding 16 k-quads of
 * 16 columns and adds each dword's four u8 x s8 products to a 16 x 16 int32 tile C, as vpdpbusd
 * does per lane: no intermediate saturation, wrapping int32 adds, so the accumulators equal those
 * of the VNNI and AVX2 kernels bit for bit. One instruction does 16 K of work: 16384 products,
 * where a vpdpbusd does 64. B is exactly one 16-quad stretch of a k-quad weight panel
 * (eb_pack_weight_quad: 64 bytes per quad, quads consecutive), so AMX reads the layout the VNNI
 * kernels read; A is the call's uint8 rows (row stride lda, zero padded to whole quads).
 *
 * Tile: up to 2 x 2 C tiles (32 rows x 32 columns), all of K in one pass (no partial sums: the
 * accumulators stay in tile registers). A K tail of fewer than 16 quads goes through the VNNI
 * kernel (EB_UKV, one panel) on the stored tile, 6 rows at a time, which adds the same products.
 * Rows past the caller's m are computed from whatever its buffer holds there and never read
 * (the caller sizes A for whole 16-row tiles).
 *
 * Linux hands out the 8 KiB of tile state only on request (arch_prctl ARCH_REQ_XCOMP_PERM, once
 * per process, in eb_set_amx). The tile configuration is per thread and other libraries in the
 * same thread may load their own (oneDNN does), so each chunk of work loads it (eb_amx_begin)
 * and releases the tiles (eb_amx_end). The functions carry their own target attribute: the
 * library keeps its AVX2 flags, and runs them only after eb_set_amx(1) succeeded.
 */
#include <sys/syscall.h>
#include <unistd.h>

#include "eightbit.h"

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

#define AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx512f")))

int eb_amx_enabled = 0;

/* Select the AMX kernel (1) or not (0) for later calls; returns the previous value, or -1 when
 * the kernel refused the tile state (then AMX stays off). Needs eb_vnni_enabled for K tails. */
int eb_set_amx(int on) {
    int old = eb_amx_enabled;
    if (on && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return -1;
    eb_amx_enabled = on != 0;
    return old;
}

/* palette 1: tiles 0-3 C (16 rows x 64 bytes), 4-5 A (16 x 64 uint8), 6-7 B (16 quads x 64) */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* a constant object: gcc dropped the stores into a local one that only ldtilecfg reads */
static const tile_config AMX_CONFIG = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

AMX_TARGET void eb_amx_begin(void) { _tile_loadconfig(&AMX_CONFIG); }

AMX_TARGET void eb_amx_end(void) { _tile_release(); }


/* c (nb panels x 32 rows x 16 int32, panel j at c + 512 j) = A[0:16 na, 0:k4 quads] x panels
 * b, b + ps of k-quad weights; 1 <= na, nb <= 2. eb_amx_begin must have run in this thread. */
AMX_TARGET void eb_amx_tile(int64_t k4, const uint8_t *a, int64_t lda, const int8_t *b,
                            int64_t ps, int na, int nb, int32_t *c) {
    int64_t full = k4 & ~(int64_t)15;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t q = 0; q < full; q += 16) {
        const uint8_t *ak = a + 4 * q;
        const int8_t *bk = b + 64 * q;
        _tile_loadd(4, ak, lda);
        if (na > 1) _tile_loadd(5, ak + 16 * lda, lda);
        _tile_loadd(6, bk, 64);
        if (nb > 1) _tile_loadd(7, bk + ps, 64);
        _tile_dpbusd(0, 4, 6); /* C tile 2 i + j: rows 16 i, panel j */
        if (nb > 1) _tile_dpbusd(1, 4, 7);
        if (na > 1) _tile_dpbusd(2, 5, 6);
        if (na > 1 && nb > 1) _tile_dpbusd(3, 5, 7);
    }
    _tile_stored(0, c, 64);
    if (nb > 1) _tile_stored(1, c + 512, 64);
    if (na > 1) _tile_stored(2, c + 256, 64);
    if (na > 1 && nb > 1) _tile_stored(3, c + 512 + 256, 64);
    if (full == k4) return;
    for (int j = 0; j < nb; j++) {
        for (int i = 0; i < 16 * na; i += EB_MR) {
            int mr = 16 * na - i < EB_MR ? 16 * na - i : EB_MR;
            int32_t *t = c + 512 * j + 16 * i;
            EB_UKV[mr][1](k4 - full, a + i * lda + 4 * full, lda, b + j * ps + 64 * full, ps, t,
                          t);
        }
    }
}
