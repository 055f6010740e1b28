// Every layer's forward against the double reference, and every backward
// against central finite differences of that reference, on random shapes.
#include <string.h>

#include "testutil.h"

#define FWD_TOL 1e-5
#define GRAD_TOL 1e-4
// Winograd F(4x4, 3x3)'s error bound (relative, as rel_err measures it):
// its transforms scale values by up to 5 (B^T) and 8 (A^T) and take
// differences of them, so it rounds worse than direct convolution (up to
// 4.4e-6 on the shapes below; F(2x2, 3x3) 4e-7, within the direct bound).
#define WINO4_TOL 2e-5

static double fwd_tol = FWD_TOL;  // the forward and input-gradient bound of the test under way
static int expect_winograd;       // the cases under way must run on Winograd

static void check_grad(const char *what, const float *analytic, ObjectiveFn f, void *ctx,
                       double *v, size_t n) {
    double *g = malloc(n * sizeof *g);
    finite_diff(f, ctx, v, n, g);
    double e = rel_err(analytic, g, n, 1e-6);
    const size_t k = finite_diff_points(n);
    if (k < n) printf("  %-28s rel err %.2e over %zu of %zu values (sampled under emulation)\n", what, e, k, n);
    else printf("  %-28s rel err %.2e over %zu values\n", what, e, n);
    ck_assert_msg(e < GRAD_TOL, "%s: gradient rel err %.3e >= %.0e", what, e, GRAD_TOL);
    free(g);
}

static Workspace make_ws(size_t col_size, size_t partial_size, size_t packed_size, int B) {
    Workspace ws = {0};
    ws.col_size = (col_size + 15) & ~(size_t)15;
    ws.partial_size = (partial_size + 15) & ~(size_t)15;
    ws.packed_size = packed_size;
    ws.col = cnn_alloc_floats((size_t)batch_chunks(B) * (ws.col_size ? ws.col_size : 1));
    ws.partial = cnn_alloc_floats((size_t)batch_chunks(B) * ws.partial_size);
    ws.packed = cnn_alloc_floats(packed_size ? packed_size : 1);
    return ws;
}

static void free_ws(Workspace *ws) {
    cnn_free(ws->col);
    cnn_free(ws->partial);
    cnn_free(ws->packed);
}

// ---------------------------------------------------------------- conv2d
typedef struct {
    int B, C, H, W, OC, KH, KW, S, P, bias;
} ConvCase;

typedef struct {
    ConvCase k;
    int OH, OW;
    double *x, *w, *b, *r, *y;
} ConvCtx;

static double conv_objective(void *p) {
    ConvCtx *c = p;
    ref_conv(c->x, c->w, c->k.bias ? c->b : NULL, c->y, c->k.B, c->k.C, c->k.H, c->k.W, c->k.OC,
             c->k.KH, c->k.KW, c->k.S, c->k.P, c->OH, c->OW);
    return dot_dd(c->y, c->r, (size_t)c->k.B * c->k.OC * c->OH * c->OW);
}

static void run_conv_case(ConvCase k, uint64_t seed) {
    CnnRng r;
    cnn_rng_seed(&r, seed);
    Conv2d l = {.C = k.C, .H = k.H, .W = k.W, .OC = k.OC, .KH = k.KH, .KW = k.KW, .S = k.S,
                .P = k.P, .has_bias = k.bias};
    l.OH = (k.H + 2 * k.P - k.KH) / k.S + 1;
    l.OW = (k.W + 2 * k.P - k.KW) / k.S + 1;
    const int direct = conv2d_direct_applies(&l) && kernels()->conv_fwd_blocked;
    const int wino = direct && conv2d_winograd_applies(&l), small_c = !direct && conv2d_small_c_applies(&l);
    ck_assert_msg(wino || !expect_winograd, "this case should run on Winograd");
    printf("conv B=%d C=%d %dx%d OC=%d K=%dx%d S=%d P=%d bias=%d -> %dx%d%s\n", k.B, k.C, k.H, k.W, k.OC, k.KH,
           k.KW, k.S, k.P, k.bias, l.OH, l.OW,
           wino ? " (winograd)" : direct ? " (direct)" : small_c ? " (small-C direct)" : "");
    const size_t nx = (size_t)k.B * k.C * k.H * k.W, nw = (size_t)k.OC * k.C * k.KH * k.KW;
    const size_t ny = (size_t)k.B * k.OC * l.OH * l.OW;
    float *x = cnn_alloc_floats(nx), *dx = cnn_alloc_floats(nx), *dx2 = cnn_alloc_floats(nx);
    float *y = cnn_alloc_floats(ny), *y2 = cnn_alloc_floats(ny), *dy = cnn_alloc_floats(ny);
    l.w = cnn_alloc_floats(nw); l.dw = cnn_alloc_floats(nw);
    l.b = cnn_alloc_floats(k.OC); l.db = cnn_alloc_floats(k.OC);
    fill_uniform(x, nx, -1, 1, &r);
    fill_uniform(l.w, nw, -0.5f, 0.5f, &r);
    fill_uniform(l.b, k.OC, -0.5f, 0.5f, &r);
    fill_uniform(dy, ny, -1, 1, &r);
    Workspace ws = make_ws(conv2d_col_size(&l, chunk_images_max(k.B)), conv2d_partial_size(&l),
                           conv2d_packed_size(&l), k.B);

    conv2d_forward(&l, x, y, k.B, &ws);
    ConvCtx c = {.k = k, .OH = l.OH, .OW = l.OW, .x = to_double(x, nx), .w = to_double(l.w, nw),
                 .b = to_double(l.b, k.OC), .r = to_double(dy, ny), .y = malloc(ny * sizeof(double))};
    conv_objective(&c);
    double e = rel_err(y, c.y, ny, 1e-6);
    if (wino) printf("  forward rel err %.2e (bound %.0e)\n", e, fwd_tol);
    ck_assert_msg(e < fwd_tol, "conv forward vs double reference: %.3e", e);
    conv2d_forward_naive(&l, x, y2, k.B);
    e = rel_err_ff(y, y2, ny, 1e-6);
    ck_assert_msg(e < fwd_tol, "conv forward vs naive direct convolution: %.3e", e);

    conv2d_backward(&l, x, dy, dx, k.B, &ws);
    check_grad("conv dx", dx, conv_objective, &c, c.x, nx);
    check_grad("conv dw", l.dw, conv_objective, &c, c.w, nw);
    if (k.bias) check_grad("conv db", l.db, conv_objective, &c, c.b, k.OC);

    // Without dx (first layer) the weight gradients are the same; dw accumulates (+=).
    float *dw1 = cnn_alloc_floats(nw);
    memcpy(dw1, l.dw, nw * sizeof(float));
    conv2d_backward(&l, x, dy, NULL, k.B, &ws);
    for (size_t i = 0; i < nw; i++) ck_assert_float_eq(l.dw[i], 2 * dw1[i]);
    (void)dx2;
    free_ws(&ws);
    cnn_free(x); cnn_free(dx); cnn_free(dx2); cnn_free(y); cnn_free(y2); cnn_free(dy);
    cnn_free(l.w); cnn_free(l.dw); cnn_free(l.b); cnn_free(l.db); cnn_free(dw1);
    free(c.x); free(c.w); free(c.b); free(c.r); free(c.y);
}

