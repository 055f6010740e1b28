// tools/bench_kernels: the blocked direct-convolution kernels alone, on one
// 3x3, stride-1, pad-1 layer of C -> C channels on HxH planes: forward and
// weight gradient on one image again and again (warm caches) and over 64
// distinct images, best of --reps, with the FP32 FMA peak of one core
// measured in the same run. With --threads T, T OpenMP threads each run the
// same on their own images at once (the total against T cores' peak): what
// the kernels lose to running side by side, apart from any layer around
// them. Used for the kernel figures in tools/PERF.md.
//
// --small-c C,OC,H times a first layer's pieces on one core instead: the
// small-channel kernels (C -> OC channels, 3x3, on an HxH image), with the
// 2x2 max pool and ReLU after it apart and fused into the kernel, and the
// pool's backward expansion, in us an image (best of R rounds of 100 calls).
//
//   bench_kernels [--kernels NAME] [--reps R] [--threads T] [--small-c C,OC,H] [C H ...]   e.g. 64 32 128 16 256 8
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "cnnc.h"
#include "fma_peak.h"
#include "internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

typedef struct {
    const Kernels *k;
    BlockedConv g;
    float *x, *y, *w;
    size_t nx, ny, nw;
} Case;

// Best seconds of `reps` runs of 64 calls of the forward (wgrad 0) or weight
// gradient (wgrad 1) kernel, on one image again and again or on 64 images;
// each of `threads` threads does the same on its own copy at once.
static double best_time(const Case *c, int wgrad, int distinct, int reps, int threads) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
#pragma omp parallel num_threads(threads)
        {
            const int tid = omp_get_thread_num();
            float *w = c->w + (size_t)tid * c->nw;
            for (int i = 0; i < 64; i++) {
                const float *x = c->x + c->nx * (distinct ? (size_t)tid * 64 + i : (size_t)tid * 64);
                float *y = c->y + c->ny * (distinct ? (size_t)tid * 64 + i : (size_t)tid * 64);
                const size_t row = (size_t)c->g.OW * 8, block = (size_t)c->g.OH * row;
                if (wgrad) c->k->conv_wgrad_blocked(&c->g, x, y, row, block, i > 0, w);
                else c->k->conv_fwd_blocked(&c->g, x, w, NULL, y);
            }
        }
        const double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

// Seconds of one call of f(ctx), the best of reps rounds of 100 calls.
static double per_call(void (*f)(void *), void *ctx, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        for (int i = 0; i < 100; i++) f(ctx);
        const double t = (now() - t0) / 100;
        if (t < best) best = t;
    }
    return best;
}

typedef struct {
    const Kernels *k;
    int C, OC, OH, OW;
    Pool2d pool;
    float *xp, *w, *b, *y, *dy, *py, *pdy, *dw;
    int32_t *am;
} SmallC;

static void sc_fwd(void *p) {
    SmallC *s = p;
    s->k->conv_small_c_fwd(s->xp, s->C, 3, 3, s->w, s->b, s->OC, s->OH, s->OW, s->y);
}
static void sc_fwd_pool(void *p) {  // the layers apart: convolution, then pool, then ReLU on the pooled values
    SmallC *s = p;
    sc_fwd(p);
    maxpool_forward_image(&s->pool, s->y, s->py, s->am);
    relu_in_place(s->py, (size_t)s->OC * s->pool.OH * s->pool.OW);
}
static void sc_fwd_pool2(void *p) {
    SmallC *s = p;
    s->k->conv_small_c_fwd_pool2(s->xp, s->C, 3, 3, s->w, s->b, s->OC, s->OH, s->OW, 1, s->py, s->am);
}
static void sc_wgrad(void *p) {
    SmallC *s = p;
    s->k->conv_small_c_wgrad(s->xp, s->C, 3, 3, s->dy, s->OC, s->OH, s->OW, s->dw);
}
static void sc_pool_grad(void *p) {
    SmallC *s = p;
    maxpool_backward_image(&s->pool, s->py, s->pdy, s->am, s->dy);
}

