// Direct convolution through the kernel backend's blocked kernels (see
// BlockedConv in kernels/kernels.h), for stride-1 layers. Channel counts are
// rounded up to blocks of 8 with channels of zeros where that wastes at most
// a third of the work (lenet's 6 -> 16 still runs several times faster than
// through im2col). The images of a batch chunk are copied into the 8-channel
// blocked layout with their zero padding (the backend's block_pad) and
// convolved without im2col, in groups of as many as fit in half of L2: each
// weight tile runs over a whole group, so small layers read their weights
// once per group and keep the weight gradient's accumulators in registers
// across its images (large layers go image by image). The input gradient is the forward kernel run on the
// padded output gradient with the kernel flipped and transposed. Chunks,
// their partial sums (kept blocked, summed in chunk order, then unpacked
// once) and every sum's order are fixed, so results do not depend on the
// thread count.
#include <string.h>

#include "internal.h"

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }
static int ceil8(int n) { return (n + 7) & ~7; }

int conv2d_direct_applies(const Conv2d *l) {
    const int pointwise = l->KH == 1 && l->KW == 1;  // a plain GEMM already
    const long padded = (long)ceil8(l->C) * ceil8(l->OC), real = (long)l->C * l->OC;
    return 3 * padded <= 4 * real && l->S == 1 && !pointwise && l->P <= l->KH - 1 &&
           l->P <= l->KW - 1;
}

// Channel counts in whole blocks, and whether either had to be rounded up.
static int Cp(const Conv2d *l) { return ceil8(l->C); }
static int OCp(const Conv2d *l) { return ceil8(l->OC); }
static int rounded(const Conv2d *l) { return Cp(l) != l->C || OCp(l) != l->OC; }

// Padding of the output gradient for the input-gradient convolution.
static int pad_h(const Conv2d *l) { return l->KH - 1 - l->P; }
static int pad_w(const Conv2d *l) { return l->KW - 1 - l->P; }

static size_t padded_in(const Conv2d *l) {
    return round16((size_t)Cp(l) * (l->H + 2 * l->P) * (l->W + 2 * l->P));
}
static size_t padded_dy(const Conv2d *l) {
    return round16((size_t)OCp(l) * (l->OH + 2 * pad_h(l)) * (l->OW + 2 * pad_w(l)));
}
static size_t weights(const Conv2d *l) { return (size_t)l->OC * l->C * l->KH * l->KW; }
static size_t blocked_weight_size(const Conv2d *l) {
    return round16((size_t)OCp(l) * Cp(l) * l->KH * l->KW);
}
// NCHW image with its channels rounded up to blocks (zeros after the last).
static size_t rounded_image(const Conv2d *l) {
    if (!rounded(l)) return 0;
    const size_t in = (size_t)Cp(l) * l->H * l->W, out = (size_t)OCp(l) * l->OH * l->OW;
    return round16(in > out ? in : out);
}

// Per batch chunk: every image of the chunk in blocked layouts at once, so
// that the kernels run the chunk's images inside each weight tile.
size_t conv2d_direct_scratch_size(const Conv2d *l, int chunk_images) {
    if (!conv2d_direct_applies(l)) return 0;
    const size_t n = (size_t)(chunk_images > 0 ? chunk_images : 1);
    const size_t fwd = n * (padded_in(l) + round16((size_t)OCp(l) * l->OH * l->OW));
    const size_t bwd = n * (padded_in(l) + padded_dy(l) + round16((size_t)Cp(l) * l->H * l->W));
    // Winograd's forward uses the chunk's scratch alone; its input gradient
    // uses what follows the direct backward's.
    return (fwd > bwd ? fwd : bwd) + rounded_image(l) + conv2d_winograd_scratch_size(l, chunk_images);
}

// The forward and the input-gradient kernels, then a bias rounded up. In
// the backward pass the forward kernel's slot holds the summed weight
// gradient, still blocked.
// With Winograd: its transformed filters in the forward (from the start)
// and, after the summed weight gradient, in the backward.
size_t conv2d_packed_size(const Conv2d *l) {
    if (!conv2d_direct_applies(l)) return 0;
    const size_t direct = 2 * blocked_weight_size(l) + round16((size_t)OCp(l));
    const size_t wino = blocked_weight_size(l) + conv2d_winograd_filter_size(l);
    return direct > wino ? direct : wino;
}

