// cnnc/data.h: image classification data sets (MNIST, Fashion-MNIST,
// CIFAR-10, CIFAR-100) held as compact uint8 arrays, and an epoch iterator
// that turns them into normalised, optionally augmented float32 batches.
// Included by cnnc.h; may also be included on its own.
//
// Status codes of the loaders: CNN_EIO (a file is missing or unreadable),
// CNN_EFORMAT (a file is malformed: magic, header, size, label, gzip stream),
// CNN_ESHAPE (files that must agree do not: image vs label counts, image
// sizes), CNN_ENOMEM (an allocation failed), CNN_EARG (a bad name or option).
// Every error records one line (cnn_last_error) that names the file and the
// problem, e.g. "data/mnist/train-labels-idx1-ubyte: label 12 at record 57
// (byte offset 65) is out of range 0..9". On failure every output data set
// is left empty (zeroed, nothing to free).
#ifndef CNNC_DATA_H
#define CNNC_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "cnnc.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------- data sets
// n images of (c,h,w) uint8 pixels (0..255), stored image after image,
// channel after channel, row after row, with labels in 0..classes-1.
// A zeroed struct is an empty data set; cnn_dataset_free accepts it.
typedef struct {
    uint8_t *images;  // (n, c, h, w), owned
    uint8_t *labels;  // (n), owned
    size_t n;
    int c, h, w;
    int classes;
    char **class_names;  // classes strings, owned: from batches.meta.txt /
                         // fine_label_names.txt, Fashion-MNIST's names, or "0".."9"
    size_t skipped;      // image folders: files that could not be read and were left out
} CnnDataset;

typedef struct {
    int grayscale;       // 1: RGB -> 1 channel, round((R+G+B)/3); no-op for 1-channel sets
    size_t limit_train;  // > 0: keep only the first limit_train training images (see seed)
    size_t val_split;    // > 0: move the last val_split of those into the validation set (see seed)
    // Image folders ("folder:ROOT"): the images' height and width (0: the
    // first image's), and whether an unreadable file stops the load (else it
    // is skipped and counted in CnnDataset.skipped).
    int height, width, strict;
    size_t limit_test;   // > 0: keep only the first limit_test test images (all if fewer; see seed)
    // Image folders and lists are read class after class, so for them
    // limit_train, val_split and limit_test take seeded random images instead,
    // stratified by class (cnn_dataset_sample), each from its own stream of
    // this seed. The other sets keep their files' order.
    uint64_t seed;
} CnnDataOptions;

// Loads a data set by name from its own folder:
//   "mnist", "fashion-mnist": dir/{train,t10k}-{images-idx3,labels-idx1}-ubyte,
//       each raw or gzip (NAME.gz); the raw file wins when both exist.
//   "cifar10":  dir/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin
//   "cifar100": dir/cifar-100-binary/{train,test}.bin (fine labels 0..99)
//       (for CIFAR, dir may also be the cifar-*-bin* folder itself).
//   "folder:ROOT", "list:ROOT": your own images, see cnn_folder_load and
//       cnn_list_load (dir is not used); 3 channels, or 1 with grayscale.
// dir NULL means "data/<name>". opt NULL means all defaults (zeros).
// limit_train is applied first, then val_split; both must leave at least one
// training image (else CNN_EARG); then limit_test. val may be NULL when val_split is 0, and is
// left empty then. The caller frees train, val and test with cnn_dataset_free.
CNN_API CnnStatus cnn_dataset_load(const char *name, const char *dir, const CnnDataOptions *opt,
                           CnnDataset *train, CnnDataset *val, CnnDataset *test);
CNN_API void cnn_dataset_free(CnnDataset *d);

// Bytes per image, c*h*w.
CNN_API size_t cnn_dataset_image_size(const CnnDataset *d);

// An IDX image file (magic 0x00000803: n, rows, cols, then n*rows*cols bytes)
// and its label file (0x00000801: n, then n labels 0..9) -> out (n,1,rows,cols)
// with 10 classes named "0".."9". A path ending in ".gz" is read through zlib;
// any other path must be uncompressed (a gzip file there is an error that says
// so). The files must be exactly as long as their headers say.
CNN_API CnnStatus cnn_idx_load(const char *images_path, const char *labels_path, CnnDataset *out);

// CIFAR binary batches, concatenated in order -> out (n,3,32,32).
// CIFAR-10 records: label, 1024 R, 1024 G, 1024 B bytes (3073 bytes).
// CIFAR-100 (cifar100=1) records: coarse label, fine label, 3072 bytes; the
// fine label (0..99) is used. Each file must hold a whole, non-zero number of
// records. Class names are "0".."N-1" (see cnn_dataset_read_class_names).
CNN_API CnnStatus cnn_cifar_load(const char *const *paths, int npaths, int cifar100, CnnDataset *out);

