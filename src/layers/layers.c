// The table of layer kinds and the helpers their rows share.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

static const LayerOps *const ROWS[] = {
    &conv_layer, &maxpool_layer, &avgpool_layer, &gap_layer, &relu_layer, &gelu_layer,
    &batchnorm_layer, &dropout_layer, &flatten_layer, &dense_layer, &add_layer, &concat_layer,
    &chpad_layer, &mul_layer,
};
#define N_ROWS (sizeof ROWS / sizeof ROWS[0])

const LayerOps *layer_ops_find(const char *name) {
    for (size_t i = 0; i < N_ROWS; i++) {
        if (!strcmp(ROWS[i]->name, name)) return ROWS[i];
        for (int a = 0; a < 3 && ROWS[i]->aliases[a]; a++)
            if (!strcmp(ROWS[i]->aliases[a], name)) return ROWS[i];
    }
    return NULL;
}

void layer_ops_names(char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_ROWS && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? ", " : "", ROWS[i]->name);
}

// ---------------------------------------------------------------- helpers
CnnStatus layer_arg_int(const ArgSite *at, const char *key, const char *val, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(val, &end, 10);
    if (!*val || *end || errno || x < lo || x > hi)
        return cnn_error(CNN_EFORMAT,
                         "model description: layer %d (%s): %s=%s must be an integer in %d..%d",
                         at->idx, at->name, key, val, lo, hi);
    *out = (int)x;
    return CNN_OK;
}

CnnStatus layer_arg_float(const ArgSite *at, const char *key, const char *val, float lo, float hi,
                          float *out) {
    char *end;
    errno = 0;
    double x = strtod(val, &end);
    if (!*val || *end || errno || !(x >= lo && x <= hi))
        return cnn_error(CNN_EFORMAT,
                         "model description: layer %d (%s): %s=%s must be a number in [%g, %g]",
                         at->idx, at->name, key, val, lo, hi);
    *out = (float)x;
    return CNN_OK;
}

size_t layer_name_length(const char *s) {
    size_t k = 0;
    if (isalpha((unsigned char)s[0]))
        while (isalnum((unsigned char)s[k]) || s[k] == '_') k++;
    return k;
}

int layer_lr_arg(LayerSpec *s, const char *key, const char *val, const ArgSite *at, CnnStatus *st) {
    if (!strcmp(key, "weight_lr")) *st = layer_arg_float(at, key, val, 0.0f, 1e6f, &s->lr_w);
    else if (!strcmp(key, "bias_lr")) *st = layer_arg_float(at, key, val, 0.0f, 1e6f, &s->lr_b);
    else return 0;
    return 1;
}

const char *layer_lr_text(const LayerSpec *s, char *buf, size_t n) {
    char a[32], b[32];
    snprintf(buf, n, "%s%s%s%s", s->lr_w != 1.0f ? ",weight_lr=" : "",
             s->lr_w != 1.0f ? layer_fmt_float(s->lr_w, a, sizeof a) : "", s->lr_b != 1.0f ? ",bias_lr=" : "",
             s->lr_b != 1.0f ? layer_fmt_float(s->lr_b, b, sizeof b) : "");
    return buf;
}

// %g alone rounds dropout(0.9999999) to "dropout(1)", which does not parse.
const char *layer_fmt_float(float x, char *buf, size_t n) {
    snprintf(buf, n, "%g", x);
    if (strtof(buf, NULL) != x) snprintf(buf, n, "%.9g", x);
    return buf;
}

void layer_init_weights(const Layer *l, float *w, CnnRng *r, CnnInit init) {
    const double fan_in = (double)l->n_w / l->OC;
    if (init == CNN_INIT_HE) {
        // N(0, 2/fan_in) keeps ReLU activations' variance steady; biases stay 0.
        const double std = sqrt(2.0 / fan_in);
        for (size_t j = 0; j < l->n_w; j++) w[j] = (float)(cnn_rng_normal(r) * std);
        return;
    }
    // PyTorch's reset_parameters of Conv2d and Linear: kaiming_uniform_(a =
    // sqrt(5)) gives the bound gain * sqrt(3 / fan_in) with gain = sqrt(2 /
    // (1 + 5)), that is 1/sqrt(fan_in); the bias is uniform in the same range.
    const double bound = 1.0 / sqrt(fan_in);
    for (size_t j = 0; j < l->n_w + l->n_b; j++)
        w[j] = (float)((2.0 * cnn_rng_uniform(r) - 1.0) * bound);
}

double layer_weight_flops(const Layer *l) { return 2.0 * (double)l->n_w * l->OH * l->OW; }

int layer_weight_bias_tensors(const Layer *l, int idx, int ndim, const int64_t *shape, float *w, float *m,
                              float *v, NetTensor *out) {
    const int64_t vec[1] = {l->OC};
    int n = 0;
    layer_add_tensor(out, &n, idx, "weight", ndim, shape, w, m, v);
    if (l->n_b) layer_add_tensor(out, &n, idx, "bias", 1, vec, w + l->n_w, m + l->n_w, v + l->n_w);
    return n;
}

void layer_add_tensor(NetTensor *out, int *n, int idx, const char *what, int ndim,
                      const int64_t *shape, float *data, float *m, float *v) {
    NetTensor *x = &out[(*n)++];
    snprintf(x->name, sizeof x->name, "%d.%s", idx, what);
    x->ndim = ndim;
    x->numel = 1;
    for (int d = 0; d < ndim; d++) {
        x->shape[d] = shape[d];
        x->numel *= (size_t)shape[d];
    }
    x->data = data;
    x->m = m;
    x->v = v;
}