START_TEST(test_conv_fixed_shapes) {
    static const ConvCase cases[] = {
        {2, 3, 7, 9, 4, 3, 3, 1, 1, 1},   // odd sizes, pad 1, 3 channels
        {3, 1, 8, 7, 2, 3, 3, 2, 0, 1},   // stride 2, one channel
        {2, 4, 9, 9, 3, 5, 5, 2, 2, 1},   // stride 2, pad 2, 5x5
        {2, 3, 6, 5, 5, 1, 1, 1, 0, 1},   // pointwise path (no im2col)
        {1, 2, 7, 5, 3, 2, 3, 1, 1, 0},   // rectangular kernel, no bias, batch 1
        {17, 2, 5, 5, 2, 3, 3, 1, 1, 1},  // more images than batch chunks
        {2, 3, 5, 5, 2, 5, 5, 1, 0, 1},   // kernel as large as the image
        {2, 2, 17, 16, 3, 3, 3, 1, 1, 1},  // larger planes
        {3, 3, 16, 17, 4, 1, 1, 1, 0, 1},  // pointwise on larger planes
        {20, 1, 18, 15, 2, 3, 3, 1, 1, 0}, // more images than chunks, uneven chunks
        // 1-4 input channels, stride 1: the small-C direct kernels where the backend has them.
        {2, 3, 9, 21, 13, 3, 3, 1, 1, 1},  // rows of 21 = 16 + 5, 13 filters = 6 + 6 + 1
        {3, 1, 6, 18, 7, 5, 5, 1, 2, 0},   // 5x5 pad 2 (taps 3 + 2 a row), no bias
        {2, 4, 5, 4, 4, 2, 4, 1, 0, 1},    // 4 channels, 2x4 kernel, rows of 1
        // Channels in multiples of 8: the direct kernels where the backend has them.
        {2, 8, 7, 9, 8, 3, 3, 1, 1, 1},    // odd sizes, pad 1
        {3, 16, 6, 5, 24, 3, 3, 1, 0, 0},  // 2 input blocks, 3 output blocks (one weight-gradient tile), no bias
        {2, 8, 5, 6, 40, 3, 3, 1, 1, 1},   // 5 output blocks: weight-gradient tiles of 3 + 2
        {2, 16, 5, 5, 32, 3, 3, 1, 0, 1},  // 4 output blocks: 2 + 2
        {2, 8, 8, 7, 8, 5, 5, 1, 2, 1},    // 5x5, pad 2
        {17, 8, 2, 13, 8, 3, 3, 1, 1, 1},  // more images than chunks; rows of 13 = 6 + 6 + 1
        {2, 8, 6, 7, 8, 2, 3, 1, 1, 1},    // rectangular 2x3 kernel
        {2, 8, 7, 7, 8, 3, 3, 2, 1, 1},    // stride 2: im2col under every backend
    };
    // A loop test: backend _i, each within the timeout of its own under ASan.
    if (kernels_use(_i))
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv_case(cases[i], 100 + i);
    ck_assert_int_eq(cnn_kernels_select("auto"), CNN_OK);
}
END_TEST

// Channels rounded up to blocks of 8 with zeros (at most a third more work);
// a test of its own, so that each keeps within the timeout under ASan.
START_TEST(test_conv_rounded_channels) {
    static const ConvCase cases[] = {
        {2, 6, 8, 7, 16, 5, 5, 1, 0, 1},   // lenet's second convolution: 6 -> 8 inputs
        {2, 16, 5, 6, 14, 3, 3, 1, 1, 1},  // 14 -> 16 outputs (bias rounded too)
        {17, 14, 3, 2, 14, 3, 3, 1, 1, 0}, // both rounded, no bias; more images than chunks
    };
    for (int kb = 0; kernels_next(&kb);)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv_case(cases[i], 150 + i);
}
END_TEST

START_TEST(test_conv_random_shapes) {
    for (int kb = 0; kernels_next(&kb);) {
        CnnRng r;
        cnn_rng_seed(&r, 7);
        for (int t = 0; t < 6; t++) {
            ConvCase k;
            k.B = 1 + (int)cnn_rng_below(&r, 3);
            k.C = 1 + (int)cnn_rng_below(&r, 4);
            k.OC = 1 + (int)cnn_rng_below(&r, 4);
            k.KH = 1 + (int)cnn_rng_below(&r, 4);
            k.KW = 1 + (int)cnn_rng_below(&r, 4);
            k.S = 1 + (int)cnn_rng_below(&r, 2);
            k.P = (int)cnn_rng_below(&r, 3);
            k.H = k.KH + (int)cnn_rng_below(&r, 6);
            k.W = k.KW + (int)cnn_rng_below(&r, 6);
            k.bias = (int)cnn_rng_below(&r, 2);
            run_conv_case(k, 200 + t);
        }
    }
}
END_TEST

// Layers too large for finite differences (kernels past the size at which
// packing runs in parallel): every backend's forward against the naive
// direct convolution, and its gradients against the reference backend's.
static void run_conv_large_vs_twins_batch(Conv2d l, int B) {
    CnnRng r;
    cnn_rng_seed(&r, 300);
    l.OH = l.H + 2 * l.P - l.KH + 1;
    l.OW = l.W + 2 * l.P - l.KW + 1;
    const size_t nx = (size_t)B * l.C * l.H * l.W, ny = (size_t)B * l.OC * l.OH * l.OW;
    const size_t nw = (size_t)l.OC * l.C * l.KH * l.KW;
    printf("conv B=%d C=%d %dx%d OC=%d K=%dx%d P=%d against its twins\n", B, l.C, l.H, l.W, l.OC, l.KH, l.KW, l.P);
    float *x = cnn_alloc_floats(nx), *dy = cnn_alloc_floats(ny), *y = cnn_alloc_floats(ny);
    float *want_y = cnn_alloc_floats(ny), *dx = cnn_alloc_floats(nx), *ref_dx = cnn_alloc_floats(nx);
    float *ref_dw = cnn_alloc_floats(nw), *ref_db = cnn_alloc_floats(l.OC);
    l.w = cnn_alloc_floats(nw); l.dw = cnn_alloc_floats(nw);
    l.b = cnn_alloc_floats(l.OC); l.db = cnn_alloc_floats(l.OC);
    fill_uniform(x, nx, -1, 1, &r);
    fill_uniform(dy, ny, -1, 1, &r);
    fill_uniform(l.w, nw, -0.1f, 0.1f, &r);
    fill_uniform(l.b, l.OC, -0.5f, 0.5f, &r);
    Workspace ws = make_ws(conv2d_col_size(&l, chunk_images_max(B)), conv2d_partial_size(&l),
                           conv2d_packed_size(&l), B);
    conv2d_forward_naive(&l, x, want_y, B);
    ck_assert_int_eq(cnn_kernels_select("reference"), CNN_OK);
    conv2d_backward(&l, x, dy, ref_dx, B, &ws);
    memcpy(ref_dw, l.dw, nw * sizeof(float));
    memcpy(ref_db, l.db, l.OC * sizeof(float));
    for (int kb = 0; kernels_next(&kb);) {
        memset(l.dw, 0, nw * sizeof(float));
        memset(l.db, 0, l.OC * sizeof(float));
        conv2d_forward(&l, x, y, B, &ws);
        conv2d_backward(&l, x, dy, dx, B, &ws);
        const double ey = rel_err_ff(y, want_y, ny, 1e-6), ex = rel_err_ff(dx, ref_dx, nx, 1e-6);
        const double ew = rel_err_ff(l.dw, ref_dw, nw, 1e-6), eb = rel_err_ff(l.db, ref_db, l.OC, 1e-6);
        printf("  forward %.1e, dx %.1e, dw %.1e, db %.1e\n", ey, ex, ew, eb);
        ck_assert_msg(ey < fwd_tol && ex < fwd_tol && ew < fwd_tol && eb < FWD_TOL, "%s: %.1e %.1e %.1e %.1e",
                      cnn_kernels_name(), ey, ex, ew, eb);
    }
    free_ws(&ws);
    cnn_free(x); cnn_free(dy); cnn_free(y); cnn_free(want_y); cnn_free(dx); cnn_free(ref_dx);
    cnn_free(ref_dw); cnn_free(ref_db); cnn_free(l.w); cnn_free(l.dw); cnn_free(l.b); cnn_free(l.db);
}

