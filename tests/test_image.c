// cnn_image_load (trainer predict): small PNG, JPEG, BMP and PGM files decode
// and resize with the right pixels; the broken files the image fuzzer found
// (tests/fuzz) fail with CNN_EFORMAT and a message instead of crashing.
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

#include "cnnc.h"
#include "datagen.h"

enum { W = 7, H = 5 };

static uint8_t px[H * W * 3];
static uint8_t out[3 * 32 * 32];

static void fill(void) {
    for (int i = 0; i < H * W * 3; i++) px[i] = (uint8_t)(i * 37);
}

// Loads path as 1x28x28 and 3x32x32; returns the worse status.
static CnnStatus load_both(const char *path) {
    cnn_set_quiet(1);
    CnnStatus a = cnn_image_load(path, 1, 28, 28, out);
    CnnStatus b = cnn_image_load(path, 3, 32, 32, out);
    return a ? a : b;
}

// ---------------------------------------------------------------- good files
START_TEST(test_formats) {
    fill();
    ck_assert(stbi_write_png(tmp_path("a.png"), W, H, 3, px, W * 3));
    ck_assert(stbi_write_bmp(tmp_path("a.bmp"), W, H, 3, px));
    ck_assert(stbi_write_jpg(tmp_path("a.jpg"), W, H, 3, px, 90));
    char head[32];
    snprintf(head, sizeof head, "P5\n%d %d\n255\n", W, H);
    uint8_t pgm[64 + W * H];
    size_t hl = strlen(head);
    memcpy(pgm, head, hl);
    memcpy(pgm + hl, px, W * H);
    write_raw(tmp_path("a.pgm"), pgm, hl + W * H);
    const char *names[] = {"a.png", "a.bmp", "a.jpg", "a.pgm"};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(load_both(tmp_path(names[i])) == CNN_OK, "%s: %s", names[i], cnn_last_error());
}
END_TEST

START_TEST(test_same_size_is_a_copy) {
    fill();
    ck_assert(stbi_write_png(tmp_path("g.png"), W, H, 1, px, W));
    uint8_t o[W * H];
    ck_assert_int_eq(cnn_image_load(tmp_path("g.png"), 1, H, W, o), CNN_OK);
    ck_assert_mem_eq(o, px, sizeof o);
}
END_TEST

// Pixels arrive unchanged and planar: RGB and grey PNGs at their own size,
// an RGBA PNG with its alpha dropped, a quality-100 JPEG within JPEG's error.
START_TEST(test_pixels) {
    uint8_t o[3 * W * H];
    uint8_t rgba[4 * W * H];
    for (int i = 0; i < H * W; i++) {
        const uint8_t v[3] = {(uint8_t)(i * 7), (uint8_t)(255 - i * 5), (uint8_t)(i % 3 * 90)};
        for (int c = 0; c < 3; c++) px[3 * i + c] = rgba[4 * i + c] = v[c];
        rgba[4 * i + 3] = (uint8_t)(i * 11);  // alpha, including fully transparent
    }
    ck_assert(stbi_write_png(tmp_path("p.png"), W, H, 3, px, W * 3));
    ck_assert(stbi_write_png(tmp_path("q.png"), W, H, 4, rgba, W * 4));
    const char *names[] = {"p.png", "q.png"};
    for (int f = 0; f < 2; f++) {
        ck_assert_int_eq(cnn_image_load(tmp_path(names[f]), 3, H, W, o), CNN_OK);
        for (int i = 0; i < H * W; i++)
            for (int c = 0; c < 3; c++) ck_assert_uint_eq(o[c * H * W + i], px[3 * i + c]);
    }
    // A smooth grey ramp survives JPEG at quality 100 to within a few levels.
    enum { JW = 16, JH = 16 };
    uint8_t ramp[JW * JH], g[JW * JH];
    for (int i = 0; i < JW * JH; i++) ramp[i] = (uint8_t)(40 + (i % JW) * 8 + (i / JW) * 3);
    ck_assert(stbi_write_jpg(tmp_path("r.jpg"), JW, JH, 1, ramp, 100));
    ck_assert_int_eq(cnn_image_load(tmp_path("r.jpg"), 1, JH, JW, g), CNN_OK);
    for (int i = 0; i < JW * JH; i++) ck_assert_int_le(abs((int)g[i] - ramp[i]), 4);
}
END_TEST

// ---------------------------------------------------------------- fuzzer finds
// A PGM whose width is not a number: stb_image returns a 0-pixel image, and
// resizing it divided by zero (UBSan: NaN to int).
START_TEST(test_pgm_zero_width) {
    static const char f[] = "P5\n\xff\xff 7 5\n255\n\x01\x02\x03";
    write_raw(tmp_path("z.pgm"), f, sizeof f - 1);
    ck_assert_int_eq(load_both(tmp_path("z.pgm")), CNN_EFORMAT);
}
END_TEST

// A JPEG Huffman table with 257 codes: stb_image 2.27 writes past its tables.
START_TEST(test_jpeg_huffman_overflow) {
    uint8_t f[4 + 2 + 17 + 257 + 2];
    size_t n = 0;
    const unsigned len = 2 + 17 + 257;
    f[n++] = 0xFF; f[n++] = 0xD8;  // SOI
    f[n++] = 0xFF; f[n++] = 0xC4;  // DHT
    f[n++] = (uint8_t)(len >> 8); f[n++] = (uint8_t)len;
    f[n++] = 0x00;                                      // DC table 0
    for (int i = 0; i < 16; i++) f[n++] = i < 15 ? 16 : 17;  // 15 * 16 + 17 = 257 codes
    for (int i = 0; i < 257; i++) f[n++] = (uint8_t)i;
    f[n++] = 0xFF; f[n++] = 0xD9;  // EOI
    write_raw(tmp_path("h.jpg"), f, n);
    ck_assert_int_eq(load_both(tmp_path("h.jpg")), CNN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "Huffman"));
}
END_TEST

