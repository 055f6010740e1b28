// Batches: pixel -> float conversion, crop/flip against a naive padded-copy
// reference, augmentation streams, shuffling, thread- and batch-size
// invariance, normalisation with channel statistics and partial batches.
// OpenMP runs only inside the tests (Check forks; see STYLE.md).
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"
#include "datagen.h"

// Reference: pad with zeros into (h+2P, w+2P), crop at (P+dy, P+dx), mirror.
static void naive_augment(const uint8_t *src, int c, int h, int w, int P, int dy, int dx, int flip,
                          const float *mean, const float *std, float *dst) {
    int PH = h + 2 * P, PW = w + 2 * P;
    uint8_t *pad = calloc((size_t)c * PH * PW, 1);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                pad[((size_t)ch * PH + y + P) * PW + x + P] = src[((size_t)ch * h + y) * w + x];
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int cx = flip ? w - 1 - x : x;
                uint8_t p = pad[((size_t)ch * PH + y + P + dy) * PW + cx + P + dx];
                dst[((size_t)ch * h + y) * w + x] = ((float)p / 255.0f - mean[ch]) / std[ch];
            }
    free(pad);
}

// ---------------------------------------------------------------- one image
START_TEST(test_image_to_float) {
    CnnDataset d;
    gen_dataset(&d, 1, 3, 4, 5);
    float x[60];
    cnn_image_to_float(d.images, 3, 4, 5, NULL, NULL, 0, 0, 0, x);
    for (int k = 0; k < 60; k++) ck_assert_float_eq(x[k], (float)d.images[k] / 255.0f);
    const float mean[3] = {0.5f, 0.25f, 0.125f}, std[3] = {0.5f, 2.0f, 0.25f};
    cnn_image_to_float(d.images, 3, 4, 5, mean, std, 0, 0, 0, x);
    for (int k = 0; k < 60; k++)
        ck_assert_float_eq(x[k], ((float)d.images[k] / 255.0f - mean[k / 20]) / std[k / 20]);
    cnn_dataset_free(&d);
}
END_TEST

START_TEST(test_crop_flip_vs_naive) {
    CnnDataset d;
    gen_dataset(&d, 1, 3, 6, 7);
    const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.247f, 0.243f, 0.261f};
    float x[126], ref[126];
    const int P = 4;
    for (int dy = -P; dy <= P; dy++)
        for (int dx = -P; dx <= P; dx++)
            for (int flip = 0; flip < 2; flip++) {
                cnn_image_to_float(d.images, 3, 6, 7, mean, std, dy, dx, flip, x);
                naive_augment(d.images, 3, 6, 7, P, dy, dx, flip, mean, std, ref);
                ck_assert_msg(memcmp(x, ref, sizeof x) == 0, "dy %d dx %d flip %d", dy, dx, flip);
            }
    // Spot check: a pure flip mirrors each row; a shift by the full width is all padding.
    cnn_image_to_float(d.images, 3, 6, 7, NULL, NULL, 0, 0, 1, x);
    ck_assert_float_eq(x[0], d.images[6] / 255.0f);
    cnn_image_to_float(d.images, 3, 6, 7, mean, std, 0, 7, 0, x);
    ck_assert_float_eq(x[0], -mean[0] / std[0]);
    ck_assert_float_eq(x[125], -mean[2] / std[2]);
    cnn_dataset_free(&d);
}
END_TEST

START_TEST(test_augment_draw) {
    const CnnAugment aug = {.crop_pad = 4, .hflip = 1};
    int seen_dy[9] = {0}, seen_dx[9] = {0}, flips = 0;
    for (uint64_t i = 0; i < 2000; i++) {
        int dy, dx, flip, dy2, dx2, flip2;
        cnn_augment_draw(&aug, 42, 3, i, &dy, &dx, &flip);
        cnn_augment_draw(&aug, 42, 3, i, &dy2, &dx2, &flip2);
        ck_assert(dy == dy2 && dx == dx2 && flip == flip2);
        ck_assert(dy >= -4 && dy <= 4 && dx >= -4 && dx <= 4 && (flip == 0 || flip == 1));
        seen_dy[dy + 4]++;
        seen_dx[dx + 4]++;
        flips += flip;
    }
    for (int k = 0; k < 9; k++) ck_assert(seen_dy[k] > 100 && seen_dx[k] > 100);
    ck_assert(flips > 850 && flips < 1150);
    // No augmentation: all zero, whatever the stream.
    int dy = 1, dx = 1, flip = 1;
    cnn_augment_draw(NULL, 42, 3, 7, &dy, &dx, &flip);
    ck_assert(dy == 0 && dx == 0 && flip == 0);
    const CnnAugment flip_only = {.hflip = 1};
    cnn_augment_draw(&flip_only, 42, 3, 7, &dy, &dx, &flip);
    ck_assert(dy == 0 && dx == 0);
}
END_TEST