// A chunk's weight gradient is written blocked, then its bias gradient.
size_t conv2d_direct_partial_size(const Conv2d *l) {
    return conv2d_direct_applies(l) ? blocked_weight_size(l) + (size_t)l->OC : 0;
}

// block_pad of a (C,H,W) image whose C need not be a multiple of 8: through
// tmp, with zero channels up to the next block.
static void block_pad_any(const Kernels *k, const float *x, int C, int H, int W, int PH, int PW,
                          float *tmp, float *xb) {
    const int Cb = ceil8(C);
    if (Cb != C) {
        const size_t plane = (size_t)H * W;
        memcpy(tmp, x, sizeof(float) * C * plane);
        memset(tmp + C * plane, 0, sizeof(float) * (Cb - C) * plane);
        x = tmp;
    }
    k->block_pad(x, Cb, H, W, PH, PW, xb);
}

// unblock into a (C,H,W) image, dropping the zero channels of the last block.
static void unblock_any(const Kernels *k, const float *yb, int C, int H, int W, float *tmp,
                        float *y) {
    const int Cb = ceil8(C);
    if (Cb == C) {
        k->unblock(yb, C, H, W, y);
        return;
    }
    k->unblock(yb, Cb, H, W, tmp);
    memcpy(y, tmp, sizeof(float) * C * H * W);
}

// Index of w[oc][ic][kh][kw] in PyTorch's layout (OC, C, KH, KW).
static size_t widx(const Conv2d *l, int oc, int ic, int kh, int kw) {
    return (((size_t)oc * l->C + ic) * l->KH + kh) * l->KW + kw;
}

// Between (OC, C, KH, KW) and the forward kernel's blocked layout
// [ob][cb][kh][kw][i][o] (w[8 ob + o][8 cb + i][kh][kw]): packs w into blk
// with zeros for the channels of rounding, or (add_to_w) adds blk into w:
// the weight gradient summed over the chunks, once per pass.
static void blocked_weights(const Conv2d *l, float *w, float *blk, int add_to_w) {
    const int CB = Cp(l) / 8, OCB = OCp(l) / 8;
    const size_t per_ob = (size_t)CB * l->KH * l->KW * 64;  // floats of one output block
#pragma omp parallel for schedule(static) if ((size_t)OCB * per_ob >= CNN_PAR_MIN_WORK)
    for (int ob = 0; ob < OCB; ob++) {
        size_t n = (size_t)ob * per_ob;
        for (int cb = 0; cb < CB; cb++)
            for (int kh = 0; kh < l->KH; kh++)
                for (int kw = 0; kw < l->KW; kw++)
                    for (int i = 0; i < 8; i++)
                        for (int o = 0; o < 8; o++, n++) {
                            const int oc = ob * 8 + o, ic = cb * 8 + i;
                            float *v = oc < l->OC && ic < l->C ? w + widx(l, oc, ic, kh, kw) : NULL;
                            if (add_to_w) {
                                if (v) *v += blk[n];
                            } else {
                                blk[n] = v ? *v : 0.0f;
                            }
                        }
    }
}

// wp[cb][ob][kh][kw][o][i] = w[8 ob + o][8 cb + i][KH-1-kh][KW-1-kw]: the
// kernel of the input gradient, with output channels as its inputs.
static void pack_input_grad(const Conv2d *l, float *wp) {
    const int CB = Cp(l) / 8, OCB = OCp(l) / 8;
    const size_t per_cb = (size_t)OCB * l->KH * l->KW * 64;
#pragma omp parallel for schedule(static) if ((size_t)CB * per_cb >= CNN_PAR_MIN_WORK)
    for (int cb = 0; cb < CB; cb++) {
        size_t n = (size_t)cb * per_cb;
        for (int ob = 0; ob < OCB; ob++)
            for (int kh = 0; kh < l->KH; kh++)
                for (int kw = 0; kw < l->KW; kw++)
                    for (int o = 0; o < 8; o++)
                        for (int i = 0; i < 8; i++, n++) {
                            const int oc = ob * 8 + o, ic = cb * 8 + i;
                            wp[n] = oc < l->OC && ic < l->C
                                        ? l->w[widx(l, oc, ic, l->KH - 1 - kh, l->KW - 1 - kw)]
                                        : 0.0f;
                        }
    }
}

