// Data set operations: limit_train / val_split / limit_test options, subsets
// and stratified samples, image folders' classes, grayscale rounding,
// channel statistics and argument errors of cnn_dataset_load.
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

// ---------------------------------------------------------------- stratified samples
// n images in class order (have[k] of class k), image i's first pixel i % 256
// and second i / 256, so that an image tells where it came from.
static void class_ordered(CnnDataset *d, const size_t *have, int K) {
    size_t n = 0;
    for (int k = 0; k < K; k++) n += have[k];
    gen_dataset(d, n, 1, 1, 2);
    d->classes = K;
    for (int k = 0, i = 0; k < K; k++)
        for (size_t j = 0; j < have[k]; j++, i++) {
            d->labels[i] = (uint8_t)k;
            d->images[2 * i] = (uint8_t)(i % 256);
            d->images[2 * i + 1] = (uint8_t)(i / 256);
        }
}

static size_t origin(const CnnDataset *d, size_t i) { return d->images[2 * i] + 256u * d->images[2 * i + 1]; }

static void count_classes(const CnnDataset *d, size_t *got, int K) {
    for (int k = 0; k < K; k++) got[k] = 0;
    for (size_t i = 0; i < d->n; i++) got[d->labels[i]]++;
}

START_TEST(test_sample_stratified) {
    const size_t have[3] = {50, 30, 20};
    CnnDataset d, a, rest, b, rest_b;
    class_ordered(&d, have, 3);
    // 30 of 100: one each, then 27 in proportion to 49, 29, 19 (13.6, 8.1, 5.3): 15, 9, 6.
    ck_assert_int_eq(cnn_dataset_sample(&d, 30, 7, &a, &rest), CNN_OK);
    size_t got[3];
    count_classes(&a, got, 3);
    ck_assert_uint_eq(got[0], 15);
    ck_assert_uint_eq(got[1], 9);
    ck_assert_uint_eq(got[2], 6);
    ck_assert_uint_eq(rest.n, 70);
    // Sample and rest split the images, each in the source's order.
    uint8_t seen[100] = {0};
    for (size_t i = 0; i < a.n; i++) seen[origin(&a, i)]++;
    for (size_t i = 0; i < rest.n; i++) seen[origin(&rest, i)]++;
    for (int i = 0; i < 100; i++) ck_assert_int_eq(seen[i], 1);
    for (size_t i = 1; i < a.n; i++) ck_assert_uint_lt(origin(&a, i - 1), origin(&a, i));
    for (size_t i = 1; i < rest.n; i++) ck_assert_uint_lt(origin(&rest, i - 1), origin(&rest, i));
    for (size_t i = 0; i < a.n; i++) ck_assert_int_eq(a.labels[i], d.labels[origin(&a, i)]);
    // Not the first images of each class, and the seed decides which.
    ck_assert_uint_ne(origin(&a, a.n - 1), 50 + 30 + 5);
    ck_assert_int_eq(cnn_dataset_sample(&d, 30, 7, &b, &rest_b), CNN_OK);
    ck_assert_mem_eq(a.images, b.images, 60);
    cnn_dataset_free(&b);
    cnn_dataset_free(&rest_b);
    ck_assert_int_eq(cnn_dataset_sample(&d, 30, 8, &b, NULL), CNN_OK);
    ck_assert_msg(memcmp(a.images, b.images, 60) != 0, "seeds 7 and 8 drew the same images");
    count_classes(&b, got, 3);
    ck_assert_uint_eq(got[0], 15);
    cnn_dataset_free(&a);
    cnn_dataset_free(&b);
    cnn_dataset_free(&rest);
    // All of them: the source itself, nothing left.
    ck_assert_int_eq(cnn_dataset_sample(&d, 100, 1, &a, &rest), CNN_OK);
    ck_assert_mem_eq(a.images, d.images, 200);
    ck_assert_empty(&rest);
    cnn_dataset_free(&a);
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_dataset_sample(&d, 0, 1, &a, &rest), CNN_EARG);
    ck_assert_int_eq(cnn_dataset_sample(&d, 101, 1, &a, &rest), CNN_EARG);
    ck_assert_empty(&a);
    ck_assert_empty(&rest);
    cnn_dataset_free(&d);
}
END_TEST

START_TEST(test_sample_small_classes) {
    // Every class gets one when there are enough for all; fewer than the
    // classes go one each to some of them.
    const size_t have[4] = {97, 2, 0, 1};
    CnnDataset d, a;
    class_ordered(&d, have, 4);
    size_t got[4];
    ck_assert_int_eq(cnn_dataset_sample(&d, 10, 3, &a, NULL), CNN_OK);
    count_classes(&a, got, 4);
    ck_assert_uint_eq(got[0], 8);
    ck_assert_uint_eq(got[1], 1);
    ck_assert_uint_eq(got[2], 0);
    ck_assert_uint_eq(got[3], 1);
    cnn_dataset_free(&a);
    ck_assert_int_eq(cnn_dataset_sample(&d, 2, 3, &a, NULL), CNN_OK);
    count_classes(&a, got, 4);
    ck_assert_uint_eq(got[0] + got[1] + got[3], 2);
    ck_assert_uint_eq(got[2], 0);
    ck_assert_uint_le(got[1], 1);
    ck_assert_uint_le(got[3], 1);
    cnn_dataset_free(&a);
    cnn_dataset_free(&d);
}
END_TEST

