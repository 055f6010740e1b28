// Nets that are graphs: names (@x), from(), add, concat and chpad; a tensor
// read by several layers; the backward pass's gradients against central
// finite differences of a double-precision twin of the whole net; the
// same parameters at any thread count; the description's errors.
#include <string.h>

#include "testutil.h"

#define GRAD_TOL 1e-4

// Layers 0-10 on a 2x7x7 input: tensor a (layer 1) feeds layers 2 and 3,
// tensor c (layer 4) feeds layers 5 and 6, the concat reads a conv and a
// subsampled tensor, chpad pads the result.
static const char *GRAPH = "conv(4,3,pad=1) relu @a conv(4,3,pad=1) add(a) relu @c conv(3,3,stride=2,pad=1) @d "
                           "from(c) maxpool(1,stride=2) concat(d) chpad(1,2) flatten dense(5)";
enum { B = 3, C = 2, H = 7, W = 7, K = 5 };

typedef struct {
    const CnnNet *net;
    double *p, *x;  // parameters (the net's arena layout) and input
    const uint8_t *labels;
} GraphCtx;

// The same net in double precision, straight from the definitions.
static double graph_loss(void *arg) {
    GraphCtx *g = arg;
    const double *p = g->p;
    const size_t o0 = cnn_net_param_offset(g->net, 0), o2 = cnn_net_param_offset(g->net, 2),
                 o5 = cnn_net_param_offset(g->net, 5), o10 = cnn_net_param_offset(g->net, 10);
    double t0[B * 4 * 49], a[B * 4 * 49], t2[B * 4 * 49], c[B * 4 * 49], d[B * 3 * 16], s[B * 4 * 16],
        cat[B * 7 * 16], pad[B * 10 * 16], z[B * K];
    ref_conv(g->x, p + o0, p + o0 + 4 * 2 * 9, t0, B, C, H, W, 4, 3, 3, 1, 1, 7, 7);
    ref_relu(t0, a, B * 4 * 49);
    ref_conv(a, p + o2, p + o2 + 4 * 4 * 9, t2, B, 4, 7, 7, 4, 3, 3, 1, 1, 7, 7);
    for (int i = 0; i < B * 4 * 49; i++) t2[i] += a[i];
    ref_relu(t2, c, B * 4 * 49);
    ref_conv(c, p + o5, p + o5 + 3 * 4 * 9, d, B, 4, 7, 7, 3, 3, 3, 2, 1, 4, 4);
    ref_maxpool(c, s, B, 4, 7, 7, 1, 2, 4, 4);
    for (int b = 0; b < B; b++) {
        memcpy(cat + b * 7 * 16, s + b * 4 * 16, sizeof(double) * 4 * 16);
        memcpy(cat + b * 7 * 16 + 4 * 16, d + b * 3 * 16, sizeof(double) * 3 * 16);
        memset(pad + b * 10 * 16, 0, sizeof(double) * 10 * 16);
        memcpy(pad + b * 10 * 16 + 16, cat + b * 7 * 16, sizeof(double) * 7 * 16);
    }
    ref_dense(pad, p + o10, p + o10 + K * 160, z, B, 160, K);
    return ref_softmax_xent(z, g->labels, B, K);
}

