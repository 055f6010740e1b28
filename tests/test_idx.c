// IDX loader (MNIST, Fashion-MNIST): generated raw and gzip files load with
// the right content; every kind of broken file returns its status and a
// message naming the file and the problem, never a crash.
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"
#include "datagen.h"

// Checks that d is the generated set of n images of rows x cols.
static void check_content(const CnnDataset *d, size_t n, int rows, int cols) {
    ck_assert_uint_eq(d->n, n);
    ck_assert_int_eq(d->c, 1);
    ck_assert_int_eq(d->h, rows);
    ck_assert_int_eq(d->w, cols);
    ck_assert_int_eq(d->classes, 10);
    ck_assert_str_eq(d->class_names[0], "0");
    ck_assert_str_eq(d->class_names[9], "9");
    // One assertion per image: each ck_assert costs a syscall in fork mode.
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(d->labels[i], gen_label(i, 10));
        int bad = -1;
        for (int y = 0; y < rows; y++)
            for (int x = 0; x < cols; x++)
                if (bad < 0 && d->images[(i * rows + y) * cols + x] != gen_pixel(i, 0, y, x))
                    bad = y * cols + x;
        ck_assert_msg(bad < 0, "image %zu differs at pixel %d", i, bad);
    }
}

// Writes images/labels (raw), then tries to load them; returns the status.
static CnnStatus load_bufs(const uint8_t *im, size_t li, const uint8_t *lb, size_t ll,
                           CnnDataset *d) {
    write_raw(tmp_path("im"), im, li);
    write_raw(tmp_path("lb"), lb, ll);
    return cnn_idx_load(tmp_path("im"), tmp_path("lb"), d);
}

// ---------------------------------------------------------------- good files
START_TEST(test_raw) {
    write_idx_pair(g_tmp, "train", 23, 5, 7, 0);
    CnnDataset d;
    ck_assert_int_eq(
        cnn_idx_load(tmp_path("train-images-idx3-ubyte"), tmp_path("train-labels-idx1-ubyte"), &d),
        CNN_OK);
    check_content(&d, 23, 5, 7);
    cnn_dataset_free(&d);
    ck_assert_ptr_null(d.images);
    cnn_dataset_free(&d);  // freeing twice is harmless
}
END_TEST

START_TEST(test_gz) {
    // Big enough to need several buffer growths (> 1 MB uncompressed).
    write_idx_pair(g_tmp, "train", 3000, 28, 28, 1);
    CnnDataset d;
    ck_assert_int_eq(cnn_idx_load(tmp_path("train-images-idx3-ubyte.gz"),
                                  tmp_path("train-labels-idx1-ubyte.gz"), &d),
                     CNN_OK);
    check_content(&d, 3000, 28, 28);
    cnn_dataset_free(&d);
}
END_TEST

START_TEST(test_load_by_name_raw_and_gz) {
    // train raw, test gzip: cnn_dataset_load finds each form.
    write_idx_pair(g_tmp, "train", 12, 4, 4, 0);
    write_idx_pair(g_tmp, "t10k", 5, 4, 4, 1);
    CnnDataset tr, va, te;
    ck_assert_int_eq(cnn_dataset_load("mnist", g_tmp, NULL, &tr, &va, &te), CNN_OK);
    check_content(&tr, 12, 4, 4);
    check_content(&te, 5, 4, 4);
    ck_assert_uint_eq(va.n, 0);
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
}
END_TEST

START_TEST(test_prefers_raw) {
    write_idx_pair(g_tmp, "train", 9, 3, 3, 0);
    write_idx_pair(g_tmp, "train", 11, 3, 3, 1);
    write_idx_pair(g_tmp, "t10k", 4, 3, 3, 1);
    CnnDataset tr, te;
    ck_assert_int_eq(cnn_dataset_load("fashion-mnist", g_tmp, NULL, &tr, NULL, &te), CNN_OK);
    ck_assert_uint_eq(tr.n, 9);
    ck_assert_uint_eq(te.n, 4);
    ck_assert_str_eq(tr.class_names[0], "T-shirt/top");
    ck_assert_str_eq(te.class_names[9], "Ankle boot");
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
}
END_TEST

