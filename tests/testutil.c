#include <omp.h>
#include <string.h>

#include "testutil.h"

void fill_uniform(float *x, size_t n, float lo, float hi, CnnRng *r) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * cnn_rng_uniform(r);
}

void fill_away_from_zero(float *x, size_t n, float lo, float hi, CnnRng *r) {
    for (size_t i = 0; i < n; i++) {
        float m = lo + (hi - lo) * cnn_rng_uniform(r);
        x[i] = (cnn_rng_u64(r) & 1) ? m : -m;
    }
}

void fill_distinct(float *x, size_t n, CnnRng *r) {
    uint32_t *perm = malloc(n * sizeof *perm);
    cnn_rng_permutation(r, perm, n);
    for (size_t i = 0; i < n; i++)
        x[i] = ((float)perm[i] - (float)n / 2) * (4.0f / (float)n) + 0.1f * cnn_rng_uniform(r) / (float)n;
    free(perm);
}

double *to_double(const float *x, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

double rel_err(const float *a, const double *b, size_t n, double floor) {
    double num = 0.0, den = floor;
    for (size_t i = 0; i < n; i++) {
        if (isnan(b[i])) continue;  // a value finite_diff skipped under emulation
        if (!isfinite(a[i])) return INFINITY;  // fmax would drop a NaN silently
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs(b[i]));
    }
    return num / den;
}

double rel_err_ff(const float *a, const float *b, size_t n, double floor) {
    double *d = to_double(b, n);
    double e = rel_err(a, d, n, floor);
    free(d);
    return e;
}

double dot_dd(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

size_t finite_diff_points(size_t n) {
    const char *cap = getenv("CNNC_TEST_FD_POINTS");
    const long k = cap && *cap ? strtol(cap, NULL, 10) : 0;
    return k > 0 && (size_t)k < n ? (size_t)k : n;
}

// Under emulation (CNNC_TEST_FD_POINTS=k) only k of the n values: the first
// and last k/4, where tails and edges are, and the rest at random; every
// other grad[i] is NaN, which rel_err skips.
void finite_diff(ObjectiveFn f, void *ctx, double *v, size_t n, double *grad) {
    const double h = 1e-6;
    const size_t k = finite_diff_points(n);
    unsigned char *pick = calloc(n ? n : 1, 1);
    if (k == n) memset(pick, 1, n);
    else {
        CnnRng r;
        cnn_rng_seed(&r, n);
        for (size_t i = 0; i < k / 4; i++) pick[i] = pick[n - 1 - i] = 1;
        for (size_t got = 2 * (k / 4); got < k;) {
            const size_t i = (size_t)(cnn_rng_u64(&r) % n);
            if (!pick[i]) pick[i] = 1, got++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!pick[i]) {
            grad[i] = NAN;
            continue;
        }
        const double keep = v[i];
        v[i] = keep + h;
        const double fp = f(ctx);
        v[i] = keep - h;
        const double fm = f(ctx);
        v[i] = keep;
        grad[i] = (fp - fm) / (2 * h);
        // NaN marks a skipped value for rel_err: a computed one must be finite.
        ck_assert_msg(isfinite(grad[i]), "finite difference %zu of %zu is %g", i, n, grad[i]);
    }
    free(pick);
}

int run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int kernels_next(int *i) {
    for (; *i < cnn_kernels_count(); (*i)++) {
        int ok;
        const char *name = cnn_kernels_list(*i, &ok);
        if (!ok) {
            printf("[kernels %s: this CPU lacks its features, skipped]\n", name);
            continue;
        }
        ck_assert_int_eq(cnn_kernels_select(name), CNN_OK);
        ck_assert_str_eq(cnn_kernels_name(), name);
        printf("[kernels %s]\n", name);
        (*i)++;
        return 1;
    }
    ck_assert_int_eq(cnn_kernels_select("auto"), CNN_OK);
    return 0;
}

int kernels_use(int i) {
    int ok;
    const char *name = cnn_kernels_list(i, &ok);
    if (!ok) {
        printf("[kernels %s: this CPU lacks its features, skipped]\n", name);
        return 0;
    }
    ck_assert_int_eq(cnn_kernels_select(name), CNN_OK);
    ck_assert_str_eq(cnn_kernels_name(), name);
    printf("[kernels %s]\n", name);
    return 1;
}

// ---------------------------------------------------------------- synthetic data
// Class k of K: a bright 3x3 blob at a class-specific place, in channel k % C,
// on uniform noise. Easy to learn, impossible without looking at space and channel.
void synthetic(float *x, uint8_t *y, int n, int C, int H, int W, int K, uint64_t seed) {
    CnnRng r;
    cnn_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        int k = (int)cnn_rng_below(&r, (uint32_t)K);
        y[i] = (uint8_t)k;
        float *img = x + (size_t)i * C * H * W;
        fill_uniform(img, (size_t)C * H * W, 0.0f, 0.3f, &r);
        int ch = k % C, cy = 2 + (k * 5) % (H - 4), cx = 2 + (k * 3) % (W - 4);
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) img[((size_t)ch * H + cy + dy) * W + cx + dx] += 0.8f;
    }
}

// Trains `steps` Adam steps of synthetic 3x12x10 data (5 classes) at `threads`
// threads; returns the parameters, then the buffers (malloc'd).
double dense_objective(void *p) {
    DenseCtx *c = p;
    ref_dense(c->x, c->w, c->bias ? c->b : NULL, c->y, c->B, c->IN, c->OUT);
    return dot_dd(c->y, c->r, (size_t)c->B * c->OUT);
}

CnnPrecision test_precision = CNN_PRECISION_FP32;

float *train_with_threads(const char *desc, int threads, int steps, int B) {
    omp_set_num_threads(threads);
    const int C = 3, H = 12, W = 10;
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, desc, C, H, W, B, 11), CNN_OK);
    ck_assert_int_eq(cnn_net_set_precision(net, test_precision), CNN_OK);
    float *x = cnn_alloc_floats((size_t)B * C * H * W);
    uint8_t *y = malloc(B);
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_ADAM);
    for (int s = 0; s < steps; s++) {
        synthetic(x, y, B, C, H, W, 5, 100 + s);
        cnn_net_train_step(net, &opt, x, y, B, -1.0f, NULL);
    }
    size_t n = cnn_net_num_params(net) + cnn_net_num_buffers(net);
    float *out = malloc(n * sizeof(float));
    memcpy(out, cnn_net_params(net), cnn_net_num_params(net) * sizeof(float));
    memcpy(out + cnn_net_num_params(net), cnn_net_buffers(net), cnn_net_num_buffers(net) * sizeof(float));
    cnn_net_free(net);
    cnn_free(x);
    free(y);
    return out;
}
