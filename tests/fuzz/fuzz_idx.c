// IDX image + label files through cnn_idx_load (raw, uncompressed).
// Input: 2 bytes split point s (little-endian, folded into the rest's length),
// then s bytes of the image file and the remaining bytes of the label file.
#include "fuzz_common.h"

static char images_path[128], labels_path[128];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init();
    fuzz_path(images_path, sizeof images_path, "images-idx3-ubyte");
    fuzz_path(labels_path, sizeof labels_path, "labels-idx1-ubyte");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const size_t n = size - 2, s = fuzz_split(data, n);
    fuzz_write(images_path, data + 2, s);
    fuzz_write(labels_path, data + 2 + s, n - s);
    CnnDataset d;
    const int ok = cnn_idx_load(images_path, labels_path, &d) == CNN_OK;
    fuzz_check_dataset(&d, ok);
    if (ok) cnn_dataset_free(&d);
    unlink(images_path);
    unlink(labels_path);
    return 0;
}
