// Direct convolution for layers with few input channels (a network's first:
// 1 or 3), stride 1, on plain (C,H,W) planes. im2col + small-K GEMMs spent
// more time building the im2col matrix than multiplying (lenet's first
// convolution: a third of its inference).
//
// The input comes as a zero-padded plane (conv2d_small_c.c), Wp =
// round16(OW) + KW - 1 wide, so that every row of 16 outputs reads whole
// vectors.
//
// Forward: a tile is 16 output pixels of one row (2 vectors) x up to 6
// output channels (12 accumulators); for each input channel, tap row and
// tap column, two unaligned loads and one broadcast weight per channel.
// Each output is bias + the terms in (c, kh, kw) order, one FMA each: the
// same sums, in the same order, as gemm_small_k on the im2col matrix.
//
// Weight gradient: up to 4 output channels x 3 taps of one tap row (12
// accumulators), each a dot product of the output-gradient plane with the
// shifted input plane over rows, then 8-pixel vectors (a row's last part
// vector as its last 8 pixels with the ones already counted zeroed), its
// lanes summed in a fixed order at the end. No order
// depends on the thread count.
// Compiled with -mavx2 -mfma alone; called only where the CPU has both.
#include <immintrin.h>

#include "kernels/avx2_lanes.h"

#include "internal.h"

// Lanes 0..n-1 on (n may be <= 0 or >= 8).
static inline __m256i lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static int round16(int n) { return (n + 15) & ~15; }

// OT output channels (filters w_oc floats apart) x 16 pixels from xt (the
// padded plane at the tile's first row and column; tap t reads xt + off[t],
// t = (c KH + kh) KW + kw); n of the 16 are stored (all 16 when n is 16 or
// `spill`: the extra ones land on the next row's first pixels, which the
// next row's tiles write later; masked stores run 10x slower on AMD Zen).
// One loop over the taps: nested loops over c, kh and kw cost more than
// their 3-5 iterations of work.
static inline __attribute__((always_inline)) void fwd_tile(const int OT, const float *xt, const int *off, int T,
                                                           const float *w, size_t w_oc, const float *bias, float *y,
                                                           size_t y_plane, int n, int spill) {
    __m256 a0[6], a1[6];
#pragma GCC unroll 6
    for (int o = 0; o < OT; o++) a0[o] = a1[o] = _mm256_set1_ps(bias ? bias[o] : 0.0f);
    for (int t = 0; t < T; t++) {
        const float *r = xt + off[t];
        const __m256 x0 = _mm256_loadu_ps(r), x1 = _mm256_loadu_ps(r + 8);
#pragma GCC unroll 6
        for (int o = 0; o < OT; o++) {
            const __m256 wv = _mm256_broadcast_ss(w + o * w_oc + t);
            a0[o] = _mm256_fmadd_ps(wv, x0, a0[o]);
            a1[o] = _mm256_fmadd_ps(wv, x1, a1[o]);
        }
    }
    if (n == 16 || spill) {
#pragma GCC unroll 6
        for (int o = 0; o < OT; o++) {
            _mm256_storeu_ps(y + o * y_plane, a0[o]);
            _mm256_storeu_ps(y + o * y_plane + 8, a1[o]);
        }
    } else {
        float tmp[16];
#pragma GCC unroll 6  // every loop over the accumulators: else GCC keeps them in memory
        for (int o = 0; o < OT; o++) {
            _mm256_storeu_ps(tmp, a0[o]);
            _mm256_storeu_ps(tmp + 8, a1[o]);
            for (int i = 0; i < n; i++) y[o * y_plane + i] = tmp[i];
        }
    }
}

