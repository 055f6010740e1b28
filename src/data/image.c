// Image files for `trainer predict`: PNG (libpng), JPEG (libjpeg-turbo), BMP
// and binary PGM/PPM (stb_image), converted to the model's channels and
// resized to its input size with stb_image_resize.
//
// PNG and JPEG go to the libraries Debian's own tools use: they are fuzzed
// continuously upstream and report corrupt files as errors. stb_image 2.27
// (Debian 12) aborts on an assertion or reads out of bounds on some corrupt
// JPEG and PNG files, so it only gets the two simple formats, behind guards.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <png.h>
#include <stb_image.h>
#include <stb_image_resize.h>
#include <turbojpeg.h>

#include "internal.h"

// 64 megapixels: any camera photo; beyond that a file is corrupt or hostile.
#define MAX_PIXELS (double)(1 << 26)
#define MAX_FILE_BYTES ((size_t)1 << 28)

// ---------------------------------------------------------------- PGM/PPM guard
// stb_image 2.27 accumulates the header's width, height and maxval in an int
// with no overflow check (undefined behaviour on "P5 20000000000 ..."). This
// reads the header the way stbi__pnm_info does and refuses any number beyond
// stb_image's own limits (2^24 pixels a side, maxval 65535) before it can
// overflow.
static unsigned byte_at(const uint8_t *b, size_t n, size_t i) { return i < n ? b[i] : 0; }  // stb reads 0 past EOF

static int pnm_space(int c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static int pnm_numbers_ok(const uint8_t *b, size_t n) {
    static const unsigned long long limit[3] = {1u << 24, 1u << 24, 65535};
    size_t p = 2;  // after "P5" / "P6"
    int c = (int)byte_at(b, n, p++);
    for (int k = 0; k < 3; k++) {
        for (;;) {  // white space and # comments
            while (p < n && pnm_space(c)) c = b[p++];
            if (p >= n || c != '#') break;
            while (p < n && c != '\n' && c != '\r') c = b[p++];
        }
        unsigned long long v = 0;
        while (p < n && c >= '0' && c <= '9') {
            v = v * 10 + (unsigned)(c - '0');
            if (v > limit[k]) return 0;
            c = b[p++];
        }
    }
    return 1;
}

// ---------------------------------------------------------------- formats
// The formats predict needs, told by their first bytes. stb_image's other
// decoders (GIF, PSD, PIC, TGA, HDR) have open memory-safety bugs in 2.27
// (GitHub Security Lab, GHSL-2023-145..151), so cnnc does not hand them files.
typedef enum { IMG_UNKNOWN, IMG_PNG, IMG_JPEG, IMG_BMP, IMG_PNM } ImageFormat;

static ImageFormat image_format(const uint8_t *b, size_t n) {
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return IMG_PNG;
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return IMG_JPEG;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return IMG_BMP;
    if (n >= 2 && b[0] == 'P' && (b[1] == '5' || b[1] == '6')) return IMG_PNM;
    return IMG_UNKNOWN;
}

// ---------------------------------------------------------------- reading
static CnnStatus read_file(const char *path, uint8_t **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return cnn_error(CNN_EIO, "%s: cannot open image: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return cnn_error(CNN_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0 || size > MAX_FILE_BYTES || size > INT32_MAX) {
        fclose(f);
        return cnn_error(CNN_EFORMAT, "%s: %zu bytes is not an image file size (1 byte..%zu MB)", path,
                         size, MAX_FILE_BYTES >> 20);
    }
    *buf = malloc(size);
    if (!*buf) {
        fclose(f);
        return cnn_error(CNN_ENOMEM, "%s: cannot allocate %zu bytes", path, size);
    }
    *len = fread(*buf, 1, size, f);
    fclose(f);
    if (*len != size) {
        free(*buf);
        return cnn_error(CNN_EIO, "%s: read %zu of %zu bytes", path, *len, size);
    }
    return CNN_OK;
}

// ---------------------------------------------------------------- decoders
// A decoded image: w x h pixels of C interleaved 8-bit channels.
typedef struct {
    uint8_t *px;
    int w, h;
    int from_stb;  // free with stbi_image_free
} Decoded;

static CnnStatus check_size(const char *path, long long w, long long h) {
    if (w < 1 || h < 1 || (double)w * (double)h > MAX_PIXELS)
        return cnn_error(CNN_EFORMAT, "%s: image size %lldx%lld is not in 1x1..%.0f pixels", path, w, h,
                         MAX_PIXELS);
    return CNN_OK;
}

// A few header bytes can claim a huge image and make a decoder allocate and
// fill gigabytes before it finds the data missing, so the file must be at
// least as long as the smallest encoding of that many pixels.
static CnnStatus check_bytes(const char *path, size_t len, int w, int h, double bytes_per_pixel) {
    if ((double)len < (double)w * h * bytes_per_pixel)
        return cnn_error(CNN_EFORMAT, "%s: %zu bytes cannot hold a %dx%d image (truncated?)", path, len, w, h);
    return CNN_OK;
}

static CnnStatus decode_png(const char *path, const uint8_t *b, size_t n, int C, Decoded *d) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&im, b, n))
        return cnn_error(CNN_EFORMAT, "%s: corrupt PNG: %s", path, im.message);
    CnnStatus st = check_size(path, im.width, im.height);
    if (st) {
        png_image_free(&im);
        return st;
    }
    // An alpha channel is read and then dropped, keeping the colour under
    // transparent pixels (compositing would need a background to guess).
    const int A = (im.format & PNG_FORMAT_FLAG_ALPHA) ? 1 : 0;
    im.format = (C == 3 ? PNG_FORMAT_FLAG_COLOR : 0) | (A ? PNG_FORMAT_FLAG_ALPHA : 0);
    const size_t px = (size_t)im.width * im.height;
    uint8_t *buf = malloc(px * (size_t)(C + A));
    if (!buf) {
        png_image_free(&im);
        return cnn_error(CNN_ENOMEM, "%s: cannot allocate a %ux%u image", path, im.width, im.height);
    }
    if (!png_image_finish_read(&im, NULL, buf, 0, NULL)) {
        st = cnn_error(CNN_EFORMAT, "%s: corrupt PNG: %s", path, im.message);
        png_image_free(&im);
        free(buf);
        return st;
    }
    if (A)
        for (size_t i = 0; i < px; i++)
            for (int c = 0; c < C; c++) buf[i * C + c] = buf[i * (C + 1) + c];
    *d = (Decoded){buf, (int)im.width, (int)im.height, 0};
    return CNN_OK;
}

