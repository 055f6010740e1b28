// 2-D convolution through im2col + SGEMM, parallel over fixed batch chunks.
// Each chunk owns one im2col buffer and one dW|db partial, so results do not
// depend on how chunks are spread over threads. Every convolution path hands
// its chunks out dynamically: the two cores of tools/PERF.md's machine ran
// 10-20% apart, and with a static split the faster one waited (tfcnn
// training 1.09x, medians of 6 alternating runs).
#include <omp.h>
#include <string.h>

#include "layers/layer.h"

static int is_pointwise(const Conv2d *l) {
    return l->KH == 1 && l->KW == 1 && l->S == 1 && l->P == 0;
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }
static size_t out_floats(const Conv2d *l) { return (size_t)l->OC * l->OH * l->OW; }
static size_t pooled_floats(const Conv2d *l) { return (size_t)l->pool->C * l->pool->OH * l->pool->OW; }

// With a fused max pool, an image's output and output gradient at full size
// in the chunk's scratch, after what the layer's path uses.
static size_t pool_scratch_size(const Conv2d *l) { return l->pooled ? 2 * round16(out_floats(l)) : 0; }

size_t conv2d_col_size(const Conv2d *l, int chunk_images) {
    const size_t col = is_pointwise(l) ? 0 : (size_t)l->C * l->KH * l->KW * l->OH * l->OW;
    const size_t direct = conv2d_direct_scratch_size(l, chunk_images), small = conv2d_small_c_scratch_size(l);
    const size_t bf16 = conv2d_bf16_scratch_size(l);  // any net may switch to bf16 once built
    size_t most = col > direct ? col : direct;
    most = most > small ? most : small;
    return round16(most > bf16 ? most : bf16) + pool_scratch_size(l);
}

static float *pool_scratch(const Conv2d *l, const Workspace *ws, int chunk) {
    return ws->col + (size_t)(chunk + 1) * ws->col_size - pool_scratch_size(l);
}

// ---------------------------------------------------------------- each image's output
// Every path writes image i of chunk c where conv2d_image_out says, then
// calls conv2d_image_done while the image is still in cache: the fused
// ReLU, then the fused pool. Its backward reads image i's output gradient
// from conv2d_image_dy: dy itself, or the pool's gradient expanded (with
// the ReLU's mask) into the chunk's scratch.
float *conv2d_image_out(const Conv2d *l, float *y, int i, const Workspace *ws, int c) {
    return l->pooled ? pool_scratch(l, ws, c) : y + (size_t)i * out_floats(l);
}

// With a pool, the ReLU goes after it, on a quarter of the values (2x2):
// max and ReLU commute, and where they pick another argmax (a window of
// values <= 0) the ReLU's mask makes the gradient 0 either way.
void conv2d_image_done(const Conv2d *l, float *yi, int i) {
    if (!l->pooled) {
        if (l->relu) relu_in_place(yi, out_floats(l));
        return;
    }
    float *pooled = l->pool_out + (size_t)i * pooled_floats(l);
    maxpool_forward_image(l->pool, yi, pooled, l->pool->argmax + (size_t)i * pooled_floats(l));
    if (l->relu) relu_in_place(pooled, pooled_floats(l));
}

const float *conv2d_image_dy(const Conv2d *l, const float *dy, int i, const Workspace *ws, int c) {
    if (!l->pooled) return dy + (size_t)i * out_floats(l);
    const size_t at = (size_t)i * pooled_floats(l);
    float *d = pool_scratch(l, ws, c) + round16(out_floats(l));
    maxpool_backward_image(l->pool, l->pool_out + at, dy + at, l->pool->argmax + at, d);
    return d;
}

size_t conv2d_partial_size(const Conv2d *l) {
    const size_t im2col = (size_t)l->OC * l->C * l->KH * l->KW + (size_t)l->OC;
    const size_t direct = conv2d_direct_partial_size(l);
    return im2col > direct ? im2col : direct;
}

static int use_direct(const Conv2d *l) {
    const Kernels *k = kernels();
    return k->conv_fwd_blocked && k->conv_wgrad_blocked && k->block_pad && k->unblock &&
           conv2d_direct_applies(l);
}

static int use_small_c(const Conv2d *l) { return !use_direct(l) && conv2d_small_c_applies(l); }

