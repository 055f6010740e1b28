#include <immintrin.h>

#include "fma_peak.h"

#define CHAINS 12  // of the 16 ymm registers; two more hold the operands

double fma_burn_avx2(long iters) {
    __m256 acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps(0.001f * (float)c);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    __m256 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
    volatile float sink = _mm256_cvtss_f32(s);  // keeps the loop alive
    (void)sink;
    return 2.0 * 8 * CHAINS * (double)iters;
}