static CnnStatus decode_jpeg(const char *path, const uint8_t *b, size_t n, int C, Decoded *d) {
    tjhandle tj = tjInitDecompress();
    if (!tj) return cnn_error(CNN_ENOMEM, "%s: cannot start the JPEG decoder: %s", path, tjGetErrorStr2(NULL));
    int w = 0, h = 0, subsamp, colorspace;
    uint8_t *buf = NULL;
    CnnStatus st = CNN_OK;
    if (tjDecompressHeader3(tj, b, (unsigned long)n, &w, &h, &subsamp, &colorspace))
        st = cnn_error(CNN_EFORMAT, "%s: corrupt JPEG: %s", path, tjGetErrorStr2(tj));
    if (!st) st = check_size(path, w, h);
    if (!st) st = check_bytes(path, n, w, h, 1.0 / 1024);  // a flat 8x8 block fits in a few bits
    if (!st && !(buf = malloc((size_t)w * h * C)))
        st = cnn_error(CNN_ENOMEM, "%s: cannot allocate a %dx%d image", path, w, h);
    // Warnings (truncated data, a corrupt entropy-coded segment) are errors
    // too: libjpeg would fill the rest with grey and predict would classify a
    // damaged picture. LIMITSCANS refuses progressive files built to take
    // minutes to decode.
    if (!st && tjDecompress2(tj, b, (unsigned long)n, buf, w, 0, h, C == 1 ? TJPF_GRAY : TJPF_RGB,
                             TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS))
        st = cnn_error(CNN_EFORMAT, "%s: corrupt JPEG: %s", path, tjGetErrorStr2(tj));
    tjDestroy(tj);
    if (st) {
        free(buf);
        return st;
    }
    *d = (Decoded){buf, w, h, 0};
    return CNN_OK;
}

