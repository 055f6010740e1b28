// One level of parallelism: OpenMP over images, chunks or channels, and
// single-threaded OpenBLAS inside. Debian's default OpenBLAS is the pthread
// build, which would otherwise start its own pool per call and oversubscribe.
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Spin iterations before an idle OpenMP thread sleeps (libgomp's default is
// 300000): measured in tools/PERF.md.
#define CNN_SPINCOUNT "3000"

#include "internal.h"

// OpenBLAS extensions (declared in its cblas.h; repeated here so the library
// does not depend on which cblas.h the include path finds first).
extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_parallel(void);
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);

// qemu-user runs only the process it started: an exec from inside it runs
// the new program natively, out of the emulated CPU. /proc/self/exe is the
// emulated program there, but the task's name stays the emulator's.
static int under_qemu_user(void) {
    char comm[32] = "";
    FILE *f = fopen("/proc/self/comm", "r");
    if (!f) return 0;
    const int ok = fgets(comm, sizeof comm, f) != NULL;
    fclose(f);
    return ok && !strncmp(comm, "qemu-", 5);
}

// Both settings are read once, when libgomp and OpenBLAS load: the only way
// to change them for this process is to run it again.
void cnn_threads_limit_spin(char **argv) {
    if (!argv || !argv[0] || under_qemu_user()) return;
    const int spin = !getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT");
    if (spin && setenv("GOMP_SPINCOUNT", CNN_SPINCOUNT, 1)) return;
    const int blas = blas_core_prepare_reexec();
    if (!spin && !blas) return;
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = 0;  // the real path, so the process keeps its name in ps and top
        execv(self, argv);
    }
    // exec failed: carry on with the defaults
    if (spin) unsetenv("GOMP_SPINCOUNT");
    if (blas) blas_core_undo_reexec();
}

static char blas_note[256];
static void choose_blas_core(void) { blas_core_choose(blas_note, sizeof blas_note); }

// Before the first BLAS call: OpenBLAS may be on a core this CPU cannot run.
void threads_blas_ready(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, choose_blas_core);
}

int cnn_threads_init(int n) {
    threads_blas_ready();
    openblas_set_num_threads(1);
    if (n > 0) omp_set_num_threads(n);
    return omp_get_max_threads();
}

void cnn_threads_describe(char *buf, size_t n) {
    static const char *modes[] = {"sequential", "pthreads", "OpenMP"};
    int p = openblas_get_parallel();
    const char *wait = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    char policy[64];
    if (wait) snprintf(policy, sizeof policy, "wait policy %s", wait);
    else if (spin) snprintf(policy, sizeof policy, "spin %s", spin);
    else snprintf(policy, sizeof policy, "default wait policy");
    threads_blas_ready();
    snprintf(buf, n, "%d OpenMP thread%s (%s); OpenBLAS core %s, %s build (1 thread inside cnnc)%s%s",
             omp_get_max_threads(), omp_get_max_threads() == 1 ? "" : "s", policy, openblas_get_corename(),
             (p >= 0 && p <= 2) ? modes[p] : "unknown", blas_note[0] ? "; " : "", blas_note);
}