static void run_conv_large_vs_twins(Conv2d l) { run_conv_large_vs_twins_batch(l, 3); }

START_TEST(test_conv_large_vs_twins) {
    // 17 images in 16 chunks, and a 32-channel 16x16 plane that fills a
    // Winograd group alone: the chunk of 2 images takes two groups, the
    // second adding to the first's weight gradient (small enough for qemu).
    run_conv_large_vs_twins_batch((Conv2d){.C = 32, .H = 16, .W = 16, .OC = 32, .KH = 3, .KW = 3, .S = 1, .P = 1,
                                           .has_bias = 1}, 17);
    run_conv_large_vs_twins((Conv2d){.C = 64, .H = 6, .W = 7, .OC = 72, .KH = 3, .KW = 3, .S = 1, .P = 1, .has_bias = 1});
    // Both channel counts rounded up to blocks (62 -> 64, 70 -> 72).
    run_conv_large_vs_twins((Conv2d){.C = 62, .H = 7, .W = 5, .OC = 70, .KH = 3, .KW = 3, .S = 1, .P = 1, .has_bias = 1});
    // First layers on the small-C kernels: lenet's; tfcnn's and vgg8bn's (no bias) channel
    // counts on smaller planes (rows of 16 + 2 and 16 + 4 outputs; quick under qemu).
    run_conv_large_vs_twins((Conv2d){.C = 1, .H = 28, .W = 28, .OC = 6, .KH = 5, .KW = 5, .S = 1, .P = 2, .has_bias = 1});
    run_conv_large_vs_twins((Conv2d){.C = 3, .H = 20, .W = 20, .OC = 32, .KH = 3, .KW = 3, .S = 1, .P = 0, .has_bias = 1});
    run_conv_large_vs_twins((Conv2d){.C = 3, .H = 12, .W = 20, .OC = 64, .KH = 3, .KW = 3, .S = 1, .P = 1, .has_bias = 0});
}
END_TEST

// Winograd F(2x2) and F(4x4) where the backend has it: forward, input and
// weight gradients within their bounds of the double reference, finite
// differences and the naive twin. Odd sizes
// leave tiles partly outside the image; pad 0 and 2 shift the tiles.
START_TEST(test_conv_winograd) {
    static const ConvCase cases[] = {
        {2, 8, 7, 9, 8, 3, 3, 1, 1, 1},     // odd sizes, pad 1
        {3, 16, 6, 5, 24, 3, 3, 1, 0, 0},   // pad 0, 2 -> 3 blocks, no bias
        {2, 8, 5, 6, 16, 3, 3, 1, 2, 1},    // pad 2
        {17, 8, 4, 4, 8, 3, 3, 1, 1, 1},    // more images than chunks, one F(4x4) tile an image
        {2, 8, 11, 10, 8, 3, 3, 1, 1, 0},   // several tiles each way, partial last ones
    };
    int tested = 0;
    ck_assert_int_eq(cnn_conv_select("winograd"), CNN_OK);
    ck_assert_str_eq(cnn_conv_name(), "winograd");
    for (int m = 2; m <= 4; m += 2) {
        int ran = 0;  // by some backend (avx2, and those built on it)
        conv2d_winograd_set_tile(m);
        fwd_tol = m == 4 ? WINO4_TOL : FWD_TOL;
        for (int kb = 0; kernels_next(&kb);) {
            if (!kernels()->wino_input) continue;
            printf("[winograd F(%dx%d, 3x3)]\n", m, m);
            expect_winograd = 1;
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv_case(cases[i], 400 + i);
            expect_winograd = 0;
            ran = 1;
        }
        tested += ran;
        // Every backend (Winograd where it has it) against the reference's.
        run_conv_large_vs_twins((Conv2d){.C = 64, .H = 9, .W = 7, .OC = 72, .KH = 3, .KW = 3, .S = 1, .P = 1,
                                         .has_bias = 1});
    }
    conv2d_winograd_set_tile(4);
    fwd_tol = FWD_TOL;
    ck_assert_int_eq(cnn_conv_select("auto"), CNN_OK);
    printf("winograd checked with %d tile sizes\n", tested);
    if (CNN_X86_KERNELS && cpu_has_avx2_fma()) ck_assert_int_eq(tested, 2);
}
END_TEST

// Which layers auto gives Winograd, pass by pass (tools/PERF.md has the
// measurements behind the rule).
START_TEST(test_conv_winograd_auto_rule) {
    const Conv2d big = {.C = 64, .H = 32, .W = 32, .OC = 64, .KH = 3, .KW = 3, .S = 1, .P = 1, .OH = 32, .OW = 32};
    const Conv2d deep = {.C = 256, .H = 8, .W = 8, .OC = 256, .KH = 3, .KW = 3, .S = 1, .P = 1, .OH = 8, .OW = 8};
    const Conv2d ragged = {.C = 32, .H = 15, .W = 15, .OC = 64, .KH = 3, .KW = 3, .S = 1, .P = 0, .OH = 13, .OW = 13};
    const Conv2d odd = {.C = 12, .H = 8, .W = 8, .OC = 16, .KH = 3, .KW = 3, .S = 1, .P = 1, .OH = 8, .OW = 8};
    const Conv2d strided = {.C = 64, .H = 8, .W = 8, .OC = 64, .KH = 3, .KW = 3, .S = 2, .P = 1, .OH = 4, .OW = 4};
    // airbench94's planes: 15x15 of 16x16 computed (88%), and 3x3 of 4x4 (56%) with 256 channels.
    const Conv2d mostly = {.C = 64, .H = 15, .W = 15, .OC = 64, .KH = 3, .KW = 3, .S = 1, .P = 1, .OH = 15, .OW = 15};
    const Conv2d wide = {.C = 256, .H = 3, .W = 3, .OC = 256, .KH = 3, .KW = 3, .S = 1, .P = 1, .OH = 3, .OW = 3};
    const Conv2d narrow = {.C = 32, .H = 3, .W = 3, .OC = 32, .KH = 3, .KW = 3, .S = 1, .P = 1, .OH = 3, .OW = 3};
    const Conv2d thin = {.C = 64, .H = 6, .W = 6, .OC = 64, .KH = 3, .KW = 3, .S = 1, .P = 0, .OH = 4, .OW = 4};
    ck_assert(!conv2d_winograd_possible(&odd) && !conv2d_winograd_possible(&strided));
    if (!kernels()->wino_input) return;  // nothing to choose between
    ck_assert_int_eq(cnn_conv_select("auto"), CNN_OK);
    ck_assert(conv2d_winograd_applies(&big) && conv2d_winograd_applies(&deep) && conv2d_winograd_applies(&ragged));
    // Chunks of 4 images (batch 64) unless said.
    ck_assert(conv2d_winograd_weight_grad_applies(&big, 4));
    ck_assert(conv2d_winograd_weight_grad_applies(&deep, 4));     // 4 tiles an image, 16 a group
    ck_assert(!conv2d_winograd_weight_grad_applies(&deep, 3));    // 12 tiles a group
    ck_assert(!conv2d_winograd_weight_grad_applies(&ragged, 4));  // a third of the tiles' outputs wasted, 32 channels
    ck_assert(conv2d_winograd_weight_grad_applies(&mostly, 4));    // 88% used
    ck_assert(conv2d_winograd_weight_grad_applies(&wide, 16));     // 56% used, 256 channels, batch 256
    ck_assert(!conv2d_winograd_weight_grad_applies(&wide, 4));     // one tile an image: 4 a group
    ck_assert(!conv2d_winograd_weight_grad_applies(&narrow, 16));  // 56% used, 32 channels
    ck_assert(!conv2d_winograd_weight_grad_applies(&thin, 4));     // tfcnn's third layer at batch 64
    ck_assert_int_eq(cnn_conv_select("winograd"), CNN_OK);
    ck_assert(conv2d_winograd_weight_grad_applies(&deep, 4) && conv2d_winograd_weight_grad_applies(&ragged, 4));
    ck_assert(conv2d_winograd_weight_grad_applies(&thin, 4));
    ck_assert_int_eq(cnn_conv_select("direct"), CNN_OK);
    ck_assert(!conv2d_winograd_applies(&big) && !conv2d_winograd_weight_grad_applies(&big, 4));
    ck_assert_int_eq(cnn_conv_select("auto"), CNN_OK);
}
END_TEST

