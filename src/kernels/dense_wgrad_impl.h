// The dense layer's weight gradient as every sum over the batch runs (see
// batch_sum.c): per batch chunk, then the chunks' tree. One definition,
// included by the portable layer code and by each instruction set's kernel
// file (dense_wgrad_avx2.c), which the compiler vectorises with that set.
//
// dw rows [o0, o0 + n) of (OUT, IN) = tree over chunks c of (sum over the
// chunk's rows i, in order, of dy[i][o] x[i][j]); chunk c is rows
// [start[c], start[c + 1]). Columns run in blocks of DENSE_JB, so the
// block of x and the chunks' sums stay in L1 across the rows o.
#ifndef CNNC_DENSE_WGRAD_IMPL_H
#define CNNC_DENSE_WGRAD_IMPL_H

#include <string.h>

#define DENSE_JB 64
#define DENSE_MAX_CHUNKS 16

// The chunks' tree (batch_sum.c's order) over rows [lo, hi) into row lo.
// Not chunk_tree_sum: it runs once per block of dw, where that one's OpenMP
// region would cost more than the adds; the width is a constant so that the
// adds vectorise (a width passed in made lenet train 0.71-0.87x; the AVX2
// file spells its 16-wide tree in intrinsics for the same reason).
static void dense_tree_range(float (*acc)[DENSE_JB], int lo, int hi) {
    if (hi - lo < 2) return;
    const int mid = lo + (hi - lo) / 2;
    dense_tree_range(acc, lo, mid);
    dense_tree_range(acc, mid, hi);
    for (int j = 0; j < DENSE_JB; j++) acc[lo][j] += acc[mid][j];
}

// Columns [jlo, jhi) only.
static inline void dense_wgrad_tree_cols(const float *dy, int OUT, const float *x, int IN, const int *start,
                                         int nchunks, int o0, int n, int jlo, int jhi, float *dw) {
    float acc[DENSE_MAX_CHUNKS][DENSE_JB];
    for (int j0 = jlo; j0 < jhi; j0 += DENSE_JB) {
        const int nj = jhi - j0 < DENSE_JB ? jhi - j0 : DENSE_JB;
        for (int o = o0; o < o0 + n; o++) {
            for (int c = 0; c < nchunks; c++) {
                // The chunk's first row sets the sums, the others add in order
                // (an empty chunk sums to 0); a local array the compiler keeps in registers.
                float a[DENSE_JB];
                const int i0 = start[c], i1 = start[c + 1];
                if (i0 == i1 || nj < DENSE_JB)
                    for (int j = 0; j < DENSE_JB; j++) a[j] = 0.0f;
                if (i0 < i1 && nj == DENSE_JB) {
                    const float d0 = dy[(size_t)i0 * OUT + o], *x0 = x + (size_t)i0 * IN + j0;
                    for (int j = 0; j < DENSE_JB; j++) a[j] = d0 * x0[j];
                    for (int i = i0 + 1; i < i1; i++) {
                        const float d = dy[(size_t)i * OUT + o], *xr = x + (size_t)i * IN + j0;
                        for (int j = 0; j < DENSE_JB; j++) a[j] += d * xr[j];
                    }
                } else if (i0 < i1) {
                    const float d0 = dy[(size_t)i0 * OUT + o], *x0 = x + (size_t)i0 * IN + j0;
                    for (int j = 0; j < nj; j++) a[j] = d0 * x0[j];
                    for (int i = i0 + 1; i < i1; i++) {
                        const float d = dy[(size_t)i * OUT + o], *xr = x + (size_t)i * IN + j0;
                        for (int j = 0; j < nj; j++) a[j] += d * xr[j];
                    }
                }
                memcpy(acc[c], a, sizeof a);
            }
            float *row = dw + (size_t)(o - o0) * IN + j0;
            if (nchunks <= 0) {
                memset(row, 0, sizeof(float) * (size_t)nj);
                continue;
            }
            dense_tree_range(acc, 0, nchunks);
            memcpy(row, acc[0], sizeof(float) * (size_t)nj);
        }
    }
}

static inline void dense_wgrad_tree_impl(const float *dy, int OUT, const float *x, int IN, const int *start,
                                         int nchunks, int o0, int n, float *dw) {
    dense_wgrad_tree_cols(dy, OUT, x, IN, start, nchunks, o0, n, 0, IN, dw);
}

#endif  // CNNC_DENSE_WGRAD_IMPL_H
