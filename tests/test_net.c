// Networks: descriptions, built-in models, errors, optimisers against
// PyTorch's update sequences, thread-count determinism, end-to-end training.
#include <omp.h>
#include <string.h>

#include "layers/layer.h"
#include "testutil.h"

// ---------------------------------------------------------------- descriptions
START_TEST(test_builtin_models_match_pytorch) {
    // Parameter counts and forward FLOPs from tools/torch_peer.py's models.
    static const struct {
        const char *name;
        int C, H;
        size_t params;
        double flops;
    } want[] = {
        {"lenet", 1, 28, 61706, 833040},     {"lenet", 3, 32, 83126, 1772880},
        {"tfcnn", 1, 28, 93322, 5588480},    {"tfcnn", 3, 32, 122570, 9097216},
        {"vgg8bn", 1, 28, 1147722, 232119296}, {"vgg8bn", 3, 32, 1148874, 305533952},
        {"resnet20", 1, 28, 269434, 61642496}, {"resnet20", 3, 32, 269722, 81102080},
        {"airbench94", 1, 28, 1963304, 164621888}, {"airbench94", 3, 32, 1972792, 236294720},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CnnNet *net;
        ck_assert_int_eq(cnn_net_create(&net, want[i].name, want[i].C, want[i].H, want[i].H, 8, 1), CNN_OK);
        ck_assert_uint_eq(cnn_net_num_params(net), want[i].params);
        ck_assert_double_eq(cnn_net_flops(net), want[i].flops);
        ck_assert_int_eq(cnn_net_num_classes(net), 10);
        // The canonical description builds the same network.
        CnnNet *again;
        ck_assert_int_eq(cnn_net_create(&again, cnn_net_desc(net), want[i].C, want[i].H, want[i].H, 8, 1), CNN_OK);
        ck_assert_str_eq(cnn_net_desc(again), cnn_net_desc(net));
        ck_assert(memcmp(cnn_net_params(net), cnn_net_params(again), cnn_net_num_params(net) * 4) == 0);
        cnn_net_free(again);
        cnn_net_free(net);
    }
    char buf[1024];
    ck_assert_int_eq(cnn_builtin_model("tfcnn", 100, buf, sizeof buf), CNN_OK);
    ck_assert_ptr_nonnull(strstr(buf, "dense(100)"));
    ck_assert_int_eq(cnn_builtin_model("resnet", 10, buf, sizeof buf), CNN_EARG);
}
END_TEST

START_TEST(test_description_syntax) {
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "  Conv(8, 3x5, stride=2, pad=1)  relu\tavgpool(2,stride=1) "
                                          "dropout(0.25) flatten linear(out=4,bias=0) bn fc(3)",
                                    2, 11, 13, 4, 1), CNN_OK);
    ck_assert_str_eq(cnn_net_desc(net), "conv(8,3x5,stride=2,pad=1) relu avgpool(2,stride=1) dropout(0.25) "
                                        "flatten dense(4,bias=0) batchnorm(eps=1e-05,momentum=0.1) dense(3)");
    CnnLayerInfo info;
    cnn_net_layer_info(net, 0, &info);
    ck_assert_int_eq(info.OC, 8);
    ck_assert_int_eq(info.OH, 6);  // (11 + 2 - 3) / 2 + 1
    ck_assert_int_eq(info.OW, 6);  // (13 + 2 - 5) / 2 + 1
    cnn_net_layer_info(net, 2, &info);
    ck_assert_int_eq(info.OH, 5);
    ck_assert_int_eq(info.OW, 5);
    cnn_net_free(net);
}
END_TEST

