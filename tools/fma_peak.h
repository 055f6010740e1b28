// FP32 FMA peak of one core: a loop of independent FMA chains, enough of
// them to cover the FMA latency on every x86-64 core of the last decade
// (4 cycles x 2 pipes), nothing else in the loop. Each function runs iters
// iterations and returns the floating-point operations done (2 per lane per
// FMA). Compiled in files of their own with -mavx2 -mfma or -mavx512f; call
// one only where the CPU has its instructions.
#ifndef CNNC_FMA_PEAK_H
#define CNNC_FMA_PEAK_H

double fma_burn_avx2(long iters);
double fma_burn_avx512(long iters);
// The same for VDPBF16PS (-mavx512bf16): 4 FLOPs per lane (2 products).
double dpbf16_burn_avx512(long iters);
// The same for AMX-BF16's TDPBF16PS (-mamx-bf16), where the OS allows tiles.
double amx_burn(long iters);

#endif
