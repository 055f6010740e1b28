// Checkpoints: round trip, resume equivalence, and rejection of every kind of
// broken file with a message that names the file and the problem.
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static const char *DESC = "conv(4,3,pad=1) bn relu maxpool(2) flatten dense(6) relu dense(3)";

static char dir[] = "/tmp/cnnc-ckpt-XXXXXX";

static void make_dir(void) {
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static CnnNet *make_net(uint64_t seed) {
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, DESC, 2, 6, 6, 8, seed), CNN_OK);
    return net;
}

static void train(CnnNet *net, CnnOptimizer *opt, int steps, uint64_t seed) {
    float x[8 * 72];
    uint8_t y[8];
    CnnRng r;
    for (int s = 0; s < steps; s++) {
        cnn_rng_derive(&r, seed, (uint64_t)s, 0);
        fill_uniform(x, sizeof x / sizeof x[0], -1, 1, &r);
        for (int i = 0; i < 8; i++) y[i] = (uint8_t)cnn_rng_below(&r, 3);
        cnn_net_train_step(net, opt, x, y, 8, -1.0f, NULL);
    }
}

static char *path_in_dir(const char *name) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    ck_assert_uint_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void write_file(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

START_TEST(test_round_trip_and_resume) {
    make_dir();
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_ADAM);
    CnnNet *a = make_net(1);
    train(a, &opt, 3, 10);
    CnnMeta meta = {0};
    cnn_meta_set(&meta, "dataset", "synthetic");
    cnn_meta_set(&meta, "epoch", "%d", 3);
    const char *p = path_in_dir("a.safetensors");
    ck_assert_int_eq(cnn_checkpoint_save(p, a, &opt, &meta), CNN_OK);
    cnn_meta_free(&meta);

    // Metadata only.
    CnnMeta m = {0};
    ck_assert_int_eq(cnn_checkpoint_read_meta(p, &m), CNN_OK);
    ck_assert_str_eq(cnn_meta_get(&m, "dataset"), "synthetic");
    ck_assert_str_eq(cnn_meta_get(&m, "input_shape"), "2,6,6");
    ck_assert_str_eq(cnn_meta_get(&m, "model"), cnn_net_desc(a));
    ck_assert_str_eq(cnn_meta_get(&m, "optimizer"), "adam");
    cnn_meta_free(&m);

    // Full load into a differently initialised net: identical everything.
    CnnNet *b = make_net(99);
    CnnOptimizer opt_b;
    ck_assert_int_eq(cnn_checkpoint_load(p, b, &opt_b, NULL), CNN_OK);
    const size_t np = cnn_net_num_params(a);
    ck_assert(memcmp(cnn_net_params(a), cnn_net_params(b), np * 4) == 0);
    ck_assert(memcmp(cnn_net_moment1(a), cnn_net_moment1(b), np * 4) == 0);
    ck_assert(memcmp(cnn_net_moment2(a), cnn_net_moment2(b), np * 4) == 0);
    ck_assert(memcmp(cnn_net_buffers(a), cnn_net_buffers(b), cnn_net_num_buffers(a) * 4) == 0);
    ck_assert_int_eq(opt_b.t, opt.t);
    ck_assert_uint_eq(cnn_net_step(b), cnn_net_step(a));
    float x[8 * 72];
    CnnRng r;
    cnn_rng_seed(&r, 5);
    fill_uniform(x, 8 * 72, -1, 1, &r);
    float out_a[24], out_b[24];
    memcpy(out_a, cnn_net_forward(a, x, 8, 0), sizeof out_a);
    memcpy(out_b, cnn_net_forward(b, x, 8, 0), sizeof out_b);
    ck_assert(memcmp(out_a, out_b, sizeof out_a) == 0);

    // Resuming gives bit-identical weights to training straight through.
    train(a, &opt, 4, 20);
    train(b, &opt_b, 4, 20);
    ck_assert(memcmp(cnn_net_params(a), cnn_net_params(b), np * 4) == 0);

    // Loading weights only (no optimiser): the saved weights and buffers,
    // and the net's own moments untouched.
    CnnNet *c = make_net(7), *saved = make_net(99);
    ck_assert_int_eq(cnn_checkpoint_load(p, saved, NULL, NULL), CNN_OK);  // the file's weights, for reference
    memset(cnn_net_moment1(c), 0x11, np * 4);
    ck_assert_int_eq(cnn_checkpoint_load(p, c, NULL, NULL), CNN_OK);
    ck_assert(memcmp(cnn_net_params(c), cnn_net_params(saved), np * 4) == 0);
    ck_assert(memcmp(cnn_net_buffers(c), cnn_net_buffers(saved), cnn_net_num_buffers(c) * 4) == 0);
    ck_assert(memcmp(cnn_net_params(c), cnn_net_params(a), np * 4) != 0);  // a trained on after the save
    for (size_t i = 0; i < np; i++) ck_assert_uint_eq(((const uint32_t *)(const void *)cnn_net_moment1(c))[i], 0x11111111u);
    cnn_net_free(saved);
    cnn_net_free(a);
    cnn_net_free(b);
    cnn_net_free(c);
}
END_TEST