// [ ... ] xN repeats a group of layers, nested too; the canonical text is
// the expanded one.
START_TEST(test_description_repeats) {
    static const struct {
        const char *grouped, *plain;
    } cases[] = {
        {"[conv(8,3,pad=1) relu] x2 flatten dense(10)", "conv(8,3,pad=1) relu conv(8,3,pad=1) relu flatten dense(10)"},
        {"[[relu] x2 conv(4,1)]x2 flatten dense(10)", "relu relu conv(4,1) relu relu conv(4,1) flatten dense(10)"},
        {"conv(4,3) [relu]X1 flatten [dense(6) relu] x3 dense(10)",
         "conv(4,3) relu flatten dense(6) relu dense(6) relu dense(6) relu dense(10)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CnnNet *a, *b;
        ck_assert_int_eq(cnn_net_create(&a, cases[i].grouped, 1, 8, 8, 2, 1), CNN_OK);
        ck_assert_int_eq(cnn_net_create(&b, cases[i].plain, 1, 8, 8, 2, 1), CNN_OK);
        ck_assert_str_eq(cnn_net_desc(a), cnn_net_desc(b));
        ck_assert_int_eq(cnn_net_num_layers(a), cnn_net_num_layers(b));
        cnn_net_free(a);
        cnn_net_free(b);
    }
    // vgg8bn as the README writes it is vgg8bn.
    char builtin[1024];
    ck_assert_int_eq(cnn_builtin_model("vgg8bn", 10, builtin, sizeof builtin), CNN_OK);
    CnnNet *a, *b;
    ck_assert_int_eq(cnn_net_create(&a, "[conv(64,3,pad=1,bias=0) bn relu] x2 maxpool(2) [conv(128,3,pad=1,bias=0) bn "
                                        "relu] x2 maxpool(2) [conv(256,3,pad=1,bias=0) bn relu] x2 maxpool(2) gap "
                                        "dense(10)", 3, 32, 32, 2, 1), CNN_OK);
    ck_assert_int_eq(cnn_net_create(&b, builtin, 3, 32, 32, 2, 1), CNN_OK);
    ck_assert_str_eq(cnn_net_desc(a), cnn_net_desc(b));
    cnn_net_free(a);
    cnn_net_free(b);
}
END_TEST

START_TEST(test_description_errors) {
    cnn_set_quiet(1);
    static const struct {
        const char *desc, *msg;
        CnnStatus st;
    } bad[] = {
        {"conv(8,3) relu softmax dense(10)", "layer 2: unknown layer 'softmax'", CNN_EFORMAT},
        {"conv(8) relu flatten dense(10)", "conv needs out channels and kernel", CNN_EFORMAT},
        {"conv(8,3,stride=0) flatten dense(10)", "stride=0 must be an integer in 1..64", CNN_EFORMAT},
        {"conv(8,3,dilation=2) flatten dense(10)", "has no argument 'dilation'", CNN_EFORMAT},
        {"conv(8,3 flatten dense(10)", "missing ')'", CNN_EFORMAT},
        {"dropout(1.5) flatten dense(10)", "p=1.5 must be a number in [0, 1]", CNN_EFORMAT},
        {"conv(8,3) relu dense(10)", "layer 2 dense(10): input is 8x6x6, dense needs a flat input", CNN_ESHAPE},
        {"conv(8,9) flatten dense(10)", "layer 0 conv(8,9,stride=1,pad=0): kernel 9x9 does not fit input 1x8x8", CNN_ESHAPE},
        {"maxpool(2) maxpool(2) maxpool(2) maxpool(2) flatten dense(10)", "layer 3 maxpool(2,stride=2): window 2x2 does not fit input 1x1x1", CNN_ESHAPE},
        {"conv(8,3) relu", "the last layer must output class scores", CNN_ESHAPE},
        {"", "model description is empty", CNN_EFORMAT},
        {"conv(8,3),relu", "unexpected ','", CNN_EFORMAT},
        {"[conv(8,3) relu flatten dense(10)", "'[' at character 1 has no matching ']'", CNN_EFORMAT},
        {"[[relu] x2 flatten dense(10)", "'[' at character 1 has no matching ']'", CNN_EFORMAT},
        {"conv(8,3)] flatten dense(10)", "']' at character 10 closes no '['", CNN_EFORMAT},
        {"[conv(8,3) relu] flatten dense(10)", "needs a repeat count after ']', e.g. [conv(8,3) relu] x2", CNN_EFORMAT},
        {"[relu] x 2 flatten dense(10)", "needs a repeat count", CNN_EFORMAT},
        {"[relu] x0 flatten dense(10)", "repeat count x0 at character 8 must be in 1..64", CNN_EFORMAT},
        {"[relu] x2y flatten dense(10)", "unexpected 'y' after the repeat count", CNN_EFORMAT},
        {"[relu] x64 [relu] x64 relu flatten dense(10)", "more than 128 layers", CNN_EFORMAT},
        {"[[[relu] x64] x64] x64 flatten dense(10)", "characters once its groups are repeated", CNN_EFORMAT},
        {"[[[[[[[[[relu] x1] x1] x1] x1] x1] x1] x1] x1] x1 flatten dense(10)", "character 9 is nested more than 8 deep",
         CNN_EFORMAT},
        // Graphs (tests/test_graph.c)
        {"conv(4,3) add(x) flatten dense(3)", "layer 1 (add): no tensor is named 'x' (name one with @x)", CNN_EFORMAT},
        {"conv(4,3) from(x) flatten dense(3)", "from(x) at character 11: no tensor is named 'x'", CNN_EFORMAT},
        {"conv(4,3) add flatten dense(3)", "add needs the name of its second input", CNN_EFORMAT},
        {"conv(4,3) add(1x) flatten dense(3)", "'1x' is not a tensor name", CNN_EFORMAT},
        {"@ conv(4,3) flatten dense(3)", "'@' at character 1 needs a name", CNN_EFORMAT},
        {"@abcdefghijklmnopq conv(4,3) flatten dense(3)", "longer than 15 characters", CNN_EFORMAT},
        {"conv(4,3) from(x flatten dense(3)", "from( at character 11 needs a name and ')'", CNN_EFORMAT},
        {"@a conv(4,3) from(a) conv(4,3) flatten dense(3)", "the output of layer 0 (conv) is used by no later layer",
         CNN_EFORMAT},
        {"@a flatten dense(3) from(a)", "from() after the last layer", CNN_EFORMAT},
        {"@a conv(4,3) add(a) flatten dense(3)", "the tensors to add differ in shape: 4x6x6 and 1x8x8", CNN_ESHAPE},
        {"@a conv(4,3) concat(a) flatten dense(3)", "the tensors to concatenate differ in height or width",
         CNN_ESHAPE},
        {"@a@b relu flatten dense(3)", "unexpected '@' at character 3", CNN_EFORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CnnNet *net = (CnnNet *)1;
        CnnStatus st = cnn_net_create(&net, bad[i].desc, 1, 8, 8, 4, 1);
        ck_assert_msg(st == bad[i].st, "'%s': status %d, want %d", bad[i].desc, st, bad[i].st);
        ck_assert_ptr_null(net);
        ck_assert_msg(strstr(cnn_last_error(), bad[i].msg), "'%s': message \"%s\" lacks \"%s\"",
                      bad[i].desc, cnn_last_error(), bad[i].msg);
    }
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "tfcnn", 1, 28, 28, 0, 1), CNN_EARG);
    ck_assert_int_eq(cnn_net_create(&net, "tfcnn", 0, 28, 28, 8, 1), CNN_ESHAPE);
    // A buffer that would not fit in memory is refused before allocating.
    ck_assert_int_eq(cnn_net_create(&net, "vgg8bn", 3, 2048, 2048, 1 << 20, 1), CNN_ENOMEM);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "use a smaller --batch"));
}
END_TEST

