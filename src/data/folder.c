// Image folders in torchvision's ImageFolder layout: ROOT/train/<class>/*
// and ROOT/test/<class>/*, each image a file that predict can read (PNG,
// JPEG, BMP, PGM/PPM). Classes are the train folder's sub-folders in byte
// order of their names; every image is decoded once, converted to C
// channels and resized to H x W, into the data set's uint8 store.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_internal.h"

// Files named in byte order, so that the order (and the labels) never
// depend on the file system.
typedef struct {
    char **names;
    size_t n, cap;
} NameList;

static void names_free(NameList *l) {
    for (size_t i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// The entries of dir that are folders (want_dirs) or regular files,
// hidden ones (".*") left out, sorted.
static CnnStatus list_dir(const char *dir, int want_dirs, NameList *out) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) return cnn_error(CNN_EIO, "%s: cannot open folder", dir);
    CnnStatus st = CNN_OK;
    for (struct dirent *e; (e = readdir(d)) != NULL && !st;) {
        if (e->d_name[0] == '.') continue;
        char *path = data_path_join(dir, e->d_name);
        if (!path) {
            st = cnn_error(CNN_ENOMEM, "cannot allocate a path");
            break;
        }
        const int keep = want_dirs ? data_dir_exists(path) : data_file_exists(path);
        free(path);
        if (!keep) continue;
        if (out->n == out->cap) {
            const size_t cap = out->cap ? 2 * out->cap : 64;
            char **grown = realloc(out->names, cap * sizeof *grown);
            if (!grown) {
                st = cnn_error(CNN_ENOMEM, "cannot list %s", dir);
                break;
            }
            out->names = grown;
            out->cap = cap;
        }
        if (!(out->names[out->n] = strdup(e->d_name))) st = cnn_error(CNN_ENOMEM, "cannot list %s", dir);
        else out->n++;
    }
    closedir(d);
    if (st) names_free(out);
    else if (out->n) qsort(out->names, out->n, sizeof *out->names, name_cmp);  // names is NULL for none
    return st;
}

CnnStatus data_decode_images(const char *what, char *const *paths, const uint8_t *labels, size_t total,
                             char *const *class_names, int classes, int C, int *H, int *W, int strict,
                             CnnDataset *out) {
    memset(out, 0, sizeof *out);
    if (total == 0) return cnn_error(CNN_EFORMAT, "%s: no image files", what);
    CnnStatus st = CNN_OK;
    size_t n = 0, skipped = 0;
    for (size_t i = 0; i < total && !st; i++) {
        // Without a size, the first image that decodes gives it; files before
        // it fail here, and are named once.
        CnnStatus s = *H > 0 && *W > 0 ? CNN_OK : cnn_image_size(paths[i], H, W);
        if (!s && !out->images) {
            st = dataset_alloc(out, what, total, C, *H, *W, classes);
            if (!st) st = dataset_set_names(out, (const char *const *)class_names);
            if (st) break;
        }
        if (!s) s = cnn_image_load(paths[i], C, *H, *W, out->images + n * cnn_dataset_image_size(out));
        if (s == CNN_ENOMEM || (s && strict)) st = s;
        else if (s) skipped++;
        else out->labels[n++] = labels[i];
    }
    if (!st && n == 0) st = cnn_error(CNN_EFORMAT, "%s: none of its %zu files is a readable image", what, total);
    if (st) {
        cnn_dataset_free(out);
        return st;
    }
    dataset_truncate(out, n);
    out->skipped = skipped;
    return CNN_OK;
}

