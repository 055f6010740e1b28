// tools/bench: training and inference throughput of a model on synthetic data
// (so I/O does not count), a per-layer time table, thread scaling, and two
// ceilings measured in the same run: the CPU's peak for the precision in use
// (FP32: the faster of its AVX2 and AVX-512 FMA loops; bf16: the fastest of
// those, VDPBF16PS's dot products and, where the amx kernels run, AMX's
// TDPBF16PS tiles) and a large
// square SGEMM.
//
//   bench [--model tfcnn] [--input 1x28x28] [--batch 64] [--threads 1,2] [--kernels NAME] [--conv ALGO]
//         [--precision fp32|bf16] [--steps 20] [--reps 5] [--warmup 3] [--classes 10] [--json] [--no-layers]
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "cnnc.h"
#include "fma_peak.h"
#include "internal.h"

extern void openblas_set_num_threads(int num_threads);
extern char *openblas_get_corename(void);

typedef struct {
    const char *model, *kernels, *conv;
    CnnPrecision precision;
    int C, H, W, batch, steps, reps, warmup, classes, json, layers;
    int threads[16], nthreads;
} Options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench [--model NAME|DESC] [--input CxHxW] [--batch B] [--threads N[,N...]]\n"
            "             [--kernels NAME] [--conv ALGO] [--precision fp32|bf16] [--steps S] [--reps R]\n"
            "             [--warmup W] [--classes K] [--json] [--no-layers]\n"
            "Trains on synthetic data; prints median images/s over R repetitions of S steps,\n"
            "a per-layer forward/backward table, this CPU's peak for the precision at each thread\n"
            "count (fp32: the faster of its AVX2 and AVX-512 FMA loops; bf16: the fastest of\n"
            "those, its VDPBF16PS dot products and, where the amx kernels run, AMX's TDPBF16PS\n"
            "tiles) and SGEMM GFLOP/s of a 2048^3 product, all measured in the same run.\n"
            "--kernels (or CNNC_KERNELS) forces a kernel backend: auto, amx, avx512bf16, avx2,\n"
            "reference.\n"
            "--conv (or CNNC_CONV) the algorithm of 3x3 convolutions: auto, direct, winograd.\n");
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > hi) {
        fprintf(stderr, "bench: %s needs an integer in %d..%d, got '%s'\n", flag, lo, hi, v ? v : "");
        return 0;
    }
    *out = (int)x;
    return 1;
}

static int parse_args(int argc, char **argv, Options *o) {
    *o = (Options){.model = "tfcnn", .kernels = NULL, .C = 1, .H = 28, .W = 28, .batch = 64, .steps = 20, .reps = 5,
                   .warmup = 3, .classes = 10, .layers = 1, .threads = {0}, .nthreads = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        else if (!strcmp(a, "--json")) { o->json = 1; continue; }
        else if (!strcmp(a, "--no-layers")) { o->layers = 0; continue; }
        else if (!v) { fprintf(stderr, "bench: %s needs a value\n", a); return 0; }
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--kernels")) o->kernels = v;
        else if (!strcmp(a, "--conv")) o->conv = v;
        else if (!strcmp(a, "--precision")) ok = cnn_precision_parse(v, &o->precision) == CNN_OK;
        else if (!strcmp(a, "--batch")) ok = parse_int(a, v, 1, 65536, &o->batch);
        else if (!strcmp(a, "--steps")) ok = parse_int(a, v, 1, 100000, &o->steps);
        else if (!strcmp(a, "--reps")) ok = parse_int(a, v, 1, 1000, &o->reps);
        else if (!strcmp(a, "--warmup")) ok = parse_int(a, v, 0, 1000, &o->warmup);
        else if (!strcmp(a, "--classes")) ok = parse_int(a, v, 2, 256, &o->classes);
        else if (!strcmp(a, "--input")) {
            if (sscanf(v, "%dx%dx%d", &o->C, &o->H, &o->W) != 3 || o->C < 1 || o->H < 1 || o->W < 1) {
                fprintf(stderr, "bench: --input needs CxHxW, e.g. 3x32x32, got '%s'\n", v);
                return 0;
            }
        } else if (!strcmp(a, "--threads")) {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            o->nthreads = 0;
            for (char *t = strtok(buf, ","); t && ok; t = strtok(NULL, ","))
                ok = o->nthreads < 16 && parse_int(a, t, 1, 1024, &o->threads[o->nthreads++]);
        } else {
            fprintf(stderr, "bench: unknown option '%s' (see --help)\n", a);
            return 0;
        }
        if (!ok) return 0;
        i++;
    }
    if (!o->nthreads) o->threads[o->nthreads++] = omp_get_max_threads();
    return 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Large square SGEMM with OpenBLAS's own threads: the practical ceiling.
static double sgemm_gflops(int threads) {
    const int n = 2048;
    float *a = cnn_alloc_floats((size_t)n * n), *b = cnn_alloc_floats((size_t)n * n), *c = cnn_alloc_floats((size_t)n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) { a[i] = (float)(i % 7) * 0.1f; b[i] = (float)(i % 5) * 0.1f; }
    openblas_set_num_threads(threads);
    double best[3];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        best[r] = 2.0 * n * n * (double)n / (now() - t0) / 1e9;
    }
    openblas_set_num_threads(1);
    cnn_free(a); cnn_free(b); cnn_free(c);
    return median(best, 3);
}

