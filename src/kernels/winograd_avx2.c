// Winograd transforms on 8-channel blocks (see WinoTransform in kernels.h):
// each tile's a x a values of one block are 8-lane vectors, and B^T d B and
// A^T M A are taken column by column, then row by row, with the matrices'
// entries written into the code (F(2x2, 3x3) and F(4x4, 3x3): a handful of
// adds and FMAs for each column instead of a dense a x a product).
// Compiled with -mavx2 -mfma alone; called only where the CPU has both.
#include <immintrin.h>

#include "kernels/avx2_lanes.h"

#include "internal.h"

#define WA 6  // the largest a (F(4x4, 3x3))

typedef __m256 v8;
static inline v8 add(v8 a, v8 b) { return _mm256_add_ps(a, b); }
static inline v8 sub(v8 a, v8 b) { return _mm256_sub_ps(a, b); }
static inline v8 fma_(v8 a, float k, v8 c) { return _mm256_fmadd_ps(a, _mm256_set1_ps(k), c); }  // a k + c

// r = B^T z for one column (or row) of a tile: F(4x4) (points 0, +-1, +-2)
// and F(2x2) (points 0, +-1).
static inline __attribute__((always_inline)) void bt4(const v8 *z, v8 *r) {
    const v8 t0 = fma_(z[2], -4.0f, z[4]);  // z4 - 4 z2
    const v8 t1 = fma_(z[1], -4.0f, z[3]);  // z3 - 4 z1
    const v8 t2 = sub(z[4], z[2]);
    const v8 t3 = _mm256_mul_ps(sub(z[1], z[3]), _mm256_set1_ps(2.0f));
    r[0] = fma_(z[0], 4.0f, fma_(z[2], -5.0f, z[4]));
    r[1] = add(t0, t1);
    r[2] = sub(t0, t1);
    r[3] = sub(t2, t3);
    r[4] = add(t2, t3);
    r[5] = fma_(z[1], 4.0f, fma_(z[3], -5.0f, z[5]));
}

static inline __attribute__((always_inline)) void bt2(const v8 *z, v8 *r) {
    r[0] = sub(z[0], z[2]);
    r[1] = add(z[1], z[2]);
    r[2] = sub(z[2], z[1]);
    r[3] = sub(z[1], z[3]);
}

// o = A^T p for one column (or row): 6 -> 4 and 4 -> 2.
static inline __attribute__((always_inline)) void at4(const v8 *p, v8 *o) {
    const v8 s12 = add(p[1], p[2]), d12 = sub(p[1], p[2]);
    const v8 s34 = add(p[3], p[4]), d34 = sub(p[3], p[4]);
    o[0] = add(add(p[0], s12), s34);
    o[1] = fma_(d34, 2.0f, d12);
    o[2] = fma_(s34, 4.0f, s12);
    o[3] = add(fma_(d34, 8.0f, d12), p[5]);
}

static inline __attribute__((always_inline)) void at2(const v8 *p, v8 *o) {
    o[0] = add(add(p[0], p[1]), p[2]);
    o[1] = sub(sub(p[1], p[2]), p[3]);
}

// V for one tile of one block: d is the tile (rows x cols inside the plane,
// zeros past it), rows Wp * 8 floats apart.
static inline __attribute__((always_inline)) void input_tile(int a, const float *src, size_t row, int rows,
                                                             int cols, float *dst, size_t v_pos) {
    v8 d[WA][WA], t[WA][WA];
    for (int r = 0; r < a; r++)
        for (int c = 0; c < a; c++)
            d[r][c] = r < rows && c < cols ? _mm256_loadu_ps(src + r * row + (size_t)c * 8) : _mm256_setzero_ps();
    for (int c = 0; c < a; c++) {  // columns: t[.][c] = B^T d[.][c]
        v8 z[WA], o[WA];
        for (int r = 0; r < a; r++) z[r] = d[r][c];
        if (a == 6) bt4(z, o);
        else bt2(z, o);
        for (int r = 0; r < a; r++) t[r][c] = o[r];
    }
    for (int r = 0; r < a; r++) {  // rows: V[r][.] = t[r][.] B
        v8 o[WA];
        if (a == 6) bt4(t[r], o);
        else bt2(t[r], o);
        for (int c = 0; c < a; c++) _mm256_storeu_ps(dst + (size_t)(r * a + c) * v_pos, o[c]);
    }
}

