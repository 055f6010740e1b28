// Convolution in bf16 mixed precision: inputs, weights and output gradients
// rounded to bf16, products summed in fp32 as VDPBF16PS sums them, through
// the backend's bf16 product (bf16_gemm; the portable build gives the
// instruction's bits). Each pass is one such product per image, its operands
// laid out so that the product reads them where they lie:
//  - forward: rows are output pixels, lanes output channels. The input is
//    rounded into planes of channel pairs, zero-padded and split into
//    S x S phases (stride S), so that a tap's inputs for consecutive output
//    pixels are consecutive; the product's rows are the output pixels alone
//    (an offset each: a plane row holds Ws >= OW pixels, the taps' reach);
//  - input gradient: rows are input pixels, lanes input channels, the output
//    gradient's channel pairs dilated by the stride and padded (a stride-2
//    layer multiplies zeros three times in four);
//  - weight gradient: rows are (tap, input channel), lanes output channels,
//    the pairs two neighbouring output pixels of one row.
// Parallel over the fixed batch chunks, as every path: the same bits at any
// thread count.
//
// The order of the sums (every backend keeps it; tests/test_bf16.c holds a
// naive twin):
//  - forward, y[oc,oh,ow]: from the bias, the taps (kh, kw) in order, and
//    in each the input channels in pairs (0,1), (2,3), ...: channel 2j+1's
//    product first, then 2j's (VDPBF16PS's order); an odd count's last
//    channel alone;
//  - input gradient, dx[c,ih,iw]: from 0, the taps (kh, kw) that reach
//    (ih, iw) in order, and in each the output channels in pairs likewise;
//  - weight gradient, dw[oc,c,kh,kw]: from 0 in each batch chunk, its
//    images in order, in each the output rows in order, in each the pixels
//    in pairs (0,1), (2,3), ... likewise, an odd width's last alone; then the
//    chunks' fixed tree in fp32 (batch_sum);
//  - the bias gradient is fp32 (conv2d_bias_grad).
// A tap outside the image adds a zero product (the twin skips it): the two
// can differ only in the sign of a zero.
#include <string.h>

#include "layers/layer.h"

static size_t r16(size_t n) { return (n + 15) & ~(size_t)15; }
static size_t panels(int n) { return (size_t)(n + BF16_LANES - 1) / BF16_LANES; }
static int imax(int a, int b) { return a > b ? a : b; }

typedef struct {
    int S, taps, Cp2, OCp2;
    int Hs, Ws;     // a phase plane of the padded input, plus a row of slack
    size_t xplane;  // its elements, (Hs + 1) Ws
    int Hz, Wz;     // the output gradient dilated and padded, plus a row of slack
    size_t zplane;
    int Mf, Md;     // rows of the forward and input-gradient products
    int PW;         // pixel pairs in an output row
    int G;          // images of one weight-gradient product
} Geo;

static Geo geo(const Conv2d *l) {
    Geo g = {.S = l->S, .taps = l->KH * l->KW, .Cp2 = (l->C + 1) / 2, .OCp2 = (l->OC + 1) / 2};
    g.Hs = (l->H + 2 * l->P + g.S - 1) / g.S;
    g.Ws = (l->W + 2 * l->P + g.S - 1) / g.S;
    g.xplane = (size_t)(g.Hs + 1) * g.Ws;
    g.Hz = l->H + l->KH - 1;
    g.Wz = l->W + l->KW - 1;
    g.zplane = (size_t)(g.Hz + 1) * g.Wz;
    g.Mf = l->OH * l->OW;
    g.Md = l->H * l->W;
    g.PW = (l->OW + 1) / 2;
    // Small planes: several images' pairs a product, so that each pass over
    // the sums (C x OC floats a tap) takes 96 pairs or more (7x7 planes ran
    // their weight gradient at 41% of the peak one image a product).
    const int pairs = l->OH * g.PW;
    g.G = (96 + pairs - 1) / pairs;
    if (g.G > 16) g.G = 16;
    return g;
}

