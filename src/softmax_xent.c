// Fused softmax + cross-entropy. Subtracting the row max keeps exp() finite
// for any logits; the gradient of the mean loss is (p - target) / B.
// softmax_xent_sum returns the sum of B rows' losses, their gradients
// divided by norm (the whole batch's size when B rows are a part of it). With
// label smoothing eps the target is (1 - eps) onehot + eps / K, as PyTorch's
// CrossEntropyLoss(label_smoothing=eps): loss = -sum_k target_k log p_k.
#include <math.h>

#include "internal.h"

double softmax_xent_sum(const float *logits, const uint8_t *labels, float *dlogits, int B, int K, float smoothing,
                        int norm, int *correct) {
    // logits, dlogits (B,K), labels (B)
    double loss = 0.0;
    int hits = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        float *d = dlogits ? dlogits + (size_t)b * K : NULL;
        int arg = 0;
        for (int k = 1; k < K; k++)
            if (z[k] > z[arg]) arg = k;
        const double zmax = z[arg];
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += exp((double)z[k] - zmax);
        const int y = labels[b];
        CNN_ASSERT(y < K);
        const double lse = log(sum), eps = smoothing;
        loss += (1.0 - eps) * (lse - ((double)z[y] - zmax));
        if (eps > 0.0) {
            double all = 0.0;  // sum over classes of -log p_k
            for (int k = 0; k < K; k++) all += lse - ((double)z[k] - zmax);
            loss += eps / K * all;
        }
        hits += arg == y;
        if (d) {
            for (int k = 0; k < K; k++)
                d[k] = (float)((exp((double)z[k] - zmax) / sum - (1.0 - eps) * (k == y) - eps / K) / norm);
        }
    }
    if (correct) *correct = hits;
    return loss;
}

float softmax_xent(const float *logits, const uint8_t *labels, float *dlogits, int B, int K, float smoothing,
                   int *correct) {
    return (float)(softmax_xent_sum(logits, labels, dlogits, B, K, smoothing, B, correct) / B);
}