// Found by tests/fuzz/fuzz_model_desc: the canonical description (stored in
// checkpoints) must build the same net, also for floats %g would round.
START_TEST(test_canonical_description_round_trips) {
    static const struct {
        const char *desc, *canonical;
    } cases[] = {
        {"dropout(0.9999999) flatten dense(3)", "dropout(0.999999881) flatten dense(3)"},
        {"bn(eps=1.2345678e-5,momentum=0.1) flatten dense(3)",
         "batchnorm(eps=1.23456784e-05,momentum=0.1) flatten dense(3)"},
        {"dropout(0.25) bn flatten dense(3)",
         "dropout(0.25) batchnorm(eps=1e-05,momentum=0.1) flatten dense(3)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CnnNet *net, *again;
        ck_assert_int_eq(cnn_net_create(&net, cases[i].desc, 1, 4, 4, 2, 1), CNN_OK);
        ck_assert_str_eq(cnn_net_desc(net), cases[i].canonical);
        ck_assert_msg(cnn_net_create(&again, cnn_net_desc(net), 1, 4, 4, 2, 1) == CNN_OK, "%s: %s",
                      cnn_net_desc(net), cnn_last_error());
        ck_assert_str_eq(cnn_net_desc(again), cnn_net_desc(net));
        cnn_net_free(again);
        cnn_net_free(net);
    }
}
END_TEST

// Every row of the layer table builds, reports its own name, and its
// canonical text builds the same layer; a row added without an example
// here fails this test. Unknown names list every row.
START_TEST(test_layer_table_rows) {
    static const struct {
        const char *name, *desc;
    } examples[] = {
        {"conv", "conv2d(4,3x2,stride=2,pad=1,bias=0) flatten dense(3)"},
        {"maxpool", "maxpool(3,stride=2) flatten dense(3)"},
        {"avgpool", "avgpool(2) flatten dense(3)"},
        {"gap", "globalavgpool dense(3)"},
        {"relu", "relu flatten dense(3)"},
        {"gelu", "gelu flatten dense(3)"},
        {"batchnorm", "bn(eps=0.001,momentum=0.2,weight_lr=0) flatten dense(3)"},
        {"dropout", "dropout(p=0.125) flatten dense(3)"},
        {"flatten", "flatten dense(3)"},
        {"dense", "flatten fc(5,bias=0,weight_lr=0.5) linear(3,bias_lr=2)"},
        {"add", "@x conv(2,3,pad=1) add(x) flatten dense(3)"},
        {"concat", "@x conv(3,1) concat(from=x) flatten dense(3)"},
        {"chpad", "chpad(before=1,after=3) flatten dense(3)"},
        {"mul", "flatten dense(3) scale(f=-0.5)"},
    };
    char names[256];
    layer_ops_names(names, sizeof names);
    int rows = 0;
    for (char *tok = strtok(names, ", "); tok; tok = strtok(NULL, ", "), rows++) {
        const char *desc = NULL;
        for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++)
            if (!strcmp(examples[i].name, tok)) desc = examples[i].desc;
        ck_assert_msg(desc, "layer row '%s' has no example in this test", tok);
        ck_assert_ptr_nonnull(layer_ops_find(tok));
        CnnNet *net, *again;
        ck_assert_msg(cnn_net_create(&net, desc, 2, 7, 7, 2, 1) == CNN_OK, "%s: %s", desc, cnn_last_error());
        CnnLayerInfo info;
        int found = 0;
        for (int i = 0; i < cnn_net_num_layers(net); i++) {
            cnn_net_layer_info(net, i, &info);
            found |= !strcmp(info.kind, tok);
        }
        ck_assert_msg(found, "%s: no layer reports kind '%s'", desc, tok);
        ck_assert_int_eq(cnn_net_create(&again, cnn_net_desc(net), 2, 7, 7, 2, 1), CNN_OK);
        ck_assert_str_eq(cnn_net_desc(again), cnn_net_desc(net));
        ck_assert_uint_eq(cnn_net_num_params(again), cnn_net_num_params(net));
        ck_assert(memcmp(cnn_net_params(net), cnn_net_params(again), cnn_net_num_params(net) * 4) == 0);
        cnn_net_free(again);
        cnn_net_free(net);
    }
    ck_assert_int_eq(rows, (int)(sizeof examples / sizeof examples[0]));
    ck_assert_ptr_null(layer_ops_find("softmax"));
    cnn_set_quiet(1);
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "softmax dense(3)", 1, 4, 4, 2, 1), CNN_EFORMAT);
    layer_ops_names(names, sizeof names);
    ck_assert_msg(strstr(cnn_last_error(), names), "\"%s\" lacks \"%s\"", cnn_last_error(), names);
}
END_TEST

