// The kernel seam: choosing a backend by name, by CNNC_KERNELS and by the
// CPU's features, and OpenBLAS's core choice on CPUs it does not recognise.
#include <string.h>

#include "testutil.h"

extern char *openblas_get_corename(void);
extern void gotoblas_dynamic_quit(void) __attribute__((weak));
extern void gotoblas_dynamic_init(void) __attribute__((weak));

START_TEST(test_select_by_name) {
    cnn_set_quiet(1);
    ck_assert_int_ge(cnn_kernels_count(), 1);
    // The last backend is the portable one: every CPU runs it.
    int ok;
    const char *last = cnn_kernels_list(cnn_kernels_count() - 1, &ok);
    ck_assert_str_eq(last, "reference");
    ck_assert_int_eq(ok, 1);
    ck_assert_ptr_null(cnn_kernels_list(cnn_kernels_count(), NULL));
    ck_assert_int_eq(cnn_kernels_select("reference"), CNN_OK);
    ck_assert_str_eq(cnn_kernels_name(), "reference");
    ck_assert_int_eq(cnn_kernels_select("REFERENCE"), CNN_OK);

    ck_assert_int_eq(cnn_kernels_select("bogus"), CNN_EARG);
    ck_assert_msg(strstr(cnn_last_error(), "unknown kernels 'bogus' (expected auto, "),
                  "message: %s", cnn_last_error());
    ck_assert_msg(strstr(cnn_last_error(), "reference"), "message: %s", cnn_last_error());
    ck_assert_str_eq(cnn_kernels_name(), "reference");  // a failed choice changes nothing

    // "auto" is the first backend this CPU runs; the others are refused.
    ck_assert_int_eq(cnn_kernels_select("auto"), CNN_OK);
    const char *best = NULL;
    for (int i = 0; i < cnn_kernels_count(); i++) {
        const char *name = cnn_kernels_list(i, &ok);
        if (ok && !best) best = name;
        if (!ok) {
            ck_assert_int_eq(cnn_kernels_select(name), CNN_EARG);
            ck_assert_msg(strstr(cnn_last_error(), "this CPU lacks"), "message: %s", cnn_last_error());
        }
    }
    ck_assert_int_eq(cnn_kernels_select(NULL), CNN_OK);
    ck_assert_str_eq(cnn_kernels_name(), best);
    // On x86-64 the AVX2 backend is there and chosen wherever the CPU has AVX2 and FMA.
    if (CNN_X86_KERNELS && cpu_has_avx2_fma()) ck_assert_str_eq(best, "avx2");
    char buf[256];
    cnn_kernels_describe(buf, sizeof buf);
    ck_assert_msg(strstr(buf, best) && strstr(buf, "the best this CPU runs"), "%s", buf);
}
END_TEST

// Check forks each test, so kernels() has not chosen yet when these start.
START_TEST(test_environment_forces_a_backend) {
    setenv("CNNC_KERNELS", "reference", 1);
    ck_assert_str_eq(cnn_kernels_name(), "reference");
    char buf[256];
    cnn_kernels_describe(buf, sizeof buf);
    ck_assert_msg(strstr(buf, "set by CNNC_KERNELS"), "%s", buf);
}
END_TEST

START_TEST(test_bad_environment_falls_back_to_auto) {
    setenv("CNNC_KERNELS", "sse9", 1);
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_kernels_from_env(), CNN_EARG);  // said plainly to whoever asks
    ck_assert_msg(strstr(cnn_last_error(), "unknown kernels 'sse9'"), "%s", cnn_last_error());
    int ok;
    const char *best = cnn_kernels_list(0, &ok);
    for (int i = 1; !ok; i++) best = cnn_kernels_list(i, &ok);
    ck_assert_str_eq(cnn_kernels_name(), best);
}
END_TEST

// The convolution algorithm: by name, from CNNC_CONV, and said in the banner.
START_TEST(test_conv_algorithm_by_name_and_environment) {
    ck_assert_str_eq(cnn_conv_name(), "auto");  // nothing set: auto
    ck_assert_int_eq(cnn_conv_select("WINOGRAD"), CNN_OK);
    ck_assert_str_eq(cnn_conv_name(), "winograd");
    ck_assert_int_eq(conv_algo(), CONV_WINOGRAD);
    char buf[512];
    cnn_kernels_describe(buf, sizeof buf);
    if (kernels()->wino_input) ck_assert_msg(strstr(buf, "3x3 convolutions: winograd F(4x4, 3x3)"), "%s", buf);
    ck_assert_int_eq(cnn_conv_select("direct"), CNN_OK);
    ck_assert_int_eq(conv_algo(), CONV_DIRECT);
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_conv_select("fft"), CNN_EARG);
    ck_assert_msg(strstr(cnn_last_error(), "unknown convolution algorithm 'fft'"), "%s", cnn_last_error());
    ck_assert_int_eq(conv_algo(), CONV_DIRECT);  // a refused name changes nothing
    setenv("CNNC_CONV", "winograd", 1);
    ck_assert_int_eq(cnn_conv_from_env(), CNN_OK);
    ck_assert_str_eq(cnn_conv_name(), "winograd");
    setenv("CNNC_CONV", "bogus", 1);
    ck_assert_int_eq(cnn_conv_from_env(), CNN_EARG);
    ck_assert_int_eq(cnn_conv_select(NULL), CNN_OK);
    ck_assert_str_eq(cnn_conv_name(), "auto");
    unsetenv("CNNC_CONV");
}
END_TEST