// ---------------------------------------------------------------- FMA peak
typedef enum { ISA_NONE, ISA_AVX2, ISA_AVX512, ISA_BF16, ISA_AMX, NISA } Isa;
static const char *const isa_names[] = {"none", "AVX2 FMA", "AVX-512 FMA", "AVX512-BF16 VDPBF16PS", "AMX-BF16 TDPBF16PS"};
static int is_bf16(int isa) { return isa == ISA_BF16 || isa == ISA_AMX; }

static int cpu_runs(Isa isa) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (isa == ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == ISA_AVX512) return __builtin_cpu_supports("avx512f");
    if (isa == ISA_BF16) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
#if CNN_AMX_KERNELS
    if (isa == ISA_AMX) return (cpu_features() & CPU_AMX_BF16) != 0;
#endif
#endif
    (void)isa;
    return 0;
}

// Best GFLOP/s of 5 runs of `threads` threads each running the FMA loop (~5
// GFLOP a thread, a few tens of ms): a ceiling, which noise only lowers; 0
// where the CPU lacks the instructions.
static double fma_peak(Isa isa, int threads) {
    if (!cpu_runs(isa)) return 0.0;
    double (*burn)(long) = NULL;
#if defined(__x86_64__)
    burn = isa == ISA_BF16 ? dpbf16_burn_avx512 : isa == ISA_AVX512 ? fma_burn_avx512 : fma_burn_avx2;
#if CNN_AMX_KERNELS
    if (isa == ISA_AMX) burn = amx_burn;
#endif
#endif
    if (!burn) return 0.0;
    const long iters = (long)(5e9 / burn(1));
    double v[5], flops = 0.0;
    burn(iters / 4);  // warm-up: clocks settle, pages are touched
    for (int r = 0; r < 5; r++) {
        double t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
        flops += burn(iters);
        v[r] = flops / (now() - t0) / 1e9;
        flops = 0.0;
    }
    qsort(v, 5, sizeof *v, cmp_double);
    return v[4];
}

static void cpu_model(char *buf, size_t n) {
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            const char *v = strchr(line, ':') + 2;
            snprintf(buf, n, "%.*s", (int)strcspn(v, "\n"), v);
            break;
        }
    fclose(f);
}

typedef struct {
    int threads;
    double train, infer, sgemm, peak[NISA];  // peak by Isa
} Result;

// The peak of the precision in use: the fastest loop the CPU runs for it
// (on Zen 4 the AVX-512 FMA loop runs level with AVX2's, on Intel at twice
// it), and the loop that gave it.
static double precision_peak(const Result *r, CnnPrecision p, Isa *isa) {
    *isa = ISA_NONE;
    double best = 0.0;
    for (int i = ISA_AVX2; i < NISA; i++) {
        if (is_bf16(i) && p != CNN_PRECISION_BF16) continue;
        if (i == ISA_AMX && strcmp(cnn_kernels_name(), "amx")) continue;  // the tiles' rate, where they are used
        if (r->peak[i] > best) best = r->peak[i], *isa = (Isa)i;
    }
    return best;
}

