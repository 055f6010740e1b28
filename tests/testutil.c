#include "testutil.h"

#include <string.h>

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

void finite_diff(ObjectiveFn f, void *ctx, double *v, size_t n, double *grad) {
    const double h = 1e-6;
    for (size_t i = 0; i < n; i++) {
        const double keep = v[i];
        v[i] = keep + h;
        const double fp = f(ctx);
        v[i] = keep - h;
        const double fm = f(ctx);
        v[i] = keep;
        grad[i] = (fp - fm) / (2 * h);
    }
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
