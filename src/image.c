// Image files for `trainer predict`: PNG, JPEG, BMP, binary PGM/PPM, decoded by
// Debian's stb_image, converted to the model's channels and resized to its
// input size with stb_image_resize.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb_image.h>
#include <stb_image_resize.h>

#include "internal.h"

// 64 megapixels: any camera photo; beyond that a file is corrupt or hostile.
#define MAX_PIXELS (double)(1 << 26)
#define MAX_FILE_BYTES ((size_t)1 << 28)

// ---------------------------------------------------------------- JPEG guard
// stb_image 2.27 (Debian 12's libstb) builds a JPEG Huffman table from a DHT
// segment without checking that its 16 code counts add up to at most 256, and
// writes past its 257-entry arrays when they do (heap overflow; upstream
// stb_image 2.28 rejects such tables). Until Debian ships the fix, cnnc finds
// every DHT segment that stb_image may read and refuses the file first.

static unsigned byte_at(const uint8_t *b, size_t n, size_t i) { return i < n ? b[i] : 0; }  // stb reads 0 past EOF

// 1 if the DHT segment whose length field starts at p holds a table with more
// than 256 codes, reading it the way stbi__process_marker does.
static int dht_overflows(const uint8_t *b, size_t n, size_t p) {
    long L = (long)(byte_at(b, n, p) << 8 | byte_at(b, n, p + 1)) - 2;
    p += 2;
    while (L > 0 && p < n) {
        unsigned q = byte_at(b, n, p++);
        if (q >> 4 > 1 || (q & 15) > 3) return 0;  // stb_image stops at this table
        long codes = 0;
        for (int i = 0; i < 16; i++) codes += byte_at(b, n, p++);
        if (codes > 256) return 1;
        p += (size_t)codes;
        L -= 17 + codes;
    }
    return 0;
}

// 1 if a JPEG file (b, n) would overflow stb_image's Huffman tables. Before
// the first scan it walks the segments by their lengths, as stb_image does;
// from the first scan on it checks every FF C4 (in entropy-coded data FF is
// always followed by 00 or a marker, so this finds every DHT stb can reach).
static int jpeg_bad_huffman(const uint8_t *b, size_t n) {
    if (n < 2 || b[0] != 0xFF || b[1] != 0xD8) return 0;
    size_t p = 2;
    while (p < n) {
        if (b[p++] != 0xFF) continue;  // junk between segments
        while (p < n && b[p] == 0xFF) p++;  // fill bytes
        if (p >= n) break;
        const unsigned m = b[p++];
        if (m == 0xDA) break;  // start of scan
        if (m == 0x01 || m == 0xD8 || m == 0xD9 || (m >= 0xD0 && m <= 0xD7)) continue;  // no length
        if (m == 0xC4 && dht_overflows(b, n, p)) return 1;
        const size_t len = byte_at(b, n, p) << 8 | byte_at(b, n, p + 1);
        if (len < 2) return 0;  // stb_image rejects the file here
        p += len;
    }
    for (; p + 1 < n; p++)
        if (b[p] == 0xFF && b[p + 1] == 0xC4 && dht_overflows(b, n, p + 2)) return 1;
    return 0;
}

// ---------------------------------------------------------------- PGM/PPM guard
// stb_image 2.27 accumulates the header's width, height and maxval in an int
// with no overflow check (undefined behaviour on "P5 20000000000 ..."). This
// reads the header the way stbi__pnm_info does and refuses any number beyond
// stb_image's own limits (2^24 pixels a side, maxval 65535) before it can
// overflow.
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

