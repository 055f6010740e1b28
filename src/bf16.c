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

void cnn_precision_describe(CnnPrecision p, char *buf, size_t n) {
    const int has = (cpu_features() & CPU_AVX512_BF16) != 0;
    const Kernels *k = kernels();
    const int native = !strcmp(k->name, "avx512bf16");
    if (p == CNN_PRECISION_BF16 && k->bf16_own_sums)
        snprintf(buf, n, "precision bf16: products of bf16 values summed in fp32 by the %s kernels (%s; "
                 "--kernels avx512bf16 gives them)", k->name, k->bf16_own_sums);
    else if (p == CNN_PRECISION_BF16)
        snprintf(buf, n, "precision bf16: products of bf16 values summed in fp32 %s (VDPBF16PS's arithmetic to the bit%s)",
                 native ? "on VDPBF16PS" : k->bf16_gemm ? "with AVX2 FMAs" : "in portable C",
                 native ? "" : has ? "; slower than fp32: kernels without AVX512-BF16 chosen"
                                   : "; slower than fp32: this CPU has no AVX512-BF16");
    else if (has)
        snprintf(buf, n, "precision fp32 (this CPU has AVX512-BF16: --precision bf16 for mixed precision)");
    else
        snprintf(buf, n, "precision fp32");
}

void bf16_gemm(const Bf16Gemm *g) {
    const Kernels *k = kernels();
    if (k->bf16_gemm) k->bf16_gemm(g);
    else bf16_impl_gemm(g);
}

void bf16_bits_array(const float *src, uint16_t *dst, size_t n) {
    const Kernels *k = kernels();
    if (k->bf16_convert) k->bf16_convert(src, dst, n);
    else bf16_impl_convert(src, dst, n);
}

void bf16_round_array(const float *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_round(src[i]);
}
