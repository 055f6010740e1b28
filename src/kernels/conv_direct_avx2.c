// Direct convolution on 8-channel blocks with AVX2 + FMA (see BlockedConv in
// kernels.h). Forward: a tile of up to 6 output pixels x 2 output blocks (12
// accumulators); per input channel it loads 2 weight vectors and broadcasts
// 6 input values, so the FMA units, not the loads, set the pace. The same
// kernel computes the input gradient on the flipped, transposed kernel.
// Weight gradient: one kernel tap at a time, 4 input x 16 output channels
// (8 accumulators), summed over the images and output pixels in order
// without leaving the registers.
// Compiled with -mavx2 -mfma alone; called only where the CPU has both.
#include <immintrin.h>
#include <string.h>

#include "kernels/avx2_lanes.h"

#include "internal.h"

#define TILE_W 6

// One input block's taps for a tile of RW pixels x NB output blocks. The
// accumulators start from the bias (first block) or from the partial sums
// this tile stored for the previous block: the sums run in the same order
// (cb, kh, kw, i) as if they had stayed in registers, while one block's
// weights (2 x 9 x 64 floats for 3x3) stay in L1 for a whole row of tiles.
static inline __attribute__((always_inline)) void fwd_tile(int RW, int NB, int S,
                                                           const BlockedConv *g, const float *x,
                                                           const float *w, size_t wblock,
                                                           const float *bias, int first, float *y) {
    // S is 1 (a constant: every broadcast is base + displacement) or g->S.
    const size_t yblock = (size_t)g->OH * g->OW * 8, xs = (size_t)S * 8;
    // Every loop over accumulators is unrolled, so that they live in registers.
    __m256 acc[2][TILE_W];
#pragma GCC unroll 2
    for (int b = 0; b < NB; b++) {
        const __m256 init = bias ? _mm256_loadu_ps(bias + 8 * b) : _mm256_setzero_ps();
#pragma GCC unroll 6
        for (int p = 0; p < RW; p++)
            acc[b][p] = first ? init : _mm256_loadu_ps(y + b * yblock + (size_t)p * 8);
    }
    for (int kh = 0; kh < g->KH; kh++)
        for (int kw = 0; kw < g->KW; kw++) {
            const float *xr = x + ((size_t)kh * g->Wp + kw) * 8;
            const float *wk = w + ((size_t)kh * g->KW + kw) * 64;
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                const __m256 w0 = _mm256_loadu_ps(wk + i * 8);
                const __m256 w1 = NB > 1 ? _mm256_loadu_ps(wk + wblock + i * 8) : w0;
#pragma GCC unroll 6
                for (int p = 0; p < RW; p++) {
                    const __m256 xv = _mm256_broadcast_ss(xr + p * xs + i);
                    acc[0][p] = _mm256_fmadd_ps(xv, w0, acc[0][p]);
                    if (NB > 1) acc[1][p] = _mm256_fmadd_ps(xv, w1, acc[1][p]);
                }
            }
        }
#pragma GCC unroll 2
    for (int b = 0; b < NB; b++)
#pragma GCC unroll 6
        for (int p = 0; p < RW; p++) _mm256_storeu_ps(y + b * yblock + (size_t)p * 8, acc[b][p]);
}

// The tile for a run-time width, block count and stride, each instance
// unrolled.
static void fwd_tile_any(int rw, int nb, const BlockedConv *g, const float *x, const float *w,
                         size_t wblock, const float *bias, int first, float *y) {
#define CASE(R)                                                                    \
    case R:                                                                        \
        if (g->S == 1 && nb == 2) fwd_tile(R, 2, 1, g, x, w, wblock, bias, first, y);      \
        else if (g->S == 1) fwd_tile(R, 1, 1, g, x, w, wblock, bias, first, y);            \
        else if (nb == 2) fwd_tile(R, 2, g->S, g, x, w, wblock, bias, first, y);           \
        else fwd_tile(R, 1, g->S, g, x, w, wblock, bias, first, y);                        \
        break;
    switch (rw) {
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
    }
#undef CASE
}

