// A tiny network, a small residual graph and airbench94's pieces against
// PyTorch (fixtures written by tools/make_reference.py): logits, loss, every
// gradient, 10 Adam (or SGD) steps, BN running statistics, and
// evaluation-mode logits; and the residual net's tensors under its PyTorch
// state_dict names and shapes.
#include <string.h>

#include "testutil.h"

#ifndef FIXTURE_DIR
#error "FIXTURE_DIR must be defined by the build"
#endif

static const char *DESC = "conv(5,3,pad=1,bias=0) bn relu maxpool(2) conv(6,3,stride=2,pad=1) relu avgpool(2) "
                          "flatten dense(8) relu dense(3)";
static const char *RESIDUAL_DESC =
    "conv(8,3,pad=1,bias=0) bn relu @x conv(8,3,pad=1,bias=0) bn relu conv(8,3,pad=1,bias=0) bn add(x) "
    "relu @y conv(16,3,stride=2,pad=1,bias=0) bn relu conv(16,3,pad=1,bias=0) bn @r from(y) "
    "maxpool(1,stride=2) chpad(4) add(r) relu @z conv(16,1,bias=0) bn @q from(z) conv(8,1) concat(q) "
    "gap dense(3)";
static const char *RECIPE_DESC =
    "conv(k=2,init=whiten,weight_lr=0) gelu conv(8,3,pad=1,bias=0) maxpool(2) "
    "bn(eps=1e-12,momentum=0.4,weight_lr=0,bias_lr=64) gelu conv(8,3,pad=1,bias=0) "
    "bn(eps=1e-12,momentum=0.4,weight_lr=0,bias_lr=64) gelu maxpool(2) flatten dense(3,bias=0) "
    "mul(0.11111111)";

typedef struct {
    char name[32];
    size_t n;
    float *v;
} Fixture;

static Fixture fx[16];
static int nfx;

static void load_fixtures(const char *path) {
    for (int i = 0; i < nfx; i++) free(fx[i].v);
    nfx = 0;
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    while (nfx < 16 && fscanf(f, "%31s %zu", fx[nfx].name, &fx[nfx].n) == 2) {
        fx[nfx].v = malloc(fx[nfx].n * sizeof(float));
        for (size_t i = 0; i < fx[nfx].n; i++) ck_assert_int_eq(fscanf(f, "%f", &fx[nfx].v[i]), 1);
        nfx++;
    }
    fclose(f);
}

static const Fixture *get(const char *name) {
    for (int i = 0; i < nfx; i++)
        if (!strcmp(fx[i].name, name)) return &fx[i];
    ck_abort_msg("fixture %s missing", name);
    return NULL;
}

static void compare(const char *name, const float *got, size_t n, double tol) {
    const Fixture *w = get(name);
    ck_assert_uint_eq(w->n, n);
    double e = rel_err_ff(got, w->v, n, 1e-3);
    printf("  %-22s max rel diff %.2e (tolerance %.0e)\n", name, e, tol);
    ck_assert_msg(e < tol, "%s differs from PyTorch: %.3e", name, e);
}

