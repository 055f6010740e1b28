// Image files for `trainer predict`: PNG, JPEG, PGM/PPM, BMP ... decoded by
// Debian's stb_image, converted to the model's channels and resized to its
// input size with stb_image_resize.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>
#include <stb_image_resize.h>

#include "internal.h"

CnnStatus cnn_image_load(const char *path, int C, int H, int W, uint8_t *out) {
    if (C != 1 && C != 3)
        return cnn_error(CNN_ESHAPE, "%s: models with %d input channels cannot read images (1 or 3 only)", path, C);
    int w, h, n;
    FILE *f = fopen(path, "rb");
    if (!f) return cnn_error(CNN_EIO, "%s: cannot open image: %s", path, strerror(errno));
    unsigned char *img = stbi_load_from_file(f, &w, &h, &n, C);
    fclose(f);
    if (!img) return cnn_error(CNN_EFORMAT, "%s: cannot decode image: %s", path, stbi_failure_reason());
    unsigned char *src = img;
    unsigned char *resized = NULL;
    if (w != W || h != H) {
        resized = malloc((size_t)W * H * C);
        if (!resized || !stbir_resize_uint8(img, w, h, 0, resized, W, H, 0, C)) {
            free(resized);
            stbi_image_free(img);
            return cnn_error(CNN_ENOMEM, "%s: cannot resize %dx%d to %dx%d", path, w, h, W, H);
        }
        src = resized;
    }
    // Interleaved HWC -> planar CHW.
    for (int c = 0; c < C; c++)
        for (int i = 0; i < H * W; i++) out[(size_t)c * H * W + i] = src[(size_t)i * C + c];
    free(resized);
    stbi_image_free(img);
    return CNN_OK;
}
