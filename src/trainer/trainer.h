// trainer: the command-line program (train, eval, predict, summary), in
// files by job. The only place in cnnc that calls exit(): 0 success,
// 1 runtime failure (I/O, bad file, diverged training), 2 usage error,
// 128 + the signal when stopped by SIGINT (130), SIGTERM (143), SIGHUP (129)
// or SIGUSR1 (138).
#ifndef CNNC_TRAINER_H
#define CNNC_TRAINER_H

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "cnnc.h"


enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

typedef struct {
    const char *command;
    const char *dataset, *data_dir, *model, *checkpoint, *resume, *log_path, *kernels, *conv;
    int epochs, batch, threads, augment, grayscale, normalize, nesterov, hflip, crop_pad;
    int image_h, image_w, strict;  // image folders: size (0: the first image's), stop at a bad file
    const char *save_best, *init_from;  // best checkpoint by validation accuracy; starting weights
    int early_stop;                     // epochs without a better validation accuracy before stopping
    int log_every;                      // > 0: a row every N steps in the step log
    char step_log[1024];                // --log's name with .steps.csv
    int step_epochs, invert, top, json;
    long warmup;
    size_t limit_train, val_split, limit_test;
    uint64_t seed;
    CnnOptKind opt_kind;
    CnnScheduleKind schedule;
    float lr, momentum, weight_decay, gamma;
    float label_smoothing;   // of the training loss
    int no_decay_bn_bias;    // weight decay skips biases and batch norm
    int tta;                 // evaluations average each image with its mirror image (2: and shifted views)
    int reflect_pad;         // the random crop's pad mirrors the image
    int lookahead;           // > 0: Lookahead sync every this many steps
    int whiten_bias_epochs;  // > 0: the whitening layers' biases train for this many epochs only
    int drop_last;           // an epoch leaves out its last partial batch
    float lr_start, lr_end;  // warm-up start and schedule end as fractions of lr
    float ema;               // > 0: evaluate an exponential moving average of the weights (its decay)
    CnnPrecision precision;  // of the convolution and dense products (--precision)
    char **images;
    int nimages;
    // Which flags the user gave (resume keeps the checkpoint's settings otherwise).
    int set_epochs, set_dataset, set_model, set_limit_test, set_precision, set_seed, set_data_dir;
    int overwrite;         // a new run may replace an existing --checkpoint or --save-best file
    const char *run_flag;  // the first flag given that a resumed run takes from its checkpoint
    CnnInit init;
    char run_id[40];  // names this process's run in the logs (not kept in checkpoints: equal runs stay byte-equal)
} Options;


// The running train loss and accuracy of the epoch in progress: kept in a
// mid-epoch checkpoint so that the resumed epoch reports the whole epoch's.
typedef struct {
    double loss_sum;
    long seen, hits;
} EpochTally;

// The best validation accuracy so far and its epoch (0: none yet), for
// --save-best and --early-stop; kept in the checkpoint for --resume.
typedef struct {
    double acc;
    int epoch;
} RunBest;


// ---------------------------------------------------------------- messages.c
// Prints "trainer: <message>" on stderr and exits with code.
void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
void check(CnnStatus st);        // a library error (already printed): exit 1, or 2 for CNN_EARG
void check_model(CnnStatus st);  // a model --model cannot build: exit 2 (1 for memory)
double now(void);                // monotonic seconds
const char *plural(long n);
const char *shortest_float(float x, char *buf, size_t n);
void format_count(double v, char *buf, size_t n);
void print_summary(const CnnNet *net);
void print_class_table(const CnnMetrics *m, const int64_t *cm, int K, char **names);
double peak_rss_mb(void);

// ---------------------------------------------------------------- options.c
void parse_args(int argc, char **argv, Options *o);
int parse_number(const char *s, int whole, double lo, double hi, long long *i, double *d);
int is_image_set(const char *dataset);  // "folder:PATH" or "list:PATH"
const char *image_root(const char *dataset);
const char *canonical_dataset(const char *name);

