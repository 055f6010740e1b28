// Shared helpers for the Check tests: random fills, error metrics, the
// double-precision reference layers (ref_double.c) and finite differences.
#ifndef CNNC_TESTUTIL_H
#define CNNC_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "cnnc.h"
#include "internal.h"

// Uniform values in [lo, hi).
void fill_uniform(float *x, size_t n, float lo, float hi, CnnRng *r);
// Uniform magnitudes in [lo, hi) with random signs: keeps ReLU inputs off the kink.
void fill_away_from_zero(float *x, size_t n, float lo, float hi, CnnRng *r);
// Distinct values (a shuffled ramp plus small noise): no max-pool ties.
void fill_distinct(float *x, size_t n, CnnRng *r);
double *to_double(const float *x, size_t n);
// max|a - b| / max(max|b|, floor): a scale-aware relative error. Values
// where b is NaN (not computed) are skipped; a non-finite a gives INFINITY.
double rel_err(const float *a, const double *b, size_t n, double floor);
double rel_err_ff(const float *a, const float *b, size_t n, double floor);

// ---------------------------------------------------------------- double reference layers
// Straight from the definitions, no tricks; shapes as in internal.h.
void ref_conv(const double *x, const double *w, const double *b, double *y, int B, int C, int H,
              int W, int OC, int KH, int KW, int S, int P, int OH, int OW);
void ref_maxpool(const double *x, double *y, int B, int C, int H, int W, int K, int S, int OH, int OW);
void ref_avgpool(const double *x, double *y, int B, int C, int H, int W, int K, int S, int OH, int OW);
void ref_gap(const double *x, double *y, int B, int C, int HW);
void ref_relu(const double *x, double *y, size_t n);
void ref_gelu(const double *x, double *y, size_t n);  // x Phi(x), with erf
void ref_batchnorm(const double *x, const double *gamma, const double *beta, double *y, int B,
                   int C, int HW, double eps);
void ref_dense(const double *x, const double *w, const double *b, double *y, int B, int IN, int OUT);
double ref_softmax_xent(const double *z, const uint8_t *labels, int B, int K);
double ref_softmax_xent_smoothed(const double *z, const uint8_t *labels, int B, int K, double eps);

// ---------------------------------------------------------------- finite differences
// A scalar objective of the double reference, as a function of one of its
// input arrays: the tests wrap each layer so that f(arg) = sum(ref(...) * r).
typedef double (*ObjectiveFn)(void *ctx);
// Central differences (h = 1e-6) of f with respect to every element of v
// (which f reads through ctx): grad[i] = (f(v+h e_i) - f(v-h e_i)) / 2h.
// Under qemu (tests/test_qemu.sh sets CNNC_TEST_FD_POINTS=k) only k values
// are differenced, the rest set to NaN: emulation checks instructions and
// dispatch, and the full differences run natively on the same code.
void finite_diff(ObjectiveFn f, void *ctx, double *v, size_t n, double *grad);
// How many of n values finite_diff differences (n, or the emulation cap).
size_t finite_diff_points(size_t n);
double dot_dd(const double *a, const double *b, size_t n);

// sum(ref_dense(x, w, b) * r) over a batch: a dense layer's objective.
typedef struct {
    int B, IN, OUT, bias;
    double *x, *w, *b, *r, *y;  // y: scratch (B, OUT)
} DenseCtx;
double dense_objective(void *ctx);

// ---------------------------------------------------------------- kernel backends
// Selects the next backend this CPU runs, starting from *i = 0, and prints
// its name (and a "skipped" line for each one it cannot run); returns 0,
// with the automatic choice restored, after the last:
//   for (int kb = 0; kernels_next(&kb);) { ... }
int kernels_next(int *i);
// Selects backend i alone (for a Check loop test over 0 .. cnn_kernels_count()-1,
// so that each backend has a timeout of its own) and prints its name; returns 0,
// printing a "skipped" line, where this CPU cannot run it.
int kernels_use(int i);

// ---------------------------------------------------------------- training
// Class k of K: a bright 3x3 blob at a class-specific place in channel k % C.
void synthetic(float *x, uint8_t *y, int n, int C, int H, int W, int K, uint64_t seed);
// The precision train_with_threads's nets compute in (fp32 unless set).
extern CnnPrecision test_precision;
// Trains `steps` Adam steps of synthetic 3x12x10 data (5 classes) at `threads`
// threads; returns the parameters, then the buffers (malloc'd).
float *train_with_threads(const char *desc, int threads, int steps, int B);

// Runs one suite in Check's fork mode; returns the process exit status.
int run_suite(Suite *s);

#endif