START_TEST(test_graph_gradients_match_finite_differences) {
    for (int kb = 0; kernels_next(&kb);) {
        CnnNet *net;
        ck_assert_msg(cnn_net_create(&net, GRAPH, C, H, W, B, 3) == CNN_OK, "%s", cnn_last_error());
        ck_assert_int_eq(cnn_net_num_layers(net), 11);
        CnnLayerInfo info;
        cnn_net_layer_info(net, 7, &info);
        ck_assert_str_eq(info.kind, "concat");
        ck_assert_int_eq(info.OC, 7);
        ck_assert_int_eq(info.input, 6);
        ck_assert_int_eq(info.input2, 5);
        cnn_net_layer_info(net, 3, &info);
        ck_assert_int_eq(info.input, 2);
        ck_assert_int_eq(info.input2, 1);
        CnnRng r;
        cnn_rng_seed(&r, 77);
        const size_t np = cnn_net_num_params(net), nx = (size_t)B * C * H * W;
        float *x = cnn_alloc_floats(nx);
        fill_uniform(x, nx, -1, 1, &r);
        fill_away_from_zero(cnn_net_params(net), np, 0.05f, 0.5f, &r);
        const uint8_t labels[B] = {1, 4, 0};
        cnn_net_forward(net, x, B, 1);
        const float loss = cnn_net_loss(net, labels, B, NULL);
        cnn_net_zero_grad(net);
        cnn_net_backward(net, B);

        GraphCtx g = {.net = net, .p = to_double(cnn_net_params(net), np), .x = to_double(x, nx), .labels = labels};
        const double ref = graph_loss(&g);
        ck_assert_msg(fabs(loss - ref) < 1e-5 * fabs(ref) + 1e-6, "loss %.8f, double twin %.8f", loss, ref);
        double *fd = malloc(np * sizeof *fd);
        finite_diff(graph_loss, &g, g.p, np, fd);
        const double e = rel_err(cnn_net_grads(net), fd, np, 1e-6);
        printf("  graph parameter gradients: rel err %.2e over %zu of %zu values\n", e, finite_diff_points(np), np);
        ck_assert_msg(e < GRAD_TOL, "kernels %s: gradient rel err %.3e", cnn_kernels_name(), e);
        free(fd);
        free(g.p);
        free(g.x);
        cnn_free(x);
        cnn_net_free(net);
    }
}
END_TEST

// Each layer kind alone between two parameter layers, with the tensor it
// reads also read by another layer: every path's gradient reaches the
// first layer (fan-out sums).
START_TEST(test_fan_out_sums_gradients) {
    // y = dense(relu(x) + relu(x)) must give the first layer twice the
    // gradient of y = dense(2 relu(x)) computed through one path.
    CnnNet *twice, *once;
    ck_assert_int_eq(cnn_net_create(&twice, "conv(3,3) @a relu @b from(a) relu add(b) flatten dense(4)", 2, 6, 6, 2, 9),
                     CNN_OK);
    ck_assert_int_eq(cnn_net_create(&once, "conv(3,3) relu flatten dense(4)", 2, 6, 6, 2, 9), CNN_OK);
    ck_assert_uint_eq(cnn_net_num_params(twice), cnn_net_num_params(once));
    const size_t np = cnn_net_num_params(once), nd = (size_t)4 * 48 + 4, nc = np - nd;
    CnnRng r;
    cnn_rng_seed(&r, 5);
    float *x = cnn_alloc_floats(2 * 72);
    fill_uniform(x, 2 * 72, -1, 1, &r);
    fill_uniform(cnn_net_params(twice), np, -0.5f, 0.5f, &r);
    memcpy(cnn_net_params(once), cnn_net_params(twice), np * sizeof(float));
    // The dense weights of `once` doubled: its logits equal `twice`'s.
    for (size_t i = nc; i < nc + 4 * 48; i++) cnn_net_params(once)[i] *= 2;
    const uint8_t labels[2] = {3, 1};
    CnnNet *nets[2] = {twice, once};
    for (int k = 0; k < 2; k++) {
        cnn_net_forward(nets[k], x, 2, 1);
        cnn_net_loss(nets[k], labels, 2, NULL);
        cnn_net_zero_grad(nets[k]);
        cnn_net_backward(nets[k], 2);
    }
    // The conv's gradients agree (the sum of two equal paths against one doubled).
    ck_assert(rel_err_ff(cnn_net_grads(twice), cnn_net_grads(once), nc, 1e-6) < 1e-6);
    cnn_free(x);
    cnn_net_free(twice);
    cnn_net_free(once);
}
END_TEST