// cnn_set_memory_limit: a net above the limit fails before allocating.
START_TEST(test_memory_limit) {
    cnn_set_quiet(1);
    CnnNet *net;
    cnn_set_memory_limit((size_t)64 << 20);
    ck_assert_int_eq(cnn_net_create(&net, "flatten dense(1000000) dense(10)", 3, 16, 16, 1, 1), CNN_ENOMEM);
    ck_assert_ptr_null(net);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "the limit is 64 MB"));
    ck_assert_int_eq(cnn_net_create(&net, "flatten dense(10)", 3, 16, 16, 1, 1), CNN_OK);
    cnn_net_free(net);
    cnn_set_memory_limit(0);
}
END_TEST

START_TEST(test_he_initialisation) {
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "conv(64,5) relu flatten dense(200) relu dense(10)", 3, 12, 12, 2, 5), CNN_OK);
    cnn_net_init_weights_as(net, 5, CNN_INIT_HE);
    const float *p = cnn_net_params(net);
    CnnLayerInfo info;
    cnn_net_layer_info(net, 2, &info);
    // dense(200) on 64*8*8 inputs: std sqrt(2/4096); its bias is zero.
    const float *w = p + cnn_net_param_offset(net, 3);
    double s = 0, ss = 0;
    size_t n = 200 * 4096;
    for (size_t i = 0; i < n; i++) { s += w[i]; ss += (double)w[i] * w[i]; }
    ck_assert_double_eq_tol(s / n, 0.0, 3e-4);
    ck_assert_double_eq_tol(sqrt(ss / n), sqrt(2.0 / 4096), 3e-4);
    for (int i = 0; i < 200; i++) ck_assert_float_eq(w[n + i], 0.0f);
    cnn_net_free(net);
}
END_TEST

// The default: PyTorch's Conv2d/Linear reset_parameters, weights and biases
// uniform in +-1/sqrt(fan_in) (mean 0, std bound/sqrt(3)); batch norm 1 and 0.
START_TEST(test_pytorch_initialisation) {
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "conv(64,5) bn relu flatten dense(200) relu dense(10)", 3, 12, 12, 2, 5),
                     CNN_OK);
    const float *p = cnn_net_params(net);
    static const struct {
        int layer;
        size_t n_w, n_b, fan_in;
    } want[] = {{0, 64 * 75, 64, 75}, {4, 200 * 4096, 200, 4096}, {6, 10 * 200, 10, 200}};
    for (size_t t = 0; t < sizeof want / sizeof want[0]; t++) {
        const float *w = p + cnn_net_param_offset(net, want[t].layer);
        const double bound = 1.0 / sqrt((double)want[t].fan_in);
        double s = 0, ss = 0, bmax = 0;
        for (size_t i = 0; i < want[t].n_w; i++) {
            ck_assert_msg(fabs(w[i]) <= bound, "layer %d weight %zu = %g outside +-%g", want[t].layer, i, w[i], bound);
            s += w[i];
            ss += (double)w[i] * w[i];
        }
        const double n = (double)want[t].n_w;
        ck_assert_double_eq_tol(s / n, 0.0, 4 * bound / sqrt(3 * n));  // 4 standard errors
        ck_assert_double_eq_tol(sqrt(ss / n), bound / sqrt(3.0), 0.05 * bound / sqrt(3.0));
        for (size_t i = 0; i < want[t].n_b; i++) {
            ck_assert(fabs(w[want[t].n_w + i]) <= bound);
            bmax = fmax(bmax, fabs(w[want[t].n_w + i]));
        }
        ck_assert_msg(bmax > 0.5 * bound, "layer %d biases are not drawn (max |b| %g)", want[t].layer, bmax);
    }
    const float *bn = p + cnn_net_param_offset(net, 1);
    for (int c = 0; c < 64; c++) {
        ck_assert_float_eq(bn[c], 1.0f);
        ck_assert_float_eq(bn[64 + c], 0.0f);
    }
    cnn_net_free(net);
    // So a new classifier starts near the uniform prediction: tfcnn's loss on
    // standardised-looking inputs is ln 10 within 0.1 (He's is far above).
    float x[64 * 784];
    uint8_t y[64];
    CnnRng r;
    cnn_rng_seed(&r, 3);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)cnn_rng_normal(&r);
    for (int i = 0; i < 64; i++) y[i] = (uint8_t)cnn_rng_below(&r, 10);
    ck_assert_int_eq(cnn_net_create(&net, "tfcnn", 1, 28, 28, 64, 1), CNN_OK);
    cnn_net_forward(net, x, 64, 0);
    const float loss = cnn_net_loss(net, y, 64, NULL);
    ck_assert_msg(fabs(loss - log(10.0)) < 0.1, "tfcnn's loss at initialisation is %g, not ln 10 = 2.303", loss);
    cnn_net_init_weights_as(net, 1, CNN_INIT_HE);
    cnn_net_forward(net, x, 64, 0);
    ck_assert_float_gt(cnn_net_loss(net, y, 64, NULL), 3.0f);
    cnn_net_free(net);
    CnnInit init;
    ck_assert_int_eq(cnn_init_parse("he", &init), CNN_OK);
    ck_assert_int_eq(init, CNN_INIT_HE);
    ck_assert_str_eq(cnn_init_name(CNN_INIT_PYTORCH), "pytorch");
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_init_parse("xavier", &init), CNN_EARG);
    ck_assert_str_eq(cnn_last_error(), "unknown initialisation 'xavier' (expected pytorch or he)");
    ck_assert_str_eq(cnn_status_str(CNN_EARG), "bad argument");
    ck_assert_str_eq(cnn_status_str(CNN_ENOMEM), "out of memory");
    ck_assert_str_eq(cnn_status_str((CnnStatus)99), "unknown error");
}
END_TEST

