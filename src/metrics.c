// Classification metrics from a confusion matrix (rows: true class, columns:
// predicted class): accuracy, per-class precision/recall/F1 and macro means
// (classes with no predictions or no examples count as 0, as scikit-learn).
#include <string.h>

#include "internal.h"

void cnn_confusion_add(int64_t *cm, int K, const float *logits, const uint8_t *labels, int B) {
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        int arg = 0;
        for (int k = 1; k < K; k++)
            if (z[k] > z[arg]) arg = k;
        cm[(size_t)labels[b] * K + arg]++;
    }
}

void cnn_metrics_compute(const int64_t *cm, int K, CnnMetrics *m) {
    memset(m, 0, sizeof *m);
    int64_t total = 0, hits = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            total += cm[(size_t)i * K + j];
            if (i == j) hits += cm[(size_t)i * K + j];
        }
    m->accuracy = total ? (double)hits / total : 0.0;
    for (int k = 0; k < K; k++) {
        int64_t tp = cm[(size_t)k * K + k], pred = 0, truth = 0;
        for (int i = 0; i < K; i++) {
            pred += cm[(size_t)i * K + k];
            truth += cm[(size_t)k * K + i];
        }
        double p = pred ? (double)tp / pred : 0.0, r = truth ? (double)tp / truth : 0.0;
        double f = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
        if (k < CNN_METRICS_MAX_CLASSES) {
            m->precision[k] = p;
            m->recall[k] = r;
            m->f1[k] = f;
            m->support[k] = truth;
        }
        m->macro_precision += p / K;
        m->macro_recall += r / K;
        m->macro_f1 += f / K;
    }
}
