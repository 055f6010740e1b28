// Data parallelism without MPI: N ranks as N threads of this process, each
// with its own net, exchanging through a shared-memory CnnCollective. The
// parameters, batch-norm statistics, losses and hit counts after several
// steps must be bit-identical to one process's at 2 and 4 ranks (and 8 and
// 16 where the batch has the chunks), and the same from run to run at 3.
#include <omp.h>
#include <pthread.h>
#include <string.h>

#include "testutil.h"

#define MAX_RANKS 16
#define STEPS 3

// ---------------------------------------------------------------- a collective in shared memory
typedef struct {
    int ranks;
    pthread_barrier_t bar;
    const char *src[MAX_RANKS];
    const size_t *off[MAX_RANKS], *len[MAX_RANKS];
} Shared;

typedef struct {
    CnnCollective c;
    Shared *sh;
} ThreadColl;

static int t_alltoall(CnnCollective *c, const void *send, const size_t *send_off, const size_t *send_len,
                      void *recv, const size_t *recv_off, const size_t *recv_len) {
    Shared *sh = ((ThreadColl *)c)->sh;
    const int me = c->rank;
    sh->src[me] = send;
    sh->off[me] = send_off;
    sh->len[me] = send_len;
    pthread_barrier_wait(&sh->bar);
    for (int p = 0; p < sh->ranks; p++) {
        ck_assert_uint_eq(sh->len[p][me], recv_len[p]);
        memcpy((char *)recv + recv_off[p], sh->src[p] + sh->off[p][me], recv_len[p]);
    }
    pthread_barrier_wait(&sh->bar);
    return 0;
}

static int t_allgather(CnnCollective *c, void *buf, const size_t *off, const size_t *len) {
    Shared *sh = ((ThreadColl *)c)->sh;
    const int me = c->rank;
    sh->src[me] = buf;
    pthread_barrier_wait(&sh->bar);
    for (int q = 0; q < sh->ranks; q++)
        if (q != me) memcpy((char *)buf + off[q], sh->src[q] + off[q], len[q]);
    pthread_barrier_wait(&sh->bar);
    return 0;
}

// ---------------------------------------------------------------- one rank's run
typedef struct {
    const char *desc;
    int C, H, W, B, threads;
    CnnOptKind opt;
    CnnPrecision precision;
} Case;

typedef struct {
    float *params, *buffers;
    float loss[STEPS];
    int correct[STEPS];
} Result;

typedef struct {
    const Case *k;
    int rank, ranks;
    Shared *sh;
    Result *out;  // written by rank 0
} RankArgs;

// The batch of step s, the same on every rank: images and labels.
static void make_batch(const Case *k, int s, float *x, uint8_t *y) {
    CnnRng r;
    cnn_rng_seed(&r, 1000 + (uint64_t)s);
    fill_uniform(x, (size_t)k->B * k->C * k->H * k->W, -1, 1, &r);
    for (int i = 0; i < k->B; i++) y[i] = (uint8_t)cnn_rng_below(&r, 5);
}

static void *rank_main(void *p) {
    const RankArgs *a = p;
    const Case *k = a->k;
    omp_set_num_threads(k->threads);
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, k->desc, k->C, k->H, k->W, k->B, 7), CNN_OK);
    ThreadColl tc = {.c = {.rank = a->rank, .ranks = a->ranks, .alltoall = t_alltoall, .allgather = t_allgather},
                     .sh = a->sh};
    if (a->sh) ck_assert_int_eq(cnn_net_set_collective(net, &tc.c), CNN_OK);
    ck_assert_int_eq(cnn_net_set_precision(net, k->precision), CNN_OK);
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, k->opt);
    opt.momentum = 0.9f;
    opt.weight_decay = 5e-4f;
    const size_t image = (size_t)k->C * k->H * k->W;
    float *x = cnn_alloc_floats((size_t)k->B * image);
    uint8_t *y = malloc((size_t)k->B);
    Result res = {0};
    for (int s = 0; s < STEPS; s++) {
        make_batch(k, s, x, y);
        int first, count;
        cnn_net_batch_part(net, k->B, &first, &count);
        res.loss[s] = cnn_net_train_step(net, &opt, x + (size_t)first * image, y + first, k->B, 0.05f,
                                         &res.correct[s]);
    }
    ck_assert(!cnn_net_collective_failed(net));
    if (a->rank == 0) {
        res.params = malloc(sizeof(float) * cnn_net_num_params(net));
        res.buffers = malloc(sizeof(float) * (cnn_net_num_buffers(net) + 1));
        memcpy(res.params, cnn_net_params(net), sizeof(float) * cnn_net_num_params(net));
        memcpy(res.buffers, cnn_net_buffers(net), sizeof(float) * cnn_net_num_buffers(net));
        *a->out = res;
    } else {
        // Every rank must end with rank 0's parameters: run_ranks compares them.
        res.params = malloc(sizeof(float) * cnn_net_num_params(net));
        memcpy(res.params, cnn_net_params(net), sizeof(float) * cnn_net_num_params(net));
        res.buffers = NULL;
        a->out[a->rank] = res;
    }
    cnn_free(x);
    free(y);
    cnn_net_free(net);
    return NULL;
}

