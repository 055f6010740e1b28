#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "fma_peak.h"

// The AMX-BF16 peak: TDPBF16PS into four 16 x 16 fp32 tiles from two row
// tiles and two lane tiles (the product kernel's 32 x 32 block, without its
// loads), each instruction 16 x 16 lanes x 32 products x 2 FLOPs. The
// process must hold the tile permission (cpu_features() asks for it).
double amx_burn(long iters) {
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } __attribute__((packed)) cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    _tile_loadconfig(&cfg);
    uint16_t ops[16 * 32] __attribute__((aligned(64)));
    for (int i = 0; i < 16 * 32; i++) ops[i] = 0x3400;  // bf16 1/64: sums stay finite
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, ops, 64); _tile_loadd(5, ops, 64); _tile_loadd(6, ops, 64); _tile_loadd(7, ops, 64);
    for (long i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float out[256] __attribute__((aligned(64)));
    _tile_stored(0, out, 64);
    volatile float sink = out[0];  // keeps the loop alive
    (void)sink;
    return 4.0 * 16 * 16 * 32 * 2 * (double)iters;
}
