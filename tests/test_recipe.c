// The pieces of fast training recipes (airbench94): mul, dirac and whitening
// initialisation, learning-rate multipliers and frozen parameters, schedule
// start and end fractions, and test-time augmentation with shifted views.
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datagen.h"
#include "layers/layer.h"
#include "testutil.h"

// ---------------------------------------------------------------- mul
typedef struct {
    double f, x[7];
    const float *dy;
} MulCtx;

static double mul_objective(void *p) {
    const MulCtx *c = p;
    double s = 0.0;
    for (int i = 0; i < 7; i++) s += c->f * c->x[i] * c->dy[i];
    return s;
}

START_TEST(test_mul_layer) {
    const LayerOps *ops = layer_ops_find("mul");
    ck_assert_ptr_nonnull(ops);
    ck_assert_ptr_eq(layer_ops_find("scale"), ops);
    float x[7] = {1, -2, 3.5f, 0, -0.25f, 8, 1e-3f}, y[7], dy[7] = {1, 1, -1, 2, 3, -4, 0.5f}, dx[7];
    Layer l = {.spec = {.ops = ops, .p = -0.375f}, .out = y, .out_size = 7};
    const LayerRun run = {.B = 1};
    ops->forward(&l, x, &run);
    for (int i = 0; i < 7; i++) ck_assert_float_eq(y[i], -0.375f * x[i]);
    // Linear: the gradient is the factor times dy, in place as the net runs it.
    memcpy(dx, dy, sizeof dx);
    ops->backward(&l, x, dx, dx, &run);
    for (int i = 0; i < 7; i++) ck_assert_float_eq(dx[i], -0.375f * dy[i]);
    // ... which central differences of sum(mul(x) * dy) in double agree with.
    MulCtx c = {.f = -0.375, .dy = dy};
    for (int i = 0; i < 7; i++) c.x[i] = x[i];
    double g[7];
    finite_diff(mul_objective, &c, c.x, 7, g);
    ck_assert(rel_err(dx, g, 7, 1e-6) < 1e-6);
    // In a net: the logits are exactly the factor times those without it.
    CnnNet *a, *b;
    ck_assert_int_eq(cnn_net_create(&a, "conv(4,3) relu flatten dense(5)", 2, 6, 6, 3, 9), CNN_OK);
    ck_assert_int_eq(cnn_net_create(&b, "conv(4,3) relu flatten dense(5) mul(0.11111111)", 2, 6, 6, 3, 9), CNN_OK);
    ck_assert_str_eq(cnn_net_desc(b), "conv(4,3,stride=1,pad=0) relu flatten dense(5) mul(0.111111112)");
    float in[3 * 72];
    CnnRng r;
    cnn_rng_seed(&r, 3);
    fill_uniform(in, 3 * 72, -1, 1, &r);
    float la[15];
    memcpy(la, cnn_net_forward(a, in, 3, 0), sizeof la);
    const float *lb = cnn_net_forward(b, in, 3, 0);
    for (int i = 0; i < 15; i++) ck_assert_float_eq(lb[i], 0.11111111f * la[i]);
    cnn_net_free(a);
    cnn_net_free(b);
}
END_TEST

