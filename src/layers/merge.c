// Layers that join branches of a graph: add (a residual sum, PyTorch's
// x + y) and concat (channels of the current tensor, then the named one's:
// torch.cat(dim=1)); and chpad, zero channels around a tensor (the
// parameter-free "option A" shortcut of He et al.'s CIFAR ResNets, with a
// stride-2 maxpool(1) before it).
#include <string.h>

#include "layers/layer.h"

// ---------------------------------------------------------------- add, concat
static int merge_set_arg(LayerSpec *s, const char *key, const char *val, const ArgSite *at, CnnStatus *st) {
    if (strcmp(key, "from")) return 0;
    const size_t k = layer_name_length(val);
    if (!k || val[k] || k > LAYER_NAME_MAX)
        *st = cnn_error(CNN_EFORMAT, "model description: layer %d (%s): '%s' is not a tensor name (a letter, "
                        "then letters, digits or '_', at most %d)", at->idx, at->name, val, LAYER_NAME_MAX);
    else
        strcpy(s->ref, val);
    return 1;
}

static CnnStatus merge_finish(LayerSpec *s, const ArgSite *at) {
    if (!s->ref[0])
        return cnn_error(CNN_EFORMAT, "model description: layer %d: %s needs the name of its second input, "
                         "e.g. @x ... %s(x)", at->idx, s->ops->name, s->ops->name);
    return CNN_OK;
}

static void merge_format(const LayerSpec *s, char *buf, size_t n) { snprintf(buf, n, "%s(%s)", s->ops->name, s->ref); }

static CnnStatus add_shape(Layer *l, int idx, const char *text) {
    if (l->C != l->C2 || l->H != l->H2 || l->W != l->W2)
        return cnn_error(CNN_ESHAPE, "layer %d %s: the tensors to add differ in shape: %dx%dx%d and %dx%dx%d", idx,
                         text, l->C, l->H, l->W, l->C2, l->H2, l->W2);
    return CNN_OK;
}

static void add_forward_row(Layer *l, const float *x, const LayerRun *r) {
    const size_t n = (size_t)r->B * l->out_size;
    const float *x2 = r->x2;
    float *y = l->out;
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) y[i] = x[i] + x2[i];
}

static void add_backward_row(Layer *l, const float *x, const float *dy, float *dx, const LayerRun *r) {
    (void)x;
    const size_t bytes = sizeof(float) * (size_t)r->B * l->out_size;
    if (dx) memcpy(dx, dy, bytes);
    if (r->dx2) memcpy(r->dx2, dy, bytes);
}

const LayerOps add_layer = {
    .name = "add",
    .positional = {"from"},
    .flags = LAYER_MERGE,
    .set_arg = merge_set_arg,
    .finish = merge_finish,
    .format = merge_format,
    .shape = add_shape,
    .forward = add_forward_row,
    .backward = add_backward_row,
};

static CnnStatus concat_shape(Layer *l, int idx, const char *text) {
    if (l->H != l->H2 || l->W != l->W2)
        return cnn_error(CNN_ESHAPE, "layer %d %s: the tensors to concatenate differ in height or width: %dx%dx%d "
                         "and %dx%dx%d", idx, text, l->C, l->H, l->W, l->C2, l->H2, l->W2);
    l->OC = l->C + l->C2;
    return CNN_OK;
}

static void concat_forward_row(Layer *l, const float *x, const LayerRun *r) {
    const size_t n1 = l->in_size, n2 = (size_t)l->C2 * l->H2 * l->W2;
#pragma omp parallel for schedule(static) if ((size_t)r->B * l->out_size >= CNN_PAR_MIN_WORK)
    for (int b = 0; b < r->B; b++) {
        float *y = l->out + (size_t)b * l->out_size;
        memcpy(y, x + (size_t)b * n1, sizeof(float) * n1);
        memcpy(y + n1, r->x2 + (size_t)b * n2, sizeof(float) * n2);
    }
}

