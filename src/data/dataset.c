// CnnDataset: allocation, class names, subsets, grayscale and channel
// statistics. The loaders (idx.c, cifar.c) fill one; data_load.c picks them.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnnc.h"
#include "data_internal.h"
#include "internal.h"

// ---------------------------------------------------------------- files
int data_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int data_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *data_path_join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (!p) return NULL;
    memcpy(p, a, la);
    size_t k = la;
    if (la > 0 && a[la - 1] != '/') p[k++] = '/';
    memcpy(p + k, b, lb + 1);
    return p;
}

// ---------------------------------------------------------------- alloc / free
static void free_names(char **names, int count) {
    if (!names) return;
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
}

void cnn_dataset_free(CnnDataset *d) {
    if (!d) return;
    free(d->images);
    free(d->labels);
    free_names(d->class_names, d->classes);
    memset(d, 0, sizeof *d);
}

size_t cnn_dataset_image_size(const CnnDataset *d) { return (size_t)d->c * d->h * d->w; }

CnnStatus dataset_default_names(CnnDataset *d) {
    char **names = calloc((size_t)d->classes, sizeof *names);
    if (!names) return cnn_error(CNN_ENOMEM, "cannot allocate %d class names", d->classes);
    for (int i = 0; i < d->classes; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", i);
        names[i] = strdup(buf);
        if (!names[i]) {
            free_names(names, d->classes);
            return cnn_error(CNN_ENOMEM, "cannot allocate %d class names", d->classes);
        }
    }
    free_names(d->class_names, d->classes);
    d->class_names = names;
    return CNN_OK;
}

CnnStatus dataset_alloc(CnnDataset *d, const char *what, size_t n, int c, int h, int w,
                        int classes) {
    memset(d, 0, sizeof *d);
    size_t bytes;
    if (n == 0 || c <= 0 || h <= 0 || w <= 0 || classes <= 0)
        return cnn_error(CNN_ESHAPE, "%s: empty data set shape (%zu,%d,%d,%d), %d classes", what, n,
                         c, h, w, classes);
    if (mul_overflow4(n, (size_t)c, (size_t)h, (size_t)w, &bytes))
        return cnn_error(CNN_ENOMEM, "%s: %zu images of %dx%dx%d overflow size_t", what, n, c, h,
                         w);
    d->images = malloc(bytes);
    d->labels = malloc(n);
    if (!d->images || !d->labels) {
        free(d->images);
        free(d->labels);
        memset(d, 0, sizeof *d);
        return cnn_error(CNN_ENOMEM, "%s: cannot allocate %zu images of %dx%dx%d (%zu MB)", what, n,
                         c, h, w, bytes >> 20);
    }
    d->n = n;
    d->c = c;
    d->h = h;
    d->w = w;
    d->classes = classes;
    CnnStatus s = dataset_default_names(d);
    if (s != CNN_OK) cnn_dataset_free(d);
    return s;
}

CnnStatus dataset_set_names(CnnDataset *d, const char *const *names) {
    char **copy = calloc((size_t)d->classes, sizeof *copy);
    if (!copy) return cnn_error(CNN_ENOMEM, "cannot allocate %d class names", d->classes);
    for (int i = 0; i < d->classes; i++) {
        copy[i] = strdup(names[i]);
        if (!copy[i]) {
            free_names(copy, d->classes);
            return cnn_error(CNN_ENOMEM, "cannot allocate %d class names", d->classes);
        }
    }
    free_names(d->class_names, d->classes);
    d->class_names = copy;
    return CNN_OK;
}

void dataset_truncate(CnnDataset *d, size_t n) {
    if (n >= d->n) return;
    d->n = n;
    // Shrinking realloc may fail only in theory; keeping the larger block is fine.
    uint8_t *p = realloc(d->images, n * cnn_dataset_image_size(d));
    if (p) d->images = p;
    p = realloc(d->labels, n);
    if (p) d->labels = p;
}

