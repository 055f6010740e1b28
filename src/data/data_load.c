// cnn_dataset_load: finds a named data set's files in its folder (the
// layouts tools/fetch-data produces, see data/README.md), loads train and
// test, then applies the grayscale, limit_train, val_split and limit_test options.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"
#include "data_internal.h"

// Fashion-MNIST's README (zalandoresearch/fashion-mnist), labels 0..9.
static const char *const FASHION_NAMES[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

// ---------------------------------------------------------------- IDX sets
// dir/base, or dir/base.gz when only that exists; *path is malloc'd.
static CnnStatus find_idx(const char *dir, const char *base, const char *name, char **path) {
    *path = NULL;
    char gz[64];
    snprintf(gz, sizeof gz, "%s.gz", base);
    char *raw = data_path_join(dir, base), *zip = data_path_join(dir, gz);
    CnnStatus s = CNN_OK;
    if (!raw || !zip) {
        s = cnn_error(CNN_ENOMEM, "cannot allocate a path");
    } else if (data_file_exists(raw)) {
        *path = raw;
        raw = NULL;
    } else if (data_file_exists(zip)) {
        *path = zip;
        zip = NULL;
    } else {
        s = cnn_error(CNN_EIO, "%s: not found (nor %s.gz); HINT: run tools/fetch-data %s", raw,
                      base, name);
    }
    free(raw);
    free(zip);
    return s;
}

static CnnStatus load_idx_pair(const char *dir, const char *prefix, const char *name,
                               CnnDataset *out) {
    char bi[64], bl[64];
    snprintf(bi, sizeof bi, "%s-images-idx3-ubyte", prefix);
    snprintf(bl, sizeof bl, "%s-labels-idx1-ubyte", prefix);
    char *pi = NULL, *pl = NULL;
    CnnStatus s = find_idx(dir, bi, name, &pi);
    if (s == CNN_OK) s = find_idx(dir, bl, name, &pl);
    if (s == CNN_OK) s = cnn_idx_load(pi, pl, out);
    free(pi);
    free(pl);
    return s;
}

static CnnStatus load_idx_set(const char *name, const char *dir, CnnDataset *train,
                              CnnDataset *test) {
    CnnStatus s = load_idx_pair(dir, "train", name, train);
    if (s == CNN_OK) s = load_idx_pair(dir, "t10k", name, test);
    if (s == CNN_OK && strcmp(name, "fashion-mnist") == 0) {
        s = dataset_set_names(train, FASHION_NAMES);
        if (s == CNN_OK) s = dataset_set_names(test, FASHION_NAMES);
    }
    return s;
}

// ---------------------------------------------------------------- CIFAR sets
typedef struct {
    const char *folder;  // inside the data set's folder
    const char *train[5];
    int ntrain;
    const char *test;
    const char *names;  // class names file
    int cifar100;
} CifarLayout;

static const CifarLayout CIFAR10 = {
    .folder = "cifar-10-batches-bin",
    .train = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
              "data_batch_5.bin"},
    .ntrain = 5,
    .test = "test_batch.bin",
    .names = "batches.meta.txt",
    .cifar100 = 0,
};
static const CifarLayout CIFAR100 = {
    .folder = "cifar-100-binary",
    .train = {"train.bin"},
    .ntrain = 1,
    .test = "test.bin",
    .names = "fine_label_names.txt",
    .cifar100 = 1,
};

static CnnStatus load_cifar_set(const char *name, const char *dir, const CifarLayout *lay,
                                CnnDataset *train, CnnDataset *test) {
    // dir is the data set's folder (holding lay->folder) or that folder itself.
    char *base = data_path_join(dir, lay->folder);
    if (!base) return cnn_error(CNN_ENOMEM, "cannot allocate a path");
    if (!data_dir_exists(base)) {
        char *probe = data_path_join(dir, lay->test);
        int here = probe && data_file_exists(probe);
        free(probe);
        if (!here) {
            CnnStatus s =
                cnn_error(CNN_EIO, "%s: not found (nor %s in %s); HINT: run tools/fetch-data %s",
                          base, lay->test, dir, name);
            free(base);
            return s;
        }
        free(base);
        if (!(base = strdup(dir))) return cnn_error(CNN_ENOMEM, "cannot allocate a path");
    }
    char *paths[6] = {0};
    int np = lay->ntrain + 1;
    CnnStatus s = CNN_OK;
    for (int i = 0; i < np && s == CNN_OK; i++) {
        paths[i] = data_path_join(base, i < lay->ntrain ? lay->train[i] : lay->test);
        if (!paths[i])
            s = cnn_error(CNN_ENOMEM, "cannot allocate a path");
        else if (!data_file_exists(paths[i]))
            s = cnn_error(CNN_EIO, "%s: not found; HINT: run tools/fetch-data %s", paths[i], name);
    }
    if (s == CNN_OK)
        s = cnn_cifar_load((const char *const *)paths, lay->ntrain, lay->cifar100, train);
    if (s == CNN_OK)
        s = cnn_cifar_load((const char *const *)&paths[lay->ntrain], 1, lay->cifar100, test);
    char *names = s == CNN_OK ? data_path_join(base, lay->names) : NULL;
    if (s == CNN_OK && !names) s = cnn_error(CNN_ENOMEM, "cannot allocate a path");
    if (s == CNN_OK && data_file_exists(names)) {
        s = cnn_dataset_read_class_names(train, names);
        if (s == CNN_OK) s = dataset_set_names(test, (const char *const *)train->class_names);
    }
    free(names);
    for (int i = 0; i < np; i++) free(paths[i]);
    free(base);
    return s;
}

