// Winograd convolution F(m x m, 3 x 3) (Lavin and Gray, 2016) for 3x3,
// stride-1 layers whose channels are multiples of 8, on the same blocked
// layouts and kernels as the direct convolution (conv2d_direct.c). Each
// a x a input tile (a = m + 2) of each 8-channel block is transformed
// (V = B^T d B, the backend's wino_input); then, for each of the a^2
// positions, the products over channels are one blocked matrix product
// (wino_products: M = U V, with the filters transformed once a pass:
// U = G g G^T); the output transform
// (A^T M A, wino_output) gives m x m output pixels and adds the bias.
// F(4x4) does 36 products where direct convolution does 144 for 16 output
// pixels; F(2x2) 16 for 36 (more exact, less saving).
//
// The input gradient is the same convolution of the padded output gradient
// with the kernel flipped and transposed. The weight gradient transforms the
// input and output-gradient tiles (dM = A dY A^T), sums each position's
// products over the tiles and folds them into the 3x3 taps (G^T dU G), where
// the plane is whole tiles (conv2d_winograd_weight_grad_applies).
// Tiles, groups of images and every sum's order depend on the shapes only,
// so results do not depend on the thread count.
#include <string.h>

#include "internal.h"

// Points 0, 1, -1 (and infinity) for F(2x2); 0, +-1, +-2 (and infinity) for F(4x4).
static const WinoTransform F2 = {
    .m = 2, .a = 4,
    .BT = {1, 0, -1, 0,
           0, 1, 1, 0,
           0, -1, 1, 0,
           0, 1, 0, -1},
    .G = {1, 0, 0,
          0.5f, 0.5f, 0.5f,
          0.5f, -0.5f, 0.5f,
          0, 0, 1},
    .AT = {1, 1, 1, 0,
           0, 1, -1, -1},
};

static const WinoTransform F4 = {
    .m = 4, .a = 6,
    .BT = {4, 0, -5, 0, 1, 0,
           0, -4, -4, 1, 1, 0,
           0, 4, -4, -1, 1, 0,
           0, -2, -1, 2, 1, 0,
           0, 2, -1, -2, 1, 0,
           0, 4, 0, -5, 0, 1},
    .G = {1.0f / 4, 0, 0,
          -1.0f / 6, -1.0f / 6, -1.0f / 6,
          -1.0f / 6, 1.0f / 6, -1.0f / 6,
          1.0f / 24, 1.0f / 12, 1.0f / 6,
          1.0f / 24, -1.0f / 12, 1.0f / 6,
          0, 0, 1},
    .AT = {1, 1, 1, 1, 1, 0,
           0, 1, -1, 2, -2, 0,
           0, 1, 1, 4, 4, 0,
           0, 1, -1, 8, -8, 1},
};

static int tile_m = 4;

void conv2d_winograd_set_tile(int m) { tile_m = m == 2 ? 2 : 4; }
int conv2d_winograd_tile(void) { return tile_m; }
static const WinoTransform *transform(void) { return tile_m == 2 ? &F2 : &F4; }

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }
static int tiles(int n, int m) { return (n + m - 1) / m; }

// The shapes Winograd can run, whatever algorithm is chosen now (sizes of
// scratch memory are fixed when the net is built; the choice may change).
int conv2d_winograd_possible(const Conv2d *l) {
    return l->KH == 3 && l->KW == 3 && l->S == 1 && l->P <= 2 && l->C % 8 == 0 && l->OC % 8 == 0 &&
           conv2d_direct_applies(l);
}

int conv2d_winograd_applies(const Conv2d *l) {
    const Kernels *k = kernels();
    if (!k->wino_input || !k->wino_output || !k->wino_products || !k->wino_filters || !k->wino_dy ||
        !k->wino_wgrad || !conv2d_winograd_possible(l))
        return 0;
    switch (conv_algo()) {
    case CONV_WINOGRAD: return 1;
    case CONV_DIRECT: return 0;
    default: return conv2d_winograd_auto(l);
    }
}

// One Winograd convolution of blocked padded planes (CB blocks, Hp x Wp)
// into blocked outputs (OCB blocks, OH x OW).
typedef struct {
    int CB, OCB, Hp, Wp, OH, OW;
} WinoShape;