// ---------------------------------------------------------------- truncation
START_TEST(test_truncated_images) {
    size_t li, ll;
    uint8_t *im = idx_images(6, 4, 5, &li), *lb = idx_labels(6, &ll);
    const size_t cuts[] = {0, 1, 3, 4, 15, 16, 17, 16 + 20, 16 + 20 * 3 + 7, li - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        CnnDataset d;
        cnn_set_quiet(1);
        ck_assert_error(load_bufs(im, cuts[k], lb, ll, &d), CNN_EFORMAT, tmp_path("im"),
                        "truncated");
        ck_assert_empty(&d);
    }
    // The message says where the data ends.
    CnnDataset d;
    load_bufs(im, 16 + 20 * 3 + 7, lb, ll, &d);
    ck_assert_msg(strstr(cnn_last_error(), "image 3 is cut off at byte offset 83"), "%s",
                  cnn_last_error());
    free(im);
    free(lb);
}
END_TEST

START_TEST(test_truncated_labels) {
    size_t li, ll;
    uint8_t *im = idx_images(6, 4, 5, &li), *lb = idx_labels(6, &ll);
    const size_t cuts[] = {0, 2, 7, 8, 9, ll - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        CnnDataset d;
        cnn_set_quiet(1);
        ck_assert_error(load_bufs(im, li, lb, cuts[k], &d), CNN_EFORMAT, tmp_path("lb"),
                        "truncated");
        ck_assert_empty(&d);
    }
    free(im);
    free(lb);
}
END_TEST

START_TEST(test_truncated_gz) {
    // A valid gzip of a truncated IDX file, and a gzip stream cut short.
    size_t li, ll;
    uint8_t *im = idx_images(50, 8, 8, &li), *lb = idx_labels(50, &ll);
    write_gz(tmp_path("lb.gz"), lb, ll);
    write_gz(tmp_path("short.gz"), im, li - 100);
    CnnDataset d;
    cnn_set_quiet(1);
    ck_assert_error(cnn_idx_load(tmp_path("short.gz"), tmp_path("lb.gz"), &d), CNN_EFORMAT,
                    tmp_path("short.gz"), "truncated: header promises 50 images");
    ck_assert_empty(&d);

    write_gz(tmp_path("im.gz"), im, li);
    size_t n;
    uint8_t *z = read_all(tmp_path("im.gz"), &n);
    const size_t cuts[] = {n / 2, n - 9, n - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        write_raw(tmp_path("cut.gz"), z, cuts[k]);
        ck_assert_error(cnn_idx_load(tmp_path("cut.gz"), tmp_path("lb.gz"), &d), CNN_EFORMAT,
                        tmp_path("cut.gz"), "truncated");
        ck_assert_empty(&d);
    }
    free(z);
    free(im);
    free(lb);
}
END_TEST

START_TEST(test_corrupt_gz) {
    size_t li, ll;
    uint8_t *im = idx_images(50, 8, 8, &li), *lb = idx_labels(50, &ll);
    write_gz(tmp_path("im.gz"), im, li);
    write_gz(tmp_path("lb.gz"), lb, ll);
    size_t n;
    uint8_t *z = read_all(tmp_path("im.gz"), &n);
    for (size_t i = 20; i < 60 && i < n; i++) z[i] ^= 0x5a;  // scramble the deflate data
    write_raw(tmp_path("bad.gz"), z, n);
    CnnDataset d;
    cnn_set_quiet(1);
    CnnStatus s = cnn_idx_load(tmp_path("bad.gz"), tmp_path("lb.gz"), &d);
    ck_assert_int_eq(s, CNN_EFORMAT);
    ck_assert_msg(strstr(cnn_last_error(), tmp_path("bad.gz")), "%s", cnn_last_error());
    ck_assert_empty(&d);
    free(z);
    free(im);
    free(lb);
}
END_TEST

