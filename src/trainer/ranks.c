// The trainer as one rank of a data-parallel job (mpirun, srun): MPI when
// the build has it and an MPI launcher started this process, else one rank.
// The library does the arithmetic (cnn_net_set_collective); this file moves
// bytes between the ranks (the collective's two operations), combines
// evaluation counts, and agrees on the few decisions every rank must take
// together: the arguments, a stop signal, a failure.
#include "trainer.h"

#if CNNC_HAVE_MPI
#include <limits.h>
#include <mpi.h>
#endif

static int g_rank = 0, g_ranks = 1;
static int exit_ok;  // this exit is one every rank takes (the end of main, a stop signal)

int rank_id(void) { return g_rank; }
int rank_count(void) { return g_ranks; }

#if CNNC_HAVE_MPI
static int mpi_on;

// Launchers announce themselves in the environment: Open MPI's mpirun,
// PMIx and PMI (Slurm's srun, MPICH's hydra).
static int launched_by_mpi(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

// Byte counts as MPI's ints; 1 when one does not fit.
static int to_ints(const size_t *v, int n, int *out) {
    for (int i = 0; i < n; i++) {
        if (v[i] > INT_MAX) return 1;
        out[i] = (int)v[i];
    }
    return 0;
}

static int mpi_alltoall(CnnCollective *c, const void *send, const size_t *send_off, const size_t *send_len,
                        void *recv, const size_t *recv_off, const size_t *recv_len) {
    const int n = c->ranks;
    int *v = c->ctx;  // 4 n ints
    if (to_ints(send_off, n, v) || to_ints(send_len, n, v + n) || to_ints(recv_off, n, v + 2 * n) ||
        to_ints(recv_len, n, v + 3 * n))
        return 1;
    return MPI_Alltoallv(send, v + n, v, MPI_BYTE, recv, v + 3 * n, v + 2 * n, MPI_BYTE, MPI_COMM_WORLD) !=
           MPI_SUCCESS;
}

static int mpi_allgather(CnnCollective *c, void *buf, const size_t *off, const size_t *len) {
    const int n = c->ranks;
    int *v = c->ctx;
    if (to_ints(off, n, v) || to_ints(len, n, v + n)) return 1;
    return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_BYTE, buf, v + n, v, MPI_BYTE, MPI_COMM_WORLD) != MPI_SUCCESS;
}
#endif

void ranks_init(int *argc, char ***argv) {
#if CNNC_HAVE_MPI
    if (!launched_by_mpi()) return;
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        die(EXIT_RUNTIME, "MPI_Init failed: check the launcher (mpirun, srun) and the MPI installation");
    mpi_on = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_ranks);
    // Only rank 0 reports; the others' errors still reach stderr.
    if (g_rank != 0 && !freopen("/dev/null", "w", stdout)) die(EXIT_RUNTIME, "cannot silence rank %d's output", g_rank);
#else
    (void)argc, (void)argv;
#endif
}

void ranks_exit_ok(void) { exit_ok = 1; }

// At exit. Any exit but the end of main or a stop every rank takes (a
// failed checkpoint write, a bad file: exit() anywhere) ends the whole job:
// MPI_Finalize would wait for ranks that wait in an exchange for this one.
void ranks_finish(void) {
#if CNNC_HAVE_MPI
    if (!mpi_on) return;
    if (!exit_ok && g_ranks > 1) {
        fflush(NULL);
        MPI_Abort(MPI_COMM_WORLD, EXIT_RUNTIME);
    }
    MPI_Finalize();
    mpi_on = 0;
#endif
}

void ranks_abort(int code) {
#if CNNC_HAVE_MPI
    if (mpi_on && g_ranks > 1) {
        fflush(NULL);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
#endif
    (void)code;
}

CnnCollective *ranks_collective(void) {
#if CNNC_HAVE_MPI
    static CnnCollective c;
    if (g_ranks < 2) return NULL;
    if (!c.ctx) {
        c = (CnnCollective){.rank = g_rank, .ranks = g_ranks, .alltoall = mpi_alltoall,
                            .allgather = mpi_allgather, .ctx = malloc(4 * sizeof(int) * (size_t)g_ranks)};
        if (!c.ctx) die(EXIT_RUNTIME, "out of memory for %d ranks", g_ranks);
    }
    return &c;
#else
    return NULL;
#endif
}

#if CNNC_HAVE_MPI
// FNV-1a over the arguments, with a separator between them.
static uint64_t args_hash(int argc, char **argv) {
    uint64_t h = 14695981039346656037ull;
    for (int i = 1; i < argc; i++) {
        for (const char *s = argv[i]; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
    }
    return h;
}
#endif

void ranks_check_args(int argc, char **argv) {
#if CNNC_HAVE_MPI
    if (g_ranks < 2) return;
    uint64_t mine = args_hash(argc, argv), *all = malloc(sizeof(uint64_t) * (size_t)g_ranks);
    if (!all) die(EXIT_RUNTIME, "out of memory for %d ranks", g_ranks);
    MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    for (int q = 1; q < g_ranks; q++)
        if (all[q] != all[0])
            die(EXIT_USAGE, "rank %d was started with other arguments than rank 0: every rank of a data-parallel "
                "run needs the same command line", q);
    free(all);
#else
    (void)argc, (void)argv;
#endif
}

int ranks_stop_signal(int sig) {
#if CNNC_HAVE_MPI
    if (g_ranks > 1) {
        int any;
        MPI_Allreduce(&sig, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        return any;
    }
#endif
    return sig;
}

void ranks_barrier(void) {
#if CNNC_HAVE_MPI
    if (g_ranks > 1) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

void ranks_sum_counts(int64_t *v, int n) {
#if CNNC_HAVE_MPI
    // Integers: the sum is exact in any order.
    if (g_ranks > 1) MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)v, (void)n;
#endif
}

double ranks_sum_in_order(double x) {
#if CNNC_HAVE_MPI
    if (g_ranks > 1) {
        double *all = malloc(sizeof(double) * (size_t)g_ranks), s = 0.0;
        if (!all) die(EXIT_RUNTIME, "out of memory for %d ranks", g_ranks);
        MPI_Allgather(&x, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, MPI_COMM_WORLD);
        for (int q = 0; q < g_ranks; q++) s += all[q];
        free(all);
        return s;
    }
#endif
    return x;
}

int ranks_local_count(void) {
    const char *s = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!s) s = getenv("SLURM_NTASKS_PER_NODE");
    const int n = s ? atoi(s) : 1;
    return n > 0 ? n : 1;
}