// ---------------------------------------------------------------- dirac
START_TEST(test_dirac_initialisation) {
    // Wider than its input: the first 4 output channels copy the input's.
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "conv(6,3,pad=1,bias=0,init=dirac) flatten dense(2)", 4, 5, 7, 2, 5),
                     CNN_OK);
    ck_assert_str_eq(cnn_net_desc(net), "conv(6,3,stride=1,pad=1,bias=0,init=dirac) flatten dense(2)");
    float x[2 * 4 * 35];
    CnnRng r;
    cnn_rng_seed(&r, 8);
    fill_uniform(x, 2 * 4 * 35, -1, 1, &r);
    for (int pass = 0; pass < 2; pass++) {  // as built, then re-initialised with He's
        // (Within rounding: a Winograd forward transforms the identity too.)
        cnn_net_forward(net, x, 2, 0);
        const float *y = net_tensor_data(net, 0);
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 4; c++)
                for (int i = 0; i < 35; i++)
                    ck_assert_float_eq_tol(y[(b * 6 + c) * 35 + i], x[(b * 4 + c) * 35 + i], 1e-6f);
        // The other two keep random filters.
        const float *w = cnn_net_params(net) + 4 * 4 * 9;
        int nonzero = 0;
        for (int i = 0; i < 2 * 4 * 9; i++) nonzero += w[i] != 0.0f;
        ck_assert_int_eq(nonzero, 72);
        cnn_net_init_weights_as(net, 4, CNN_INIT_HE);
    }
    cnn_net_free(net);
    // Narrower than its input: each of its filters is an identity.
    ck_assert_int_eq(cnn_net_create(&net, "conv(2,3x1,pad=1,bias=0,init=dirac) flatten dense(2)", 3, 4, 4, 1, 5),
                     CNN_OK);
    const float *w = cnn_net_params(net);
    for (int o = 0; o < 2; o++)
        for (int i = 0; i < 3 * 3; i++) ck_assert_float_eq(w[o * 9 + i], i == o * 3 + 1 ? 1.0f : 0.0f);
    cnn_net_free(net);
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_net_create(&net, "conv(2,3,init=identity) flatten dense(2)", 3, 4, 4, 1, 5), CNN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "init=identity is not default, dirac or whiten"));
    cnn_set_quiet(0);
}
END_TEST

// ---------------------------------------------------------------- whitening
// Correlated images: each pixel mixes its own noise with its neighbours'
// and the other channels'.
static void correlated_images(float *x, int n, int C, int H, int W, uint64_t seed) {
    CnnRng r;
    cnn_rng_seed(&r, seed);
    const size_t size = (size_t)n * C * H * W;
    float *noise = malloc(size * sizeof *noise);
    for (size_t i = 0; i < size; i++) noise[i] = (float)cnn_rng_normal(&r);
    for (int b = 0; b < n; b++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    const float *z = noise + (size_t)b * C * H * W;
                    float v = 2.0f * z[(c * H + y) * W + xx] + 0.3f;
                    if (xx > 0) v += 1.5f * z[(c * H + y) * W + xx - 1];
                    if (y > 0) v -= 0.7f * z[(c * H + y - 1) * W + xx];
                    v += 0.8f * z[(((c + 1) % C) * H + y) * W + xx];
                    x[(((size_t)b * C + c) * H + y) * W + xx] = v;
                }
    free(noise);
}