// A residual net with batch norm, a projection shortcut and an option-A
// shortcut (channels of 8, so the direct and Winograd kernels run too).
static const char *RESIDUAL =
    "conv(8,3,pad=1,bias=0) bn relu "
    "[@x conv(8,3,pad=1,bias=0) bn relu conv(8,3,pad=1,bias=0) bn add(x) relu] x2 "
    "@y conv(16,3,stride=2,pad=1,bias=0) bn relu conv(16,3,pad=1,bias=0) bn @r from(y) maxpool(1,stride=2) "
    "chpad(4) add(r) relu "
    "@z conv(16,3,pad=1,bias=0) bn relu conv(16,3,pad=1,bias=0) bn @q from(z) conv(16,1,bias=0) bn add(q) relu "
    "@u conv(8,1) concat(u) gap dense(5)";

START_TEST(test_residual_bit_identical_across_thread_counts) {
    CnnNet *probe;
    ck_assert_msg(cnn_net_create(&probe, RESIDUAL, 3, 12, 10, 1, 11) == CNN_OK, "%s", cnn_last_error());
    const size_t n = cnn_net_num_params(probe) + cnn_net_num_buffers(probe);
    cnn_net_free(probe);
    for (int kb = 0; kernels_next(&kb);) {
        float *ref = train_with_threads(RESIDUAL, 1, 3, 37);
        static const int threads[] = {2, 3, 7};
        for (int t = 0; t < 3; t++) {
            float *p = train_with_threads(RESIDUAL, threads[t], 3, 37);
            ck_assert_msg(memcmp(ref, p, n * sizeof(float)) == 0,
                          "kernels %s: parameters after 3 steps differ between 1 and %d threads", cnn_kernels_name(),
                          threads[t]);
            free(p);
        }
        free(ref);
    }
}
END_TEST

// (Refused graph descriptions are in test_net.c's test_description_errors.)
START_TEST(test_graph_descriptions) {
    static const struct {
        const char *desc, *canonical;
        int layers;
    } ok[] = {
        // A name given again inside a repeated group means the latest tensor.
        {"conv(4,3,pad=1) [@x conv(4,3,pad=1) add(x)] x2 flatten dense(3)",
         "conv(4,3,stride=1,pad=1) @x conv(4,3,stride=1,pad=1) add(x) @x conv(4,3,stride=1,pad=1) add(x) flatten "
         "dense(3)", 7},
        // The input can be named; cat is concat's other name; chpad(n) pads both sides.
        {"@in conv(4,3,pad=1) cat(in) chpad(2) flatten dense(3)",
         "@in conv(4,3,stride=1,pad=1) concat(in) chpad(2,2) flatten dense(3)", 5},
        // Names after the last layer name nothing used: dropped.
        {"@a relu add(a) flatten dense(3) @out", "@a relu add(a) flatten dense(3)", 4},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        CnnNet *net, *again;
        ck_assert_msg(cnn_net_create(&net, ok[i].desc, 2, 5, 5, 2, 1) == CNN_OK, "%s: %s", ok[i].desc,
                      cnn_last_error());
        ck_assert_str_eq(cnn_net_desc(net), ok[i].canonical);
        ck_assert_int_eq(cnn_net_num_layers(net), ok[i].layers);
        ck_assert_int_eq(cnn_net_create(&again, cnn_net_desc(net), 2, 5, 5, 2, 1), CNN_OK);
        ck_assert_str_eq(cnn_net_desc(again), cnn_net_desc(net));
        cnn_net_free(again);
        cnn_net_free(net);
    }
    // Repeated groups: the second copy's add reads the first copy's output.
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "conv(4,3,pad=1) [@x conv(4,3,pad=1) add(x)] x2 flatten dense(3)", 2, 5, 5,
                                    2, 1), CNN_OK);
    CnnLayerInfo info;
    cnn_net_layer_info(net, 4, &info);
    ck_assert_int_eq(info.input, 3);
    ck_assert_int_eq(info.input2, 2);
    cnn_net_free(net);

}
END_TEST

int main(void) {
    Suite *s = suite_create("graph");
    TCase *tc = tcase_create("graph");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_graph_descriptions);
    tcase_add_test(tc, test_graph_gradients_match_finite_differences);
    tcase_add_test(tc, test_fan_out_sums_gradients);
    tcase_add_test(tc, test_residual_bit_identical_across_thread_counts);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
