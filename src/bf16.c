// bf16 mixed precision, portable: the arithmetic of the AVX512-BF16
// instructions in plain C, so that --precision bf16 runs on any CPU and
// gives the bits a VDPBF16PS kernel gives (Intel SDM, VCVTNEPS2BF16 and
// VDPBF16PS: round to nearest even, denormal inputs read as zero, denormal
// results flushed to zero, MXCSR neither read nor changed).
#include <float.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "kernels/bf16_impl.h"

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// VCVTNEPS2BF16: the nearest bf16 (ties to even), as a float.
float bf16_round(float f) {
    uint32_t u = bits_of(f);
    if ((u & 0x7f800000u) == 0) return float_of(u & 0x80000000u);                    // zero, denormal: signed zero
    if ((u & 0x7fffffffu) > 0x7f800000u) return float_of((u | 0x00400000u) & 0xffff0000u);  // NaN: quiet
    u += 0x7fffu + ((u >> 16) & 1u);  // carries into the exponent where it rounds up (to infinity at the top)
    return float_of(u & 0xffff0000u);
}

void cnn_precision_describe(CnnPrecision p, char *buf, size_t n) {
    const int has = (cpu_features() & CPU_AVX512_BF16) != 0;
    if (p == CNN_PRECISION_BF16)
        snprintf(buf, n, "precision bf16: products of bf16 values summed in fp32 %s "
                 "(VDPBF16PS's arithmetic to the bit; slower than fp32: no bf16 kernels)",
                 kernels()->bf16_pair_steps ? "with AVX2 FMAs" : "in portable C");
    else if (has)
        snprintf(buf, n, "precision fp32 (this CPU has AVX512-BF16: --precision bf16 for mixed precision)");
    else
        snprintf(buf, n, "precision fp32");
}

void bf16_pair_steps(float *restrict acc, const float *restrict a, const float *restrict b, size_t b_row, int m,
                     int n) {
    const Kernels *k = kernels();
    if (k->bf16_pair_steps) k->bf16_pair_steps(acc, a, b, b_row, m, n);
    else bf16_impl_pair_steps(acc, a, b, b_row, m, n);
}

void bf16_axpy_steps(float *restrict acc, const float *restrict d, float x, int n) {
    const Kernels *k = kernels();
    if (k->bf16_axpy_steps) k->bf16_axpy_steps(acc, d, x, n);
    else bf16_impl_axpy_steps(acc, d, x, n);
}

void bf16_round_array(const float *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_round(src[i]);
}
