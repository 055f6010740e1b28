// Data set operations: limit_train / val_split options, subsets, grayscale
// rounding, channel statistics and argument errors of cnn_dataset_load.
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"
#include "datagen.h"

// ---------------------------------------------------------------- options
START_TEST(test_limit_and_val_split) {
    write_idx_pair(g_tmp, "train", 50, 3, 4, 0);
    write_idx_pair(g_tmp, "t10k", 8, 3, 4, 1);
    CnnDataset full, tr, va, te;
    ck_assert_int_eq(cnn_dataset_load("mnist", g_tmp, NULL, &full, NULL, &te), CNN_OK);
    cnn_dataset_free(&te);

    CnnDataOptions opt = {.limit_train = 30, .val_split = 7};
    ck_assert_int_eq(cnn_dataset_load("mnist", g_tmp, &opt, &tr, &va, &te), CNN_OK);
    ck_assert_uint_eq(tr.n, 23);
    ck_assert_uint_eq(va.n, 7);
    ck_assert_uint_eq(te.n, 8);  // the test set is never limited
    ck_assert_int_eq(va.h, 3);
    ck_assert_int_eq(va.w, 4);
    ck_assert_mem_eq(tr.images, full.images, 23 * 12);
    ck_assert_mem_eq(tr.labels, full.labels, 23);
    ck_assert_mem_eq(va.images, full.images + 23 * 12, 7 * 12);  // the last of the 30
    ck_assert_mem_eq(va.labels, full.labels + 23, 7);
    ck_assert_str_eq(va.class_names[5], "5");
    cnn_dataset_free(&tr);
    cnn_dataset_free(&va);
    cnn_dataset_free(&te);

    opt = (CnnDataOptions){.val_split = 10};
    ck_assert_int_eq(cnn_dataset_load("mnist", g_tmp, &opt, &tr, &va, &te), CNN_OK);
    ck_assert_uint_eq(tr.n, 40);
    ck_assert_mem_eq(va.labels, full.labels + 40, 10);
    cnn_dataset_free(&tr);
    cnn_dataset_free(&va);
    cnn_dataset_free(&te);

    opt = (CnnDataOptions){.limit_train = 50};  // exactly all
    ck_assert_int_eq(cnn_dataset_load("mnist", g_tmp, &opt, &tr, &va, &te), CNN_OK);
    ck_assert_uint_eq(tr.n, 50);
    ck_assert_uint_eq(va.n, 0);
    ck_assert_ptr_null(va.images);
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
    cnn_dataset_free(&full);
}
END_TEST

START_TEST(test_options_that_do_not_fit) {
    write_idx_pair(g_tmp, "train", 20, 2, 2, 0);
    write_idx_pair(g_tmp, "t10k", 5, 2, 2, 0);
    CnnDataset tr, va, te;
    cnn_set_quiet(1);
    CnnDataOptions opt = {.limit_train = 21};
    ck_assert_error(cnn_dataset_load("mnist", g_tmp, &opt, &tr, &va, &te), CNN_EARG,
                    "limit_train 21", "exceeds the 20 training images");
    ck_assert_empty(&tr);
    ck_assert_empty(&te);
    opt = (CnnDataOptions){.val_split = 20};
    ck_assert_error(cnn_dataset_load("mnist", g_tmp, &opt, &tr, &va, &te), CNN_EARG, "val_split 20",
                    "leaves no training images");
    opt = (CnnDataOptions){.limit_train = 10, .val_split = 10};
    ck_assert_error(cnn_dataset_load("mnist", g_tmp, &opt, &tr, &va, &te), CNN_EARG, "val_split 10",
                    "after limit_train");
    ck_assert_empty(&tr);
    ck_assert_empty(&va);
    ck_assert_empty(&te);
    opt = (CnnDataOptions){.val_split = 3};
    ck_assert_error(cnn_dataset_load("mnist", g_tmp, &opt, &tr, NULL, &te), CNN_EARG, "val_split 3",
                    "val is NULL");
    ck_assert_error(cnn_dataset_load("imagenet", g_tmp, NULL, &tr, NULL, &te), CNN_EARG,
                    "'imagenet'", "unknown data set");
    // grayscale on 1-channel data is a no-op
    opt = (CnnDataOptions){.grayscale = 1};
    ck_assert_int_eq(cnn_dataset_load("mnist", g_tmp, &opt, &tr, NULL, &te), CNN_OK);
    ck_assert_int_eq(tr.c, 1);
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
}
END_TEST

START_TEST(test_subset) {
    CnnDataset d, s;
    gen_dataset(&d, 10, 2, 3, 3);
    ck_assert_int_eq(cnn_dataset_subset(&d, 4, 5, &s), CNN_OK);
    ck_assert_uint_eq(s.n, 5);
    ck_assert_mem_eq(s.images, d.images + 4 * 18, 5 * 18);
    ck_assert_mem_eq(s.labels, d.labels + 4, 5);
    ck_assert_str_eq(s.class_names[7], "7");  // d has no names: defaults
    cnn_dataset_free(&s);
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_dataset_subset(&d, 6, 5, &s), CNN_EARG);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "does not fit in 10 images"));
    ck_assert_int_eq(cnn_dataset_subset(&d, 0, 0, &s), CNN_EARG);
    ck_assert_empty(&s);
    cnn_dataset_free(&d);
}
END_TEST

