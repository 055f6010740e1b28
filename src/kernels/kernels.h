// The seam between layers and the code that runs their hot loops. A backend
// is one table of function pointers, chosen once (from the CPU's features,
// CNNC_KERNELS or cnn_kernels_select) and read by the layers through
// kernels(). Each instruction set's kernels live in their own files, compiled
// with their own flags (kernel_isa_flags in meson.build), and are reached only
// through a table whose CPU check passed: no layer code names an instruction
// set, and the library runs on any CPU.
//
// A NULL entry means "the backend has nothing special here": the layer takes
// its portable path (im2col + OpenBLAS), which is the whole "reference"
// backend.
#ifndef CNNC_KERNELS_H
#define CNNC_KERNELS_H

#include <stddef.h>

typedef struct {
    const char *name;     // as in CNNC_KERNELS and --kernels
    const char *summary;  // one line for start-up banners
    int (*cpu_supports)(void);
    // Products with a small inner dimension K <= CNN_SMALL_K_MAX (first
    // convolutions). C (M,N) = bias (per row; none if NULL) + A (M,K) B (K,N).
    void (*gemm_small_k)(int M, int N, int K, const float *A, const float *B, const float *bias,
                         float *C);
    // C (M,K) = beta C + A (M,N) B (K,N)^T, for the weight gradient.
    void (*gemm_small_k_nt)(int M, int K, int N, const float *A, const float *B, float beta,
                            float *C);
} Kernels;

// The backend in use; the first call selects one (CNNC_KERNELS or the best
// for this CPU). Never NULL.
const Kernels *kernels(void);

// CPU features (0 on other architectures). Also checks that the OS saves
// the wider registers.
int cpu_has_avx2_fma(void);
int cpu_has_avx512(void);  // F, BW, DQ and VL: what AVX-512 kernels assume

// ---------------------------------------------------------------- x86-64 AVX2 + FMA
void gemm_small_k_avx2(int M, int N, int K, const float *A, const float *B, const float *bias,
                       float *C);
void gemm_small_k_nt_avx2(int M, int K, int N, const float *A, const float *B, float beta,
                          float *C);

// ---------------------------------------------------------------- OpenBLAS
// When OPENBLAS_CORETYPE is unset and OpenBLAS runs a generic core on a CPU
// with AVX2 or AVX-512, switches it to the core those features call for.
// Writes one line saying what was done (empty if nothing) into note.
void blas_core_choose(char *note, size_t n);
// 1 if a core should be chosen but OpenBLAS cannot switch in-process: the
// program must re-execute with OPENBLAS_CORETYPE=*core and the variable
// named by blas_core_reported_env() set to the detected core.
int blas_core_needs_reexec(const char **core);
const char *blas_core_reported_env(void);
// The core name blas_core_choose would pick for a reported core and the
// CPU's features, or NULL to leave OpenBLAS alone (pure: tested alone).
const char *blas_core_for(const char *reported, int has_avx2_fma, int has_avx512);

#endif  // CNNC_KERNELS_H
