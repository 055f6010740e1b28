// Naive double-precision layers: the definitions, written for clarity, used
// as the ground truth for the float kernels and for finite differences.
#include "testutil.h"

void ref_conv(const double *x, const double *w, const double *b, double *y, int B, int C, int H,
              int W, int OC, int KH, int KW, int S, int P, int OH, int OW) {
    for (int n = 0; n < B; n++)
        for (int o = 0; o < OC; o++)
            for (int i = 0; i < OH; i++)
                for (int j = 0; j < OW; j++) {
                    double s = b ? b[o] : 0.0;
                    for (int c = 0; c < C; c++)
                        for (int u = 0; u < KH; u++)
                            for (int v = 0; v < KW; v++) {
                                int ih = i * S - P + u, iw = j * S - P + v;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    s += x[((n * C + c) * H + ih) * W + iw] *
                                         w[((o * C + c) * KH + u) * KW + v];
                            }
                    y[((n * OC + o) * OH + i) * OW + j] = s;
                }
}

void ref_maxpool(const double *x, double *y, int B, int C, int H, int W, int K, int S, int OH, int OW) {
    for (int p = 0; p < B * C; p++)
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++) {
                double m = -INFINITY;
                for (int u = 0; u < K; u++)
                    for (int v = 0; v < K; v++) m = fmax(m, x[(p * H + i * S + u) * W + j * S + v]);
                y[(p * OH + i) * OW + j] = m;
            }
}

void ref_avgpool(const double *x, double *y, int B, int C, int H, int W, int K, int S, int OH, int OW) {
    for (int p = 0; p < B * C; p++)
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++) {
                double s = 0.0;
                for (int u = 0; u < K; u++)
                    for (int v = 0; v < K; v++) s += x[(p * H + i * S + u) * W + j * S + v];
                y[(p * OH + i) * OW + j] = s / (K * K);
            }
}

void ref_gap(const double *x, double *y, int B, int C, int HW) {
    for (int p = 0; p < B * C; p++) {
        double s = 0.0;
        for (int i = 0; i < HW; i++) s += x[p * HW + i];
        y[p] = s / HW;
    }
}

void ref_relu(const double *x, double *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0;
}

void ref_gelu(const double *x, double *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
}

void ref_batchnorm(const double *x, const double *gamma, const double *beta, double *y, int B,
                   int C, int HW, double eps) {
    for (int c = 0; c < C; c++) {
        double s = 0.0, ss = 0.0, n = (double)B * HW;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) s += x[(b * C + c) * HW + i];
        double mean = s / n;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                double d = x[(b * C + c) * HW + i] - mean;
                ss += d * d;
            }
        double inv = 1.0 / sqrt(ss / n + eps);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++)
                y[(b * C + c) * HW + i] = gamma[c] * (x[(b * C + c) * HW + i] - mean) * inv + beta[c];
    }
}

void ref_dense(const double *x, const double *w, const double *b, double *y, int B, int IN, int OUT) {
    for (int n = 0; n < B; n++)
        for (int o = 0; o < OUT; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < IN; i++) s += x[n * IN + i] * w[o * IN + i];
            y[n * OUT + o] = s;
        }
}

double ref_softmax_xent(const double *z, const uint8_t *labels, int B, int K) {
    return ref_softmax_xent_smoothed(z, labels, B, K, 0.0);
}

// -sum_k target_k log softmax(z)_k, target = (1 - eps) onehot + eps / K.
double ref_softmax_xent_smoothed(const double *z, const uint8_t *labels, int B, int K, double eps) {
    double loss = 0.0;
    for (int n = 0; n < B; n++) {
        double m = z[n * K];
        for (int k = 1; k < K; k++) m = fmax(m, z[n * K + k]);
        double s = 0.0;
        for (int k = 0; k < K; k++) s += exp(z[n * K + k] - m);
        for (int k = 0; k < K; k++) {
            const double target = (k == labels[n] ? 1.0 - eps : 0.0) + eps / K;
            loss += target * (m + log(s) - z[n * K + k]);
        }
    }
    return loss / B;
}
