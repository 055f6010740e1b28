// SplitMix64 (Steele, Lea, Flood 2014; the seeding generator of xoshiro).
// One 64-bit state, so deriving a stream per (seed, epoch, index) is a hash.
#include <math.h>

#include "cnnc.h"

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void cnn_rng_seed(CnnRng *r, uint64_t seed) { r->state = mix64(seed + 0x9e3779b97f4a7c15ULL); }

void cnn_rng_derive(CnnRng *r, uint64_t seed, uint64_t a, uint64_t b) {
    // Hash each component in turn so (a, b) and (b, a) give different streams.
    uint64_t h = mix64(seed ^ 0x243f6a8885a308d3ULL);
    h = mix64(h ^ (a + 0x13198a2e03707344ULL));
    h = mix64(h ^ (b + 0xa4093822299f31d0ULL));
    r->state = h;
}

uint64_t cnn_rng_u64(CnnRng *r) {
    r->state += 0x9e3779b97f4a7c15ULL;
    return mix64(r->state);
}

uint32_t cnn_rng_below(CnnRng *r, uint32_t n) {
    // Lemire's multiply-shift with rejection: unbiased, one multiply per draw.
    uint64_t m = (uint64_t)(uint32_t)(cnn_rng_u64(r) >> 32) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)(cnn_rng_u64(r) >> 32) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

float cnn_rng_uniform(CnnRng *r) { return (float)(cnn_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

double cnn_rng_normal(CnnRng *r) {
    // Box-Muller on (0,1] x [0,1): u1 never 0, so log is finite.
    double u1 = ((double)(cnn_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(cnn_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void cnn_rng_permutation(CnnRng *r, uint32_t *perm, size_t n) {
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        uint32_t j = cnn_rng_below(r, (uint32_t)i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
