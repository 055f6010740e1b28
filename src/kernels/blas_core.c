// OpenBLAS picks its kernels (its "core") from the CPU model it recognises,
// or takes the one OPENBLAS_CORETYPE names, without checking that the CPU
// can run it. Two things go wrong, and cnnc mends both at start-up:
//  - Debian 12's 0.3.21 does not know recent CPUs and falls back to its SSE3
//    "Prescott" kernels on them, a fifth of an AVX-512 Xeon's speed: where
//    the variable is unset (or names no core) and OpenBLAS runs a core older
//    than the CPU's vector units, we switch to the core those units call for;
//  - a variable set for another machine (a shell profile, a VM with fewer
//    CPU flags, an emulator) names a core whose instructions this CPU lacks,
//    and the first product dies of SIGILL: we switch to a core it can run.
// A core the CPU can run that the user named stays. The switch is made
// in-process through gotoblas_dynamic_quit/init (exported by OpenBLAS's
// DYNAMIC_ARCH builds), else by re-executing with the variable set
// (cnn_threads_limit_spin).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

extern char *openblas_get_corename(void);
// Weak: absent from OpenBLAS builds without DYNAMIC_ARCH and from other BLAS.
extern void gotoblas_dynamic_quit(void) __attribute__((weak));
extern void gotoblas_dynamic_init(void) __attribute__((weak));

// Set by blas_core_prepare_reexec for the re-executed program: the line to
// print, and the user's OPENBLAS_CORETYPE to give back to child processes.
#define NOTE_ENV "CNNC_OPENBLAS_NOTE"
#define USER_ENV "CNNC_OPENBLAS_USER_CORETYPE"

// Every x86-64 core name of OpenBLAS 0.3.21 (driver/others/dynamic.c) and
// the features its kernels assume. The Pentium-era names and Athlon run
// Prescott's kernels on x86-64. Checked on an AMD Zen 3 (no 3DNow!, FMA4
// or XOP) and under qemu-user's Conroe, Penryn and Nehalem: Opteron's and
// the Bulldozer family's sgemm died of SIGILL on Zen 3, Penryn's, Dunnington's
// and Nehalem's on Conroe (no SSE4.1). The rest are what the CPU the core is
// named after has, so that no core is judged runnable on too little.
static const struct {
    const char *name;
    unsigned needs;
} cores[] = {
    {"Katmai", CPU_SSE3},
    {"Coppermine", CPU_SSE3},
    {"Northwood", CPU_SSE3},
    {"Prescott", CPU_SSE3},
    {"Banias", CPU_SSE3},
    {"Athlon", CPU_SSE3},
    {"Atom", CPU_SSSE3},
    {"Core2", CPU_SSSE3},
    {"Nano", CPU_SSSE3},
    {"Penryn", CPU_SSE41},
    {"Dunnington", CPU_SSE41},
    {"Nehalem", CPU_SSE42},
    {"Opteron", CPU_SSE2 | CPU_3DNOW},
    {"Opteron_SSE3", CPU_SSE3 | CPU_3DNOW},
    {"Barcelona", CPU_SSE3 | CPU_SSE4A},
    {"Bobcat", CPU_SSSE3 | CPU_SSE4A},
    {"Sandybridge", CPU_AVX},
    {"Bulldozer", CPU_AVX | CPU_FMA4 | CPU_XOP},
    {"Piledriver", CPU_AVX | CPU_FMA | CPU_FMA4 | CPU_XOP},
    {"Steamroller", CPU_AVX | CPU_FMA | CPU_FMA4 | CPU_XOP},
    {"Excavator", CPU_AVX2 | CPU_FMA | CPU_FMA4 | CPU_XOP},
    {"Haswell", CPU_AVX2 | CPU_FMA},
    {"Zen", CPU_AVX2 | CPU_FMA},
    {"SkylakeX", CPU_AVX512},
    {"Cooperlake", CPU_AVX512 | CPU_AVX512_BF16},
    {"SapphireRapids", CPU_AVX512 | CPU_AVX512_BF16},
};
#define NCORES (sizeof cores / sizeof *cores)