void conv_small_c_fwd_avx2(const float *xp, int C, int KH, int KW, const float *w, const float *bias, int OC,
                           int OH, int OW, float *y) {
    const int Hp = OH + KH - 1, Wp = round16(OW) + KW - 1, T = C * KH * KW;
    const size_t w_oc = (size_t)T, y_plane = (size_t)OH * OW;
    int off[CNN_SMALL_C_TAPS_MAX];
    for (int c = 0, t = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) off[t++] = (c * Hp + kh) * Wp + kw;
    for (int oc = 0; oc < OC; oc += 6) {
        const int ot = OC - oc < 6 ? OC - oc : 6;
        const float *wt = w + oc * w_oc, *bt = bias ? bias + oc : NULL;
        for (int oh = 0; oh < OH; oh++)
            for (int v = 0; v < OW; v += 16) {
                const float *xt = xp + (size_t)oh * Wp + v;
                float *yt = y + oc * y_plane + (size_t)oh * OW + v;
                const int n = OW - v < 16 ? OW - v : 16;
                // Spilling into the next row needs one: 16 - n <= OW pixels, not yet written.
                const int spill = oh + 1 < OH && 16 - n <= OW;
                switch (ot) {
                case 6: fwd_tile(6, xt, off, T, wt, w_oc, bt, yt, y_plane, n, spill); break;
                case 5: fwd_tile(5, xt, off, T, wt, w_oc, bt, yt, y_plane, n, spill); break;
                case 4: fwd_tile(4, xt, off, T, wt, w_oc, bt, yt, y_plane, n, spill); break;
                case 3: fwd_tile(3, xt, off, T, wt, w_oc, bt, yt, y_plane, n, spill); break;
                case 2: fwd_tile(2, xt, off, T, wt, w_oc, bt, yt, y_plane, n, spill); break;
                default: fwd_tile(1, xt, off, T, wt, w_oc, bt, yt, y_plane, n, spill); break;
                }
            }
    }
}

// ---------------------------------------------------------------- with a 2x2 max pool
// Even and odd lanes of the 16 values (lo, hi): [0 2 .. 14] and [1 3 .. 15].
static inline void deinterleave(__m256 lo, __m256 hi, __m256 *even, __m256 *odd) {
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}

static inline __m256 takes(__m256 v, __m256 m) {  // v > m, or v is NaN: maxpool_forward's rule
    return _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

static inline __m256i blend_epi32(__m256i a, __m256i b, __m256 t) {
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), t));
}