static size_t per_image(const WinoShape *s, int m) {
    const size_t a2 = (size_t)(m + 2) * (m + 2);
    return a2 * tiles(s->OH, m) * tiles(s->OW, m) * 8 * ((size_t)s->CB + s->OCB);
}

// Images transformed together: as many as keep V and M within 256 KiB (half
// a core's L2 on the machines of tools/PERF.md, the transformed filters
// beside them), but at least 16 tiles, so that a position's products run
// over enough tiles (and the weight gradient's fold pays). Groups of up to
// 2 MiB ran tfcnn's and vgg8bn's forward passes 1.15-1.26x slower than
// 512 KiB, and 512 KiB tfcnn's 13x13 layer 1.13x slower than 256 KiB.
static int images_per_group(const WinoShape *s, int most) {
    const int per = tiles(s->OH, tile_m) * tiles(s->OW, tile_m), least = (16 + per - 1) / per;
    size_t fit = (64u << 10) / per_image(s, tile_m);
    if (fit < (size_t)least) fit = (size_t)least;
    return fit > (size_t)most ? most : (int)fit;
}

static WinoShape forward_shape(const Conv2d *l) {
    return (WinoShape){l->C / 8, l->OC / 8, l->H + 2 * l->P, l->W + 2 * l->P, l->OH, l->OW};
}
static WinoShape input_grad_shape(const Conv2d *l) {
    const int ph = l->KH - 1 - l->P, pw = l->KW - 1 - l->P;
    return (WinoShape){l->OC / 8, l->C / 8, l->OH + 2 * ph, l->OW + 2 * pw, l->H, l->W};
}

// V and M of one group, positions wino_pos_floats apart.
static size_t group_floats(const WinoShape *s, int most) {
    const size_t a2 = (size_t)(tile_m + 2) * (tile_m + 2);
    const size_t T = (size_t)images_per_group(s, most) * tiles(s->OH, tile_m) * tiles(s->OW, tile_m);
    return round16(a2 * (wino_pos_floats(s->CB, T) + wino_pos_floats(s->OCB, T)));
}

size_t conv2d_winograd_scratch_size(const Conv2d *l, int chunk_images) {
    if (!conv2d_winograd_possible(l)) return 0;
    const int most = chunk_images > 0 ? chunk_images : 1;
    const WinoShape f = forward_shape(l), b = input_grad_shape(l);
    const size_t fwd = (size_t)images_per_group(&f, most) *
                           (round16((size_t)l->C * f.Hp * f.Wp) + round16((size_t)l->OC * l->OH * l->OW)) +
                       group_floats(&f, most);
    return fwd > group_floats(&b, most) ? fwd : group_floats(&b, most);
}

// Floats from one position's transformed filters to the next: a line more
// than C OC, for the reason of wino_pos_floats (the filter transform wrote
// its 36 values of a filter into one L1 set).
static size_t u_pos_floats(int C, int OC) { return (size_t)C * OC + 16; }

// The transformed filters of both passes (the largest tile).
size_t conv2d_winograd_filter_size(const Conv2d *l) {
    return conv2d_winograd_possible(l) ? round16(36 * u_pos_floats(l->C, l->OC)) : 0;
}

// U[pos][ob][cb][i][o] = (G g G^T)[pos] for the filter g of output channel
// 8 ob + o and input channel 8 cb + i of a convolution from CB to OCB
// blocks; flip: the input gradient's, g[kh][kw] = w[8 cb + i][8 ob + o][2 - kh][2 - kw]
// (the backend's wino_filters, an output block a call).
static void transform_filters(const Conv2d *l, int flip, float *U) {
    const Kernels *k = kernels();
    const int CB = (flip ? l->OC : l->C) / 8, OCB = (flip ? l->C : l->OC) / 8;
    const size_t u_pos = u_pos_floats(l->C, l->OC);
    const WinoTransform *f = transform();
#pragma omp parallel for schedule(static) if ((size_t)l->C * l->OC * 36 >= CNN_PAR_MIN_WORK)
    for (int ob = 0; ob < OCB; ob++) k->wino_filters(f, l->w, CB, OCB, flip, ob, U, u_pos);
}