// Alternating flips: each image's side swaps every epoch; about half the
// images start mirrored; the crop is still drawn per epoch.
START_TEST(test_augment_alternating_flip) {
    const CnnAugment alt = {.crop_pad = 2, .hflip = 2, .reflect = 1};
    int first = 0, crops_differ = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        int dy[4], dx[4], flip[4];
        for (int e = 0; e < 4; e++) cnn_augment_draw(&alt, 7, (uint64_t)e, i, &dy[e], &dx[e], &flip[e]);
        for (int e = 1; e < 4; e++) ck_assert_int_eq(flip[e], flip[e - 1] ^ 1);
        first += flip[0];
        crops_differ += dy[0] != dy[1] || dx[0] != dx[1];
        ck_assert(dy[0] >= -2 && dy[0] <= 2 && dx[0] >= -2 && dx[0] <= 2);
    }
    ck_assert(first > 420 && first < 580);
    ck_assert(crops_differ > 700);
}
END_TEST

// Reflect padding, against PyTorch's F.pad(mode='reflect') written out by hand.
START_TEST(test_image_reflect_pad) {
    enum { H = 4, W = 5 };
    uint8_t img[H * W];
    for (int i = 0; i < H * W; i++) img[i] = (uint8_t)(10 * i);
    float out[H * W];
    // Shift (dy, dx) = (-2, 1): row y reads source row y-2 mirrored at the top.
    cnn_image_to_float_pad(img, 1, H, W, NULL, NULL, -2, 1, 0, 1, out);
    const int rows[H] = {2, 1, 0, 1}, cols[W] = {1, 2, 3, 4, 3};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            ck_assert_float_eq(out[y * W + x], (float)img[rows[y] * W + cols[x]] / 255.0f);
    // Mirrored, then shifted 2 columns: the first columns read past the right edge, reflected.
    cnn_image_to_float_pad(img, 1, H, W, NULL, NULL, 0, 2, 1, 1, out);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int sx = (W - 1 - x) + 2;
            if (sx >= W) sx = 2 * W - 2 - sx;
            ck_assert_float_eq(out[y * W + x], (float)img[y * W + sx] / 255.0f);
        }
    // A black pad still reads 0 there.
    cnn_image_to_float_pad(img, 1, H, W, NULL, NULL, -2, 0, 0, 0, out);
    ck_assert_float_eq(out[0], 0.0f);
    ck_assert_float_eq(out[2 * W], (float)img[0] / 255.0f);
}
END_TEST

// ---------------------------------------------------------------- batcher
// All batches of one epoch: x into xs (n*is floats), labels and indices.
static void run_epoch(const CnnDataset *d, const CnnBatcherConfig *cfg, uint64_t epoch, float *xs,
                      uint8_t *labels, uint32_t *indices) {
    CnnBatcher b;
    ck_assert_int_eq(cnn_batcher_init(&b, d, cfg), CNN_OK);
    cnn_batcher_epoch(&b, epoch);
    size_t is = cnn_dataset_image_size(d), at = 0;
    float *x = malloc((size_t)cfg->batch * is * sizeof *x);
    uint8_t *l = malloc((size_t)cfg->batch);
    int B;
    while ((B = cnn_batcher_next(&b, x, l)) > 0) {
        int nb;
        const uint32_t *idx = cnn_batcher_indices(&b, &nb);
        ck_assert_int_eq(nb, B);
        memcpy(xs + at * is, x, (size_t)B * is * sizeof *x);
        memcpy(labels + at, l, (size_t)B);
        memcpy(indices + at, idx, (size_t)B * sizeof *idx);
        at += (size_t)B;
    }
    ck_assert_uint_eq(at, d->n);
    free(x);
    free(l);
    cnn_batcher_free(&b);
}