// The forward pass's path, as conv2d_forward picks it.
const char *conv2d_path_name(const Conv2d *l) {
    if (l->bf16) return "bf16";
    if (use_direct(l)) return conv2d_winograd_applies(l) ? "winograd" : "direct";
    return use_small_c(l) ? "small-c" : "im2col";
}

// Eight running sums (pixel p into sum p % 8), then added in lane order:
// the same fixed order for every run, and eight independent chains instead
// of one, so the adds overlap (and vectorise) instead of waiting on each other.
void conv2d_bias_grad(const float *dy, int OC, size_t N, float *db) {
    for (int oc = 0; oc < OC; oc++) {
        const float *row = dy + (size_t)oc * N;
        float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t p = 0;
        for (; p + 8 <= N; p += 8)
            for (int k = 0; k < 8; k++) lane[k] += row[p + k];
        for (size_t k = 0; k < 8 && p + k < N; k++) lane[k] += row[p + k];
        float s = 0.0f;
        for (int k = 0; k < 8; k++) s += lane[k];
        db[oc] += s;
    }
}

// y (OC,N) = b + w (OC,K) . src (K,N)
static void output_gemm(const Conv2d *l, int K, int N, const float *src, float *y) {
    const Kernels *k = kernels();
    if (K <= CNN_SMALL_K_MAX && k->gemm_small_k) {
        k->gemm_small_k(l->OC, N, K, l->w, src, l->has_bias ? l->b : NULL, y);
        return;
    }
    if (l->has_bias)
        for (int oc = 0; oc < l->OC; oc++)
            for (int p = 0; p < N; p++) y[(size_t)oc * N + p] = l->b[oc];
    gemm(0, 0, l->OC, N, K, 1.0f, l->w, K, src, N, l->has_bias ? 1.0f : 0.0f, y, N);
}

// dw (OC,K) = beta dw + dy (OC,N) . src (K,N)^T
static void weight_gemm(const Conv2d *l, int K, int N, const float *dy, const float *src, float beta,
                        float *dw) {
    const Kernels *k = kernels();
    if (K <= CNN_SMALL_K_MAX && k->gemm_small_k_nt) {
        k->gemm_small_k_nt(l->OC, K, N, dy, src, beta, dw);
        return;
    }
    gemm(0, 1, l->OC, K, N, 1.0f, dy, N, src, N, beta, dw, K);
}

void conv2d_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws) {
    // x (B,C,H,W), w (OC,C*KH*KW), b (OC), y (B,OC,OH,OW)
    if (l->bf16) {
        conv2d_bf16_forward(l, x, y, B, ws);
        return;
    }
    if (use_direct(l) && conv2d_winograd_applies(l)) {
        conv2d_winograd_forward(l, x, y, B, ws);
        return;
    }
    if (use_direct(l)) {
        conv2d_direct_forward(l, x, y, B, ws);
        return;
    }
    if (use_small_c(l)) {
        conv2d_small_c_forward(l, x, y, B, ws);
        return;
    }
    const int K = l->C * l->KH * l->KW, N = l->OH * l->OW;
    const size_t in_size = (size_t)l->C * l->H * l->W;
    const int nchunks = ws_chunks(ws, B);
#pragma omp parallel for schedule(dynamic) if ((size_t)B * l->OC * K * N >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        float *col = ws->col + (size_t)c * ws->col_size;
        for (int i = ws_chunk_begin(ws, B, c); i < ws_chunk_begin(ws, B, c + 1); i++) {
            const float *xi = x + (size_t)i * in_size;
            float *yi = conv2d_image_out(l, y, i, ws, c);
            const float *src = xi;
            if (!is_pointwise(l)) {
                im2col(xi, l->C, l->H, l->W, l->KH, l->KW, l->S, l->P, l->OH, l->OW, col);
                src = col;
            }
            output_gemm(l, K, N, src, yi);
            conv2d_image_done(l, yi, i);
        }
    }
}