// n images of blocked padded input (x_image floats apart) into blocked
// output (y_image apart): input transform, a^2 products, output transform.
static void wino_group(const Kernels *k, const WinoShape *s, int n, const float *xb, size_t x_image,
                       const float *U, const float *bias, float *V, float *yb, size_t y_image) {
    const WinoTransform *f = transform();
    const int TH = tiles(s->OH, f->m), TW = tiles(s->OW, f->m), a2 = f->a * f->a;
    const size_t T = (size_t)n * TH * TW;
    const size_t v_pos = wino_pos_floats(s->CB, T), m_pos = wino_pos_floats(s->OCB, T);
    float *M = V + a2 * v_pos;
    k->wino_input(f, xb, s->CB, s->Hp, s->Wp, x_image, n, TH, TW, V);
    const size_t u_pos = u_pos_floats(8 * s->CB, 8 * s->OCB);
    for (int pos = 0; pos < a2; pos++)
        k->wino_products(V + pos * v_pos, U + pos * u_pos, s->CB, s->OCB, T, M + pos * m_pos);
    k->wino_output(f, M, s->OCB, n, TH, TW, s->OH, s->OW, bias, yb, y_image);
}

void conv2d_winograd_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws) {
    const Kernels *k = kernels();
    const WinoShape s = forward_shape(l);
    const size_t in_size = (size_t)l->C * l->H * l->W, out_size = (size_t)l->OC * l->OH * l->OW;
    const size_t xb_size = round16((size_t)l->C * s.Hp * s.Wp), yb_size = round16(out_size);
    const int nchunks = ws_chunks(ws, B), most = ws_chunk_images_max(ws, B), group = images_per_group(&s, most);
    CNN_ASSERT(conv2d_winograd_scratch_size(l, most) <= ws->col_size);
    CNN_ASSERT(conv2d_winograd_filter_size(l) <= ws->packed_size);
    transform_filters(l, 0, ws->packed);
#pragma omp parallel for schedule(dynamic) if ((size_t)B * l->C * l->OC * l->OH * l->OW >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        const int i0 = ws_chunk_begin(ws, B, c), i1 = ws_chunk_begin(ws, B, c + 1);
        float *xb = ws->col + (size_t)c * ws->col_size, *yb = xb + (size_t)group * xb_size;
        float *V = yb + (size_t)group * yb_size;
        for (int g0 = i0; g0 < i1; g0 += group) {
            const int n = i1 - g0 < group ? i1 - g0 : group;
            for (int j = 0; j < n; j++)
                k->block_pad(x + (size_t)(g0 + j) * in_size, l->C, l->H, l->W, l->P, l->P, xb + j * xb_size);
            wino_group(k, &s, n, xb, xb_size, ws->packed, l->has_bias ? l->b : NULL, V, yb, yb_size);
            for (int j = 0; j < n; j++) {
                float *yj = conv2d_image_out(l, y, g0 + j, ws, c);
                k->unblock(yb + j * yb_size, l->OC, l->OH, l->OW, yj);
                conv2d_image_done(l, yj, g0 + j);
            }
        }
    }
}

void conv2d_winograd_input_grad_filters(const Conv2d *l, float *U) { transform_filters(l, 1, U); }

// The input gradient of n images: dyb holds their output gradients blocked
// and padded (dy_image floats apart), dxb gets their blocked input gradients.
void conv2d_winograd_input_grad(const Conv2d *l, int n, const float *dyb, size_t dy_image, const float *U,
                                float *scratch, float *dxb, size_t dx_image) {
    const WinoShape s = input_grad_shape(l);
    const int group = images_per_group(&s, n);
    for (int g0 = 0; g0 < n; g0 += group)
        wino_group(kernels(), &s, n - g0 < group ? n - g0 : group, dyb + g0 * dy_image, dy_image, U, NULL,
                   scratch, dxb + g0 * dx_image, dx_image);
}