// ---------------------------------------------------------------- pooling
typedef struct {
    int B, C, H, W, K, S, OH, OW, avg;
    double *x, *r, *y;
} PoolCtx;

static double pool_objective(void *p) {
    PoolCtx *c = p;
    if (c->avg) ref_avgpool(c->x, c->y, c->B, c->C, c->H, c->W, c->K, c->S, c->OH, c->OW);
    else ref_maxpool(c->x, c->y, c->B, c->C, c->H, c->W, c->K, c->S, c->OH, c->OW);
    return dot_dd(c->y, c->r, (size_t)c->B * c->C * c->OH * c->OW);
}

START_TEST(test_pool) {
    static const int cases[][6] = {  // B C H W K S
        {2, 3, 8, 8, 2, 2}, {2, 2, 7, 9, 2, 2}, {3, 1, 7, 7, 3, 2}, {1, 4, 6, 5, 3, 1}, {2, 2, 5, 5, 1, 1},
        {2, 3, 30, 30, 2, 2}, {1, 2, 4, 35, 2, 2},  // tfcnn's first pool's rows, and an odd width
    };
    for (int kb = 0; kernels_next(&kb);)
    for (int avg = 0; avg < 2; avg++)
        for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
            CnnRng r;
            cnn_rng_seed(&r, 300 + t);
            Pool2d l = {.C = cases[t][1], .H = cases[t][2], .W = cases[t][3], .K = cases[t][4], .S = cases[t][5]};
            const int B = cases[t][0];
            l.OH = (l.H - l.K) / l.S + 1;
            l.OW = (l.W - l.K) / l.S + 1;
            printf("%s B=%d C=%d %dx%d K=%d S=%d\n", avg ? "avgpool" : "maxpool", B, l.C, l.H, l.W, l.K, l.S);
            const size_t nx = (size_t)B * l.C * l.H * l.W, ny = (size_t)B * l.C * l.OH * l.OW;
            float *x = cnn_alloc_floats(nx), *dx = cnn_alloc_floats(nx);
            float *y = cnn_alloc_floats(ny), *dy = cnn_alloc_floats(ny);
            int32_t *am = malloc(ny * sizeof *am);
            fill_distinct(x, nx, &r);
            fill_uniform(dy, ny, -1, 1, &r);
            if (avg) avgpool_forward(&l, x, y, B);
            else maxpool_forward(&l, x, y, am, B);
            PoolCtx c = {B, l.C, l.H, l.W, l.K, l.S, l.OH, l.OW, avg, to_double(x, nx),
                         to_double(dy, ny), malloc(ny * sizeof(double))};
            pool_objective(&c);
            ck_assert(rel_err(y, c.y, ny, 1e-6) < FWD_TOL);
            if (avg) avgpool_backward(&l, dy, dx, B);
            else maxpool_backward(&l, y, dy, am, dx, B);
            check_grad(avg ? "avgpool dx" : "maxpool dx", dx, pool_objective, &c, c.x, nx);
            cnn_free(x); cnn_free(dx); cnn_free(y); cnn_free(dy); free(am);
            free(c.x); free(c.r); free(c.y);
        }
}
END_TEST

START_TEST(test_maxpool_ties_go_to_first) {
    Pool2d l = {.C = 1, .H = 2, .W = 4, .K = 2, .S = 2, .OH = 1, .OW = 2};
    float x[8] = {1, 1, 3, 2, 1, 1, 3, 3}, y[2], dy[2] = {1, 2}, dx[8];
    int32_t am[2];
    maxpool_forward(&l, x, y, am, 1);
    ck_assert_int_eq(am[0], 0);  // four equal values: the first wins
    ck_assert_int_eq(am[1], 2);
    maxpool_backward(&l, y, dy, am, dx, 1);
    const float want[8] = {1, 0, 2, 0, 0, 0, 0, 0};
    for (int i = 0; i < 8; i++) ck_assert_float_eq(dx[i], want[i]);
    // Four windows in a row: ties, a NaN, two NaNs (each NaN is taken: the last wins).
    Pool2d w4 = {.C = 1, .H = 2, .W = 8, .K = 2, .S = 2, .OH = 1, .OW = 4};
    float x4[16] = {1, 1, 3, 2, 5, 1, 0, NAN, 1, 1, 3, 3, NAN, 9, 4, NAN}, y4[4], dy4[4] = {1, 2, 3, 4}, dx4[16];
    int32_t am4[4];
    maxpool_forward(&w4, x4, y4, am4, 1);
    const int32_t want_am[4] = {0, 2, 12, 15};
    for (int i = 0; i < 4; i++) ck_assert_int_eq(am4[i], want_am[i]);
    ck_assert(y4[0] == 1 && y4[1] == 3 && isnan(y4[2]) && isnan(y4[3]));
    maxpool_backward(&w4, y4, dy4, am4, dx4, 1);
    for (int i = 0; i < 16; i++) ck_assert_float_eq(dx4[i], i == 0 ? 1 : i == 2 ? 2 : i == 12 ? 3 : i == 15 ? 4 : 0);
}
END_TEST

// A max pool that does the backward of the ReLU before it (relu_grad, as
// net.c fuses them) gives the bits of the two backward passes in turn:
// 2x2 windows (their own path) and overlapping 3x3 ones; inputs with
// negatives, exact zeros after the ReLU, a NaN; gradients with -0 and NaN.
START_TEST(test_maxpool_relu_grad) {
    static const int cases[][6] = {{2, 3, 8, 8, 2, 2}, {2, 2, 7, 9, 2, 2}, {3, 2, 7, 7, 3, 2}, {1, 2, 6, 5, 3, 1},
                                   {2, 3, 30, 30, 2, 2}, {1, 2, 4, 35, 2, 2}};
    for (int kb = 0; kernels_next(&kb);)
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        CnnRng r;
        cnn_rng_seed(&r, 700 + t);
        Pool2d l = {.C = cases[t][1], .H = cases[t][2], .W = cases[t][3], .K = cases[t][4], .S = cases[t][5]};
        const int B = cases[t][0];
        l.OH = (l.H - l.K) / l.S + 1;
        l.OW = (l.W - l.K) / l.S + 1;
        const size_t nx = (size_t)B * l.C * l.H * l.W, ny = (size_t)B * l.C * l.OH * l.OW;
        float *x = cnn_alloc_floats(nx), *dx = cnn_alloc_floats(nx), *dx2 = cnn_alloc_floats(nx);
        float *y = cnn_alloc_floats(ny), *dy = cnn_alloc_floats(ny);
        int32_t *am = malloc(ny * sizeof *am);
        fill_uniform(x, nx, -1, 1, &r);
        for (size_t i = 0; i < nx; i += 7) x[i] = -x[i] * x[i];  // more windows all <= 0
        x[3] = NAN;
        fill_uniform(dy, ny, -1, 1, &r);
        dy[0] = -0.0f;
        dy[ny / 2] = NAN;
        relu_forward(x, x, nx);
        maxpool_forward(&l, x, y, am, B);
        maxpool_backward(&l, y, dy, am, dx, B);  // relu_grad 0: y is not read
        relu_backward(x, dx, dx, nx);
        l.relu_grad = 1;
        for (size_t i = 0; i < nx; i++) dx2[i] = 12345.0f;  // every element must be written
        maxpool_backward(&l, y, dy, am, dx2, B);
        ck_assert_msg(!memcmp(dx, dx2, nx * sizeof *dx), "case %zu: fused gradient differs", t);
        cnn_free(x); cnn_free(dx); cnn_free(dx2); cnn_free(y); cnn_free(dy); free(am);
    }
}
END_TEST