void conv_fwd_blocked_avx2(const BlockedConv *g, const float *x, const float *w, const float *bias,
                          float *y) {
    const size_t yblock = (size_t)g->OH * g->OW * 8, xblock = (size_t)g->Hp * g->Wp * 8;
    const size_t taps = (size_t)g->KH * g->KW * 64, wblock = (size_t)g->CB * taps;
    // Tiles of equal width (+-1): a row of 8 is 4 + 4, not 6 + 2, so that
    // each tile has enough accumulators to hide the FMA latency.
    const int ntiles = (g->OW + TILE_W - 1) / TILE_W;
    // Output blocks outermost: a pair's weights (2 x CB x 9 x 64 floats for
    // 3x3) stay in L2 while the image streams past them once per pair; rows
    // outermost instead would stream every weight once per row, several times
    // the traffic on every layer of vgg8bn and tfcnn.
    // The call's images run inside each pair, so that its weights are read
    // once per call rather than once per image (the caller passes as many
    // images as fit in cache together).
    const int N = g->N > 0 ? g->N : 1;
    for (int ob = 0; ob < g->OCB; ob += 2)
        for (int n = 0; n < N; n++)
            for (int oh = 0; oh < g->OH; oh++) {
                const int nb = g->OCB - ob >= 2 ? 2 : 1;
                const float *bb = bias ? bias + 8 * ob : NULL;
                float *yr = y + n * g->y_image + ob * yblock + (size_t)oh * g->OW * 8;
                for (int cb = 0; cb < g->CB; cb++) {
                    const float *xr = x + n * g->x_image + cb * xblock + (size_t)oh * g->S * g->Wp * 8;
                    const float *wb = w + ob * wblock + cb * taps;
                    for (int t = 0; t < ntiles; t++) {
                        const int ow = t * g->OW / ntiles, rw = (t + 1) * g->OW / ntiles - ow;
                        fwd_tile_any(rw, nb, g, xr + (size_t)ow * g->S * 8, wb, wblock, bb, cb == 0,
                                     yr + (size_t)ow * 8);
                    }
                }
            }
}

// One tap's weight gradient for NI input channels (from i0) of one input
// block and NB output blocks: NB x NI accumulators (3 x 4, 2 x 4 or 1 x 8),
// each summed over the output pixels in order, so the order of every sum is
// the same for any shape. Per pixel: NB dy loads and NI broadcasts for
// NB x NI FMAs (7 loads for 12 FMAs with three blocks, 6 for 8 with two).
static inline __attribute__((always_inline)) void wgrad_tile(int NB, int NI, int S,
                                                             const BlockedConv *g, const float *x,
                                                             const float *dy, size_t dy_row,
                                                             size_t dy_block, int i0,
                                                             int accumulate, float *d,
                                                             size_t d_block) {
    const size_t xs = (size_t)S * 8;
    __m256 acc[3][8];
#pragma GCC unroll 3
    for (int b = 0; b < NB; b++)
#pragma GCC unroll 8
        for (int i = 0; i < NI; i++)
            acc[b][i] = accumulate ? _mm256_loadu_ps(d + b * d_block + (size_t)(i0 + i) * 8)
                                   : _mm256_setzero_ps();
    const int N = g->N > 0 ? g->N : 1;
    for (int n = 0; n < N; n++)
        for (int oh = 0; oh < g->OH; oh++) {
            const float *xr = x + n * g->x_image + (size_t)oh * S * g->Wp * 8 + i0;
            const float *dr = dy + n * g->y_image + oh * dy_row;
            for (int ow = 0; ow < g->OW; ow++) {
                __m256 dv[3];
#pragma GCC unroll 3
                for (int b = 0; b < NB; b++) dv[b] = _mm256_loadu_ps(dr + b * dy_block + (size_t)ow * 8);
                const float *xp = xr + ow * xs;
#pragma GCC unroll 8
                for (int i = 0; i < NI; i++) {
                    const __m256 xv = _mm256_broadcast_ss(xp + i);
#pragma GCC unroll 3
                    for (int b = 0; b < NB; b++) acc[b][i] = _mm256_fmadd_ps(xv, dv[b], acc[b][i]);
                }
            }
        }
#pragma GCC unroll 3
    for (int b = 0; b < NB; b++)
#pragma GCC unroll 8
        for (int i = 0; i < NI; i++) _mm256_storeu_ps(d + b * d_block + (size_t)(i0 + i) * 8, acc[b][i]);
}