// The whitening filters against their definition: with S the patch
// covariance (computed here in double, straight from the patches) and w_j
// the filters, w_j = v_j / sqrt(l_j + eps) for eigenpairs S v_j = l_j v_j,
// largest first, then -w_j; so W S W^T = diag(l / (l + eps)).
START_TEST(test_whitening_initialisation) {
    enum { N = 40, C = 3, H = 9, W = 8, D = 12 };
    static float x[N * C * H * W];
    correlated_images(x, N, C, H, W, 11);
    const char *desc = "conv(24,2,init=whiten,weight_lr=0) gelu flatten dense(3)";
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, desc, C, H, W, 16, 1), CNN_OK);
    ck_assert_int_eq(cnn_net_whitening_layers(net), 1);
    ck_assert_int_eq(cnn_net_init_whitening(net, x, N), CNN_OK);
    const float *w = cnn_net_params(net);
    double S[D][D] = {{0}};
    long patches = 0;
    for (int b = 0; b < N; b++)
        for (int oy = 0; oy + 1 < H; oy++)
            for (int ox = 0; ox + 1 < W; ox++, patches++) {
                double p[D];
                for (int c = 0, d = 0; c < C; c++)
                    for (int ky = 0; ky < 2; ky++)
                        for (int kx = 0; kx < 2; kx++, d++) p[d] = x[((b * C + c) * H + oy + ky) * W + ox + kx];
                for (int i = 0; i < D; i++)
                    for (int j = 0; j < D; j++) S[i][j] += p[i] * p[j];
            }
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) S[i][j] /= (double)patches;
    double prev = INFINITY, lambda0 = 0.0;
    for (int j = 0; j < D; j++) {
        double norm2 = 0.0, Sv[D] = {0};
        for (int k = 0; k < D; k++) norm2 += (double)w[j * D + k] * w[j * D + k];
        const double lambda = 1.0 / norm2 - 5e-4;
        ck_assert_msg(lambda > 0 && lambda <= prev * (1 + 1e-6), "eigenvalue %d: %g after %g", j, lambda, prev);
        prev = lambda;
        if (j == 0) lambda0 = lambda;
        // S v = lambda v for v = w_j / |w_j|.
        for (int a = 0; a < D; a++)
            for (int k = 0; k < D; k++) Sv[a] += S[a][k] * w[j * D + k] / sqrt(norm2);
        for (int a = 0; a < D; a++)
            ck_assert_msg(fabs(Sv[a] - lambda * w[j * D + a] / sqrt(norm2)) < 1e-5 * lambda0,
                          "filter %d is not an eigenvector (component %d)", j, a);
        // W S W^T: diagonal, l / (l + eps) on it.
        for (int i = 0; i < D; i++) {
            double q = 0.0;
            for (int a = 0; a < D; a++)
                for (int k = 0; k < D; k++) q += (double)w[i * D + a] * S[a][k] * w[j * D + k];
            const double want = i == j ? lambda / (lambda + 5e-4) : 0.0;
            ck_assert_msg(fabs(q - want) < 2e-5, "(W S W^T)[%d][%d] = %g, want %g", i, j, q, want);
        }
        for (int k = 0; k < D; k++) ck_assert_float_eq(w[(D + j) * D + k], -w[j * D + k]);
    }
    for (int o = 0; o < 24; o++) ck_assert_float_eq(w[24 * D + o], 0.0f);  // the bias
    // The same weights at any thread count, and from a rebuilt net.
    const int threads = omp_get_max_threads();
    CnnNet *again;
    ck_assert_int_eq(cnn_net_create(&again, desc, C, H, W, 16, 1), CNN_OK);
    omp_set_num_threads(threads == 1 ? 2 : 1);
    ck_assert_int_eq(cnn_net_init_whitening(again, x, N), CNN_OK);
    omp_set_num_threads(threads);
    ck_assert(memcmp(cnn_net_params(net), cnn_net_params(again), 24 * (D + 1) * sizeof(float)) == 0);
    cnn_net_free(again);
    cnn_net_free(net);
    // A whitening layer after another sees what that layer makes of the
    // images: the patch covariance of its input, so its own outputs are
    // decorrelated (checked on channels 0 and 1 over the same images).
    ck_assert_int_eq(cnn_net_create(&net, "conv(2,1) relu conv(16,2,init=whiten) flatten dense(2)", C, H, W, 16, 1),
                     CNN_OK);
    ck_assert_int_eq(cnn_net_init_whitening(net, x, N), CNN_OK);
    double s01 = 0.0, s00 = 0.0, s11 = 0.0;
    for (int b0 = 0; b0 < N; b0 += 16) {
        const int B = N - b0 < 16 ? N - b0 : 16;
        cnn_net_forward(net, x + (size_t)b0 * C * H * W, B, 0);
        const float *y = net_tensor_data(net, 2);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < (H - 1) * (W - 1); i++) {
                const double y0 = y[(b * 16 + 0) * (H - 1) * (W - 1) + i], y1 = y[(b * 16 + 1) * (H - 1) * (W - 1) + i];
                s00 += y0 * y0, s11 += y1 * y1, s01 += y0 * y1;
            }
    }
    ck_assert_msg(fabs(s01) < 1e-4 * sqrt(s00 * s11), "whitened channels 0 and 1 correlate: %g", s01 / sqrt(s00 * s11));
    cnn_net_free(net);
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_net_create(&net, "conv(k=2,init=whiten) flatten dense(2)", C, H, W, 4, 1), CNN_OK);
    ck_assert_int_eq(cnn_net_init_whitening(net, x, 0), CNN_EARG);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "whitening needs at least one image"));
    cnn_net_free(net);
    ck_assert_int_eq(cnn_net_create(&net, "conv(10,2,init=whiten) flatten dense(2)", 3, 8, 8, 1, 1), CNN_ESHAPE);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "init=whiten needs 2 x in x kh x kw = 24 output channels"));
    // Without an output count it takes its own.
    ck_assert_int_eq(cnn_net_create(&net, "conv(k=2,init=whiten) flatten dense(2)", 2, 8, 8, 1, 1), CNN_OK);
    ck_assert_str_eq(cnn_net_desc(net), "conv(16,2,stride=1,pad=0,init=whiten) flatten dense(2)");
    cnn_net_free(net);
    ck_assert_int_eq(cnn_net_create(&net, "conv(k=2) flatten dense(2)", 2, 8, 8, 1, 1), CNN_EFORMAT);
    cnn_set_quiet(0);
}
END_TEST