// ---------------------------------------------------------------- class names
#define MAX_NAME 255  // characters in one class name
CnnStatus cnn_dataset_read_class_names(CnnDataset *d, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return cnn_error(CNN_EIO, "%s: cannot open class names: %s", path, strerror(errno));
    char **names = calloc((size_t)d->classes, sizeof *names);
    if (!names) {
        fclose(f);
        return cnn_error(CNN_ENOMEM, "cannot allocate %d class names", d->classes);
    }
    CnnStatus s = CNN_OK;
    int count = 0, lineno = 0;
    // getline, not fgets into a fixed buffer: a long line must not become
    // two names, nor a NUL byte cut one short.
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) > 0) {
        size_t len = (size_t)got;
        lineno++;
        if (memchr(line, 0, len)) {
            s = cnn_error(CNN_EFORMAT, "%s: line %d holds a NUL byte (not a text file?)", path, lineno);
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                           line[len - 1] == '\t'))
            line[--len] = '\0';
        if (len == 0) continue;
        if (len > MAX_NAME) {
            s = cnn_error(CNN_EFORMAT, "%s: line %d is longer than %d characters (not a names file?)",
                          path, lineno, MAX_NAME);
            break;
        }
        if (count < d->classes && !(names[count] = strdup(line))) {
            s = cnn_error(CNN_ENOMEM, "cannot allocate %d class names", d->classes);
            break;
        }
        count++;
    }
    free(line);
    if (s == CNN_OK && ferror(f)) s = cnn_error(CNN_EIO, "%s: read error", path);
    if (s == CNN_OK && count != d->classes)
        s = cnn_error(CNN_EFORMAT, "%s: has %d class names (non-empty lines), expected %d", path,
                      count, d->classes);
    fclose(f);
    if (s != CNN_OK) {
        free_names(names, d->classes);
        return s;
    }
    free_names(d->class_names, d->classes);
    d->class_names = names;
    return CNN_OK;
}

// ---------------------------------------------------------------- subsets
CnnStatus cnn_dataset_subset(const CnnDataset *src, size_t first, size_t count, CnnDataset *out) {
    memset(out, 0, sizeof *out);
    if (count == 0 || first > src->n || count > src->n - first)
        return cnn_error(CNN_EARG, "subset of images %zu..%zu+%zu does not fit in %zu images",
                         first, first, count, src->n);
    CnnStatus s = dataset_alloc(out, "subset", count, src->c, src->h, src->w, src->classes);
    if (s != CNN_OK) return s;
    size_t is = cnn_dataset_image_size(src);
    memcpy(out->images, src->images + first * is, count * is);
    memcpy(out->labels, src->labels + first, count);
    if (src->class_names) s = dataset_set_names(out, (const char *const *)src->class_names);
    if (s != CNN_OK) cnn_dataset_free(out);
    return s;
}

// ---------------------------------------------------------------- grayscale
CnnStatus cnn_dataset_to_grayscale(CnnDataset *d) {
    if (d->c == 1) return CNN_OK;
    if (d->c != 3)
        return cnn_error(CNN_ESHAPE, "grayscale needs 1 or 3 channels, the data set has %d", d->c);
    size_t hw = (size_t)d->h * d->w;
    // In place: image i's gray plane (at i*hw) never overtakes its RGB source
    // (at 3*i*hw), and each pixel is read before anything is written over it.
    for (size_t i = 0; i < d->n; i++) {
        const uint8_t *r = d->images + 3 * i * hw, *g = r + hw, *b = g + hw;
        uint8_t *o = d->images + i * hw;
        for (size_t k = 0; k < hw; k++) {
            unsigned sum = (unsigned)r[k] + g[k] + b[k];
            o[k] = (uint8_t)((sum + 1) / 3);  // round to nearest; thirds never tie
        }
    }
    d->c = 1;
    uint8_t *p = realloc(d->images, d->n * hw);
    if (p) d->images = p;
    return CNN_OK;
}

// ---------------------------------------------------------------- statistics
void cnn_dataset_channel_stats(const CnnDataset *d, float *mean, float *std) {
    size_t hw = (size_t)d->h * d->w;
    for (int ch = 0; ch < d->c; ch++) {
        // Exact: 2^64 / 255^2 > 2.8e14 pixels before the squares could overflow.
        uint64_t s1 = 0, s2 = 0;
        for (size_t i = 0; i < d->n; i++) {
            const uint8_t *p = d->images + (i * d->c + ch) * hw;
            uint64_t a = 0, b = 0;
            for (size_t k = 0; k < hw; k++) {
                a += p[k];
                b += (uint64_t)p[k] * p[k];
            }
            s1 += a;
            s2 += b;
        }
        double cnt = (double)d->n * (double)hw;
        double m = cnt > 0 ? (double)s1 / cnt : 0.0;
        double var = cnt > 0 ? (double)s2 / cnt - m * m : 0.0;
        if (var < 0) var = 0;
        mean[ch] = (float)(m / 255.0);
        std[ch] = (float)(sqrt(var) / 255.0);
    }
}
