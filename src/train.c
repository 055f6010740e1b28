// Pieces of a training run that embedders want too: learning-rate schedules
// and evaluation over a whole data set.
#include <math.h>
#include <string.h>

#include "internal.h"

CnnStatus cnn_schedule_parse(const char *name, CnnScheduleKind *kind) {
    if (!strcmp(name, "constant")) *kind = CNN_SCHED_CONSTANT;
    else if (!strcmp(name, "step")) *kind = CNN_SCHED_STEP;
    else if (!strcmp(name, "cosine")) *kind = CNN_SCHED_COSINE;
    else if (!strcmp(name, "linear")) *kind = CNN_SCHED_LINEAR;
    else return cnn_error(CNN_EARG, "unknown schedule '%s' (expected constant, step, cosine or linear)", name);
    return CNN_OK;
}

const char *cnn_schedule_name(CnnScheduleKind kind) {
    static const char *names[] = {"constant", "step", "cosine", "linear"};
    return names[kind];
}

float cnn_schedule_lr(const CnnSchedule *s, long step, long steps_per_epoch) {
    // Linear warm-up from lr/warmup (or start_frac*lr) to lr over the first
    // `warmup` steps, then the schedule.
    const double f0 = s->start_frac, f1 = s->end_frac;
    if (step < s->warmup) return (float)(s->lr * (f0 + (1.0 - f0) * (double)(step + 1) / (double)s->warmup));
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
        return (float)(s->lr * (f1 + (1.0 - f1) * 0.5 * (1.0 + cos(3.14159265358979323846 * t))));
    }
    case CNN_SCHED_LINEAR: {
        // Linear decay to 0 over the steps after warm-up (with --warmup: the
        // triangular "one-cycle" shape of fast CIFAR recipes).
        long span = total - s->warmup;
        double t = span > 0 ? (double)(step - s->warmup) / (double)span : 1.0;
        if (t > 1.0) t = 1.0;
        return (float)(s->lr * (1.0 - (1.0 - f1) * t));
    }
    default: return s->lr;
    }
}

CnnStatus cnn_evaluate(CnnNet *net, const CnnDataset *d, const float *mean, const float *std,
                       double *loss, int64_t *cm) {
    return cnn_evaluate_tta(net, d, mean, std, 0, loss, cm);
}

// x (B, C, H, W) mirrored left to right into out.
static void flip_rows(const float *x, float *out, size_t rows, int W) {
    for (size_t r = 0; r < rows; r++)
        for (int w = 0; w < W; w++) out[r * W + w] = x[r * W + W - 1 - w];
}

// x (planes, H, W) shifted: out[y][x] = x[y + d][x + d], the edges mirrored
// (PyTorch's F.pad(mode='reflect') then a crop).
static void shift_planes(const float *x, float *out, size_t planes, int H, int W, int d) {
    for (size_t p = 0; p < planes; p++)
        for (int y = 0; y < H; y++) {
            const float *row = x + (p * H + (size_t)cnn_reflect_index(y + d, H)) * W;
            for (int c = 0; c < W; c++) out[(p * H + y) * W + c] = row[cnn_reflect_index(c + d, W)];
        }
}

// acc += weight * (mean of the logits of x and of its mirror image).
static void add_mirror_mean(CnnNet *net, const float *x, float *xf, int n, const CnnDataset *d, float weight,
                            float *acc) {
    const size_t K = (size_t)cnn_net_num_classes(net), nk = (size_t)n * K;
    const float *logits = cnn_net_forward(net, x, n, 0);
    for (size_t i = 0; i < nk; i++) acc[i] += 0.5f * weight * logits[i];
    flip_rows(x, xf, (size_t)n * d->c * d->h, d->w);
    logits = cnn_net_forward(net, xf, n, 0);
    for (size_t i = 0; i < nk; i++) acc[i] += 0.5f * weight * logits[i];
}

CnnStatus cnn_evaluate_tta(CnnNet *net, const CnnDataset *d, const float *mean, const float *std, int level,
                           double *loss, int64_t *cm) {
    if (level < 0 || level > 2) return cnn_error(CNN_EARG, "test-time augmentation level %d is not 0, 1 or 2", level);
    if (level == 2 && (d->h < 2 || d->w < 2))
        return cnn_error(CNN_EARG, "test-time augmentation 2 shifts images by a pixel; %dx%d is too small", d->h, d->w);
    const int K = cnn_net_num_classes(net), B = cnn_net_max_batch(net);
    memset(cm, 0, sizeof(int64_t) * K * K);
    *loss = 0.0;
    CnnBatcher it;
    CnnBatcherConfig cfg = {.batch = B, .shuffle = 0, .mean = mean, .std = std};
    CnnStatus st = cnn_batcher_init(&it, d, &cfg);
    if (st) return st;
    const size_t image = cnn_dataset_image_size(d);
    float *x = cnn_alloc_floats((size_t)B * image), *xf = level ? cnn_alloc_floats((size_t)B * image) : NULL;
    float *xs = level == 2 ? cnn_alloc_floats((size_t)B * image) : NULL;
    float *avg = level ? cnn_alloc_floats((size_t)B * K) : NULL;
    uint8_t *y = malloc((size_t)B);
    if (!x || !y || (level && (!xf || !avg)) || (level == 2 && !xs)) {
        cnn_batcher_free(&it);
        cnn_free(x);
        cnn_free(xf);
        cnn_free(xs);
        cnn_free(avg);
        free(y);
        return cnn_error(CNN_ENOMEM, "cannot allocate an evaluation batch");
    }
    double sum = 0.0;
    int n;
    while ((n = cnn_batcher_next(&it, x, y)) > 0) {
        const float *logits;
        if (level) {
            memset(avg, 0, sizeof(float) * (size_t)n * K);
            add_mirror_mean(net, x, xf, n, d, level == 2 ? 0.5f : 1.0f, avg);
            for (int shift = -1; level == 2 && shift <= 1; shift += 2) {
                shift_planes(x, xs, (size_t)n * d->c, d->h, d->w, shift);
                add_mirror_mean(net, xs, xf, n, d, 0.25f, avg);
            }
            logits = avg;
        } else {
            logits = cnn_net_forward(net, x, n, 0);
        }
        sum += (double)softmax_xent(logits, y, NULL, n, K, 0.0f, NULL) * n;
        cnn_confusion_add(cm, K, logits, y, n);
    }
    *loss = sum / (double)d->n;
    cnn_batcher_free(&it);
    cnn_free(x);
    cnn_free(xf);
    cnn_free(xs);
    cnn_free(avg);
    free(y);
    return CNN_OK;
}