// The optimiser of the 10 steps (NULL: Adam, lr 1e-2), the label
// smoothing, and the fixture row of the parameters after them.
static void run_against_pytorch_with(const char *fixture, const char *desc, int C, int H, int W,
                                     const CnnOptimizer *sgd, float smoothing, const char *after) {
    load_fixtures(fixture);
    const int B = 4, K = 3;
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, desc, C, H, W, B, 1), CNN_OK);
    const size_t np = cnn_net_num_params(net);
    ck_assert_uint_eq(np, (size_t)get("desc_check")->v[0]);
    memcpy(cnn_net_params(net), get("params")->v, np * sizeof(float));
    const float *x = get("x")->v;
    uint8_t labels[4];
    for (int i = 0; i < B; i++) labels[i] = (uint8_t)get("labels")->v[i];

    ck_assert_int_eq(cnn_net_set_label_smoothing(net, smoothing), CNN_OK);
    const float *logits = cnn_net_forward(net, x, B, 1);
    compare("logits", logits, (size_t)B * K, 1e-5);
    float loss = cnn_net_loss(net, labels, B, NULL);
    compare("loss", &loss, 1, 1e-6);
    cnn_net_zero_grad(net);
    cnn_net_backward(net, B);
    compare("grads", cnn_net_grads(net), np, 1e-5);

    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_ADAM);
    opt.lr = 1e-2f;
    if (sgd) opt = *sgd;
    for (int s = 0; s < 10; s++) cnn_net_train_step(net, &opt, x, labels, B, -1.0f, NULL);
    compare(after, cnn_net_params(net), np, 1e-5);
    compare("running_after_11", cnn_net_buffers(net), cnn_net_num_buffers(net), 1e-4);
    compare("eval_logits", cnn_net_forward(net, x, B, 0), (size_t)B * K, 1e-4);
    cnn_net_free(net);
}

static void run_against_pytorch(const char *fixture, const char *desc, int C, int H, int W) {
    run_against_pytorch_with(fixture, desc, C, H, W, NULL, 0.0f, "params_after_10_adam");
}

START_TEST(test_matches_pytorch) { run_against_pytorch(FIXTURE_DIR "/reference_net.txt", DESC, 3, 9, 9); }
END_TEST

START_TEST(test_residual_matches_pytorch) {
    for (int kb = 0; kernels_next(&kb);)
        run_against_pytorch(FIXTURE_DIR "/reference_residual.txt", RESIDUAL_DESC, 3, 8, 8);
}
END_TEST

// GELU, mul, frozen tensors (weight_lr=0), a shift at 64x the rate
// (bias_lr=64) and batch norm with eps 1e-12 and momentum 0.4, trained by
// SGD with Nesterov momentum, weight decay and label smoothing, against
// PyTorch's parameter groups (tools/make_reference.py's recipe_opt).
START_TEST(test_recipe_matches_pytorch) {
    CnnOptimizer sgd;
    cnn_opt_defaults(&sgd, CNN_OPT_SGD);
    sgd.lr = 0.05f;
    sgd.momentum = 0.85f;
    sgd.nesterov = 1;
    sgd.weight_decay = 0.01f;
    for (int kb = 0; kernels_next(&kb);)
        run_against_pytorch_with(FIXTURE_DIR "/reference_recipe.txt", RECIPE_DESC, 3, 9, 9, &sgd, 0.2f,
                                 "params_after_10_sgd");
}
END_TEST

// The residual net's checkpoint tensors are its PyTorch state_dict's, by
// name, shape and order (num_batches_tracked aside, which cnnc does not keep).
START_TEST(test_residual_state_dict_names) {
    const char *path = FIXTURE_DIR "/reference_residual_names.txt";
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, RESIDUAL_DESC, 3, 8, 8, 1, 1), CNN_OK);
    NetTensor t[CNN_MAX_TENSORS];
    const int n = net_tensors(net, t);
    char name[64], shape[64];
    int i = 0;
    for (; fscanf(f, "%63s %63s", name, shape) == 2; i++) {
        ck_assert_int_lt(i, n);
        char got[64] = "";
        size_t len = 0;
        for (int d = 0; d < t[i].ndim; d++)
            len += (size_t)snprintf(got + len, sizeof got - len, "%s%lld", d ? "x" : "", (long long)t[i].shape[d]);
        ck_assert_str_eq(t[i].name, name);
        ck_assert_str_eq(got, shape);
    }
    ck_assert_int_eq(i, n);
    fclose(f);
    cnn_net_free(net);
}
END_TEST

int main(void) {
    Suite *s = suite_create("reference");
    TCase *tc = tcase_create("pytorch");
    tcase_add_test(tc, test_matches_pytorch);
    tcase_add_test(tc, test_residual_matches_pytorch);
    tcase_add_test(tc, test_residual_state_dict_names);
    tcase_add_test(tc, test_recipe_matches_pytorch);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