// Runs the case on `ranks` threads (0: one process, no collective); out[r] for each rank.
static size_t run_ranks(const Case *k, int ranks, Result *out) {
    Shared sh = {.ranks = ranks};
    pthread_t th[MAX_RANKS];
    RankArgs args[MAX_RANKS];
    const int n = ranks ? ranks : 1;
    if (ranks) pthread_barrier_init(&sh.bar, NULL, (unsigned)ranks);
    for (int r = 0; r < n; r++) {
        args[r] = (RankArgs){.k = k, .rank = r, .ranks = n, .sh = ranks ? &sh : NULL, .out = out};
        ck_assert_int_eq(pthread_create(&th[r], NULL, rank_main, &args[r]), 0);
    }
    for (int r = 0; r < n; r++) pthread_join(th[r], NULL);
    if (ranks) pthread_barrier_destroy(&sh.bar);
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, k->desc, k->C, k->H, k->W, k->B, 7), CNN_OK);
    const size_t np = cnn_net_num_params(net);
    cnn_net_free(net);
    for (int r = 1; r < n; r++) ck_assert(memcmp(out[r].params, out[0].params, sizeof(float) * np) == 0);
    return np;
}

static void free_results(Result *out, int n) {
    for (int r = 0; r < n; r++) {
        free(out[r].params);
        free(out[r].buffers);
    }
}

static int same(const Result *a, const Result *b, size_t np) {
    return memcmp(a->params, b->params, sizeof(float) * np) == 0 && memcmp(a->loss, b->loss, sizeof a->loss) == 0 &&
           memcmp(a->correct, b->correct, sizeof a->correct) == 0;
}

static void check_case(const Case *k, const int *rank_counts, int n_counts) {
    Result one[1], many[MAX_RANKS];
    const size_t np = run_ranks(k, 0, one);
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, k->desc, k->C, k->H, k->W, k->B, 7), CNN_OK);
    const size_t nb = cnn_net_num_buffers(net);
    cnn_net_free(net);
    for (int i = 0; i < n_counts; i++) {
        const int N = rank_counts[i];
        memset(many, 0, sizeof many);
        run_ranks(k, N, many);
        printf("%-40.40s B=%-3d %2d ranks: loss %.7f %.7f %.7f\n", k->desc, k->B, N, many[0].loss[0],
               many[0].loss[1], many[0].loss[2]);
        ck_assert_msg(same(&many[0], &one[0], np), "%s, B=%d: %d ranks differ from one process", k->desc, k->B, N);
        ck_assert_msg(memcmp(many[0].buffers, one[0].buffers, sizeof(float) * nb) == 0,
                      "%s, B=%d: %d ranks: batch-norm statistics differ", k->desc, k->B, N);
        free_results(many, N);
    }
    free_results(one, 1);
}

// conv (im2col, small-channel and direct/Winograd kernels), batch norm,
// dropout, pooling, dense with and without bias, a residual add.
static const char *MIXED = "conv(8,3,pad=1) bn relu conv(16,3,pad=1,bias=0) bn relu maxpool(2) "
                           "@a conv(16,3,pad=1) relu add(a) conv(12,3,stride=2,pad=1) bn relu "
                           "dropout(0.3) flatten dense(20) relu dense(5,bias=0)";