// ---------------------------------------------------------------- data.c
int dataset_classes(const char *name);
void dataset_shape(const char *name, int grayscale, int *C, int *H, int *W);
void load_data(const Options *o, CnnDataset *train, CnnDataset *val, CnnDataset *test);
const char *absolute_dataset(const char *dataset, char *buf, size_t n);  // folder:/abs/path for checkpoints
const char *dataset_shown(const char *dataset, char *buf, size_t n);     // relative inside this folder
int is_builtin(const char *model);
void check_model_text(const char *model);  // before any data: exit 2 for a model that cannot be read
int setup_compute(const Options *o);
CnnNet *build_model(const Options *o, int classes, int C, int H, int W);

// ---------------------------------------------------------------- run_meta.c
int split_floats(const char *s, float *v, int n);
const char *need(const CnnMeta *m, const char *path, const char *key);
long long meta_int(const CnnMeta *m, const char *path, const char *key, long long lo, long long hi);
double meta_double(const CnnMeta *m, const char *path, const char *key, double lo, double hi);
void class_names_meta(const CnnDataset *d, char *buf, size_t size);
char **split_names(const char *s, int K, char **copy);
void settings_from_checkpoint(Options *o, const CnnMeta *m, const char *path);
void data_dir_from_checkpoint(Options *o, const CnnMeta *m);  // unless --data-dir
CnnPrecision checkpoint_precision(const CnnMeta *m, const char *path);
void run_settings_text(const Options *o, const CnnOptimizer *opt, int threads, char *buf, size_t n);
// Writes the run's checkpoint: weights, optimiser state and everything needed
// to resume at (epoch, batch_in_epoch) or to evaluate and predict later.
void save_run(const Options *o, const char *path, CnnNet *net, const CnnOptimizer *opt, const float *mean,
              const float *stdv, int C, const char *names, int epoch, long batch_in_epoch,
              const EpochTally *tally, const RunBest *best);

// ---------------------------------------------------------------- outputs.c
extern volatile sig_atomic_t stop_signal;  // the signal that asked the run to stop (0: none)
void catch_stop_signals(void);
const char *signal_name(int sig);
void check_output_path(const char *flag, const char *path);
extern const char EPOCH_LOG_HEADER[], STEP_LOG_HEADER[];
void new_run_id(char *buf, size_t n);
void csv_field(const char *s, char *buf, size_t n);
void check_log_columns(const char *flag, const char *path, const char *header);
void append_log(const char *path, const char *header, const char *row);

// ---------------------------------------------------------------- ranks.c
// A data-parallel job's ranks (mpirun -np N trainer ...): one rank without
// MPI or a launcher. Only rank 0 prints (the others' stdout goes to
// /dev/null) and writes files.
void ranks_init(int *argc, char ***argv);
void ranks_finish(void);       // at exit: MPI_Finalize after ranks_exit_ok, else MPI_Abort
void ranks_exit_ok(void);      // the exit under way is one that every rank takes
void ranks_abort(int code);    // a failure on any rank ends the whole job (MPI_Abort)
int rank_id(void);
int rank_count(void);
int ranks_local_count(void);   // ranks on this machine, from the launcher (1 if unknown)
CnnCollective *ranks_collective(void);  // NULL for one rank
void ranks_check_args(int argc, char **argv);  // every rank got the same arguments, else exit 2
int ranks_stop_signal(int sig);         // the stop signal any rank caught (0: none)
void ranks_barrier(void);
void ranks_sum_counts(int64_t *v, int n);  // exact sums over the ranks
double ranks_sum_in_order(double x);    // x summed over the ranks in rank order

// ---------------------------------------------------------------- the commands
int cmd_train(Options *o);    // train_run.c
int cmd_eval(Options *o);     // inspect.c
int cmd_predict(Options *o);  // inspect.c
int cmd_summary(Options *o);  // inspect.c

#endif