// 2x2 windows of values from {0, 1, 2, NaN} (ties everywhere) in rows of 1
// to 20 windows, under every backend, against the rule written out: visit the window in row-major
// order, take a value that is greater or NaN; the backward pass puts each
// output's gradient at its argmax.
START_TEST(test_maxpool_ties_every_width) {
    CnnRng r;
    cnn_rng_seed(&r, 4242);
    for (int kb = 0; kernels_next(&kb);)
        for (int OW = 1; OW <= 20; OW++) {
            const int W = 2 * OW + (OW % 3 == 0), H = 4;  // sometimes an odd last column
            Pool2d l = {.C = 1, .H = H, .W = W, .K = 2, .S = 2, .OH = 2, .OW = OW};
            float x[4 * 41], y[2 * 20], dy[2 * 20], dx[4 * 41];
            int32_t am[2 * 20];
            for (int i = 0; i < H * W; i++) {
                const int v = (int)(cnn_rng_uniform(&r) * 7.0f);
                x[i] = v < 2 ? 0.0f : v < 4 ? 1.0f : v < 6 ? 2.0f : NAN;
            }
            for (int i = 0; i < 2 * OW; i++) dy[i] = (float)(i + 1);
            maxpool_forward(&l, x, y, am, 1);
            maxpool_backward(&l, y, dy, am, dx, 1);
            float want_dx[4 * 41] = {0};
            for (int oh = 0; oh < 2; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    const int base = 2 * oh * W + 2 * ow, at[4] = {base, base + 1, base + W, base + W + 1};
                    int best = at[0];
                    for (int k = 1; k < 4; k++)
                        if (x[at[k]] > x[best] || isnan(x[at[k]])) best = at[k];
                    ck_assert_msg(am[oh * OW + ow] == best, "kernels %s, %d windows: output (%d,%d) took %d, not %d",
                                  cnn_kernels_name(), OW, oh, ow, am[oh * OW + ow], best);
                    ck_assert(memcmp(&y[oh * OW + ow], &x[best], sizeof(float)) == 0);
                    want_dx[best] = dy[oh * OW + ow];
                }
            ck_assert_msg(memcmp(dx, want_dx, sizeof(float) * H * W) == 0, "kernels %s, %d windows: gradient",
                          cnn_kernels_name(), OW);
        }
}
END_TEST

typedef struct {
    int B, C, HW;
    double *x, *r, *y;
} GapCtx;

static double gap_objective(void *p) {
    GapCtx *c = p;
    ref_gap(c->x, c->y, c->B, c->C, c->HW);
    return dot_dd(c->y, c->r, (size_t)c->B * c->C);
}

START_TEST(test_gap) {
    CnnRng r;
    cnn_rng_seed(&r, 400);
    const int B = 3, C = 5, HW = 7 * 5;
    const size_t nx = (size_t)B * C * HW, ny = (size_t)B * C;
    float *x = cnn_alloc_floats(nx), *dx = cnn_alloc_floats(nx), *y = cnn_alloc_floats(ny), *dy = cnn_alloc_floats(ny);
    fill_uniform(x, nx, -1, 1, &r);
    fill_uniform(dy, ny, -1, 1, &r);
    gap_forward(x, y, B, C, HW);
    GapCtx c = {B, C, HW, to_double(x, nx), to_double(dy, ny), malloc(ny * sizeof(double))};
    gap_objective(&c);
    ck_assert(rel_err(y, c.y, ny, 1e-6) < FWD_TOL);
    gap_backward(dy, dx, B, C, HW);
    check_grad("gap dx", dx, gap_objective, &c, c.x, nx);
    cnn_free(x); cnn_free(dx); cnn_free(y); cnn_free(dy); free(c.x); free(c.r); free(c.y);
}
END_TEST

// ---------------------------------------------------------------- relu
// An element-wise layer's double reference ref, as an objective sum(ref(x) * r).
typedef struct {
    size_t n;
    double *x, *r, *y;
    void (*ref)(const double *x, double *y, size_t n);
} EltCtx;

static double elementwise_objective(void *p) {
    EltCtx *c = p;
    c->ref(c->x, c->y, c->n);
    return dot_dd(c->y, c->r, c->n);
}

START_TEST(test_relu) {
    CnnRng r;
    cnn_rng_seed(&r, 500);
    const size_t n = 3 * 4 * 5 * 7;
    float *x = cnn_alloc_floats(n), *y = cnn_alloc_floats(n), *dy = cnn_alloc_floats(n), *dx = cnn_alloc_floats(n);
    fill_away_from_zero(x, n, 0.05f, 1.0f, &r);
    fill_uniform(dy, n, -1, 1, &r);
    relu_forward(x, y, n);
    EltCtx c = {n, to_double(x, n), to_double(dy, n), malloc(n * sizeof(double)), ref_relu};
    elementwise_objective(&c);
    ck_assert(rel_err(y, c.y, n, 1e-6) == 0.0);
    relu_backward(y, dy, dx, n);
    check_grad("relu dx", dx, elementwise_objective, &c, c.x, n);
    relu_backward(y, dy, dy, n);  // in place, as the network runs it
    for (size_t i = 0; i < n; i++) ck_assert_float_eq(dy[i], dx[i]);
    cnn_free(x); cnn_free(y); cnn_free(dy); cnn_free(dx); free(c.x); free(c.r); free(c.y);
}
END_TEST

// ---------------------------------------------------------------- gelu
// The polynomial erf and exp against libm's erf in double, over the whole
// range a network feeds it (the tails included), and the gradient against
// central differences of the double definition.
START_TEST(test_gelu) {
    CnnRng r;
    cnn_rng_seed(&r, 501);
    const size_t n = 3 * 5 * 7 * 11 + 3;  // odd: the vector loop's remainder runs too
    float *x = cnn_alloc_floats(n), *y = cnn_alloc_floats(n), *dy = cnn_alloc_floats(n), *dx = cnn_alloc_floats(n);
    fill_uniform(x, n, -6, 6, &r);
    x[0] = -40.0f, x[1] = 40.0f, x[2] = 0.0f;  // far tails: 0 and x exactly
    fill_uniform(dy, n, -1, 1, &r);
    gelu_forward(x, y, n);
    EltCtx c = {n, to_double(x, n), to_double(dy, n), malloc(n * sizeof(double)), ref_gelu};
    elementwise_objective(&c);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(y[i] - c.y[i]) <= 4e-7 * (1.0 + fabs(c.y[i])), "gelu(%g) = %.9g, want %.9g", x[i],
                      y[i], c.y[i]);
    ck_assert_float_eq(y[0], 0.0f);
    ck_assert_float_eq(y[1], 40.0f);
    ck_assert_float_eq(y[2], 0.0f);
    gelu_backward(x, dy, dx, n);
    check_grad("gelu dx", dx, elementwise_objective, &c, c.x, n);
    float nan_in = NAN, nan_out;
    gelu_forward(&nan_in, &nan_out, 1);
    ck_assert(isnan(nan_out));  // a diverging run shows in the loss
    cnn_free(x); cnn_free(y); cnn_free(dy); cnn_free(dx); free(c.x); free(c.r); free(c.y);
}
END_TEST

