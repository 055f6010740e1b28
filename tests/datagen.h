// Test helpers: a scratch folder and small data set files written in the
// official formats (IDX raw/gzip, CIFAR binary), plus ways to break them.
// Header-only (static inline) so each test executable stays one source file.
#ifndef CNNC_TESTS_DATAGEN_H
#define CNNC_TESTS_DATAGEN_H

#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cnnc.h"

// ---------------------------------------------------------------- scratch folder
static char g_tmp[256];

// Checked fixture: a fresh folder per test (runs in the forked child).
static inline void tmp_setup(void) {
    const char *base = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/cnnc-data-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_msg(mkdtemp(g_tmp) != NULL, "mkdtemp %s failed", g_tmp);
}

static inline void rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                size_t len = strlen(path) + strlen(e->d_name) + 2;
                char *sub = malloc(len);
                snprintf(sub, len, "%s/%s", path, e->d_name);
                rm_tree(sub);
                free(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static inline void tmp_teardown(void) { rm_tree(g_tmp); }

// g_tmp/name in one of a few rotating static buffers.
static inline const char *tmp_path(const char *name) {
    static char bufs[8][512];
    static int k;
    char *p = bufs[k++ & 7];
    snprintf(p, 512, "%s/%s", g_tmp, name);
    return p;
}

static inline void make_dir(const char *path) {
    ck_assert_msg(mkdir(path, 0755) == 0, "mkdir %s failed", path);
}

// ---------------------------------------------------------------- writing files
static inline void write_raw(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert(fwrite(buf, 1, n, f) == n);
    ck_assert(fclose(f) == 0);
}

// Reads the whole file at path into buf (cap bytes, more than the file) and
// returns its length.
static inline size_t read_raw(const char *path, void *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    const size_t n = fread(buf, 1, cap, f);
    ck_assert_msg(n < cap && feof(f), "%s does not fit in %zu bytes", path, cap);
    ck_assert(fclose(f) == 0);
    return n;
}

static inline void write_gz(const char *path, const void *buf, size_t n) {
    gzFile g = gzopen(path, "wb");
    ck_assert_msg(g != NULL, "cannot create %s", path);
    if (n > 0) ck_assert(gzwrite(g, buf, (unsigned)n) == (int)n);
    ck_assert(gzclose(g) == Z_OK);
}

// The whole content of a file (malloc'd), its size in *n.
static inline uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len + 1);
    ck_assert(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static inline void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

// ---------------------------------------------------------------- IDX
// The pixel value every generated image has at (i, y, x) (and channel ch for CIFAR).
static inline uint8_t gen_pixel(size_t i, int ch, int y, int x) {
    return (uint8_t)((i * 37u + (unsigned)ch * 101u + (unsigned)y * 13u + (unsigned)x * 7u) & 255u);
}

static inline uint8_t gen_label(size_t i, int classes) {
    return (uint8_t)((i * 7u + 3u) % (unsigned)classes);
}

// An in-memory (n,c,h,w) data set with varied pixels and labels i % 10.
static inline void gen_dataset(CnnDataset *d, size_t n, int c, int h, int w) {
    memset(d, 0, sizeof *d);
    d->n = n;
    d->c = c;
    d->h = h;
    d->w = w;
    d->classes = 10;
    size_t is = (size_t)c * h * w;
    d->images = malloc(n * is);
    d->labels = malloc(n);
    for (size_t i = 0; i < n; i++) {
        d->labels[i] = (uint8_t)(i % 10);
        for (size_t k = 0; k < is; k++)
            d->images[i * is + k] = (uint8_t)((i * 151 + k * 53 + (k * k) % 23) & 255);
    }
}

// IDX image file: n images of rows x cols; length in *len.
static inline uint8_t *idx_images(uint32_t n, uint32_t rows, uint32_t cols, size_t *len) {
    *len = 16 + (size_t)n * rows * cols;
    uint8_t *b = malloc(*len);
    put_be32(b, 0x00000803u);
    put_be32(b + 4, n);
    put_be32(b + 8, rows);
    put_be32(b + 12, cols);
    uint8_t *p = b + 16;
    for (size_t i = 0; i < n; i++)
        for (uint32_t y = 0; y < rows; y++)
            for (uint32_t x = 0; x < cols; x++) *p++ = gen_pixel(i, 0, (int)y, (int)x);
    return b;
}

static inline uint8_t *idx_labels(uint32_t n, size_t *len) {
    *len = 8 + (size_t)n;
    uint8_t *b = malloc(*len);
    put_be32(b, 0x00000801u);
    put_be32(b + 4, n);
    for (size_t i = 0; i < n; i++) b[8 + i] = gen_label(i, 10);
    return b;
}

// Writes dir/{prefix}-images-idx3-ubyte[.gz] and the labels (n images, rows x cols).
static inline void write_idx_pair(const char *dir, const char *prefix, uint32_t n, uint32_t rows,
                                  uint32_t cols, int gz) {
    size_t li, ll;
    uint8_t *im = idx_images(n, rows, cols, &li), *lb = idx_labels(n, &ll);
    char pi[512], pl[512];
    snprintf(pi, sizeof pi, "%s/%s-images-idx3-ubyte%s", dir, prefix, gz ? ".gz" : "");
    snprintf(pl, sizeof pl, "%s/%s-labels-idx1-ubyte%s", dir, prefix, gz ? ".gz" : "");
    if (gz) {
        write_gz(pi, im, li);
        write_gz(pl, lb, ll);
    } else {
        write_raw(pi, im, li);
        write_raw(pl, lb, ll);
    }
    free(im);
    free(lb);
}

// ---------------------------------------------------------------- CIFAR
// n records; CIFAR-100 records carry coarse = fine / 5 first. first_index
// offsets the generated content so that batches differ.
static inline uint8_t *cifar_records(size_t n, int cifar100, size_t first_index, size_t *len) {
    size_t rec = (cifar100 ? 2u : 1u) + 3072u;
    *len = n * rec;
    uint8_t *b = malloc(*len ? *len : 1);
    for (size_t j = 0; j < n; j++) {
        size_t i = first_index + j;
        uint8_t *r = b + j * rec;
        if (cifar100) {
            r[1] = gen_label(i, 100);
            r[0] = (uint8_t)(r[1] / 5);
        } else {
            r[0] = gen_label(i, 10);
        }
        uint8_t *px = r + (cifar100 ? 2 : 1);
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) *px++ = gen_pixel(i, ch, y, x);
    }
    return b;
}