void conv2d_backward(const Conv2d *l, const float *x, const float *dy, float *dx, int B,
                     Workspace *ws) {
    // x (B,C,H,W), dy (B,OC,OH,OW), dx (B,C,H,W) or NULL; dw (OC,C*KH*KW) +=, db (OC) +=
    if (l->bf16) {
        conv2d_bf16_backward(l, x, dy, dx, B, ws);
        return;
    }
    if (use_direct(l)) {
        conv2d_direct_backward(l, x, dy, dx, B, ws);
        return;
    }
    const int K = l->C * l->KH * l->KW, N = l->OH * l->OW;
    const size_t in_size = (size_t)l->C * l->H * l->W;
    const size_t nw = (size_t)l->OC * K, stride = ws->partial_size;
    const int nchunks = ws_chunks(ws, B);
    const int pointwise = is_pointwise(l), small_c = use_small_c(l);
    CNN_ASSERT(nw + (size_t)l->OC <= stride);
#pragma omp parallel for schedule(dynamic) if ((size_t)B * l->OC * K * N >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        float *col = ws->col + (size_t)c * ws->col_size;
        float *pdw = ws->partial + (size_t)c * stride, *pdb = pdw + nw;
        memset(pdb, 0, sizeof(float) * l->OC);
        const int i0 = ws_chunk_begin(ws, B, c), i1 = ws_chunk_begin(ws, B, c + 1);
        if (i1 == i0) memset(pdw, 0, sizeof(float) * nw);
        for (int i = i0; i < i1; i++) {
            const float *xi = x + (size_t)i * in_size;
            const float *dyi = conv2d_image_dy(l, dy, i, ws, c);
            if (small_c) {
                conv2d_small_c_weight_grad(l, xi, dyi, col, i == i0, pdw);
            } else {
                const float *src = xi;
                if (!pointwise) {
                    im2col(xi, l->C, l->H, l->W, l->KH, l->KW, l->S, l->P, l->OH, l->OW, col);
                    src = col;
                }
                // dW_chunk += dy_i (OC,N) . col_i^T (N,K)
                weight_gemm(l, K, N, dyi, src, i == i0 ? 0.0f : 1.0f, pdw);
            }
            if (l->has_bias) conv2d_bias_grad(dyi, l->OC, (size_t)N, pdb);
            if (!dx) continue;
            float *dxi = dx + (size_t)i * in_size;
            if (pointwise) {
                gemm(1, 0, K, N, l->OC, 1.0f, l->w, K, dyi, N, 0.0f, dxi, N);
            } else {
                // dcol = W^T (K,OC) . dy_i (OC,N), then scatter back onto the image.
                gemm(1, 0, K, N, l->OC, 1.0f, l->w, K, dyi, N, 0.0f, col, N);
                col2im(col, l->C, l->H, l->W, l->KH, l->KW, l->S, l->P, l->OH, l->OW, dxi);
            }
        }
    }
    batch_sum(ws, ws->partial, stride, nchunks, nw + (l->has_bias ? (size_t)l->OC : 0));
    add_floats(l->dw, ws->partial, nw);
    if (l->has_bias) add_floats(l->db, ws->partial + nw, (size_t)l->OC);
}

void conv2d_forward_naive(const Conv2d *l, const float *x, float *y, int B) {
    // Direct convolution, the definition itself; x (B,C,H,W) -> y (B,OC,OH,OW).
    for (int b = 0; b < B; b++)
        for (int oc = 0; oc < l->OC; oc++)
            for (int oh = 0; oh < l->OH; oh++)
                for (int ow = 0; ow < l->OW; ow++) {
                    double s = l->has_bias ? l->b[oc] : 0.0;
                    for (int c = 0; c < l->C; c++)
                        for (int kh = 0; kh < l->KH; kh++)
                            for (int kw = 0; kw < l->KW; kw++) {
                                int ih = oh * l->S - l->P + kh, iw = ow * l->S - l->P + kw;
                                if (ih < 0 || ih >= l->H || iw < 0 || iw >= l->W) continue;
                                s += (double)x[(((size_t)b * l->C + c) * l->H + ih) * l->W + iw] *
                                     l->w[(((size_t)oc * l->C + c) * l->KH + kh) * l->KW + kw];
                            }
                    y[(((size_t)b * l->OC + oc) * l->OH + oh) * l->OW + ow] = (float)s;
                }
}

// ---------------------------------------------------------------- layer row
// conv(out, k, stride, pad, bias=1): k is K or KHxKW; PyTorch's Conv2d.
static void conv_defaults(LayerSpec *s) {
    s->stride = 1;
    s->bias = 1;
}

