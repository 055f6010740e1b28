#include <immintrin.h>

#include "fma_peak.h"

// 12 chains in zmm registers, each a variable of its own: an array of them
// stayed on the stack at -O2 (a load and a store per FMA: a memory rate,
// not the peak). 12 cover the FMA latency of every AVX-512 core (4 cycles x
// 2 pipes on Intel, 4 x 2 on Zen 4 and 5).
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECL(c) __m512 acc##c = _mm512_set1_ps(0.001f * (float)(c));
#define SUM(c) s = _mm512_add_ps(s, acc##c);

double fma_burn_avx512(long iters) {
#define STEP(c) acc##c = _mm512_fmadd_ps(acc##c, a, b);
    CHAINS(DECL)
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < iters; i++) { CHAINS(STEP) }
    __m512 s = _mm512_setzero_ps();
    CHAINS(SUM)
    volatile float sink = _mm512_reduce_add_ps(s);  // keeps the loop alive
    (void)sink;
    return 2.0 * 16 * 12 * (double)iters;
#undef STEP
}