// ---------------------------------------------------------------- options
// One stream of the seed per choice (1 limit_train, 2 val_split, 3 limit_test).
static uint64_t choice_seed(uint64_t seed, uint64_t which) {
    CnnRng r;
    cnn_rng_derive(&r, seed, UINT64_MAX - 1, which);
    return cnn_rng_u64(&r);
}

// d becomes count of its images: a stratified sample (sampled) or its first
// ones; the count of files skipped while loading stays.
static CnnStatus keep_images(CnnDataset *d, size_t count, int sampled, uint64_t seed) {
    if (!sampled) {
        dataset_truncate(d, count);
        return CNN_OK;
    }
    CnnDataset kept;
    CnnStatus s = cnn_dataset_sample(d, count, seed, &kept, NULL);
    if (s != CNN_OK) return s;
    kept.skipped = d->skipped;
    cnn_dataset_free(d);
    *d = kept;
    return CNN_OK;
}

static CnnStatus apply_options(const CnnDataOptions *opt, int sampled, CnnDataset *train, CnnDataset *val,
                               CnnDataset *test) {
    CnnStatus s = CNN_OK;
    if (opt->grayscale) {
        s = cnn_dataset_to_grayscale(train);
        if (s == CNN_OK) s = cnn_dataset_to_grayscale(test);
        if (s != CNN_OK) return s;
    }
    if (opt->limit_train > 0) {
        if (opt->limit_train > train->n)
            return cnn_error(CNN_EARG, "limit_train %zu exceeds the %zu training images",
                             opt->limit_train, train->n);
        s = keep_images(train, opt->limit_train, sampled, choice_seed(opt->seed, 1));
        if (s != CNN_OK) return s;
    }
    if (opt->val_split > 0) {
        if (opt->val_split >= train->n)
            return cnn_error(CNN_EARG, "val_split %zu leaves no training images (there are %zu%s)",
                             opt->val_split, train->n,
                             opt->limit_train ? " after limit_train" : "");
        size_t keep = train->n - opt->val_split;
        if (sampled) {
            CnnDataset rest;
            s = cnn_dataset_sample(train, opt->val_split, choice_seed(opt->seed, 2), val, &rest);
            if (s != CNN_OK) return s;
            rest.skipped = train->skipped;
            cnn_dataset_free(train);
            *train = rest;
        } else {
            s = cnn_dataset_subset(train, keep, opt->val_split, val);
            if (s == CNN_OK) dataset_truncate(train, keep);
        }
    }
    if (s == CNN_OK && opt->limit_test > 0 && opt->limit_test < test->n)
        s = keep_images(test, opt->limit_test, sampled, choice_seed(opt->seed, 3));
    return s;
}

CnnStatus cnn_dataset_load(const char *name, const char *dir, const CnnDataOptions *opt,
                           CnnDataset *train, CnnDataset *val, CnnDataset *test) {
    if (!name || !train || !test) return cnn_error(CNN_EARG, "cnn_dataset_load: NULL argument");
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    if (val) memset(val, 0, sizeof *val);
    CnnDataOptions def = {0};
    if (!opt) opt = &def;
    if (opt->val_split > 0 && !val)
        return cnn_error(CNN_EARG, "val_split %zu needs a validation data set (val is NULL)",
                         opt->val_split);
    char defdir[64];
    if (!dir) {
        snprintf(defdir, sizeof defdir, "data/%s", name);
        dir = defdir;
    }
    CnnStatus s;
    if (strncmp(name, "folder:", 7) == 0)
        s = cnn_folder_load(name + 7, opt->grayscale ? 1 : 3, opt->height, opt->width, opt->strict, train, test);
    else if (strncmp(name, "list:", 5) == 0)
        s = cnn_list_load(name + 5, opt->grayscale ? 1 : 3, opt->height, opt->width, opt->strict, train, test);
    else if (strcmp(name, "mnist") == 0 || strcmp(name, "fashion-mnist") == 0)
        s = load_idx_set(name, dir, train, test);
    else if (strcmp(name, "cifar10") == 0)
        s = load_cifar_set(name, dir, &CIFAR10, train, test);
    else if (strcmp(name, "cifar100") == 0)
        s = load_cifar_set(name, dir, &CIFAR100, train, test);
    else
        return cnn_error(CNN_EARG,
                         "unknown data set '%s' (expected mnist, fashion-mnist, cifar10, "
                         "cifar100, folder:PATH or list:PATH)",
                         name);
    const int own = strncmp(name, "folder:", 7) == 0 || strncmp(name, "list:", 5) == 0;  // in class order
    if (s == CNN_OK) s = apply_options(opt, own, train, val, test);
    if (s != CNN_OK) {
        cnn_dataset_free(train);
        cnn_dataset_free(test);
        if (val) cnn_dataset_free(val);
    }
    return s;
}