// Feature names in the order a note lists them.
static const struct {
    unsigned bit;
    const char *name;
} feature_names[] = {
    {CPU_SSE2, "SSE2"},  {CPU_SSE3, "SSE3"}, {CPU_SSSE3, "SSSE3"},   {CPU_SSE41, "SSE4.1"},
    {CPU_SSE42, "SSE4.2"}, {CPU_SSE4A, "SSE4a"}, {CPU_3DNOW, "3DNow!"}, {CPU_AVX, "AVX"},
    {CPU_AVX2, "AVX2"},  {CPU_FMA, "FMA"},   {CPU_FMA4, "FMA4"},     {CPU_XOP, "XOP"},
    {CPU_AVX512, "AVX-512"}, {CPU_AVX512_BF16, "AVX512-BF16"},
};

// What a feature implies (AVX2 implies AVX, SSE4.2, ... SSE2): the table
// lists the newest features only, a note the newest of those missing.
static unsigned with_implied(unsigned f) {
    static const unsigned chain[] = {CPU_SSE2, CPU_SSE3, CPU_SSSE3, CPU_SSE41, CPU_SSE42, CPU_AVX, CPU_AVX2, CPU_AVX512,
                                     CPU_AVX512_BF16};
    if (f & (CPU_FMA | CPU_FMA4 | CPU_XOP)) f |= CPU_AVX;
    if (f & CPU_AVX512) f |= CPU_FMA;
    if (f & CPU_SSE4A) f |= CPU_SSE3;
    for (int i = (int)(sizeof chain / sizeof *chain) - 1; i > 0; i--)
        if (f & chain[i]) f |= chain[i - 1];
    return f;
}

static int core_index(const char *name) {
    for (size_t i = 0; name && i < NCORES; i++)
        if (!strcasecmp(name, cores[i].name)) return (int)i;  // OpenBLAS ignores case too
    return -1;
}

// The best core for these features, as OpenBLAS's own fallbacks go.
static const char *fitting_core(unsigned cpu) {
    if (cpu & CPU_AVX512) return "SkylakeX";
    if ((cpu & (CPU_AVX2 | CPU_FMA)) == (CPU_AVX2 | CPU_FMA)) return "Haswell";
    if (cpu & CPU_AVX) return "Sandybridge";
    if (cpu & CPU_SSE42) return "Nehalem";
    if (cpu & CPU_SSE41) return "Penryn";
    if (cpu & CPU_SSSE3) return "Core2";
    if ((cpu & (CPU_SSE3 | CPU_SSE4A)) == (CPU_SSE3 | CPU_SSE4A)) return "Barcelona";  // AMD K10
    if (!(cpu & CPU_SSE3) && (cpu & CPU_3DNOW)) return "Opteron";                     // AMD K8
    return "Prescott";  // what OpenBLAS falls back to itself
}

// The missing features, less those another missing one implies.
static void list_features(unsigned bits, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    unsigned implied = 0;
    for (size_t i = 0; i < sizeof feature_names / sizeof *feature_names; i++)
        if (bits & feature_names[i].bit) implied |= with_implied(feature_names[i].bit) & ~feature_names[i].bit;
    for (size_t i = 0; i < sizeof feature_names / sizeof *feature_names; i++)
        if ((bits & feature_names[i].bit & ~implied) && len < n)
            len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? "+" : "", feature_names[i].name);
}

int blas_core_runnable(const char *core, unsigned cpu) {
    const int i = core_index(core);
    return i < 0 || !(with_implied(cores[i].needs) & ~cpu);  // a name we do not know: nothing to judge it by
}

