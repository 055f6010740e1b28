// GEMMs with one small dimension K, for the first convolution of a network,
// where K = C x KH x KW is 9, 25 or 27. OpenBLAS packs both operands on every
// call and its kernels are built for a large K, so these shapes reach a third
// of its speed or less.
//
// gemm_small_k, the forward pass: C (M,N) = bias + A (M,K) . B (K,N). Rows
// of C are taken 4 at a time and columns 16 at a time (8 accumulators); each
// C element is bias + A[i][0] B[0][j] + A[i][1] B[1][j] + ... in that order.
//
// gemm_small_k_nt, the weight gradient: C (M,K) = beta C + A (M,N) . B (K,N)^T
// with a long N (the output pixels). 4 rows of A against 3 rows of B, each a
// dot product over N in 8 lanes, summed across lanes in a fixed order.
//
// The blocking never changes the order of a sum, so neither do threads.
// Compiled with -mavx2 -mfma alone; called only where the CPU has both.
#include <immintrin.h>

#include "kernels/avx2_lanes.h"

#include "internal.h"

// Lanes 0..n-1 on (n may be <= 0 or >= 8).
static inline __m256i lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// R rows (1..4) of C, columns j..j+15; `masked` loads and stores only the
// first n columns of the block (the right edge of C).
static inline __attribute__((always_inline)) void block(int R, int masked, int n, const float *A,
                                                        int K, const float *B, int N,
                                                        const float *bias, float *C) {
    const __m256i m0 = masked ? lanes(n) : _mm256_setzero_si256();
    const __m256i m1 = masked ? lanes(n - 8) : _mm256_setzero_si256();
    __m256 c0[4], c1[4];
    for (int r = 0; r < R; r++) c0[r] = c1[r] = _mm256_set1_ps(bias ? bias[r] : 0.0f);
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * N;
        const __m256 b0 = masked ? _mm256_maskload_ps(b, m0) : _mm256_loadu_ps(b);
        const __m256 b1 = masked ? _mm256_maskload_ps(b + 8, m1) : _mm256_loadu_ps(b + 8);
        for (int r = 0; r < R; r++) {
            const __m256 a = _mm256_broadcast_ss(A + (size_t)r * K + k);
            c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        float *c = C + (size_t)r * N;
        if (masked) {
            _mm256_maskstore_ps(c, m0, c0[r]);
            _mm256_maskstore_ps(c + 8, m1, c1[r]);
        } else {
            _mm256_storeu_ps(c, c0[r]);
            _mm256_storeu_ps(c + 8, c1[r]);
        }
    }
}

static inline __attribute__((always_inline)) void rows(int R, const float *A, int N, int K,
                                                       const float *B, const float *bias, float *C) {
    int j = 0;
    for (; j + 16 <= N; j += 16) block(R, 0, 16, A, K, B + j, N, bias, C + j);
    if (j < N) block(R, 1, N - j, A, K, B + j, N, bias, C + j);
}

void gemm_small_k_avx2(int M, int N, int K, const float *A, const float *B, const float *bias, float *C) {
    int i = 0;
    for (; i + 4 <= M; i += 4)
        rows(4, A + (size_t)i * K, N, K, B, bias ? bias + i : NULL, C + (size_t)i * N);
    for (; i < M; i++) rows(1, A + (size_t)i * K, N, K, B, bias ? bias + i : NULL, C + (size_t)i * N);
}

// C[r][q] = beta C[r][q] + sum_p A[r][p] B[q][p] for RA rows of A (1..4) and
// RB rows of B (1..3).
static inline __attribute__((always_inline)) void dots(int RA, int RB, int N, const float *A,
                                                       const float *B, float beta, float *C, int ldc) {
    __m256 acc[4][3];
    for (int r = 0; r < RA; r++)
        for (int q = 0; q < RB; q++) acc[r][q] = _mm256_setzero_ps();
    int p = 0;
    for (; p + 8 <= N; p += 8) {
        __m256 b[3];
        for (int q = 0; q < RB; q++) b[q] = _mm256_loadu_ps(B + (size_t)q * N + p);
        for (int r = 0; r < RA; r++) {
            const __m256 a = _mm256_loadu_ps(A + (size_t)r * N + p);
            for (int q = 0; q < RB; q++) acc[r][q] = _mm256_fmadd_ps(a, b[q], acc[r][q]);
        }
    }
    if (p < N) {
        const __m256i m = lanes(N - p);
        __m256 b[3];
        for (int q = 0; q < RB; q++) b[q] = _mm256_maskload_ps(B + (size_t)q * N + p, m);
        for (int r = 0; r < RA; r++) {
            const __m256 a = _mm256_maskload_ps(A + (size_t)r * N + p, m);
            for (int q = 0; q < RB; q++) acc[r][q] = _mm256_fmadd_ps(a, b[q], acc[r][q]);
        }
    }
    for (int r = 0; r < RA; r++)
        for (int q = 0; q < RB; q++) {
            float *c = C + (size_t)r * ldc + q;
            *c = beta == 0.0f ? lane_sum(acc[r][q]) : beta * *c + lane_sum(acc[r][q]);
        }
}

static inline __attribute__((always_inline)) void dot_rows(int RA, int N, int K, const float *A,
                                                           const float *B, float beta, float *C) {
    int q = 0;
    for (; q + 3 <= K; q += 3) dots(RA, 3, N, A, B + (size_t)q * N, beta, C + q, K);
    if (K - q == 2) dots(RA, 2, N, A, B + (size_t)q * N, beta, C + q, K);
    if (K - q == 1) dots(RA, 1, N, A, B + (size_t)q * N, beta, C + q, K);
}

void gemm_small_k_nt_avx2(int M, int K, int N, const float *A, const float *B, float beta, float *C) {
    int i = 0;
    for (; i + 4 <= M; i += 4) dot_rows(4, N, K, A + (size_t)i * N, B, beta, C + (size_t)i * K);
    for (; i < M; i++) dot_rows(1, N, K, A + (size_t)i * N, B, beta, C + (size_t)i * K);
}