void wino_input_avx2(const WinoTransform *f, const float *xb, int CB, int Hp, int Wp, size_t x_image, int n,
                     int TH, int TW, float *V) {
    const int m = f->m, a = f->a;
    const size_t T = (size_t)n * TH * TW, v_pos = wino_pos_floats(CB, T), row = (size_t)Wp * 8;
    for (int j = 0; j < n; j++)
        for (int cb = 0; cb < CB; cb++) {
            const float *plane = xb + j * x_image + (size_t)cb * Hp * Wp * 8;
            float *vb = V + (size_t)cb * T * 8;
            for (int ty = 0; ty < TH; ty++)
                for (int tx = 0; tx < TW; tx++) {
                    const size_t t = ((size_t)j * TH + ty) * TW + tx;
                    const int r0 = ty * m, c0 = tx * m;
                    const int rows = Hp - r0 < a ? Hp - r0 : a, cols = Wp - c0 < a ? Wp - c0 : a;
                    const float *src = plane + r0 * row + (size_t)c0 * 8;
                    if (a == 6) input_tile(6, src, row, rows, cols, vb + t * 8, v_pos);
                    else input_tile(4, src, row, rows, cols, vb + t * 8, v_pos);
                }
        }
}

// The m x m outputs of one tile of one block, plus the bias, for the rows x
// cols of them inside the plane.
static inline __attribute__((always_inline)) void output_tile(int a, int m, const float *src, size_t m_pos,
                                                              v8 bias, float *dst, size_t row, int rows,
                                                              int cols) {
    v8 p[WA][WA], t[WA][WA];
    for (int r = 0; r < a; r++)
        for (int c = 0; c < a; c++) p[r][c] = _mm256_loadu_ps(src + (size_t)(r * a + c) * m_pos);
    for (int c = 0; c < a; c++) {  // columns: t[.][c] = A^T p[.][c]
        v8 z[WA], o[WA];
        for (int r = 0; r < a; r++) z[r] = p[r][c];
        if (a == 6) at4(z, o);
        else at2(z, o);
        for (int r = 0; r < m; r++) t[r][c] = o[r];
    }
    for (int r = 0; r < rows; r++) {  // rows: y[r][.] = t[r][.] A
        v8 o[WA] = {_mm256_setzero_ps()};
        if (a == 6) at4(t[r], o);
        else at2(t[r], o);
        for (int c = 0; c < cols; c++) _mm256_storeu_ps(dst + r * row + (size_t)c * 8, add(o[c], bias));
    }
}

void wino_output_avx2(const WinoTransform *f, const float *M, int OCB, int n, int TH, int TW, int OH, int OW,
                      const float *bias, float *yb, size_t y_image) {
    const int m = f->m, a = f->a;
    const size_t T = (size_t)n * TH * TW, m_pos = wino_pos_floats(OCB, T), row = (size_t)OW * 8;
    for (int j = 0; j < n; j++)
        for (int ob = 0; ob < OCB; ob++) {
            const v8 b = bias ? _mm256_loadu_ps(bias + ob * 8) : _mm256_setzero_ps();
            const float *mb = M + (size_t)ob * T * 8;
            float *plane = yb + j * y_image + (size_t)ob * OH * OW * 8;
            for (int ty = 0; ty < TH; ty++)
                for (int tx = 0; tx < TW; tx++) {
                    const size_t t = ((size_t)j * TH + ty) * TW + tx;
                    const int r0 = ty * m, c0 = tx * m;
                    const int rows = OH - r0 < m ? OH - r0 : m, cols = OW - c0 < m ? OW - c0 : m;
                    float *dst = plane + r0 * row + (size_t)c0 * 8;
                    if (a == 6) output_tile(6, 4, mb + t * 8, m_pos, b, dst, row, rows, cols);
                    else output_tile(4, 2, mb + t * 8, m_pos, b, dst, row, rows, cols);
                }
        }
}

