// Max, average and global average pooling (no padding; windows that would
// run past the edge are dropped, as PyTorch does with ceil_mode=False).
#include <float.h>
#include <string.h>

#include "layers/layer.h"

// One (H,W) plane into y and argmax (OH,OW); argmax indexes the plane, ties -> first.
static void maxpool_plane(const Pool2d *l, const float *in, float *restrict y, int32_t *restrict argmax) {
    const int W = l->W, K = l->K, S = l->S, OH = l->OH, OW = l->OW;
    if (K == 2 && S == 2) {  // the common case: one pass, four loads per output
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = in + (size_t)2 * oh * W, *r1 = r0 + W;
            float *restrict out = y + (size_t)oh * OW;
            int32_t *restrict best = argmax + (size_t)oh * OW;
            for (int ow = 0; ow < OW; ow++) {
                const int i0 = 2 * oh * W + 2 * ow;
                const float b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
                float m = r0[2 * ow];
                int bi = i0, t;
                t = (b > m) | (b != b); m = t ? b : m; bi = t ? i0 + 1 : bi;
                t = (c > m) | (c != c); m = t ? c : m; bi = t ? i0 + W : bi;
                t = (d > m) | (d != d); m = t ? d : m; bi = t ? i0 + W + 1 : bi;
                out[ow] = m;
                best[ow] = bi;
            }
        }
        return;
    }
    for (int oh = 0; oh < OH; oh++) {
        float *restrict m = y + (size_t)oh * OW;
        int32_t *restrict best = argmax + (size_t)oh * OW;
        // Window elements are visited in row-major order for a whole output
        // row at a time: the loop over ow vectorises, and a strict '>' keeps
        // the first of equal values. Branch-free selects avoid mispredictions
        // on random data; a NaN wins, as in PyTorch, so divergence shows.
        const float *row0 = in + (size_t)oh * S * W;
        for (int ow = 0; ow < OW; ow++) {
            m[ow] = row0[ow * S];
            best[ow] = oh * S * W + ow * S;
        }
        for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++) {
                if (kh == 0 && kw == 0) continue;
                const float *r = in + (size_t)(oh * S + kh) * W + kw;
                const int base = (oh * S + kh) * W + kw;
                for (int ow = 0; ow < OW; ow++) {
                    const float v = r[ow * S];
                    const int take = (v > m[ow]) | (v != v);
                    m[ow] = take ? v : m[ow];
                    best[ow] = take ? base + ow * S : best[ow];
                }
            }
    }
}

void maxpool_forward(const Pool2d *l, const float *x, float *y, int32_t *argmax, int B) {
    // x (B,C,H,W), y and argmax (B,C,OH,OW)
    const size_t planes = (size_t)B * l->C, in = (size_t)l->H * l->W, out = (size_t)l->OH * l->OW;
#pragma omp parallel for schedule(static) if (planes * in >= CNN_PAR_MIN_WORK)
    for (size_t pl = 0; pl < planes; pl++) maxpool_plane(l, x + pl * in, y + pl * out, argmax + pl * out);
}

void maxpool_forward_image(const Pool2d *l, const float *x, float *y, int32_t *argmax) {
    const size_t in = (size_t)l->H * l->W, out = (size_t)l->OH * l->OW;
    for (int c = 0; c < l->C; c++) maxpool_plane(l, x + c * in, y + c * out, argmax + c * out);
}

// The gradient of output p as bits, or 0 where the fused ReLU before the
// pool stopped it (its output, the pool's input at the argmax, is y[p]).
// Bit masks, not selects: on random signs a compiler's branch mispredicts
// (the 2x2 backward ran 2.5x slower with one). g + 0 is the 0 + g of the
// scatter below: -0 becomes +0.
static uint32_t pool_grad_bits(const float *y, const float *dy, size_t p) {
    uint32_t v;
    const float g = dy[p] + 0.0f;
    memcpy(&v, &g, sizeof v);
    return y ? v & -(uint32_t)!(y[p] <= 0.0f) : v;
}

static float bits_float(uint32_t v) {
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}

// One plane's input gradient from its outputs' (and, with relu_grad, y).
static void maxpool_backward_plane(const Pool2d *l, const float *yp, const float *g, const int32_t *am,
                                   float *out) {
    const int H = l->H, W = l->W, OH = l->OH, OW = l->OW;
    if (!l->relu_grad) yp = NULL;
    if (l->K == 2 && l->S == 2) {
        // Windows tile the plane: each input pixel written once, the
        // argmax's gradient or 0 (no clearing pass, no scatter).
        for (int oh = 0; oh < OH; oh++) {
            float *r0 = out + (size_t)2 * oh * W, *r1 = r0 + W;
            for (int ow = 0; ow < OW; ow++) {
                const size_t p = (size_t)oh * OW + ow;
                const uint32_t v = pool_grad_bits(yp, g, p);
                const int a = am[p] - (2 * oh * W + 2 * ow);  // 0, 1, W or W + 1
                r0[2 * ow] = bits_float(v & -(uint32_t)(a == 0));
                r0[2 * ow + 1] = bits_float(v & -(uint32_t)(a == 1));
                r1[2 * ow] = bits_float(v & -(uint32_t)(a == W));
                r1[2 * ow + 1] = bits_float(v & -(uint32_t)(a == W + 1));
            }
            for (int w = 2 * OW; w < W; w++) r0[w] = r1[w] = 0.0f;  // an odd last column
        }
        if (2 * OH < H) memset(out + (size_t)2 * OH * W, 0, sizeof(float) * (size_t)(H - 2 * OH) * W);
        return;
    }
    memset(out, 0, sizeof(float) * H * W);
    for (int p = 0; p < OH * OW; p++) out[am[p]] += bits_float(pool_grad_bits(yp, g, (size_t)p));
}

