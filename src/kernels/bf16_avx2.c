// bf16 mixed precision's loops (bf16_impl.h) compiled with AVX2 and FMA:
// eight steps an instruction, each an fmaf, where the portable build takes
// two in double. The same bits (tests/test_bf16.c runs both).
#include "kernels/bf16_impl.h"
#include "kernels/kernels.h"

void bf16_pair_steps_avx2(float *restrict acc, const float *restrict a, const float *restrict b, size_t b_row, int m,
                          int n) {
    bf16_impl_pair_steps(acc, a, b, b_row, m, n);
}

void bf16_axpy_steps_avx2(float *restrict acc, const float *restrict d, float x, int n) {
    bf16_impl_axpy_steps(acc, d, x, n);
}