START_TEST(test_shuffle_is_permutation) {
    CnnDataset d;
    gen_dataset(&d, 1000, 1, 2, 2);
    CnnBatcherConfig cfg = {.batch = 64, .shuffle = 1, .seed = 7};
    float *xs = malloc(1000 * 4 * sizeof *xs);
    uint8_t labels[1000];
    uint32_t i0[1000], i1[1000], i0b[1000];
    run_epoch(&d, &cfg, 0, xs, labels, i0);
    run_epoch(&d, &cfg, 1, xs, labels, i1);
    run_epoch(&d, &cfg, 0, xs, labels, i0b);
    char seen[1000] = {0};
    size_t moved = 0;
    for (int i = 0; i < 1000; i++) {
        ck_assert_uint_lt(i1[i], 1000);
        ck_assert(!seen[i1[i]]);
        seen[i1[i]] = 1;
        moved += i0[i] != (uint32_t)i;
    }
    ck_assert_mem_eq(i0, i0b, sizeof i0);  // same seed and epoch: same order
    ck_assert(memcmp(i0, i1, sizeof i0) != 0);
    ck_assert_uint_gt(moved, 900);
    // Labels and images follow the order.
    for (int i = 0; i < 1000; i++) {
        ck_assert_uint_eq(labels[i], d.labels[i0b[i]]);
        ck_assert_float_eq(xs[i * 4 + 3], d.images[i0b[i] * 4 + 3] / 255.0f);
    }
    // Sequential mode keeps data set order.
    cfg.shuffle = 0;
    run_epoch(&d, &cfg, 5, xs, labels, i0);
    for (int i = 0; i < 1000; i++) ck_assert_uint_eq(i0[i], (uint32_t)i);
    ck_assert_mem_eq(labels, d.labels, 1000);
    free(xs);
    cnn_dataset_free(&d);
}
END_TEST

START_TEST(test_thread_and_batch_invariance) {
    CnnDataset d;
    gen_dataset(&d, 203, 3, 8, 8);
    const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.2f, 0.25f, 0.3f};
    CnnBatcherConfig cfg = {
        .batch = 16, .shuffle = 1, .seed = 99, .aug = {2, 1}, .mean = mean, .std = std};
    size_t nf = 203 * 192;
    float *x1 = malloc(nf * sizeof(float)), *x3 = malloc(nf * sizeof(float));
    float *x7 = malloc(nf * sizeof(float));
    uint8_t l1[203], l3[203], l7[203];
    uint32_t i1[203], i3[203], i7[203];
    omp_set_num_threads(1);
    run_epoch(&d, &cfg, 2, x1, l1, i1);
    omp_set_num_threads(3);
    run_epoch(&d, &cfg, 2, x3, l3, i3);
    cfg.batch = 7;  // another batch size: same images in the same order
    run_epoch(&d, &cfg, 2, x7, l7, i7);
    ck_assert(memcmp(x1, x3, nf * sizeof(float)) == 0);
    ck_assert_mem_eq(l1, l3, 203);
    ck_assert_mem_eq(i1, i3, sizeof i1);
    ck_assert(memcmp(x1, x7, nf * sizeof(float)) == 0);
    ck_assert_mem_eq(i1, i7, sizeof i1);
    // Each image is exactly its own draw applied by cnn_image_to_float.
    float ref[192];
    for (int i = 0; i < 203; i += 17) {
        int dy, dx, flip;
        cnn_augment_draw(&cfg.aug, 99, 2, i1[i], &dy, &dx, &flip);
        cnn_image_to_float(d.images + (size_t)i1[i] * 192, 3, 8, 8, mean, std, dy, dx, flip, ref);
        ck_assert(memcmp(x1 + (size_t)i * 192, ref, sizeof ref) == 0);
    }
    free(x1);
    free(x3);
    free(x7);
    cnn_dataset_free(&d);
}
END_TEST

START_TEST(test_augment_seed) {
    CnnDataset d;
    gen_dataset(&d, 64, 1, 10, 10);
    size_t nf = 64 * 100;
    float *a = malloc(nf * sizeof(float)), *b = malloc(nf * sizeof(float));
    float *c = malloc(nf * sizeof(float)), *e = malloc(nf * sizeof(float));
    uint8_t l[64];
    uint32_t ia[64], ib[64], ic[64], ie[64];
    CnnBatcherConfig cfg = {.batch = 10, .shuffle = 0, .seed = 1, .aug = {3, 1}};
    run_epoch(&d, &cfg, 0, a, l, ia);
    run_epoch(&d, &cfg, 0, b, l, ib);
    ck_assert(memcmp(a, b, nf * sizeof(float)) == 0);  // same seed: same images
    cfg.seed = 2;
    run_epoch(&d, &cfg, 0, c, l, ic);
    ck_assert(memcmp(a, c, nf * sizeof(float)) != 0);  // another seed: others
    cfg.seed = 1;
    run_epoch(&d, &cfg, 1, e, l, ie);
    ck_assert(memcmp(a, e, nf * sizeof(float)) != 0);  // another epoch: others
    int differ = 0;
    for (int i = 0; i < 64; i++) differ += memcmp(a + i * 100, c + i * 100, 400) != 0;
    ck_assert_int_gt(differ, 48);  // nearly every image, not just a few
    free(a);
    free(b);
    free(c);
    free(e);
    cnn_dataset_free(&d);
}
END_TEST