// Every optimiser setting comes back from the file, for each optimiser and
// with none of them at its default: a load that kept the caller's settings
// (lr, betas, eps, weight decay, momentum, Nesterov, step) fails here.
START_TEST(test_optimizer_settings_round_trip) {
    make_dir();
    static const CnnOptimizer saved[] = {
        {.kind = CNN_OPT_ADAM, .lr = 0.0123f, .beta1 = 0.81f, .beta2 = 0.951f, .eps = 3e-7f,
         .weight_decay = 0.021f, .momentum = 0.0f, .nesterov = 0, .t = 0},
        {.kind = CNN_OPT_ADAMW, .lr = 0.0456f, .beta1 = 0.7f, .beta2 = 0.97f, .eps = 1e-6f,
         .weight_decay = 0.05f, .momentum = 0.0f, .nesterov = 0, .t = 0},
        {.kind = CNN_OPT_SGD, .lr = 0.37f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
         .weight_decay = 0.0031f, .momentum = 0.83f, .nesterov = 1, .t = 0},
    };
    for (size_t i = 0; i < sizeof saved / sizeof saved[0]; i++) {
        CnnOptimizer opt = saved[i], back;
        CnnNet *a = make_net(1), *b = make_net(2);
        train(a, &opt, 2, 10);
        const char *p = path_in_dir("opt.safetensors");
        ck_assert_int_eq(cnn_checkpoint_save(p, a, &opt, NULL), CNN_OK);
        cnn_opt_defaults(&back, saved[(i + 1) % 3].kind);  // another optimiser's defaults
        ck_assert_int_eq(cnn_checkpoint_load(p, b, &back, NULL), CNN_OK);
        ck_assert_int_eq(back.kind, opt.kind);
        ck_assert_float_eq(back.lr, opt.lr);
        ck_assert_float_eq(back.weight_decay, opt.weight_decay);
        ck_assert_int_eq(back.t, opt.t);
        if (opt.kind == CNN_OPT_SGD) {
            ck_assert_float_eq(back.momentum, opt.momentum);
            ck_assert_int_eq(back.nesterov, opt.nesterov);
        } else {
            ck_assert_float_eq(back.beta1, opt.beta1);
            ck_assert_float_eq(back.beta2, opt.beta2);
            ck_assert_float_eq(back.eps, opt.eps);
        }
        // And the next steps are the same as the uninterrupted run's.
        train(a, &opt, 2, 20);
        train(b, &back, 2, 20);
        ck_assert(memcmp(cnn_net_params(a), cnn_net_params(b), cnn_net_num_params(a) * 4) == 0);
        cnn_net_free(a);
        cnn_net_free(b);
    }
}
END_TEST

// Found when resnet20 came: metadata values were cut at 255 characters, so
// the checkpoint of any model with a longer canonical description (vgg8bn's
// has 540) named a model that did not parse. Long descriptions come back
// whole, and the file loads into the net it came from.
START_TEST(test_long_model_descriptions_round_trip) {
    make_dir();
    static const char *models[] = {"vgg8bn", "resnet20"};
    for (int i = 0; i < 2; i++) {
        CnnNet *a, *b;
        ck_assert_int_eq(cnn_net_create(&a, models[i], 3, 32, 32, 2, 1), CNN_OK);
        ck_assert_uint_gt(strlen(cnn_net_desc(a)), 500);
        const char *p = path_in_dir("long.safetensors");
        CnnMeta meta = {0};
        ck_assert_int_eq(cnn_meta_set(&meta, "note", "%s", cnn_net_desc(a)), CNN_OK);
        ck_assert_int_eq(cnn_checkpoint_save(p, a, NULL, &meta), CNN_OK);
        cnn_meta_free(&meta);
        CnnMeta back = {0};
        ck_assert_int_eq(cnn_checkpoint_read_meta(p, &back), CNN_OK);
        ck_assert_str_eq(cnn_meta_get(&back, "model"), cnn_net_desc(a));
        ck_assert_str_eq(cnn_meta_get(&back, "note"), cnn_net_desc(a));
        ck_assert_int_eq(cnn_net_create(&b, cnn_meta_get(&back, "model"), 3, 32, 32, 2, 7), CNN_OK);
        ck_assert_int_eq(cnn_checkpoint_load(p, b, NULL, NULL), CNN_OK);
        ck_assert(memcmp(cnn_net_params(a), cnn_net_params(b), cnn_net_num_params(a) * 4) == 0);
        cnn_meta_free(&back);
        cnn_net_free(a);
        cnn_net_free(b);
    }
}
END_TEST

