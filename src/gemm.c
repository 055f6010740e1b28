// GEMM through OpenBLAS (single-threaded inside our own parallel loops) and
// a naive twin for the tests.
#include <cblas.h>

#include "internal.h"

void gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_naive(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) {
                float a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += (double)a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

// Inlined with a constant `add`, so each public form keeps its plain loop
// (GCC vectorises its outer loop; see tools/PERF.md).
static inline void chunk_sums(float *dst, const float *partial, size_t stride, int nchunks, size_t n,
                              int add) {
#pragma omp parallel for schedule(static) if (n * (size_t)nchunks >= CNN_PAR_MIN_WORK)
    for (size_t j = 0; j < n; j++) {
        float s = partial[j];
        for (int c = 1; c < nchunks; c++) s += partial[(size_t)c * stride + j];
        dst[j] = add ? dst[j] + s : s;
    }
}

void sum_chunks(float *dst, const float *partial, size_t stride, int nchunks, size_t n) {
    chunk_sums(dst, partial, stride, nchunks, n, 0);
}

void reduce_chunks(float *dst, const float *partial, size_t stride, int nchunks, size_t n) {
    chunk_sums(dst, partial, stride, nchunks, n, 1);
}
