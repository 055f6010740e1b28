// Aligned float storage. 64 bytes = one cache line = one AVX-512 vector.
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"

float *cnn_alloc_floats(size_t count) {
    if (count == 0) count = 1;
    if (count > SIZE_MAX / sizeof(float) - 64) return NULL;
    size_t bytes = (count * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void cnn_free(void *p) { free(p); }