// "NN%" of the peak, or "over" where the rate beats it: then the peak loop
// ran below what the CPU does, and no share of it can be given.
static const char *share(double rate, double peak, char *buf, size_t n) {
    if (peak <= 0) snprintf(buf, n, "-");
    else if (rate > peak) snprintf(buf, n, "over");
    else snprintf(buf, n, "%.0f%%", 100.0 * rate / peak);
    return buf;
}

int main(int argc, char **argv) {
    cnn_threads_limit_spin(argv);  // measure what the trainer runs with
    Options o;
    if (!parse_args(argc, argv, &o)) return 2;
    char builtin[CNN_DESC_MAX];
    const char *desc = cnn_builtin_model(o.model, o.classes, builtin, sizeof builtin) == CNN_OK ? builtin : o.model;
    CnnNet *net;
    if (cnn_net_create(&net, desc, o.C, o.H, o.W, o.batch, 1) != CNN_OK) return 1;
    if (cnn_net_set_precision(net, o.precision) != CNN_OK) return 2;
    const int K = cnn_net_num_classes(net), B = o.batch;
    float *x = cnn_alloc_floats((size_t)B * o.C * o.H * o.W);
    uint8_t *y = malloc((size_t)B);
    CnnRng r;
    cnn_rng_seed(&r, 1);
    for (size_t i = 0; i < (size_t)B * o.C * o.H * o.W; i++) x[i] = cnn_rng_uniform(&r);
    for (int i = 0; i < B; i++) y[i] = (uint8_t)cnn_rng_below(&r, (uint32_t)K);
    const double flops = cnn_net_flops(net);
    char blas[512], kinfo[1024], cpu[128];
    cnn_threads_init(o.threads[0]);
    if (o.kernels ? cnn_kernels_select(o.kernels) : cnn_kernels_from_env()) return 2;
    if (o.conv ? cnn_conv_select(o.conv) : cnn_conv_from_env()) return 2;
    cnn_threads_describe(blas, sizeof blas);
    cnn_kernels_describe(kinfo, sizeof kinfo);
    cpu_model(cpu, sizeof cpu);
    char pinfo[256];
    cnn_precision_describe(o.precision, pinfo, sizeof pinfo);
    if (!o.json) {
        printf("cnnc bench: model %s, input %dx%dx%d, batch %d, Adam; median of %d x %d steps\n", o.model,
               o.C, o.H, o.W, B, o.reps, o.steps);
        printf("%zu parameters, %.3f MFLOP/image forward\nCPU %s; %s\n%s\n%s\n", cnn_net_num_params(net),
               flops / 1e6, cpu, blas, kinfo, pinfo);
        printf("peak: the fastest loop this CPU runs for %s at each thread count (its name and the others' "
               "rates after each row)\n", o.precision == CNN_PRECISION_BF16 ? "bf16 products" : "FP32");
        printf("\n threads  train img/s  train GFLOP/s  speed-up  efficiency  infer img/s  peak GFLOP/s  train/peak"
               "  sgemm GFLOP/s  train/sgemm\n");
    }
    Result res[16];
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_ADAM);
    for (int ti = 0; ti < o.nthreads; ti++) {
        const int t = o.threads[ti];
        cnn_threads_init(t);
        double reps[1000];
        for (int s = 0; s < o.warmup; s++) cnn_net_train_step(net, &opt, x, y, B, -1.0f, NULL);
        for (int rep = 0; rep < o.reps; rep++) {
            double t0 = now();
            for (int s = 0; s < o.steps; s++) cnn_net_train_step(net, &opt, x, y, B, -1.0f, NULL);
            reps[rep] = (double)o.steps * B / (now() - t0);
        }
        res[ti].train = median(reps, o.reps);
        for (int s = 0; s < o.warmup; s++) cnn_net_forward(net, x, B, 0);
        for (int rep = 0; rep < o.reps; rep++) {
            double t0 = now();
            for (int s = 0; s < o.steps; s++) cnn_net_forward(net, x, B, 0);
            reps[rep] = (double)o.steps * B / (now() - t0);
        }
        res[ti].infer = median(reps, o.reps);
        res[ti].sgemm = sgemm_gflops(t);
        for (int isa = ISA_AVX2; isa < NISA; isa++)
            res[ti].peak[isa] = is_bf16(isa) && o.precision != CNN_PRECISION_BF16 ? 0.0 : fma_peak((Isa)isa, t);
        res[ti].threads = t;
        if (!o.json) {
            const double gf = 3.0 * flops * res[ti].train / 1e9, sp = res[ti].train / res[0].train;
            Isa which;
            const double pk = precision_peak(&res[ti], o.precision, &which);
            char sh[16];
            printf(" %7d  %11.1f  %13.2f  %7.2fx  %9.0f%%  %11.1f  %12.1f  %10s  %13.1f  %10.0f%%", t,
                   res[ti].train, gf, sp, 100.0 * sp * res[0].threads / t, res[ti].infer, pk,
                   share(gf, pk, sh, sizeof sh), res[ti].sgemm, 100.0 * gf / res[ti].sgemm);
            printf("  (%s", isa_names[which]);
            for (int isa = ISA_AVX2; isa < NISA; isa++)
                if (isa != (int)which && res[ti].peak[isa] > 0) printf("; %s %.1f", isa_names[isa], res[ti].peak[isa]);
            printf(")\n");
        }
    }
    // Per-layer table at the last thread count: median-free, summed over reps*steps steps.
    const int L = cnn_net_num_layers(net);
    double *fwd = calloc((size_t)L, sizeof *fwd), *bwd = calloc((size_t)L, sizeof *bwd), total = 0;
    if (!fwd || !bwd) return 1;
    if (o.layers) {
        cnn_net_set_profiling(net, 1);
        for (int s = 0; s < o.reps * o.steps; s++) cnn_net_train_step(net, &opt, x, y, B, -1.0f, NULL);
        for (int i = 0; i < L; i++) {
            cnn_net_layer_times(net, i, &fwd[i], &bwd[i]);
            total += fwd[i] + bwd[i];
        }
        cnn_net_set_profiling(net, 0);
        const int steps = o.reps * o.steps;
        Isa which;
        const double sg = res[o.nthreads - 1].sgemm, pk = precision_peak(&res[o.nthreads - 1], o.precision, &which);
        char sh[16];
        if (!o.json) {
            printf("\nper layer at %d threads (ms per step; GFLOP/s of forward+backward, as %% of the %s peak"
                   " and of sgemm):\n", res[o.nthreads - 1].threads, isa_names[which]);
            printf("  #  %-34s %-12s %8s %8s %6s %8s %6s %6s\n", "layer", "output", "fwd ms", "bwd ms", "share",
                   "GFLOP/s", "%peak", "%sgemm");
            double conv_flops = 0, conv_time = 0;
            for (int i = 0; i < L; i++) {
                CnnLayerInfo li;
                cnn_net_layer_info(net, i, &li);
                if (!strcmp(li.kind, "conv")) {
                    conv_flops += li.flops * B * (i == 0 ? 2.0 : 3.0) * steps;
                    conv_time += fwd[i] + bwd[i];
                }
                char shape[32];
                snprintf(shape, sizeof shape, "%dx%dx%d", li.OC, li.OH, li.OW);
                printf(" %2d  %-34s %-12s %8.3f %8.3f %5.1f%%", i, li.text, shape, 1e3 * fwd[i] / steps,
                       1e3 * bwd[i] / steps, 100.0 * (fwd[i] + bwd[i]) / total);
                if (li.done_by >= 0) printf("  (fused into layer %d)", li.done_by);
                if (li.flops > 0 && bwd[i] > 0) {
                    // Backward: dW and dx each cost a forward's FLOPs (dx is skipped for the first layer).
                    const double f = li.flops * B * (i == 0 ? 2.0 : 3.0) * steps / (fwd[i] + bwd[i]) / 1e9;
                    const int wino = li.path && !strcmp(li.path, "winograd");  // effective: fewer multiplications
                    printf(" %8.2f %6s %5.0f%%", f, wino ? "eff." : share(f, pk, sh, sizeof sh), 100.0 * f / sg);
                }
                printf("\n");
            }
            if (conv_time > 0) {
                const double cg = conv_flops / conv_time / 1e9;
                printf("  all conv layers: %.2f GFLOP/s forward+backward = %s of the peak, %.0f%% of sgemm,"
                       " %.0f%% of the step\n", cg, share(cg, pk, sh, sizeof sh), 100.0 * cg / sg,
                       100.0 * conv_time / total);
            }
            // Each pass of each convolution alone (best of --reps), as % of the FMA peak.
            printf("\nconvolutions at %d threads, each pass alone (best of %d; GFLOP/s and %% of the peak;"
                   " Winograd's in direct FLOPs: effective rates):\n", res[o.nthreads - 1].threads, o.reps);
            printf("  #  %-34s %16s %16s %16s\n", "layer", "forward", "input grad", "weight grad");
            cnn_net_forward(net, x, B, 1);
            for (int i = 0; i < L; i++) {
                double t[3];
                CnnLayerInfo li;
                cnn_net_layer_info(net, i, &li);
                if (!net_conv_pass_times(net, i, B, o.reps, t)) continue;
                const double f = li.flops * B / 1e9;
                // Winograd does fewer multiplications than its direct FLOPs:
                // an effective rate, not a share of any peak.
                const int wino = li.path && !strcmp(li.path, "winograd");
                printf(" %2d  %-34s", i, li.text);
                for (int k = 0; k < 3; k++) {
                    if (k == 1 && i == 0) { printf(" %16s", "(not needed)"); continue; }
                    printf(" %9.1f (%4s)", f / t[k], wino ? "eff." : share(f / t[k], pk, sh, sizeof sh));
                }
                printf("  %s\n", li.path ? li.path : "");
            }
        }
    }
    if (o.json) {
        Isa which;
        precision_peak(&res[0], o.precision, &which);
        printf("{\"model\":\"%s\",\"input\":[%d,%d,%d],\"batch\":%d,\"params\":%zu,\"fwd_flops_per_img\":%.0f,"
               "\"cpu\":\"%s\",\"kernels\":\"%s\",\"conv\":\"%s\",\"precision\":\"%s\",\"openblas\":\"%s\","
               "\"peak_isa\":\"%s\",\"runs\":[", o.model, o.C, o.H, o.W, B, cnn_net_num_params(net), flops, cpu,
               cnn_kernels_name(), cnn_conv_name(), cnn_precision_name(o.precision), openblas_get_corename(),
               isa_names[which]);
        for (int ti = 0; ti < o.nthreads; ti++) {
            Isa w;
            printf("%s{\"threads\":%d,\"train_img_s\":%.1f,\"infer_img_s\":%.1f,\"train_gflop_s\":%.2f,"
                   "\"sgemm_gflop_s\":%.1f,\"peak_gflop_s\":%.1f,\"fma_peak_avx2_gflop_s\":%.1f,"
                   "\"fma_peak_avx512_gflop_s\":%.1f,\"bf16_peak_gflop_s\":%.1f,\"amx_peak_gflop_s\":%.1f,"
                   "\"speedup\":%.3f}",
                   ti ? "," : "", res[ti].threads, res[ti].train, res[ti].infer, 3.0 * flops * res[ti].train / 1e9,
                   res[ti].sgemm, precision_peak(&res[ti], o.precision, &w), res[ti].peak[ISA_AVX2],
                   res[ti].peak[ISA_AVX512], res[ti].peak[ISA_BF16], res[ti].peak[ISA_AMX], res[ti].train / res[0].train);
        }
        printf("],\"layers\":[");
        for (int i = 0; o.layers && i < L; i++) {
            CnnLayerInfo li;
            cnn_net_layer_info(net, i, &li);
            printf("%s{\"layer\":\"%s\",\"fwd_s\":%.6f,\"bwd_s\":%.6f,\"share\":%.4f}", i ? "," : "", li.text,
                   fwd[i] / (o.reps * o.steps), bwd[i] / (o.reps * o.steps), (fwd[i] + bwd[i]) / total);
        }
        printf("]}\n");
    }
    cnn_net_free(net);
    free(fwd);
    free(bwd);
    cnn_free(x);
    free(y);
    return 0;
}
