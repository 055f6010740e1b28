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
    // On x86-64 the AVX2 backend is there and chosen wherever the CPU has AVX2
    // and FMA, the AVX512-BF16 one (built on it) where the CPU has that too,
    // and the AMX one where the CPU and the OS also give this process AMX tiles.
    const unsigned bf16_cpu = CPU_AVX2 | CPU_FMA | CPU_AVX512 | CPU_AVX512_BF16;
    if (CNN_AMX_KERNELS && (cpu_features() & (bf16_cpu | CPU_AMX_BF16)) == (bf16_cpu | CPU_AMX_BF16))
        ck_assert_str_eq(best, "amx");
    else if (CNN_BF16_KERNELS && (cpu_features() & bf16_cpu) == bf16_cpu) ck_assert_str_eq(best, "avx512bf16");
    else if (CNN_X86_KERNELS && cpu_has_avx2_fma()) ck_assert_str_eq(best, "avx2");
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

// CPUs as feature sets, for the decision's table.
#define NEHALEM (CPU_SSE2 | CPU_SSE3 | CPU_SSSE3 | CPU_SSE41 | CPU_SSE42)
#define CONROE (CPU_SSE2 | CPU_SSE3 | CPU_SSSE3)
#define K8 (CPU_SSE2 | CPU_3DNOW)
#define K10 (CPU_SSE2 | CPU_SSE3 | CPU_SSE4A | CPU_3DNOW)
#define HASWELL (NEHALEM | CPU_AVX | CPU_AVX2 | CPU_FMA)
#define ZEN3 (HASWELL | CPU_SSE4A)  // no 3DNow!, FMA4 or XOP
#define ZEN4 (ZEN3 | CPU_AVX512 | CPU_AVX512_BF16)
#define SKX (HASWELL | CPU_AVX512)
#define BULLDOZER (NEHALEM | CPU_SSE4A | CPU_AVX | CPU_FMA4 | CPU_XOP)
#define EXCAVATOR (BULLDOZER | CPU_AVX2 | CPU_FMA)

