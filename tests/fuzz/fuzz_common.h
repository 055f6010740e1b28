// Helpers shared by the libFuzzer targets: the parsers under test read files,
// so each input is written to a fixed per-process path under /tmp first.
#ifndef CNNC_FUZZ_COMMON_H
#define CNNC_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cnnc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// "/tmp/cnnc-fuzz-<pid>-<name>" into buf.
static inline void fuzz_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "/tmp/cnnc-fuzz-%ld-%s", (long)getpid(), name);
}

// Writes size bytes to path; a failure here is the harness's, so it aborts.
static inline void fuzz_write(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        fprintf(stderr, "fuzz: cannot write %s\n", path);
        abort();
    }
}

// Quiet errors, one thread: the fuzzer runs single-threaded.
static inline void fuzz_init(void) {
    cnn_set_quiet(1);
    cnn_threads_init(1);
}

// Split point from two little-endian bytes, folded into 0..n.
static inline size_t fuzz_split(const uint8_t *p, size_t n) {
    return ((size_t)p[0] | (size_t)p[1] << 8) % (n + 1);
}

// Reads everything a loaded data set promises, so ASan checks its sizes, and
// checks the loaders' contract: labels in range, one name per class; on
// failure (ok == 0) the output must be left empty.
static inline void fuzz_check_dataset(const CnnDataset *d, int ok) {
    if (!ok) {
        if (d->images || d->labels || d->n || d->class_names) abort();
        return;
    }
    const size_t bytes = d->n * cnn_dataset_image_size(d);
    volatile unsigned sum = 0;
    for (size_t i = 0; i < bytes; i++) sum += d->images[i];
    for (size_t i = 0; i < d->n; i++)
        if (d->labels[i] >= d->classes) abort();
    for (int k = 0; k < d->classes; k++)
        if (!d->class_names[k] || !d->class_names[k][0]) abort();
    (void)sum;
}

#endif  // CNNC_FUZZ_COMMON_H