// The weights' moving average: the recurrence after each step, a swap for
// evaluation, and its own tensors in checkpoints ("ema.<name>"), which a net
// without one leaves out and a net with one requires.
START_TEST(test_ema_round_trip) {
    make_dir();
    CnnNet *a = make_net(1), *b = make_net(2), *plain = make_net(3);
    const size_t n = cnn_net_num_params(a);
    ck_assert_int_eq(cnn_net_set_ema(a, 0.9f), CNN_OK);
    ck_assert_float_eq(cnn_net_ema_decay(a), 0.9f);
    float *want = malloc(n * sizeof(float)), *raw = malloc(n * sizeof(float));
    memcpy(want, cnn_net_params(a), n * sizeof(float));  // the average starts at the weights
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_ADAM);
    for (int s = 0; s < 3; s++) {
        train(a, &opt, 1, 40 + (uint64_t)s);
        for (size_t i = 0; i < n; i++) want[i] = 0.9f * want[i] + (1.0f - 0.9f) * cnn_net_params(a)[i];
    }
    memcpy(raw, cnn_net_params(a), n * sizeof(float));
    cnn_net_swap_ema(a);
    ck_assert(memcmp(cnn_net_params(a), want, n * sizeof(float)) == 0);
    cnn_net_swap_ema(a);
    ck_assert(memcmp(cnn_net_params(a), raw, n * sizeof(float)) == 0);
    const char *p = path_in_dir("ema.safetensors");
    ck_assert_int_eq(cnn_checkpoint_save(p, a, &opt, NULL), CNN_OK);
    ck_assert_int_eq(cnn_net_set_ema(b, 0.9f), CNN_OK);
    ck_assert_int_eq(cnn_checkpoint_load(p, b, NULL, NULL), CNN_OK);
    ck_assert(memcmp(cnn_net_params(b), raw, n * sizeof(float)) == 0);
    cnn_net_swap_ema(b);
    ck_assert(memcmp(cnn_net_params(b), want, n * sizeof(float)) == 0);
    ck_assert_int_eq(cnn_checkpoint_load(p, plain, NULL, NULL), CNN_OK);  // ema.* left out
    ck_assert(memcmp(cnn_net_params(plain), raw, n * sizeof(float)) == 0);
    cnn_set_quiet(1);
    const char *q = path_in_dir("no-ema.safetensors");
    ck_assert_int_eq(cnn_checkpoint_save(q, plain, NULL, NULL), CNN_OK);
    ck_assert_int_ne(cnn_checkpoint_load(q, b, NULL, NULL), CNN_OK);  // b needs its average
    ck_assert_int_eq(cnn_net_set_ema(a, 1.0f), CNN_EARG);
    ck_assert_int_eq(cnn_net_set_ema(a, 0.0f), CNN_OK);
    ck_assert_float_eq(cnn_net_ema_decay(a), 0.0f);
    free(want);
    free(raw);
    cnn_net_free(a);
    cnn_net_free(b);
    cnn_net_free(plain);
}
END_TEST

// Found by a deliberate bug: the old version of this test saved to another
// path, so it could not fail. Here the failing save targets the kept file:
// a file size limit makes writing the temporary copy fail (EFBIG).
START_TEST(test_failed_save_over_file_keeps_it) {
    cnn_set_quiet(1);
    make_dir();
    CnnNet *a = make_net(1);
    const char *p = path_in_dir("over.safetensors");
    ck_assert_int_eq(cnn_checkpoint_save(p, a, NULL, NULL), CNN_OK);
    size_t n0;
    unsigned char *before = read_file(p, &n0);
    for (size_t i = 0; i < cnn_net_num_params(a); i++) cnn_net_params(a)[i] += 1.0f;  // new content
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {.rlim_cur = n0 / 2, .rlim_max = RLIM_INFINITY};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    ck_assert_int_eq(cnn_checkpoint_save(p, a, NULL, NULL), CNN_EIO);
    lim.rlim_cur = RLIM_INFINITY;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), p));
    size_t n1;
    unsigned char *after = read_file(p, &n1);
    ck_assert_uint_eq(n0, n1);
    ck_assert(memcmp(before, after, n0) == 0);
    // The same save without the limit does replace it (the test can tell).
    ck_assert_int_eq(cnn_checkpoint_save(p, a, NULL, NULL), CNN_OK);
    free(after);
    after = read_file(p, &n1);
    ck_assert(n0 != n1 || memcmp(before, after, n0) != 0);
    free(before);
    free(after);
    cnn_net_free(a);
}
END_TEST

