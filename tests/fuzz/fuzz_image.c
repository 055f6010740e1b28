// Image files through cnn_image_load, the path of `trainer predict`: libpng,
// libjpeg-turbo or stb_image decoding, then a resize to 1x28x28 (MNIST) and
// 3x32x32 (CIFAR). Only stb_image is instrumented (stb_impl.c), so coverage
// steers the fuzzer into the BMP and PGM/PPM decoders and cnnc's guards.
// Input: the whole image file.
#include "fuzz_common.h"

static char path[128];
static uint8_t out[3 * 32 * 32];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init();
    fuzz_path(path, sizeof path, "image");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write(path, data, size);
    volatile unsigned sum = 0;
    if (cnn_image_load(path, 1, 28, 28, out) == CNN_OK)
        for (int i = 0; i < 28 * 28; i++) sum += out[i];
    if (cnn_image_load(path, 3, 32, 32, out) == CNN_OK)
        for (int i = 0; i < 3 * 32 * 32; i++) sum += out[i];
    (void)sum;
    unlink(path);
    return 0;
}
