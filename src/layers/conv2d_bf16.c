// Convolution in bf16 mixed precision, portable C: inputs, weights and
// output gradients rounded to bf16, products summed in fp32 by bf16_step,
// in the order a VDPBF16PS kernel sums them (the contract below), so that
// such a kernel and this code give the same bits. Parallel over the fixed
// batch chunks, as every path: the same bits at any thread count.
//
// The order of the sums (every kernel of this precision keeps it):
//  - forward, y[oc,oh,ow]: from the bias, the taps (kh, kw) in order, and
//    in each the input channels in pairs (0,1), (2,3), ...: channel 2j+1's
//    product first, then 2j's (VDPBF16PS's order); an odd count's last
//    channel alone;
//  - input gradient, dx[c,ih,iw]: from 0, the taps (kh, kw) that reach
//    (ih, iw) in order, and in each the output channels in pairs likewise;
//  - weight gradient, dw[oc,c,kh,kw]: from 0 in each batch chunk, its
//    images in order, in each the output pixels (oh*OW + ow) in pairs
//    likewise, then the chunks' fixed tree in fp32 (batch_sum);
//  - the bias gradient is fp32 (conv2d_bias_grad).
// A tap outside the image adds a zero product and is skipped: results can
// differ from a kernel that adds it only in the sign of a zero.
#include <string.h>

#include "layers/layer.h"

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

// One image (C,H,W) rounded into (H,W,C): a pixel's channels side by side.
static void round_hwc(const float *x, int C, int HW, float *xr) {
    for (int c = 0; c < C; c++)
        for (int p = 0; p < HW; p++) xr[(size_t)p * C + c] = bf16_round(x[(size_t)c * HW + p]);
}

size_t conv2d_bf16_scratch_size(const Conv2d *l) {
    const size_t in = (size_t)l->C * l->H * l->W, out = (size_t)l->OC * l->OH * l->OW;
    return round16(in) + round16(out) + round16((size_t)l->OC) + round16((size_t)l->C);
}

size_t conv2d_bf16_packed_size(const Conv2d *l) { return (size_t)l->OC * l->C * l->KH * l->KW; }

// ---------------------------------------------------------------- forward
void conv2d_bf16_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws) {
    // x (B,C,H,W), w (OC,C,KH,KW), b (OC), y (B,OC,OH,OW)
    const int C = l->C, OC = l->OC, KH = l->KH, KW = l->KW;
    const size_t in_size = (size_t)C * l->H * l->W, taps = (size_t)KH * KW;
    CNN_ASSERT(conv2d_bf16_packed_size(l) <= ws->packed_size && conv2d_bf16_scratch_size(l) <= ws->col_size);
    // The weights rounded, as (KH,KW,C,OC): a tap's channel row of OC
    // weights side by side.
    float *wt = ws->packed;
    for (int oc = 0; oc < OC; oc++)
        for (int c = 0; c < C; c++)
            for (size_t t = 0; t < taps; t++)
                wt[(t * C + c) * OC + oc] = bf16_round(l->w[((size_t)oc * C + c) * taps + t]);
    const int nchunks = ws_chunks(ws, B);
#pragma omp parallel for schedule(dynamic) if ((size_t)B * OC * C * taps * l->OH * l->OW >= CNN_PAR_MIN_WORK)
    for (int ch = 0; ch < nchunks; ch++) {
        float *xr = ws->col + (size_t)ch * ws->col_size;
        float *acc = xr + round16(in_size) + round16((size_t)OC * l->OH * l->OW);
        for (int i = ws_chunk_begin(ws, B, ch); i < ws_chunk_begin(ws, B, ch + 1); i++) {
            round_hwc(x + (size_t)i * in_size, C, l->H * l->W, xr);
            float *yi = conv2d_image_out(l, y, i, ws, ch);
            for (int oh = 0; oh < l->OH; oh++)
                for (int ow = 0; ow < l->OW; ow++) {
                    // DAZ on the bias, and +0 for -0 (see the contract's zeros)
                    for (int oc = 0; oc < OC; oc++) acc[oc] = l->has_bias ? bf16_step(l->b[oc], 0.0f, 0.0f) + 0.0f : 0.0f;
                    for (int kh = 0; kh < KH; kh++) {
                        const int ih = oh * l->S - l->P + kh;
                        if (ih < 0 || ih >= l->H) continue;
                        for (int kw = 0; kw < KW; kw++) {
                            const int iw = ow * l->S - l->P + kw;
                            if (iw < 0 || iw >= l->W) continue;
                            bf16_pair_steps(acc, xr + ((size_t)ih * l->W + iw) * C, wt + ((size_t)kh * KW + kw) * C * OC,
                                       (size_t)OC, C, OC);
                        }
                    }
                    const size_t p = (size_t)oh * l->OW + ow, plane = (size_t)l->OH * l->OW;
                    for (int oc = 0; oc < OC; oc++) yi[(size_t)oc * plane + p] = acc[oc];
                }
            conv2d_image_done(l, yi, i);
        }
    }
}

