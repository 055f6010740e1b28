// The kernel backends compiled in, best first, and the choice among them:
// made once, from CNNC_KERNELS or else the CPU's features, and changed only
// by cnn_kernels_select (between training steps, never during one).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static int always(void) { return 1; }

// The AVX2 backend's fp32 kernels, shared by the backends built on it.
#define AVX2_FP32_KERNELS                                    \
    .gemm_small_k = gemm_small_k_avx2,                       \
    .gemm_small_k_nt = gemm_small_k_nt_avx2,                 \
    .conv_small_c_fwd = conv_small_c_fwd_avx2,               \
    .conv_small_c_fwd_pool2 = conv_small_c_fwd_pool2_avx2,   \
    .conv_small_c_wgrad = conv_small_c_wgrad_avx2,           \
    .conv_fwd_blocked = conv_fwd_blocked_avx2,               \
    .conv_wgrad_blocked = conv_wgrad_blocked_avx2,           \
    .block_pad = block_pad_avx2,                             \
    .unblock = unblock_avx2,                                 \
    .wino_input = wino_input_avx2,                           \
    .wino_output = wino_output_avx2,                         \
    .wino_products = wino_products_avx2,                     \
    .wino_filters = wino_filters_avx2,                       \
    .wino_dy = wino_dy_avx2,                                 \
    .wino_wgrad = wino_wgrad_avx2,                           \
    .dense_fwd = dense_forward_avx2,                         \
    .dense_dx = dense_input_grad_avx2,                       \
    .dense_wgrad_tree = dense_wgrad_tree_avx2

#if CNN_BF16_KERNELS
static int has_avx512_bf16(void) {
    const unsigned need = CPU_AVX2 | CPU_FMA | CPU_AVX512 | CPU_AVX512_BF16;
    return (cpu_features() & need) == need;
}
#endif

#if CNN_AMX_KERNELS
static int has_amx_bf16(void) { return has_avx512_bf16() && (cpu_features() & CPU_AMX_BF16); }
#endif

static const Kernels backends[] = {
#if CNN_AMX_KERNELS
    {.name = "amx",
     .summary = "the avx2 kernels for fp32; bf16 products on AMX-BF16 tiles (TDPBF16PS), 32 x 32 blocks",
     .cpu_supports = has_amx_bf16,
     AVX2_FP32_KERNELS,
     .bf16_gemm = bf16_gemm_amx,
     .bf16_own_sums = "AMX adds each pair of products exactly and rounds once, the pairs of a tile in "
                      "the hardware's order: not VDPBF16PS's bits",
     .bf16_convert = bf16_convert_avx512bf16},
#endif
#if CNN_BF16_KERNELS
    // fp32 stays on AVX2: Zen 4 runs AVX-512 FMAs at the AVX2 rate
    {.name = "avx512bf16",
     .summary = "the avx2 kernels for fp32; bf16 products on AVX512-BF16's VDPBF16PS, 12 x 32 tiles",
     .cpu_supports = has_avx512_bf16,
     AVX2_FP32_KERNELS,
     .bf16_gemm = bf16_gemm_avx512bf16,
     .bf16_convert = bf16_convert_avx512bf16},
#endif
#if CNN_X86_KERNELS
    {.name = "avx2",
     .summary = "AVX2+FMA: direct convolution on 8-channel blocks where channels are (or round up to) multiples of 8, "
                "small-K GEMMs for first convolutions, im2col + OpenBLAS for the rest",
     .cpu_supports = cpu_has_avx2_fma,
     AVX2_FP32_KERNELS,
     .bf16_gemm = bf16_gemm_avx2,
     .bf16_convert = bf16_convert_avx2},
#endif
    {.name = "reference",
     .summary = "im2col + OpenBLAS for every convolution, portable C",
     .cpu_supports = always},
};
#define NBACKENDS ((int)(sizeof backends / sizeof backends[0]))

static const Kernels *active;
static const char *how;  // why `active` was chosen, for the banner
static pthread_once_t once = PTHREAD_ONCE_INIT;

static const Kernels *best(void) {
    for (int i = 0; i < NBACKENDS; i++)
        if (backends[i].cpu_supports()) return &backends[i];
    return &backends[NBACKENDS - 1];
}