// 3 output channels x 16 pixels of conv rows 2 r and 2 r + 1 (12 accumulators,
// each sum as fwd_tile's; 2 channels and 8 ran 1.1-1.3x slower in
// `bench_kernels --small-c 3,32,32`), then their 8 windows of 2x2 pooled in registers:
// the first window's top-left is conv pixel (2 r, 2 pw0), i0 its index in the
// OH x OW plane; np of the 8 pooled values (and argmaxes) are stored.
static inline __attribute__((always_inline)) void fwd_pool_tile(const int OT, const float *xt, size_t Wp,
                                                                const int *off, int T, const float *w,
                                                                size_t w_oc, const float *bias, int i0, int OW,
                                                                int relu, float *y, int32_t *am,
                                                                size_t p_plane, int np) {
    __m256 t0[3], t1[3], b0[3], b1[3];
#pragma GCC unroll 3
    for (int o = 0; o < OT; o++) t0[o] = t1[o] = b0[o] = b1[o] = _mm256_set1_ps(bias ? bias[o] : 0.0f);
    for (int t = 0; t < T; t++) {
        const float *r = xt + off[t];
        __m256 wv[3];
#pragma GCC unroll 3
        for (int o = 0; o < OT; o++) wv[o] = _mm256_broadcast_ss(w + o * w_oc + t);
        // One input vector at a time: 12 accumulators, 3 weights and 1 input fill the 16 registers.
        __m256 xv = _mm256_loadu_ps(r);
#pragma GCC unroll 3
        for (int o = 0; o < OT; o++) t0[o] = _mm256_fmadd_ps(wv[o], xv, t0[o]);
        xv = _mm256_loadu_ps(r + 8);
#pragma GCC unroll 3
        for (int o = 0; o < OT; o++) t1[o] = _mm256_fmadd_ps(wv[o], xv, t1[o]);
        xv = _mm256_loadu_ps(r + Wp);
#pragma GCC unroll 3
        for (int o = 0; o < OT; o++) b0[o] = _mm256_fmadd_ps(wv[o], xv, b0[o]);
        xv = _mm256_loadu_ps(r + Wp + 8);
#pragma GCC unroll 3
        for (int o = 0; o < OT; o++) b1[o] = _mm256_fmadd_ps(wv[o], xv, b1[o]);
    }
    const __m256i tl_i = _mm256_add_epi32(_mm256_set1_epi32(i0), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
    const __m256i one = _mm256_set1_epi32(1), bl_i = _mm256_add_epi32(tl_i, _mm256_set1_epi32(OW));
#pragma GCC unroll 3
    for (int o = 0; o < OT; o++) {
        __m256 m, tr, bl, br;
        deinterleave(t0[o], t1[o], &m, &tr);
        deinterleave(b0[o], b1[o], &bl, &br);
        __m256 t = takes(tr, m);
        m = _mm256_blendv_ps(m, tr, t);
        __m256i bi = blend_epi32(tl_i, _mm256_add_epi32(tl_i, one), t);
        t = takes(bl, m);
        m = _mm256_blendv_ps(m, bl, t);
        bi = blend_epi32(bi, bl_i, t);
        t = takes(br, m);
        m = _mm256_blendv_ps(m, br, t);
        bi = blend_epi32(bi, _mm256_add_epi32(bl_i, one), t);
        if (relu) m = _mm256_max_ps(_mm256_setzero_ps(), m);  // relu_in_place's y < 0 ? 0 : y, NaN and -0 kept
        float *yo = y + o * p_plane;
        int32_t *ao = am + o * p_plane;
        if (np == 8) {
            _mm256_storeu_ps(yo, m);
            _mm256_storeu_si256((__m256i *)(void *)ao, bi);
        } else {
            float mv[8];
            int32_t iv[8];
            _mm256_storeu_ps(mv, m);
            _mm256_storeu_si256((__m256i *)(void *)iv, bi);
            for (int j = 0; j < np; j++) {
                yo[j] = mv[j];
                ao[j] = iv[j];
            }
        }
    }
}

void conv_small_c_fwd_pool2_avx2(const float *xp, int C, int KH, int KW, const float *w, const float *bias, int OC,
                                 int OH, int OW, int relu, float *y, int32_t *argmax) {
    const int Hp = OH + KH - 1, Wp = round16(OW) + KW - 1, T = C * KH * KW, POH = OH / 2, POW = OW / 2;
    const size_t w_oc = (size_t)T, p_plane = (size_t)POH * POW;
    int off[CNN_SMALL_C_TAPS_MAX];
    for (int c = 0, t = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) off[t++] = (c * Hp + kh) * Wp + kw;
    for (int oc = 0; oc < OC; oc += 3) {
        const float *wt = w + oc * w_oc, *bt = bias ? bias + oc : NULL;
        for (int r = 0; r < POH; r++)
            for (int pw = 0; pw < POW; pw += 8) {
                const float *xt = xp + (size_t)2 * r * Wp + 2 * pw;
                const size_t at = oc * p_plane + (size_t)r * POW + pw;
                const int np = POW - pw < 8 ? POW - pw : 8, i0 = 2 * r * OW + 2 * pw;
#define TILE(n) fwd_pool_tile(n, xt, (size_t)Wp, off, T, wt, w_oc, bt, i0, OW, relu, y + at, argmax + at, p_plane, np)
                if (OC - oc >= 3) TILE(3);
                else if (OC - oc == 2) TILE(2);
                else TILE(1);
#undef TILE
            }
    }
}

// dw[o][kt] += sum over pixels of dy[o] x (the plane shifted by tap kt),
// for OT output channels (dy planes dy_plane apart, dw rows dw_oc apart) and
// KT consecutive taps of one tap row (xp at that row's first tap).
static inline __attribute__((always_inline)) void wgrad_tile(const int OT, const int KT, const float *xp, int Wp,
                                                             const float *dy, size_t dy_plane, int OH, int OW,
                                                             float *dw, size_t dw_oc) {
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int o = 0; o < OT; o++)
#pragma GCC unroll 3
        for (int k = 0; k < KT; k++) acc[o][k] = _mm256_setzero_ps();
    // A row's last part vector: where the row has 8 pixels or more, the
    // row's last 8 read whole with the ones already counted zeroed (a
    // masked load ran the kernel at 60% of its speed on AMD Zen 3).
    const int whole = OW & ~7, back = OW >= 8 ? OW - 8 : 0;
    const __m256i tail = OW >= 8 ? _mm256_xor_si256(lanes(8 - (OW - whole)), _mm256_set1_epi32(-1)) : lanes(OW);
    for (int oh = 0; oh < OH; oh++) {
        const float *row = xp + (size_t)oh * Wp, *d = dy + (size_t)oh * OW;
        for (int v = 0; v < whole; v += 8) {
            __m256 g[4];
#pragma GCC unroll 4
            for (int o = 0; o < OT; o++) g[o] = _mm256_loadu_ps(d + o * dy_plane + v);
#pragma GCC unroll 3
            for (int k = 0; k < KT; k++) {
                const __m256 xv = _mm256_loadu_ps(row + v + k);
#pragma GCC unroll 4
                for (int o = 0; o < OT; o++) acc[o][k] = _mm256_fmadd_ps(g[o], xv, acc[o][k]);
            }
        }
        if (whole == OW) continue;
        __m256 g[4];
        if (OW >= 8) {
#pragma GCC unroll 4
            for (int o = 0; o < OT; o++)
                g[o] = _mm256_and_ps(_mm256_loadu_ps(d + o * dy_plane + back), _mm256_castsi256_ps(tail));
        } else {
#pragma GCC unroll 4
            for (int o = 0; o < OT; o++) g[o] = _mm256_maskload_ps(d + o * dy_plane, tail);
        }
#pragma GCC unroll 3
        for (int k = 0; k < KT; k++) {
            const __m256 xv = _mm256_loadu_ps(row + back + k);
#pragma GCC unroll 4
            for (int o = 0; o < OT; o++) acc[o][k] = _mm256_fmadd_ps(g[o], xv, acc[o][k]);
        }
    }
#pragma GCC unroll 4
    for (int o = 0; o < OT; o++)
#pragma GCC unroll 3
        for (int k = 0; k < KT; k++) dw[o * dw_oc + k] += lane_sum(acc[o][k]);
}