// A scan that names a Huffman table no DHT segment defined: stb_image 2.27
// decodes it with uninitialised heap memory as the table, one way into the
// assertion CI's image fuzzer hit in stbi__jpeg_huff_decode. Also a JPEG cut off in its entropy-coded data:
// refused rather than classified with its lower half grey.
START_TEST(test_jpeg_corrupt_scan) {
    enum { JW = 32, JH = 32 };
    uint8_t img[JW * JH * 3];
    for (int i = 0; i < JW * JH * 3; i++) img[i] = (uint8_t)(i * 97 + (i >> 5) * 13);
    ck_assert(stbi_write_jpg(tmp_path("s.jpg"), JW, JH, 3, img, 90));
    static uint8_t b[65536];
    const size_t n = read_raw(tmp_path("s.jpg"), b, sizeof b);
    size_t sos = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (b[i] == 0xFF && b[i + 1] == 0xDA) sos = i;
    ck_assert_uint_gt(sos, 0);
    ck_assert_int_eq(load_both(tmp_path("s.jpg")), CNN_OK);
    write_raw(tmp_path("t.jpg"), b, sos + 14 + (n - sos - 14) / 2);  // half the scan data
    ck_assert_int_eq(load_both(tmp_path("t.jpg")), CNN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "corrupt JPEG"));
    b[sos + 6] = 0x33;  // first component: DC and AC table 3, never defined
    write_raw(tmp_path("u.jpg"), b, n);
    ck_assert_int_eq(load_both(tmp_path("u.jpg")), CNN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "Huffman table"));
}
END_TEST

// A width of 20000000000: stb_image 2.27 overflows an int reading it (UBSan).
START_TEST(test_pgm_number_overflow) {
    static const char f[] = "P5\n000020000000000 5\n255\n\x01\x02\x03";
    write_raw(tmp_path("o.pgm"), f, sizeof f - 1);
    ck_assert_int_eq(load_both(tmp_path("o.pgm")), CNN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "beyond"));
    static const char g[] = "P5\n# c\n2 1\n#x\n99999999999\n\x01\x02";
    write_raw(tmp_path("m.pgm"), g, sizeof g - 1);
    ck_assert_int_eq(load_both(tmp_path("m.pgm")), CNN_EFORMAT);
}
END_TEST

// A PNG whose IDAT chunk declares 1 GB: stb_image 2.27 allocated it first;
// libpng reports the chunk running past the end.
START_TEST(test_png_chunk_past_end) {
    fill();
    ck_assert(stbi_write_png(tmp_path("c.png"), W, H, 3, px, W * 3));
    uint8_t b[512];
    const size_t n = read_raw(tmp_path("c.png"), b, sizeof b);
    ck_assert_uint_gt(n, 33 + 8);
    b[33] = 0x40;  // IDAT length (after the 8-byte signature and 25-byte IHDR): 1 GB
    write_raw(tmp_path("c.png"), b, n);
    ck_assert_int_eq(load_both(tmp_path("c.png")), CNN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "corrupt PNG"));
}
END_TEST

// A 16-bit PGM read as RGB: stb_image 2.27 reads past its buffer.
START_TEST(test_pgm_16bit) {
    static const char f[] = "P5\n2 2\n65535\n\x01\x02\x03\x04\x05\x06\x07\x08";
    write_raw(tmp_path("w.pgm"), f, sizeof f - 1);
    ck_assert_int_eq(load_both(tmp_path("w.pgm")), CNN_EFORMAT);
}
END_TEST

// A 168-byte BMP that declares 2883591 x 5 pixels: decoding and resizing
// zeros took seconds. Uncompressed formats must hold their pixels.
START_TEST(test_bmp_too_short) {
    fill();
    ck_assert(stbi_write_bmp(tmp_path("b.bmp"), W, H, 3, px));
    FILE *f = fopen(tmp_path("b.bmp"), "r+b");
    ck_assert_ptr_nonnull(f);
    const uint8_t width[4] = {0x07, 0x00, 0x2c, 0x00};  // little-endian at offset 18
    ck_assert_int_eq(fseek(f, 18, SEEK_SET), 0);
    ck_assert_int_eq(fwrite(width, 1, 4, f), 4);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(load_both(tmp_path("b.bmp")), CNN_EFORMAT);
}
END_TEST

// Formats cnnc does not hand to stb_image, and files that are not images.
START_TEST(test_other_formats) {
    static const char gif[] = "GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    write_raw(tmp_path("x.gif"), gif, sizeof gif - 1);
    ck_assert_int_eq(load_both(tmp_path("x.gif")), CNN_EFORMAT);
    write_raw(tmp_path("empty"), "", 0);
    ck_assert_int_eq(load_both(tmp_path("empty")), CNN_EFORMAT);
    ck_assert_int_eq(load_both(tmp_path("missing")), CNN_EIO);
}
END_TEST

static Suite *image_suite(void) {
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("image");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_formats);
    tcase_add_test(tc, test_same_size_is_a_copy);
    tcase_add_test(tc, test_pixels);
    tcase_add_test(tc, test_pgm_zero_width);
    tcase_add_test(tc, test_jpeg_huffman_overflow);
    tcase_add_test(tc, test_jpeg_corrupt_scan);
    tcase_add_test(tc, test_pgm_number_overflow);
    tcase_add_test(tc, test_png_chunk_past_end);
    tcase_add_test(tc, test_pgm_16bit);
    tcase_add_test(tc, test_bmp_too_short);
    tcase_add_test(tc, test_other_formats);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(image_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
