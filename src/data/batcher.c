// Epoch iterator: uint8 images -> normalised float32 batches, with optional
// torchvision-style augmentation. Every random choice comes from a stream
// derived from (seed, epoch, ...), never from thread or batch order, so the
// batches are bitwise identical for any thread count and any batch size.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"

// ---------------------------------------------------------------- one image
void cnn_augment_draw(const CnnAugment *aug, uint64_t seed, uint64_t epoch, uint64_t index, int *dy,
                      int *dx, int *flip) {
    *dy = *dx = *flip = 0;
    if (!aug || (aug->crop_pad <= 0 && !aug->hflip)) return;
    CnnRng r;
    cnn_rng_derive(&r, seed, epoch, index);
    if (aug->crop_pad > 0) {
        uint32_t span = 2u * (uint32_t)aug->crop_pad + 1u;
        *dy = (int)cnn_rng_below(&r, span) - aug->crop_pad;
        *dx = (int)cnn_rng_below(&r, span) - aug->crop_pad;
    }
    if (aug->hflip == 1) *flip = (int)cnn_rng_below(&r, 2);
    if (aug->hflip == 2) {
        // One coin per image for the whole run, its side swapped every other epoch.
        CnnRng once;
        cnn_rng_derive(&once, seed, UINT64_MAX - 1, index);
        *flip = (int)cnn_rng_below(&once, 2) ^ (int)(epoch & 1);
    }
}

// Where row or column i of an image of n falls: mirrored back in with
// reflect, else -1 outside (a black pad).
static inline int source_index(int i, int n, int reflect) {
    if (reflect) return cnn_reflect_index(i, n);
    return i >= 0 && i < n ? i : -1;
}

// One plane src (h,w) -> dst (h,w) through lut (256): see cnn_image_to_float.
static void plane_to_float(const uint8_t *src, int h, int w, const float *lut, int dy, int dx,
                           int flip, int reflect, float *dst) {
    const float pad = lut[0];
    for (int y = 0; y < h; y++) {
        float *o = dst + (size_t)y * w;
        int sy = source_index(y + dy, h, reflect);
        if (sy < 0) {
            for (int x = 0; x < w; x++) o[x] = pad;
            continue;
        }
        const uint8_t *row = src + (size_t)sy * w;
        if (!flip && dx == 0) {
            for (int x = 0; x < w; x++) o[x] = lut[row[x]];
        } else {
            for (int x = 0; x < w; x++) {
                int sx = source_index((flip ? w - 1 - x : x) + dx, w, reflect);
                o[x] = sx >= 0 ? lut[row[sx]] : pad;
            }
        }
    }
}

static void fill_lut(float *lut, float mean, float std) {
    for (int p = 0; p < 256; p++) lut[p] = ((float)p / 255.0f - mean) / std;
}

void cnn_image_to_float(const uint8_t *src, int c, int h, int w, const float *mean,
                        const float *std, int dy, int dx, int flip, float *dst) {
    cnn_image_to_float_pad(src, c, h, w, mean, std, dy, dx, flip, 0, dst);
}

void cnn_image_to_float_pad(const uint8_t *src, int c, int h, int w, const float *mean, const float *std, int dy,
                            int dx, int flip, int reflect, float *dst) {
    size_t hw = (size_t)h * w;
    float lut[256];
    for (int ch = 0; ch < c; ch++) {
        fill_lut(lut, mean ? mean[ch] : 0.0f, std ? std[ch] : 1.0f);
        plane_to_float(src + ch * hw, h, w, lut, dy, dx, flip, reflect, dst + ch * hw);
    }
}