// ---------------------------------------------------------------- learning-rate multipliers
// SGD with momentum, Nesterov and weight decay over two steps: a multiplier
// of 0 freezes (value and momentum), one of 4 scales the gradient, not the
// decay (as PyTorch param groups with lr 4x and weight_decay / 4).
START_TEST(test_lr_multipliers) {
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_SGD);
    opt.momentum = 0.85f;
    opt.nesterov = 1;
    opt.weight_decay = 0.01f;
    float p[3] = {1.0f, 2.0f, -3.0f}, m[3] = {0}, v[3] = {0};
    const float g[3] = {0.5f, -0.25f, 2.0f}, scale[3] = {0.0f, 1.0f, 4.0f};
    double want_p[3] = {1.0, 2.0, -3.0}, buf[3] = {0};
    for (int step = 0; step < 2; step++) {
        cnn_opt_step_scaled(&opt, p, g, m, v, 3, 0.1f, NULL, scale);
        for (int i = 1; i < 3; i++) {
            const double d = scale[i] * g[i] + 0.01 * want_p[i];
            buf[i] = step == 0 ? d : 0.85 * buf[i] + d;
            want_p[i] -= 0.1 * (d + 0.85 * buf[i]);
        }
    }
    ck_assert_float_eq(p[0], 1.0f);
    ck_assert_float_eq(m[0], 0.0f);
    for (int i = 1; i < 3; i++) ck_assert_double_eq_tol(p[i], want_p[i], 1e-6);
    // In a net: weight_lr=0 freezes a conv's weights and a batch norm's
    // scale; bias_lr=4 moves the shift 4x as far on the first step.
    CnnNet *a, *b;
    ck_assert_int_eq(cnn_net_create(&a, "conv(4,3,weight_lr=0) bn(weight_lr=0,bias_lr=4) relu flatten dense(3)",
                                    2, 5, 5, 4, 3), CNN_OK);
    ck_assert_int_eq(cnn_net_create(&b, "conv(4,3) bn relu flatten dense(3)", 2, 5, 5, 4, 3), CNN_OK);
    ck_assert_str_eq(cnn_net_desc(a), "conv(4,3,stride=1,pad=0,weight_lr=0) batchnorm(eps=1e-05,momentum=0.1,"
                     "weight_lr=0,bias_lr=4) relu flatten dense(3)");
    float x[4 * 50], before[195];
    const uint8_t y[4] = {0, 1, 2, 1};
    CnnRng r;
    cnn_rng_seed(&r, 4);
    fill_uniform(x, 200, -1, 1, &r);
    memcpy(before, cnn_net_params(a), sizeof before);
    CnnOptimizer sa, sb;
    cnn_opt_defaults(&sa, CNN_OPT_SGD);
    cnn_opt_defaults(&sb, CNN_OPT_SGD);
    sa.weight_decay = sb.weight_decay = 0.5f;
    cnn_net_train_step(a, &sa, x, y, 4, 0.1f, NULL);
    cnn_net_train_step(b, &sb, x, y, 4, 0.1f, NULL);
    const float *pa = cnn_net_params(a), *pb = cnn_net_params(b);
    ck_assert_uint_eq(cnn_net_num_params(a), 195);  // conv 72 + 4, bn 4 + 4, dense 108 + 3
    for (int i = 0; i < 72; i++) ck_assert_float_eq(pa[i], before[i]);                   // conv weights: frozen
    for (int i = 72; i < 76; i++) ck_assert_float_eq(pa[i], pb[i]);                      // conv bias: as usual
    for (int i = 76; i < 80; i++) ck_assert_float_eq(pa[i], 1.0f);                       // bn scale: frozen at 1
    for (int i = 80; i < 84; i++) {                                                      // bn shift: 4x the step
        const float g4 = (pa[i] - before[i] * (1.0f - 0.1f * 0.5f)) / -0.1f;
        const float g1 = (pb[i] - before[i] * (1.0f - 0.1f * 0.5f)) / -0.1f;
        ck_assert_msg(fabsf(g4 - 4.0f * g1) <= 1e-5f * (fabsf(g4) + 1e-3f), "bn shift %d: %g vs 4 x %g", i, g4, g1);
    }
    cnn_net_free(a);
    cnn_net_free(b);
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_net_create(&a, "conv(4,3) relu(weight_lr=0)", 2, 5, 5, 4, 3), CNN_EFORMAT);
    ck_assert_int_eq(cnn_net_create(&a, "conv(4,3,bias_lr=-1)", 2, 5, 5, 4, 3), CNN_EFORMAT);
    cnn_set_quiet(0);
}
END_TEST