// ---------------------------------------------------------------- filters
// U = G g G^T for the 8 filters of one (ob, cb, i), a lane each: their 9
// taps come in as 8 rows of 9 floats, rows `row` floats apart (the 8
// output channels o), taps reversed where flip; the first 8 taps of each
// row are transposed into vectors over o, the ninth gathered.
static void filter_lanes(const WinoTransform *f, const float *g0, size_t row, int flip, float *u, size_t u_pos) {
    const int a = f->a;
    __m256 r[8], g[9];
    for (int o = 0; o < 8; o++) r[o] = _mm256_loadu_ps(g0 + o * row);
    transpose8(r);  // r[k]: tap k of the 8 filters
    const __m256 last = _mm256_setr_ps(g0[8], g0[row + 8], g0[2 * row + 8], g0[3 * row + 8], g0[4 * row + 8],
                                       g0[5 * row + 8], g0[6 * row + 8], g0[7 * row + 8]);
    for (int k = 0; k < 8; k++) g[flip ? 8 - k : k] = r[k];
    g[flip ? 0 : 8] = last;
    __m256 t[WA][3];
    for (int p = 0; p < a; p++)  // t = G g: a x 3
        for (int c = 0; c < 3; c++)
            t[p][c] = _mm256_fmadd_ps(_mm256_set1_ps(f->G[p * 3]), g[c],
                                      _mm256_fmadd_ps(_mm256_set1_ps(f->G[p * 3 + 1]), g[3 + c],
                                                      _mm256_mul_ps(_mm256_set1_ps(f->G[p * 3 + 2]), g[6 + c])));
    for (int p = 0; p < a; p++)  // U = t G^T: a x a
        for (int q = 0; q < a; q++)
            _mm256_storeu_ps(u + (size_t)(p * a + q) * u_pos,
                             _mm256_fmadd_ps(t[p][0], _mm256_set1_ps(f->G[q * 3]),
                                             _mm256_fmadd_ps(t[p][1], _mm256_set1_ps(f->G[q * 3 + 1]),
                                                             _mm256_mul_ps(t[p][2], _mm256_set1_ps(f->G[q * 3 + 2])))));
}

void wino_filters_avx2(const WinoTransform *f, const float *w, int CB, int OCB, int flip, int ob, float *U,
                       size_t u_pos) {
    for (int cb = 0; cb < CB; cb++)
        for (int i = 0; i < 8; i++) {
            // w is (OC, C, 3, 3): flip 0 reads w[8 ob + o][8 cb + i], flip 1 w[8 cb + i][8 ob + o].
            const size_t at = flip ? ((size_t)(8 * cb + i) * 8 * OCB + 8 * ob) * 9
                                   : ((size_t)(8 * ob) * 8 * CB + 8 * cb + i) * 9;
            filter_lanes(f, w + at, flip ? 9 : (size_t)72 * CB, flip, U + (((size_t)ob * CB + cb) * 8 + i) * 8, u_pos);
        }
}

// ---------------------------------------------------------------- products
// A tile of RT tiles x NB output blocks (up to 6 x 2: 12 accumulators) over
// every input channel without leaving the registers: per channel 2 loads of
// U and RT broadcasts of V for 2 RT FMAs.
static inline __attribute__((always_inline)) void product_tile(int RT, int NB, const float *V, size_t T,
                                                               const float *U, size_t u_block, int CB,
                                                               float *M) {
    __m256 acc[2][6];
#pragma GCC unroll 2
    for (int b = 0; b < NB; b++)
#pragma GCC unroll 6
        for (int p = 0; p < RT; p++) acc[b][p] = _mm256_setzero_ps();
    for (int cb = 0; cb < CB; cb++) {
        const float *v = V + (size_t)cb * T * 8, *u = U + (size_t)cb * 64;
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            const __m256 w0 = _mm256_loadu_ps(u + i * 8);
            const __m256 w1 = NB > 1 ? _mm256_loadu_ps(u + u_block + i * 8) : w0;
#pragma GCC unroll 6
            for (int p = 0; p < RT; p++) {
                const __m256 x = _mm256_broadcast_ss(v + p * 8 + i);
                acc[0][p] = _mm256_fmadd_ps(w0, x, acc[0][p]);
                if (NB > 1) acc[1][p] = _mm256_fmadd_ps(w1, x, acc[1][p]);
            }
        }
    }
#pragma GCC unroll 2
    for (int b = 0; b < NB; b++)
#pragma GCC unroll 6
        for (int p = 0; p < RT; p++) _mm256_storeu_ps(M + b * T * 8 + (size_t)p * 8, acc[b][p]);
}

