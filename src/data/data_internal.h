// Private to the data loaders (idx.c, cifar.c, dataset.c, data_load.c).
#ifndef CNNC_DATA_INTERNAL_H
#define CNNC_DATA_INTERNAL_H

#include "cnnc.h"

// Allocates d's images (n,c,h,w) and labels (n) and names the classes
// "0".."classes-1". what names the source in error messages. d is zeroed first.
CnnStatus dataset_alloc(CnnDataset *d, const char *what, size_t n, int c, int h, int w,
                        int classes);
// Names d's classes "0".."classes-1" (replacing any names).
CnnStatus dataset_default_names(CnnDataset *d);
// Replaces d's class names with copies of names[0..d->classes-1].
CnnStatus dataset_set_names(CnnDataset *d, const char *const *names);
// Keeps the first n images (n <= d->n), shrinking the buffers.
void dataset_truncate(CnnDataset *d, size_t n);

// 1 if path is an existing regular file (or a link to one).
int data_file_exists(const char *path);
// 1 if path is an existing directory.
int data_dir_exists(const char *path);
// "a/b" in a malloc'd string (NULL when out of memory).
char *data_path_join(const char *a, const char *b);

// Decodes total image files into out (C x H x W each, labels[i] for
// paths[i]), with the classes' names; unreadable files are skipped and
// counted in out->skipped, or with strict end the load. what names the set.
// *H, *W <= 0: the first readable image's size, which is set there.
CnnStatus data_decode_images(const char *what, char *const *paths, const uint8_t *labels, size_t total,
                             char *const *class_names, int classes, int C, int *H, int *W, int strict,
                             CnnDataset *out);

#endif  // CNNC_DATA_INTERNAL_H