// ---------------------------------------------------------------- grayscale
START_TEST(test_grayscale_rounding) {
    CnnDataset d;
    gen_dataset(&d, 1, 3, 1, 4);
    // (R,G,B) -> round(mean): sums 0, 1 (0.33 -> 0), 2 (0.67 -> 1), 765.
    const uint8_t rgb[12] = {0, 1, 1, 255, /*G*/ 0, 0, 1, 255, /*B*/ 0, 0, 0, 255};
    memcpy(d.images, rgb, 12);
    ck_assert_int_eq(cnn_dataset_to_grayscale(&d), CNN_OK);
    ck_assert_int_eq(d.c, 1);
    const uint8_t want[4] = {0, 0, 1, 255};
    ck_assert_mem_eq(d.images, want, 4);
    cnn_dataset_free(&d);

    gen_dataset(&d, 37, 3, 5, 6);
    CnnDataset ref;
    ck_assert_int_eq(cnn_dataset_subset(&d, 0, 37, &ref), CNN_OK);
    ck_assert_int_eq(cnn_dataset_to_grayscale(&d), CNN_OK);
    for (size_t i = 0; i < 37; i++)
        for (int k = 0; k < 30; k++) {
            const uint8_t *p = ref.images + i * 90 + k;
            long r = lround((p[0] + p[30] + p[60]) / 3.0);
            ck_assert_int_eq(d.images[i * 30 + k], r);
        }
    cnn_dataset_free(&d);
    cnn_dataset_free(&ref);

    gen_dataset(&d, 2, 2, 2, 2);
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_dataset_to_grayscale(&d), CNN_ESHAPE);
    cnn_dataset_free(&d);
}
END_TEST

// ---------------------------------------------------------------- statistics
START_TEST(test_channel_stats) {
    CnnDataset d;
    gen_dataset(&d, 23, 3, 7, 5);
    float mean[3], std[3];
    cnn_dataset_channel_stats(&d, mean, std);
    for (int ch = 0; ch < 3; ch++) {
        // Two-pass reference in double.
        double s = 0, cnt = 23 * 35;
        for (size_t i = 0; i < 23; i++)
            for (int k = 0; k < 35; k++) s += d.images[(i * 3 + ch) * 35 + k] / 255.0;
        double m = s / cnt, v = 0;
        for (size_t i = 0; i < 23; i++)
            for (int k = 0; k < 35; k++) {
                double e = d.images[(i * 3 + ch) * 35 + k] / 255.0 - m;
                v += e * e;
            }
        ck_assert_double_eq_tol(mean[ch], m, 1e-6);
        ck_assert_double_eq_tol(std[ch], sqrt(v / cnt), 1e-6);
    }
    // A constant channel: mean exact, std 0.
    memset(d.images, 51, 23 * 105);
    cnn_dataset_channel_stats(&d, mean, std);
    ck_assert_float_eq(mean[1], 0.2f);
    ck_assert_float_eq(std[1], 0.0f);
    cnn_dataset_free(&d);
}
END_TEST

START_TEST(test_class_names_file) {
    CnnDataset d;
    gen_dataset(&d, 3, 1, 2, 2);
    d.classes = 3;
    write_raw(tmp_path("names.txt"), "a\n\nb\n c\n", 8);
    ck_assert_int_eq(cnn_dataset_read_class_names(&d, tmp_path("names.txt")), CNN_OK);
    ck_assert_str_eq(d.class_names[0], "a");
    ck_assert_str_eq(d.class_names[1], "b");
    ck_assert_str_eq(d.class_names[2], " c");
    cnn_set_quiet(1);
    write_raw(tmp_path("names.txt"), "a\nb\nc\nd\n", 8);
    ck_assert_error(cnn_dataset_read_class_names(&d, tmp_path("names.txt")), CNN_EFORMAT,
                    tmp_path("names.txt"), "has 4 class names");
    ck_assert_str_eq(d.class_names[2], " c");  // unchanged on failure
    ck_assert_error(cnn_dataset_read_class_names(&d, tmp_path("none.txt")), CNN_EIO,
                    tmp_path("none.txt"), "cannot open");
    // A line of 300 characters used to become two names (fgets into 256 bytes).
    char text[400];
    memset(text, 'x', 300);
    memcpy(text + 300, "\ny\nz\n", 5);
    write_raw(tmp_path("names.txt"), text, 305);
    ck_assert_error(cnn_dataset_read_class_names(&d, tmp_path("names.txt")), CNN_EFORMAT,
                    tmp_path("names.txt"), "line 1 is longer than 255 characters");
    memset(text, 'x', 250);
    memcpy(text + 250, "\ny\nz\n", 5);
    write_raw(tmp_path("names.txt"), text, 255);
    ck_assert_int_eq(cnn_dataset_read_class_names(&d, tmp_path("names.txt")), CNN_OK);
    ck_assert_uint_eq(strlen(d.class_names[0]), 250);
    write_raw(tmp_path("names.txt"), "a\nb\0b\nc\n", 8);
    ck_assert_error(cnn_dataset_read_class_names(&d, tmp_path("names.txt")), CNN_EFORMAT,
                    tmp_path("names.txt"), "line 2 holds a NUL byte");
    cnn_dataset_free(&d);
}
END_TEST

Suite *dataset_suite(void) {
    Suite *s = suite_create("dataset");
    TCase *tc = tcase_create("dataset");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_limit_and_val_split);
    tcase_add_test(tc, test_options_that_do_not_fit);
    tcase_add_test(tc, test_subset);
    tcase_add_test(tc, test_grayscale_rounding);
    tcase_add_test(tc, test_channel_stats);
    tcase_add_test(tc, test_class_names_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(dataset_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