// ---------------------------------------------------------------- optimisers
static void check_opt(CnnOptimizer *opt, const double want[4][3]) {
    float p[3] = {0.5f, -1.5f, 2.0f}, m[3] = {0}, v[3] = {0};
    const float g[4][3] = {{0.1f, -0.2f, 0.3f}, {0.4f, 0.0f, -0.5f}, {-0.3f, 0.2f, 0.1f}, {0.05f, -0.6f, 0.2f}};
    for (int t = 0; t < 4; t++) {
        cnn_opt_step(opt, p, g[t], m, v, 3, -1.0f);
        for (int i = 0; i < 3; i++)
            ck_assert_msg(fabs(p[i] - want[t][i]) < 2e-6, "%s step %d param %d: %.9g, PyTorch %.9g",
                          cnn_opt_name(opt->kind), t + 1, i, p[i], want[t][i]);
    }
}

// Warm-up, then constant, cosine or linear decay to 0 at the run's end.
START_TEST(test_schedules) {
    CnnSchedule s = {.kind = CNN_SCHED_LINEAR, .lr = 0.4f, .epochs = 2, .warmup = 10};
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 0, 50), 0.04f, 1e-7f);   // warm-up: lr (step + 1) / warmup
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 9, 50), 0.4f, 1e-7f);
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 10, 50), 0.4f, 1e-7f);   // then 90 steps down to 0
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 55, 50), 0.2f, 1e-7f);
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 100, 50), 0.0f, 1e-7f);
    s.kind = CNN_SCHED_COSINE;
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 55, 50), 0.2f, 1e-6f);   // half-way: half the rate
    ck_assert_float_eq_tol(cnn_schedule_lr(&s, 32, 50), 0.4f * 0.5f * (1.0f + cosf(3.14159265f * 22 / 90)), 1e-6f);
    s.kind = CNN_SCHED_CONSTANT;
    ck_assert_float_eq(cnn_schedule_lr(&s, 77, 50), 0.4f);
    CnnScheduleKind k;
    ck_assert_int_eq(cnn_schedule_parse("linear", &k), CNN_OK);
    ck_assert_int_eq(k, CNN_SCHED_LINEAR);
    ck_assert_str_eq(cnn_schedule_name(k), "linear");
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_schedule_parse("onecycle", &k), CNN_EARG);
}
END_TEST

// decay_skip_bn_bias: weight decay moves conv and dense weights, never
// biases or batch norm's scale and shift (their step equals one without decay).
START_TEST(test_weight_decay_skips_bn_and_biases) {
    static const char *desc = "conv(4,3) bn relu flatten dense(3)";
    CnnNet *a, *b;
    ck_assert_int_eq(cnn_net_create(&a, desc, 2, 5, 5, 4, 3), CNN_OK);
    ck_assert_int_eq(cnn_net_create(&b, desc, 2, 5, 5, 4, 3), CNN_OK);
    float x[4 * 50];
    const uint8_t y[4] = {0, 1, 2, 1};
    CnnRng r;
    cnn_rng_seed(&r, 4);
    fill_uniform(x, 200, -1, 1, &r);
    CnnOptimizer with, without;
    cnn_opt_defaults(&with, CNN_OPT_SGD);
    with.weight_decay = 0.5f;
    with.decay_skip_bn_bias = 1;
    cnn_opt_defaults(&without, CNN_OPT_SGD);
    cnn_net_train_step(a, &with, x, y, 4, 0.1f, NULL);
    cnn_net_train_step(b, &without, x, y, 4, 0.1f, NULL);
    const float *pa = cnn_net_params(a), *pb = cnn_net_params(b);
    // conv: 72 weights, 4 biases; bn: 4 scales, 4 shifts; dense: 3 x 36 weights, 3 biases.
    const struct { size_t from, n; int decayed; } parts[] = {
        {0, 72, 1}, {72, 4, 0}, {76, 8, 0}, {84, 108, 1}, {192, 3, 0}};
    ck_assert_uint_eq(cnn_net_num_params(a), 195);
    for (int p = 0; p < 5; p++)
        for (size_t i = parts[p].from; i < parts[p].from + parts[p].n; i++)
            if (parts[p].decayed) ck_assert_msg(pa[i] != pb[i], "parameter %zu should have decayed", i);
            else ck_assert_msg(pa[i] == pb[i], "parameter %zu (bias or batch norm) decayed", i);
    cnn_net_free(a);
    cnn_net_free(b);
}
END_TEST