// ---------------------------------------------------------------- batchnorm
typedef struct {
    int B, C, HW;
    double eps, *x, *g, *b, *r, *y;
} BnCtx;

static double bn_objective(void *p) {
    BnCtx *c = p;
    ref_batchnorm(c->x, c->g, c->b, c->y, c->B, c->C, c->HW, c->eps);
    return dot_dd(c->y, c->r, (size_t)c->B * c->C * c->HW);
}

START_TEST(test_batchnorm) {
    static const int cases[][3] = {{3, 4, 35}, {2, 3, 1}, {5, 2, 9}, {1, 3, 16}};  // B C HW
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        CnnRng r;
        cnn_rng_seed(&r, 600 + t);
        const int B = cases[t][0], C = cases[t][1], HW = cases[t][2];
        printf("batchnorm B=%d C=%d HW=%d\n", B, C, HW);
        const size_t n = (size_t)B * C * HW;
        BatchNorm l = {.C = C, .HW = HW, .eps = 1e-5f, .momentum = 0.1f};
        float *x = cnn_alloc_floats(n), *y = cnn_alloc_floats(n), *dy = cnn_alloc_floats(n), *dx = cnn_alloc_floats(n);
        float *par = cnn_alloc_floats(10 * (size_t)C);
        l.gamma = par; l.beta = par + C; l.dgamma = par + 2 * C; l.dbeta = par + 3 * C;
        l.running_mean = par + 4 * C; l.running_var = par + 5 * C;
        l.save_mean = par + 6 * C; l.save_invstd = par + 7 * C;
        fill_uniform(x, n, -2, 3, &r);
        fill_uniform(l.gamma, C, 0.5f, 1.5f, &r);
        fill_uniform(l.beta, C, -0.5f, 0.5f, &r);
        fill_uniform(dy, n, -1, 1, &r);
        for (int c = 0; c < C; c++) l.running_var[c] = 1.0f;
        Workspace ws = make_ws(0, batchnorm_partial_size(C), 0, B);
        batchnorm_forward(&l, x, y, B, &ws);
        BnCtx c = {B, C, HW, 1e-5, to_double(x, n), to_double(l.gamma, C), to_double(l.beta, C),
                   to_double(dy, n), malloc(n * sizeof(double))};
        bn_objective(&c);
        ck_assert_msg(rel_err(y, c.y, n, 1e-6) < FWD_TOL, "bn forward");
        // Running statistics: momentum 0.1 towards the batch mean and unbiased variance.
        for (int ch = 0; ch < C; ch++) {
            double s = 0, ss = 0, cnt = (double)B * HW;
            for (int b = 0; b < B; b++)
                for (int i = 0; i < HW; i++) s += x[((size_t)b * C + ch) * HW + i];
            double m = s / cnt;
            for (int b = 0; b < B; b++)
                for (int i = 0; i < HW; i++) ss += pow(x[((size_t)b * C + ch) * HW + i] - m, 2);
            double uvar = cnt > 1 ? ss / (cnt - 1) : ss / cnt;
            ck_assert_double_eq_tol(l.running_mean[ch], 0.1 * m, 1e-6);
            ck_assert_double_eq_tol(l.running_var[ch], 0.9 + 0.1 * uvar, 1e-5);
        }
        if (B * HW > 1) {  // with one value per channel the output is constant: no gradient to check
            batchnorm_backward(&l, x, dy, dx, B, &ws);
            check_grad("batchnorm dx", dx, bn_objective, &c, c.x, n);
            check_grad("batchnorm dgamma", l.dgamma, bn_objective, &c, c.g, C);
            check_grad("batchnorm dbeta", l.dbeta, bn_objective, &c, c.b, C);
        }
        // Evaluation uses the running statistics.
        batchnorm_forward(&l, x, y, B, NULL);
        free_ws(&ws);
        for (int ch = 0; ch < C; ch++) {
            float k = l.gamma[ch] / sqrtf(l.running_var[ch] + 1e-5f);
            size_t i = (size_t)ch * HW;
            ck_assert_double_eq_tol(y[i], k * (x[i] - l.running_mean[ch]) + l.beta[ch], 1e-5);
        }
        cnn_free(x); cnn_free(y); cnn_free(dy); cnn_free(dx); cnn_free(par);
        free(c.x); free(c.g); free(c.b); free(c.r); free(c.y);
    }
}
END_TEST

// ---------------------------------------------------------------- dense
START_TEST(test_dense) {
    static const int cases[][4] = {{3, 7, 5, 1}, {1, 13, 3, 1}, {19, 6, 4, 0}, {2, 1, 9, 1},
                                     {35, 9, 37, 1},   // several batch-row and weight-gradient blocks
                                     {21, 37, 11, 1},  // the AVX2 kernel's 4x16 blocks, and its column and row edges
                                     {7, 29, 3, 0}};   // forward and input gradient: 16 + 8 + 5 columns, an odd output
    for (int kb = 0; kernels_next(&kb);)
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        CnnRng r;
        cnn_rng_seed(&r, 700 + t);
        Dense l = {.IN = cases[t][1], .OUT = cases[t][2], .has_bias = cases[t][3]};
        const int B = cases[t][0];
        printf("dense B=%d IN=%d OUT=%d bias=%d\n", B, l.IN, l.OUT, l.has_bias);
        const size_t nx = (size_t)B * l.IN, ny = (size_t)B * l.OUT, nw = (size_t)l.IN * l.OUT;
        float *x = cnn_alloc_floats(nx), *dx = cnn_alloc_floats(nx), *y = cnn_alloc_floats(ny), *dy = cnn_alloc_floats(ny);
        l.w = cnn_alloc_floats(nw); l.dw = cnn_alloc_floats(nw); l.b = cnn_alloc_floats(l.OUT); l.db = cnn_alloc_floats(l.OUT);
        fill_uniform(x, nx, -1, 1, &r);
        fill_uniform(l.w, nw, -1, 1, &r);
        fill_uniform(l.b, l.OUT, -1, 1, &r);
        fill_uniform(dy, ny, -1, 1, &r);
        Workspace ws = make_ws(0, nw + l.OUT, 0, B);
        dense_forward(&l, x, y, B, &ws);
        DenseCtx c = {B, l.IN, l.OUT, l.has_bias, to_double(x, nx), to_double(l.w, nw),
                      to_double(l.b, l.OUT), to_double(dy, ny), malloc(ny * sizeof(double))};
        dense_objective(&c);
        ck_assert(rel_err(y, c.y, ny, 1e-6) < FWD_TOL);
        dense_backward(&l, x, dy, dx, B, &ws);
        check_grad("dense dx", dx, dense_objective, &c, c.x, nx);
        check_grad("dense dw", l.dw, dense_objective, &c, c.w, nw);
        if (l.has_bias) check_grad("dense db", l.db, dense_objective, &c, c.b, l.OUT);
        free_ws(&ws);
        cnn_free(x); cnn_free(dx); cnn_free(y); cnn_free(dy); cnn_free(l.w); cnn_free(l.dw); cnn_free(l.b); cnn_free(l.db);
        free(c.x); free(c.w); free(c.b); free(c.r); free(c.y);
    }
}
END_TEST

// ---------------------------------------------------------------- dropout
typedef struct {
    size_t n;
    double *x, *mask, *r;
} DropCtx;

static double drop_objective(void *p) {
    DropCtx *c = p;
    double s = 0;
    for (size_t i = 0; i < c->n; i++) s += c->x[i] * c->mask[i] * c->r[i];
    return s;
}

