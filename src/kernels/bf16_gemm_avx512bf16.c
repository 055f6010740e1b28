// bf16 mixed precision's product (Bf16Gemm, kernels.h) on VDPBF16PS:
// tiles of up to 12 rows by 32 lanes (24 accumulators in registers), the
// row operand broadcast from memory, the lane operand two loads a pair.
// The instruction's arithmetic is bf16_impl.h's to the bit (tests/test_bf16.c
// compares the two), so the tile shape changes no result.
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"

#define MR 12

static inline __m512bh pair_at(const uint16_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return (__m512bh)_mm512_set1_epi32(v);
}

// Rows [0, mr) of one tile; two vectors of 16 lanes (nz = 2) or one.
static inline __attribute__((always_inline)) void tile(const Bf16Gemm *g, const int mr, const int nz, int i0,
                                                       int j0, const uint32_t *b, __mmask16 m0, __mmask16 m1,
                                                       const int rows) {
    // Rows at offsets a_rows (one pointer each) or a_row apart (one base).
    const uint16_t *ap[MR];
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) ap[i] = g->a + (g->a_rows ? g->a_rows[i0 + i] : 0);
    __m512 c0[MR], c1[MR];
    float *c = g->c + (size_t)i0 * g->ldc + j0;
    if (g->init) {
        const __m512 v0 = _mm512_maskz_loadu_ps(m0, g->init + j0), v1 = _mm512_maskz_loadu_ps(m1, g->init + j0 + 16);
#pragma GCC unroll 12
        for (int i = 0; i < mr; i++) c0[i] = v0, c1[i] = v1;
    } else {
#pragma GCC unroll 12
        for (int i = 0; i < mr; i++) {
            c0[i] = _mm512_maskz_loadu_ps(m0, c + (size_t)i * g->ldc);
            if (nz == 2) c1[i] = _mm512_maskz_loadu_ps(m1, c + (size_t)i * g->ldc + 16);
        }
    }
    const uint16_t *a = g->a + (ptrdiff_t)i0 * g->a_row;
    const ptrdiff_t row = g->a_row, step = g->a_step;
    for (int r = 0; r < g->kr; r++) {
        ptrdiff_t off = g->a_outer[r];
        for (int s = 0; s < g->ks; s++, off += step, b += 32) {
            const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
            const __m512bh b1 = nz == 2 ? (__m512bh)_mm512_loadu_si512(b + 16) : b0;
#pragma GCC unroll 12
            for (int i = 0; i < mr; i++) {
                const __m512bh av = pair_at(rows ? ap[i] + off : a + off + (ptrdiff_t)i * row);
                c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
                if (nz == 2) c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
            }
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        _mm512_mask_storeu_ps(c + (size_t)i * g->ldc, m0, c0[i]);
        if (nz == 2) _mm512_mask_storeu_ps(c + (size_t)i * g->ldc + 16, m1, c1[i]);
    }
}

#define TILE_CASES(NZ, ROWS)                                                                \
    switch (mr) {                                                                     \
    case 12: tile(g, 12, NZ, i0, j0, b, m0, m1, ROWS); break;                               \
    case 11: tile(g, 11, NZ, i0, j0, b, m0, m1, ROWS); break;                               \
    case 10: tile(g, 10, NZ, i0, j0, b, m0, m1, ROWS); break;                               \
    case 9: tile(g, 9, NZ, i0, j0, b, m0, m1, ROWS); break;                                 \
    case 8: tile(g, 8, NZ, i0, j0, b, m0, m1, ROWS); break;                                 \
    case 7: tile(g, 7, NZ, i0, j0, b, m0, m1, ROWS); break;                                 \
    case 6: tile(g, 6, NZ, i0, j0, b, m0, m1, ROWS); break;                                 \
    case 5: tile(g, 5, NZ, i0, j0, b, m0, m1, ROWS); break;                                 \
    case 4: tile(g, 4, NZ, i0, j0, b, m0, m1, ROWS); break;                                 \
    case 3: tile(g, 3, NZ, i0, j0, b, m0, m1, ROWS); break;                                 \
    case 2: tile(g, 2, NZ, i0, j0, b, m0, m1, ROWS); break;                                 \
    default: tile(g, 1, NZ, i0, j0, b, m0, m1, ROWS); break;                                \
    }

void bf16_gemm_avx512bf16(const Bf16Gemm *g) {
    const size_t kp = (size_t)g->kr * g->ks;
    for (int j0 = 0; j0 < g->n; j0 += 32) {
        const int nv = g->n - j0 < 32 ? g->n - j0 : 32;
        const __mmask16 m0 = nv >= 16 ? 0xffff : (__mmask16)((1u << nv) - 1);
        const __mmask16 m1 = nv >= 32 ? 0xffff : nv > 16 ? (__mmask16)((1u << (nv - 16)) - 1) : 0;
        const uint32_t *b = g->b + (size_t)(j0 / 32) * kp * 32;
        for (int i0 = 0; i0 < g->m; i0 += MR) {
            const int mr = g->m - i0 < MR ? g->m - i0 : MR;
            if (g->a_rows && nv > 16) {
                TILE_CASES(2, 1)
            } else if (g->a_rows) {
                TILE_CASES(1, 1)
            } else if (nv > 16) {
                TILE_CASES(2, 0)
            } else {
                TILE_CASES(1, 0)
            }
        }
    }
}

// VCVTNEPS2BF16, sixteen floats an instruction: bf16_bits to the bit (checked
// on every float on a Zen 4).
void bf16_convert_avx512bf16(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i)));
    }
}