// Floats of each part of a chunk's scratch.
static size_t fwd_x_size(const Conv2d *l, const Geo *g) {
    (void)l;
    return r16((size_t)g->S * g->S * g->Cp2 * g->xplane);
}
static size_t fwd_out_size(const Conv2d *l, const Geo *g) { return r16((size_t)g->Mf * l->OC); }
// An image (or an output gradient) converted to bf16 whole, before packing.
static size_t u16_size(size_t n) { return r16((n + 1) / 2); }
static size_t in_u16_size(const Conv2d *l) { return u16_size((size_t)l->C * l->H * l->W); }
static size_t dy_u16_size(const Conv2d *l) { return u16_size((size_t)l->OC * l->OH * l->OW); }
// An image's phase planes in the weight gradient's product (16-bit units).
static size_t bwd_x_image(const Conv2d *l, const Geo *g) {
    return 2 * r16(((size_t)g->S * g->S * l->C * g->xplane + 1) / 2);
}
static size_t bwd_x_size(const Conv2d *l, const Geo *g) { return (size_t)g->G * bwd_x_image(l, g) / 2; }
static size_t bwd_dy_size(const Conv2d *l, const Geo *g) {
    return r16(panels(l->OC) * g->G * l->OH * g->PW * BF16_LANES);
}
static size_t bwd_z_size(const Conv2d *l, const Geo *g) {
    (void)l;
    return r16((size_t)g->OCp2 * g->zplane);
}
static size_t bwd_out_size(const Conv2d *l, const Geo *g) {
    return r16((size_t)g->Md * l->C) + r16((size_t)imax(l->C, l->OC));
}
static size_t outer_size(const Conv2d *l, const Geo *g) {
    return r16(2 * (size_t)imax(g->taps, g->G * l->OH) * sizeof(ptrdiff_t) / sizeof(float));
}

static size_t rows_size(const Conv2d *l, const Geo *g) {
    return r16(2 * (size_t)g->taps * l->C * sizeof(ptrdiff_t) / sizeof(float));
}
// The forward's and the input gradient's row offsets: one per pixel computed.
static size_t pixel_rows_size(const Conv2d *l) {
    return r16((size_t)imax(l->OH * l->OW, l->H * l->W) * sizeof(ptrdiff_t) / sizeof(float));
}
// Rows of a product that computes the h x w pixels of planes `width` wide:
// pixel (r, c) reads its pairs from 2 (r width + c) on, so that the columns
// past w, which the planes hold for the taps' reach, cost no products.
static void pixel_rows(int h, int w, int width, ptrdiff_t *rows) {
    for (int r = 0; r < h; r++)
        for (int c = 0; c < w; c++) rows[(size_t)r * w + c] = 2 * ((ptrdiff_t)r * width + c);
}

// The weight gradient's rows (t, c) as one product of every tap's rows
// where the channels are few (a tile's 12 rows span taps), else one product
// a tap (rows a plane apart: one base pointer).
static int wgrad_rows_flat(const Conv2d *l) { return l->C < 24; }

size_t conv2d_bf16_scratch_size(const Conv2d *l) {
    const Geo g = geo(l);
    const size_t fwd =
        fwd_x_size(l, &g) + fwd_out_size(l, &g) + outer_size(l, &g) + in_u16_size(l) + pixel_rows_size(l);
    const size_t bwd = bwd_x_size(l, &g) + bwd_dy_size(l, &g) + bwd_z_size(l, &g) + bwd_out_size(l, &g) +
                       outer_size(l, &g) + rows_size(l, &g) + in_u16_size(l) + dy_u16_size(l) +
                       pixel_rows_size(l);
    return fwd > bwd ? fwd : bwd;
}

static size_t fwd_w_size(const Conv2d *l, const Geo *g) { return r16(panels(l->OC) * g->taps * g->Cp2 * BF16_LANES); }
static size_t dx_w_size(const Conv2d *l, const Geo *g) { return r16(panels(l->C) * g->taps * g->OCp2 * BF16_LANES); }

size_t conv2d_bf16_packed_size(const Conv2d *l) {
    const Geo g = geo(l);
    const size_t w16 = u16_size((size_t)l->OC * l->C * g.taps);
    const size_t fwd = fwd_w_size(l, &g) + r16((size_t)l->OC), dx = dx_w_size(l, &g);
    return (fwd > dx ? fwd : dx) + w16;
}

// The weights in bf16 (w16: l->w converted), zero outside.
static uint32_t weight(const Conv2d *l, const uint16_t *w16, int oc, int c, int t) {
    return oc < l->OC && c < l->C ? w16[((size_t)oc * l->C + c) * l->KH * l->KW + t] : 0u;
}
static uint32_t pair16(uint32_t even, uint32_t odd) { return even | odd << 16; }