void maxpool_backward(const Pool2d *l, const float *y, const float *dy, const int32_t *argmax, float *dx, int B) {
    // dy, argmax (B,C,OH,OW) -> dx (B,C,H,W); each plane by one thread, in order.
    const size_t planes = (size_t)B * l->C, in = (size_t)l->H * l->W, out = (size_t)l->OH * l->OW;
#pragma omp parallel for schedule(static) if (planes * in >= CNN_PAR_MIN_WORK)
    for (size_t pl = 0; pl < planes; pl++)
        maxpool_backward_plane(l, y + pl * out, dy + pl * out, argmax + pl * out, dx + pl * in);
}

void maxpool_backward_image(const Pool2d *l, const float *y, const float *dy, const int32_t *argmax, float *dx) {
    const size_t in = (size_t)l->H * l->W, out = (size_t)l->OH * l->OW;
    for (int c = 0; c < l->C; c++)
        maxpool_backward_plane(l, y + c * out, dy + c * out, argmax + c * out, dx + c * in);
}

void avgpool_forward(const Pool2d *l, const float *x, float *y, int B) {
    // x (B,C,H,W) -> y (B,C,OH,OW)
    const size_t planes = (size_t)B * l->C;
    const float inv = 1.0f / (float)(l->K * l->K);
#pragma omp parallel for schedule(static) if (planes * l->H * l->W >= CNN_PAR_MIN_WORK)
    for (size_t pl = 0; pl < planes; pl++) {
        const float *in = x + pl * l->H * l->W;
        float *out = y + pl * l->OH * l->OW;
        for (int oh = 0; oh < l->OH; oh++)
            for (int ow = 0; ow < l->OW; ow++) {
                float s = 0.0f;
                for (int kh = 0; kh < l->K; kh++)
                    for (int kw = 0; kw < l->K; kw++)
                        s += in[(oh * l->S + kh) * l->W + ow * l->S + kw];
                out[oh * l->OW + ow] = s * inv;
            }
    }
}

void avgpool_backward(const Pool2d *l, const float *dy, float *dx, int B) {
    // dy (B,C,OH,OW) -> dx (B,C,H,W)
    const size_t planes = (size_t)B * l->C;
    const float inv = 1.0f / (float)(l->K * l->K);
#pragma omp parallel for schedule(static) if (planes * l->H * l->W >= CNN_PAR_MIN_WORK)
    for (size_t pl = 0; pl < planes; pl++) {
        float *out = dx + pl * l->H * l->W;
        const float *g = dy + pl * l->OH * l->OW;
        memset(out, 0, sizeof(float) * l->H * l->W);
        for (int oh = 0; oh < l->OH; oh++)
            for (int ow = 0; ow < l->OW; ow++) {
                float v = g[oh * l->OW + ow] * inv;
                for (int kh = 0; kh < l->K; kh++)
                    for (int kw = 0; kw < l->K; kw++)
                        out[(oh * l->S + kh) * l->W + ow * l->S + kw] += v;
            }
    }
}

void gap_forward(const float *x, float *y, int B, int C, int HW) {
    // x (B,C,H,W) -> y (B,C)
    const size_t planes = (size_t)B * C;
#pragma omp parallel for schedule(static) if (planes * HW >= CNN_PAR_MIN_WORK)
    for (size_t pl = 0; pl < planes; pl++) {
        // Eight running sums (pixel p into p % 8), added in lane order: one
        // chain waited on every add (gap took a third of a 32x30x30 net's
        // inference); the order is fixed, so threads do not change it.
        const float *in = x + pl * HW;
        float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int p = 0;
        for (; p + 8 <= HW; p += 8)
            for (int k = 0; k < 8; k++) lane[k] += in[p + k];
        for (int k = 0; p + k < HW; k++) lane[k] += in[p + k];
        float s = 0.0f;
        for (int k = 0; k < 8; k++) s += lane[k];
        y[pl] = s / (float)HW;
    }
}

void gap_backward(const float *dy, float *dx, int B, int C, int HW) {
    // dy (B,C) -> dx (B,C,H,W)
    const size_t planes = (size_t)B * C;
#pragma omp parallel for schedule(static) if (planes * HW >= CNN_PAR_MIN_WORK)
    for (size_t pl = 0; pl < planes; pl++) {
        float v = dy[pl] / (float)HW;
        float *out = dx + pl * HW;
        for (int p = 0; p < HW; p++) out[p] = v;
    }
}