START_TEST(test_optimizers_match_pytorch) {
    // Expected values printed by torch.optim (PyTorch 1.13) for the same gradients.
    static const double adam[4][3] = {{0.49000001, -1.49000001, 1.99000001}, {0.48115623, -1.48329937, 1.99293566},
                                      {0.479389161, -1.48415804, 1.99409175}, {0.477380991, -1.47920024, 1.9931258}};
    static const double adam_wd[4][3] = {{0.49000001, -1.49000001, 1.99000001}, {0.480819523, -1.48091936, 1.98809946},
                                         {0.477557868, -1.47482908, 1.98387873}, {0.473886371, -1.46738148, 1.97790468}};
    static const double adamw[4][3] = {{0.489500016, -1.4885, 1.98800004}, {0.480166733, -1.48031092, 1.98894775},
                                       {0.477919489, -1.47968924, 1.98811495}, {0.475433409, -1.47325182, 1.98516095}};
    static const double sgd[4][3] = {{0.49000001, -1.48000002, 1.97000003}, {0.450000018, -1.48000002, 2.01999998},
                                     {0.480000019, -1.5, 2.00999999}, {0.475000024, -1.43999994, 1.99000001}};
    static const double sgdm[4][3] = {{0.49000001, -1.48000002, 1.97000003}, {0.441000015, -1.46200001, 1.99300003},
                                      {0.426900029, -1.46580005, 2.00370002}, {0.409210026, -1.4092201, 1.99333}};
    static const double nesterov[4][3] = {{0.480049998, -1.45914996, 1.93920004}, {0.394632906, -1.43896258, 2.00459552},
                                          {0.410439759, -1.45737314, 1.99738801}, {0.387741268, -1.34046865, 1.95991039}};
    CnnOptimizer o;
    cnn_opt_defaults(&o, CNN_OPT_ADAM); o.lr = 0.01f; check_opt(&o, adam);
    cnn_opt_defaults(&o, CNN_OPT_ADAM); o.lr = 0.01f; o.weight_decay = 0.1f; check_opt(&o, adam_wd);
    cnn_opt_defaults(&o, CNN_OPT_ADAMW); o.lr = 0.01f; o.weight_decay = 0.1f; check_opt(&o, adamw);
    cnn_opt_defaults(&o, CNN_OPT_SGD); o.lr = 0.1f; o.momentum = 0; check_opt(&o, sgd);
    cnn_opt_defaults(&o, CNN_OPT_SGD); o.lr = 0.1f; o.momentum = 0.9f; check_opt(&o, sgdm);
    cnn_opt_defaults(&o, CNN_OPT_SGD); o.lr = 0.1f; o.momentum = 0.9f; o.nesterov = 1; o.weight_decay = 0.01f;
    check_opt(&o, nesterov);
    CnnOptKind k;
    ck_assert_int_eq(cnn_opt_parse("adamw", &k), CNN_OK);
    ck_assert_int_eq(k, CNN_OPT_ADAMW);
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_opt_parse("rmsprop", &k), CNN_EARG);
}
END_TEST

static const char *EVERY_LAYER = "conv(6,3,pad=1) bn relu maxpool(2) conv(8,3,stride=2,pad=1) relu "
                                 "avgpool(2,stride=1) conv(8,1) relu dropout(0.2) flatten dense(16) bn relu dense(5)";

START_TEST(test_bit_identical_across_thread_counts) {
    // Every layer kind, at a batch that splits unevenly (37) and at 64.
    CnnNet *probe;
    ck_assert_int_eq(cnn_net_create(&probe, EVERY_LAYER, 3, 12, 10, 1, 11), CNN_OK);
    const size_t n = cnn_net_num_params(probe) + cnn_net_num_buffers(probe);
    cnn_net_free(probe);
    static const int batches[] = {37, 64};
    for (int kb = 0; kernels_next(&kb);)
        for (int bi = 0; bi < 2; bi++) {
            float *ref = train_with_threads(EVERY_LAYER, 1, 3, batches[bi]);
            static const int threads[] = {2, 3, 7, 16};
            for (int t = 0; t < 4; t++) {
                float *p = train_with_threads(EVERY_LAYER, threads[t], 3, batches[bi]);
                ck_assert_msg(memcmp(ref, p, n * sizeof(float)) == 0,
                              "kernels %s, batch %d: parameters after 3 steps differ between 1 and %d threads",
                              cnn_kernels_name(), batches[bi], threads[t]);
                free(p);
            }
            free(ref);
        }
}
END_TEST