// l->w in bf16 at the end of the packed weights (packed_floats before it).
static const uint16_t *weights_u16(const Conv2d *l, float *packed, size_t packed_floats) {
    uint16_t *w16 = (uint16_t *)(packed + packed_floats);
    bf16_bits_array(l->w, w16, (size_t)l->OC * l->C * l->KH * l->KW);
    return w16;
}

// The padded input of one image (C,H,W) as S x S phase planes: element
// (r, c) of phase (a, b) is padded pixel (r S + a, c S + b). Pairs of
// channels or single ones. Columns [c0, c1) of a
// phase's row hold input pixels, the rest padding.
static void phase_columns(const Conv2d *l, const Geo *g, int b, int *c0, int *c1) {
    *c0 = 0;
    while (*c0 * g->S + b - l->P < 0) (*c0)++;
    *c1 = *c0;
    while (*c1 < g->Ws && *c1 * g->S + b - l->P < l->W) (*c1)++;
}

// x16: the image in bf16. pairs: 32-bit pairs of channels (2p, 2p + 1),
// else 16-bit single channels.
static void pack_x(const Conv2d *l, const Geo *g, const uint16_t *x, int pairs, void *dst) {
    const size_t hw = (size_t)l->H * l->W, esize = pairs ? sizeof(uint32_t) : sizeof(uint16_t);
    const int S = g->S, planes = pairs ? g->Cp2 : l->C;
    for (int a = 0; a < S; a++)
        for (int b = 0; b < S; b++) {
            int c0, c1;
            phase_columns(l, g, b, &c0, &c1);
            for (int p = 0; p < planes; p++) {
                char *plane = (char *)dst + ((size_t)(a * S + b) * planes + p) * g->xplane * esize;
                const uint16_t *x0 = x + (size_t)(pairs ? 2 * p : p) * hw, *x1 = x0 + hw;
                const int odd = pairs && 2 * p + 1 < l->C;
                for (int r = 0; r <= g->Hs; r++) {
                    const int ih = r * S + a - l->P;
                    char *row = plane + (size_t)r * g->Ws * esize;
                    memset(row, 0, g->Ws * esize);
                    if (ih < 0 || ih >= l->H) continue;
                    const uint16_t *s0 = x0 + (size_t)ih * l->W + (c0 * S + b - l->P), *s1 = x1 + (s0 - x0);
                    uint32_t *r32 = (uint32_t *)row + c0;
                    uint16_t *r16 = (uint16_t *)row + c0;
                    const int n = c1 - c0;
                    if (S == 1 && !pairs) memcpy(r16, s0, (size_t)n * sizeof *r16);
                    else if (S == 1 && odd)
                        for (int c = 0; c < n; c++) r32[c] = pair16(s0[c], s1[c]);
                    else if (odd)
                        for (int c = 0; c < n; c++) r32[c] = pair16(s0[c * S], s1[c * S]);
                    else if (pairs)
                        for (int c = 0; c < n; c++) r32[c] = s0[c * S];
                    else
                        for (int c = 0; c < n; c++) r16[c] = s0[c * S];
                }
            }
        }
}

// Where tap t's pairs start in the phase planes (16-bit units, pairs: 2 a pair).
static ptrdiff_t tap_offset(const Conv2d *l, const Geo *g, int t, int channels) {
    const int kh = t / l->KW, kw = t % l->KW;
    return (ptrdiff_t)((kh % g->S) * g->S + kw % g->S) * channels * (ptrdiff_t)g->xplane +
           (ptrdiff_t)(kh / g->S) * g->Ws + kw / g->S;
}

// n pixels of a product's output (n, ch) into their planes, plane floats
// apart: eight pixels at a time, so that reads and writes stay in L1.
static void unpack_rows(const float *out, int n, int ch, float *dst, size_t plane) {
    for (int q0 = 0; q0 < n; q0 += 8) {
        const int q1 = q0 + 8 < n ? q0 + 8 : n;
        for (int c = 0; c < ch; c++)
            for (int q = q0; q < q1; q++) dst[(size_t)c * plane + q] = out[(size_t)q * ch + c];
    }
}