static int conv_set_arg(LayerSpec *s, const char *key, const char *val, const ArgSite *at,
                        CnnStatus *st) {
    if (!strcmp(key, "out")) *st = layer_arg_int(at, key, val, 1, 1 << 16, &s->a);
    else if (!strcmp(key, "k") || !strcmp(key, "kernel")) {
        char kh[16] = {0};
        const char *x = strchr(val, 'x');
        if (x && (size_t)(x - val) < sizeof kh) {
            memcpy(kh, val, (size_t)(x - val));
            *st = layer_arg_int(at, key, kh, 1, 64, &s->k_h);
            if (!*st) *st = layer_arg_int(at, key, x + 1, 1, 64, &s->k_w);
        } else {
            *st = layer_arg_int(at, key, val, 1, 64, &s->k_h);
            s->k_w = s->k_h;
        }
    } else if (!strcmp(key, "stride")) *st = layer_arg_int(at, key, val, 1, 64, &s->stride);
    else if (!strcmp(key, "pad")) *st = layer_arg_int(at, key, val, 0, 64, &s->pad);
    else if (!strcmp(key, "bias")) *st = layer_arg_int(at, key, val, 0, 1, &s->bias);
    else if (!strcmp(key, "init")) {
        if (!strcmp(val, "default")) s->init_mode = LAYER_INIT_DEFAULT;
        else if (!strcmp(val, "dirac")) s->init_mode = LAYER_INIT_DIRAC;
        else if (!strcmp(val, "whiten")) s->init_mode = LAYER_INIT_WHITEN;
        else *st = cnn_error(CNN_EFORMAT, "model description: layer %d (%s): init=%s is not default, dirac or whiten",
                             at->idx, at->name, val);
    } else return layer_lr_arg(s, key, val, at, st);
    return 1;
}

static CnnStatus conv_finish(LayerSpec *s, const ArgSite *at) {
    if ((!s->a && s->init_mode != LAYER_INIT_WHITEN) || !s->k_h)
        return cnn_error(CNN_EFORMAT, "model description: layer %d: conv needs out channels and "
                         "kernel, e.g. conv(32,3)", at->idx);
    return CNN_OK;
}

static void conv_format(const LayerSpec *s, char *buf, size_t n) {
    static const char *const INIT[] = {"", ",init=dirac", ",init=whiten"};
    char k[32], lr[64];
    if (s->k_h == s->k_w) snprintf(k, sizeof k, "%d", s->k_h);
    else snprintf(k, sizeof k, "%dx%d", s->k_h, s->k_w);
    snprintf(buf, n, "conv(%d,%s,stride=%d,pad=%d%s%s%s)", s->a, k, s->stride, s->pad, s->bias ? "" : ",bias=0",
             INIT[s->init_mode], layer_lr_text(s, lr, sizeof lr));
}

static Conv2d conv_geometry(const Layer *l) {
    const LayerSpec *s = &l->spec;
    return (Conv2d){.C = l->C, .H = l->H, .W = l->W, .OC = l->OC, .KH = s->k_h, .KW = s->k_w,
                    .S = s->stride, .P = s->pad, .OH = l->OH, .OW = l->OW, .has_bias = s->bias,
                    .relu = l->relu_out, .pooled = l->pool_after > 0};
}

// Any max pool: each image is pooled from the chunk's scratch.
static void conv_wire_pool(Layer *l, Layer *pool) {
    l->conv.pool = &pool->pool;
    l->conv.pool_out = pool->out;
}

static CnnStatus conv_shape(Layer *l, int idx, const char *text) {
    const LayerSpec *s = &l->spec;
    // A whitening layer without an output count gets its own: 2 x in x kh x kw.
    if (s->init_mode == LAYER_INIT_WHITEN && !s->a) l->spec.a = 2 * l->C * s->k_h * s->k_w;
    if (l->H + 2 * s->pad < s->k_h || l->W + 2 * s->pad < s->k_w)
        return cnn_error(CNN_ESHAPE, "layer %d %s: kernel %dx%d does not fit input %dx%dx%d (pad %d)",
                         idx, text, s->k_h, s->k_w, l->C, l->H, l->W, s->pad);
    l->OC = s->a;
    l->OH = (l->H + 2 * s->pad - s->k_h) / s->stride + 1;
    l->OW = (l->W + 2 * s->pad - s->k_w) / s->stride + 1;
    l->n_w = (size_t)s->a * l->C * s->k_h * s->k_w;
    l->n_b = s->bias ? (size_t)s->a : 0;
    if (s->init_mode == LAYER_INIT_WHITEN && s->a != 2 * l->C * s->k_h * s->k_w)
        return cnn_error(CNN_ESHAPE, "layer %d %s: init=whiten needs 2 x in x kh x kw = %d output channels "
                         "(the patch covariance's eigenvectors and their negatives), not %d",
                         idx, text, 2 * l->C * s->k_h * s->k_w, s->a);
    return CNN_OK;
}