// ROOT/<split>/<class>/NN.pgm: n 2x2 images a class, pixel 0 the class and
// pixel 1 the image's number, so that an image tells where it came from.
static void write_folder(const char *root, const char *split, int classes, int n) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", root, split);
    mkdir(root, 0755);
    make_dir(path);
    for (int k = 0; k < classes; k++) {
        snprintf(path, sizeof path, "%s/%s/%c", root, split, 'a' + k);
        make_dir(path);
        for (int i = 0; i < n; i++) {
            uint8_t pgm[16] = "P5 2 2 255\n";
            pgm[11] = (uint8_t)k, pgm[12] = (uint8_t)i, pgm[13] = 0, pgm[14] = 0;
            snprintf(path, sizeof path, "%s/%s/%c/%02d.pgm", root, split, 'a' + k, i);
            write_raw(path, pgm, 15);
        }
    }
}

START_TEST(test_folder_sampled_splits) {
    const char *root = tmp_path("shapes");
    write_folder(root, "train", 3, 40);
    write_folder(root, "test", 3, 10);
    char name[600];
    snprintf(name, sizeof name, "folder:%s", root);
    CnnDataset tr, va, te, tr2, va2, te2;
    size_t got[3];
    // The last 30 would be class c alone; each class gives 10.
    CnnDataOptions opt = {.grayscale = 1, .val_split = 30, .limit_test = 15, .seed = 5};
    ck_assert_int_eq(cnn_dataset_load(name, NULL, &opt, &tr, &va, &te), CNN_OK);
    ck_assert_uint_eq(va.n, 30);
    count_classes(&va, got, 3);
    for (int k = 0; k < 3; k++) ck_assert_uint_eq(got[k], 10);
    count_classes(&tr, got, 3);
    for (int k = 0; k < 3; k++) ck_assert_uint_eq(got[k], 30);
    count_classes(&te, got, 3);
    for (int k = 0; k < 3; k++) ck_assert_uint_eq(got[k], 5);
    ck_assert_int_eq(va.images[0], va.labels[0]);  // pixel 0 is the class
    // Another seed, other images; the same seed, the same ones.
    opt.seed = 6;
    ck_assert_int_eq(cnn_dataset_load(name, NULL, &opt, &tr2, &va2, &te2), CNN_OK);
    ck_assert_msg(memcmp(va.images, va2.images, 30 * 4) != 0, "seeds 5 and 6 held out the same images");
    cnn_dataset_free(&tr2);
    cnn_dataset_free(&va2);
    cnn_dataset_free(&te2);
    opt.seed = 5;
    ck_assert_int_eq(cnn_dataset_load(name, NULL, &opt, &tr2, &va2, &te2), CNN_OK);
    ck_assert_mem_eq(va.images, va2.images, 30 * 4);
    ck_assert_mem_eq(tr.images, tr2.images, 90 * 4);
    ck_assert_mem_eq(te.images, te2.images, 15 * 4);
    cnn_dataset_free(&tr2);
    cnn_dataset_free(&va2);
    cnn_dataset_free(&te2);
    cnn_dataset_free(&tr);
    cnn_dataset_free(&va);
    cnn_dataset_free(&te);
    // The first 60 would be classes a and b alone.
    opt = (CnnDataOptions){.grayscale = 1, .limit_train = 60, .seed = 5};
    ck_assert_int_eq(cnn_dataset_load(name, NULL, &opt, &tr, &va, &te), CNN_OK);
    count_classes(&tr, got, 3);
    for (int k = 0; k < 3; k++) ck_assert_uint_eq(got[k], 20);
    ck_assert_uint_eq(te.n, 30);
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
}
END_TEST

START_TEST(test_folder_empty_class) {
    const char *root = tmp_path("shapes");
    write_folder(root, "train", 2, 3);
    write_folder(root, "test", 2, 1);
    CnnDataset tr, te;
    char name[600], empty[600];
    snprintf(name, sizeof name, "folder:%s", root);
    cnn_set_quiet(1);
    // Refused, by its name, in train/ and in test/.
    snprintf(empty, sizeof empty, "%s/train/zebra", root);
    make_dir(empty);
    ck_assert_error(cnn_dataset_load(name, NULL, NULL, &tr, NULL, &te), CNN_EFORMAT, empty,
                    "class folder has no images");
    ck_assert_empty(&tr);
    ck_assert_empty(&te);
    rmdir(empty);
    snprintf(empty, sizeof empty, "%s/test/b", root);
    char file[700];
    snprintf(file, sizeof file, "%s/00.pgm", empty);
    unlink(file);
    ck_assert_error(cnn_dataset_load(name, NULL, NULL, &tr, NULL, &te), CNN_EFORMAT, empty,
                    "class folder has no images");
    // A class left out of test/ is fine.
    rmdir(empty);
    ck_assert_int_eq(cnn_dataset_load(name, NULL, NULL, &tr, NULL, &te), CNN_OK);
    ck_assert_uint_eq(te.n, 1);
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
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
    tcase_add_test(tc, test_sample_stratified);
    tcase_add_test(tc, test_sample_small_classes);
    tcase_add_test(tc, test_folder_sampled_splits);
    tcase_add_test(tc, test_folder_empty_class);
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
