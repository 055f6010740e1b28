// bf16 mixed precision's two loops (see src/bf16.c for the arithmetic),
// one definition included by the portable code (bf16.c) and by each
// instruction set's kernel file (bf16_avx2.c), which the compiler
// vectorises with that set. With FMA the step is fmaf (the product of two
// bf16 values is exact, and the fused add rounds once, as VDPBF16PS); without
// it, the exact double form of bf16_step. Both give the same bits.
#ifndef CNNC_BF16_IMPL_H
#define CNNC_BF16_IMPL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

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

// acc[k] (k < n) gains a[j] b[j b_row + k] over j < m in VDPBF16PS's pairs:
// (1, 0), (3, 2), ..., the odd one first; an odd m's last alone.
static inline void bf16_impl_pair_steps(float *restrict acc, const float *restrict a, const float *restrict b,
                                        size_t b_row, int m, int n) {
    int j = 0;
    for (; j + 1 < m; j += 2) {
        const float a1 = a[j + 1], a0 = a[j];
        const float *b1 = b + (size_t)(j + 1) * b_row, *b0 = b + (size_t)j * b_row;
        for (int k = 0; k < n; k++) acc[k] = bf16_impl_step(bf16_impl_step(acc[k], a1, b1[k]), a0, b0[k]);
    }
    if (j < m)
        for (int k = 0; k < n; k++) acc[k] = bf16_impl_step(acc[k], a[j], b[(size_t)j * b_row + k]);
}

// acc[k] = step(acc[k], d[k], x), k < n: one term of each of n sums.
static inline void bf16_impl_axpy_steps(float *restrict acc, const float *restrict d, float x, int n) {
    for (int k = 0; k < n; k++) acc[k] = bf16_impl_step(acc[k], d[k], x);
}

#endif  // CNNC_BF16_IMPL_H