static void conv_scratch(const Layer *l, int max_batch, Workspace *need) {
    const Conv2d g = conv_geometry(l);
    const size_t col = conv2d_col_size(&g, chunk_images_max(max_batch));
    size_t packed = conv2d_packed_size(&g);
    if (conv2d_bf16_packed_size(&g) > packed) packed = conv2d_bf16_packed_size(&g);
    const size_t partial = conv2d_partial_size(&g);
    if (col > need->col_size) need->col_size = col;
    if (packed > need->packed_size) need->packed_size = packed;
    if (partial > need->partial_size) need->partial_size = partial;
}

static void conv_wire(Layer *l, float *w, float *dw, float *buffers) {
    (void)buffers;
    l->conv = conv_geometry(l);
    l->conv.w = w;
    l->conv.dw = dw;
    l->conv.b = l->n_b ? w + l->n_w : NULL;
    l->conv.db = l->n_b ? dw + l->n_w : NULL;
}

static void conv_init(Layer *l, float *w, float *buffers, CnnRng *r, CnnInit init) {
    (void)buffers;
    layer_init_weights(l, w, r, init);
    if (l->spec.init_mode != LAYER_INIT_DIRAC) return;
    // torch.nn.init.dirac_(w[:in]): the first min(out, in) filters pass
    // their own channel through (the centre tap), so a new layer starts
    // near the identity on those channels.
    const int taps = l->spec.k_h * l->spec.k_w, centre = (l->spec.k_h / 2) * l->spec.k_w + l->spec.k_w / 2;
    for (int o = 0; o < l->OC && o < l->C; o++) {
        float *f = w + (size_t)o * l->C * taps;
        memset(f, 0, sizeof(float) * (size_t)l->C * taps);
        f[(size_t)o * taps + centre] = 1.0f;
    }
}

static int conv_tensors(const Layer *l, int idx, float *w, float *m, float *v, float *buffers,
                        NetTensor *out) {
    (void)buffers;
    const int64_t shape[4] = {l->OC, l->C, l->spec.k_h, l->spec.k_w};
    return layer_weight_bias_tensors(l, idx, 4, shape, w, m, v, out);
}

static void conv_forward_row(Layer *l, const float *x, const LayerRun *r) {
    conv2d_forward(&l->conv, x, l->out, r->B, r->ws);
}

static void conv_backward_row(Layer *l, const float *x, const float *dy, float *dx,
                              const LayerRun *r) {
    conv2d_backward(&l->conv, x, dy, dx, r->B, r->ws);
}

static double best_of(double a, double b) { return a < b ? a : b; }

// Forward again (same values), backward without dx (the weight gradient
// alone), backward with dx; the input gradient is the difference.
static int conv_pass_times(Layer *l, const float *x, float *dx_buf, int B, int reps,
                           Workspace *ws, double t[3]) {
    t[0] = t[1] = t[2] = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = omp_get_wtime();
        conv2d_forward(&l->conv, x, l->out, B, ws);
        double t1 = omp_get_wtime();
        conv2d_backward(&l->conv, x, l->out, NULL, B, ws);  // any dy will do for timing
        double t2 = omp_get_wtime();
        conv2d_backward(&l->conv, x, l->out, dx_buf, B, ws);
        double t3 = omp_get_wtime();
        t[0] = best_of(t[0], t1 - t0);
        t[2] = best_of(t[2], t2 - t1);
        t[1] = best_of(t[1], (t3 - t2) - (t2 - t1));
    }
    return 1;
}

const LayerOps conv_layer = {
    .name = "conv",
    .aliases = {"conv2d"},
    .flags = LAYER_RELU_OUT | LAYER_POOL_OUT,
    .positional = {"out", "k", "stride", "pad"},
    .defaults = conv_defaults,
    .set_arg = conv_set_arg,
    .finish = conv_finish,
    .format = conv_format,
    .shape = conv_shape,
    .scratch = conv_scratch,
    .wire = conv_wire,
    .wire_pool = conv_wire_pool,
    .init = conv_init,
    .flops = layer_weight_flops,
    .tensors = conv_tensors,
    .forward = conv_forward_row,
    .backward = conv_backward_row,
    .pass_times = conv_pass_times,
};