// ---------------------------------------------------------------- headers
START_TEST(test_bad_magic) {
    size_t li, ll;
    uint8_t *im = idx_images(3, 2, 2, &li), *lb = idx_labels(3, &ll);
    CnnDataset d;
    cnn_set_quiet(1);
    put_be32(im, 0x00000804u);
    ck_assert_error(load_bufs(im, li, lb, ll, &d), CNN_EFORMAT, tmp_path("im"),
                    "bad magic 0x00000804 at byte offset 0, expected 0x00000803");
    put_be32(im, 0x00000803u);
    put_be32(lb, 0x12345678u);
    ck_assert_error(load_bufs(im, li, lb, ll, &d), CNN_EFORMAT, tmp_path("lb"),
                    "bad magic 0x12345678");
    // Only the high bytes differ (a check of the low byte alone passes these).
    put_be32(lb, 0x00000801u);
    put_be32(im, 0x01000803u);
    ck_assert_error(load_bufs(im, li, lb, ll, &d), CNN_EFORMAT, tmp_path("im"), "bad magic 0x01000803");
    put_be32(im, 0x00010803u);
    ck_assert_error(load_bufs(im, li, lb, ll, &d), CNN_EFORMAT, tmp_path("im"), "bad magic 0x00010803");
    put_be32(im, 0x00000803u);
    put_be32(lb, 0x80000801u);
    ck_assert_error(load_bufs(im, li, lb, ll, &d), CNN_EFORMAT, tmp_path("lb"), "bad magic 0x80000801");
    put_be32(lb, 0x00000801u);
    // Swapped arguments: the label file where the images belong.
    ck_assert_error(load_bufs(lb, ll, im, li, &d), CNN_EFORMAT, tmp_path("im"), "paths swapped");
    ck_assert_empty(&d);
    free(im);
    free(lb);
}
END_TEST

START_TEST(test_gzip_read_as_raw) {
    size_t li, ll;
    uint8_t *im = idx_images(3, 2, 2, &li), *lb = idx_labels(3, &ll);
    write_gz(tmp_path("train-images-idx3-ubyte"), im, li);
    write_raw(tmp_path("lb"), lb, ll);
    CnnDataset d;
    cnn_set_quiet(1);
    ck_assert_error(cnn_idx_load(tmp_path("train-images-idx3-ubyte"), tmp_path("lb"), &d),
                    CNN_EFORMAT, tmp_path("train-images-idx3-ubyte"), "is gzip-compressed");
    ck_assert_msg(strstr(cnn_last_error(), "rename it to"), "%s", cnn_last_error());
    // And the other way round: a raw file named .gz.
    write_raw(tmp_path("im.gz"), im, li);
    ck_assert_error(cnn_idx_load(tmp_path("im.gz"), tmp_path("lb"), &d), CNN_EFORMAT,
                    tmp_path("im.gz"), "is not gzip-compressed");
    ck_assert_empty(&d);
    free(im);
    free(lb);
}
END_TEST

START_TEST(test_count_mismatch) {
    size_t li, ll;
    uint8_t *im = idx_images(7, 3, 3, &li), *lb = idx_labels(6, &ll);
    CnnDataset d;
    cnn_set_quiet(1);
    ck_assert_error(load_bufs(im, li, lb, ll, &d), CNN_ESHAPE, tmp_path("lb"), "has 6 labels but");
    ck_assert_msg(strstr(cnn_last_error(), tmp_path("im")), "%s", cnn_last_error());
    ck_assert_empty(&d);
    free(im);
    free(lb);
}
END_TEST

START_TEST(test_trailing_bytes) {
    size_t li, ll;
    uint8_t *im = idx_images(4, 3, 3, &li), *lb = idx_labels(4, &ll);
    uint8_t *im2 = calloc(li + 5, 1), *lb2 = calloc(ll + 1, 1);
    memcpy(im2, im, li);
    memcpy(lb2, lb, ll);
    CnnDataset d;
    cnn_set_quiet(1);
    ck_assert_error(load_bufs(im2, li + 5, lb, ll, &d), CNN_EFORMAT, tmp_path("im"),
                    "5 trailing bytes");
    ck_assert_error(load_bufs(im, li, lb2, ll + 1, &d), CNN_EFORMAT, tmp_path("lb"),
                    "1 trailing bytes");
    ck_assert_empty(&d);
    free(im);
    free(lb);
    free(im2);
    free(lb2);
}
END_TEST

START_TEST(test_label_out_of_range) {
    size_t li, ll;
    uint8_t *im = idx_images(60, 2, 2, &li), *lb = idx_labels(60, &ll);
    lb[8 + 57] = 12;
    CnnDataset d;
    cnn_set_quiet(1);
    ck_assert_error(load_bufs(im, li, lb, ll, &d), CNN_EFORMAT, tmp_path("lb"),
                    "label 12 at record 57 (byte offset 65) is out of range 0..9");
    ck_assert_empty(&d);
    // The first label past the range: the class count itself.
    lb[8 + 57] = 3;
    lb[8 + 4] = 10;
    ck_assert_error(load_bufs(im, li, lb, ll, &d), CNN_EFORMAT, tmp_path("lb"),
                    "label 10 at record 4 (byte offset 12) is out of range 0..9");
    ck_assert_empty(&d);
    lb[8 + 4] = 9;  // the last class is accepted
    ck_assert_int_eq(load_bufs(im, li, lb, ll, &d), CNN_OK);
    cnn_dataset_free(&d);
    free(im);
    free(lb);
}
END_TEST

