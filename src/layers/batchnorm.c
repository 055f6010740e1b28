// Batch normalisation over (B,H,W) per channel (Ioffe & Szegedy 2015), with
// PyTorch's conventions: biased variance to normalise, unbiased variance in
// the running estimate, running = (1-momentum)*running + momentum*batch.
// Parallel over channels. Each sum over the batch is a partial per batch
// chunk (double, in LANES running sums added in lane order: independent
// chains that overlap, where one chain waits on every add), then the
// chunks' tree (batch_sum), so a data-parallel run uses the whole batch's
// statistics and gets the same numbers as one process.
#include <math.h>
#include <string.h>

#include "layers/layer.h"

#define LANES 8

static double lanes_total(const double *lane) {
    double t = 0.0;
    for (int k = 0; k < LANES; k++) t += lane[k];
    return t;
}

// Per-chunk rows of doubles in the workspace's partials.
static double *chunk_rows(const Workspace *ws, size_t *stride) {
    *stride = ws->partial_size / 2;
    return (double *)ws->partial;
}

size_t batchnorm_partial_size(int C) { return 4 * (size_t)C; }

// sum over images [i0, i1) of channel c of f(x) (f: x, or (x - m)^2 if sq).
static double channel_sum(const float *x, int C, int HW, int c, int i0, int i1, int sq, double m) {
    double lane[LANES] = {0};
    for (int b = i0; b < i1; b++) {
        const float *p = x + ((size_t)b * C + c) * HW;
        int i = 0;
        if (sq) {
            for (; i + LANES <= HW; i += LANES)
                for (int k = 0; k < LANES; k++) lane[k] += (p[i + k] - m) * (p[i + k] - m);
            for (int k = 0; i + k < HW; k++) lane[k] += (p[i + k] - m) * (p[i + k] - m);
        } else {
            for (; i + LANES <= HW; i += LANES)
                for (int k = 0; k < LANES; k++) lane[k] += p[i + k];
            for (int k = 0; i + k < HW; k++) lane[k] += p[i + k];
        }
    }
    return lanes_total(lane);
}

void batchnorm_forward(const BatchNorm *l, const float *x, float *y, int B, Workspace *ws) {
    // x, y (B,C,H,W); gamma, beta, running_*, save_* (C). ws NULL: evaluation.
    const int C = l->C, HW = l->HW, training = ws != NULL;
    const int par = (size_t)B * C * HW >= CNN_PAR_MIN_WORK;
    size_t ds = 0;
    double *P = NULL, n = 0.0;
    if (training) {
        CNN_ASSERT(batchnorm_partial_size(C) <= ws->partial_size);
        P = chunk_rows(ws, &ds);
        const int nchunks = ws_chunks(ws, B);
        n = (double)ws_batch(ws, B) * HW;
#pragma omp parallel for schedule(static) if (par)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < nchunks; k++)
                P[k * ds + c] = channel_sum(x, C, HW, c, ws_chunk_begin(ws, B, k), ws_chunk_begin(ws, B, k + 1), 0, 0.0);
        batch_sum_f64(ws, P, ds, nchunks, (size_t)C);
#pragma omp parallel for schedule(static) if (par)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < nchunks; k++)
                P[k * ds + C + c] =
                    channel_sum(x, C, HW, c, ws_chunk_begin(ws, B, k), ws_chunk_begin(ws, B, k + 1), 1, P[c] / n);
        batch_sum_f64(ws, P + C, ds, nchunks, (size_t)C);
    }
#pragma omp parallel for schedule(static) if (par)
    for (int c = 0; c < C; c++) {
        float mean, invstd;
        if (training) {
            const double m = P[c] / n, ss = P[C + c], var = ss / n;
            mean = (float)m;
            invstd = (float)(1.0 / sqrt(var + l->eps));
            l->save_mean[c] = mean;
            l->save_invstd[c] = invstd;
            const double unbiased = n > 1 ? ss / (n - 1) : var;
            l->running_mean[c] = (1.0f - l->momentum) * l->running_mean[c] + l->momentum * mean;
            l->running_var[c] =
                (1.0f - l->momentum) * l->running_var[c] + l->momentum * (float)unbiased;
        } else {
            mean = l->running_mean[c];
            invstd = 1.0f / sqrtf(l->running_var[c] + l->eps);
        }
        const float scale = l->gamma[c] * invstd, shift = l->beta[c] - mean * scale;
        for (int b = 0; b < B; b++) {
            const float *p = x + ((size_t)b * C + c) * HW;
            float *q = y + ((size_t)b * C + c) * HW;
            for (int i = 0; i < HW; i++) q[i] = p[i] * scale + shift;
            if (l->relu) relu_in_place(q, (size_t)HW);
        }
    }
}