// 3x3 layers that Winograd runs (channels in multiples of 8; pad 1, 0 and
// 2), under both algorithms.
START_TEST(test_winograd_bit_identical_across_thread_counts) {
    static const char *desc = "conv(8,3,pad=1) relu conv(16,3,pad=1) relu conv(16,3) bn relu conv(8,3,pad=2) relu "
                              "flatten dense(5)";
    CnnNet *probe;
    ck_assert_int_eq(cnn_net_create(&probe, desc, 3, 12, 10, 1, 11), CNN_OK);
    const size_t n = cnn_net_num_params(probe) + cnn_net_num_buffers(probe);
    cnn_net_free(probe);
    static const char *algos[] = {"direct", "winograd"};
    for (int kb = 0; kernels_next(&kb);)
        for (int a = 0; a < 2; a++) {
            ck_assert_int_eq(cnn_conv_select(algos[a]), CNN_OK);
            float *ref = train_with_threads(desc, 1, 3, 37);
            static const int threads[] = {2, 3, 16};
            for (int t = 0; t < 3; t++) {
                float *p = train_with_threads(desc, threads[t], 3, 37);
                ck_assert_msg(memcmp(ref, p, n * sizeof(float)) == 0,
                              "kernels %s, %s: parameters after 3 steps differ between 1 and %d threads",
                              cnn_kernels_name(), algos[a], threads[t]);
                free(p);
            }
            free(ref);
        }
    ck_assert_int_eq(cnn_conv_select("auto"), CNN_OK);
}
END_TEST

START_TEST(test_tfcnn_bit_identical_across_thread_counts) {
    // The built-in tfcnn on 1x28x28 at batch 64, 1/2/3/7 threads.
    for (int kb = 0; kernels_next(&kb);) {
        const int B = 64;
        float *ref = NULL;
        size_t n = 0;
        static const int threads[] = {1, 2, 3, 7};
        for (int t = 0; t < 4; t++) {
            omp_set_num_threads(threads[t]);
            CnnNet *net;
            ck_assert_int_eq(cnn_net_create(&net, "tfcnn", 1, 28, 28, B, 3), CNN_OK);
            float *x = cnn_alloc_floats((size_t)B * 784);
            uint8_t y[64];
            CnnOptimizer opt;
            cnn_opt_defaults(&opt, CNN_OPT_ADAM);
            for (int s = 0; s < 3; s++) {
                synthetic(x, y, B, 1, 28, 28, 10, 50 + s);
                cnn_net_train_step(net, &opt, x, y, B, -1.0f, NULL);
            }
            n = cnn_net_num_params(net);
            if (!ref) {
                ref = malloc(n * sizeof(float));
                memcpy(ref, cnn_net_params(net), n * sizeof(float));
            } else {
                ck_assert_msg(memcmp(ref, cnn_net_params(net), n * sizeof(float)) == 0,
                              "kernels %s: tfcnn parameters differ between 1 and %d threads",
                              cnn_kernels_name(), threads[t]);
            }
            cnn_net_free(net);
            cnn_free(x);
        }
        free(ref);
    }
}
END_TEST

// Fusions (net.c: ReLUs into the layers around them, max pools into the
// convolutions before them) change no bit: 3 training steps without
// fusions, with the ReLUs' alone and with all end with the same parameters
// and statistics, under every backend and both algorithms of 3x3
// convolutions. The nets cover every path that applies a ReLU to its output
// or pools it (small-channel, direct, Winograd, im2col and pointwise
// convolutions, batch norm, dense), max pools after a ReLU or straight
// after a convolution (2x2 and overlapping 3x3 windows), and what cannot be
// fused (outputs read twice, a ReLU after an add or a pool, a pool after
// batch norm).
static int count_flags(CnnNet *net, int which) {
    int n = 0;
    for (int i = 0; i < cnn_net_num_layers(net); i++) {
        const Layer *l = net_layer(net, i);
        n += which == 0 ? l->relu_fused : which == 1 ? l->relu_grad_done : l->pool_in_conv;
    }
    return n;
}