// One split (ROOT/train or ROOT/test) with the given classes: its files in
// class order, then in name order within a class (*H, *W <= 0: the first
// readable image's size, set here).
static CnnStatus load_split(const char *split, const NameList *classes, int C, int *H, int *W,
                            int strict, CnnDataset *out) {
    char **paths = NULL;
    uint8_t *labels = NULL;
    size_t total = 0, cap = 0;
    CnnStatus st = CNN_OK;
    for (size_t k = 0; k < classes->n && !st; k++) {
        char *dir = data_path_join(split, classes->names[k]);
        NameList files = {0};
        if (!dir) st = cnn_error(CNN_ENOMEM, "cannot allocate a path");
        else if (data_dir_exists(dir)) {  // a class may be absent from test, but not empty
            st = list_dir(dir, 0, &files);
            if (!st && files.n == 0)
                st = cnn_error(CNN_EFORMAT, "%s: class folder has no images; add some or remove the folder", dir);
        }
        for (size_t i = 0; i < files.n && !st; i++, total++) {
            if (total == cap) {
                cap = cap ? 2 * cap : 256;
                char **p = realloc(paths, cap * sizeof *p);
                uint8_t *l = p ? realloc(labels, cap) : NULL;
                if (p) paths = p;
                if (l) labels = l;
                if (!p || !l) {
                    st = cnn_error(CNN_ENOMEM, "cannot list %s", split);
                    break;
                }
            }
            labels[total] = (uint8_t)k;
            if (!(paths[total] = data_path_join(dir, files.names[i]))) st = cnn_error(CNN_ENOMEM, "cannot list %s", split);
        }
        names_free(&files);
        free(dir);
    }
    if (!st && total == 0) st = cnn_error(CNN_EFORMAT, "%s: no image files in its class folders", split);
    if (!st) st = data_decode_images(split, paths, labels, total, classes->names, (int)classes->n, C, H, W, strict, out);
    for (size_t i = 0; i < total; i++) free(paths[i]);
    free(paths);
    free(labels);
    return st;
}

CnnStatus cnn_folder_load(const char *root, int C, int H, int W, int strict, CnnDataset *train,
                          CnnDataset *test) {
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    if (C != 1 && C != 3) return cnn_error(CNN_EARG, "%s: images become 1 or 3 channels, not %d", root, C);
    char *tr = data_path_join(root, "train"), *te = data_path_join(root, "test");
    CnnStatus st = tr && te ? CNN_OK : cnn_error(CNN_ENOMEM, "cannot allocate a path");
    if (!st && !data_dir_exists(root)) st = cnn_error(CNN_EIO, "%s: no such folder", root);
    if (!st && (!data_dir_exists(tr) || !data_dir_exists(te)))
        st = cnn_error(CNN_EFORMAT, "%s: an image folder needs train/ and test/ inside, each with one "
                       "folder per class (train/cat/1.png, test/cat/7.png, ...)", root);
    NameList classes = {0};
    if (!st) st = list_dir(tr, 1, &classes);
    if (!st && classes.n < 2)
        st = cnn_error(CNN_EFORMAT, "%s: %zu class folder%s; a classifier needs at least 2", tr, classes.n,
                       classes.n == 1 ? "" : "s");
    if (!st && classes.n > 256)
        st = cnn_error(CNN_EFORMAT, "%s: %zu class folders; labels are bytes, so at most 256", tr, classes.n);
    // A test folder the training split does not know would get no label.
    NameList test_classes = {0};
    if (!st) st = list_dir(te, 1, &test_classes);
    for (size_t i = 0; !st && i < test_classes.n; i++)
        if (!bsearch(&test_classes.names[i], classes.names, classes.n, sizeof *classes.names, name_cmp))
            st = cnn_error(CNN_EFORMAT, "%s/%s: a test class with no folder in %s", te, test_classes.names[i], tr);
    names_free(&test_classes);
    if (!st) st = load_split(tr, &classes, C, &H, &W, strict, train);
    if (!st) st = load_split(te, &classes, C, &H, &W, strict, test);
    if (st) {
        cnn_dataset_free(train);
        cnn_dataset_free(test);
    }
    names_free(&classes);
    free(tr);
    free(te);
    return st;
}
