// bf16 mixed precision's product (Bf16Gemm, kernels.h) on AMX-BF16: blocks
// of 32 rows by 32 lanes (four 16 x 16 fp32 tiles of sums), TDPBF16PS on
// 16 pairs a step. The lanes' panels are read where they lie (a pair row
// of 32 lanes is 128 bytes: a tile's 16 lanes are half of it); the rows'
// pairs are gathered into a row-major block first, zero-padded to whole
// tiles, the K tail of the lanes copied into a zero-padded tile.
//
// AMX's sums are its own: the two products of a pair are added exactly and
// rounded once, and the 16 pairs of one instruction are combined in an
// order of the hardware's, not VDPBF16PS's one rounding a product (measured
// on a Xeon with AMX: most sums differ in their last bits). They are the
// same at any thread count (each sum's pairs go through the same
// instructions in the same order), within bf16's bound (tests/test_bf16.c),
// but they are not the portable path's bits: the README says which backends
// agree.
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"

#define KSLICE 256  // pairs of one packed block: 32 rows x 256 pairs x 4 bytes = 32 KiB

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) TileConfig;

// Tiles 0-3: sums (rows 0-15 and 16-31, lanes 0-15 and 16-31); 4, 5: the
// rows' pairs; 6, 7: the lanes' pairs. All 16 rows of 64 bytes.
static void configure(void) {
    TileConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    _tile_loadconfig(&cfg);
}

// Rows [i0, i0 + mr) of the product's left operand, pairs [k0, k0 + kl),
// into blk (32 rows of kpad pairs, zeros past mr rows and kl pairs).
static void pack_rows(const Bf16Gemm *g, int i0, int mr, size_t k0, int kl, int kpad, uint32_t *blk) {
    const int ks = g->ks;
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i steps = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)(2 * g->a_step)));  // bytes
    for (int i = 0; i < 32; i++) {
        uint32_t *dst = blk + (size_t)i * kpad;
        if (i >= mr) {
            memset(dst, 0, sizeof *dst * (size_t)kpad);
            continue;
        }
        const uint16_t *row = g->a + (g->a_rows ? g->a_rows[i0 + i] : (ptrdiff_t)(i0 + i) * g->a_row);
        int r = (int)(k0 / (size_t)ks), s = (int)(k0 % (size_t)ks), k = 0;
        while (k < kl) {
            const int run = ks - s < kl - k ? ks - s : kl - k;
            const uint16_t *p = row + g->a_outer[r] + (ptrdiff_t)s * g->a_step;
            if (g->a_step == 2)
                memcpy(dst + k, p, sizeof *dst * (size_t)run);
            else
                for (int q = 0; q < run; q += 16) {
                    const __mmask16 m = run - q >= 16 ? 0xffff : (__mmask16)((1u << (run - q)) - 1);
                    const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, steps,
                                                                  p + (ptrdiff_t)q * g->a_step, 1);
                    _mm512_mask_storeu_epi32(dst + k + q, m, v);
                }
            k += run, r++, s = 0;
        }
        memset(dst + kl, 0, sizeof *dst * (size_t)(kpad - kl));
    }
}

// Sums tile t (rows i, lanes j of the product) from c or init: straight
// where the whole tile lies in c, else through tmp.
static void load_sums(const Bf16Gemm *g, int from_init, int i, int j, float *tmp, int t) {
    const int rows = g->m - i < 16 ? g->m - i : 16, lanes = g->n - j < 16 ? g->n - j : 16;
    if (rows == 16 && lanes == 16) {
        if (from_init) {
            switch (t) {
            case 0: _tile_loadd(0, g->init + j, 0); break;
            case 1: _tile_loadd(1, g->init + j, 0); break;
            case 2: _tile_loadd(2, g->init + j, 0); break;
            default: _tile_loadd(3, g->init + j, 0); break;
            }
            return;
        }
        const float *c = g->c + (size_t)i * g->ldc + j;
        const size_t ld = g->ldc * sizeof(float);
        switch (t) {
        case 0: _tile_loadd(0, c, ld); break;
        case 1: _tile_loadd(1, c, ld); break;
        case 2: _tile_loadd(2, c, ld); break;
        default: _tile_loadd(3, c, ld); break;
        }
        return;
    }
    memset(tmp, 0, 256 * sizeof *tmp);
    for (int a = 0; a < rows; a++)
        for (int b = 0; b < lanes; b++)
            tmp[a * 16 + b] = from_init ? g->init[j + b] : g->c[(size_t)(i + a) * g->ldc + j + b];
    switch (t) {
    case 0: _tile_loadd(0, tmp, 64); break;
    case 1: _tile_loadd(1, tmp, 64); break;
    case 2: _tile_loadd(2, tmp, 64); break;
    default: _tile_loadd(3, tmp, 64); break;
    }
}