static int small_c(const Kernels *k, const char *spec, int reps, double peak) {
    int C, OC, H;
    if (sscanf(spec, "%d,%d,%d", &C, &OC, &H) != 3 || C < 1 || C * 9 > CNN_SMALL_C_TAPS_MAX || OC < 1 || OC > 4096 ||
        H < 4 || H > 4096) {
        fprintf(stderr, "bench_kernels: --small-c wants C,OC,H with C * 9 <= %d and H >= 4, e.g. 3,32,32\n",
                CNN_SMALL_C_TAPS_MAX);
        return 2;
    }
    if (!k->conv_small_c_fwd || !k->conv_small_c_wgrad) {
        fprintf(stderr, "bench_kernels: kernels '%s' have no small-channel convolution\n", k->name);
        return 2;
    }
    SmallC s = {.k = k, .C = C, .OC = OC, .OH = H - 2, .OW = H - 2};
    s.pool = (Pool2d){.C = OC, .H = s.OH, .W = s.OW, .K = 2, .S = 2, .OH = s.OH / 2, .OW = s.OW / 2, .relu_grad = 1};
    const size_t nxp = (size_t)C * H * (((s.OW + 15) & ~15) + 2) + 64, ny = (size_t)OC * s.OH * s.OW + 64;
    const size_t np = (size_t)OC * s.pool.OH * s.pool.OW;
    s.xp = cnn_alloc_floats(nxp), s.w = cnn_alloc_floats((size_t)OC * C * 9), s.b = cnn_alloc_floats(OC);
    s.y = cnn_alloc_floats(ny), s.dy = cnn_alloc_floats(ny), s.dw = cnn_alloc_floats((size_t)OC * C * 9);
    s.py = cnn_alloc_floats(np), s.pdy = cnn_alloc_floats(np), s.am = malloc(np * sizeof *s.am);
    if (!s.xp || !s.w || !s.b || !s.y || !s.dy || !s.dw || !s.py || !s.pdy || !s.am) return 1;
    for (size_t i = 0; i < nxp; i++) s.xp[i] = (float)((i * 7919) % 17) * 0.1f - 0.8f;
    for (int i = 0; i < OC * C * 9; i++) s.w[i] = (float)(i % 5) * 0.1f - 0.2f, s.dw[i] = 0.0f;
    for (int i = 0; i < OC; i++) s.b[i] = 0.01f * (float)i;
    for (size_t i = 0; i < ny; i++) s.dy[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < np; i++) s.pdy[i] = (float)(i % 3) * 0.1f;
    sc_fwd_pool(&s);  // valid argmax and pooled outputs for the backward
    const double flops = 2.0 * OC * C * 9 * s.OH * s.OW;
    const double fwd = per_call(sc_fwd, &s, reps), apart = per_call(sc_fwd_pool, &s, reps);
    const double fused = k->conv_small_c_fwd_pool2 ? per_call(sc_fwd_pool2, &s, reps) : 0.0;
    const double wgrad = per_call(sc_wgrad, &s, reps), pgrad = per_call(sc_pool_grad, &s, reps);
    printf("small-channel kernels, %d -> %d channels, 3x3 on %dx%d, 1 thread, us an image (best of %d x 100 calls):\n",
           C, OC, H, H, reps);
    printf("  forward                        %7.2f us  %5.1f GFLOP/s (%3.0f%% of the peak)\n", fwd * 1e6, flops / fwd / 1e9,
           100 * flops / fwd / 1e9 / peak);
    printf("  forward, 2x2 pool, ReLU apart  %7.2f us\n", apart * 1e6);
    if (fused > 0) printf("  forward with the pool fused    %7.2f us\n", fused * 1e6);
    printf("  weight gradient                %7.2f us  %5.1f GFLOP/s (%3.0f%% of the peak)\n", wgrad * 1e6,
           flops / wgrad / 1e9, 100 * flops / wgrad / 1e9 / peak);
    printf("  pool backward (expansion)      %7.2f us\n", pgrad * 1e6);
    cnn_free(s.xp); cnn_free(s.w); cnn_free(s.b); cnn_free(s.y); cnn_free(s.dy); cnn_free(s.dw);
    cnn_free(s.py); cnn_free(s.pdy); free(s.am);
    return 0;
}