START_TEST(test_fusions_change_no_bit) {
    static const struct {
        const char *desc;
        int want[3][CNN_MAX_LAYERS];  // relu layers done by their input, relu layers whose backward
                                      // a max pool does, max pools done by a convolution; -1 ends
    } nets[] = {
        {"conv(8,3,pad=1) relu maxpool(2) conv(16,3,pad=1) relu maxpool(3,stride=2) flatten dense(16) relu dense(5)",
         {{1, 4, 8, -1}, {1, 4, -1}, {2, 5, -1}}},
        {"conv(6,3,pad=1) bn relu maxpool(2) conv(12,3) relu maxpool(2) conv(12,1) relu flatten dense(5)",
         {{2, 5, 8, -1}, {2, 5, -1}, {6, -1}}},
        {"conv(8,3,pad=1,bias=0) bn relu @x conv(8,3,pad=1,bias=0) bn add(x) relu maxpool(2) flatten dense(5)",
         {{2, -1}, {6, -1}, {-1}}},
        {"conv(8,3,pad=1) maxpool(2) bn relu conv(16,3) maxpool(3,stride=1) relu flatten dense(5)",
         {{3, -1}, {-1}, {1, 5, -1}}},
        // The small-channel kernel's own 2x2 pool: rows of 9 windows (8 + 1); tiles of 3 + 3 + 1
        // and 3 + 3 + 2 channels.
        {"conv(7,3,pad=5) relu maxpool(2) conv(8,3) relu maxpool(2) flatten dense(5)",
         {{1, 4, -1}, {1, 4, -1}, {2, 5, -1}}},
        {"conv(8,3,pad=5) relu maxpool(2) flatten dense(5)", {{1, -1}, {1, -1}, {2, -1}}},
    };
    static const char *algos[] = {"direct", "winograd"};
    for (size_t t = 0; t < sizeof nets / sizeof nets[0]; t++) {
        CnnNet *probe;
        ck_assert_int_eq(cnn_net_create(&probe, nets[t].desc, 3, 12, 10, 1, 11), CNN_OK);
        const size_t n = cnn_net_num_params(probe) + cnn_net_num_buffers(probe);
        for (int w = 0; w < 3; w++) {
            int count = 0;
            for (int i = 0; nets[t].want[w][i] >= 0; i++, count++) {
                const Layer *l = net_layer(probe, nets[t].want[w][i]);
                ck_assert(w == 0 ? l->relu_fused : w == 1 ? l->relu_grad_done : l->pool_in_conv);
            }
            ck_assert_int_eq(count_flags(probe, w), count);
        }
        if (t == 0) {  // what cnn_net_layer_info tells (bench prints it)
            static const int done_by[10] = {-1, 0, 0, -1, 3, 3, -1, -1, 7, -1};
            for (int i = 0; i < 10; i++) {
                CnnLayerInfo li;
                cnn_net_layer_info(probe, i, &li);
                ck_assert_msg(li.done_by == done_by[i], "layer %d done by %d, not %d", i, li.done_by, done_by[i]);
            }
        }
        cnn_net_free(probe);
        for (int kb = 0; kernels_next(&kb);)
            for (int a = 0; a < 2; a++) {
                ck_assert_int_eq(cnn_conv_select(algos[a]), CNN_OK);
                net_set_fusion(NET_FUSE_NONE);
                float *ref = train_with_threads(nets[t].desc, 2, 3, 37);
                for (int level = NET_FUSE_RELU; level <= NET_FUSE_ALL; level++) {
                    net_set_fusion(level);
                    float *p = train_with_threads(nets[t].desc, 2, 3, 37);
                    ck_assert_msg(memcmp(ref, p, n * sizeof(float)) == 0,
                                  "kernels %s, %s, net %zu: fusions (level %d) changed the parameters",
                                  cnn_kernels_name(), algos[a], t, level);
                    free(p);
                }
                free(ref);
            }
    }
    ck_assert_int_eq(cnn_conv_select("auto"), CNN_OK);
}
END_TEST

START_TEST(test_end_to_end_learns_synthetic_data) {
    omp_set_num_threads(2);
    const int C = 3, H = 12, W = 10, K = 5, N = 512, B = 32;
    float *x = cnn_alloc_floats((size_t)N * C * H * W);
    uint8_t *y = malloc(N);
    synthetic(x, y, N, C, H, W, K, 1);
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "conv(8,3,pad=1) relu maxpool(2) conv(16,3,pad=1) bn relu "
                                          "maxpool(2) flatten dense(32) relu dense(5)", C, H, W, B, 2), CNN_OK);
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_ADAM);
    double first_loss = 0, last_loss = 0;
    for (int epoch = 0; epoch < 8; epoch++) {
        double loss = 0;
        for (int i = 0; i < N; i += B)
            loss += cnn_net_train_step(net, &opt, x + (size_t)i * C * H * W, y + i, B, -1.0f, NULL);
        loss /= N / B;
        if (epoch == 0) first_loss = loss;
        last_loss = loss;
        printf("epoch %d loss %.4f\n", epoch, loss);
    }
    ck_assert_msg(last_loss < 0.1 * first_loss, "loss %.4f -> %.4f did not fall tenfold", first_loss, last_loss);
    int hits = 0;
    for (int i = 0; i < N; i += B) {
        cnn_net_forward(net, x + (size_t)i * C * H * W, B, 0);
        int c;
        cnn_net_loss(net, y + i, B, &c);
        hits += c;
    }
    ck_assert_msg(hits == N, "evaluation accuracy %d/%d, expected 100%%", hits, N);
    cnn_net_free(net);
    cnn_free(x);
    free(y);
}
END_TEST

static Suite *net_suite(void) {
    Suite *s = suite_create("net");
    TCase *tc = tcase_create("net");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_builtin_models_match_pytorch);
    tcase_add_test(tc, test_description_syntax);
    tcase_add_test(tc, test_description_errors);
    tcase_add_test(tc, test_description_repeats);
    tcase_add_test(tc, test_canonical_description_round_trips);
    tcase_add_test(tc, test_layer_table_rows);
    tcase_add_test(tc, test_memory_limit);
    tcase_add_test(tc, test_he_initialisation);
    tcase_add_test(tc, test_pytorch_initialisation);
    tcase_add_test(tc, test_optimizers_match_pytorch);
    tcase_add_test(tc, test_schedules);
    tcase_add_test(tc, test_weight_decay_skips_bn_and_biases);
    tcase_add_test(tc, test_bit_identical_across_thread_counts);
    tcase_add_test(tc, test_tfcnn_bit_identical_across_thread_counts);
    tcase_add_test(tc, test_winograd_bit_identical_across_thread_counts);
    tcase_add_test(tc, test_fusions_change_no_bit);
    tcase_add_test(tc, test_end_to_end_learns_synthetic_data);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(net_suite()); }