// Under an emulator (tests/test_qemu.sh) the first case alone: it runs
// every kernel the others do, at a tenth of the time.
static int emulated(void) { return getenv("CNNC_TEST_WRAPPER") != NULL; }

START_TEST(test_ranks_match_one_process) {
    const int counts[] = {2, 4};
    const Case cases[] = {
        {MIXED, 3, 9, 9, 64, 1, CNN_OPT_ADAM, CNN_PRECISION_FP32},
        {MIXED, 3, 9, 9, 37, 2, CNN_OPT_SGD, CNN_PRECISION_FP32},  // chunks of 2 and 3 images, 2 threads a rank
        {"tfcnn", 1, 28, 28, 32, 1, CNN_OPT_SGD, CNN_PRECISION_FP32},
        {MIXED, 3, 9, 9, 37, 2, CNN_OPT_ADAM, CNN_PRECISION_BF16},  // bf16: the same tree of chunks
    };
    const size_t n = emulated() ? 1 : sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) check_case(&cases[i], counts, 2);
}
END_TEST

START_TEST(test_ranks_up_to_16) {
    if (emulated()) {
        printf("8 and 16 ranks: left out under an emulator\n");
        return;
    }
    const int counts[] = {8, 16};
    const Case k = {MIXED, 3, 9, 9, 48, 1, CNN_OPT_SGD, CNN_PRECISION_FP32};
    check_case(&k, counts, 2);
}
END_TEST

// Fewer chunks than ranks: a batch of 3 on 4 ranks leaves one rank without
// images, which still takes part in every exchange.
START_TEST(test_rank_without_images) {
    const int counts[] = {4};
    const Case k = {MIXED, 3, 9, 9, 3, 1, CNN_OPT_ADAM, CNN_PRECISION_FP32};
    check_case(&k, counts, 1);
}
END_TEST

// 3 ranks: not the one-process tree, but the same result on every run.
START_TEST(test_three_ranks_repeat) {
    const Case k = {MIXED, 3, 9, 9, 40, 1, CNN_OPT_ADAM, CNN_PRECISION_FP32};
    Result a[3], b[3], one[1];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    const size_t np = run_ranks(&k, 3, a);
    run_ranks(&k, 3, b);
    run_ranks(&k, 0, one);
    ck_assert(same(&a[0], &b[0], np));
    // ... and close to one process's (the sums' order differs).
    for (int s = 0; s < STEPS; s++) ck_assert_float_eq_tol(a[0].loss[s], one[0].loss[s], 1e-5f);
    free_results(a, 3);
    free_results(b, 3);
    free_results(one, 1);
}
END_TEST

START_TEST(test_collective_refused) {
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "tfcnn", 1, 28, 28, 8, 7), CNN_OK);
    CnnCollective bad = {.rank = 2, .ranks = 2, .alltoall = t_alltoall, .allgather = t_allgather};
    cnn_set_quiet(1);
    ck_assert_int_eq(cnn_net_set_collective(net, &bad), CNN_EARG);
    bad.rank = 0;
    bad.allgather = NULL;
    ck_assert_int_eq(cnn_net_set_collective(net, &bad), CNN_EARG);
    cnn_set_quiet(0);
    // One rank is one process: the whole batch stays here.
    CnnCollective solo = {.rank = 0, .ranks = 1, .alltoall = t_alltoall, .allgather = t_allgather};
    ck_assert_int_eq(cnn_net_set_collective(net, &solo), CNN_OK);
    int first, count;
    cnn_net_batch_part(net, 8, &first, &count);
    ck_assert_int_eq(first, 0);
    ck_assert_int_eq(count, 8);
    cnn_net_free(net);
}
END_TEST

int main(void) {
    Suite *s = suite_create("data_parallel");
    TCase *tc = tcase_create("data_parallel");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_ranks_match_one_process);
    tcase_add_test(tc, test_ranks_up_to_16);
    tcase_add_test(tc, test_rank_without_images);
    tcase_add_test(tc, test_three_ranks_repeat);
    tcase_add_test(tc, test_collective_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
