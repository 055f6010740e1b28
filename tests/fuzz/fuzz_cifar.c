// CIFAR-10/100 record files through cnn_cifar_load, then a class-names file
// through cnn_dataset_read_class_names.
// Input: 1 flags byte, 2 bytes split point s, s bytes of records, the rest
// the names file. Flags: bit 0 CIFAR-100; bit 1 "expand": each record part
// byte (CIFAR-10) or byte pair (CIFAR-100) becomes the label(s) of a whole
// 3072-pixel record, so the label checks and the names file are reached
// without the fuzzer having to grow 3 KB records; bit 2 splits the records
// over two files.
#include <string.h>

#include "fuzz_common.h"

#define PIXELS 3072
#define MAX_EXPANDED 64

static char rec_path[2][128], names_path[128];
static uint8_t *expanded;  // MAX_EXPANDED records of CIFAR-100 size

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init();
    fuzz_path(rec_path[0], sizeof rec_path[0], "data_batch_1.bin");
    fuzz_path(rec_path[1], sizeof rec_path[1], "data_batch_2.bin");
    fuzz_path(names_path, sizeof names_path, "batches.meta.txt");
    expanded = malloc((size_t)MAX_EXPANDED * (PIXELS + 2));
    if (!expanded) abort();
    return 0;
}

// The names a successful read must have given: the non-empty lines of the
// file with trailing white space (CR, space, tab) removed, in order.
static void check_names(const CnnDataset *d, const uint8_t *text, size_t len) {
    int k = 0;
    for (size_t start = 0; start < len;) {
        size_t end = start;
        while (end < len && text[end] != '\n') end++;
        size_t e = end;
        while (e > start && (text[e - 1] == '\r' || text[e - 1] == ' ' || text[e - 1] == '\t')) e--;
        if (e > start) {
            if (k >= d->classes || strlen(d->class_names[k]) != e - start ||
                memcmp(d->class_names[k], text + start, e - start))
                abort();
            k++;
        }
        start = end + 1;
    }
    if (k != d->classes) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    const int cifar100 = data[0] & 1, expand = data[0] & 2, two = (data[0] & 4) != 0;
    const size_t n = size - 3, s = fuzz_split(data + 1, n);
    const uint8_t *rec = data + 3, *names = data + 3 + s;
    size_t rec_len = s;
    if (expand) {
        const size_t lb = cifar100 ? 2 : 1, rs = lb + PIXELS;
        size_t count = s / lb;
        if (count > MAX_EXPANDED) count = MAX_EXPANDED;
        for (size_t i = 0; i < count; i++) {
            uint8_t *r = expanded + i * rs;
            memcpy(r, rec + i * lb, lb);
            memset(r + lb, (int)(i * 37 & 0xff), PIXELS);
        }
        rec = expanded;
        rec_len = count * rs;
    }
    // Two files: cut at a record boundary when expanded, else at half.
    size_t cut = rec_len;
    if (two) {
        const size_t rs = (size_t)(cifar100 ? 2 : 1) + PIXELS;
        cut = expand ? rec_len / rs / 2 * rs : rec_len / 2;
    }
    fuzz_write(rec_path[0], rec, cut);
    if (two) fuzz_write(rec_path[1], rec + cut, rec_len - cut);
    fuzz_write(names_path, names, n - s);

    const char *paths[2] = {rec_path[0], rec_path[1]};
    CnnDataset d;
    const int ok = cnn_cifar_load(paths, 1 + two, cifar100, &d) == CNN_OK;
    fuzz_check_dataset(&d, ok);
    if (ok) {
        if (d.classes != (cifar100 ? 100 : 10) || d.c != 3 || d.h != 32 || d.w != 32) abort();
        if (cnn_dataset_read_class_names(&d, names_path) == CNN_OK)
            check_names(&d, names, n - s);
        fuzz_check_dataset(&d, 1);
        cnn_dataset_free(&d);
    }
    unlink(rec_path[0]);
    if (two) unlink(rec_path[1]);
    unlink(names_path);
    return 0;
}