// ---------------------------------------------------------------- batcher
CnnStatus cnn_batcher_init(CnnBatcher *b, const CnnDataset *d, const CnnBatcherConfig *cfg) {
    memset(b, 0, sizeof *b);
    if (!cfg) return cnn_error(CNN_EARG, "batcher: no configuration (cfg is NULL)");
    if (!d || d->n == 0 || !d->images) return cnn_error(CNN_EARG, "batcher: the data set is empty");
    if (cfg->batch <= 0)
        return cnn_error(CNN_EARG, "batcher: batch size %d must be > 0", cfg->batch);
    if (d->n > UINT32_MAX)
        return cnn_error(CNN_EARG, "batcher: %zu images exceed the limit of %u", d->n, UINT32_MAX);
    int maxpad = (d->h < d->w ? d->h : d->w) - (cfg->aug.reflect ? 1 : 0);  // a mirror needs a pixel past the edge
    if (cfg->aug.hflip < 0 || cfg->aug.hflip > 2)
        return cnn_error(CNN_EARG, "batcher: hflip %d is not 0 (off), 1 (random) or 2 (alternating)", cfg->aug.hflip);
    if (cfg->aug.crop_pad < 0 || cfg->aug.crop_pad > maxpad)
        return cnn_error(CNN_EARG, "batcher: crop_pad %d is outside 0..%d for %dx%d images",
                         cfg->aug.crop_pad, maxpad, d->h, d->w);
    for (int ch = 0; ch < d->c; ch++) {
        float s = cfg->std ? cfg->std[ch] : 1.0f;
        float m = cfg->mean ? cfg->mean[ch] : 0.0f;
        if (!(s > 0.0f) || !isfinite(s) || !isfinite(m))
            return cnn_error(CNN_EARG, "batcher: channel %d has mean %g, std %g; std must be > 0",
                             ch, (double)m, (double)s);
    }
    b->lut = malloc((size_t)d->c * 256 * sizeof *b->lut);
    b->order = malloc(d->n * sizeof *b->order);
    if (!b->lut || !b->order) {
        cnn_batcher_free(b);
        return cnn_error(CNN_ENOMEM, "batcher: cannot allocate the order of %zu images", d->n);
    }
    for (int ch = 0; ch < d->c; ch++)
        fill_lut(b->lut + (size_t)ch * 256, cfg->mean ? cfg->mean[ch] : 0.0f,
                 cfg->std ? cfg->std[ch] : 1.0f);
    b->data = d;
    b->cfg = *cfg;
    b->cfg.mean = b->cfg.std = NULL;  // the caller's arrays need not outlive init
    cnn_batcher_epoch(b, 0);
    return CNN_OK;
}

void cnn_batcher_free(CnnBatcher *b) {
    free(b->lut);
    free(b->order);
    memset(b, 0, sizeof *b);
}

void cnn_batcher_epoch(CnnBatcher *b, uint64_t epoch) {
    b->epoch = epoch;
    b->pos = b->last_pos = 0;
    b->last_B = 0;
    if (b->cfg.shuffle) {
        // The index UINT64_MAX keeps this stream apart from the per-image
        // augmentation streams (seed, epoch, index < 2^32).
        CnnRng r;
        cnn_rng_derive(&r, b->cfg.seed, epoch, UINT64_MAX);
        cnn_rng_permutation(&r, b->order, b->data->n);
    } else {
        for (size_t i = 0; i < b->data->n; i++) b->order[i] = (uint32_t)i;
    }
}

int cnn_batcher_peek(const CnnBatcher *b) {
    const size_t left = b->data->n - b->pos;
    const int B = left < (size_t)b->cfg.batch ? (int)left : b->cfg.batch;
    return b->cfg.drop_last && B < b->cfg.batch ? 0 : B;
}

int cnn_batcher_next(CnnBatcher *b, float *x, uint8_t *labels) {
    return cnn_batcher_next_part(b, 0, cnn_batcher_peek(b), x, labels);
}

int cnn_batcher_next_part(CnnBatcher *b, int first, int count, float *x, uint8_t *labels) {
    const CnnDataset *d = b->data;
    const int B = cnn_batcher_peek(b);
    if (B == 0) {
        b->last_B = 0;
        return 0;
    }
    if (first < 0 || count < 0 || first > B - count) return -1;
    const uint32_t *idx = b->order + b->pos + first;
    const size_t is = cnn_dataset_image_size(d), hw = (size_t)d->h * d->w;
    const CnnAugment *aug = &b->cfg.aug;
    // x (B,c,h,w): each image depends only on its data set index and epoch.
#pragma omp parallel for schedule(static)
    for (int i = 0; i < count; i++) {
        int dy, dx, flip;
        cnn_augment_draw(aug, b->cfg.seed, b->epoch, idx[i], &dy, &dx, &flip);
        const uint8_t *src = d->images + (size_t)idx[i] * is;
        float *dst = x + (size_t)i * is;
        for (int ch = 0; ch < d->c; ch++)
            plane_to_float(src + ch * hw, d->h, d->w, b->lut + (size_t)ch * 256, dy, dx, flip, aug->reflect,
                           dst + ch * hw);
    }
    if (labels)
        for (int i = 0; i < count; i++) labels[i] = d->labels[idx[i]];
    b->last_pos = b->pos;
    b->last_B = B;
    b->pos += (size_t)B;
    return B;
}

void cnn_batcher_skip(CnnBatcher *b, size_t batches) {
    // Resuming mid-epoch: the permutation is a function of (seed, epoch), so
    // skipping positions reproduces exactly the batches an unbroken run sees.
    size_t to = batches * (size_t)b->cfg.batch;
    b->pos = to < b->data->n ? to : b->data->n;
}

size_t cnn_batcher_num_batches(const CnnBatcher *b) {
    size_t n = b->data->n, B = (size_t)b->cfg.batch;
    return b->cfg.drop_last ? n / B : (n + B - 1) / B;
}

const uint32_t *cnn_batcher_indices(const CnnBatcher *b, int *B) {
    if (B) *B = b->last_B;
    return b->order + b->last_pos;
}
