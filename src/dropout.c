// Inverted dropout: kept units are scaled by 1/(1-p) in training so that
// evaluation is the identity. Sample i's mask comes from the stream
// (seed, step, i), the same for any thread count or batch split.
#include <string.h>

#include "internal.h"

void dropout_forward(float p, const float *x, float *y, float *mask, int B, size_t per_sample,
                     uint64_t seed, uint64_t step, int training) {
    // x, y, mask (B, per_sample)
    if (!training || p <= 0.0f) {
        if (y != x) memcpy(y, x, sizeof(float) * (size_t)B * per_sample);
        return;
    }
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if ((size_t)B * per_sample >= CNN_PAR_MIN_WORK)
    for (int b = 0; b < B; b++) {
        CnnRng r;
        cnn_rng_derive(&r, seed, step, (uint64_t)b);
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
