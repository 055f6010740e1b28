// Integration test (suite "integration"): the real MNIST from
// $CNNC_DATA_DIR/mnist (meson points it at the project's data/). Fails with
// a hint when the data is missing: fetch it with tools/fetch-data mnist.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnnc.h"

static char g_dir[1024];

static void find_dir(void) {
    const char *base = getenv("CNNC_DATA_DIR");
    snprintf(g_dir, sizeof g_dir, "%s/mnist", base && *base ? base : "data");
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t pixel_sum(const CnnDataset *d) {
    uint64_t s = 0;
    size_t n = d->n * cnn_dataset_image_size(d);
    for (size_t i = 0; i < n; i++) s += d->images[i];
    return s;
}

START_TEST(test_real_mnist) {
    find_dir();
    CnnDataset tr, te;
    double t0 = seconds();
    CnnStatus s = cnn_dataset_load("mnist", g_dir, NULL, &tr, NULL, &te);
    double t1 = seconds();
    ck_assert_msg(s == CNN_OK, "cannot load MNIST from %s: %s\nHINT: run tools/fetch-data mnist",
                  g_dir, cnn_last_error());
    printf("loaded MNIST from %s in %.1f ms\n", g_dir, 1e3 * (t1 - t0));

    ck_assert_uint_eq(tr.n, 60000);
    ck_assert_uint_eq(te.n, 10000);
    ck_assert(tr.c == 1 && tr.h == 28 && tr.w == 28);
    ck_assert(te.c == 1 && te.h == 28 && te.w == 28);
    const uint8_t first_train[5] = {5, 0, 4, 1, 9}, first_test[5] = {7, 2, 1, 0, 4};
    ck_assert_mem_eq(tr.labels, first_train, 5);
    ck_assert_mem_eq(te.labels, first_test, 5);

    // Pixel sums pin the content exactly; the means are the familiar
    // 33.318 (train) and 33.791 (test) on the 0..255 scale.
    uint64_t st = pixel_sum(&tr), se = pixel_sum(&te);
    ck_assert_uint_eq(st, 1567298545u);
    ck_assert_uint_eq(se, 264923200u);
    ck_assert_double_eq_tol((double)st / (60000.0 * 784), 33.318421, 1e-5);
    ck_assert_double_eq_tol((double)se / (10000.0 * 784), 33.791224, 1e-5);

    // The normalisation constants every MNIST example uses: 0.1307, 0.3081.
    float mean, std;
    cnn_dataset_channel_stats(&tr, &mean, &std);
    ck_assert_double_eq_tol(mean, 0.130660, 1e-5);
    ck_assert_double_eq_tol(std, 0.308108, 1e-5);

    // Every label 0..9 is present, roughly balanced.
    size_t count[10] = {0};
    for (size_t i = 0; i < tr.n; i++) count[tr.labels[i]]++;
    for (int k = 0; k < 10; k++) ck_assert(count[k] > 5000 && count[k] < 7000);

    // One epoch of shuffled, normalised batches covers every image once.
    CnnBatcher b;
    CnnBatcherConfig cfg = {.batch = 256, .shuffle = 1, .seed = 1, .mean = &mean, .std = &std};
    ck_assert_int_eq(cnn_batcher_init(&b, &tr, &cfg), CNN_OK);
    float *x = malloc(256 * 784 * sizeof *x);
    uint8_t labels[256];
    size_t seen = 0, batches = 0;
    int B;
    double t2 = seconds();
    while ((B = cnn_batcher_next(&b, x, labels)) > 0) {
        seen += (size_t)B;
        batches++;
    }
    double t3 = seconds();
    printf("one epoch of %zu batches of 256 in %.1f ms\n", batches, 1e3 * (t3 - t2));
    ck_assert_uint_eq(seen, 60000);
    ck_assert_uint_eq(batches, cnn_batcher_num_batches(&b));
    free(x);
    cnn_batcher_free(&b);
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
}
END_TEST

START_TEST(test_real_mnist_options) {
    find_dir();
    CnnDataset tr, va, te;
    CnnDataOptions opt = {.limit_train = 12000, .val_split = 2000};
    CnnStatus s = cnn_dataset_load("mnist", g_dir, &opt, &tr, &va, &te);
    ck_assert_msg(s == CNN_OK, "cannot load MNIST from %s: %s\nHINT: run tools/fetch-data mnist",
                  g_dir, cnn_last_error());
    ck_assert_uint_eq(tr.n, 10000);
    ck_assert_uint_eq(va.n, 2000);
    ck_assert_uint_eq(te.n, 10000);
    ck_assert_uint_eq(tr.labels[0], 5);
    cnn_dataset_free(&tr);
    cnn_dataset_free(&va);
    cnn_dataset_free(&te);
}
END_TEST

int main(void) {
    Suite *s = suite_create("mnist_real");
    TCase *tc = tcase_create("mnist");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_real_mnist);
    tcase_add_test(tc, test_real_mnist_options);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
