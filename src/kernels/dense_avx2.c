// The dense layer's forward pass and input gradient for a batch chunk (a few
// rows) in AVX2 and FMA. OpenBLAS packed the whole weight matrix for every
// chunk's 4-row product (tfcnn's dense(64): 256 KB, 16 times a pass), which
// cost more than the products; these read it once per chunk, in place.
// Forward: y[i][o] = (sum over k of x[i][k] w[o][k]) + b[o], 4 rows x 2
// outputs (8 accumulators of 8 lanes: lane l sums k = l mod 8), the lanes
// then summed in a fixed order, then the columns past the last whole 8.
// Input gradient: dx[i][k] = sum over o, in order, of dy[i][o] w[o][k],
// 4 rows x 16 columns in 8 accumulators. No order depends on the thread count.
// Compiled with -mavx2 -mfma alone; called only where the CPU has both.
#include <immintrin.h>

#include "kernels/avx2_lanes.h"

#include "kernels/kernels.h"

static inline __attribute__((always_inline)) void fwd_tile(const int R, const int O, const float *x, int IN,
                                                           const float *w, const float *bias, float *y, int OUT) {
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int o = 0; o < O; o++) acc[r][o] = _mm256_setzero_ps();
    const int whole = IN & ~7;
    for (int k = 0; k < whole; k += 8) {
        __m256 wv[2];
#pragma GCC unroll 2
        for (int o = 0; o < O; o++) wv[o] = _mm256_loadu_ps(w + (size_t)o * IN + k);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m256 xv = _mm256_loadu_ps(x + (size_t)r * IN + k);
#pragma GCC unroll 2
            for (int o = 0; o < O; o++) acc[r][o] = _mm256_fmadd_ps(xv, wv[o], acc[r][o]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int o = 0; o < O; o++) {
            float s = lane_sum(acc[r][o]);
            for (int k = whole; k < IN; k++) s += x[(size_t)r * IN + k] * w[(size_t)o * IN + k];
            y[(size_t)r * OUT + o] = bias ? s + bias[o] : s;
        }
}

void dense_forward_avx2(const float *x, int rows, int IN, const float *w, int OUT, const float *bias, float *y) {
    for (int i = 0; i < rows; i += 4) {
        const int R = rows - i < 4 ? rows - i : 4;
        const float *xi = x + (size_t)i * IN;
        float *yi = y + (size_t)i * OUT;
        for (int o = 0; o < OUT; o += 2) {
            const float *wo = w + (size_t)o * IN, *bo = bias ? bias + o : NULL;
            const int two = OUT - o >= 2;
#define FWD(RR)                                                  \
    case RR:                                                     \
        if (two) fwd_tile(RR, 2, xi, IN, wo, bo, yi + o, OUT);   \
        else fwd_tile(RR, 1, xi, IN, wo, bo, yi + o, OUT);       \
        break;
            switch (R) { FWD(4) FWD(3) FWD(2) FWD(1) }
#undef FWD
        }
    }
}

// R rows x V vectors of 8 columns (from k0) of dx; or, with V 0, column k0 alone.
static inline __attribute__((always_inline)) void dx_tile(const int R, const int V, const float *dy, int OUT,
                                                          const float *w, int IN, int k0, float *dx) {
    if (V == 0) {
        for (int r = 0; r < R; r++) {
            float s = 0.0f;
            for (int o = 0; o < OUT; o++) s += dy[(size_t)r * OUT + o] * w[(size_t)o * IN + k0];
            dx[(size_t)r * IN + k0] = s;
        }
        return;
    }
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) acc[r][v] = _mm256_setzero_ps();
    for (int o = 0; o < OUT; o++) {
        __m256 wv[2];
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) wv[v] = _mm256_loadu_ps(w + (size_t)o * IN + k0 + 8 * v);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m256 g = _mm256_broadcast_ss(dy + (size_t)r * OUT + o);
#pragma GCC unroll 2
            for (int v = 0; v < V; v++) acc[r][v] = _mm256_fmadd_ps(g, wv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) _mm256_storeu_ps(dx + (size_t)r * IN + k0 + 8 * v, acc[r][v]);
}

void dense_input_grad_avx2(const float *dy, int rows, int OUT, const float *w, int IN, float *dx) {
    for (int i = 0; i < rows; i += 4) {
        const int R = rows - i < 4 ? rows - i : 4;
        const float *di = dy + (size_t)i * OUT;
        float *xi = dx + (size_t)i * IN;
        int k = 0;
#define DX(RR, VV)                                              \
    case RR:                                                    \
        dx_tile(RR, VV, di, OUT, w, IN, k, xi);                 \
        break;
        for (; k + 16 <= IN; k += 16) switch (R) { DX(4, 2) DX(3, 2) DX(2, 2) DX(1, 2) }
        for (; k + 8 <= IN; k += 8) switch (R) { DX(4, 1) DX(3, 1) DX(2, 1) DX(1, 1) }
        for (; k < IN; k++) switch (R) { DX(4, 0) DX(3, 0) DX(2, 0) DX(1, 0) }
#undef DX
    }
}