static inline void write_cifar(const char *path, size_t n, int cifar100, size_t first_index) {
    size_t len;
    uint8_t *b = cifar_records(n, cifar100, first_index, &len);
    write_raw(path, b, len);
    free(b);
}

// dir/cifar-10-batches-bin with 5 training batches of per_batch records and
// a test batch of test_n records, plus batches.meta.txt when names is set.
static inline void write_cifar10_set(const char *dir, size_t per_batch, size_t test_n, int names) {
    char sub[512], p[600];
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
    make_dir(sub);
    for (int k = 1; k <= 5; k++) {
        snprintf(p, sizeof p, "%s/data_batch_%d.bin", sub, k);
        write_cifar(p, per_batch, 0, (size_t)(k - 1) * per_batch);
    }
    snprintf(p, sizeof p, "%s/test_batch.bin", sub);
    write_cifar(p, test_n, 0, 1000);
    if (names) {
        static const char meta[] =
            "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
        snprintf(p, sizeof p, "%s/batches.meta.txt", sub);
        write_raw(p, meta, sizeof meta - 1);
    }
}

// ---------------------------------------------------------------- errors
// Asserts status s is want and the last error names `file` and says `phrase`.
#define ck_assert_error(s, want, file, phrase)                                                 \
    do {                                                                                       \
        CnnStatus s_ = (s);                                                                    \
        const char *m_ = cnn_last_error();                                                     \
        ck_assert_msg(s_ == (want), "status %d (%s), expected %d; message: %s", (int)s_,       \
                      cnn_status_str(s_), (int)(want), m_);                                    \
        ck_assert_msg(strstr(m_, (file)) != NULL, "message does not name %s: %s", (file), m_); \
        ck_assert_msg(strstr(m_, (phrase)) != NULL, "message lacks \"%s\": %s", (phrase), m_); \
    } while (0)

// The outputs of a failed load must be empty.
static inline void ck_assert_empty(const CnnDataset *d) {
    ck_assert_ptr_null(d->images);
    ck_assert_ptr_null(d->labels);
    ck_assert_ptr_null(d->class_names);
    ck_assert_uint_eq(d->n, 0);
}

#endif  // CNNC_TESTS_DATAGEN_H