START_TEST(test_blas_core_table) {
    // Generic or pre-AVX2 cores on AVX2 and AVX-512 CPUs.
    ck_assert_str_eq(blas_core_for("Prescott", 1, 0), "Haswell");
    ck_assert_str_eq(blas_core_for("Prescott", 1, 1), "SkylakeX");
    ck_assert_str_eq(blas_core_for("Core2", 1, 1), "SkylakeX");
    ck_assert_str_eq(blas_core_for("Nehalem", 1, 0), "Haswell");
    ck_assert_str_eq(blas_core_for("Sandybridge", 1, 0), "Haswell");
    ck_assert_str_eq(blas_core_for("Unknown", 1, 1), "SkylakeX");
    // OpenBLAS's choice stands where it has kernels for the CPU's units...
    ck_assert_ptr_null(blas_core_for("Haswell", 1, 0));
    ck_assert_ptr_null(blas_core_for("Haswell", 1, 1));  // e.g. an AVX-512 AMD part seen as Zen-like
    ck_assert_ptr_null(blas_core_for("zen", 1, 0));
    ck_assert_ptr_null(blas_core_for("SkylakeX", 1, 1));
    ck_assert_ptr_null(blas_core_for("Cooperlake", 1, 1));
    ck_assert_ptr_null(blas_core_for("sapphirerapids", 1, 1));
    // ...and on CPUs without AVX2, where Prescott or Nehalem is right.
    ck_assert_ptr_null(blas_core_for("Prescott", 0, 0));
    ck_assert_ptr_null(blas_core_for("Nehalem", 0, 0));
    ck_assert_ptr_null(blas_core_for(NULL, 1, 1));
}
END_TEST

// The in-process switch: put OpenBLAS on its generic SSE3 core, as Debian's
// 0.3.21 does by itself on Xeons it does not know, then let cnnc choose.
START_TEST(test_blas_core_switch) {
    if (getenv("OPENBLAS_CORETYPE")) {
        printf("OPENBLAS_CORETYPE=%s is set: the user's choice stands, nothing to switch\n",
               getenv("OPENBLAS_CORETYPE"));
        char note[160];
        blas_core_choose(note, sizeof note);
        ck_assert_str_eq(note, "");
        return;
    }
    if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit || !cpu_has_avx2_fma()) {
        printf("skipped: %s\n", cpu_has_avx2_fma() ? "this OpenBLAS cannot switch cores in-process"
                                                   : "this CPU has no AVX2, Prescott is right");
        return;
    }
    setenv("OPENBLAS_CORETYPE", "Prescott", 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
    ck_assert_str_eq(openblas_get_corename(), "Prescott");
    char note[160];
    blas_core_choose(note, sizeof note);
    const char *want = cpu_has_avx512() ? "SkylakeX" : "Haswell";
    printf("OpenBLAS core after the switch: %s (%s)\n", openblas_get_corename(), note);
    ck_assert_str_eq(openblas_get_corename(), want);
    ck_assert_msg(strstr(note, "OpenBLAS detected Prescott"), "note: %s", note);
    ck_assert_ptr_null(getenv("OPENBLAS_CORETYPE"));  // the environment is left as it was
    // And the switched library still multiplies correctly.
    CnnRng r;
    cnn_rng_seed(&r, 5);
    const int M = 37, N = 45, K = 70;
    float *A = cnn_alloc_floats((size_t)M * K), *B = cnn_alloc_floats((size_t)K * N);
    float *C = cnn_alloc_floats((size_t)M * N), *D = cnn_alloc_floats((size_t)M * N);
    fill_uniform(A, (size_t)M * K, -1, 1, &r);
    fill_uniform(B, (size_t)K * N, -1, 1, &r);
    gemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    gemm_naive(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, D, N);
    ck_assert_double_lt(rel_err_ff(C, D, (size_t)M * N, 1e-6), 1e-5);
    cnn_free(A); cnn_free(B); cnn_free(C); cnn_free(D);
}
END_TEST

// After cnn_threads_init, OpenBLAS runs a core that fits the CPU.
START_TEST(test_threads_init_leaves_a_fitting_core) {
    cnn_threads_init(1);
    char buf[512];
    cnn_threads_describe(buf, sizeof buf);
    printf("%s\n", buf);
    if (!getenv("OPENBLAS_CORETYPE"))
        ck_assert_msg(!blas_core_for(openblas_get_corename(), cpu_has_avx2_fma(), cpu_has_avx512()),
                      "OpenBLAS still runs %s on this CPU", openblas_get_corename());
}
END_TEST

static Suite *kernels_suite(void) {
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("kernels");
    tcase_add_test(tc, test_select_by_name);
    tcase_add_test(tc, test_environment_forces_a_backend);
    tcase_add_test(tc, test_bad_environment_falls_back_to_auto);
    tcase_add_test(tc, test_conv_algorithm_by_name_and_environment);
    tcase_add_test(tc, test_blas_core_table);
    tcase_add_test(tc, test_blas_core_switch);
    tcase_add_test(tc, test_threads_init_leaves_a_fitting_core);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(kernels_suite()); }
