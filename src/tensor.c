// Aligned float storage. 64 bytes = one cache line = one AVX-512 vector.
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"
#include "internal.h"

float *cnn_alloc_floats(size_t count) {
    if (count == 0) count = 1;
    if (count > SIZE_MAX / sizeof(float) - 64) return NULL;
    size_t bytes = (count * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void cnn_free(void *p) { free(p); }

CnnStatus cnn_tensor_alloc(CnnTensor *t, int n, int c, int h, int w) {
    t->data = NULL;
    t->n = t->c = t->h = t->w = 0;
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0)
        return cnn_error(CNN_ESHAPE, "tensor shape (%d,%d,%d,%d) must be positive", n, c, h, w);
    size_t count;
    if (mul_overflow4((size_t)n, (size_t)c, (size_t)h, (size_t)w, &count))
        return cnn_error(CNN_ENOMEM, "tensor shape (%d,%d,%d,%d) overflows size_t", n, c, h, w);
    t->data = cnn_alloc_floats(count);
    if (!t->data)
        return cnn_error(CNN_ENOMEM, "cannot allocate tensor (%d,%d,%d,%d): %zu MB", n, c, h, w,
                         count * sizeof(float) >> 20);
    t->n = n; t->c = c; t->h = h; t->w = w;
    return CNN_OK;
}

void cnn_tensor_free(CnnTensor *t) {
    free(t->data);
    t->data = NULL;
    t->n = t->c = t->h = t->w = 0;
}

size_t cnn_tensor_numel(const CnnTensor *t) { return (size_t)t->n * t->c * t->h * t->w; }