// ---------------------------------------------------------------- schedules
START_TEST(test_schedule_fractions) {
    // airbench94's: from 0.2 lr up to lr over the warm-up, then down to 0.07 lr.
    CnnSchedule s = {.kind = CNN_SCHED_LINEAR, .lr = 0.4f, .epochs = 2, .warmup = 10, .start_frac = 0.2f,
                     .end_frac = 0.07f};
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 0, 50), 0.4f * (0.2f + 0.8f * 0.1f), 1e-7f);
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 9, 50), 0.4f, 1e-7f);
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 55, 50), 0.4f * (1.0f - 0.93f * 0.5f), 1e-7f);
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 100, 50), 0.4f * 0.07f, 1e-7f);
    s.kind = CNN_SCHED_COSINE;
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 55, 50), 0.4f * (0.07f + 0.93f * 0.5f), 1e-6f);
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 100, 50), 0.4f * 0.07f, 1e-7f);
}
END_TEST

// ---------------------------------------------------------------- frozen whitening bias
// Frozen, the whitening layer's bias keeps its value through SGD steps with
// momentum and weight decay while the other layers train; thawed, it trains
// again. The whitening weights (weight_lr=0) never move.
START_TEST(test_freeze_whitening_bias) {
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "conv(k=2,init=whiten,weight_lr=0) gelu flatten dense(3)", 2, 5, 5, 4, 3),
                     CNN_OK);
    float x[4 * 50];
    const uint8_t y[4] = {0, 1, 2, 1};
    CnnRng r;
    cnn_rng_seed(&r, 7);
    fill_uniform(x, 200, -1, 1, &r);
    ck_assert_int_eq(cnn_net_init_whitening(net, x, 4), CNN_OK);
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_SGD);
    opt.momentum = 0.9f;
    opt.weight_decay = 0.01f;
    const size_t np = cnn_net_num_params(net), nw = 16 * 2 * 2 * 2, nb = 16;  // 16 = 2 x 2 x 2 x 2 filters
    const float *p = cnn_net_params(net);
    float *before = malloc(np * sizeof *before);
    for (int phase = 0; phase < 3; phase++) {  // thawed, frozen, thawed again
        const int frozen = phase == 1;
        ck_assert_int_eq(cnn_net_freeze_whitening_bias(net, frozen), CNN_OK);
        memcpy(before, p, np * sizeof *before);
        cnn_net_train_step(net, &opt, x, y, 4, 0.1f, NULL);
        int bias_moved = 0, rest_moved = 0;
        for (size_t i = 0; i < nw; i++) ck_assert_float_eq(p[i], before[i]);
        for (size_t i = nw; i < nw + nb; i++) bias_moved += p[i] != before[i];
        for (size_t i = nw + nb; i < np; i++) rest_moved += p[i] != before[i];
        ck_assert_int_eq(bias_moved, frozen ? 0 : (int)nb);
        ck_assert_int_gt(rest_moved, (int)(np - nw - nb) / 2);
    }
    free(before);
    cnn_net_free(net);
    // A net without a whitening layer: nothing to do.
    ck_assert_int_eq(cnn_net_create(&net, "conv(4,3) relu flatten dense(3)", 2, 5, 5, 4, 3), CNN_OK);
    ck_assert_int_eq(cnn_net_freeze_whitening_bias(net, 1), CNN_OK);
    cnn_net_free(net);
}
END_TEST