// ---------------------------------------------------------------- backward
// One image's weight gradient into acc (KH,KW,C,OC), pixel pairs in order
// (p+1 first; a pixel whose tap falls outside the image is skipped).
static void weight_grad_image(const Conv2d *l, const float *xr, const float *dyr, float *acc) {
    const int C = l->C, OC = l->OC, N = l->OH * l->OW;
    for (int kh = 0; kh < l->KH; kh++)
        for (int kw = 0; kw < l->KW; kw++) {
            float *a = acc + ((size_t)kh * l->KW + kw) * C * OC;
            for (int q = 0; q < N; q++) {
                // 1, 0, 3, 2, ...: the odd pixel of each pair first; an odd
                // count's last pixel alone
                const int pix = (q ^ 1) < N ? q ^ 1 : q;
                const int ih = (pix / l->OW) * l->S - l->P + kh, iw = (pix % l->OW) * l->S - l->P + kw;
                if (ih < 0 || ih >= l->H || iw < 0 || iw >= l->W) continue;
                const float *xv = xr + ((size_t)ih * l->W + iw) * C, *d = dyr + (size_t)pix * OC;
                for (int c = 0; c < C; c++) bf16_axpy_steps(a + (size_t)c * OC, d, xv[c], OC);
            }
        }
}

// One image's input gradient: every (ih, iw) from the taps that reach it.
static void input_grad_image(const Conv2d *l, const float *dyr, const float *wd, float *acc, float *dxi) {
    const int C = l->C, OC = l->OC;
    const size_t plane = (size_t)l->H * l->W;
    for (int ih = 0; ih < l->H; ih++)
        for (int iw = 0; iw < l->W; iw++) {
            for (int c = 0; c < C; c++) acc[c] = 0.0f;
            for (int kh = 0; kh < l->KH; kh++) {
                const int th = ih + l->P - kh;
                if (th < 0 || th % l->S || th / l->S >= l->OH) continue;
                for (int kw = 0; kw < l->KW; kw++) {
                    const int tw = iw + l->P - kw;
                    if (tw < 0 || tw % l->S || tw / l->S >= l->OW) continue;
                    const size_t q = (size_t)(th / l->S) * l->OW + (size_t)(tw / l->S);
                    bf16_pair_steps(acc, dyr + q * OC, wd + ((size_t)kh * l->KW + kw) * OC * C, (size_t)C, OC, C);
                }
            }
            for (int c = 0; c < C; c++) dxi[(size_t)c * plane + (size_t)ih * l->W + iw] = acc[c];
        }
}

void conv2d_bf16_backward(const Conv2d *l, const float *x, const float *dy, float *dx, int B, Workspace *ws) {
    // x (B,C,H,W), dy (B,OC,OH,OW), dx (B,C,H,W) or NULL; dw (OC,C,KH,KW) +=, db (OC) +=
    const int C = l->C, OC = l->OC, N = l->OH * l->OW;
    const size_t in_size = (size_t)C * l->H * l->W, taps = (size_t)l->KH * l->KW;
    const size_t nw = (size_t)OC * C * taps, stride = ws->partial_size;
    CNN_ASSERT(nw + (size_t)OC <= stride && conv2d_bf16_packed_size(l) <= ws->packed_size &&
               conv2d_bf16_scratch_size(l) <= ws->col_size);
    // The weights rounded, as (KH,KW,OC,C): a tap's output-channel row of
    // C weights side by side.
    float *wd = ws->packed;
    for (int oc = 0; oc < OC; oc++)
        for (int c = 0; c < C; c++)
            for (size_t t = 0; t < taps; t++)
                wd[(t * OC + oc) * C + c] = bf16_round(l->w[((size_t)oc * C + c) * taps + t]);
    const int nchunks = ws_chunks(ws, B);
#pragma omp parallel for schedule(dynamic) if ((size_t)B * OC * C * taps * N >= CNN_PAR_MIN_WORK)
    for (int ch = 0; ch < nchunks; ch++) {
        float *xr = ws->col + (size_t)ch * ws->col_size;
        float *dyr = xr + round16(in_size);
        float *acc = dyr + round16((size_t)OC * N) + round16((size_t)OC);
        float *pdw = ws->partial + (size_t)ch * stride, *pdb = pdw + nw;
        memset(pdw, 0, sizeof(float) * (nw + (size_t)OC));
        for (int i = ws_chunk_begin(ws, B, ch); i < ws_chunk_begin(ws, B, ch + 1); i++) {
            const float *dyi = conv2d_image_dy(l, dy, i, ws, ch);
            round_hwc(x + (size_t)i * in_size, C, l->H * l->W, xr);
            round_hwc(dyi, OC, N, dyr);
            weight_grad_image(l, xr, dyr, pdw);
            if (l->has_bias) conv2d_bias_grad(dyi, OC, (size_t)N, pdb);
            if (dx) input_grad_image(l, dyr, wd, acc, dx + (size_t)i * in_size);
        }
    }
    batch_sum(ws, ws->partial, stride, nchunks, nw + (l->has_bias ? (size_t)OC : 0));
    // The sum is (KH,KW,C,OC); dw is (OC,C,KH,KW).
    const float *s = ws->partial;
    for (int oc = 0; oc < OC; oc++)
        for (int c = 0; c < C; c++)
            for (size_t t = 0; t < taps; t++) l->dw[((size_t)oc * C + c) * taps + t] += s[(t * C + c) * OC + oc];
    if (l->has_bias) add_floats(l->db, ws->partial + nw, (size_t)OC);
}