static BlockedConv forward_shape(const Conv2d *l) {
    return (BlockedConv){.CB = Cp(l) / 8, .OCB = OCp(l) / 8, .KH = l->KH, .KW = l->KW, .S = 1,
                         .Hp = l->H + 2 * l->P, .Wp = l->W + 2 * l->P, .OH = l->OH, .OW = l->OW};
}

// ---------------------------------------------------------------- passes
static size_t out_blocked(const Conv2d *l) { return round16((size_t)OCp(l) * l->OH * l->OW); }
static size_t in_blocked(const Conv2d *l) { return round16((size_t)Cp(l) * l->H * l->W); }

// Images converted, convolved and converted back together: as many of a
// chunk's as fit in half of a 512 KiB L2 (at least one). Small layers (tfcnn's
// third, 9 output pixels an image) then run each weight tile over several
// images; large ones image by image, each still in cache from its conversion.
static int group_size(size_t floats_per_image, int most) {
    const size_t fit = (256u << 10) / (sizeof(float) * floats_per_image);
    return fit < 1 ? 1 : fit > (size_t)most ? most : (int)fit;
}

void conv2d_direct_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws) {
    // x (B,C,H,W), w (OC,C,KH,KW), b (OC), y (B,OC,OH,OW)
    const Kernels *k = kernels();
    const size_t in_size = (size_t)l->C * l->H * l->W;
    const int nchunks = ws_chunks(ws, B), most = ws_chunk_images_max(ws, B);
    CNN_ASSERT(conv2d_direct_scratch_size(l, most) <= ws->col_size && conv2d_packed_size(l) <= ws->packed_size);
    blocked_weights(l, l->w, ws->packed, 0);
    const float *bias = l->has_bias ? l->b : NULL;
    if (bias && OCp(l) != l->OC) {  // rounded up with zeros, as the kernel reads whole blocks
        float *b = ws->packed + 2 * blocked_weight_size(l);
        memcpy(b, l->b, sizeof(float) * l->OC);
        memset(b + l->OC, 0, sizeof(float) * (OCp(l) - l->OC));
        bias = b;
    }
#pragma omp parallel for schedule(dynamic) if ((size_t)B * weights(l) * l->OH * l->OW >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        const int i0 = ws_chunk_begin(ws, B, c), i1 = ws_chunk_begin(ws, B, c + 1);
        float *xb = ws->col + (size_t)c * ws->col_size, *yb = xb + (size_t)most * padded_in(l);
        float *tmp = yb + (size_t)most * out_blocked(l);
        const int group = group_size(padded_in(l) + out_blocked(l), most);
        for (int g0 = i0; g0 < i1; g0 += group) {
            const int n = i1 - g0 < group ? i1 - g0 : group;
            for (int j = 0; j < n; j++)
                block_pad_any(k, x + (size_t)(g0 + j) * in_size, l->C, l->H, l->W, l->P, l->P, tmp,
                              xb + j * padded_in(l));
            BlockedConv g = forward_shape(l);
            g.N = n;
            g.x_image = padded_in(l);
            g.y_image = out_blocked(l);
            k->conv_fwd_blocked(&g, xb, ws->packed, bias, yb);
            for (int j = 0; j < n; j++) {
                float *yj = conv2d_image_out(l, y, g0 + j, ws, c);
                unblock_any(k, yb + j * out_blocked(l), l->OC, l->OH, l->OW, tmp, yj);
                conv2d_image_done(l, yj, g0 + j);
            }
        }
    }
}