// OPENBLAS_CORETYPE (NULL: unset), the core OpenBLAS then runs and the CPU
// -> the core cnnc switches to (NULL: none) and the note ("": none). Every
// x86-64 core name of OpenBLAS 0.3.21, on a CPU that runs it and one that
// does not; lower-case spellings; names OpenBLAS does not know (it then
// chooses by itself: Prescott or by features); the variable unset.
static const struct {
    const char *env, *reported;
    unsigned cpu;
    const char *want, *note;
} core_cases[] = {
    {"Katmai", "Prescott", NEHALEM, NULL, ""},
    {"Coppermine", "Prescott", HASWELL, NULL, ""},  // slow, but the user's choice
    {"Northwood", "Prescott", CONROE, NULL, ""},
    {"Prescott", "Prescott", SKX, NULL, ""},
    {"Banias", "Prescott", K10, NULL, ""},
    {"Athlon", "Prescott", K8, "Opteron",
     "OPENBLAS_CORETYPE=Athlon (OpenBLAS's Prescott core) needs SSE3, which this CPU lacks: using Opteron"},
    {"Atom", "Atom", CONROE, NULL, ""},
    {"Atom", "Atom", K10, "Barcelona", "OPENBLAS_CORETYPE=Atom needs SSSE3, which this CPU lacks: using Barcelona"},
    {"Core2", "Core2", CONROE, NULL, ""},
    {"core2", "Core2", K8, "Opteron", "OPENBLAS_CORETYPE=core2 needs SSSE3, which this CPU lacks: using Opteron"},
    {"Nano", "Nano", NEHALEM, NULL, ""},
    {"Penryn", "Penryn", CONROE, "Core2", "OPENBLAS_CORETYPE=Penryn needs SSE4.1, which this CPU lacks: using Core2"},
    {"Penryn", "Penryn", NEHALEM, NULL, ""},
    {"Dunnington", "Dunnington", CONROE, "Core2", "needs SSE4.1, which this CPU lacks: using Core2"},
    {"Nehalem", "Nehalem", CONROE, "Core2", "OPENBLAS_CORETYPE=Nehalem needs SSE4.2, which"},
    {"nehalem", "Nehalem", NEHALEM, NULL, ""},
    {"Opteron", "Opteron", ZEN3, "Haswell", "OPENBLAS_CORETYPE=Opteron needs 3DNow!, which this CPU lacks: using Haswell"},
    {"Opteron", "Opteron", K8, NULL, ""},
    {"Opteron_SSE3", "Opteron_SSE3", HASWELL, "Haswell", "needs 3DNow!"},
    {"opteron_sse3", "Opteron_SSE3", K10, NULL, ""},
    {"Barcelona", "Barcelona", NEHALEM, "Nehalem", "OPENBLAS_CORETYPE=Barcelona needs SSE4a, which"},
    {"Barcelona", "Barcelona", K10, NULL, ""},
    {"Bobcat", "Bobcat", ZEN3, NULL, ""},
    {"Bobcat", "Bobcat", SKX, "SkylakeX", "OPENBLAS_CORETYPE=Bobcat needs SSE4a, which this CPU lacks: using SkylakeX"},
    {"Sandybridge", "Sandybridge", NEHALEM, "Nehalem", "OPENBLAS_CORETYPE=Sandybridge needs AVX, which"},
    {"SandyBridge", "Sandybridge", HASWELL, NULL, ""},
    {"Bulldozer", "Bulldozer", ZEN3, "Haswell", "OPENBLAS_CORETYPE=Bulldozer needs FMA4+XOP, which this CPU lacks"},
    {"Bulldozer", "Bulldozer", BULLDOZER, NULL, ""},
    {"Piledriver", "Piledriver", BULLDOZER, "Sandybridge", "OPENBLAS_CORETYPE=Piledriver needs FMA, which"},
    {"piledriver", "Piledriver", EXCAVATOR, NULL, ""},
    {"Steamroller", "Steamroller", ZEN4, "SkylakeX", "needs FMA4+XOP, which this CPU lacks: using SkylakeX"},
    {"Steamroller", "Steamroller", EXCAVATOR, NULL, ""},
    {"Excavator", "Excavator", ZEN3, "Haswell", "OPENBLAS_CORETYPE=Excavator needs FMA4+XOP, which"},
    {"Excavator", "Excavator", EXCAVATOR, NULL, ""},
    {"Haswell", "Haswell", NEHALEM, "Nehalem",
     "OPENBLAS_CORETYPE=Haswell needs AVX2+FMA, which this CPU lacks: using Nehalem"},
    {"haswell", "Haswell", BULLDOZER, "Sandybridge", "OPENBLAS_CORETYPE=haswell needs AVX2+FMA, which"},
    {"HASWELL", "Haswell", ZEN3, NULL, ""},
    {"Zen", "Zen", CONROE, "Core2", "OPENBLAS_CORETYPE=Zen needs AVX2+FMA, which"},
    {"zen", "Zen", HASWELL, NULL, ""},
    {"SkylakeX", "SkylakeX", NEHALEM, "Nehalem",
     "OPENBLAS_CORETYPE=SkylakeX needs AVX-512, which this CPU lacks: using Nehalem"},
    {"skylakex", "SkylakeX", ZEN3, "Haswell", "OPENBLAS_CORETYPE=skylakex needs AVX-512, which"},
    {"SKYLAKEX", "SkylakeX", SKX, NULL, ""},
    // 0.3.21 does not accept the last two names and chooses by features...
    {"Cooperlake", "Haswell", ZEN3, NULL, ""},
    {"sapphirerapids", "Prescott", NEHALEM, NULL, ""},
    // ...a later OpenBLAS runs them.
    {"Cooperlake", "Cooperlake", SKX, "SkylakeX", "OPENBLAS_CORETYPE=Cooperlake needs AVX512-BF16, which"},
    {"Cooperlake", "Cooperlake", ZEN4, NULL, ""},
    {"SapphireRapids", "SapphireRapids", HASWELL, "Haswell", "OPENBLAS_CORETYPE=SapphireRapids needs AVX512-BF16, which"},
    {"SapphireRapids", "SapphireRapids", ZEN4, NULL, ""},
    // Names OpenBLAS does not know.
    {"bogus", "Prescott", NEHALEM, NULL, "OPENBLAS_CORETYPE=bogus is not an OpenBLAS core: using Prescott"},
    {"bogus", "Haswell", ZEN3, NULL, "OPENBLAS_CORETYPE=bogus is not an OpenBLAS core: using Haswell"},
    {"Unknown", "Prescott", SKX, "SkylakeX", "OPENBLAS_CORETYPE=Unknown is not an OpenBLAS core: using SkylakeX"},
    {"", "Prescott", HASWELL, "Haswell", "OPENBLAS_CORETYPE= is not an OpenBLAS core: using Haswell"},
    {"Haswell2", "Haswell", NEHALEM, "Nehalem",
     "OPENBLAS_CORETYPE=Haswell2 (OpenBLAS's Haswell core) needs AVX2+FMA, which this CPU lacks: using Nehalem"},
    // Unset: generic or pre-AVX2 cores on AVX2 and AVX-512 CPUs are replaced...
    {NULL, "Prescott", HASWELL, "Haswell", "core chosen by cnnc from the CPU's features (OpenBLAS detected Prescott)"},
    {NULL, "Prescott", ZEN4, "SkylakeX", "(OpenBLAS detected Prescott)"},
    {NULL, "Core2", SKX, "SkylakeX", "(OpenBLAS detected Core2)"},
    {NULL, "Nehalem", HASWELL, "Haswell", "(OpenBLAS detected Nehalem)"},
    {NULL, "Sandybridge", ZEN3, "Haswell", "(OpenBLAS detected Sandybridge)"},
    {NULL, "Unknown", SKX, "SkylakeX", "(OpenBLAS detected Unknown)"},
    // ...OpenBLAS's choice stands where it has kernels for the CPU's units...
    {NULL, "Haswell", SKX, NULL, ""},  // e.g. an AVX-512 AMD part seen as Zen-like
    {NULL, "Zen", ZEN3, NULL, ""},
    {NULL, "Excavator", EXCAVATOR, NULL, ""},
    {NULL, "SkylakeX", SKX, NULL, ""},
    {NULL, "Cooperlake", ZEN4, NULL, ""},
    // ...and on CPUs without AVX2, where Prescott or Nehalem is right...
    {NULL, "Prescott", NEHALEM, NULL, ""},
    {NULL, "Nehalem", NEHALEM, NULL, ""},
    {NULL, "Sandybridge", BULLDOZER, NULL, ""},
    // ...unless it cannot run there.
    {NULL, "Haswell", NEHALEM, "Nehalem", "OpenBLAS's Haswell core needs AVX2+FMA, which this CPU lacks: using Nehalem"},
    {NULL, NULL, SKX, NULL, ""},
};