// ---------------------------------------------------------------- forward
void conv2d_bf16_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws) {
    // x (B,C,H,W), w (OC,C,KH,KW), b (OC), y (B,OC,OH,OW)
    const Geo g = geo(l);
    const int OC = l->OC, N = l->OH * l->OW;
    const size_t in_size = (size_t)l->C * l->H * l->W, kp = (size_t)g.taps * g.Cp2;
    CNN_ASSERT(conv2d_bf16_packed_size(l) <= ws->packed_size && conv2d_bf16_scratch_size(l) <= ws->col_size);
    // Lanes: panels of 32 output channels, pair (t, cp) = channels 2cp, 2cp+1 of tap t.
    uint32_t *wb = (uint32_t *)ws->packed;
    float *bias = ws->packed + fwd_w_size(l, &g);
    const uint16_t *w16 = weights_u16(l, ws->packed, fwd_w_size(l, &g) + r16((size_t)OC));
#pragma omp parallel for schedule(static) if ((size_t)OC * kp >= CNN_PAR_MIN_WORK / 16)
    for (size_t oc = 0; oc < panels(OC) * BF16_LANES; oc++)
        for (int t = 0; t < g.taps; t++)
            for (int cp = 0; cp < g.Cp2; cp++)
                wb[((oc / BF16_LANES) * kp + (size_t)t * g.Cp2 + cp) * BF16_LANES + oc % BF16_LANES] =
                    pair16(weight(l, w16, (int)oc, 2 * cp, t), weight(l, w16, (int)oc, 2 * cp + 1, t));
    // DAZ on the bias, and +0 for -0 (see the contract's zeros)
    for (int oc = 0; oc < OC; oc++) bias[oc] = l->has_bias ? bf16_step(l->b[oc], 0.0f, 0.0f) + 0.0f : 0.0f;
    const int nchunks = ws_chunks(ws, B);
#pragma omp parallel for schedule(dynamic) if ((size_t)B * OC * kp * N >= CNN_PAR_MIN_WORK)
    for (int ch = 0; ch < nchunks; ch++) {
        float *base = ws->col + (size_t)ch * ws->col_size;
        uint32_t *xq = (uint32_t *)base;
        float *out = base + fwd_x_size(l, &g);
        ptrdiff_t *outer = (ptrdiff_t *)(out + fwd_out_size(l, &g));
        uint16_t *x16 = (uint16_t *)(out + fwd_out_size(l, &g) + outer_size(l, &g));
        ptrdiff_t *rows = (ptrdiff_t *)(out + fwd_out_size(l, &g) + outer_size(l, &g) + in_u16_size(l));
        for (int t = 0; t < g.taps; t++) outer[t] = 2 * tap_offset(l, &g, t, g.Cp2);
        pixel_rows(l->OH, l->OW, g.Ws, rows);
        const Bf16Gemm gm = {.m = N, .n = OC, .kr = g.taps, .ks = g.Cp2, .a = (const uint16_t *)xq,
                             .a_outer = outer, .a_rows = rows, .a_step = 2 * (ptrdiff_t)g.xplane, .b = wb,
                             .init = bias, .c = out, .ldc = (size_t)OC};
        for (int i = ws_chunk_begin(ws, B, ch); i < ws_chunk_begin(ws, B, ch + 1); i++) {
            bf16_bits_array(x + (size_t)i * in_size, x16, in_size);
            pack_x(l, &g, x16, 1, xq);
            bf16_gemm(&gm);
            float *yi = conv2d_image_out(l, y, i, ws, ch);
            unpack_rows(out, N, OC, yi, (size_t)N);
            conv2d_image_done(l, yi, i);
        }
    }
}

// ---------------------------------------------------------------- backward
// Image j of n's output gradient for the weight gradient: lanes of 32
// output channels, pair (j OH + oh, p) = pixels 2p, 2p+1 of output row oh
// (the caller zeroes dyb: odd widths' and channels' padding).
static void pack_dy_rows(const Conv2d *l, const Geo *g, const uint16_t *dy, int j_image, int n, uint32_t *dyb) {
    const size_t kp = (size_t)n * l->OH * g->PW, N = (size_t)l->OH * l->OW;
    dyb += (size_t)j_image * l->OH * g->PW * BF16_LANES;
    for (int oh = 0; oh < l->OH; oh++)
        for (int j0 = 0; j0 < g->PW; j0 += 8) {  // eight pairs a block: reads and writes stay in L1
            const int j1 = j0 + 8 < g->PW ? j0 + 8 : g->PW;
            for (int oc = 0; oc < l->OC; oc++) {
                const uint16_t *row = dy + (size_t)oc * N + (size_t)oh * l->OW;
                uint32_t *d = dyb + ((size_t)(oc / BF16_LANES) * kp + (size_t)oh * g->PW) * BF16_LANES + oc % BF16_LANES;
                const int whole = j1 < l->OW / 2 ? j1 : l->OW / 2;  // pairs with both pixels
                int j = j0;
                for (; j < whole; j++) memcpy(d + (size_t)j * BF16_LANES, row + 2 * j, sizeof *d);
                for (; j < j1; j++) d[(size_t)j * BF16_LANES] = row[2 * j];
            }
        }
}