// An image folder in torchvision's ImageFolder layout: ROOT/train/<class>/*
// and ROOT/test/<class>/* (PNG, JPEG, BMP, PGM/PPM). Classes are train's
// sub-folders in byte order of their names (2..256 of them; a test class
// folder must also be in train, and every class folder must hold a file:
// CNN_EFORMAT names an empty one), files are read in byte order of their
// names, hidden ones left out. Each image is converted to C channels (1 or
// 3) and resized to H x W (H, W <= 0: the first readable image's size). A
// file that cannot be read is named on stderr and skipped (counted in
// skipped), or with strict ends the load with its error.
CNN_API CnnStatus cnn_folder_load(const char *root, int C, int H, int W, int strict, CnnDataset *train,
                          CnnDataset *test);

// An image list: ROOT/train.csv and ROOT/test.csv, one "path,label" line
// per image (paths relative to ROOT unless absolute; the label after the
// last comma; an optional first line "path,label"). Classes are the
// training list's distinct labels in byte order (2..256); a test label must
// be one of them. Images are read as by cnn_folder_load.
CNN_API CnnStatus cnn_list_load(const char *root, int C, int H, int W, int strict, CnnDataset *train,
                        CnnDataset *test);

// Replaces d's class names with the non-empty lines of a text file, which must
// hold exactly d->classes of them (CIFAR's batches.meta.txt, fine_label_names.txt).
CNN_API CnnStatus cnn_dataset_read_class_names(CnnDataset *d, const char *path);

// out = images first .. first+count-1 of src (a deep copy, class names too).
CNN_API CnnStatus cnn_dataset_subset(const CnnDataset *src, size_t first, size_t count, CnnDataset *out);

// A seeded random sample of count images of src, stratified by class, and
// (rest not NULL) the other images. Each class present gets its share of
// count in proportion to its images (largest remainders, ties in a seeded
// order), and at least one image when count reaches the number of classes
// present; a class's images are drawn from the stream cnn_rng_derive(seed,
// class, 0). Both keep src's order and class names (deep copies); rest stays
// empty when count is src->n. CNN_EARG unless 0 < count <= src->n. The same
// on any machine and for any thread count.
CNN_API CnnStatus cnn_dataset_sample(const CnnDataset *src, size_t count, uint64_t seed, CnnDataset *sample,
                                     CnnDataset *rest);

// In place: 3 channels -> 1 channel, each pixel round((R+G+B)/3). 1 channel: no-op.
// Other channel counts: CNN_ESHAPE.
CNN_API CnnStatus cnn_dataset_to_grayscale(CnnDataset *d);

// Per-channel mean and population standard deviation of all pixels in [0,1]
// units; mean and std hold d->c floats each. Exact integer sums, then double,
// so the result does not depend on threads or order.
CNN_API void cnn_dataset_channel_stats(const CnnDataset *d, float *mean, float *std);

// ---------------------------------------------------------------- one image
// Training-time augmentation, torchvision style: RandomCrop(size, padding=
// crop_pad) then RandomHorizontalFlip(). Padding is black (pixel value 0,
// which then normalises to -mean/std like torchvision's pad-before-Normalize),
// or with reflect the image mirrored at its edges (airbench94's translate).
typedef struct {
    int crop_pad;  // > 0: shift the image by dy, dx in [-crop_pad, crop_pad]
    int hflip;     // 1: mirror left-right with probability 1/2; 2: alternating (airbench94):
                   // a coin per image drawn once, from (seed, UINT64_MAX - 1, index), its
                   // side swapped in odd epochs, so each image is seen both ways in turn
    int reflect;   // 1: pad by reflection (crop_pad below the image's size)
} CnnAugment;

// One image's random draw from the stream cnn_rng_derive(seed, epoch, index):
// dy, dx in [-crop_pad, crop_pad] (0 without crop) and flip 0/1 (0 without hflip).
// aug NULL: all zero. Depends on nothing else (not batch size, not threads).
CNN_API void cnn_augment_draw(const CnnAugment *aug, uint64_t seed, uint64_t epoch, uint64_t index, int *dy,
                      int *dx, int *flip);

// One image src (c,h,w) uint8 -> dst (c,h,w) float32:
//   dst[ch][y][x] = ((float)p / 255.0f - mean[ch]) / std[ch],
//   p = src[ch][y + dy][(flip ? w-1-x : x) + dx], or 0 where that is outside
// the image. That is: the image padded with zeros, cropped at offset (dy,dx),
// then mirrored. mean/std NULL: 0 and 1. dy = dx = flip = 0: plain conversion.
CNN_API void cnn_image_to_float(const uint8_t *src, int c, int h, int w, const float *mean,
                        const float *std, int dy, int dx, int flip, float *dst);
