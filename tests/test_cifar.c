// CIFAR-10/100 binary loader: generated batches load in order with the right
// planes, labels and class names; broken ones fail with a clear message.
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"
#include "datagen.h"

// d[at..at+n) holds generated records first_index.. of the given kind.
static void check_records(const CnnDataset *d, size_t at, size_t n, size_t first_index,
                          int cifar100) {
    for (size_t j = 0; j < n; j++) {
        size_t i = first_index + j;
        ck_assert_uint_eq(d->labels[at + j], gen_label(i, cifar100 ? 100 : 10));
        const uint8_t *img = d->images + (at + j) * 3072;
        int bad = -1;  // one assertion per image: each costs a syscall in fork mode
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    if (bad < 0 && img[ch * 1024 + y * 32 + x] != gen_pixel(i, ch, y, x))
                        bad = ch * 1024 + y * 32 + x;
        ck_assert_msg(bad < 0, "record %zu differs at byte %d", i, bad);
    }
}

// ---------------------------------------------------------------- good files
START_TEST(test_cifar10_files) {
    write_cifar(tmp_path("a.bin"), 3, 0, 0);
    write_cifar(tmp_path("b.bin"), 4, 0, 3);
    const char *paths[] = {tmp_path("a.bin"), tmp_path("b.bin")};
    CnnDataset d;
    ck_assert_int_eq(cnn_cifar_load(paths, 2, 0, &d), CNN_OK);
    ck_assert_uint_eq(d.n, 7);
    ck_assert_int_eq(d.c, 3);
    ck_assert_int_eq(d.h, 32);
    ck_assert_int_eq(d.w, 32);
    ck_assert_int_eq(d.classes, 10);
    ck_assert_str_eq(d.class_names[3], "3");
    check_records(&d, 0, 7, 0, 0);
    cnn_dataset_free(&d);
}
END_TEST

START_TEST(test_cifar10_by_name) {
    write_cifar10_set(g_tmp, 4, 3, 1);
    CnnDataset tr, te;
    ck_assert_int_eq(cnn_dataset_load("cifar10", g_tmp, NULL, &tr, NULL, &te), CNN_OK);
    ck_assert_uint_eq(tr.n, 20);
    ck_assert_uint_eq(te.n, 3);
    check_records(&tr, 0, 20, 0, 0);  // batches 1..5 in order
    check_records(&te, 0, 3, 1000, 0);
    ck_assert_str_eq(tr.class_names[0], "airplane");
    ck_assert_str_eq(te.class_names[9], "truck");
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
    // dir may also be the cifar-10-batches-bin folder itself.
    ck_assert_int_eq(
        cnn_dataset_load("cifar10", tmp_path("cifar-10-batches-bin"), NULL, &tr, NULL, &te),
        CNN_OK);
    ck_assert_uint_eq(tr.n, 20);
    ck_assert_str_eq(tr.class_names[1], "automobile");
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
}
END_TEST

START_TEST(test_cifar100_by_name) {
    make_dir(tmp_path("cifar-100-binary"));
    write_cifar(tmp_path("cifar-100-binary/train.bin"), 9, 1, 0);
    write_cifar(tmp_path("cifar-100-binary/test.bin"), 2, 1, 500);
    CnnDataset tr, te;
    ck_assert_int_eq(cnn_dataset_load("cifar100", g_tmp, NULL, &tr, NULL, &te), CNN_OK);
    ck_assert_int_eq(tr.classes, 100);
    ck_assert_str_eq(tr.class_names[99], "99");  // no names file: numbers
    check_records(&tr, 0, 9, 0, 1);              // fine labels
    check_records(&te, 0, 2, 500, 1);
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);

    char names[1200] = "";
    for (int i = 0; i < 100; i++) {
        char line[16];
        snprintf(line, sizeof line, "c%02d\r\n", i);  // CRLF is fine too
        strcat(names, line);
    }
    write_raw(tmp_path("cifar-100-binary/fine_label_names.txt"), names, strlen(names));
    ck_assert_int_eq(cnn_dataset_load("cifar100", g_tmp, NULL, &tr, NULL, &te), CNN_OK);
    ck_assert_str_eq(tr.class_names[0], "c00");
    ck_assert_str_eq(te.class_names[99], "c99");
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
}
END_TEST

START_TEST(test_grayscale) {
    write_cifar10_set(g_tmp, 2, 2, 0);
    CnnDataset rgb, tr, te;
    ck_assert_int_eq(cnn_dataset_load("cifar10", g_tmp, NULL, &rgb, NULL, &te), CNN_OK);
    cnn_dataset_free(&te);
    CnnDataOptions opt = {.grayscale = 1};
    ck_assert_int_eq(cnn_dataset_load("cifar10", g_tmp, &opt, &tr, NULL, &te), CNN_OK);
    ck_assert_int_eq(tr.c, 1);
    ck_assert_int_eq(te.c, 1);
    ck_assert_uint_eq(tr.n, rgb.n);
    size_t bad = 0;
    for (size_t i = 0; i < tr.n; i++)
        for (int k = 0; k < 1024; k++) {
            const uint8_t *p = rgb.images + i * 3072 + k;
            double mean = (p[0] + p[1024] + p[2048]) / 3.0;
            bad += tr.images[i * 1024 + k] != (unsigned)(mean + 0.5);
        }
    ck_assert_uint_eq(bad, 0);
    ck_assert_mem_eq(tr.labels, rgb.labels, tr.n);
    cnn_dataset_free(&rgb);
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
}
END_TEST