void batchnorm_backward(const BatchNorm *l, const float *x, const float *dy, float *dx, int B, Workspace *ws) {
    // x, dy, dx (B,C,H,W) with the batch statistics saved by the training forward.
    // dx = gamma*invstd/n * (n*dy - sum(dy) - xhat*sum(dy*xhat))
    const int C = l->C, HW = l->HW, nchunks = ws_chunks(ws, B);
    const int par = (size_t)B * C * HW >= CNN_PAR_MIN_WORK;
    CNN_ASSERT(batchnorm_partial_size(C) <= ws->partial_size);
    size_t ds;
    double *P = chunk_rows(ws, &ds);
#pragma omp parallel for schedule(static) if (par)
    for (int c = 0; c < C; c++) {
        const float mean = l->save_mean[c], invstd = l->save_invstd[c];
        for (int k = 0; k < nchunks; k++) {
            double ldy[LANES] = {0}, ldyx[LANES] = {0};
            for (int b = ws_chunk_begin(ws, B, k); b < ws_chunk_begin(ws, B, k + 1); b++) {
                const float *p = x + ((size_t)b * C + c) * HW, *g = dy + ((size_t)b * C + c) * HW;
                int i = 0;
                for (; i + LANES <= HW; i += LANES)
                    for (int j = 0; j < LANES; j++) {
                        ldy[j] += g[i + j];
                        ldyx[j] += (double)g[i + j] * ((p[i + j] - mean) * invstd);
                    }
                for (int j = 0; i + j < HW; j++) {
                    ldy[j] += g[i + j];
                    ldyx[j] += (double)g[i + j] * ((p[i + j] - mean) * invstd);
                }
            }
            P[k * ds + c] = lanes_total(ldy);
            P[k * ds + C + c] = lanes_total(ldyx);
        }
    }
    batch_sum_f64(ws, P, ds, nchunks, 2 * (size_t)C);
    const double n = (double)ws_batch(ws, B) * HW;
#pragma omp parallel for schedule(static) if (par)
    for (int c = 0; c < C; c++) {
        const double sdy = P[c], sdyx = P[C + c];
        l->dgamma[c] += (float)sdyx;
        l->dbeta[c] += (float)sdy;
        if (!dx) continue;
        const float mean = l->save_mean[c], invstd = l->save_invstd[c];
        const float k = l->gamma[c] * invstd, mdy = (float)(sdy / n), mdyx = (float)(sdyx / n);
        for (int b = 0; b < B; b++) {
            const float *p = x + ((size_t)b * C + c) * HW, *g = dy + ((size_t)b * C + c) * HW;
            float *q = dx + ((size_t)b * C + c) * HW;
            for (int i = 0; i < HW; i++) {
                const float xhat = (p[i] - mean) * invstd;
                q[i] = k * (g[i] - mdy - xhat * mdyx);
            }
        }
    }
}

// ---------------------------------------------------------------- layer row
// batchnorm(eps=1e-5, momentum=0.1, weight_lr=1, bias_lr=1): PyTorch's BatchNorm2d (or
// 1d on a flat input); weight_lr=0 keeps the scale at 1, as airbench's BatchNorm.
static void bn_defaults(LayerSpec *s) {
    s->eps = 1e-5f;
    s->momentum = 0.1f;
}

