// OpenBLAS picks its kernels from the CPU model it recognises. Debian 12's
// 0.3.21 does not know recent Xeons and falls back to its SSE3 "Prescott"
// kernels there, a fifth of the machine's speed. When the user has not set
// OPENBLAS_CORETYPE and OpenBLAS reports a core older than the CPU's vector
// units, we switch it to the core those units call for: in-process through
// gotoblas_dynamic_quit/init (exported by OpenBLAS's DYNAMIC_ARCH builds),
// else by re-executing with the variable set (cnn_threads_limit_spin).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

extern char *openblas_get_corename(void);
// Weak: absent from OpenBLAS builds without DYNAMIC_ARCH and from other BLAS.
extern void gotoblas_dynamic_quit(void) __attribute__((weak));
extern void gotoblas_dynamic_init(void) __attribute__((weak));

// Set by cnn_threads_limit_spin when it re-executes with a chosen core.
#define REPORTED_ENV "CNNC_OPENBLAS_DETECTED"
#define NOTE "; core chosen by cnnc from the CPU's features (OpenBLAS detected %s)"

// Cores with kernels for AVX2+FMA or AVX-512: anything else is older than an
// AVX2 CPU (Prescott, Core2, Nehalem, Sandybridge, Bulldozer, "Unknown", ...).
static const char *const modern[] = {"Haswell", "Zen", "Excavator", "SkylakeX", "Cooperlake",
                                     "SapphireRapids"};

const char *blas_core_for(const char *reported, int has_avx2_fma, int has_avx512) {
    if (!reported || !has_avx2_fma) return NULL;
    for (size_t i = 0; i < sizeof modern / sizeof *modern; i++)
        if (!strcasecmp(reported, modern[i])) return NULL;
    return has_avx512 ? "SkylakeX" : "Haswell";
}

static const char *wanted_core(void) {
    if (getenv("OPENBLAS_CORETYPE")) return NULL;  // the user's choice always wins
    return blas_core_for(openblas_get_corename(), cpu_has_avx2_fma(), cpu_has_avx512());
}

int blas_core_needs_reexec(const char **core) {
    *core = wanted_core();
    return *core && !(gotoblas_dynamic_quit && gotoblas_dynamic_init);
}

void blas_core_choose(char *note, size_t n) {
    note[0] = 0;
    const char *detected = getenv(REPORTED_ENV);
    if (detected) {  // we re-executed with OPENBLAS_CORETYPE set
        snprintf(note, n, NOTE, detected);
        unsetenv(REPORTED_ENV);
        unsetenv("OPENBLAS_CORETYPE");  // child processes detect for themselves
        return;
    }
    const char *core = wanted_core();
    if (!core || !gotoblas_dynamic_quit || !gotoblas_dynamic_init) return;
    char was[64];
    snprintf(was, sizeof was, "%s", openblas_get_corename());
    // OpenBLAS reads the variable in gotoblas_dynamic_init; the user's
    // environment is left as it was.
    if (setenv("OPENBLAS_CORETYPE", core, 1)) return;
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
    snprintf(note, n, NOTE, was);
}

const char *blas_core_reported_env(void) { return REPORTED_ENV; }
