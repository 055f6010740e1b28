// CIFAR-10 / CIFAR-100 binary batches (Krizhevsky's "binary version"):
// fixed-size records of label byte(s) then 32x32 R, G and B planes, row-major.
// The files carry no header, so a size that is not a whole number of records
// is the one structural check, plus the label ranges.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnnc.h"
#include "data_internal.h"

#define CIFAR_PIXELS 3072  // 3 x 32 x 32
#define CIFAR_CHUNK 512    // records per fread

typedef struct {
    int label_bytes;  // 1 (CIFAR-10) or 2 (coarse, fine: CIFAR-100)
    int classes;      // 10 or 100
    int coarse;       // 20 CIFAR-100 superclasses (checked, not kept)
} CifarKind;

static size_t record_size(const CifarKind *k) { return (size_t)k->label_bytes + CIFAR_PIXELS; }

// Number of records in path; checks that it is a whole, non-zero number.
static CnnStatus count_records(const char *path, const CifarKind *k, size_t *count) {
    struct stat st;
    if (stat(path, &st) != 0)
        return cnn_error(CNN_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return cnn_error(CNN_EIO, "%s: not a regular file", path);
    size_t size = (size_t)st.st_size, rec = record_size(k);
    if (size == 0 || size % rec != 0)
        return cnn_error(CNN_EFORMAT,
                         "%s: size %zu bytes is not a whole, non-zero number of %zu-byte "
                         "CIFAR-%d records (%zu records and %zu bytes left over)",
                         path, size, rec, k->classes, size / rec, size % rec);
    *count = size / rec;
    return CNN_OK;
}

// Reads count records of path into images/labels (room for count each).
static CnnStatus read_records(const char *path, const CifarKind *k, size_t count, uint8_t *images,
                              uint8_t *labels, uint8_t *buf) {
    FILE *f = fopen(path, "rb");
    if (!f) return cnn_error(CNN_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t rec = record_size(k);
    CnnStatus s = CNN_OK;
    for (size_t done = 0; done < count && s == CNN_OK;) {
        size_t m = count - done < CIFAR_CHUNK ? count - done : CIFAR_CHUNK;
        size_t got = fread(buf, rec, m, f);
        if (got != m) {
            s = cnn_error(CNN_EIO, "%s: read failed at record %zu (byte offset %zu)%s", path,
                          done + got, (done + got) * rec,
                          ferror(f) ? "" : ": the file shrank while reading");
            break;
        }
        for (size_t j = 0; j < m; j++) {
            const uint8_t *r = buf + j * rec;
            size_t i = done + j;
            if (k->label_bytes == 2 && r[0] >= k->coarse) {
                s = cnn_error(CNN_EFORMAT,
                              "%s: coarse label %u at record %zu (byte offset %zu) is out of "
                              "range 0..%d",
                              path, r[0], i, i * rec, k->coarse - 1);
                break;
            }
            uint8_t l = r[k->label_bytes - 1];
            if (l >= k->classes) {
                s = cnn_error(CNN_EFORMAT,
                              "%s: label %u at record %zu (byte offset %zu) is out of range 0..%d",
                              path, l, i, i * rec + (size_t)k->label_bytes - 1, k->classes - 1);
                break;
            }
            labels[i] = l;
            memcpy(images + i * CIFAR_PIXELS, r + k->label_bytes, CIFAR_PIXELS);
        }
        done += m;
    }
    fclose(f);
    return s;
}

CnnStatus cnn_cifar_load(const char *const *paths, int npaths, int cifar100, CnnDataset *out) {
    memset(out, 0, sizeof *out);
    if (npaths <= 0) return cnn_error(CNN_EARG, "CIFAR: no files given");
    CifarKind k = cifar100 ? (CifarKind){2, 100, 20} : (CifarKind){1, 10, 0};
    size_t *counts = calloc((size_t)npaths, sizeof *counts);
    if (!counts) return cnn_error(CNN_ENOMEM, "CIFAR: cannot allocate %d counts", npaths);
    size_t n = 0;
    CnnStatus s = CNN_OK;
    for (int f = 0; f < npaths && s == CNN_OK; f++) {
        s = count_records(paths[f], &k, &counts[f]);
        n += counts[f];
    }
    uint8_t *buf = NULL;
    if (s == CNN_OK) s = dataset_alloc(out, paths[0], n, 3, 32, 32, k.classes);
    if (s == CNN_OK && !(buf = malloc(CIFAR_CHUNK * record_size(&k))))
        s = cnn_error(CNN_ENOMEM, "CIFAR: cannot allocate a read buffer");
    size_t at = 0;
    for (int f = 0; f < npaths && s == CNN_OK; f++) {
        s = read_records(paths[f], &k, counts[f], out->images + at * CIFAR_PIXELS, out->labels + at,
                         buf);
        at += counts[f];
    }
    free(buf);
    free(counts);
    if (s != CNN_OK) cnn_dataset_free(out);
    return s;
}
