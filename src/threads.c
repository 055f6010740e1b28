// One level of parallelism: OpenMP over images, chunks or channels, and
// single-threaded OpenBLAS inside. Debian's default OpenBLAS is the pthread
// build, which would otherwise start its own pool per call and oversubscribe.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cnnc.h"

// OpenBLAS extensions (declared in its cblas.h; repeated here so the library
// does not depend on which cblas.h the include path finds first).
extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_parallel(void);
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);

void cnn_threads_prefer_passive(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || !argv || !argv[0]) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1)) return;
    execv("/proc/self/exe", argv);
    unsetenv("OMP_WAIT_POLICY");  // exec failed: carry on with the default policy
}

int cnn_threads_init(int n) {
    openblas_set_num_threads(1);
    if (n > 0) omp_set_num_threads(n);
    return omp_get_max_threads();
}

void cnn_threads_describe(char *buf, size_t n) {
    static const char *modes[] = {"sequential", "pthreads", "OpenMP"};
    int p = openblas_get_parallel();
    const char *wait = getenv("OMP_WAIT_POLICY");
    snprintf(buf, n, "%d OpenMP threads (wait policy %s); OpenBLAS core %s, %s build (1 thread inside cnnc)",
             omp_get_max_threads(), wait ? wait : "default", openblas_get_corename(),
             (p >= 0 && p <= 2) ? modes[p] : "unknown");
}