START_TEST(test_normalised_with_stats) {
    CnnDataset d;
    gen_dataset(&d, 150, 3, 6, 6);
    float mean[3], std[3];
    cnn_dataset_channel_stats(&d, mean, std);
    CnnBatcherConfig cfg = {.batch = 32, .mean = mean, .std = std};
    size_t nf = 150 * 108;
    float *x = malloc(nf * sizeof(float));
    uint8_t l[150];
    uint32_t idx[150];
    run_epoch(&d, &cfg, 0, x, l, idx);
    for (int ch = 0; ch < 3; ch++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < 150; i++)
            for (int k = 0; k < 36; k++) {
                double v = x[(size_t)i * 108 + ch * 36 + k];
                s += v;
                s2 += v * v;
            }
        double m = s / (150 * 36), var = s2 / (150 * 36) - m * m;
        ck_assert_double_eq_tol(m, 0.0, 1e-5);
        ck_assert_double_eq_tol(sqrt(var), 1.0, 1e-5);
    }
    free(x);
    cnn_dataset_free(&d);
}
END_TEST

START_TEST(test_partial_last_batch) {
    CnnDataset d;
    gen_dataset(&d, 10, 1, 2, 2);
    CnnBatcher b;
    CnnBatcherConfig cfg = {.batch = 4, .shuffle = 1, .seed = 3};
    ck_assert_int_eq(cnn_batcher_init(&b, &d, &cfg), CNN_OK);
    ck_assert_uint_eq(cnn_batcher_num_batches(&b), 3);
    float x[16];
    uint8_t l[4];
    for (int epoch = 0; epoch < 2; epoch++) {
        cnn_batcher_epoch(&b, (uint64_t)epoch);
        ck_assert_int_eq(cnn_batcher_next(&b, x, l), 4);
        ck_assert_int_eq(cnn_batcher_next(&b, x, NULL), 4);
        ck_assert_int_eq(cnn_batcher_next(&b, x, l), 2);
        ck_assert_int_eq(cnn_batcher_next(&b, x, l), 0);
        ck_assert_int_eq(cnn_batcher_next(&b, x, l), 0);
    }
    cnn_batcher_free(&b);
    cfg.drop_last = 1;
    ck_assert_int_eq(cnn_batcher_init(&b, &d, &cfg), CNN_OK);
    ck_assert_uint_eq(cnn_batcher_num_batches(&b), 2);
    ck_assert_int_eq(cnn_batcher_next(&b, x, l), 4);
    ck_assert_int_eq(cnn_batcher_next(&b, x, l), 4);
    ck_assert_int_eq(cnn_batcher_next(&b, x, l), 0);
    cnn_batcher_free(&b);
    cfg = (CnnBatcherConfig){.batch = 32};  // one batch bigger than the data set
    ck_assert_int_eq(cnn_batcher_init(&b, &d, &cfg), CNN_OK);
    ck_assert_uint_eq(cnn_batcher_num_batches(&b), 1);
    float big[32 * 4];
    uint8_t lb[32];
    ck_assert_int_eq(cnn_batcher_next(&b, big, lb), 10);
    ck_assert_mem_eq(lb, d.labels, 10);
    cnn_batcher_free(&b);
    cnn_dataset_free(&d);
}
END_TEST

