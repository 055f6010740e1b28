#include <immintrin.h>

#include "fma_peak.h"

// The bf16 dot-product peak: VDPBF16PS on 12 zmm chains (as
// fma_peak_avx512.c), each instruction 16 lanes x 2 products x 2 FLOPs.
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECL(c) __m512 acc##c = _mm512_set1_ps(0.001f * (float)(c));
#define STEP(c) acc##c = _mm512_dpbf16_ps(acc##c, a, b);
#define SUM(c) s = _mm512_add_ps(s, acc##c);

double dpbf16_burn_avx512(long iters) {
    CHAINS(DECL)
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.999f), _mm512_set1_ps(0.998f));
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-7f), _mm512_set1_ps(2e-7f));
    for (long i = 0; i < iters; i++) { CHAINS(STEP) }
    __m512 s = _mm512_setzero_ps();
    CHAINS(SUM)
    volatile float sink = _mm512_reduce_add_ps(s);  // keeps the loop alive
    (void)sink;
    return 4.0 * 16 * 12 * (double)iters;
}
