// Sums over the batch: one fixed tree over the batch's chunks, the same at
// any thread count and, above the ranks' subtrees, at any rank count that
// is a power of two (see cnn_net_set_collective in cnnc.h). A range of
// chunks [lo, hi) is the sum of [lo, mid) and [mid, hi), mid = lo + (hi -
// lo) / 2; rank r holds chunks [r C / N, (r + 1) C / N), which for N a power
// of two is a node of that tree, and the ranks' tree splits a range of ranks
// the same way.
//
// The exchange moves each rank's subtree as N segments: rank q receives
// segment q of every rank (alltoall), sums them over the ranks' tree and
// sends the result to all (allgather), so each rank sends and receives
// about 2 (N - 1) / N of the vector, the volume of a ring all-reduce.
#include <omp.h>
#include <string.h>

#include "internal.h"

#define TREE_BLOCK 256  // values summed together: 16 rows of a block stay in L1

#define DEFINE_TREE(NAME, T)                                                                   \
    static void NAME##_range(T *p, size_t stride, int lo, int hi, size_t j0, size_t j1) {     \
        if (hi - lo < 2) return;                                                               \
        const int mid = lo + (hi - lo) / 2;                                                    \
        NAME##_range(p, stride, lo, mid, j0, j1);                                              \
        NAME##_range(p, stride, mid, hi, j0, j1);                                              \
        T *restrict a = p + (size_t)lo * stride;                                               \
        const T *restrict b = p + (size_t)mid * stride;                                        \
        for (size_t j = j0; j < j1; j++) a[j] += b[j];                                         \
    }                                                                                          \
    void NAME(T *partial, size_t stride, int nchunks, size_t n) {                              \
        if (nchunks <= 0) {                                                                    \
            memset(partial, 0, sizeof(T) * n);                                                 \
            return;                                                                            \
        }                                                                                      \
        if (nchunks == 1) return;                                                              \
        const size_t blocks = (n + TREE_BLOCK - 1) / TREE_BLOCK;                               \
        _Pragma("omp parallel for schedule(static) if (n * (size_t)nchunks >= CNN_PAR_MIN_WORK)") \
        for (size_t k = 0; k < blocks; k++) {                                                  \
            const size_t j0 = k * TREE_BLOCK, j1 = j0 + TREE_BLOCK < n ? j0 + TREE_BLOCK : n;  \
            NAME##_range(partial, stride, 0, nchunks, j0, j1);                                 \
        }                                                                                      \
    }

DEFINE_TREE(chunk_tree_sum, float)
DEFINE_TREE(chunk_tree_sum_f64, double)

// Rank q's chunks [q C / N, (q + 1) C / N) are empty when C < N.
static int rank_empty(const BatchSplit *s, int ranks, int q) {
    return (long)q * s->C / ranks == (long)(q + 1) * s->C / ranks;
}

// The ranks' tree over [lo, hi) of rows (stride apart) into row lo; returns
// 0 when every rank of the range is empty (row lo then means nothing).
#define DEFINE_RANK_TREE(NAME, T)                                                           \
    static int NAME(T *rows, size_t stride, size_t n, const BatchSplit *s, int ranks, int lo, int hi) { \
        if (hi - lo == 1) return !rank_empty(s, ranks, lo);                                  \
        const int mid = lo + (hi - lo) / 2;                                                  \
        const int a = NAME(rows, stride, n, s, ranks, lo, mid);                              \
        const int b = NAME(rows, stride, n, s, ranks, mid, hi);                              \
        T *restrict x = rows + (size_t)lo * stride;                                          \
        const T *restrict y = rows + (size_t)mid * stride;                                   \
        if (a && b)                                                                          \
            for (size_t j = 0; j < n; j++) x[j] += y[j];                                     \
        else if (b)                                                                          \
            memcpy(x, y, sizeof(T) * n);                                                     \
        return a || b;                                                                       \
    }

DEFINE_RANK_TREE(rank_tree_f32, float)
DEFINE_RANK_TREE(rank_tree_f64, double)

// v (n values of `elem` bytes, this rank's subtree) becomes the sum over all ranks.
static void exchange_sum(Workspace *ws, void *v, size_t n, size_t elem) {
    CnnCollective *c = ws->coll;
    const int N = c->ranks, me = c->rank;
    size_t *soff = ws->xoff, *slen = soff + N, *roff = slen + N, *rlen = roff + N;
    const size_t mine = n * (size_t)(me + 1) / N - n * (size_t)me / N;
    for (int q = 0; q < N; q++) {
        const size_t b = n * (size_t)q / N, e = n * (size_t)(q + 1) / N;
        soff[q] = b * elem;
        slen[q] = (e - b) * elem;
        roff[q] = (size_t)q * mine * elem;
        rlen[q] = mine * elem;
    }
    CNN_ASSERT((size_t)N * mine * elem <= ws->xbuf_bytes);
    const double t0 = omp_get_wtime();
    ws->xbytes += ((double)(n - mine) + (double)mine * (N - 1)) * elem;  // the others' segments, then this one to each
    if (c->alltoall(c, v, soff, slen, ws->xbuf, roff, rlen)) {
        ws->failed = 1;
        return;
    }
    int any;
    if (elem == sizeof(double))
        any = rank_tree_f64(ws->xbuf, mine, mine, &ws->split, N, 0, N);
    else
        any = rank_tree_f32(ws->xbuf, mine, mine, &ws->split, N, 0, N);
    char *dst = (char *)v + soff[me];
    if (any) memcpy(dst, ws->xbuf, mine * elem);
    else memset(dst, 0, mine * elem);
    if (c->allgather(c, v, soff, slen)) ws->failed = 1;
    ws->xseconds += omp_get_wtime() - t0;
}

static int exchanging(const Workspace *ws) { return ws->coll && ws->split.active && ws->coll->ranks > 1; }

void batch_sum(Workspace *ws, float *partial, size_t stride, int nchunks, size_t n) {
    chunk_tree_sum(partial, stride, nchunks, n);
    if (exchanging(ws)) exchange_sum(ws, partial, n, sizeof(float));
}

void batch_sum_f64(Workspace *ws, double *partial, size_t stride, int nchunks, size_t n) {
    chunk_tree_sum_f64(partial, stride, nchunks, n);
    if (exchanging(ws)) exchange_sum(ws, partial, n, sizeof(double));
}

void add_floats(float *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
    for (size_t j = 0; j < n; j++) dst[j] += src[j];
}
