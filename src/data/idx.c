// IDX files (MNIST, Fashion-MNIST), raw or gzip. Format (LeCun's MNIST page):
// big-endian u32 magic 0x00000803 (unsigned bytes, 3 dimensions), n, rows,
// cols, then n*rows*cols pixels; labels 0x00000801, n, then n bytes.
// A file is read whole (the real size bounds the allocation, not the header),
// then checked against its header to the byte.
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "cnnc.h"
#include "data_internal.h"
#include "internal.h"

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define IDX_CLASSES 10

typedef struct {
    uint8_t *buf;
    size_t len;
} Blob;

static int ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// ---------------------------------------------------------------- reading
static CnnStatus read_raw(const char *path, Blob *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return cnn_error(CNN_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return cnn_error(CNN_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
        fclose(f);
        return cnn_error(CNN_ENOMEM, "%s: cannot allocate %zu bytes", path, size);
    }
    size_t got = fread(buf, 1, size, f);
    int err = ferror(f);
    fclose(f);
    if (got != size) {
        free(buf);
        return cnn_error(CNN_EIO, "%s: read %zu of %zu bytes%s", path, got, size,
                         err ? " (read error)" : " (file shrank while reading)");
    }
    if (size >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) {
        free(buf);
        return cnn_error(CNN_EFORMAT,
                         "%s: is gzip-compressed (starts with 1f 8b) but its name has no .gz; "
                         "HINT: rename it to %s.gz or gunzip it",
                         path, path);
    }
    out->buf = buf;
    out->len = size;
    return CNN_OK;
}

static CnnStatus read_gz(const char *path, Blob *out) {
    gzFile g = gzopen(path, "rb");
    if (!g) return cnn_error(CNN_EIO, "%s: cannot open: %s", path, strerror(errno));
    gzbuffer(g, 1u << 17);
    size_t cap = 1u << 20, len = 0;
    uint8_t *buf = malloc(cap);
    CnnStatus s = CNN_OK;
    if (!buf) s = cnn_error(CNN_ENOMEM, "%s: cannot allocate %zu bytes", path, cap);
    // Grow with what actually inflates, so a lying header cannot force a
    // huge allocation.
    while (s == CNN_OK) {
        if (len == cap) {
            uint8_t *p = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!p) {
                s = cnn_error(CNN_ENOMEM, "%s: cannot allocate %zu bytes", path, cap * 2);
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t want = cap - len;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(g, buf + len, (unsigned)want);
        if (r <= 0) break;
        len += (size_t)r;
    }
    if (s == CNN_OK) {
        int err;
        const char *msg = gzerror(g, &err);
        if (err == Z_BUF_ERROR)
            s = cnn_error(CNN_EFORMAT,
                          "%s: gzip stream is truncated (ends after %zu uncompressed bytes); "
                          "HINT: download it again",
                          path, len);
        else if (err != Z_OK && err != Z_STREAM_END)
            s = cnn_error(err == Z_ERRNO ? CNN_EIO : CNN_EFORMAT,
                          "%s: corrupt gzip data after %zu uncompressed bytes: %s", path, len,
                          err == Z_ERRNO ? strerror(errno) : msg);
        else if (len > 0 && gzdirect(g))
            s = cnn_error(CNN_EFORMAT,
                          "%s: is not gzip-compressed although its name ends in .gz; "
                          "HINT: rename it without .gz",
                          path);
    }
    gzclose(g);
    if (s != CNN_OK) {
        free(buf);
        return s;
    }
    out->buf = buf;
    out->len = len;
    return CNN_OK;
}

static CnnStatus read_file(const char *path, Blob *out) {
    out->buf = NULL;
    out->len = 0;
    return ends_with(path, ".gz") ? read_gz(path, out) : read_raw(path, out);
}

// Drops the header: the payload moves to the front of its own buffer.
static uint8_t *take_payload(Blob *b, size_t header) {
    size_t n = b->len - header;
    memmove(b->buf, b->buf + header, n);
    uint8_t *p = realloc(b->buf, n ? n : 1);
    uint8_t *r = p ? p : b->buf;
    b->buf = NULL;
    b->len = 0;
    return r;
}

static CnnStatus bad_magic(const char *path, uint32_t magic, uint32_t want, const char *kind) {
    uint32_t other = want == IDX_IMAGES_MAGIC ? IDX_LABELS_MAGIC : IDX_IMAGES_MAGIC;
    if (magic == other)
        return cnn_error(CNN_EFORMAT,
                         "%s: bad magic 0x%08x at byte offset 0: that is an IDX %s file, "
                         "expected an IDX %s file (0x%08x); HINT: are the paths swapped?",
                         path, magic, want == IDX_IMAGES_MAGIC ? "label" : "image", kind, want);
    return cnn_error(CNN_EFORMAT,
                     "%s: bad magic 0x%08x at byte offset 0, expected 0x%08x (IDX %s file)", path,
                     magic, want, kind);
}

// ---------------------------------------------------------------- images
// b (the whole file) -> pixels (n*rows*cols), taking b's buffer.
static CnnStatus parse_images(const char *path, Blob *b, uint8_t **pixels, uint32_t *n, int *rows,
                              int *cols) {
    // The magic first: a wrong kind of file is a better diagnosis than "short".
    if (b->len >= 4 && be32(b->buf) != IDX_IMAGES_MAGIC)
        return bad_magic(path, be32(b->buf), IDX_IMAGES_MAGIC, "image");
    if (b->len < 16)
        return cnn_error(CNN_EFORMAT, "%s: truncated: %zu bytes, but an IDX image header needs 16",
                         path, b->len);
    uint32_t cnt = be32(b->buf + 4), r = be32(b->buf + 8), c = be32(b->buf + 12);
    if (cnt == 0)
        return cnn_error(CNN_EFORMAT,
                         "%s: header says 0 images (byte offset 4); a data set needs at least one",
                         path);
    if (r == 0 || c == 0)
        return cnn_error(
            CNN_EFORMAT,
            "%s: header says images of %ux%u (byte offsets 8 and 12); both must be > 0", path, r,
            c);
    size_t pix, total;
    if (r > INT_MAX || c > INT_MAX || mul_overflow4(cnt, r, c, 1, &pix) ||
        __builtin_add_overflow(pix, (size_t)16, &total))
        return cnn_error(CNN_EFORMAT,
                         "%s: header dimensions %u x %u x %u overflow (corrupt header?)", path, cnt,
                         r, c);
    if (b->len < total) {
        size_t per = (size_t)r * c;
        return cnn_error(CNN_EFORMAT,
                         "%s: truncated: header promises %u images of %ux%u (%zu bytes) but the "
                         "file has %zu bytes (image %zu is cut off at byte offset %zu)",
                         path, cnt, r, c, total, b->len, (b->len - 16) / per, b->len);
    }
    if (b->len > total)
        return cnn_error(CNN_EFORMAT,
                         "%s: %zu trailing bytes after the %u images the header declares "
                         "(expected %zu bytes, found %zu)",
                         path, b->len - total, cnt, total, b->len);
    *pixels = take_payload(b, 16);
    *n = cnt;
    *rows = (int)r;
    *cols = (int)c;
    return CNN_OK;
}

// ---------------------------------------------------------------- labels
static CnnStatus parse_labels(const char *path, Blob *b, uint8_t **labels, uint32_t *n) {
    if (b->len >= 4 && be32(b->buf) != IDX_LABELS_MAGIC)
        return bad_magic(path, be32(b->buf), IDX_LABELS_MAGIC, "label");
    if (b->len < 8)
        return cnn_error(CNN_EFORMAT, "%s: truncated: %zu bytes, but an IDX label header needs 8",
                         path, b->len);
    uint32_t cnt = be32(b->buf + 4);
    if (cnt == 0)
        return cnn_error(CNN_EFORMAT,
                         "%s: header says 0 labels (byte offset 4); a data set needs at least one",
                         path);
    size_t total = (size_t)cnt + 8;  // no overflow: size_t is at least 64 bits here
    if (b->len < total)
        return cnn_error(CNN_EFORMAT,
                         "%s: truncated: header promises %u labels (%zu bytes) but the file has "
                         "%zu bytes (ends at record %zu)",
                         path, cnt, total, b->len, b->len - 8);
    if (b->len > total)
        return cnn_error(CNN_EFORMAT,
                         "%s: %zu trailing bytes after the %u labels the header declares "
                         "(expected %zu bytes, found %zu)",
                         path, b->len - total, cnt, total, b->len);
    for (size_t i = 0; i < cnt; i++) {
        uint8_t l = b->buf[8 + i];
        if (l >= IDX_CLASSES)
            return cnn_error(CNN_EFORMAT,
                             "%s: label %u at record %zu (byte offset %zu) is out of range 0..%d",
                             path, l, i, 8 + i, IDX_CLASSES - 1);
    }
    *labels = take_payload(b, 8);
    *n = cnt;
    return CNN_OK;
}

// ---------------------------------------------------------------- both
CnnStatus cnn_idx_load(const char *images_path, const char *labels_path, CnnDataset *out) {
    memset(out, 0, sizeof *out);
    Blob bi, bl;
    uint8_t *pixels = NULL, *labels = NULL;
    uint32_t ni = 0, nl = 0;
    int rows = 0, cols = 0;
    CnnStatus s = read_file(images_path, &bi);
    if (s != CNN_OK) return s;
    s = parse_images(images_path, &bi, &pixels, &ni, &rows, &cols);
    free(bi.buf);
    if (s != CNN_OK) return s;
    s = read_file(labels_path, &bl);
    if (s == CNN_OK) {
        s = parse_labels(labels_path, &bl, &labels, &nl);
        free(bl.buf);
    }
    if (s == CNN_OK && ni != nl)
        s = cnn_error(CNN_ESHAPE, "%s: has %u labels but %s has %u images; they must agree",
                      labels_path, nl, images_path, ni);
    if (s != CNN_OK) {
        free(pixels);
        free(labels);
        return s;
    }
    out->images = pixels;
    out->labels = labels;
    out->n = ni;
    out->c = 1;
    out->h = rows;
    out->w = cols;
    out->classes = IDX_CLASSES;
    s = dataset_default_names(out);
    if (s != CNN_OK) cnn_dataset_free(out);
    return s;
}
