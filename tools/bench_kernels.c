// tools/bench_kernels: the blocked direct-convolution kernels alone, on one
// 3x3, stride-1, pad-1 layer of C -> C channels on HxH planes: forward and
// weight gradient on one image again and again (warm caches) and over 64
// distinct images, best of --reps, with the FP32 FMA peak of one core
// measured in the same run. With --threads T, T OpenMP threads each run the
// same on their own images at once (the total against T cores' peak): what
// the kernels lose to running side by side, apart from any layer around
// them. Used for the kernel figures in tools/PERF.md.
//
// --winograd C,OC,H,N times the steps of F(4x4, 3x3) on N images of C -> OC
// channels and HxH planes (a group of the layer's), 1 thread.
//
// --small-c C,OC,H times a first layer's pieces on one core instead: the
// small-channel kernels (C -> OC channels, 3x3, on an HxH image), with the
// 2x2 max pool and ReLU after it apart and fused into the kernel, and the
// pool's backward expansion, in us an image (best of R rounds of 100 calls).
//
//   bench_kernels [--kernels NAME] [--reps R] [--threads T] [--small-c C,OC,H] [--winograd C,OC,H,N]
//                 [C H ...]   e.g. 64 32 128 16 256 8
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

typedef struct {
    const Kernels *k;
    WinoTransform f;
    int CB, OCB, H, OH, n, TH, TW;
    size_t T, x_image, y_image;
    float *xb, *U, *V, *M, *yb;
} Wino;

static void wn_input(void *p) {
    Wino *s = p;
    s->k->wino_input(&s->f, s->xb, s->CB, s->H, s->H, s->x_image, s->n, s->TH, s->TW, s->V);
}
static void wn_products(void *p) {
    Wino *s = p;
    for (int pos = 0; pos < 36; pos++)
        s->k->wino_products(s->V + pos * wino_pos_floats(s->CB, s->T), s->U + (size_t)pos * s->OCB * s->CB * 64,
                            s->CB, s->OCB, s->T, s->M + pos * wino_pos_floats(s->OCB, s->T));
}
static void wn_output(void *p) {
    Wino *s = p;
    s->k->wino_output(&s->f, s->M, s->OCB, s->n, s->TH, s->TW, s->OH, s->OH, NULL, s->yb, s->y_image);
}

// --winograd C,OC,H,N: F(4x4, 3x3) on N images of C -> OC channels, HxH
// input planes without padding: each step of a group apart, 1 thread.
static int winograd(const Kernels *k, const char *spec, int reps, double peak) {
    int C, OC, H, N;
    if (sscanf(spec, "%d,%d,%d,%d", &C, &OC, &H, &N) != 4 || C < 8 || C % 8 || OC < 8 || OC % 8 || C > 1024 ||
        OC > 1024 || H < 3 || H > 256 || N < 1 || N > 64) {
        fprintf(stderr, "bench_kernels: --winograd wants C,OC,H,N with C and OC multiples of 8, e.g. 32,64,15,2\n");
        return 2;
    }
    if (!k->wino_input || !k->wino_products || !k->wino_output) {
        fprintf(stderr, "bench_kernels: kernels '%s' have no Winograd transforms\n", k->name);
        return 2;
    }
    Wino s = {.k = k, .f = {.m = 4, .a = 6}, .CB = C / 8, .OCB = OC / 8, .H = H, .OH = H - 2, .n = N};
    s.TH = s.TW = (s.OH + 3) / 4;
    s.T = (size_t)N * s.TH * s.TW;
    s.x_image = (size_t)C * H * H, s.y_image = (size_t)OC * s.OH * s.OH;
    const size_t nv = 36 * wino_pos_floats(s.CB, s.T), nm = 36 * wino_pos_floats(s.OCB, s.T), nu = (size_t)36 * C * OC;
    s.xb = cnn_alloc_floats(s.x_image * N), s.U = cnn_alloc_floats(nu), s.V = cnn_alloc_floats(nv);
    s.M = cnn_alloc_floats(nm), s.yb = cnn_alloc_floats(s.y_image * N);
    if (!s.xb || !s.U || !s.V || !s.M || !s.yb) return 1;
    for (size_t i = 0; i < s.x_image * N; i++) s.xb[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < nu; i++) s.U[i] = (float)(i % 5) * 0.01f;
    const double in = per_call(wn_input, &s, reps), prod = per_call(wn_products, &s, reps),
                 out = per_call(wn_output, &s, reps);
    const double flops = 2.0 * 36 * (double)s.T * C * OC;
    printf("Winograd F(4x4, 3x3), %d -> %d channels, %dx%d input (%zu tiles of %d images), 1 thread, us an image:\n",
           C, OC, H, H, s.T, N);
    printf("  input transform   %7.2f us\n", in * 1e6 / N);
    printf("  36 products       %7.2f us  %5.1f GFLOP/s (%3.0f%% of the peak)\n", prod * 1e6 / N, flops / prod / 1e9,
           100 * flops / prod / 1e9 / peak);
    printf("  output transform  %7.2f us\n", out * 1e6 / N);
    cnn_free(s.xb); cnn_free(s.U); cnn_free(s.V); cnn_free(s.M); cnn_free(s.yb);
    return 0;
}

int main(int argc, char **argv) {
    const char *kname = NULL, *small = NULL, *wino = NULL;
    int reps = 10, threads = 1, a = 1;
    for (; a + 1 < argc && argv[a][0] == '-'; a += 2) {
        if (!strcmp(argv[a], "--kernels")) kname = argv[a + 1];
        else if (!strcmp(argv[a], "--reps")) reps = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--threads")) threads = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--small-c")) small = argv[a + 1];
        else if (!strcmp(argv[a], "--winograd")) wino = argv[a + 1];
        else break;
    }
    if ((a >= argc && !small && !wino) || (argc - a) % 2 || reps < 1 || threads < 1 || threads > 256) {
        fprintf(stderr, "usage: bench_kernels [--kernels NAME] [--reps R] [--threads T] [--small-c C,OC,H] "
                        "[--winograd C,OC,H,N] [C H ...]\n");
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
        if (rc || (a >= argc && !wino)) return rc;
    }
    if (wino) {
        const int rc = winograd(k, wino, reps, peak);
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