// One image's output gradient, channel pairs, dilated by the stride and
// padded: dy (qh, qw) at (qh S + KH - 1 - P, qw S + KW - 1 - P).
static void pack_dy_dilated(const Conv2d *l, const Geo *g, const uint16_t *dy, uint32_t *z) {
    const size_t N = (size_t)l->OH * l->OW;
    const int S = l->S, ch = l->KW - 1 - l->P;
    int q0 = 0, q1 = l->OW;  // the columns that land inside the plane
    while (q0 < q1 && q0 * S + ch < 0) q0++;
    while (q1 > q0 && (q1 - 1) * S + ch >= g->Wz) q1--;
    memset(z, 0, sizeof(uint32_t) * g->OCp2 * g->zplane);
    for (int op = 0; op < g->OCp2; op++) {
        const uint16_t *d0 = dy + (size_t)2 * op * N, *d1 = d0 + N;
        const int odd = 2 * op + 1 < l->OC;
        for (int qh = 0; qh < l->OH; qh++) {
            const int r = qh * S + l->KH - 1 - l->P;
            if (r < 0 || r >= g->Hz) continue;
            const size_t q = (size_t)qh * l->OW;
            uint32_t *zr = z + (size_t)op * g->zplane + (size_t)r * g->Wz;
            if (odd)
                for (int qw = q0; qw < q1; qw++) zr[qw * S + ch] = pair16(d0[q + qw], d1[q + qw]);
            else
                for (int qw = q0; qw < q1; qw++) zr[qw * S + ch] = d0[q + qw];
        }
    }
}

