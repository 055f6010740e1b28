// Pieces of a training run that embedders want too: learning-rate schedules
// and evaluation over a whole data set.
#include <math.h>
#include <string.h>

#include "internal.h"

CnnStatus cnn_schedule_parse(const char *name, CnnScheduleKind *kind) {
    if (!strcmp(name, "constant")) *kind = CNN_SCHED_CONSTANT;
    else if (!strcmp(name, "step")) *kind = CNN_SCHED_STEP;
    else if (!strcmp(name, "cosine")) *kind = CNN_SCHED_COSINE;
    else return cnn_error(CNN_EARG, "unknown schedule '%s' (expected constant, step or cosine)", name);
    return CNN_OK;
}

const char *cnn_schedule_name(CnnScheduleKind kind) {
    static const char *names[] = {"constant", "step", "cosine"};
    return names[kind];
}

float cnn_schedule_lr(const CnnSchedule *s, long step, long steps_per_epoch) {
    // Linear warm-up from lr/warmup to lr over the first `warmup` steps, then the schedule.
    if (step < s->warmup) return s->lr * (float)(step + 1) / (float)s->warmup;
    const long total = (long)s->epochs * steps_per_epoch;
    switch (s->kind) {
    case CNN_SCHED_STEP: {
        long epoch = steps_per_epoch > 0 ? step / steps_per_epoch : 0;
        return s->lr * powf(s->gamma, (float)(epoch / (s->step_epochs > 0 ? s->step_epochs : 1)));
    }
    case CNN_SCHED_COSINE: {
        // Cosine annealing to 0 over the steps after warm-up (Loshchilov & Hutter 2017).
        long span = total - s->warmup;
        double t = span > 0 ? (double)(step - s->warmup) / (double)span : 1.0;
        if (t > 1.0) t = 1.0;
        return (float)(0.5 * s->lr * (1.0 + cos(3.14159265358979323846 * t)));
    }
    default: return s->lr;
    }
}

CnnStatus cnn_evaluate(CnnNet *net, const CnnDataset *d, const float *mean, const float *std,
                       double *loss, int64_t *cm) {
    const int K = cnn_net_num_classes(net), B = cnn_net_max_batch(net);
    memset(cm, 0, sizeof(int64_t) * K * K);
    *loss = 0.0;
    CnnBatcher it;
    CnnBatcherConfig cfg = {.batch = B, .shuffle = 0, .mean = mean, .std = std};
    CnnStatus st = cnn_batcher_init(&it, d, &cfg);
    if (st) return st;
    float *x = cnn_alloc_floats((size_t)B * cnn_dataset_image_size(d));
    uint8_t *y = malloc((size_t)B);
    if (!x || !y) {
        cnn_batcher_free(&it);
        cnn_free(x);
        free(y);
        return cnn_error(CNN_ENOMEM, "cannot allocate an evaluation batch");
    }
    double sum = 0.0;
    int n;
    while ((n = cnn_batcher_next(&it, x, y)) > 0) {
        const float *logits = cnn_net_forward(net, x, n, 0);
        sum += (double)cnn_net_loss(net, y, n, NULL) * n;
        cnn_confusion_add(cm, K, logits, y, n);
    }
    *loss = sum / (double)d->n;
    cnn_batcher_free(&it);
    cnn_free(x);
    free(y);
    return CNN_OK;
}