START_TEST(test_pytorch_layout) {
    // The header lists PyTorch state_dict names with PyTorch shapes, and the
    // data of "0.weight" is the first conv's (OC,C,KH,KW) weights verbatim.
    make_dir();
    CnnNet *a = make_net(1);
    const char *p = path_in_dir("b.safetensors");
    ck_assert_int_eq(cnn_checkpoint_save(p, a, NULL, NULL), CNN_OK);
    size_t n;
    unsigned char *b = read_file(p, &n);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)b[i] << (8 * i);
    ck_assert_uint_eq(hlen % 8, 0);
    b[8 + hlen - 1] = 0;
    const char *h = (const char *)b + 8;
    ck_assert_ptr_nonnull(strstr(h, "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4,2,3,3],\"data_offsets\":[0,288]}"));
    ck_assert_ptr_nonnull(strstr(h, "\"1.running_var\""));
    ck_assert_ptr_nonnull(strstr(h, "\"5.weight\":{\"dtype\":\"F32\",\"shape\":[6,36]"));
    ck_assert(memcmp(b + 8 + hlen, cnn_net_params(a), 288) == 0);
    ck_assert_uint_eq(n, 8 + hlen + 4 * (cnn_net_num_params(a) + cnn_net_num_buffers(a)));
    free(b);
    cnn_net_free(a);
}
END_TEST

// Loads `bytes` as a checkpoint and expects failure with `msg` in the message.
static void expect_reject(const char *name, const void *bytes, size_t n, CnnStatus want, const char *msg) {
    const char *p = path_in_dir(name);
    write_file(p, bytes, n);
    CnnNet *net = make_net(3);
    float before[16];
    memcpy(before, cnn_net_params(net), sizeof before);
    CnnOptimizer opt;
    CnnStatus st = cnn_checkpoint_load(p, net, &opt, NULL);
    ck_assert_msg(st == want, "%s: status %d, want %d (%s)", name, st, want, cnn_last_error());
    ck_assert_msg(strstr(cnn_last_error(), msg), "%s: message \"%s\" lacks \"%s\"", name, cnn_last_error(), msg);
    ck_assert_msg(strstr(cnn_last_error(), p), "%s: message \"%s\" does not name the file", name, cnn_last_error());
    ck_assert(memcmp(before, cnn_net_params(net), sizeof before) == 0);  // untouched
    cnn_net_free(net);
}

// A copy of a valid checkpoint's header with `from` replaced by `to`.
static unsigned char *edit_header(const unsigned char *good, size_t n, const char *from, const char *to, size_t *out_n) {
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)good[i] << (8 * i);
    char *h = malloc(hlen + 1);
    memcpy(h, good + 8, hlen);
    h[hlen] = 0;
    char *at = strstr(h, from);
    ck_assert_msg(at != NULL, "header lacks %s", from);
    size_t nh = hlen - strlen(from) + strlen(to);
    unsigned char *b = malloc(8 + nh + (n - 8 - hlen));
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(nh >> (8 * i));
    size_t pre = (size_t)(at - h);
    memcpy(b + 8, h, pre);
    memcpy(b + 8 + pre, to, strlen(to));
    memcpy(b + 8 + pre + strlen(to), at + strlen(from), hlen - pre - strlen(from));
    memcpy(b + 8 + nh, good + 8 + hlen, n - 8 - hlen);
    *out_n = 8 + nh + (n - 8 - hlen);
    free(h);
    return b;
}

