// Batch normalisation over (B,H,W) per channel (Ioffe & Szegedy 2015), with
// PyTorch's conventions: biased variance to normalise, unbiased variance in
// the running estimate, running = (1-momentum)*running + momentum*batch.
// Parallel over channels; each channel's sums run in one fixed order (double).
#include <math.h>

#include "internal.h"

void batchnorm_forward(const BatchNorm *l, const float *x, float *y, int B, int training) {
    // x, y (B,C,H,W); gamma, beta, running_*, save_* (C)
    const int C = l->C, HW = l->HW;
#pragma omp parallel for schedule(static) if ((size_t)B * C * HW >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < C; c++) {
        float mean, invstd;
        if (training) {
            double s = 0.0, ss = 0.0;
            for (int b = 0; b < B; b++) {
                const float *p = x + ((size_t)b * C + c) * HW;
                for (int i = 0; i < HW; i++) s += p[i];
            }
            const double n = (double)B * HW, m = s / n;
            for (int b = 0; b < B; b++) {
                const float *p = x + ((size_t)b * C + c) * HW;
                for (int i = 0; i < HW; i++) ss += (p[i] - m) * (p[i] - m);
            }
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
        double sdy = 0.0, sdyx = 0.0;
        for (int b = 0; b < B; b++) {
            const float *p = x + ((size_t)b * C + c) * HW, *g = dy + ((size_t)b * C + c) * HW;
            for (int i = 0; i < HW; i++) {
                sdy += g[i];
                sdyx += (double)g[i] * ((p[i] - mean) * invstd);
            }
        }
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