START_TEST(test_dropout) {
    CnnRng r;
    cnn_rng_seed(&r, 800);
    const int B = 4;
    const size_t per = 500, n = B * per;
    const float p = 0.3f;
    float *x = cnn_alloc_floats(n), *y = cnn_alloc_floats(n), *mask = cnn_alloc_floats(n);
    float *y2 = cnn_alloc_floats(n), *mask2 = cnn_alloc_floats(n), *dy = cnn_alloc_floats(n), *dx = cnn_alloc_floats(n);
    fill_uniform(x, n, -1, 1, &r);
    fill_uniform(dy, n, -1, 1, &r);
    dropout_forward(p, x, y, mask, B, per, 42, 3, 0, 1);
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert(mask[i] == 0.0f || mask[i] == 1.0f / (1.0f - p));
        ck_assert_float_eq(y[i], x[i] * mask[i]);
        dropped += mask[i] == 0.0f;
    }
    double frac = (double)dropped / n;
    ck_assert_msg(fabs(frac - p) < 0.04, "dropped fraction %.3f, expected about %.2f", frac, p);
    // Same (seed, step) -> same mask; another step -> another mask; eval is the identity.
    dropout_forward(p, x, y2, mask2, B, per, 42, 3, 0, 1);
    ck_assert(memcmp(mask, mask2, n * sizeof(float)) == 0);
    // A rank holding images 1.. of the batch draws their masks, not image 0's.
    dropout_forward(p, x + per, y2, mask2, B - 1, per, 42, 3, 1, 1);
    ck_assert(memcmp(mask + per, mask2, (n - per) * sizeof(float)) == 0);
    dropout_forward(p, x, y2, mask2, B, per, 42, 4, 0, 1);
    ck_assert(memcmp(mask, mask2, n * sizeof(float)) != 0);
    dropout_forward(p, x, y2, mask2, B, per, 42, 3, 0, 0);
    ck_assert(memcmp(x, y2, n * sizeof(float)) == 0);
    dropout_backward(mask, dy, dx, n);
    DropCtx c = {n, to_double(x, n), to_double(mask, n), to_double(dy, n)};
    check_grad("dropout dx", dx, drop_objective, &c, c.x, n);
    cnn_free(x); cnn_free(y); cnn_free(mask); cnn_free(y2); cnn_free(mask2); cnn_free(dy); cnn_free(dx);
    free(c.x); free(c.mask); free(c.r);
}
END_TEST

// ---------------------------------------------------------------- softmax cross-entropy
typedef struct {
    int B, K;
    const uint8_t *labels;
    double *z, eps;
} XentCtx;

static double xent_objective(void *p) {
    XentCtx *c = p;
    return ref_softmax_xent_smoothed(c->z, c->labels, c->B, c->K, c->eps);
}

// Without and with label smoothing (PyTorch's definition, ref_double.c).
START_TEST(test_softmax_xent) {
    CnnRng r;
    cnn_rng_seed(&r, 900);
    const int B = 5, K = 7;
    float z[35], dz[35];
    uint8_t labels[5] = {0, 6, 3, 3, 1};
    fill_uniform(z, 35, -3, 3, &r);
    int correct;
    float loss = softmax_xent(z, labels, dz, B, K, 0.0f, &correct);
    XentCtx c = {B, K, labels, to_double(z, 35), 0.0};
    ck_assert_double_eq_tol(loss, ref_softmax_xent(c.z, labels, B, K), 1e-6);
    check_grad("softmax-xent dlogits", dz, xent_objective, &c, c.z, 35);
    float dzs[35];
    c.eps = 0.1;
    const float smoothed = softmax_xent(z, labels, dzs, B, K, 0.1f, NULL);
    ck_assert_double_eq_tol(smoothed, ref_softmax_xent_smoothed(c.z, labels, B, K, 0.1), 1e-6);
    ck_assert(fabs(smoothed - loss) > 1e-3);
    check_grad("smoothed dlogits (eps 0.1)", dzs, xent_objective, &c, c.z, 35);
    int hits = 0;
    for (int b = 0; b < B; b++) {
        int arg = 0;
        for (int k = 1; k < K; k++) if (z[b * K + k] > z[b * K + arg]) arg = k;
        hits += arg == labels[b];
    }
    ck_assert_int_eq(correct, hits);
    free(c.z);
}
END_TEST

START_TEST(test_softmax_xent_large_logits) {
    // exp(1e4) overflows; the max-subtracted form does not.
    float z[6] = {1e4f, 0.0f, -1e4f, 50.0f, 50.0f, 50.0f}, dz[6];
    uint8_t labels[2] = {1, 2};
    float loss = softmax_xent(z, labels, dz, 2, 3, 0.0f, NULL);
    ck_assert(isfinite(loss));
    // Sample 0: loss 1e4, gradient (1, -1, 0)/2; sample 1: loss log 3, gradient (1/3, 1/3, -2/3)/2.
    ck_assert_double_eq_tol(loss, (1e4 + log(3.0)) / 2, 1e-2);
    const double want[6] = {0.5, -0.5, 0, 1.0 / 6, 1.0 / 6, -1.0 / 3};
    for (int i = 0; i < 6; i++) ck_assert_double_eq_tol(dz[i], want[i], 1e-6);
}
END_TEST

// ---------------------------------------------------------------- im2col / GEMM twins
START_TEST(test_gemm_matches_naive) {
    CnnRng r;
    cnn_rng_seed(&r, 1000);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            const int M = 13, N = 17, K = 11;
            float A[13 * 11], Bm[11 * 17], C1[13 * 17], C2[13 * 17];
            fill_uniform(A, sizeof A / 4, -1, 1, &r);
            fill_uniform(Bm, sizeof Bm / 4, -1, 1, &r);
            fill_uniform(C1, sizeof C1 / 4, -1, 1, &r);
            memcpy(C2, C1, sizeof C1);
            int lda = ta ? M : K, ldb = tb ? K : N;
            gemm(ta, tb, M, N, K, 0.7f, A, lda, Bm, ldb, 0.3f, C1, N);
            gemm_naive(ta, tb, M, N, K, 0.7f, A, lda, Bm, ldb, 0.3f, C2, N);
            ck_assert(rel_err_ff(C1, C2, M * N, 1e-6) < 1e-5);
        }
}
END_TEST