START_TEST(test_rejects_broken_files) {
    cnn_set_quiet(1);
    make_dir();
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_ADAM);
    CnnNet *a = make_net(1);
    train(a, &opt, 1, 1);
    const char *good_path = path_in_dir("good.safetensors");
    ck_assert_int_eq(cnn_checkpoint_save(good_path, a, &opt, NULL), CNN_OK);
    cnn_net_free(a);
    size_t n;
    unsigned char *good = read_file(good_path, &n);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)good[i] << (8 * i);

    expect_reject("empty", good, 0, CNN_EFORMAT, "too short");
    expect_reject("trunc4", good, 4, CNN_EFORMAT, "4 bytes is too short");
    char want[96];
    snprintf(want, sizeof want, "does not fit a file of %zu bytes", (size_t)(8 + hlen / 2));
    expect_reject("trunc_header", good, 8 + hlen / 2, CNN_EFORMAT, want);
    expect_reject("trunc_data", good, n - 100, CNN_EFORMAT, "the header describes");
    expect_reject("trunc_1", good, n - 1, CNN_EFORMAT, "the header describes");
    // The cut falls in the optimiser moments: a weights-only load and the
    // metadata reader (trainer eval, predict) refuse it too, as the
    // safetensors library does, not only a load with the optimiser.
    {
        const char *p = path_in_dir("trunc_moments");
        write_file(p, good, n - 100);
        CnnNet *net = make_net(3);
        ck_assert_int_eq(cnn_checkpoint_load(p, net, NULL, NULL), CNN_EFORMAT);
        ck_assert_ptr_nonnull(strstr(cnn_last_error(), "truncated"));
        CnnMeta meta = {0};
        ck_assert_int_eq(cnn_checkpoint_read_meta(p, &meta), CNN_EFORMAT);
        cnn_meta_free(&meta);
        cnn_net_free(net);
        unsigned char *longer = malloc(n + 4);
        memcpy(longer, good, n);
        memset(longer + n, 0, 4);
        expect_reject("trailing", longer, n + 4, CNN_EFORMAT, "but the file holds");
        free(longer);
    }
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    expect_reject("huge_header", huge, sizeof huge, CNN_EFORMAT, "header length");
    unsigned char notjson[16] = {8, 0, 0, 0, 0, 0, 0, 0, 'n', 'o', 't', ' ', 'j', 's', 'o', 'n'};
    expect_reject("notjson", notjson, sizeof notjson, CNN_EFORMAT, "not a JSON object");
    size_t m;
    unsigned char *b;
    b = edit_header(good, n, "\"format\":\"cnnc-1\"", "\"format\":\"other\"", &m);
    expect_reject("format", b, m, CNN_EFORMAT, "format is 'other'");
    free(b);
    b = edit_header(good, n, "\"dtype\":\"F32\",\"shape\":[4,2,3,3]", "\"dtype\":\"I32\",\"shape\":[4,2,3,3]", &m);
    expect_reject("dtype", b, m, CNN_EFORMAT, "tensor '0.weight' has dtype I32, expected F32");
    free(b);
    b = edit_header(good, n, "\"dtype\":\"F32\",\"shape\":[4,2,3,3]", "\"dtype\":\"F16\",\"shape\":[4,2,3,3]", &m);
    expect_reject("dtype_size", b, m, CNN_EFORMAT, "'0.weight' data_offsets [0,288] hold 288 bytes, its dtype and shape need 144");
    free(b);
    b = edit_header(good, n, "\"shape\":[4,2,3,3],\"data_offsets\":[0,288]", "\"shape\":[4,2,3,2],\"data_offsets\":[0,288]", &m);
    expect_reject("shape", b, m, CNN_EFORMAT, "'0.weight' data_offsets [0,288] hold 288 bytes, its dtype and shape need 192");
    free(b);
    b = edit_header(good, n, "\"shape\":[4,2,3,3],\"data_offsets\":[0,288]", "\"shape\":[4,2,3,3,1],\"data_offsets\":[0,288]", &m);
    expect_reject("shape_rank", b, m, CNN_ESHAPE, "tensor '0.weight' has shape [4,2,3,3,1], the model needs [4,2,3,3]");
    free(b);
    b = edit_header(good, n, "\"data_offsets\":[0,288]", "\"data_offsets\":[0,999999999]", &m);
    expect_reject("offsets", b, m, CNN_EFORMAT, "data_offsets [0,999999999]");
    free(b);
    b = edit_header(good, n, "\"0.weight\"", "\"0.wieght\"", &m);
    expect_reject("missing", b, m, CNN_EFORMAT, "tensor '0.weight' is missing");
    free(b);
    b = edit_header(good, n, "dense(6)", "dense(7)", &m);
    expect_reject("model", b, m, CNN_ESHAPE, "differs from this model");
    free(b);
    b = edit_header(good, n, "\"input_shape\":\"2,6,6\"", "\"input_shape\":\"1,6,6\"", &m);
    expect_reject("input", b, m, CNN_ESHAPE, "input shape 1,6,6");
    free(b);
    b = edit_header(good, n, "\"lr\":\"0.00100000005\"", "\"lr\":\"fast\"", &m);
    expect_reject("lr", b, m, CNN_EFORMAT, "'lr' is missing or not a number");
    free(b);
    // Found by reading the fuzz target's reach: values that parse but make no sense.
    b = edit_header(good, n, "\"lr\":\"0.00100000005\"", "\"lr\":\"nan\"", &m);
    expect_reject("lr_nan", b, m, CNN_EFORMAT, "'lr' is nan, outside [0, inf)");
    free(b);
    b = edit_header(good, n, "\"beta2\":\"0.999000013\"", "\"beta2\":\"1\"", &m);
    expect_reject("beta2", b, m, CNN_EFORMAT, "'beta2' is 1, outside [0, 1)");
    free(b);
    b = edit_header(good, n, "\"optimizer_step\":\"1\"", "\"optimizer_step\":\"99999999999999999999\"", &m);
    expect_reject("opt_step", b, m, CNN_EFORMAT, "'optimizer_step' is missing or bad");
    free(b);
    b = edit_header(good, n, "\"net_step\":\"1\"", "\"net_step\":\"-1\"", &m);
    expect_reject("net_step", b, m, CNN_EFORMAT, "'net_step' is '-1'");
    free(b);
    {  // a well-formed extra tensor after the others (4 more bytes of data)
        const size_t data = n - 8 - hlen;
        char extra[160];
        snprintf(extra, sizeof extra, "\"9.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%zu,%zu]},"
                 "\"__metadata__\":{", data, data + 4);
        b = edit_header(good, n, "\"__metadata__\":{", extra, &m);
        b = realloc(b, m + 4);
        memset(b + m, 0, 4);
        expect_reject("extra", b, m + 4, CNN_ESHAPE, "tensor '9.weight' does not belong to this model");
        free(b);
        b = edit_header(good, n, "\"__metadata__\":{",
                        "\"9.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"__metadata__\":{", &m);
        expect_reject("overlap", b, m, CNN_EFORMAT, "overlapping or missing data");
        free(b);
    }
    // A file that does not exist, and a folder.
    CnnNet *net = make_net(1);
    ck_assert_int_eq(cnn_checkpoint_load(path_in_dir("nope"), net, NULL, NULL), CNN_EIO);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "No such file"));
    ck_assert_int_eq(cnn_checkpoint_load(dir, net, NULL, NULL), CNN_EIO);
    cnn_net_free(net);
    free(good);
}
END_TEST