const char *blas_core_decide(const char *env, const char *reported, unsigned cpu, char *note, size_t n) {
    note[0] = 0;
    if (!reported) return NULL;
    const int r = core_index(reported);
    if (!blas_core_runnable(reported, cpu)) {  // SIGILL at the first product
        const char *use = fitting_core(cpu);
        if (!strcasecmp(use, reported)) return NULL;  // nothing older to go to
        char missing[96], who[128];
        list_features(with_implied(cores[r].needs) & ~cpu, missing, sizeof missing);
        if (!env) snprintf(who, sizeof who, "OpenBLAS's %s core", reported);
        else if (strcasecmp(env, reported)) snprintf(who, sizeof who, "OPENBLAS_CORETYPE=%s (OpenBLAS's %s core)", env, reported);
        else snprintf(who, sizeof who, "OPENBLAS_CORETYPE=%s", env);
        snprintf(note, n, "%s needs %s, which this CPU lacks: using %s", who, missing, use);
        return use;
    }
    const int named = env && core_index(env) >= 0;
    if (named) return NULL;  // the user's choice, and the CPU runs it
    // Unset, or a name OpenBLAS does not know (it then chose by itself): a
    // core below AVX2 on an AVX2 or AVX-512 CPU is a generic fallback.
    const char *use = NULL;
    if ((cpu & (CPU_AVX2 | CPU_FMA)) == (CPU_AVX2 | CPU_FMA) && !(r >= 0 && (cores[r].needs & (CPU_AVX2 | CPU_AVX512))))
        use = fitting_core(cpu);
    if (!env) {
        if (use) snprintf(note, n, "core chosen by cnnc from the CPU's features (OpenBLAS detected %s)", reported);
    } else {
        snprintf(note, n, "OPENBLAS_CORETYPE=%s is not an OpenBLAS core: using %s", env, use ? use : reported);
    }
    return use;
}

static int can_switch_in_process(void) { return gotoblas_dynamic_quit && gotoblas_dynamic_init; }

// The user's OPENBLAS_CORETYPE, copied (NULL if unset): setenv may free it.
static const char *user_coretype(char *buf, size_t n) {
    const char *v = getenv("OPENBLAS_CORETYPE");
    if (!v) return NULL;
    snprintf(buf, n, "%s", v);
    return buf;
}

static void restore_coretype(const char *user) {
    if (user) setenv("OPENBLAS_CORETYPE", user, 1);
    else unsetenv("OPENBLAS_CORETYPE");
}

void blas_core_choose(char *note, size_t n) {
    note[0] = 0;
    const char *passed = getenv(NOTE_ENV);
    if (passed) {  // we re-executed with the chosen core: give back the user's environment
        snprintf(note, n, "%s", passed);
        blas_core_undo_reexec();
        return;
    }
    char user[256];
    const char *env = user_coretype(user, sizeof user);
    const char *core = blas_core_decide(env, openblas_get_corename(), cpu_features(), note, n);
    if (!core) return;
    if (!can_switch_in_process()) {
        snprintf(note + strlen(note), n - strlen(note), " (not done: this OpenBLAS cannot switch in-process)");
        return;
    }
    // OpenBLAS reads the variable in gotoblas_dynamic_init; the user's
    // environment is left as it was.
    if (setenv("OPENBLAS_CORETYPE", core, 1)) return;
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    restore_coretype(env);
}

int blas_core_prepare_reexec(void) {
    if (can_switch_in_process() || getenv(NOTE_ENV)) return 0;
    char note[256], user[256];
    const char *env = user_coretype(user, sizeof user);
    const char *core = blas_core_decide(env, openblas_get_corename(), cpu_features(), note, sizeof note);
    if (!core) return 0;
    if ((env && setenv(USER_ENV, env, 1)) || setenv(NOTE_ENV, note, 1) || setenv("OPENBLAS_CORETYPE", core, 1)) {
        blas_core_undo_reexec();
        return 0;
    }
    return 1;
}

void blas_core_undo_reexec(void) {
    char user[256];
    const char *was = getenv(USER_ENV);
    if (was) snprintf(user, sizeof user, "%s", was);
    restore_coretype(was ? user : NULL);
    unsetenv(NOTE_ENV);
    unsetenv(USER_ENV);
}