void conv2d_direct_backward(const Conv2d *l, const float *x, const float *dy, float *dx, int B,
                            Workspace *ws) {
    // x (B,C,H,W), dy (B,OC,OH,OW), dx (B,C,H,W) or NULL; dw (OC,C,KH,KW) +=, db (OC) +=
    const Kernels *k = kernels();
    const int ph = pad_h(l), pw = pad_w(l), OHp = l->OH + 2 * ph, OWp = l->OW + 2 * pw;
    const size_t in_size = (size_t)l->C * l->H * l->W;
    const size_t nwb = blocked_weight_size(l), stride = ws->partial_size;
    const int nchunks = ws_chunks(ws, B), most = ws_chunk_images_max(ws, B);
    CNN_ASSERT(conv2d_direct_partial_size(l) <= stride);
    CNN_ASSERT(conv2d_direct_scratch_size(l, most) <= ws->col_size && conv2d_packed_size(l) <= ws->packed_size);
    float *dx_kernel = ws->packed + nwb;
    const int wino = dx && conv2d_winograd_applies(l), wino_w = conv2d_winograd_weight_grad_applies(l, most);
    if (wino) conv2d_winograd_input_grad_filters(l, dx_kernel);
    else if (dx) pack_input_grad(l, dx_kernel);
#pragma omp parallel for schedule(dynamic) if ((size_t)B * weights(l) * l->OH * l->OW >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        const int i0 = ws_chunk_begin(ws, B, c), i1 = ws_chunk_begin(ws, B, c + 1);
        float *xb = ws->col + (size_t)c * ws->col_size, *dyb = xb + (size_t)most * padded_in(l);
        float *dxb = dyb + (size_t)most * padded_dy(l), *tmp = dxb + (size_t)most * in_blocked(l);
        float *pdw = ws->partial + (size_t)c * stride, *pdb = pdw + nwb;
        memset(pdb, 0, sizeof(float) * l->OC);
        if (i1 == i0) memset(pdw, 0, sizeof(float) * nwb);
        // With Winograd's weight gradient, as many images as its products want.
        const int group = wino_w ? conv2d_winograd_group(l, most)
                                 : group_size(padded_in(l) + padded_dy(l) + (dx ? in_blocked(l) : 0), most);
        for (int g0 = i0; g0 < i1; g0 += group) {
            const int n = i1 - g0 < group ? i1 - g0 : group;
            for (int j = 0; j < n; j++) {
                const float *dyi = conv2d_image_dy(l, dy, g0 + j, ws, c);
                block_pad_any(k, x + (size_t)(g0 + j) * in_size, l->C, l->H, l->W, l->P, l->P, tmp,
                              xb + j * padded_in(l));
                block_pad_any(k, dyi, l->OC, l->OH, l->OW, ph, pw, tmp, dyb + j * padded_dy(l));
                if (l->has_bias) conv2d_bias_grad(dyi, l->OC, (size_t)l->OH * l->OW, pdb);
            }
            // The group's weight gradient, blocked, into the chunk's partial.
            BlockedConv g = forward_shape(l);
            g.N = n;
            g.x_image = padded_in(l);
            g.y_image = padded_dy(l);
            if (wino_w)
                conv2d_winograd_weight_grad(l, n, xb, padded_in(l), dyb, padded_dy(l), tmp + rounded_image(l),
                                            g0 > i0, pdw);
            else
                k->conv_wgrad_blocked(&g, xb, dyb + ((size_t)ph * OWp + pw) * 8, (size_t)OWp * 8,
                                      (size_t)OHp * OWp * 8, g0 > i0, pdw);
            if (!dx) continue;
            // The input gradient: a forward convolution from OC to C channels.
            if (wino) {
                conv2d_winograd_input_grad(l, n, dyb, padded_dy(l), dx_kernel, tmp + rounded_image(l), dxb,
                                           in_blocked(l));
                for (int j = 0; j < n; j++)
                    k->unblock(dxb + j * in_blocked(l), l->C, l->H, l->W, dx + (size_t)(g0 + j) * in_size);
                continue;
            }
            const BlockedConv gd = {.CB = OCp(l) / 8, .OCB = Cp(l) / 8, .KH = l->KH, .KW = l->KW, .S = 1,
                                    .Hp = OHp, .Wp = OWp, .OH = l->H, .OW = l->W, .N = n,
                                    .x_image = padded_dy(l), .y_image = in_blocked(l)};
            k->conv_fwd_blocked(&gd, dyb, dx_kernel, NULL, dxb);
            for (int j = 0; j < n; j++)
                unblock_any(k, dxb + j * in_blocked(l), l->C, l->H, l->W, tmp, dx + (size_t)(g0 + j) * in_size);
        }
    }
    // Chunks summed while still blocked, then added into dw once.
    batch_sum(ws, ws->partial, stride, nchunks, nwb + (l->has_bias ? (size_t)l->OC : 0));
    blocked_weights(l, l->dw, ws->partial, 1);
    if (l->has_bias) add_floats(l->db, ws->partial + nwb, (size_t)l->OC);
}
