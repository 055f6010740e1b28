// Batch normalisation over (B,H,W) per channel (Ioffe & Szegedy 2015), with
// PyTorch's conventions: biased variance to normalise, unbiased variance in
// the running estimate, running = (1-momentum)*running + momentum*batch.
// Parallel over channels; each channel's sums run in one fixed order
// (double, in LANES running sums added in lane order at the end: independent
// chains that overlap, where one chain waits on every add).
#include <math.h>
#include <string.h>

#include "layers/layer.h"

#define LANES 8

static double lanes_total(const double *lane) {
    double t = 0.0;
    for (int k = 0; k < LANES; k++) t += lane[k];
    return t;
}

void batchnorm_forward(const BatchNorm *l, const float *x, float *y, int B, int training) {
    // x, y (B,C,H,W); gamma, beta, running_*, save_* (C)
    const int C = l->C, HW = l->HW;
#pragma omp parallel for schedule(static) if ((size_t)B * C * HW >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < C; c++) {
        float mean, invstd;
        if (training) {
            double ls[LANES] = {0}, lss[LANES] = {0};
            for (int b = 0; b < B; b++) {
                const float *p = x + ((size_t)b * C + c) * HW;
                int i = 0;
                for (; i + LANES <= HW; i += LANES)
                    for (int k = 0; k < LANES; k++) ls[k] += p[i + k];
                for (int k = 0; i + k < HW; k++) ls[k] += p[i + k];
            }
            const double s = lanes_total(ls), n = (double)B * HW, m = s / n;
            for (int b = 0; b < B; b++) {
                const float *p = x + ((size_t)b * C + c) * HW;
                int i = 0;
                for (; i + LANES <= HW; i += LANES)
                    for (int k = 0; k < LANES; k++) lss[k] += (p[i + k] - m) * (p[i + k] - m);
                for (int k = 0; i + k < HW; k++) lss[k] += (p[i + k] - m) * (p[i + k] - m);
            }
            const double ss = lanes_total(lss);
            const double var = ss / n;
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
        }
    }
}

void batchnorm_backward(const BatchNorm *l, const float *x, const float *dy, float *dx, int B) {
    // x, dy, dx (B,C,H,W) with the batch statistics saved by the training forward.
    // dx = gamma*invstd/n * (n*dy - sum(dy) - xhat*sum(dy*xhat))
    const int C = l->C, HW = l->HW;
#pragma omp parallel for schedule(static) if ((size_t)B * C * HW >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < C; c++) {
        const float mean = l->save_mean[c], invstd = l->save_invstd[c];
        double ldy[LANES] = {0}, ldyx[LANES] = {0};
        for (int b = 0; b < B; b++) {
            const float *p = x + ((size_t)b * C + c) * HW, *g = dy + ((size_t)b * C + c) * HW;
            int i = 0;
            for (; i + LANES <= HW; i += LANES)
                for (int k = 0; k < LANES; k++) {
                    ldy[k] += g[i + k];
                    ldyx[k] += (double)g[i + k] * ((p[i + k] - mean) * invstd);
                }
            for (int k = 0; i + k < HW; k++) {
                ldy[k] += g[i + k];
                ldyx[k] += (double)g[i + k] * ((p[i + k] - mean) * invstd);
            }
        }
        const double sdy = lanes_total(ldy), sdyx = lanes_total(ldyx);
        l->dgamma[c] += (float)sdyx;
        l->dbeta[c] += (float)sdy;
        if (!dx) continue;
        const double n = (double)B * HW;
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
    l->bn = (BatchNorm){.C = l->C, .HW = l->H * l->W, .eps = l->spec.eps,
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

static void bn_forward_row(Layer *l, const float *x, const LayerRun *r) {
    batchnorm_forward(&l->bn, x, l->out, r->B, r->training);
}

static void bn_backward_row(Layer *l, const float *x, const float *dy, float *dx,
                            const LayerRun *r) {
    batchnorm_backward(&l->bn, x, dy, dx, r->B);
}

const LayerOps batchnorm_layer = {
    .flags = LAYER_NO_DECAY,
    .name = "batchnorm",
    .aliases = {"bn"},
    .defaults = bn_defaults,
    .set_arg = bn_set_arg,
    .format = bn_format,
    .shape = bn_shape,
    .aux_floats = bn_aux_floats,
    .wire = bn_wire,
    .init = bn_init,
    .tensors = bn_tensors,
    .forward = bn_forward_row,
    .backward = bn_backward_row,
};
