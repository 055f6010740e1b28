// ReLU; the backward pass reads the forward output, so it can run in place.
// NaN passes through (as in PyTorch), so a diverging run shows in the loss.
#include "internal.h"

void relu_forward(const float *x, float *y, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void relu_backward(const float *y, const float *dy, float *dx, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) dx[i] = y[i] <= 0.0f ? 0.0f : dy[i];
}