static void store_sums(const Bf16Gemm *g, int i, int j, float *tmp, int t) {
    const int rows = g->m - i < 16 ? g->m - i : 16, lanes = g->n - j < 16 ? g->n - j : 16;
    float *c = g->c + (size_t)i * g->ldc + j;
    if (rows == 16 && lanes == 16) {
        const size_t ld = g->ldc * sizeof(float);
        switch (t) {
        case 0: _tile_stored(0, c, ld); break;
        case 1: _tile_stored(1, c, ld); break;
        case 2: _tile_stored(2, c, ld); break;
        default: _tile_stored(3, c, ld); break;
        }
        return;
    }
    switch (t) {
    case 0: _tile_stored(0, tmp, 64); break;
    case 1: _tile_stored(1, tmp, 64); break;
    case 2: _tile_stored(2, tmp, 64); break;
    default: _tile_stored(3, tmp, 64); break;
    }
    for (int a = 0; a < rows; a++) memcpy(c + (size_t)a * g->ldc, tmp + a * 16, sizeof *tmp * (size_t)lanes);
}

void bf16_gemm_amx(const Bf16Gemm *g) {
    if (g->m <= 0 || g->n <= 0) return;
    configure();
    const size_t kp = (size_t)g->kr * g->ks;
    uint32_t blk[32 * KSLICE] __attribute__((aligned(64)));
    uint32_t tail[16 * BF16_LANES] __attribute__((aligned(64)));
    float tmp[256] __attribute__((aligned(64)));
    if (kp == 0) {  // no pairs: the sums' start values alone
        for (int i = 0; i < g->m; i++)
            for (int j = 0; j < g->n; j++) {
                float *c = g->c + (size_t)i * g->ldc + j;
                if (g->init) *c = g->init[j];
            }
        return;
    }
    for (size_t k0 = 0; k0 < kp; k0 += KSLICE) {
        const int kl = kp - k0 < KSLICE ? (int)(kp - k0) : KSLICE;
        const int nkt = (kl + 15) / 16, kpad = nkt * 16, ktail = kl % 16;
        const int from_init = k0 == 0 && g->init;
        for (int i0 = 0; i0 < g->m; i0 += 32) {
            const int mr = g->m - i0 < 32 ? g->m - i0 : 32;
            pack_rows(g, i0, mr, k0, kl, kpad, blk);
            for (int j0 = 0; j0 < g->n; j0 += BF16_LANES) {
                const int nv = g->n - j0 < BF16_LANES ? g->n - j0 : BF16_LANES;
                const uint32_t *panel = g->b + (size_t)(j0 / BF16_LANES) * kp * BF16_LANES + k0 * BF16_LANES;
                if (ktail) {
                    memcpy(tail, panel + (size_t)(nkt - 1) * 16 * BF16_LANES, sizeof *tail * ktail * BF16_LANES);
                    memset(tail + ktail * BF16_LANES, 0, sizeof *tail * (16 - ktail) * BF16_LANES);
                }
                const int two_rows = mr > 16, two_lanes = nv > 16;
                for (int t = 0; t < 4; t++)
                    if ((t < 2 || two_rows) && (t % 2 == 0 || two_lanes))
                        load_sums(g, from_init, i0 + t / 2 * 16, j0 + t % 2 * 16, tmp, t);
                for (int kt = 0; kt < nkt; kt++) {
                    const uint32_t *bp = ktail && kt == nkt - 1 ? tail : panel + (size_t)kt * 16 * BF16_LANES;
                    const size_t ldb = BF16_LANES * sizeof(uint32_t), lda = (size_t)kpad * sizeof(uint32_t);
                    _tile_loadd(4, blk + kt * 16, lda);
                    _tile_loadd(6, bp, ldb);
                    _tile_dpbf16ps(0, 4, 6);
                    if (two_lanes) {
                        _tile_loadd(7, bp + 16, ldb);
                        _tile_dpbf16ps(1, 4, 7);
                    }
                    if (two_rows) {
                        _tile_loadd(5, blk + (size_t)16 * kpad + kt * 16, lda);
                        _tile_dpbf16ps(2, 5, 6);
                        if (two_lanes) _tile_dpbf16ps(3, 5, 7);
                    }
                }
                for (int t = 0; t < 4; t++)
                    if ((t < 2 || two_rows) && (t % 2 == 0 || two_lanes))
                        store_sums(g, i0 + t / 2 * 16, j0 + t % 2 * 16, tmp, t);
            }
        }
    }
}
