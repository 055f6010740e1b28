// IDX files through cnn_idx_load's zlib path (names ending in .gz).
// Input: 1 mode byte, 2 bytes split point s, then the image part (s bytes)
// and the label part (the rest). Mode bit 0: each part is written as it is,
// so zlib parses the fuzzed gzip stream; else each part is gzip-compressed
// first, so the IDX parser behind zlib gets fuzzed. Bit 1: the label file
// is raw (no .gz), mixing both readers in one call.
#include <zlib.h>

#include "fuzz_common.h"

static char images_path[128], labels_gz_path[128], labels_raw_path[128];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init();
    fuzz_path(images_path, sizeof images_path, "images-idx3-ubyte.gz");
    fuzz_path(labels_gz_path, sizeof labels_gz_path, "labels-idx1-ubyte.gz");
    fuzz_path(labels_raw_path, sizeof labels_raw_path, "labels-idx1-ubyte");
    return 0;
}

// Writes data gzip-compressed (a single gzip member) to path.
static void write_gz(const char *path, const uint8_t *data, size_t size) {
    z_stream z = {0};
    // windowBits 15 + 16: a gzip wrapper, as gzip(1) and gzopen write.
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    size_t cap = deflateBound(&z, (uLong)size);
    uint8_t *out = malloc(cap);
    if (!out) abort();
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)size;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    fuzz_write(path, out, cap - z.avail_out);
    deflateEnd(&z);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    const int raw = data[0] & 1, labels_plain = data[0] & 2;
    const size_t n = size - 3, s = fuzz_split(data + 1, n);
    const uint8_t *img = data + 3, *lab = data + 3 + s;
    const char *labels_path = labels_plain ? labels_raw_path : labels_gz_path;
    if (raw) {
        fuzz_write(images_path, img, s);
    } else {
        write_gz(images_path, img, s);
    }
    if (raw || labels_plain) {
        fuzz_write(labels_path, lab, n - s);
    } else {
        write_gz(labels_path, lab, n - s);
    }
    CnnDataset d;
    const int ok = cnn_idx_load(images_path, labels_path, &d) == CNN_OK;
    fuzz_check_dataset(&d, ok);
    if (ok) cnn_dataset_free(&d);
    unlink(images_path);
    unlink(labels_path);
    return 0;
}