START_TEST(test_blas_core_decision) {
    for (size_t i = 0; i < sizeof core_cases / sizeof *core_cases; i++) {
        char note[256];
        const char *got = blas_core_decide(core_cases[i].env, core_cases[i].reported, core_cases[i].cpu, note,
                                           sizeof note);
        const char *env = core_cases[i].env ? core_cases[i].env : "(unset)";
        if (core_cases[i].want)
            ck_assert_msg(got && !strcmp(got, core_cases[i].want), "OPENBLAS_CORETYPE=%s, %s: got %s, want %s", env,
                          core_cases[i].reported, got ? got : "no switch", core_cases[i].want);
        else
            ck_assert_msg(!got, "OPENBLAS_CORETYPE=%s, %s: switched to %s", env, core_cases[i].reported, got);
        if (!core_cases[i].note[0]) ck_assert_msg(!note[0], "OPENBLAS_CORETYPE=%s: note '%s'", env, note);
        else ck_assert_msg(strstr(note, core_cases[i].note), "OPENBLAS_CORETYPE=%s: note '%s'", env, note);
        // Whatever is chosen runs on that CPU.
        ck_assert_msg(blas_core_runnable(got ? got : core_cases[i].reported, core_cases[i].cpu) ||
                          (!got && !core_cases[i].reported),
                      "case %zu leaves a core the CPU cannot run", i);
    }
}
END_TEST

// The in-process switch: put OpenBLAS on its generic SSE3 core, as Debian's
// 0.3.21 does by itself on Xeons it does not know, then let cnnc choose.
START_TEST(test_blas_core_switch) {
    if (getenv("OPENBLAS_CORETYPE")) {  // as the machine has it: never changed here
        char note[256], user[256];
        snprintf(user, sizeof user, "%s", getenv("OPENBLAS_CORETYPE"));
        blas_core_choose(note, sizeof note);
        printf("OPENBLAS_CORETYPE=%s is set: OpenBLAS core %s (%s)\n", user, openblas_get_corename(),
               note[0] ? note : "the user's choice stands");
        ck_assert_msg(blas_core_runnable(openblas_get_corename(), cpu_features()),
                      "OpenBLAS runs %s on a CPU without its features", openblas_get_corename());
        ck_assert_str_eq(getenv("OPENBLAS_CORETYPE"), user);  // the environment is left as it was
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
    char note[256];
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
    char note[256];
    ck_assert_msg(blas_core_runnable(openblas_get_corename(), cpu_features()),
                  "OpenBLAS runs %s on a CPU without its features", openblas_get_corename());
    if (!getenv("OPENBLAS_CORETYPE"))
        ck_assert_msg(!blas_core_decide(NULL, openblas_get_corename(), cpu_features(), note, sizeof note),
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
    tcase_add_test(tc, test_blas_core_decision);
    tcase_add_test(tc, test_blas_core_switch);
    tcase_add_test(tc, test_threads_init_leaves_a_fitting_core);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(kernels_suite()); }
