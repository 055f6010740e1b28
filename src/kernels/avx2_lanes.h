// Helpers shared by the AVX2 kernels (include only from files compiled with -mavx2).
#ifndef CNNC_AVX2_LANES_H
#define CNNC_AVX2_LANES_H

#include <immintrin.h>

// The 8 lanes of v, summed in a fixed order: (0+4, 1+5, 2+6, 3+7), then pairs.
static inline float lane_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

#endif  // CNNC_AVX2_LANES_H
