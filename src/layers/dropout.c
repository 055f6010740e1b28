// Inverted dropout: kept units are scaled by 1/(1-p) in training so that
// evaluation is the identity. Sample i's mask comes from the stream
// (seed, step, i), i its index in the whole batch: the same for any thread
// count or batch split, and on any rank of a data-parallel run.
#include <string.h>

#include "layers/layer.h"

void dropout_forward(float p, const float *x, float *y, float *mask, int B, size_t per_sample,
                     uint64_t seed, uint64_t step, uint64_t first, int training) {
    // x, y, mask (B, per_sample)
    if (!training || p <= 0.0f) {
        if (y != x) memcpy(y, x, sizeof(float) * (size_t)B * per_sample);
        return;
    }
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if ((size_t)B * per_sample >= CNN_PAR_MIN_WORK)
    for (int b = 0; b < B; b++) {
        CnnRng r;
        cnn_rng_derive(&r, seed, step, first + (uint64_t)b);
        const float *in = x + (size_t)b * per_sample;
        float *out = y + (size_t)b * per_sample, *m = mask + (size_t)b * per_sample;
        for (size_t i = 0; i < per_sample; i++) {
            m[i] = cnn_rng_uniform(&r) < p ? 0.0f : scale;
            out[i] = in[i] * m[i];
        }
    }
}

void dropout_backward(const float *mask, const float *dy, float *dx, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * mask[i];
}

// ---------------------------------------------------------------- layer row
// dropout(p=0.5): PyTorch's Dropout.
static void dropout_defaults(LayerSpec *s) { s->p = 0.5f; }

static int dropout_set_arg(LayerSpec *s, const char *key, const char *val, const ArgSite *at,
                           CnnStatus *st) {
    if (strcmp(key, "p")) return 0;
    *st = layer_arg_float(at, key, val, 0.0f, 1.0f, &s->p);
    if (!*st && s->p >= 1.0f)
        *st = cnn_error(CNN_EFORMAT, "model description: layer %d (%s): p=%s must be below 1",
                        at->idx, at->name, val);
    return 1;
}

static void dropout_format(const LayerSpec *s, char *buf, size_t n) {
    char f[32];
    snprintf(buf, n, "dropout(%s)", layer_fmt_float(s->p, f, sizeof f));
}

static size_t dropout_aux_floats(const Layer *l, int max_batch) {
    return (size_t)max_batch * l->out_size;  // the mask
}

// Each layer draws from its own stream: the net's seed mixed with its position.
static void dropout_forward_row(Layer *l, const float *x, const LayerRun *r) {
    dropout_forward(l->spec.p, x, l->out, l->aux, r->B, l->out_size,
                    r->seed ^ (0x5eedULL * (uint64_t)(r->index + 1)), r->step, (uint64_t)r->sample0,
                    r->training);
}

static void dropout_backward_row(Layer *l, const float *x, const float *dy, float *dx,
                                 const LayerRun *r) {
    (void)x;
    dropout_backward(l->aux, dy, dx, (size_t)r->B * l->out_size);
}

const LayerOps dropout_layer = {
    .name = "dropout",
    .positional = {"p"},
    .flags = LAYER_GRAD_IN_PLACE,
    .defaults = dropout_defaults,
    .set_arg = dropout_set_arg,
    .format = dropout_format,
    .aux_floats = dropout_aux_floats,
    .forward = dropout_forward_row,
    .backward = dropout_backward_row,
};
