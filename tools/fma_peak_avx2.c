#include <immintrin.h>

#include "fma_peak.h"

// 12 chains (of the 16 ymm registers; two more hold the operands), each a
// variable of its own so that the compiler keeps them in registers.
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

double fma_burn_avx2(long iters) {
#define DECL(c) __m256 acc##c = _mm256_set1_ps(0.001f * (float)(c));
#define STEP(c) acc##c = _mm256_fmadd_ps(acc##c, a, b);
#define SUM(c) s = _mm256_add_ps(s, acc##c);
    CHAINS(DECL)
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++) { CHAINS(STEP) }
    __m256 s = _mm256_setzero_ps();
    CHAINS(SUM)
    volatile float sink = _mm256_cvtss_f32(s);  // keeps the loop alive
    (void)sink;
    return 2.0 * 8 * 12 * (double)iters;
}