// ---------------------------------------------------------------- broken files
START_TEST(test_partial_record) {
    size_t len;
    uint8_t *b = cifar_records(3, 0, 0, &len);
    CnnDataset d;
    cnn_set_quiet(1);
    write_raw(tmp_path("short.bin"), b, len - 1000);
    const char *p1[] = {tmp_path("short.bin")};
    ck_assert_error(cnn_cifar_load(p1, 1, 0, &d), CNN_EFORMAT, tmp_path("short.bin"),
                    "is not a whole, non-zero number of 3073-byte");
    ck_assert_msg(strstr(cnn_last_error(), "2 records and 2073 bytes left over"), "%s",
                  cnn_last_error());
    ck_assert_empty(&d);
    write_raw(tmp_path("empty.bin"), b, 0);
    const char *p2[] = {tmp_path("empty.bin")};
    ck_assert_error(cnn_cifar_load(p2, 1, 0, &d), CNN_EFORMAT, tmp_path("empty.bin"),
                    "size 0 bytes");
    // A CIFAR-10 file read as CIFAR-100: 3 x 3073 is not a multiple of 3074.
    write_raw(tmp_path("ten.bin"), b, len);
    const char *p3[] = {tmp_path("ten.bin")};
    ck_assert_error(cnn_cifar_load(p3, 1, 1, &d), CNN_EFORMAT, tmp_path("ten.bin"),
                    "3074-byte CIFAR-100 records");
    ck_assert_empty(&d);
    free(b);
}
END_TEST

START_TEST(test_labels_out_of_range) {
    size_t len;
    uint8_t *b = cifar_records(5, 0, 0, &len);
    b[3 * 3073] = 10;
    write_raw(tmp_path("bad10.bin"), b, len);
    free(b);
    CnnDataset d;
    cnn_set_quiet(1);
    const char *p1[] = {tmp_path("bad10.bin")};
    ck_assert_error(cnn_cifar_load(p1, 1, 0, &d), CNN_EFORMAT, tmp_path("bad10.bin"),
                    "label 10 at record 3 (byte offset 9219) is out of range 0..9");
    ck_assert_empty(&d);

    b = cifar_records(5, 1, 0, &len);
    b[2 * 3074 + 1] = 100;
    write_raw(tmp_path("bad100.bin"), b, len);
    const char *p2[] = {tmp_path("bad100.bin")};
    ck_assert_error(cnn_cifar_load(p2, 1, 1, &d), CNN_EFORMAT, tmp_path("bad100.bin"),
                    "label 100 at record 2 (byte offset 6149) is out of range 0..99");
    b[2 * 3074 + 1] = 1;
    b[4 * 3074] = 20;
    write_raw(tmp_path("bad100.bin"), b, len);
    ck_assert_error(cnn_cifar_load(p2, 1, 1, &d), CNN_EFORMAT, tmp_path("bad100.bin"),
                    "coarse label 20 at record 4");
    ck_assert_empty(&d);
    free(b);
}
END_TEST

START_TEST(test_missing_files) {
    CnnDataset tr, te;
    cnn_set_quiet(1);
    ck_assert_error(cnn_dataset_load("cifar10", g_tmp, NULL, &tr, NULL, &te), CNN_EIO,
                    "cifar-10-batches-bin", "tools/fetch-data cifar10");
    write_cifar10_set(g_tmp, 2, 2, 0);
    unlink(tmp_path("cifar-10-batches-bin/data_batch_3.bin"));
    ck_assert_error(cnn_dataset_load("cifar10", g_tmp, NULL, &tr, NULL, &te), CNN_EIO,
                    "cifar-10-batches-bin/data_batch_3.bin", "not found");
    ck_assert_empty(&tr);
    ck_assert_empty(&te);
    const char *p[] = {tmp_path("cifar-10-batches-bin/data_batch_1.bin"),
                       tmp_path("cifar-10-batches-bin/data_batch_3.bin")};
    ck_assert_error(cnn_cifar_load(p, 2, 0, &tr), CNN_EIO, "data_batch_3.bin", "cannot open");
    ck_assert_error(cnn_dataset_load("cifar100", g_tmp, NULL, &tr, NULL, &te), CNN_EIO,
                    "cifar-100-binary", "tools/fetch-data cifar100");
    ck_assert_empty(&tr);
}
END_TEST

START_TEST(test_bad_names_file) {
    write_cifar10_set(g_tmp, 1, 1, 0);
    write_raw(tmp_path("cifar-10-batches-bin/batches.meta.txt"), "cat\ndog\n", 8);
    CnnDataset tr, te;
    cnn_set_quiet(1);
    ck_assert_error(cnn_dataset_load("cifar10", g_tmp, NULL, &tr, NULL, &te), CNN_EFORMAT,
                    "batches.meta.txt", "has 2 class names (non-empty lines), expected 10");
    ck_assert_empty(&tr);
    ck_assert_empty(&te);
}
END_TEST

Suite *cifar_suite(void) {
    Suite *s = suite_create("cifar");
    TCase *tc = tcase_create("load");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_cifar10_files);
    tcase_add_test(tc, test_cifar10_by_name);
    tcase_add_test(tc, test_cifar100_by_name);
    tcase_add_test(tc, test_grayscale);
    suite_add_tcase(s, tc);
    TCase *tb = tcase_create("broken");
    tcase_add_checked_fixture(tb, tmp_setup, tmp_teardown);
    tcase_add_test(tb, test_partial_record);
    tcase_add_test(tb, test_labels_out_of_range);
    tcase_add_test(tb, test_missing_files);
    tcase_add_test(tb, test_bad_names_file);
    suite_add_tcase(s, tb);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(cifar_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