static int is_auto(const char *name) { return !name || !*name || !strcasecmp(name, "auto"); }

static CnnStatus find(const char *name, const Kernels **out) {
    if (is_auto(name)) {
        *out = best();
        return CNN_OK;
    }
    char known[256] = "auto";
    for (int i = 0; i < NBACKENDS; i++) {
        if (!strcasecmp(name, backends[i].name)) {
            if (!backends[i].cpu_supports())
                return cnn_error(CNN_EARG, "kernels '%s' need CPU features this CPU lacks (it runs: %s)",
                                 backends[i].name, best()->name);
            *out = &backends[i];
            return CNN_OK;
        }
        strncat(known, ", ", sizeof known - strlen(known) - 1);
        strncat(known, backends[i].name, sizeof known - strlen(known) - 1);
    }
    return cnn_error(CNN_EARG, "unknown kernels '%s' (expected %s)", name, known);
}

// Makes `name` the active backend; `source` says who asked, for the banner.
static CnnStatus use(const char *name, const char *source) {
    const Kernels *k;
    CnnStatus st = find(name, &k);
    if (st != CNN_OK) return st;
    active = k;
    how = is_auto(name) ? "the best this CPU runs" : source;
    return CNN_OK;
}

CnnStatus cnn_kernels_from_env(void) { return use(getenv("CNNC_KERNELS"), "set by CNNC_KERNELS"); }

static void select_from_env(void) {
    if (active) return;  // cnn_kernels_select came first
    if (cnn_kernels_from_env() != CNN_OK) {
        fprintf(stderr, "cnnc: CNNC_KERNELS ignored; using '%s'\n", best()->name);
        active = best();
        how = "the best this CPU runs";
    }
}

const Kernels *kernels(void) {
    pthread_once(&once, select_from_env);
    return active;
}

CnnStatus cnn_kernels_select(const char *name) { return use(name, "forced"); }

const char *cnn_kernels_name(void) { return kernels()->name; }

int cnn_kernels_count(void) { return NBACKENDS; }

const char *cnn_kernels_list(int i, int *supported) {
    if (i < 0 || i >= NBACKENDS) return NULL;
    if (supported) *supported = backends[i].cpu_supports();
    return backends[i].name;
}

static const char *algo_text(void);

void cnn_kernels_describe(char *buf, size_t n) {
    const Kernels *k = kernels();
    snprintf(buf, n, "kernels %s (%s; %s); 3x3 convolutions: %s", k->name, k->summary, how, algo_text());
}

// ---------------------------------------------------------------- convolution algorithm
static const char *const ALGO_NAMES[] = {"auto", "direct", "winograd"};
static int algo = -1;  // -1: not chosen yet (CNNC_CONV, else auto)

static CnnStatus algo_find(const char *name, int *out) {
    if (!name || !*name) name = "auto";
    for (int i = 0; i < 3; i++)
        if (!strcasecmp(name, ALGO_NAMES[i])) {
            *out = i;
            return CNN_OK;
        }
    return cnn_error(CNN_EARG, "unknown convolution algorithm '%s' (expected auto, direct or winograd)", name);
}

CnnStatus cnn_conv_select(const char *name) {
    int a = CONV_AUTO;
    CnnStatus st = algo_find(name, &a);
    if (!st) algo = a;
    return st;
}

CnnStatus cnn_conv_from_env(void) { return cnn_conv_select(getenv("CNNC_CONV")); }

ConvAlgo conv_algo(void) {
    if (algo < 0 && cnn_conv_from_env()) {
        fprintf(stderr, "cnnc: CNNC_CONV ignored; using 'auto'\n");
        algo = CONV_AUTO;
    }
    return (ConvAlgo)algo;
}

const char *cnn_conv_name(void) { return ALGO_NAMES[conv_algo()]; }

static const char *algo_text(void) {
    if (!kernels()->wino_input) return "direct (no Winograd in these kernels)";
    switch (conv_algo()) {
    case CONV_DIRECT: return "direct";
    case CONV_WINOGRAD: return "winograd F(4x4, 3x3)";
    default: return "auto (Winograd where measured faster)";
    }
}
