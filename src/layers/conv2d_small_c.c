// Direct convolution of layers with few input channels (a network's first:
// 1 or 3) and stride 1, where the backend has the kernels
// (conv_small_c_fwd/_wgrad): each image is copied into a zero-padded plane
// wide enough for whole vectors, and the kernels read it in place, where
// im2col + small-K GEMMs built a KH x KW times larger matrix first. The
// input gradient, where a layer needs one, stays on im2col + GEMM
// (conv2d.c).
#include <string.h>

#include "layers/layer.h"

#define SMALL_C_MAX 4      // input channels: beyond, im2col's K is large enough for its GEMMs
#define SMALL_C_TAPS_MIN 16  // C KH KW: below, a tile's set-up and stores cost as much as its FMAs

// Measured on the AMD EPYC (Zen 3) of tools/PERF.md against im2col + small-K
// GEMMs, 2 threads: lenet's 1 -> 6 channels 5x5 (25 taps) forward 3.3x and
// weight gradient 2x faster; tfcnn's 3 -> 32 3x3 (27 taps) the same speed;
// tfcnn's 1 -> 32 3x3 on MNIST (9 taps) forward 0.5x, so it keeps im2col.
int conv2d_small_c_applies(const Conv2d *l) {
    const Kernels *k = kernels();
    const int taps = l->C * l->KH * l->KW;
    return k->conv_small_c_fwd && k->conv_small_c_wgrad && l->S == 1 && l->C <= SMALL_C_MAX &&
           taps >= SMALL_C_TAPS_MIN && taps <= CNN_SMALL_C_TAPS_MAX;
}

static int round16(int n) { return (n + 15) & ~15; }

size_t conv2d_small_c_scratch_size(const Conv2d *l) {
    return (size_t)l->C * (l->OH + l->KH - 1) * (round16(l->OW) + l->KW - 1) + 8;
}

// x (C,H,W) into xp (C, OH + KH - 1, round16(OW) + KW - 1), zeros around.
static void pad_image(const Conv2d *l, const float *x, float *xp) {
    const int Hp = l->OH + l->KH - 1, Wp = round16(l->OW) + l->KW - 1;
    memset(xp, 0, sizeof(float) * conv2d_small_c_scratch_size(l));
    for (int c = 0; c < l->C; c++)
        for (int h = 0; h < l->H; h++)
            memcpy(xp + ((size_t)c * Hp + h + l->P) * Wp + l->P, x + ((size_t)c * l->H + h) * l->W,
                   sizeof(float) * l->W);
}

void conv2d_small_c_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws) {
    const Kernels *k = kernels();
    const size_t in_size = (size_t)l->C * l->H * l->W, out_size = (size_t)l->OC * l->OH * l->OW;
    const int nchunks = ws_chunks(ws, B);
    const int pool2 = l->pooled && l->pool->K == 2 && l->pool->S == 2 && k->conv_small_c_fwd_pool2;
    CNN_ASSERT(conv2d_small_c_scratch_size(l) <= ws->col_size);
#pragma omp parallel for schedule(dynamic) if ((size_t)B * out_size * l->C * l->KH * l->KW >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        float *xp = ws->col + (size_t)c * ws->col_size;
        for (int i = ws_chunk_begin(ws, B, c); i < ws_chunk_begin(ws, B, c + 1); i++) {
            pad_image(l, x + (size_t)i * in_size, xp);
            if (pool2) {  // the fused 2x2 pool in the kernel's registers: no full-size output at all
                const size_t at = (size_t)i * l->pool->C * l->pool->OH * l->pool->OW;
                k->conv_small_c_fwd_pool2(xp, l->C, l->KH, l->KW, l->w, l->has_bias ? l->b : NULL, l->OC, l->OH,
                                          l->OW, l->relu, l->pool_out + at, l->pool->argmax + at);
                continue;
            }
            float *yi = conv2d_image_out(l, y, i, ws, c);
            k->conv_small_c_fwd(xp, l->C, l->KH, l->KW, l->w, l->has_bias ? l->b : NULL, l->OC, l->OH, l->OW, yi);
            conv2d_image_done(l, yi, i);
        }
    }
}

void conv2d_small_c_weight_grad(const Conv2d *l, const float *xi, const float *dyi, float *scratch, int first,
                                float *dw) {
    if (first) memset(dw, 0, sizeof(float) * l->OC * l->C * l->KH * l->KW);
    pad_image(l, xi, scratch);
    kernels()->conv_small_c_wgrad(scratch, l->C, l->KH, l->KW, dyi, l->OC, l->OH, l->OW, dw);
}
