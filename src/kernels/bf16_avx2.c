// bf16 mixed precision's product and conversion (bf16_impl.h) compiled with AVX2 and FMA:
// eight steps an instruction, each an fmaf, where the portable build takes
// two in double. The same bits (tests/test_bf16.c runs both).
#include "kernels/bf16_impl.h"

void bf16_gemm_avx2(const Bf16Gemm *g) { bf16_impl_gemm(g); }

void bf16_convert_avx2(const float *src, uint16_t *dst, size_t n) { bf16_impl_convert(src, dst, n); }