// ---------------------------------------------------------------- layer rows
// maxpool(k, stride) and avgpool(k, stride), stride defaulting to k
// (PyTorch's MaxPool2d/AvgPool2d without padding); gap: AdaptiveAvgPool2d(1)
// and flatten in one.
static int pool_set_arg(LayerSpec *s, const char *key, const char *val, const ArgSite *at,
                        CnnStatus *st) {
    if (!strcmp(key, "k") || !strcmp(key, "kernel")) *st = layer_arg_int(at, key, val, 1, 64, &s->a);
    else if (!strcmp(key, "stride")) *st = layer_arg_int(at, key, val, 1, 64, &s->stride);
    else return 0;
    return 1;
}

static CnnStatus pool_finish(LayerSpec *s, const ArgSite *at) {
    if (!s->a)
        return cnn_error(CNN_EFORMAT, "model description: layer %d: %s needs a kernel size, e.g. %s(2)",
                         at->idx, at->name, at->name);
    if (s->stride == 0) s->stride = s->a;
    return CNN_OK;
}

static void pool_format(const LayerSpec *s, char *buf, size_t n) {
    snprintf(buf, n, "%s(%d,stride=%d)", s->ops->name, s->a, s->stride);
}

static CnnStatus pool_shape(Layer *l, int idx, const char *text) {
    const LayerSpec *s = &l->spec;
    if (l->H < s->a || l->W < s->a)
        return cnn_error(CNN_ESHAPE, "layer %d %s: window %dx%d does not fit input %dx%dx%d",
                         idx, text, s->a, s->a, l->C, l->H, l->W);
    l->OH = (l->H - s->a) / s->stride + 1;
    l->OW = (l->W - s->a) / s->stride + 1;
    return CNN_OK;
}

static void pool_wire(Layer *l, float *w, float *dw, float *buffers) {
    (void)w, (void)dw, (void)buffers;
    l->pool = (Pool2d){.C = l->C, .H = l->H, .W = l->W, .K = l->spec.a, .S = l->spec.stride,
                       .OH = l->OH, .OW = l->OW, .relu_grad = l->relu_grad,
                       .argmax = l->spec.ops == &maxpool_layer ? (int32_t *)(void *)l->aux : NULL};
}

// One int32 argmax per output, in float-sized slots.
static size_t maxpool_aux_floats(const Layer *l, int max_batch) {
    return (size_t)max_batch * l->out_size;
}

// A pool fused into the convolution before it (net.c) has its output and
// argmax written by the convolution's forward, and its gradient expanded
// image by image in the convolution's backward.
static void maxpool_forward_row(Layer *l, const float *x, const LayerRun *r) {
    if (l->pool_in_conv) return;
    maxpool_forward(&l->pool, x, l->out, l->pool.argmax, r->B);
}

static void maxpool_backward_row(Layer *l, const float *x, const float *dy, float *dx,
                                 const LayerRun *r) {
    (void)x;
    if (l->pool_in_conv) {
        CNN_ASSERT(dx == dy);
        return;
    }
    maxpool_backward(&l->pool, l->out, dy, l->pool.argmax, dx, r->B);
}

static void avgpool_forward_row(Layer *l, const float *x, const LayerRun *r) {
    avgpool_forward(&l->pool, x, l->out, r->B);
}

static void avgpool_backward_row(Layer *l, const float *x, const float *dy, float *dx,
                                 const LayerRun *r) {
    (void)x;
    avgpool_backward(&l->pool, dy, dx, r->B);
}

const LayerOps maxpool_layer = {
    .name = "maxpool",
    .positional = {"k", "stride"},
    .set_arg = pool_set_arg,
    .finish = pool_finish,
    .format = pool_format,
    .shape = pool_shape,
    .aux_floats = maxpool_aux_floats,
    .wire = pool_wire,
    .forward = maxpool_forward_row,
    .backward = maxpool_backward_row,
};

const LayerOps avgpool_layer = {
    .name = "avgpool",
    .positional = {"k", "stride"},
    .set_arg = pool_set_arg,
    .finish = pool_finish,
    .format = pool_format,
    .shape = pool_shape,
    .wire = pool_wire,
    .forward = avgpool_forward_row,
    .backward = avgpool_backward_row,
};

static CnnStatus gap_shape(Layer *l, int idx, const char *text) {
    (void)idx, (void)text;
    l->OH = l->OW = 1;
    return CNN_OK;
}

static void gap_forward_row(Layer *l, const float *x, const LayerRun *r) {
    gap_forward(x, l->out, r->B, l->C, l->H * l->W);
}

static void gap_backward_row(Layer *l, const float *x, const float *dy, float *dx,
                             const LayerRun *r) {
    (void)x;
    gap_backward(dy, dx, r->B, l->C, l->H * l->W);
}

const LayerOps gap_layer = {
    .name = "gap",
    .aliases = {"globalavgpool"},
    .shape = gap_shape,
    .forward = gap_forward_row,
    .backward = gap_backward_row,
};