// ---------------------------------------------------------------- Lookahead
// A sync moves the slow copy of parameters and batch-norm statistics toward
// the fast ones and restarts the fast ones there; checkpoints keep the slow
// copy and a net without Lookahead loads such a file, leaving it out.
START_TEST(test_lookahead) {
    const char *desc = "conv(4,3) bn relu flatten dense(3)";
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, desc, 2, 5, 5, 4, 3), CNN_OK);
    ck_assert_int_eq(cnn_net_lookahead(net), 0);
    cnn_net_lookahead_sync(net, 0.5f);  // no-op without one
    ck_assert_int_eq(cnn_net_set_lookahead(net, 1), CNN_OK);
    ck_assert_int_eq(cnn_net_lookahead(net), 1);
    const size_t np = cnn_net_num_params(net), nb = cnn_net_num_buffers(net);
    float *p0 = malloc(np * sizeof *p0), *b0 = malloc(nb * sizeof *b0);
    memcpy(p0, cnn_net_params(net), np * sizeof *p0);
    memcpy(b0, cnn_net_buffers(net), nb * sizeof *b0);
    // A training step moves the fast weights and the running statistics.
    float x[4 * 50];
    const uint8_t y[4] = {0, 1, 2, 1};
    CnnRng r;
    cnn_rng_seed(&r, 4);
    fill_uniform(x, 200, -1, 1, &r);
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_SGD);
    cnn_net_train_step(net, &opt, x, y, 4, 0.1f, NULL);
    float *p1 = malloc(np * sizeof *p1), *b1 = malloc(nb * sizeof *b1);
    memcpy(p1, cnn_net_params(net), np * sizeof *p1);
    memcpy(b1, cnn_net_buffers(net), nb * sizeof *b1);
    cnn_net_lookahead_sync(net, 0.75f);
    const float *p = cnn_net_params(net), *b = cnn_net_buffers(net);
    int moved = 0;
    for (size_t i = 0; i < np; i++) {
        ck_assert_float_eq(p[i], p0[i] + 0.25f * (p1[i] - p0[i]));
        moved += p1[i] != p0[i];
    }
    for (size_t i = 0; i < nb; i++) ck_assert_float_eq(b[i], b0[i] + 0.25f * (b1[i] - b0[i]));
    ck_assert_int_gt(moved, (int)np / 2);
    // alpha 1: the fast weights return to the slow ones.
    cnn_net_train_step(net, &opt, x, y, 4, 0.1f, NULL);
    cnn_net_lookahead_sync(net, 1.0f);
    for (size_t i = 0; i < np; i++) ck_assert_float_eq(p[i], p0[i] + 0.25f * (p1[i] - p0[i]));
    // The slow copy goes through a checkpoint; another step makes fast and slow differ first.
    cnn_net_train_step(net, &opt, x, y, 4, 0.1f, NULL);
    char path[] = "/tmp/cnnc-lookahead-XXXXXX";
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(cnn_checkpoint_save(path, net, NULL, NULL), CNN_OK);
    CnnNet *again, *plain;
    ck_assert_int_eq(cnn_net_create(&again, desc, 2, 5, 5, 4, 9), CNN_OK);
    ck_assert_int_eq(cnn_net_set_lookahead(again, 1), CNN_OK);
    ck_assert_int_eq(cnn_checkpoint_load(path, again, NULL, NULL), CNN_OK);
    cnn_net_lookahead_sync(net, 0.5f);
    cnn_net_lookahead_sync(again, 0.5f);
    ck_assert(memcmp(cnn_net_params(net), cnn_net_params(again), np * sizeof(float)) == 0);
    ck_assert(memcmp(cnn_net_buffers(net), cnn_net_buffers(again), nb * sizeof(float)) == 0);
    ck_assert_int_eq(cnn_net_create(&plain, desc, 2, 5, 5, 4, 9), CNN_OK);
    ck_assert_int_eq(cnn_checkpoint_load(path, plain, NULL, NULL), CNN_OK);
    unlink(path);
    free(p0); free(b0); free(p1); free(b1);
    cnn_net_free(net);
    cnn_net_free(again);
    cnn_net_free(plain);
}
END_TEST

