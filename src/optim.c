// Adam (Kingma & Ba 2015, bias-corrected), AdamW (Loshchilov & Hutter 2019,
// decoupled decay) and SGD with momentum / Nesterov, all following PyTorch's
// torch.optim update rules so results compare one to one. Element-wise, so
// one parallel loop over the parameter arena.
#include <math.h>
#include <string.h>

#include "internal.h"

void cnn_opt_defaults(CnnOptimizer *opt, CnnOptKind kind) {
    memset(opt, 0, sizeof *opt);
    opt->kind = kind;
    opt->lr = kind == CNN_OPT_SGD ? 0.01f : 1e-3f;
    opt->beta1 = 0.9f;
    opt->beta2 = 0.999f;
    opt->eps = 1e-8f;
    opt->weight_decay = kind == CNN_OPT_ADAMW ? 0.01f : 0.0f;
    opt->momentum = kind == CNN_OPT_SGD ? 0.9f : 0.0f;
}

CnnStatus cnn_opt_parse(const char *name, CnnOptKind *kind) {
    if (!strcmp(name, "adam")) *kind = CNN_OPT_ADAM;
    else if (!strcmp(name, "adamw")) *kind = CNN_OPT_ADAMW;
    else if (!strcmp(name, "sgd")) *kind = CNN_OPT_SGD;
    else return cnn_error(CNN_EARG, "unknown optimizer '%s' (expected adam, adamw or sgd)", name);
    return CNN_OK;
}

const char *cnn_opt_name(CnnOptKind kind) {
    switch (kind) {
    case CNN_OPT_ADAM: return "adam";
    case CNN_OPT_ADAMW: return "adamw";
    case CNN_OPT_SGD: return "sgd";
    }
    return "?";
}

void cnn_opt_step(CnnOptimizer *opt, float *params, const float *grads, float *m, float *v,
                  size_t n, float lr) {
    cnn_opt_step_masked(opt, params, grads, m, v, n, lr, NULL);
}

// Weight decay of parameter i: wd, or 0 where decay[i] is 0 (decay may be NULL).
#define WD(i) (decay && !decay[i] ? 0.0f : wd)

void cnn_opt_step_masked(CnnOptimizer *opt, float *params, const float *grads, float *m, float *v, size_t n, float lr,
                         const uint8_t *decay) {
    cnn_opt_step_scaled(opt, params, grads, m, v, n, lr, decay, NULL);
}

// Gradient of parameter i: its multiplier times the gradient (the multiplier
// may be NULL: 1).
#define G(i) (scale ? scale[i] * grads[i] : grads[i])
// A frozen parameter (multiplier 0) keeps its value and moments.
#define FROZEN(i) (scale && scale[i] == 0.0f)

void cnn_opt_step_scaled(CnnOptimizer *opt, float *params, const float *grads, float *m, float *v, size_t n,
                         float lr, const uint8_t *decay, const float *scale) {
    if (lr < 0.0f) lr = opt->lr;
    opt->t++;
    const float wd = opt->weight_decay;
    if (opt->kind == CNN_OPT_SGD) {
        // PyTorch SGD: g += wd*p; buf = mu*buf + g (buf = g on the first step);
        // nesterov: g + mu*buf, else buf.
        const float mu = opt->momentum;
        const int first = opt->t == 1, nesterov = opt->nesterov;
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
        for (size_t i = 0; i < n; i++) {
            if (FROZEN(i)) continue;
            float g = G(i) + WD(i) * params[i];
            if (mu != 0.0f) {
                m[i] = first ? g : mu * m[i] + g;
                g = nesterov ? g + mu * m[i] : m[i];
            }
            params[i] -= lr * g;
        }
        return;
    }
    const float b1 = opt->beta1, b2 = opt->beta2, eps = opt->eps;
    const double bc1 = 1.0 - pow(b1, (double)opt->t), bc2 = 1.0 - pow(b2, (double)opt->t);
    const float step = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    const int adamw = opt->kind == CNN_OPT_ADAMW;
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        if (FROZEN(i)) continue;
        float g = G(i);
        if (adamw) params[i] *= 1.0f - lr * WD(i);
        else g += WD(i) * params[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        // PyTorch: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
        params[i] -= step * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
    }
}
