// Fused softmax + cross-entropy. Subtracting the row max keeps exp() finite
// for any logits; the gradient of the mean loss is (p - onehot) / B.
#include <math.h>

#include "internal.h"

float softmax_xent(const float *logits, const uint8_t *labels, float *dlogits, int B, int K,
                   int *correct) {
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
        loss += log(sum) - ((double)z[y] - zmax);
        hits += arg == y;
        if (d) {
            for (int k = 0; k < K; k++)
                d[k] = (float)((exp((double)z[k] - zmax) / sum - (k == y)) / B);
        }
    }
    if (correct) *correct = hits;
    return (float)(loss / B);
}
