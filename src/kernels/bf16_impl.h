// bf16 mixed precision's product (Bf16Gemm, kernels.h) in plain C, one
// definition included by the portable code (bf16.c) and by the AVX2 kernel
// file (bf16_avx2.c), which the compiler vectorises over the lanes. With FMA
// the step is fmaf (the product of two bf16 values is exact, and the fused
// add rounds once, as VDPBF16PS); without it, the exact double form of
// bf16_step. Both give the instruction's bits.
#ifndef CNNC_BF16_IMPL_H
#define CNNC_BF16_IMPL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

static inline float bf16_impl_step(float acc, float a, float b) {
#ifdef __FMA__
    const float r = fmaf(a, b, acc);
#else
    const float r = (float)((double)acc + (double)a * (double)b);
#endif
    uint32_t u;
    memcpy(&u, &r, sizeof u);
    u &= (u & 0x7f800000u) ? 0xffffffffu : 0x80000000u;  // a denormal keeps its sign alone
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float bf16_impl_hi(uint32_t u) {
    float f;
    u &= 0xffff0000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float bf16_impl_lo(uint32_t u) { return bf16_impl_hi(u << 16); }

static inline void bf16_impl_convert(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_bits(src[i]);
}

static inline void bf16_impl_gemm(const Bf16Gemm *g) {
    const size_t kp = (size_t)g->kr * g->ks;
    for (int j0 = 0; j0 < g->n; j0 += BF16_LANES) {
        const int nv = g->n - j0 < BF16_LANES ? g->n - j0 : BF16_LANES;
        const uint32_t *panel = g->b + (size_t)(j0 / BF16_LANES) * kp * BF16_LANES;
        for (int i = 0; i < g->m; i++) {
            float acc[BF16_LANES], *c = g->c + (size_t)i * g->ldc + j0;
            for (int j = 0; j < BF16_LANES; j++) acc[j] = j < nv ? (g->init ? g->init[j0 + j] : c[j]) : 0.0f;
            const uint16_t *a = g->a + (g->a_rows ? g->a_rows[i] : (ptrdiff_t)i * g->a_row);
            const uint32_t *b = panel;
            for (int r = 0; r < g->kr; r++)
                for (int s = 0; s < g->ks; s++, b += BF16_LANES) {
                    uint32_t ap;
                    memcpy(&ap, a + g->a_outer[r] + (ptrdiff_t)s * g->a_step, sizeof ap);
                    const float a1 = bf16_impl_hi(ap), a0 = bf16_impl_lo(ap);
                    for (int j = 0; j < BF16_LANES; j++)
                        acc[j] = bf16_impl_step(bf16_impl_step(acc[j], a1, bf16_impl_hi(b[j])), a0, bf16_impl_lo(b[j]));
                }
            for (int j = 0; j < nv; j++) c[j] = acc[j];
        }
    }
}

#endif  // CNNC_BF16_IMPL_H