// Output blocks three at a time, then two (4 = 2 + 2): a block alone, with
// 8 input channels, only where the layer has one block.
static inline __attribute__((always_inline)) void wgrad_taps(int S, const BlockedConv *g,
                                                             const float *x, const float *dy,
                                                             size_t dy_row, size_t dy_block,
                                                             int accumulate, float *dw) {
    const size_t xblock = (size_t)g->Hp * g->Wp * 8;
    const size_t d_block = (size_t)g->CB * g->KH * g->KW * 64;  // dw floats per output block
    for (int ob = 0; ob < g->OCB;) {
        const int left = g->OCB - ob, nb = left == 4 || left == 2 ? 2 : left >= 3 ? 3 : 1;
        for (int cb = 0; cb < g->CB; cb++)
            for (int kh = 0; kh < g->KH; kh++)
                for (int kw = 0; kw < g->KW; kw++) {
                    const float *xt = x + cb * xblock + ((size_t)kh * g->Wp + kw) * 8;
                    const float *dyb = dy + ob * dy_block;
                    float *d = dw + ((((size_t)ob * g->CB + cb) * g->KH + kh) * g->KW + kw) * 64;
                    if (nb == 3) {
                        wgrad_tile(3, 4, S, g, xt, dyb, dy_row, dy_block, 0, accumulate, d, d_block);
                        wgrad_tile(3, 4, S, g, xt, dyb, dy_row, dy_block, 4, accumulate, d, d_block);
                    } else if (nb == 2) {
                        wgrad_tile(2, 4, S, g, xt, dyb, dy_row, dy_block, 0, accumulate, d, d_block);
                        wgrad_tile(2, 4, S, g, xt, dyb, dy_row, dy_block, 4, accumulate, d, d_block);
                    } else {
                        wgrad_tile(1, 8, S, g, xt, dyb, dy_row, dy_block, 0, accumulate, d, d_block);
                    }
                }
        ob += nb;
    }
}

void conv_wgrad_blocked_avx2(const BlockedConv *g, const float *x, const float *dy, size_t dy_row,
                             size_t dy_block, int accumulate, float *dw) {
    if (g->S == 1) wgrad_taps(1, g, x, dy, dy_row, dy_block, accumulate, dw);
    else wgrad_taps(g->S, g, x, dy, dy_row, dy_block, accumulate, dw);
}

// ---------------------------------------------------------------- layouts
void block_pad_avx2(const float *x, int C, int H, int W, int PH, int PW, float *xb) {
    const int Hp = H + 2 * PH, Wp = W + 2 * PW;
    const size_t plane = (size_t)H * W;
    for (int cb = 0; cb < C / 8; cb++) {
        float *blk = xb + (size_t)cb * Hp * Wp * 8;
        const float *src = x + (size_t)cb * 8 * plane;
        // Only the halo needs zeros: top and bottom rows, then each row's ends.
        memset(blk, 0, sizeof(float) * (size_t)PH * Wp * 8);
        memset(blk + (size_t)(PH + H) * Wp * 8, 0, sizeof(float) * (size_t)PH * Wp * 8);
        for (int h = 0; h < H; h++) {
            float *row = blk + (size_t)(h + PH) * Wp * 8;
            memset(row, 0, sizeof(float) * (size_t)PW * 8);
            memset(row + (size_t)(PW + W) * 8, 0, sizeof(float) * (size_t)PW * 8);
            row += (size_t)PW * 8;
            const float *s = src + (size_t)h * W;
            int w = 0;
            for (; w + 8 <= W; w += 8) {
                __m256 r[8];
                for (int c = 0; c < 8; c++) r[c] = _mm256_loadu_ps(s + c * plane + w);
                transpose8(r);
                for (int k = 0; k < 8; k++) _mm256_storeu_ps(row + (size_t)(w + k) * 8, r[k]);
            }
            for (; w < W; w++)
                for (int c = 0; c < 8; c++) row[(size_t)w * 8 + c] = s[c * plane + w];
        }
    }
}

void unblock_avx2(const float *yb, int C, int H, int W, float *y) {
    const size_t plane = (size_t)H * W;
    for (int cb = 0; cb < C / 8; cb++) {
        const float *blk = yb + (size_t)cb * plane * 8;
        float *dst = y + (size_t)cb * 8 * plane;
        size_t p = 0;
        for (; p + 8 <= plane; p += 8) {
            __m256 r[8];
            for (int k = 0; k < 8; k++) r[k] = _mm256_loadu_ps(blk + (p + k) * 8);
            transpose8(r);
            for (int c = 0; c < 8; c++) _mm256_storeu_ps(dst + c * plane + p, r[c]);
        }
        for (; p < plane; p++)
            for (int c = 0; c < 8; c++) dst[c * plane + p] = blk[p * 8 + c];
    }
}
