// The dense weight gradient's chunk sums and tree (dense_wgrad_impl.h) in
// AVX2 and FMA: blocks of 4 rows x 16 columns, whose sums stay in eight
// registers over a chunk's images (two loads and four broadcasts feed eight
// FMAs); edges go through the portable code, compiled here with AVX2.
#include <immintrin.h>

#include "kernels/dense_wgrad_impl.h"
#include "kernels/kernels.h"

#define RB 4
#define JB 16

static void tree16(float (*acc)[JB], int lo, int hi) {
    if (hi - lo < 2) return;
    const int mid = lo + (hi - lo) / 2;
    tree16(acc, lo, mid);
    tree16(acc, mid, hi);
    _mm256_storeu_ps(acc[lo], _mm256_add_ps(_mm256_loadu_ps(acc[lo]), _mm256_loadu_ps(acc[mid])));
    _mm256_storeu_ps(acc[lo] + 8, _mm256_add_ps(_mm256_loadu_ps(acc[lo] + 8), _mm256_loadu_ps(acc[mid] + 8)));
}

// Rows o .. o + 4, columns j0 .. j0 + 16 of dw (rows IN floats apart).
static void block4x16(const float *dy, int OUT, const float *x, int IN, const int *start, int nchunks, int o,
                      int j0, float *dw) {
    float acc[RB][DENSE_MAX_CHUNKS][JB];
    for (int c = 0; c < nchunks; c++) {
        __m256 s[RB][2];
        for (int r = 0; r < RB; r++) s[r][0] = s[r][1] = _mm256_setzero_ps();
        const int i0 = start[c], i1 = start[c + 1];
        if (i0 < i1) {
            const float *xr = x + (size_t)i0 * IN + j0, *d = dy + (size_t)i0 * OUT + o;
            const __m256 x0 = _mm256_loadu_ps(xr), x1 = _mm256_loadu_ps(xr + 8);
            for (int r = 0; r < RB; r++) {
                const __m256 b = _mm256_broadcast_ss(d + r);
                s[r][0] = _mm256_mul_ps(b, x0);
                s[r][1] = _mm256_mul_ps(b, x1);
            }
        }
        for (int i = i0 + 1; i < i1; i++) {
            const float *xr = x + (size_t)i * IN + j0, *d = dy + (size_t)i * OUT + o;
            const __m256 x0 = _mm256_loadu_ps(xr), x1 = _mm256_loadu_ps(xr + 8);
            for (int r = 0; r < RB; r++) {
                const __m256 b = _mm256_broadcast_ss(d + r);
                s[r][0] = _mm256_fmadd_ps(b, x0, s[r][0]);
                s[r][1] = _mm256_fmadd_ps(b, x1, s[r][1]);
            }
        }
        for (int r = 0; r < RB; r++) {
            _mm256_storeu_ps(acc[r][c], s[r][0]);
            _mm256_storeu_ps(acc[r][c] + 8, s[r][1]);
        }
    }
    for (int r = 0; r < RB; r++) {
        tree16(acc[r], 0, nchunks);
        _mm256_storeu_ps(dw + (size_t)r * IN, _mm256_loadu_ps(acc[r][0]));
        _mm256_storeu_ps(dw + (size_t)r * IN + 8, _mm256_loadu_ps(acc[r][0] + 8));
    }
}

void dense_wgrad_tree_avx2(const float *dy, int OUT, const float *x, int IN, const int *start, int nchunks, int o0,
                           int n, float *dw) {
    if (nchunks <= 0) {
        dense_wgrad_tree_impl(dy, OUT, x, IN, start, nchunks, o0, n, dw);
        return;
    }
    const int nr = n / RB * RB, nj = IN / JB * JB;
    for (int o = o0; o < o0 + nr; o += RB)
        for (int j0 = 0; j0 < nj; j0 += JB) block4x16(dy, OUT, x, IN, start, nchunks, o, j0, dw + (size_t)(o - o0) * IN + j0);
    // Edges: the last columns of these rows, then the last rows, in the portable code.
    if (nj < IN) dense_wgrad_tree_cols(dy, OUT, x, IN, start, nchunks, o0, nr, nj, IN, dw);
    if (nr < n) dense_wgrad_tree_impl(dy, OUT, x, IN, start, nchunks, o0 + nr, n - nr, dw + (size_t)nr * IN);
}
