// trainer: stop signals, output paths and the CSV logs.
#include "trainer.h"

// ---------------------------------------------------------------- train
// The signal that asked the run to stop (0: none). SIGINT (Ctrl-C), and
// SIGTERM and SIGHUP, which timeout, Slurm, systemd, docker stop and a closed
// terminal send, and SIGUSR1, which mpirun passes on to every rank (its own
// SIGTERM kills the ranks a moment later): each saves a checkpoint and
// exits 128 + the signal.
volatile sig_atomic_t stop_signal;
static int announce_stop;  // rank 0 alone says it (mpirun passes the signal to every rank)

// Says at once that the signal was heard (the batch or evaluation under way
// finishes first, which can take seconds); write() is async-signal-safe.
static void on_stop_signal(int sig) {
    static const char msg[] = "\ntrainer: stopping after the current batch or evaluation, then saving a checkpoint "
                              "(again to stop at once)\n";
    stop_signal = sig;
    if (announce_stop) {
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
    }
}

void catch_stop_signals(void) {
    announce_stop = rank_id() == 0;
    struct sigaction sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESETHAND};  // a second one kills at once
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

const char *signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : sig == SIGUSR1 ? "SIGUSR1" : "a signal";
}

// ---------------------------------------------------------------- output paths
// Every file the run will write is checked before any data is loaded or step
// run, so that a typo costs a second, not an epoch: the folder must take a
// new file (the checkpoint is written beside its target and renamed), and an
// existing target must be a writable regular file.
void check_output_path(const char *flag, const char *path) {
    if (rank_id() != 0) return;  // only rank 0 writes
    struct stat sb;
    if (!stat(path, &sb)) {
        if (S_ISDIR(sb.st_mode)) die(EXIT_USAGE, "%s %s: is a folder, not a file", flag, path);
        if (access(path, W_OK)) die(EXIT_USAGE, "%s %s: cannot write it: %s", flag, path, strerror(errno));
    }
    const size_t n = strlen(path);
    char *dir_buf = malloc(n + 1), *probe = malloc(n + 32);
    if (!dir_buf || !probe) die(EXIT_RUNTIME, "out of memory");
    memcpy(dir_buf, path, n + 1);
    const char *dir = dirname(dir_buf);
    snprintf(probe, n + 32, "%s/.cnnc-probe-XXXXXX", dir);
    const int fd = mkstemp(probe);
    if (fd < 0)
        die(EXIT_USAGE, "%s %s: cannot create files in %s: %s (checked before training)", flag, path, dir,
            strerror(errno));
    close(fd);
    unlink(probe);
    free(dir_buf);
    free(probe);
}

// The CSV logs. Every row names its run (--log appends, so one file may hold
// several; a resumed run is a new one whose settings name the checkpoint it
// resumed); the epoch log also carries the run's settings, so that a row
// says what produced it.
const char EPOCH_LOG_HEADER[] =
    "epoch,lr,train_loss,train_acc,eval_split,eval_loss,eval_acc,macro_precision,macro_recall,macro_f1,"
    "epoch_seconds,train_img_per_s,run,settings\n";
const char STEP_LOG_HEADER[] = "step,epoch,batch,loss,lr,img_per_s,run\n";

// A run id: the start time (UTC) and the process, e.g. 20261126-193012-4242.
void new_run_id(char *buf, size_t n) {
    const time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y%m%d-%H%M%S", &tm);
    snprintf(buf, n, "%s-%ld", when, (long)getpid());
}

// s as one CSV field: quoted, with its quotes doubled.
void csv_field(const char *s, char *buf, size_t n) {
    size_t len = 0;
    if (n < 3) return;
    buf[len++] = '"';
    for (; *s && len + 3 < n; s++) {
        if (*s == '"') buf[len++] = '"';
        buf[len++] = *s == '\n' ? ' ' : *s;
    }
    buf[len++] = '"';
    buf[len] = 0;
}

// Before any work: a log that exists must have this trainer's columns (one
// of an older release gets a new file rather than rows that do not fit).
void check_log_columns(const char *flag, const char *path, const char *header) {
    FILE *f = fopen(path, "r");
    if (!f) return;  // a new file (check_output_path vouched for its folder)
    char line[512];
    const int empty = !fgets(line, sizeof line, f);
    fclose(f);
    if (!empty && strcmp(line, header))
        die(EXIT_USAGE, "%s %s: its columns differ from this trainer's (written by an older release?); "
            "give a new file", flag, path);
}

// Appends a row to a CSV log, with its header when the file is new.
void append_log(const char *path, const char *header, const char *row) {
    if (rank_id() != 0) return;  // rank 0 writes the job's files
    FILE *f = fopen(path, "a");
    if (!f) die(EXIT_RUNTIME, "%s: cannot open the log for appending: %s", path, strerror(errno));
    if (ftell(f) == 0) fputs(header, f);
    fputs(row, f);
    if (fclose(f)) die(EXIT_RUNTIME, "%s: cannot write the log: %s", path, strerror(errno));
}