// A data-parallel rank's part of each batch: exactly those images of the
// whole batch (augmented as in it), the position moved past the whole
// batch; a range outside the batch is refused and moves nothing.
START_TEST(test_next_part) {
    CnnDataset d;
    gen_dataset(&d, 10, 3, 4, 5);
    CnnBatcherConfig cfg = {.batch = 4, .shuffle = 1, .seed = 9, .aug = {.crop_pad = 1, .hflip = 1}};
    CnnBatcher whole, part;
    ck_assert_int_eq(cnn_batcher_init(&whole, &d, &cfg), CNN_OK);
    ck_assert_int_eq(cnn_batcher_init(&part, &d, &cfg), CNN_OK);
    const size_t is = cnn_dataset_image_size(&d);
    float xw[4 * 60], xp[4 * 60];
    uint8_t lw[4], lp[4];
    cnn_batcher_epoch(&whole, 1);
    cnn_batcher_epoch(&part, 1);
    static const int first[] = {1, 0, 1}, count[] = {2, 4, 1};  // batches of 4, 4 and 2
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(cnn_batcher_peek(&part), k < 2 ? 4 : 2);
        const int B = cnn_batcher_next(&whole, xw, lw);
        ck_assert_int_eq(cnn_batcher_next_part(&part, B + 1, 0, xp, lp), -1);  // past the batch
        ck_assert_int_eq(cnn_batcher_next_part(&part, 1, B, xp, lp), -1);  // runs past its end
        ck_assert_int_eq(cnn_batcher_next_part(&part, -1, 1, xp, lp), -1);
        ck_assert_int_eq(cnn_batcher_next_part(&part, first[k], count[k], xp, lp), B);
        ck_assert_mem_eq(xp, xw + (size_t)first[k] * is, sizeof(float) * is * (size_t)count[k]);
        ck_assert_mem_eq(lp, lw + first[k], (size_t)count[k]);
    }
    ck_assert_int_eq(cnn_batcher_peek(&part), 0);
    ck_assert_int_eq(cnn_batcher_next_part(&part, 0, 0, xp, lp), 0);
    cnn_batcher_free(&whole);
    cnn_batcher_free(&part);
    cnn_dataset_free(&d);
}
END_TEST

START_TEST(test_init_errors) {
    CnnDataset d, empty = {0};
    gen_dataset(&d, 10, 3, 4, 5);
    CnnBatcher b;
    cnn_set_quiet(1);
    CnnBatcherConfig cfg = {.batch = 0};
    ck_assert_int_eq(cnn_batcher_init(&b, &d, &cfg), CNN_EARG);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "batch size 0"));
    cfg.batch = 4;
    ck_assert_int_eq(cnn_batcher_init(&b, &empty, &cfg), CNN_EARG);
    cfg.aug.crop_pad = 5;
    ck_assert_int_eq(cnn_batcher_init(&b, &d, &cfg), CNN_EARG);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "crop_pad 5 is outside 0..4"));
    cfg.aug.reflect = 1;  // a mirror needs a pixel past the edge: at most 3 here
    cfg.aug.crop_pad = 4;
    ck_assert_int_eq(cnn_batcher_init(&b, &d, &cfg), CNN_EARG);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "crop_pad 4 is outside 0..3"));
    cfg.aug = (CnnAugment){.crop_pad = 4, .hflip = 3};
    ck_assert_int_eq(cnn_batcher_init(&b, &d, &cfg), CNN_EARG);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "hflip 3 is not 0 (off), 1 (random) or 2 (alternating)"));
    cfg.aug.hflip = 0;
    const float mean[3] = {0, 0, 0}, std[3] = {1, 0, 1};
    cfg.mean = mean;
    cfg.std = std;
    ck_assert_int_eq(cnn_batcher_init(&b, &d, &cfg), CNN_EARG);
    ck_assert_ptr_nonnull(strstr(cnn_last_error(), "channel 1"));
    ck_assert_ptr_null(b.order);
    cnn_dataset_free(&d);
}
END_TEST

Suite *batcher_suite(void) {
    Suite *s = suite_create("batcher");
    TCase *tc = tcase_create("image");
    tcase_add_test(tc, test_image_to_float);
    tcase_add_test(tc, test_crop_flip_vs_naive);
    tcase_add_test(tc, test_augment_draw);
    tcase_add_test(tc, test_augment_alternating_flip);
    tcase_add_test(tc, test_image_reflect_pad);
    suite_add_tcase(s, tc);
    TCase *tb = tcase_create("batcher");
    tcase_add_test(tb, test_shuffle_is_permutation);
    tcase_add_test(tb, test_thread_and_batch_invariance);
    tcase_add_test(tb, test_augment_seed);
    tcase_add_test(tb, test_normalised_with_stats);
    tcase_add_test(tb, test_partial_last_batch);
    tcase_add_test(tb, test_next_part);
    tcase_add_test(tb, test_init_errors);
    suite_add_tcase(s, tb);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(batcher_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