START_TEST(test_failed_save_keeps_previous_file) {
    cnn_set_quiet(1);
    make_dir();
    CnnNet *a = make_net(1);
    const char *p = path_in_dir("keep.safetensors");
    ck_assert_int_eq(cnn_checkpoint_save(p, a, NULL, NULL), CNN_OK);
    size_t n0;
    unsigned char *before = read_file(p, &n0);
    // Saving into a folder that does not exist fails cleanly.
    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing/dir/x.safetensors", dir);
    ck_assert_int_eq(cnn_checkpoint_save(bad, a, NULL, NULL), CNN_EIO);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), bad));
    // The target was never opened for writing, so it is intact.
    size_t n1;
    unsigned char *after = read_file(p, &n1);
    ck_assert_uint_eq(n0, n1);
    ck_assert(memcmp(before, after, n0) == 0);
    // No temporary files are left behind.
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp", dir);
    FILE *f = popen(cmd, "r");
    int count = -1;
    ck_assert_int_eq(fscanf(f, "%d", &count), 1);
    pclose(f);
    ck_assert_int_eq(count, 0);
    free(before);
    free(after);
    cnn_net_free(a);
}
END_TEST

int main(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("safetensors");
    tcase_add_test(tc, test_round_trip_and_resume);
    tcase_add_test(tc, test_pytorch_layout);
    tcase_add_test(tc, test_rejects_broken_files);
    tcase_add_test(tc, test_failed_save_keeps_previous_file);
    tcase_add_test(tc, test_failed_save_over_file_keeps_it);
    tcase_add_test(tc, test_optimizer_settings_round_trip);
    tcase_add_test(tc, test_long_model_descriptions_round_trip);
    tcase_add_test(tc, test_ema_round_trip);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
