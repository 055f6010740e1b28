// Image lists: ROOT/train.csv and ROOT/test.csv, one "path,label" line per
// image (a first line "path,label" is a header), paths relative to ROOT.
// Classes are the training list's labels in byte order; every image is
// decoded once, as for image folders.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

typedef struct {
    char **paths, **labels;
    size_t n, cap;
} Rows;

static void rows_free(Rows *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->paths[i]);
        free(r->labels[i]);
    }
    free(r->paths);
    free(r->labels);
    memset(r, 0, sizeof *r);
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Reads a list; paths come back joined to root. The label is after the
// last comma, so paths may hold commas.
static CnnStatus read_rows(const char *root, const char *csv, Rows *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(csv, "r");
    if (!f) return cnn_error(CNN_EIO, "%s: cannot open the image list", csv);
    char line[4096];
    CnnStatus st = CNN_OK;
    for (long no = 1; !st && fgets(line, sizeof line, f); no++) {
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            st = cnn_error(CNN_EFORMAT, "%s:%ld: line longer than %zu bytes", csv, no, sizeof line - 2);
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len || (no == 1 && !strcmp(line, "path,label"))) continue;
        char *comma = strrchr(line, ',');
        if (!comma || comma == line || !comma[1]) {
            st = cnn_error(CNN_EFORMAT, "%s:%ld: '%s' is not path,label", csv, no, line);
            break;
        }
        *comma = 0;
        if (out->n == out->cap) {
            const size_t cap = out->cap ? 2 * out->cap : 256;
            char **p = realloc(out->paths, cap * sizeof *p), **l = p ? realloc(out->labels, cap * sizeof *l) : NULL;
            if (p) out->paths = p;
            if (l) out->labels = l;
            if (!p || !l) {
                st = cnn_error(CNN_ENOMEM, "%s: cannot hold the list", csv);
                break;
            }
            out->cap = cap;
        }
        out->paths[out->n] = line[0] == '/' ? strdup(line) : data_path_join(root, line);
        out->labels[out->n] = strdup(comma + 1);
        if (!out->paths[out->n] || !out->labels[out->n]) {
            free(out->paths[out->n]);
            free(out->labels[out->n]);
            st = cnn_error(CNN_ENOMEM, "%s: cannot hold the list", csv);
            break;
        }
        out->n++;
    }
    fclose(f);
    if (!st && out->n == 0) st = cnn_error(CNN_EFORMAT, "%s: no images listed", csv);
    if (st) rows_free(out);
    return st;
}

// The rows' labels as class indices into the sorted names.
static CnnStatus label_rows(const char *csv, const Rows *r, char **names, size_t nclasses, uint8_t *labels) {
    for (size_t i = 0; i < r->n; i++) {
        char **at = bsearch(&r->labels[i], names, nclasses, sizeof *names, str_cmp);
        if (!at)
            return cnn_error(CNN_EFORMAT, "%s: label '%s' (of %s) is not a class of the training list", csv,
                             r->labels[i], r->paths[i]);
        labels[i] = (uint8_t)(at - names);
    }
    return CNN_OK;
}

static CnnStatus load_list(const char *csv, const Rows *r, char **names, size_t nclasses, int C, int *H,
                           int *W, int strict, CnnDataset *out) {
    uint8_t *labels = malloc(r->n);
    if (!labels) return cnn_error(CNN_ENOMEM, "%s: cannot hold the labels", csv);
    CnnStatus st = label_rows(csv, r, names, nclasses, labels);
    if (!st) st = data_decode_images(csv, r->paths, labels, r->n, names, (int)nclasses, C, H, W, strict, out);
    free(labels);
    return st;
}

CnnStatus cnn_list_load(const char *root, int C, int H, int W, int strict, CnnDataset *train, CnnDataset *test) {
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    if (C != 1 && C != 3) return cnn_error(CNN_EARG, "%s: images become 1 or 3 channels, not %d", root, C);
    char *tr = data_path_join(root, "train.csv"), *te = data_path_join(root, "test.csv");
    Rows rtr = {0}, rte = {0};
    char **names = NULL;
    size_t nclasses = 0;
    CnnStatus st = tr && te ? CNN_OK : cnn_error(CNN_ENOMEM, "cannot allocate a path");
    if (!st && (!data_file_exists(tr) || !data_file_exists(te)))
        st = cnn_error(CNN_EIO, "%s: an image list needs train.csv and test.csv inside (lines path,label)", root);
    if (!st) st = read_rows(root, tr, &rtr);
    if (!st) st = read_rows(root, te, &rte);
    // The classes: the training labels, sorted, each once.
    if (!st && !(names = malloc(rtr.n * sizeof *names))) st = cnn_error(CNN_ENOMEM, "%s: cannot hold the labels", tr);
    if (!st) {
        memcpy(names, rtr.labels, rtr.n * sizeof *names);
        qsort(names, rtr.n, sizeof *names, str_cmp);
        for (size_t i = 0; i < rtr.n; i++)
            if (!nclasses || strcmp(names[nclasses - 1], names[i])) names[nclasses++] = names[i];
        if (nclasses < 2 || nclasses > 256)
            st = cnn_error(CNN_EFORMAT, "%s: %zu classes; a classifier needs 2..256", tr, nclasses);
    }
    int h = H, w = W;  // <= 0: the first readable training image's, from load_list
    if (!st) st = load_list(tr, &rtr, names, nclasses, C, &h, &w, strict, train);
    if (!st) st = load_list(te, &rte, names, nclasses, C, &h, &w, strict, test);
    if (st) {
        cnn_dataset_free(train);
        cnn_dataset_free(test);
    }
    free(names);  // the strings belong to rtr
    rows_free(&rtr);
    rows_free(&rte);
    free(tr);
    free(te);
    return st;
}