// The weight gradient of n images into the blocked partial dw (the direct
// kernels' layout, [ob][cb][kh][kw][i][o]; accumulate: += instead of =):
// xb holds their blocked padded inputs (x_image floats apart), dyb their
// output gradients, blocked and padded by (KH - 1 - P, KW - 1 - P) for the
// input gradient (dy_image apart).
void conv2d_winograd_weight_grad(const Conv2d *l, int n, const float *xb, size_t x_image, const float *dyb,
                                 size_t dy_image, float *scratch, int accumulate, float *dw) {
    const Kernels *k = kernels();
    const WinoTransform *f = transform();
    const WinoShape s = forward_shape(l);
    const int ph = l->KH - 1 - l->P, pw = l->KW - 1 - l->P, OHp = l->OH + 2 * ph, OWp = l->OW + 2 * pw;
    const int TH = tiles(l->OH, f->m), TW = tiles(l->OW, f->m), a2 = f->a * f->a, group = images_per_group(&s, n);
    const size_t row = (size_t)OWp * 8, plane = (size_t)OHp * row, interior = (size_t)ph * row + (size_t)pw * 8;
    for (int g0 = 0; g0 < n; g0 += group) {
        const int nn = n - g0 < group ? n - g0 : group;
        const size_t T = (size_t)nn * TH * TW;
        float *V = scratch, *dM = scratch + a2 * wino_pos_floats(s.CB, T);
        k->wino_input(f, xb + g0 * x_image, s.CB, s.Hp, s.Wp, x_image, nn, TH, TW, V);
        k->wino_dy(f, dyb + g0 * dy_image + interior, s.OCB, l->OH, l->OW, row, plane, dy_image, nn, TH, TW, dM);
        k->wino_wgrad(f, V, dM, s.CB, s.OCB, T, accumulate || g0 > 0, dw);
    }
}

// auto: Winograd's forward and input gradient on every layer it can run.
// Measured on the AMD EPYC (Zen 3) of tools/PERF.md, they were faster than
// direct convolution on each such layer of vgg8bn (64-256 channels, 8x8 to
// 32x32: 1.7-2.5x) and tfcnn (32 -> 64 channels at 13x13: 1.25x; 64
// channels at 4x4, one tile an image: the same).
int conv2d_winograd_auto(const Conv2d *l) {
    (void)l;
    return 1;
}

// Its weight gradient folds each position's sums into the nine taps. auto
// takes it where at least 3/4 of the tiles' outputs fall inside the plane,
// or where 64 or more input channels pay for the transforms whatever the
// waste; --conv winograd always. Measured against direct convolution
// (tools/PERF.md, AMD EPYC Zen 3): 1.2-2x on vgg8bn's 64-channel layers,
// 1.3-1.7x on its 128 and 256-channel ones with a core free (vgg8bn trained
// 1.07-1.12x faster with it); on airbench94's 31x31, 15x15 and 7x7 planes
// (94%, 88% and 77% of the tiles used) 1.4-2.1x, and on its 256-channel 3x3
// plane (56%) 1.2x; 0.7-1.2x (no gain in whole-model runs) on tfcnn's 32 ->
// 64 channels at 13x13 (66%). A 5-epoch vgg8bn run with every weight
// gradient on Winograd ended at 80.65% against direct convolution's 80.84%
// (README). Nor where a group has fewer than 16 tiles: folding each
// position's sums into the taps then costs more than the products (tfcnn's
// 4x4 plane at batch 64, 4 images a chunk: its backward pass 1.06-1.17x
// faster on direct convolution).
int conv2d_winograd_weight_grad_applies(const Conv2d *l, int chunk_images) {
    if (!conv2d_winograd_applies(l)) return 0;
    if (conv_algo() == CONV_WINOGRAD) return 1;
    const int m = transform()->m;
    const long used = (long)l->OH * l->OW, computed = (long)tiles(l->OH, m) * tiles(l->OW, m) * m * m;
    const long group_tiles = (long)conv2d_winograd_group(l, chunk_images) * tiles(l->OH, m) * tiles(l->OW, m);
    return (4 * used >= 3 * computed || l->C >= 64) && group_tiles >= 16;
}

// The images of a chunk (at most `most`) that the backward pass takes
// together when Winograd computes its weight gradient.
int conv2d_winograd_group(const Conv2d *l, int most) {
    const WinoShape s = forward_shape(l);
    return images_per_group(&s, most);
}