static void product_tile_any(int RT, int NB, const float *V, size_t T, const float *U, size_t u_block, int CB,
                             float *M) {
#define PT(rt, nb) product_tile(rt, nb, V, T, U, u_block, CB, M)
    if (NB == 2) {
        switch (RT) {
        case 6: PT(6, 2); break;
        case 5: PT(5, 2); break;
        case 4: PT(4, 2); break;
        case 3: PT(3, 2); break;
        case 2: PT(2, 2); break;
        default: PT(1, 2); break;
        }
    } else {
        switch (RT) {
        case 6: PT(6, 1); break;
        case 5: PT(5, 1); break;
        case 4: PT(4, 1); break;
        case 3: PT(3, 1); break;
        case 2: PT(2, 1); break;
        default: PT(1, 1); break;
        }
    }
#undef PT
}

void wino_products_avx2(const float *V, const float *U, int CB, int OCB, size_t T, float *M) {
    const size_t u_block = (size_t)CB * 64;
    for (int ob = 0; ob < OCB; ob += 2) {
        const int nb = OCB - ob < 2 ? 1 : 2;
        for (size_t t = 0; t < T; t += 6) {
            const int rt = T - t < 6 ? (int)(T - t) : 6;
            product_tile_any(rt, nb, V + t * 8, T, U + (size_t)ob * u_block, u_block, CB,
                             M + (size_t)ob * T * 8 + t * 8);
        }
    }
}

// ---------------------------------------------------------------- weight gradient
// z = A y for one column (or row) of an output-gradient tile (A = (A^T)^T):
// 4 -> 6 and 2 -> 4.
static inline __attribute__((always_inline)) void a4(const v8 *y, v8 *z) {
    const v8 e = add(y[0], y[2]), o = add(y[1], y[3]);                    // even and odd terms
    const v8 e4 = fma_(y[2], 4.0f, y[0]), o8 = fma_(y[3], 8.0f, _mm256_mul_ps(y[1], _mm256_set1_ps(2.0f)));
    z[0] = y[0];
    z[1] = add(e, o);
    z[2] = sub(e, o);
    z[3] = add(e4, o8);
    z[4] = sub(e4, o8);
    z[5] = y[3];
}

static inline __attribute__((always_inline)) void a2(const v8 *y, v8 *z) {
    z[0] = y[0];
    z[1] = add(y[0], y[1]);
    z[2] = sub(y[0], y[1]);
    z[3] = sub(_mm256_setzero_ps(), y[1]);
}

// dM of one tile of one block: A dY A^T of its m x m output gradients
// (zeros past the plane's rows x cols).
static inline __attribute__((always_inline)) void dy_tile(int a, int m, const float *src, size_t row, int rows,
                                                          int cols, float *dst, size_t m_pos) {
    v8 y[WA][WA], t[WA][WA];
    for (int r = 0; r < m; r++)
        for (int c = 0; c < m; c++)
            y[r][c] = r < rows && c < cols ? _mm256_loadu_ps(src + r * row + (size_t)c * 8) : _mm256_setzero_ps();
    for (int c = 0; c < m; c++) {  // columns: t[.][c] = A y[.][c]
        v8 z[WA], o[WA];
        for (int r = 0; r < m; r++) z[r] = y[r][c];
        if (a == 6) a4(z, o);
        else a2(z, o);
        for (int r = 0; r < a; r++) t[r][c] = o[r];
    }
    for (int r = 0; r < a; r++) {  // rows: dM[r][.] = t[r][.] A^T
        v8 o[WA];
        if (a == 6) a4(t[r], o);
        else a2(t[r], o);
        for (int c = 0; c < a; c++) _mm256_storeu_ps(dst + (size_t)(r * a + c) * m_pos, o[c]);
    }
}

void wino_dy_avx2(const WinoTransform *f, const float *dy, int OCB, int OH, int OW, size_t row, size_t plane,
                  size_t image, int n, int TH, int TW, float *dM) {
    const int m = f->m, a = f->a;
    const size_t T = (size_t)n * TH * TW, m_pos = wino_pos_floats(OCB, T);
    for (int j = 0; j < n; j++)
        for (int ob = 0; ob < OCB; ob++) {
            const float *src_plane = dy + j * image + ob * plane;
            float *mb = dM + (size_t)ob * T * 8;
            for (int ty = 0; ty < TH; ty++)
                for (int tx = 0; tx < TW; tx++) {
                    const size_t t = ((size_t)j * TH + ty) * TW + tx;
                    const int r0 = ty * m, c0 = tx * m;
                    const int rows = OH - r0 < m ? OH - r0 : m, cols = OW - c0 < m ? OW - c0 : m;
                    const float *src = src_plane + r0 * row + (size_t)c0 * 8;
                    if (a == 6) dy_tile(6, 4, src, row, rows, cols, mb + t * 8, m_pos);
                    else dy_tile(4, 2, src, row, rows, cols, mb + t * 8, m_pos);
                }
        }
}