static void concat_backward_row(Layer *l, const float *x, const float *dy, float *dx, const LayerRun *r) {
    (void)x;
    const size_t n1 = l->in_size, n2 = (size_t)l->C2 * l->H2 * l->W2;
#pragma omp parallel for schedule(static) if ((size_t)r->B * l->out_size >= CNN_PAR_MIN_WORK)
    for (int b = 0; b < r->B; b++) {
        const float *g = dy + (size_t)b * l->out_size;
        if (dx) memcpy(dx + (size_t)b * n1, g, sizeof(float) * n1);
        if (r->dx2) memcpy(r->dx2 + (size_t)b * n2, g + n1, sizeof(float) * n2);
    }
}

const LayerOps concat_layer = {
    .name = "concat",
    .aliases = {"cat"},
    .positional = {"from"},
    .flags = LAYER_MERGE,
    .set_arg = merge_set_arg,
    .finish = merge_finish,
    .format = merge_format,
    .shape = concat_shape,
    .forward = concat_forward_row,
    .backward = concat_backward_row,
};

// ---------------------------------------------------------------- chpad
// chpad(before, after): `before` zero channels, the input's, `after` zero
// channels (torch.nn.functional.pad(x, (0, 0, 0, 0, before, after)));
// chpad(n) pads n on each side.
static void chpad_defaults(LayerSpec *s) { s->pad = -1; }

static CnnStatus chpad_finish(LayerSpec *s, const ArgSite *at) {
    (void)at;
    if (s->pad < 0) s->pad = s->a;
    return CNN_OK;
}

static int chpad_set_arg(LayerSpec *s, const char *key, const char *val, const ArgSite *at, CnnStatus *st) {
    if (!strcmp(key, "before")) *st = layer_arg_int(at, key, val, 0, 1 << 16, &s->a);
    else if (!strcmp(key, "after")) *st = layer_arg_int(at, key, val, 0, 1 << 16, &s->pad);
    else return 0;
    return 1;
}

static void chpad_format(const LayerSpec *s, char *buf, size_t n) { snprintf(buf, n, "chpad(%d,%d)", s->a, s->pad); }

static CnnStatus chpad_shape(Layer *l, int idx, const char *text) {
    (void)idx, (void)text;
    l->OC = l->C + l->spec.a + l->spec.pad;
    return CNN_OK;
}

static void chpad_forward_row(Layer *l, const float *x, const LayerRun *r) {
    const size_t plane = (size_t)l->H * l->W, before = (size_t)l->spec.a * plane, after = (size_t)l->spec.pad * plane;
#pragma omp parallel for schedule(static) if ((size_t)r->B * l->out_size >= CNN_PAR_MIN_WORK)
    for (int b = 0; b < r->B; b++) {
        float *y = l->out + (size_t)b * l->out_size;
        memset(y, 0, sizeof(float) * before);
        memcpy(y + before, x + (size_t)b * l->in_size, sizeof(float) * l->in_size);
        memset(y + before + l->in_size, 0, sizeof(float) * after);
    }
}

static void chpad_backward_row(Layer *l, const float *x, const float *dy, float *dx, const LayerRun *r) {
    (void)x;
    if (!dx) return;
    const size_t before = (size_t)l->spec.a * l->H * l->W;
#pragma omp parallel for schedule(static) if ((size_t)r->B * l->out_size >= CNN_PAR_MIN_WORK)
    for (int b = 0; b < r->B; b++)
        memcpy(dx + (size_t)b * l->in_size, dy + (size_t)b * l->out_size + before, sizeof(float) * l->in_size);
}

const LayerOps chpad_layer = {
    .name = "chpad",
    .positional = {"before", "after"},
    .defaults = chpad_defaults,
    .set_arg = chpad_set_arg,
    .finish = chpad_finish,
    .format = chpad_format,
    .shape = chpad_shape,
    .forward = chpad_forward_row,
    .backward = chpad_backward_row,
};