// ---------------------------------------------------------------- PNG guard
// stb_image 2.27 grows its IDAT buffer to a chunk's declared length before
// reading it, so a 157-byte PNG can ask for 2 GB. Every chunk must fit in
// the file (length, type, data, CRC).
static int png_chunks_fit(const uint8_t *b, size_t n) {
    size_t p = 8;
    while (p + 8 <= n) {
        const size_t len = (size_t)b[p] << 24 | (size_t)b[p + 1] << 16 | (size_t)b[p + 2] << 8 | b[p + 3];
        if (len > n - p - 8 || n - p - 8 - len < 4) return 0;
        if (!memcmp(b + p + 4, "IEND", 4)) break;
        p += 12 + len;
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

// ---------------------------------------------------------------- loading
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

CnnStatus cnn_image_load(const char *path, int C, int H, int W, uint8_t *out) {
    if (C != 1 && C != 3)
        return cnn_error(CNN_ESHAPE, "%s: models with %d input channels cannot read images (1 or 3 only)", path, C);
    uint8_t *file = NULL;
    size_t len = 0;
    CnnStatus st = read_file(path, &file, &len);
    if (st) return st;
    const ImageFormat fmt = image_format(file, len);
    if (fmt == IMG_UNKNOWN) {
        free(file);
        return cnn_error(CNN_EFORMAT, "%s: cannot decode image: not a PNG, JPEG, BMP or binary PGM/PPM file; "
                         "HINT: convert it to PNG", path);
    }
    if (fmt == IMG_JPEG && jpeg_bad_huffman(file, len)) {
        free(file);
        return cnn_error(CNN_EFORMAT, "%s: corrupt JPEG (a Huffman table with more than 256 codes)", path);
    }
    if (fmt == IMG_PNG && !png_chunks_fit(file, len)) {
        free(file);
        return cnn_error(CNN_EFORMAT, "%s: truncated PNG (a chunk runs past the end of the file)", path);
    }
    if (fmt == IMG_PNM && !pnm_numbers_ok(file, len)) {
        free(file);
        return cnn_error(CNN_EFORMAT, "%s: PGM/PPM header holds a number beyond 16777216 "
                         "(width, height) or 65535 (maxval)", path);
    }
    // stb_image 2.27 converts 16-bit PGM/PPM channels with its 8-bit routine
    // and then reads past the buffer (GHSL-2023-151).
    if (fmt == IMG_PNM && stbi_is_16_bit_from_memory(file, (int)len)) {
        free(file);
        return cnn_error(CNN_EFORMAT, "%s: 16-bit PGM/PPM files are not supported; "
                         "HINT: convert it to 8 bits (maxval 255) or to PNG", path);
    }
    int w, h, n;
    // The header's size first: a few bytes of header can make the decoder
    // allocate and fill gigabytes before it finds the data missing.
    if (stbi_info_from_memory(file, (int)len, &w, &h, &n)) {
        if (w < 1 || h < 1 || (double)w * h > MAX_PIXELS) {
            free(file);
            return cnn_error(CNN_EFORMAT, "%s: image size %dx%d is not in 1x1..%.0f pixels", path,
                             w, h, MAX_PIXELS);
        }
        // The fewest bytes that can hold that many pixels: 8 bits each in
        // PGM/PPM, 1 bit in BMP, an 8x8 block in a few bits in JPEG. PNG's
        // size is checked by its decoder after inflating.
        const double px = (double)w * h, min_bytes = fmt == IMG_PNM ? px : fmt == IMG_BMP ? px / 8
                                                   : fmt == IMG_JPEG ? px / 1024 : 0;
        if ((double)len < min_bytes) {
            free(file);
            return cnn_error(CNN_EFORMAT, "%s: %zu bytes cannot hold a %dx%d image (truncated?)",
                             path, len, w, h);
        }
    }
    unsigned char *img = stbi_load_from_memory(file, (int)len, &w, &h, &n, C);
    free(file);
    if (!img) return cnn_error(CNN_EFORMAT, "%s: cannot decode image: %s", path, stbi_failure_reason());
    // stb_image can return a 0-pixel image (a PGM whose width is not a
    // number); resizing it would divide by zero.
    if (w < 1 || h < 1 || (double)w * h > MAX_PIXELS) {
        stbi_image_free(img);
        return cnn_error(CNN_EFORMAT, "%s: image size %dx%d is not in 1x1..%.0f pixels", path, w, h,
                         MAX_PIXELS);
    }
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