START_TEST(test_zero_images) {
    size_t li, ll;
    uint8_t *im = idx_images(0, 28, 28, &li), *lb = idx_labels(0, &ll);
    uint8_t *im1 = idx_images(1, 28, 28, &li);
    CnnDataset d;
    cnn_set_quiet(1);
    ck_assert_error(load_bufs(im, 16, lb, ll, &d), CNN_EFORMAT, tmp_path("im"), "0 images");
    ck_assert_error(load_bufs(im1, li, lb, ll, &d), CNN_EFORMAT, tmp_path("lb"), "0 labels");
    put_be32(im1 + 8, 0);  // 0 rows
    ck_assert_error(load_bufs(im1, 16, lb, ll, &d), CNN_EFORMAT, tmp_path("im"),
                    "both must be > 0");
    ck_assert_empty(&d);
    free(im);
    free(im1);
    free(lb);
}
END_TEST

START_TEST(test_overflowing_dims) {
    size_t li, ll;
    uint8_t *im = idx_images(1, 1, 1, &li), *lb = idx_labels(1, &ll);
    CnnDataset d;
    cnn_set_quiet(1);
    put_be32(im + 4, 0xffffffffu);
    put_be32(im + 8, 0xffffffffu);
    put_be32(im + 12, 0xffffffffu);
    ck_assert_error(load_bufs(im, li, lb, ll, &d), CNN_EFORMAT, tmp_path("im"), "overflow");
    // Large but representable: truncated, and nothing huge was allocated.
    put_be32(im + 4, 0x7fffffffu);
    put_be32(im + 8, 0x10000u);
    put_be32(im + 12, 0x10000u);
    ck_assert_error(load_bufs(im, li, lb, ll, &d), CNN_EFORMAT, tmp_path("im"), "truncated");
    ck_assert_empty(&d);
    free(im);
    free(lb);
}
END_TEST

START_TEST(test_missing_files) {
    CnnDataset d, te;
    cnn_set_quiet(1);
    ck_assert_error(cnn_idx_load(tmp_path("nope"), tmp_path("nolabels"), &d), CNN_EIO,
                    tmp_path("nope"), "cannot open");
    ck_assert_empty(&d);
    write_idx_pair(g_tmp, "train", 3, 2, 2, 0);
    ck_assert_error(cnn_dataset_load("mnist", g_tmp, NULL, &d, NULL, &te), CNN_EIO,
                    tmp_path("t10k-images-idx3-ubyte"), "tools/fetch-data mnist");
    ck_assert_empty(&d);
    ck_assert_empty(&te);
    ck_assert_error(cnn_dataset_load("fashion-mnist", tmp_path("absent"), NULL, &d, NULL, &te),
                    CNN_EIO, "absent/train-images-idx3-ubyte", "not found");
}
END_TEST

Suite *idx_suite(void) {
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("load");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_raw);
    tcase_add_test(tc, test_gz);
    tcase_add_test(tc, test_load_by_name_raw_and_gz);
    tcase_add_test(tc, test_prefers_raw);
    suite_add_tcase(s, tc);
    TCase *tb = tcase_create("broken");
    tcase_add_checked_fixture(tb, tmp_setup, tmp_teardown);
    tcase_add_test(tb, test_truncated_images);
    tcase_add_test(tb, test_truncated_labels);
    tcase_add_test(tb, test_truncated_gz);
    tcase_add_test(tb, test_corrupt_gz);
    tcase_add_test(tb, test_bad_magic);
    tcase_add_test(tb, test_gzip_read_as_raw);
    tcase_add_test(tb, test_count_mismatch);
    tcase_add_test(tb, test_trailing_bytes);
    tcase_add_test(tb, test_label_out_of_range);
    tcase_add_test(tb, test_zero_images);
    tcase_add_test(tb, test_overflowing_dims);
    tcase_add_test(tb, test_missing_files);
    suite_add_tcase(s, tb);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(idx_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
