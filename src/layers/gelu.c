// GELU (Hendrycks & Gimpel 2016): y = x * Phi(x), PyTorch's nn.GELU() (the
// erf form, not the tanh one). erff and expf of libm are scalar calls, 20x
// slower than the convolutions around them at batch 1024, so erf and exp
// are polynomials here, in plain C that the compiler vectorises: erf from
// Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), exp by range
// reduction to [-ln2/2, ln2/2] and a degree-6 Taylor polynomial. The
// backward pass reads the input: dy * (Phi(x) + x * phi(x)).
#include <math.h>
#include <string.h>

#include "layers/layer.h"

// e^x for -87 <= x <= 0.
static inline float exp_neg(float x) {
    // Round to nearest by the 1.5 * 2^23 trick: SSE2 has no vector round.
    const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 in two parts
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// Phi(x) = (1 + erf(x / sqrt 2)) / 2 and phi(x) = exp(-x^2/2) / sqrt(2 pi).
static inline void normal_cdf_pdf(float x, float *cdf, float *pdf) {
    // |x| / sqrt 2, capped where erf is 1 in float and e^(-z^2) stays above -87.
    // Capped in the integer domain (non-negative floats order as their bits):
    // a float compare stops GCC vectorising under -ftrapping-math.
    const float a = fabsf(x) * 0.70710678f;
    int32_t bits, cap_bits;
    const float cap = 9.0f;
    memcpy(&bits, &a, sizeof bits);
    memcpy(&cap_bits, &cap, sizeof cap_bits);
    bits = bits < cap_bits ? bits : cap_bits;
    float z;
    memcpy(&z, &bits, sizeof z);
    const float t = 1.0f / (1.0f + 0.3275911f * z);
    const float e = exp_neg(-z * z);
    const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f +
                       t * (-1.453152027f + t * 1.061405429f))));
    const float erf_abs = 1.0f - poly * e;
    *cdf = 0.5f + 0.5f * copysignf(erf_abs, x);
    *pdf = 0.39894228f * e;
}

void gelu_forward(const float *x, float *y, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        float cdf, pdf;
        normal_cdf_pdf(x[i], &cdf, &pdf);
        y[i] = x[i] * cdf;
    }
}

void gelu_backward(const float *x, const float *dy, float *dx, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        float cdf, pdf;
        normal_cdf_pdf(x[i], &cdf, &pdf);
        dx[i] = dy[i] * (cdf + x[i] * pdf);
    }
}

// ---------------------------------------------------------------- layer row
static void gelu_forward_row(Layer *l, const float *x, const LayerRun *r) {
    gelu_forward(x, l->out, (size_t)r->B * l->out_size);
}

static void gelu_backward_row(Layer *l, const float *x, const float *dy, float *dx,
                              const LayerRun *r) {
    if (dx) gelu_backward(x, dy, dx, (size_t)r->B * l->out_size);
}

const LayerOps gelu_layer = {
    .name = "gelu",
    .forward = gelu_forward_row,
    .backward = gelu_backward_row,
};