static int bn_set_arg(LayerSpec *s, const char *key, const char *val, const ArgSite *at,
                      CnnStatus *st) {
    if (!strcmp(key, "eps")) *st = layer_arg_float(at, key, val, 1e-12f, 1.0f, &s->eps);
    else if (!strcmp(key, "momentum")) *st = layer_arg_float(at, key, val, 0.0f, 1.0f, &s->momentum);
    else return layer_lr_arg(s, key, val, at, st);
    return 1;
}

static void bn_format(const LayerSpec *s, char *buf, size_t n) {
    char f1[32], f2[32], lr[64];
    snprintf(buf, n, "batchnorm(eps=%s,momentum=%s%s)", layer_fmt_float(s->eps, f1, sizeof f1),
             layer_fmt_float(s->momentum, f2, sizeof f2), layer_lr_text(s, lr, sizeof lr));
}

// gamma then beta as parameters; running mean then variance as buffers.
static CnnStatus bn_shape(Layer *l, int idx, const char *text) {
    (void)idx, (void)text;
    l->n_w = l->n_b = (size_t)l->C;
    l->n_buf = 2 * (size_t)l->C;
    return CNN_OK;
}

// The last training forward's batch mean and 1/std, per channel.
static size_t bn_aux_floats(const Layer *l, int max_batch) {
    (void)max_batch;
    return 2 * (size_t)l->C;
}

static void bn_wire(Layer *l, float *w, float *dw, float *buffers) {
    l->bn = (BatchNorm){.C = l->C, .HW = l->H * l->W, .relu = l->relu_out, .eps = l->spec.eps,
                        .momentum = l->spec.momentum, .gamma = w, .beta = w + l->C,
                        .dgamma = dw, .dbeta = dw + l->C, .running_mean = buffers,
                        .running_var = buffers + l->C, .save_mean = l->aux,
                        .save_invstd = l->aux + l->C};
}

static void bn_init(Layer *l, float *w, float *buffers, CnnRng *r, CnnInit init) {
    (void)r, (void)init;
    for (int c = 0; c < l->C; c++) w[c] = 1.0f;              // gamma; beta stays 0
    for (int c = 0; c < l->C; c++) buffers[l->C + c] = 1.0f;  // running var; mean stays 0
}

static int bn_tensors(const Layer *l, int idx, float *w, float *m, float *v, float *buffers,
                      NetTensor *out) {
    const int64_t vec[1] = {l->C};
    int n = 0;
    layer_add_tensor(out, &n, idx, "weight", 1, vec, w, m, v);
    layer_add_tensor(out, &n, idx, "bias", 1, vec, w + l->C, m + l->C, v + l->C);
    layer_add_tensor(out, &n, idx, "running_mean", 1, vec, buffers, NULL, NULL);
    layer_add_tensor(out, &n, idx, "running_var", 1, vec, buffers + l->C, NULL, NULL);
    return n;
}

static void bn_scratch(const Layer *l, int max_batch, Workspace *need) {
    (void)max_batch;
    if (batchnorm_partial_size(l->C) > need->partial_size) need->partial_size = batchnorm_partial_size(l->C);
}

static void bn_forward_row(Layer *l, const float *x, const LayerRun *r) {
    batchnorm_forward(&l->bn, x, l->out, r->B, r->training ? r->ws : NULL);
}

static void bn_backward_row(Layer *l, const float *x, const float *dy, float *dx,
                            const LayerRun *r) {
    batchnorm_backward(&l->bn, x, dy, dx, r->B, r->ws);
}

const LayerOps batchnorm_layer = {
    .flags = LAYER_NO_DECAY | LAYER_RELU_OUT,
    .name = "batchnorm",
    .aliases = {"bn"},
    .defaults = bn_defaults,
    .set_arg = bn_set_arg,
    .format = bn_format,
    .shape = bn_shape,
    .aux_floats = bn_aux_floats,
    .scratch = bn_scratch,
    .wire = bn_wire,
    .init = bn_init,
    .tensors = bn_tensors,
    .forward = bn_forward_row,
    .backward = bn_backward_row,
};