// Where index i (within n of a pad of less than n) falls when the pad mirrors
// the image, PyTorch's 'reflect' (the edge pixel is not repeated).
static inline int cnn_reflect_index(int i, int n) { return i < 0 ? -i : i >= n ? 2 * n - 2 - i : i; }
// The same with the pad mirrored (reflect 1: p = src at the reflected row and
// column, the edge not repeated, as PyTorch's F.pad(mode='reflect')) or black (0).
CNN_API void cnn_image_to_float_pad(const uint8_t *src, int c, int h, int w, const float *mean, const float *std, int dy,
                            int dx, int flip, int reflect, float *dst);

// ---------------------------------------------------------------- batches
typedef struct {
    int batch;       // images per batch, > 0
    int shuffle;     // 1: a new permutation each epoch from (seed, epoch); 0: data set order
    int drop_last;   // 1: skip the final partial batch
    uint64_t seed;   // shuffling and augmentation streams
    CnnAugment aug;  // {0, 0} for evaluation
    const float *mean, *std;  // c floats each ([0,1] units, std > 0) or NULL: 0 and 1; copied
} CnnBatcherConfig;

// Epoch iterator over a data set. Fields are read-only for callers.
typedef struct {
    const CnnDataset *data;  // not owned; must outlive the batcher
    CnnBatcherConfig cfg;    // cfg.mean/std are NULL here (folded into lut)
    float *lut;              // (c, 256): normalised value of each pixel value
    uint32_t *order;         // (n): this epoch's order of data set indices
    size_t pos;              // next position in order
    size_t last_pos;         // first position of the last batch returned
    int last_B;              // size of the last batch returned
    uint64_t epoch;
} CnnBatcher;

// Prepares epoch 0. CNN_EARG for an empty data set, batch <= 0, more than
// 2^32-1 images, crop_pad outside 0..min(h,w) or a std that is not > 0.
CNN_API CnnStatus cnn_batcher_init(CnnBatcher *b, const CnnDataset *d, const CnnBatcherConfig *cfg);
CNN_API void cnn_batcher_free(CnnBatcher *b);

// Starts an epoch: rewinds and, with shuffle, draws the permutation of the
// stream cnn_rng_derive(seed, epoch, UINT64_MAX). Same for any thread count.
CNN_API void cnn_batcher_epoch(CnnBatcher *b, uint64_t epoch);

// Fills the next batch: x (B,c,h,w) float32 (see cnn_image_to_float; with
// augmentation each image's draw is cnn_augment_draw(aug, seed, epoch, index
// in the data set)) and labels (B) (may be NULL). Images are converted in
// parallel (OpenMP), and the result is bitwise the same for any thread count.
// Returns B: cfg.batch, less for the final partial batch, 0 at the end of the
// epoch (then call cnn_batcher_epoch).
CNN_API int cnn_batcher_next(CnnBatcher *b, float *x, uint8_t *labels);
// The size of the next batch (0 at the end of the epoch), without taking it.
CNN_API int cnn_batcher_peek(const CnnBatcher *b);
// cnn_batcher_next for images [first, first + count) of the next batch only
// (x and labels get those count images, the same as in the whole batch):
// a data-parallel rank's part (cnn_net_batch_part). Returns the whole
// batch's size and moves past all of it (-1, moving nowhere, for a range
// outside the batch).
CNN_API int cnn_batcher_next_part(CnnBatcher *b, int first, int count, float *x, uint8_t *labels);

// Skips the first `batches` batches of the current epoch (for resuming).
CNN_API void cnn_batcher_skip(CnnBatcher *b, size_t batches);

// Batches per epoch (counting a final partial one unless drop_last).
CNN_API size_t cnn_batcher_num_batches(const CnnBatcher *b);

// Data set indices of the last batch returned (*B of them; may be NULL).
CNN_API const uint32_t *cnn_batcher_indices(const CnnBatcher *b, int *B);

// ---------------------------------------------------------------- evaluation
// Evaluation-mode pass over a whole data set in batches of the net's max
// batch: mean loss and confusion matrix cm (K,K) (overwritten).
CNN_API CnnStatus cnn_evaluate(CnnNet *net, const CnnDataset *d, const float *mean, const float *std,
                       double *loss, int64_t *cm);
// The same with test-time augmentation of `level`: 0 none; 1 each image's
// logits are the mean of its own and its mirror image's (left to right); 2
// (airbench94's) half of that and a quarter each of the same mean for the
// image shifted by one pixel up and left and by one down and right, with
// the edges mirrored: 6 forward passes per image.
CNN_API CnnStatus cnn_evaluate_tta(CnnNet *net, const CnnDataset *d, const float *mean, const float *std, int level,
                           double *loss, int64_t *cm);

#ifdef __cplusplus
}
#endif

#endif  // CNNC_DATA_H