#define WGRAD_KT(OT, KT) wgrad_tile(OT, KT, xt, Wp, dyt, dy_plane, OH, OW, dwt, dw_oc)
#define WGRAD_OT(OT)                       \
    switch (kt) {                          \
    case 3: WGRAD_KT(OT, 3); break;        \
    case 2: WGRAD_KT(OT, 2); break;        \
    default: WGRAD_KT(OT, 1); break;       \
    }

void conv_small_c_wgrad_avx2(const float *xp, int C, int KH, int KW, const float *dy, int OC, int OH, int OW,
                             float *dw) {
    const int Hp = OH + KH - 1, Wp = round16(OW) + KW - 1;
    const size_t dw_oc = (size_t)C * KH * KW, dy_plane = (size_t)OH * OW;
    for (int oc = 0; oc < OC; oc += 4) {
        const int ot = OC - oc < 4 ? OC - oc : 4;
        for (int c = 0; c < C; c++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw += 3) {
                    const int kt = KW - kw < 3 ? KW - kw : 3;
                    const float *xt = xp + ((size_t)c * Hp + kh) * Wp + kw, *dyt = dy + oc * dy_plane;
                    float *dwt = dw + oc * dw_oc + ((size_t)c * KH + kh) * KW + kw;
                    switch (ot) {
                    case 4: WGRAD_OT(4); break;
                    case 3: WGRAD_OT(3); break;
                    case 2: WGRAD_OT(2); break;
                    default: WGRAD_OT(1); break;
                    }
                }
    }
}
