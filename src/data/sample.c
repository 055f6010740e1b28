// cnn_dataset_sample: a seeded random subset stratified by class. Image
// folders and lists are read class after class, so their first N images
// would be a few classes only; this draws from every class in proportion.
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"
#include "data_internal.h"

// Each class's share of count. One image a class first when count reaches
// the classes present, then what is left in proportion to each class's
// remaining images, by largest remainders (Hamilton's method), ties in a
// seeded order of the classes. n < 2^32 keeps every product in 64 bits.
static void class_quotas(const size_t *have, int K, size_t count, uint64_t seed, size_t *quota) {
    int present = 0;
    for (int k = 0; k < K; k++) present += have[k] > 0;
    const size_t least = count >= (size_t)present ? 1 : 0;
    size_t left = count, room = 0;
    for (int k = 0; k < K; k++) {
        quota[k] = have[k] ? least : 0;
        left -= quota[k];
        room += have[k] - quota[k];
    }
    uint64_t rem[256];
    size_t extra = left;
    for (int k = 0; k < K; k++) {
        const uint64_t p = room ? (uint64_t)left * (have[k] - quota[k]) : 0;
        quota[k] += (size_t)(room ? p / room : 0);
        rem[k] = room ? p % room : 0;
        extra -= (size_t)(room ? p / room : 0);
    }
    // The remainders add up to extra * room, so extra classes have one > 0;
    // each of those has room for one more image.
    uint32_t order[256];
    CnnRng r;
    cnn_rng_derive(&r, seed, UINT64_MAX, 0);
    cnn_rng_permutation(&r, order, (size_t)K);
    for (; extra > 0; extra--) {
        int best = -1;
        for (int i = 0; i < K; i++)
            if (rem[order[i]] > 0 && (best < 0 || rem[order[i]] > rem[best])) best = (int)order[i];
        quota[best]++;
        rem[best] = 0;
    }
}

// The images of src whose mark is want, in src's order, into out (m of them).
static CnnStatus copy_marked(const CnnDataset *src, const uint8_t *mark, uint8_t want, size_t m, CnnDataset *out) {
    CnnStatus st = dataset_alloc(out, "sample", m, src->c, src->h, src->w, src->classes);
    if (!st && src->class_names) st = dataset_set_names(out, (const char *const *)src->class_names);
    if (st) {
        cnn_dataset_free(out);
        return st;
    }
    const size_t is = cnn_dataset_image_size(src);
    size_t j = 0;
    for (size_t i = 0; i < src->n; i++)
        if (mark[i] == want) {
            memcpy(out->images + j * is, src->images + i * is, is);
            out->labels[j++] = src->labels[i];
        }
    return CNN_OK;
}

CnnStatus cnn_dataset_sample(const CnnDataset *src, size_t count, uint64_t seed, CnnDataset *sample,
                             CnnDataset *rest) {
    memset(sample, 0, sizeof *sample);
    if (rest) memset(rest, 0, sizeof *rest);
    const size_t n = src->n;
    const int K = src->classes;
    if (count == 0 || count > n || n > UINT32_MAX || K < 1 || K > 256)
        return cnn_error(CNN_EARG, "a sample of %zu of %zu images in %d classes (at most 2^32-1 images, 1..256 "
                         "classes)", count, n, K);
    size_t have[256] = {0}, quota[256], start[256];
    for (size_t i = 0; i < n; i++) {
        if (src->labels[i] >= K)
            return cnn_error(CNN_EARG, "sample: image %zu has label %d of %d classes", i, src->labels[i], K);
        have[src->labels[i]]++;
    }
    class_quotas(have, K, count, seed, quota);
    uint32_t *idx = malloc(n * sizeof *idx);  // the images of class 0, then of class 1, ...
    uint8_t *mark = calloc(n, 1);             // 1: in the sample
    if (!idx || !mark) {
        free(idx);
        free(mark);
        return cnn_error(CNN_ENOMEM, "sample: cannot allocate the index of %zu images", n);
    }
    size_t fill[256], at = 0;
    for (int k = 0; k < K; k++) {
        start[k] = fill[k] = at;
        at += have[k];
    }
    for (size_t i = 0; i < n; i++) idx[fill[src->labels[i]]++] = (uint32_t)i;
    // A partial Fisher-Yates shuffle of each class's images: the first
    // quota of them are its sample.
    for (int k = 0; k < K; k++) {
        CnnRng r;
        cnn_rng_derive(&r, seed, (uint64_t)k, 0);
        uint32_t *c = idx + start[k];
        for (size_t j = 0; j < quota[k]; j++) {
            const size_t t = j + cnn_rng_below(&r, (uint32_t)(have[k] - j));
            const uint32_t v = c[t];
            c[t] = c[j];
            c[j] = v;
            mark[v] = 1;
        }
    }
    free(idx);
    CnnStatus st = copy_marked(src, mark, 1, count, sample);
    if (!st && rest && count < n) {
        st = copy_marked(src, mark, 0, n - count, rest);
        if (st) cnn_dataset_free(sample);
    }
    free(mark);
    return st;
}
