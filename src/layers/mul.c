// mul(f): multiplies its input by a constant, as airbench's Mul(1/9) on the
// logits (a smaller output scale without changing the initialisation).
#include <string.h>

#include "layers/layer.h"

static void scale_copy(float f, const float *x, float *y, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) y[i] = f * x[i];
}

static void mul_defaults(LayerSpec *s) { s->p = 1.0f; }

static int mul_set_arg(LayerSpec *s, const char *key, const char *val, const ArgSite *at, CnnStatus *st) {
    if (strcmp(key, "f")) return 0;
    *st = layer_arg_float(at, key, val, -1e6f, 1e6f, &s->p);
    return 1;
}

static void mul_format(const LayerSpec *s, char *buf, size_t n) {
    char f[32];
    snprintf(buf, n, "mul(%s)", layer_fmt_float(s->p, f, sizeof f));
}

static void mul_forward_row(Layer *l, const float *x, const LayerRun *r) {
    scale_copy(l->spec.p, x, l->out, (size_t)r->B * l->out_size);
}

// In place: dx = f * dy over dy.
static void mul_backward_row(Layer *l, const float *x, const float *dy, float *dx, const LayerRun *r) {
    (void)x;
    scale_copy(l->spec.p, dy, dx, (size_t)r->B * l->out_size);
}

const LayerOps mul_layer = {
    .name = "mul",
    .aliases = {"scale"},
    .positional = {"f"},
    .flags = LAYER_GRAD_IN_PLACE,
    .defaults = mul_defaults,
    .set_arg = mul_set_arg,
    .format = mul_format,
    .forward = mul_forward_row,
    .backward = mul_backward_row,
};