// ---------------------------------------------------------------- test-time augmentation
// Levels 1 and 2 against the views built image by image here (mirrors and
// reflect-padded one-pixel shifts from cnn_image_to_float_pad).
START_TEST(test_tta_levels) {
    enum { N = 13, C = 3, H = 6, W = 7, K = 10, IMG = C * H * W };
    CnnDataset d;
    gen_dataset(&d, N, C, H, W);
    const float mean[3] = {0.4f, 0.5f, 0.45f}, std[3] = {0.25f, 0.2f, 0.3f};
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "conv(4,3,pad=1) relu maxpool(2) flatten dense(10)", C, H, W, 5, 2),
                     CNN_OK);
    static float view[IMG], want[N][K];
    static const struct { int d, flip; float weight[3]; } views[] = {
        {0, 0, {1, 0.5f, 0.25f}}, {0, 1, {0, 0.5f, 0.25f}}, {-1, 0, {0, 0, 0.125f}}, {-1, 1, {0, 0, 0.125f}},
        {1, 0, {0, 0, 0.125f}},   {1, 1, {0, 0, 0.125f}}};
    for (int level = 0; level <= 2; level++) {
        double loss_want = 0.0;
        int64_t cm_want[K * K] = {0}, cm[K * K];
        for (int i = 0; i < N; i++) {
            for (int k = 0; k < K; k++) want[i][k] = 0.0f;
            for (size_t v = 0; v < 6; v++) {
                if (views[v].weight[level] == 0.0f) continue;
                cnn_image_to_float_pad(d.images + (size_t)i * IMG, C, H, W, mean, std, views[v].d, views[v].d,
                                       views[v].flip, 1, view);
                const float *l = cnn_net_forward(net, view, 1, 0);
                for (int k = 0; k < K; k++) want[i][k] += views[v].weight[level] * l[k];
            }
            double mx = want[i][0], z = 0.0;
            for (int k = 1; k < K; k++) mx = want[i][k] > mx ? want[i][k] : mx;
            for (int k = 0; k < K; k++) z += exp(want[i][k] - mx);
            loss_want += (mx + log(z) - want[i][d.labels[i]]) / N;
            cnn_confusion_add(cm_want, K, want[i], d.labels + i, 1);
        }
        double loss;
        ck_assert_int_eq(cnn_evaluate_tta(net, &d, mean, std, level, &loss, cm), CNN_OK);
        ck_assert_msg(fabs(loss - loss_want) < 1e-5 * (1 + loss_want), "level %d: loss %g, want %g", level, loss,
                      loss_want);
        ck_assert(memcmp(cm, cm_want, sizeof cm) == 0);
    }
    cnn_set_quiet(1);
    double loss;
    int64_t cm[K * K];
    ck_assert_int_eq(cnn_evaluate_tta(net, &d, mean, std, 3, &loss, cm), CNN_EARG);
    cnn_set_quiet(0);
    cnn_net_free(net);
    cnn_dataset_free(&d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("recipe");
    TCase *tc = tcase_create("recipe");
    tcase_add_test(tc, test_mul_layer);
    tcase_add_test(tc, test_dirac_initialisation);
    tcase_add_test(tc, test_whitening_initialisation);
    tcase_add_test(tc, test_lr_multipliers);
    tcase_add_test(tc, test_schedule_fractions);
    tcase_add_test(tc, test_lookahead);
    tcase_add_test(tc, test_freeze_whitening_bias);
    tcase_add_test(tc, test_tta_levels);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