void conv2d_bf16_backward(const Conv2d *l, const float *x, const float *dy, float *dx, int B, Workspace *ws) {
    // x (B,C,H,W), dy (B,OC,OH,OW), dx (B,C,H,W) or NULL; dw (OC,C,KH,KW) +=, db (OC) +=
    const Geo g = geo(l);
    const int C = l->C, OC = l->OC, N = l->OH * l->OW;
    const size_t in_size = (size_t)C * l->H * l->W, taps = (size_t)g.taps;
    const size_t nw = (size_t)OC * C * taps, stride = ws->partial_size, kp = taps * g.OCp2;
    CNN_ASSERT(nw + (size_t)OC <= stride && conv2d_bf16_packed_size(l) <= ws->packed_size &&
               conv2d_bf16_scratch_size(l) <= ws->col_size);
    // The input gradient's lanes: panels of 32 input channels, pair (t, op)
    // = output channels 2op, 2op+1 of tap t.
    uint32_t *wd = (uint32_t *)ws->packed;
    if (dx) {
        const uint16_t *w16 = weights_u16(l, ws->packed, dx_w_size(l, &g));
#pragma omp parallel for schedule(static) if ((size_t)C * kp >= CNN_PAR_MIN_WORK / 16)
        for (size_t c = 0; c < panels(C) * BF16_LANES; c++)
            for (size_t t = 0; t < taps; t++)
                for (int op = 0; op < g.OCp2; op++)
                    wd[((c / BF16_LANES) * kp + t * g.OCp2 + op) * BF16_LANES + c % BF16_LANES] =
                        pair16(weight(l, w16, 2 * op, (int)c, (int)t), weight(l, w16, 2 * op + 1, (int)c, (int)t));
    }
    const int nchunks = ws_chunks(ws, B);
#pragma omp parallel for schedule(dynamic) if ((size_t)B * OC * C * taps * N >= CNN_PAR_MIN_WORK)
    for (int ch = 0; ch < nchunks; ch++) {
        float *base = ws->col + (size_t)ch * ws->col_size;
        uint16_t *xs = (uint16_t *)base;
        uint32_t *dyb = (uint32_t *)(base + bwd_x_size(l, &g));
        uint32_t *z = dyb + bwd_dy_size(l, &g);
        float *out = (float *)(z + bwd_z_size(l, &g)), *zeros = out + r16((size_t)g.Md * C);
        ptrdiff_t *outer = (ptrdiff_t *)(out + bwd_out_size(l, &g));
        ptrdiff_t *rows = (ptrdiff_t *)(out + bwd_out_size(l, &g) + outer_size(l, &g));
        uint16_t *x16 = (uint16_t *)((float *)rows + rows_size(l, &g)), *dy16 = x16 + 2 * in_u16_size(l);
        ptrdiff_t *drows = (ptrdiff_t *)(dy16 + 2 * dy_u16_size(l));
        pixel_rows(l->H, l->W, g.Wz, drows);
        float *pdw = ws->partial + (size_t)ch * stride, *pdb = pdw + nw;
        memset(pdb, 0, sizeof(float) * (size_t)OC);
        memset(zeros, 0, sizeof(float) * (size_t)imax(C, OC));
        const int i0 = ws_chunk_begin(ws, B, ch), i1 = ws_chunk_begin(ws, B, ch + 1);
        // The chunk's first product starts its sums from zeros (init), not
        // from a cleared pdw: sums this large (C OC taps) live beyond L2.
        if (i0 == i1) memset(pdw, 0, sizeof(float) * nw);
        for (int g0 = i0; g0 < i1; g0 += g.G) {
            const float *from = g0 == i0 ? zeros : NULL;
            const int n = i1 - g0 < g.G ? i1 - g0 : g.G;
            memset(dyb, 0, sizeof(uint32_t) * panels(OC) * n * l->OH * g.PW * BF16_LANES);
            for (int j = 0; j < n; j++) {
                const int i = g0 + j;
                const float *dyi = conv2d_image_dy(l, dy, i, ws, ch);
                bf16_bits_array(x + (size_t)i * in_size, x16, in_size);
                bf16_bits_array(dyi, dy16, (size_t)OC * N);
                pack_x(l, &g, x16, 0, xs + (size_t)j * bwd_x_image(l, &g));
                pack_dy_rows(l, &g, dy16, j, n, dyb);
                if (l->has_bias) conv2d_bias_grad(dyi, OC, (size_t)N, pdb);
                if (!dx) continue;
                // Input gradient: rows the input pixels (planes W + KW - 1 wide).
                pack_dy_dilated(l, &g, dy16, z);
                for (int t = 0; t < g.taps; t++) {
                    const int kh = t / l->KW, kw = t % l->KW;
                    outer[t] = 2 * ((ptrdiff_t)(l->KH - 1 - kh) * g.Wz + (l->KW - 1 - kw));
                }
                const Bf16Gemm gm = {.m = g.Md, .n = C, .kr = g.taps, .ks = g.OCp2, .a = (const uint16_t *)z,
                                     .a_outer = outer, .a_rows = drows, .a_step = 2 * (ptrdiff_t)g.zplane, .b = wd,
                                     .init = zeros, .c = out, .ldc = (size_t)C};
                bf16_gemm(&gm);
                float *dxi = dx + (size_t)i * in_size;
                unpack_rows(out, g.Md, C, dxi, (size_t)g.Md);
            }
            // Weight gradient of the n images: rows (t, c) in (KH,KW,C,OC),
            // the pairs' rows (j, oh) in order.
            for (int r = 0; r < n * l->OH; r++)
                outer[r] = (ptrdiff_t)(r / l->OH) * (ptrdiff_t)bwd_x_image(l, &g) + (ptrdiff_t)(r % l->OH) * g.Ws;
            if (wgrad_rows_flat(l)) {
                for (int t = 0; t < g.taps; t++)
                    for (int c = 0; c < C; c++)
                        rows[t * C + c] = tap_offset(l, &g, t, C) + (ptrdiff_t)c * (ptrdiff_t)g.xplane;
                const Bf16Gemm gm = {.m = g.taps * C, .n = OC, .kr = n * l->OH, .ks = g.PW, .a = xs,
                                     .a_outer = outer, .a_rows = rows, .a_step = 2, .b = dyb, .init = from,
                                     .c = pdw, .ldc = (size_t)OC};
                bf16_gemm(&gm);
            } else
                for (int t = 0; t < g.taps; t++) {
                    const Bf16Gemm gm = {.m = C, .n = OC, .kr = n * l->OH, .ks = g.PW,
                                         .a = xs + tap_offset(l, &g, t, C), .a_outer = outer, .a_step = 2,
                                         .a_row = (ptrdiff_t)g.xplane, .b = dyb, .init = from,
                                         .c = pdw + (size_t)t * C * OC, .ldc = (size_t)OC};
                    bf16_gemm(&gm);
                }
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