// Each backend's kernels for first convolutions against the naive GEMM:
// every row and column tail, with and without bias (beta 0 and 1 for the
// weight gradient), and nothing written past C.
static void check_gemm_small_k(const Kernels *kern) {
    CnnRng r;
    cnn_rng_seed(&r, 1050);
    static const int Ms[] = {1, 3, 4, 5, 32, 37}, Ns[] = {1, 7, 8, 15, 16, 17, 33, 676},
                     Ks[] = {1, 9, 27, CNN_SMALL_K_MAX};
    for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
                for (int with_bias = 0; with_bias < 2; with_bias++) {
                    const int M = Ms[mi], N = Ns[ni], K = Ks[ki];
                    float *A = cnn_alloc_floats((size_t)M * K), *Bm = cnn_alloc_floats((size_t)K * N);
                    float *bias = cnn_alloc_floats((size_t)M), *want = cnn_alloc_floats((size_t)M * N);
                    float *got = cnn_alloc_floats((size_t)M * N + 8);
                    fill_uniform(A, (size_t)M * K, -1, 1, &r);
                    fill_uniform(Bm, (size_t)K * N, -1, 1, &r);
                    fill_uniform(bias, (size_t)M, -1, 1, &r);
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < N; j++) want[(size_t)i * N + j] = with_bias ? bias[i] : 0.0f;
                    gemm_naive(0, 0, M, N, K, 1.0f, A, K, Bm, N, 1.0f, want, N);
                    for (int i = 0; i < M * N + 8; i++) got[i] = 12345.0f;
                    kern->gemm_small_k(M, N, K, A, Bm, with_bias ? bias : NULL, got);
                    ck_assert_msg(rel_err_ff(got, want, M * N, 1e-6) < 1e-5, "M %d N %d K %d", M, N, K);
                    for (int i = M * N; i < M * N + 8; i++) ck_assert_float_eq(got[i], 12345.0f);
                    // The weight gradient: dW (M,K) = beta dW + dy (M,N) . col (K,N)^T.
                    const float beta = with_bias ? 1.0f : 0.0f;
                    float *dy = cnn_alloc_floats((size_t)M * N), *dw = cnn_alloc_floats((size_t)M * K + 8);
                    float *dw_want = cnn_alloc_floats((size_t)M * K);
                    fill_uniform(dy, (size_t)M * N, -1, 1, &r);
                    fill_uniform(dw_want, (size_t)M * K, -1, 1, &r);
                    memcpy(dw, dw_want, sizeof(float) * M * K);
                    for (int i = M * K; i < M * K + 8; i++) dw[i] = 12345.0f;
                    gemm_naive(0, 1, M, K, N, 1.0f, dy, N, Bm, N, beta, dw_want, K);
                    kern->gemm_small_k_nt(M, K, N, dy, Bm, beta, dw);
                    ck_assert_msg(rel_err_ff(dw, dw_want, M * K, 1e-6) < 1e-5, "nt: M %d N %d K %d", M, N, K);
                    for (int i = M * K; i < M * K + 8; i++) ck_assert_float_eq(dw[i], 12345.0f);
                    cnn_free(dy); cnn_free(dw); cnn_free(dw_want);
                    cnn_free(A); cnn_free(Bm); cnn_free(bias); cnn_free(want); cnn_free(got);
                }
}

START_TEST(test_gemm_small_k_matches_naive) {
    int tested = 0;
    for (int kb = 0; kernels_next(&kb);) {
        const Kernels *k = kernels();
        ck_assert_msg(!k->gemm_small_k == !k->gemm_small_k_nt, "%s: half a small-K pair", k->name);
        if (!k->gemm_small_k) continue;  // this backend uses OpenBLAS for them
        check_gemm_small_k(k);
        tested++;
    }
    printf("small-K kernels of %d backends checked\n", tested);
    // An AVX2 CPU always has one to check (the "avx2" backend).
    if (CNN_X86_KERNELS && cpu_has_avx2_fma()) ck_assert_int_ge(tested, 1);
}
END_TEST

// Each backend's layout conversions against the index formula: every pixel
// tail (widths and planes not multiples of 8), padding of 0, 1 and 2.
START_TEST(test_blocked_layouts_match_naive) {
    CnnRng r;
    cnn_rng_seed(&r, 1070);
    int tested = 0;
    for (int kb = 0; kernels_next(&kb);) {
        const Kernels *k = kernels();
        if (!k->block_pad) continue;
        tested++;
        static const int shapes[][5] = {{8, 5, 13, 1, 1}, {16, 7, 8, 0, 0}, {8, 3, 3, 2, 1}, {24, 9, 17, 1, 2}};
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            const int C = shapes[si][0], H = shapes[si][1], W = shapes[si][2], PH = shapes[si][3], PW = shapes[si][4];
            const int Hp = H + 2 * PH, Wp = W + 2 * PW;
            const size_t n = (size_t)C * H * W, np = (size_t)C * Hp * Wp;
            float *x = cnn_alloc_floats(n), *xb = cnn_alloc_floats(np), *back = cnn_alloc_floats(n);
            fill_uniform(x, n, -1, 1, &r);
            fill_uniform(xb, np, 5, 6, &r);  // stale values where the halo must become 0
            k->block_pad(x, C, H, W, PH, PW, xb);
            for (int c = 0; c < C; c++)
                for (int h = 0; h < Hp; h++)
                    for (int w = 0; w < Wp; w++) {
                        const int ih = h - PH, iw = w - PW;
                        const float want = ih < 0 || ih >= H || iw < 0 || iw >= W ? 0.0f : x[((size_t)c * H + ih) * W + iw];
                        ck_assert_float_eq(xb[(((size_t)(c / 8) * Hp + h) * Wp + w) * 8 + c % 8], want);
                    }
            // unblock is the inverse on an unpadded block.
            k->block_pad(x, C, H, W, 0, 0, xb);
            k->unblock(xb, C, H, W, back);
            ck_assert_int_eq(memcmp(x, back, n * sizeof(float)), 0);
            cnn_free(x); cnn_free(xb); cnn_free(back);
        }
    }
    printf("blocked layouts of %d backends checked\n", tested);
    if (CNN_X86_KERNELS && cpu_has_avx2_fma()) ck_assert_int_ge(tested, 1);
}
END_TEST

START_TEST(test_col2im_is_adjoint_of_im2col) {
    // <im2col(x), c> == <x, col2im(c)> for any x, c: the backward scatter is exact.
    CnnRng r;
    cnn_rng_seed(&r, 1100);
    const int C = 3, H = 7, W = 6, KH = 3, KW = 2, S = 2, P = 1;
    const int OH = (H + 2 * P - KH) / S + 1, OW = (W + 2 * P - KW) / S + 1;
    const size_t nx = C * H * W, nc = (size_t)C * KH * KW * OH * OW;
    float *x = cnn_alloc_floats(nx), *col = cnn_alloc_floats(nc), *c = cnn_alloc_floats(nc), *dx = cnn_alloc_floats(nx);
    fill_uniform(x, nx, -1, 1, &r);
    fill_uniform(c, nc, -1, 1, &r);
    im2col(x, C, H, W, KH, KW, S, P, OH, OW, col);
    col2im(c, C, H, W, KH, KW, S, P, OH, OW, dx);
    double a = 0, b = 0;
    for (size_t i = 0; i < nc; i++) a += (double)col[i] * c[i];
    for (size_t i = 0; i < nx; i++) b += (double)x[i] * dx[i];
    ck_assert_double_eq_tol(a, b, 1e-4);
    cnn_free(x); cnn_free(col); cnn_free(c); cnn_free(dx);
}
END_TEST

static Suite *layers_suite(void) {
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_conv_fixed_shapes, 0, cnn_kernels_count());
    tcase_add_test(tc, test_conv_random_shapes);
    tcase_add_test(tc, test_conv_rounded_channels);
    tcase_add_test(tc, test_conv_large_vs_twins);
    tcase_add_test(tc, test_pool);
    tcase_add_test(tc, test_maxpool_ties_go_to_first);
    tcase_add_test(tc, test_maxpool_relu_grad);
    tcase_add_test(tc, test_maxpool_ties_every_width);
    tcase_add_test(tc, test_gap);
    tcase_add_test(tc, test_relu);
    tcase_add_test(tc, test_gelu);
    tcase_add_test(tc, test_batchnorm);
    tcase_add_test(tc, test_dense);
    tcase_add_test(tc, test_dropout);
    tcase_add_test(tc, test_softmax_xent);
    tcase_add_test(tc, test_softmax_xent_large_logits);
    tcase_add_test(tc, test_gemm_matches_naive);
    tcase_add_test(tc, test_gemm_small_k_matches_naive);
    tcase_add_test(tc, test_conv_winograd);
    tcase_add_test(tc, test_conv_winograd_auto_rule);
    tcase_add_test(tc, test_blocked_layouts_match_naive);
    tcase_add_test(tc, test_col2im_is_adjoint_of_im2col);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(layers_suite()); }