static CnnStatus decode_stb(const char *path, const uint8_t *b, size_t n, ImageFormat fmt, int C, Decoded *d) {
    if (fmt == IMG_PNM && !pnm_numbers_ok(b, n))
        return cnn_error(CNN_EFORMAT, "%s: PGM/PPM header holds a number beyond 16777216 "
                         "(width, height) or 65535 (maxval)", path);
    // stb_image 2.27 converts 16-bit PGM/PPM channels with its 8-bit routine
    // and then reads past the buffer (GHSL-2023-151).
    if (fmt == IMG_PNM && stbi_is_16_bit_from_memory(b, (int)n))
        return cnn_error(CNN_EFORMAT, "%s: 16-bit PGM/PPM files are not supported; "
                         "HINT: convert it to 8 bits (maxval 255) or to PNG", path);
    int w, h, ch;
    if (stbi_info_from_memory(b, (int)n, &w, &h, &ch)) {
        CnnStatus st = check_size(path, w, h);
        if (!st) st = check_bytes(path, n, w, h, fmt == IMG_PNM ? 1.0 : 1.0 / 8);
        if (st) return st;
    }
    unsigned char *img = stbi_load_from_memory(b, (int)n, &w, &h, &ch, C);
    if (!img) return cnn_error(CNN_EFORMAT, "%s: cannot decode image: %s", path, stbi_failure_reason());
    // stb_image can return a 0-pixel image (a PGM whose width is not a
    // number); resizing it would divide by zero.
    CnnStatus st = check_size(path, w, h);
    if (st) {
        stbi_image_free(img);
        return st;
    }
    *d = (Decoded){img, w, h, 1};
    return CNN_OK;
}

// ---------------------------------------------------------------- loading
// Reads and decodes path into d with C channels.
static CnnStatus decode_file(const char *path, int C, Decoded *d) {
    uint8_t *file = NULL;
    size_t len = 0;
    CnnStatus st = read_file(path, &file, &len);
    if (st) return st;
    const ImageFormat fmt = image_format(file, len);
    switch (fmt) {
    case IMG_PNG: st = decode_png(path, file, len, C, d); break;
    case IMG_JPEG: st = decode_jpeg(path, file, len, C, d); break;
    case IMG_BMP:
    case IMG_PNM: st = decode_stb(path, file, len, fmt, C, d); break;
    default:
        st = cnn_error(CNN_EFORMAT, "%s: cannot decode image: not a PNG, JPEG, BMP or binary PGM/PPM file; "
                       "HINT: convert it to PNG", path);
    }
    free(file);
    return st;
}

static void decoded_free(Decoded *d) {
    if (d->from_stb)
        stbi_image_free(d->px);
    else
        free(d->px);
}

CnnStatus cnn_image_size(const char *path, int *H, int *W) {
    Decoded d = {0};
    CnnStatus st = decode_file(path, 1, &d);
    if (st) return st;
    *H = d.h;
    *W = d.w;
    decoded_free(&d);
    return CNN_OK;
}

CnnStatus cnn_image_load(const char *path, int C, int H, int W, uint8_t *out) {
    if (C != 1 && C != 3)
        return cnn_error(CNN_ESHAPE, "%s: models with %d input channels cannot read images (1 or 3 only)", path, C);
    Decoded d = {0};
    CnnStatus st = decode_file(path, C, &d);
    if (st) return st;
    const unsigned char *src = d.px;
    unsigned char *resized = NULL;
    if (d.w != W || d.h != H) {
        resized = malloc((size_t)W * H * C);
        if (!resized || !stbir_resize_uint8(d.px, d.w, d.h, 0, resized, W, H, 0, C))
            st = cnn_error(CNN_ENOMEM, "%s: cannot resize %dx%d to %dx%d", path, d.w, d.h, W, H);
        src = resized;
    }
    // Interleaved HWC -> planar CHW.
    if (!st)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < H * W; i++) out[(size_t)c * H * W + i] = src[(size_t)i * C + c];
    free(resized);
    decoded_free(&d);
    return st;
}