// One position's products for 4 input x 16 output channels, summed over the
// tiles in order in 8 accumulators: per tile 2 loads of dM and 4 broadcasts
// of V for 8 FMAs.
static inline __attribute__((always_inline)) void wgrad_products(int NB, const float *v, const float *d,
                                                                 size_t T, __m256 acc[2][4]) {
#pragma GCC unroll 2
    for (int b = 0; b < NB; b++)
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) acc[b][i] = _mm256_setzero_ps();
    for (size_t t = 0; t < T; t++) {
        const __m256 d0 = _mm256_loadu_ps(d + t * 8);
        const __m256 d1 = NB > 1 ? _mm256_loadu_ps(d + T * 8 + t * 8) : d0;
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const __m256 x = _mm256_broadcast_ss(v + t * 8 + i);
            acc[0][i] = _mm256_fmadd_ps(d0, x, acc[0][i]);
            if (NB > 1) acc[1][i] = _mm256_fmadd_ps(d1, x, acc[1][i]);
        }
    }
}

// dw[ob][cb][kh][kw][i][o] (accumulate ? += : =) sum over positions (a, b),
// in order, of G[a][kh] G[b][kw] dU[a][b], where dU[pos][ob][cb][i][o] = sum
// over tiles t (in order) of V[pos][cb][t][i] dM[pos][ob][t][o]: for NB
// output blocks from ob, input block cb and its channels i0 .. i0 + 3. The
// nine taps' sums wait in L1 while each position's products are taken.
static inline __attribute__((always_inline)) void wgrad_block(int NB, const WinoTransform *f, const float *V,
                                                              const float *dM, int CB, int OCB, int cb, int ob,
                                                              int i0, size_t T, int accumulate, float *dw) {
    const int a = f->a;
    const size_t v_pos = wino_pos_floats(CB, T), m_pos = wino_pos_floats(OCB, T);
    __m256 tap[9][2][4];
    for (int k = 0; k < 9; k++)
        for (int b = 0; b < NB; b++)
            for (int i = 0; i < 4; i++) tap[k][b][i] = _mm256_setzero_ps();
    for (int pa = 0; pa < a; pa++)
        for (int pb = 0; pb < a; pb++) {
            const int pos = pa * a + pb;
            __m256 acc[2][4];
            wgrad_products(NB, V + pos * v_pos + (size_t)cb * T * 8 + i0, dM + pos * m_pos + (size_t)ob * T * 8, T,
                           acc);
            for (int kh = 0; kh < 3; kh++) {
                const float ga = f->G[pa * 3 + kh];
                if (ga == 0.0f) continue;
                for (int kw = 0; kw < 3; kw++) {
                    const float c = ga * f->G[pb * 3 + kw];
                    if (c == 0.0f) continue;
                    const __m256 cv = _mm256_set1_ps(c);
#pragma GCC unroll 2
                    for (int b = 0; b < NB; b++)
#pragma GCC unroll 4
                        for (int i = 0; i < 4; i++) tap[kh * 3 + kw][b][i] = _mm256_fmadd_ps(acc[b][i], cv, tap[kh * 3 + kw][b][i]);
                }
            }
        }
    for (int b = 0; b < NB; b++)
        for (int k = 0; k < 9; k++)
            for (int i = 0; i < 4; i++) {
                float *dst = dw + ((((size_t)(ob + b) * CB + cb) * 9 + k) * 8 + i0 + i) * 8;
                _mm256_storeu_ps(dst, accumulate ? add(_mm256_loadu_ps(dst), tap[k][b][i]) : tap[k][b][i]);
            }
}

void wino_wgrad_avx2(const WinoTransform *f, const float *V, const float *dM, int CB, int OCB, size_t T,
                     int accumulate, float *dw) {
    for (int ob = 0; ob < OCB; ob += 2)
        for (int cb = 0; cb < CB; cb++)
            for (int i0 = 0; i0 < 8; i0 += 4) {
                if (OCB - ob >= 2) wgrad_block(2, f, V, dM, CB, OCB, cb, ob, i0, T, accumulate, dw);
                else wgrad_block(1, f, V, dM, CB, OCB, cb, ob, i0, T, accumulate, dw);
            }
}