int main(int argc, char **argv) {
    const char *kname = NULL, *small = NULL;
    int reps = 10, threads = 1, a = 1;
    for (; a + 1 < argc && argv[a][0] == '-'; a += 2) {
        if (!strcmp(argv[a], "--kernels")) kname = argv[a + 1];
        else if (!strcmp(argv[a], "--reps")) reps = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--threads")) threads = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--small-c")) small = argv[a + 1];
        else break;
    }
    if ((a >= argc && !small) || (argc - a) % 2 || reps < 1 || threads < 1 || threads > 256) {
        fprintf(stderr, "usage: bench_kernels [--kernels NAME] [--reps R] [--threads T] [--small-c C,OC,H] "
                        "[C H ...]\n");
        return 2;
    }
    if (kname ? cnn_kernels_select(kname) : cnn_kernels_from_env()) return 2;
    const Kernels *k = kernels();
    if (a < argc && (!k->conv_fwd_blocked || !k->conv_wgrad_blocked)) {
        fprintf(stderr, "bench_kernels: kernels '%s' have no blocked convolution\n", k->name);
        return 2;
    }
    double peak = 0.0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        const long iters = (long)(5e9 / fma_burn_avx2(1));
        for (int r = 0; r < 5; r++) {
            double t0 = now(), f = fma_burn_avx2(iters), g = f / (now() - t0) / 1e9;
            if (g > peak) peak = g;
        }
    }
#endif
    printf("kernels %s, %d thread%s, AVX2 FMA peak of one core %.1f GFLOP/s (best of 5), best of %d reps;\n"
           "%% of %d x that peak\n", k->name, threads, threads == 1 ? "" : "s", peak, reps, threads);
    if (small) {
        const int rc = small_c(k, small, reps, peak);
        if (rc || a >= argc) return rc;
    }
    peak *= threads;
    printf("%5s %4s  %24s  %24s\n", "C", "H", "forward GFLOP/s (% peak)", "weight grad GFLOP/s (% peak)");
    for (; a + 1 < argc; a += 2) {
        const int C = atoi(argv[a]), H = atoi(argv[a + 1]), N = 64;
        if (C < 8 || C % 8 || H < 1) {
            fprintf(stderr, "bench_kernels: C must be a multiple of 8 and H >= 1\n");
            return 2;
        }
        Case c = {.k = k, .g = {.CB = C / 8, .OCB = C / 8, .KH = 3, .KW = 3, .S = 1, .Hp = H + 2, .Wp = H + 2,
                                .OH = H, .OW = H}};
        c.nx = (size_t)C * (H + 2) * (H + 2);
        c.ny = (size_t)C * H * H;
        const size_t nw = (size_t)C * C * 9, T = (size_t)threads;
        c.nw = nw;
        c.x = cnn_alloc_floats(c.nx * N * T);
        c.y = cnn_alloc_floats(c.ny * N * T);
        c.w = cnn_alloc_floats(nw * T);
        if (!c.x || !c.y || !c.w) return 1;
        for (size_t i = 0; i < c.nx * N * T; i++) c.x[i] = (float)(i % 7) * 0.1f;
        for (size_t i = 0; i < nw * T; i++) c.w[i] = (float)(i % 5) * 0.01f;
        const double f = 2.0 * nw * H * H * N * threads / 1e9;
        const double fw1 = best_time(&c, 0, 0, reps, threads), fwn = best_time(&c, 0, 1, reps, threads);
        const double wg1 = best_time(&c, 1, 0, reps, threads), wgn = best_time(&c, 1, 1, reps, threads);
        printf("%5d %4d  one image %5.1f (%3.0f%%), 64 images %5.1f (%3.0f%%)  one image %5.1f (%3.0f%%), "
               "64 images %5.1f (%3.0f%%)\n", C, H, f / fw1, 100 * f / fw1 / peak, f / fwn, 100 * f / fwn / peak,
               f / wg1, 100 * f / wg1 / peak, f / wgn, 100 * f / wgn / peak);
        cnn_free(c.x); cnn_free(c.y); cnn_free(c.w);
    }
    return 0;
}
