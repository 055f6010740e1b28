// trainer: the command-line program (train, eval, predict, summary). The only
// place in cnnc that calls exit(): 0 success, 1 runtime failure (I/O, bad
// file, diverged training), 2 usage error, 128 + the signal when stopped
// by SIGINT (130), SIGTERM (143) or SIGHUP (129).
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "cnnc.h"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

typedef struct {
    const char *command;
    const char *dataset, *data_dir, *model, *checkpoint, *resume, *log_path, *kernels;
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
    char **images;
    int nimages;
    // Which flags the user gave (resume keeps the checkpoint's settings otherwise).
    int set_epochs, set_dataset, set_model, set_limit_test;
    const char *run_flag;  // the first flag given that a resumed run takes from its checkpoint
    CnnInit init;
} Options;

// ---------------------------------------------------------------- messages
static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("trainer: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

// Library errors were already printed by cnnc ("cnnc: <file>: <problem>").
static void check(CnnStatus st) {
    if (st) exit(st == CNN_EARG ? EXIT_USAGE : EXIT_RUNTIME);
}

// A model that cannot be built from --model is a usage error; memory is not.
static void check_model(CnnStatus st) {
    if (st) exit(st == CNN_ENOMEM ? EXIT_RUNTIME : EXIT_USAGE);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static const char *plural(long n) { return n == 1 ? "" : "s"; }

// The shortest text that reads back as x: 0.001, not 0.00100000005.
static const char *shortest_float(float x, char *buf, size_t n) {
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, n, "%.*g", digits, x);
        if (strtof(buf, NULL) == x) break;
    }
    return buf;
}

static const char *HELP_MAIN =
    "usage: trainer [COMMAND] [OPTIONS]\n"
    "\n"
    "Trains and runs small convolutional networks on the CPU, on every core.\n"
    "\n"
    "commands:\n"
    "  train     train a model on a data set (the default command)\n"
    "  eval      evaluate a checkpoint on a test set: loss, accuracy, precision, recall, F1\n"
    "  predict   classify image files (PNG, JPEG, PGM, ...) with a checkpoint\n"
    "  summary   print a model's layers, shapes, parameters and FLOPs\n"
    "\n"
    "`trainer COMMAND --help` lists each command's options; `trainer --version` prints the version.\n"
    "Example: trainer --dataset mnist --model tfcnn --epochs 3 --threads 2 --batch 64\n";

static const char *HELP_TRAIN =
    "usage: trainer [train] [OPTIONS]\n"
    "\n"
    "data:\n"
    "  --dataset NAME        mnist, fashion-mnist, cifar10 or cifar100 (default mnist), or\n"
    "                        folder:PATH, your own images: PATH/train/<class>/*.png and\n"
    "                        PATH/test/<class>/*.png (PNG, JPEG, BMP, PGM/PPM; one folder per class),\n"
    "                        or list:PATH, PATH/train.csv and PATH/test.csv of path,label lines\n"
    "  --data-dir DIR        folder holding <dataset>/ as tools/fetch-data lays it out (default data)\n"
    "  --grayscale           colour images as one channel (mean of R, G, B)\n"
    "  --image-size HxW      image folders: resize every image to HxW (default: the first image's size)\n"
    "  --strict              image folders: stop at the first unreadable file (default: skip and count)\n"
    "  --limit-train N       use only the first N training images\n"
    "  --val-split N         hold out the last N training images and evaluate on them\n"
    "  --limit-test N        evaluate on the first N test images only\n"
    "  --no-normalize        feed pixels/255 (default: standardise each channel with the\n"
    "                        training split's mean and std, stored in the checkpoint)\n"
    "  --augment             random crop with zero padding and (CIFAR) horizontal flips\n"
    "  --crop-pad N          padding of the random crop (default 4 for CIFAR, 2 for digits)\n"
    "  --hflip / --no-hflip  horizontal flips with --augment (default: on for CIFAR only)\n"
    "model and optimiser:\n"
    "  --model M             tfcnn, lenet, vgg8bn or a description such as\n"
    "                        \"conv(32,3) relu maxpool(2) flatten dense(10)\" (default tfcnn)\n"
    "  --epochs N            passes over the training set (default 5)\n"
    "  --batch N             images per step (default 64)\n"
    "  --init I              weight initialisation: pytorch (PyTorch's defaults: uniform in\n"
    "                        +-1/sqrt(fan_in)) or he (normal, std sqrt(2/fan_in)) (default pytorch)\n"
    "  --optimizer O         adam, adamw or sgd (default adam)\n"
    "  --lr X                peak learning rate (default 1e-3 for Adam/AdamW, 0.01 for SGD)\n"
    "  --momentum X          SGD momentum (default 0.9)\n"
    "  --nesterov            SGD with Nesterov momentum\n"
    "  --weight-decay X      L2 (adam, sgd) or decoupled (adamw, default 0.01) weight decay\n"
    "  --schedule S          constant, step or cosine (default constant)\n"
    "  --warmup N            steps of linear learning-rate warm-up (default 0)\n"
    "  --step-epochs N       step schedule: multiply the rate by --gamma every N epochs (default 1/3 of --epochs)\n"
    "  --gamma X             step schedule factor (default 0.1)\n"
    "run:\n"
    "  --threads N           OpenMP threads (default: OMP_NUM_THREADS, else all cores)\n"
    "  --kernels NAME        compute kernels: auto (default: the best this CPU runs), avx2 or\n"
    "                        reference (im2col + OpenBLAS); also CNNC_KERNELS=NAME\n"
    "  --seed S              seeds initialisation, shuffling, augmentation and dropout (default 1)\n"
    "  --checkpoint FILE     written atomically after every epoch and on Ctrl-C\n"
    "                        (default cnnc-<dataset>-<model>.safetensors)\n"
    "  --resume FILE         continue a run from its checkpoint (settings come from the file;\n"
    "                        --epochs may extend it)\n"
    "  --save-best FILE      also write the epoch with the best validation accuracy to FILE (needs --val-split)\n"
    "  --early-stop N        stop after N epochs without a better validation accuracy (needs --val-split)\n"
    "  --init-from FILE      start from a checkpoint's weights (fine-tuning; its model unless --model is given),\n"
    "                        with a new optimiser and schedule\n"
    "  --log FILE.csv        append one row of metrics per epoch\n"
    "  --log-every N         also a row every N steps (step, loss, lr, img/s) in FILE.steps.csv\n"
    "\n"
    "Results are bit-identical for any --threads with the same --seed and kernels.\n";

static const char *HELP_EVAL =
    "usage: trainer eval --checkpoint FILE [--dataset NAME] [--data-dir DIR] [--batch N] [--threads N]\n"
    "                    [--kernels NAME] [--limit-test N] [--json]\n"
    "\n"
    "Evaluates a checkpoint on the test split of its data set (or --dataset): loss, accuracy,\n"
    "macro precision, recall and F1, a per-class table and the confusion matrix. --json prints\n"
    "them as one JSON object instead (classes, confusion rows by true class).\n";

static const char *HELP_PREDICT =
    "usage: trainer predict --checkpoint FILE [--top K] [--invert] [--json] IMAGE...\n"
    "\n"
    "Prints the top K (default 3) classes with probabilities for each image (PNG, JPEG, PGM,\n"
    "PPM, BMP, ...). Images are converted to the model's channels and resized to its input.\n"
    "--invert turns dark-on-light drawings into MNIST's light-on-dark. --json prints one JSON\n"
    "array: per image its top classes with index and probability, or its error.\n";

static const char *HELP_SUMMARY =
    "usage: trainer summary [--model M] [--dataset NAME] [--grayscale]\n"
    "\n"
    "Prints each layer's output shape, parameter count and forward FLOPs, and the totals.\n";

// ---------------------------------------------------------------- argument parsing
// The one number parser: all of s is a whole number (whole; exact in *i)
// or a number (in *d) within [lo, hi]. Flags and checkpoint metadata wrap it
// with their own messages and exit codes.
static int parse_number(const char *s, int whole, double lo, double hi, long long *i, double *d) {
    char *end;
    errno = 0;
    if (whole) {
        *i = strtoll(s, &end, 10);
        *d = (double)*i;
    } else {
        *d = strtod(s, &end);
    }
    return *s && !*end && !errno && *d >= lo && *d <= hi;
}

static long parse_long(const char *flag, const char *v, long lo, long hi) {
    long long i;
    double x;
    if (!parse_number(v, 1, (double)lo, (double)hi, &i, &x) || i < lo || i > hi)
        die(EXIT_USAGE, "%s: '%s' is not a whole number in %ld..%ld", flag, v, lo, hi);
    return (long)i;
}

static float parse_float(const char *flag, const char *v, double lo, double hi) {
    long long i;
    double x;
    if (!parse_number(v, 0, lo, hi, &i, &x)) die(EXIT_USAGE, "%s: '%s' is not a number in [%g, %g]", flag, v, lo, hi);
    return (float)x;
}

// Your own images: "folder:PATH" or "list:PATH"; the path follows the colon.
static int is_image_set(const char *dataset) { return !strncmp(dataset, "folder:", 7) || !strncmp(dataset, "list:", 5); }
static const char *image_root(const char *dataset) { return strchr(dataset, ':') + 1; }

static const char *canonical_dataset(const char *name) {
    static const char *names[] = {"mnist", "fashion-mnist", "cifar10", "cifar100"};
    if (!strcmp(name, "fashion")) return "fashion-mnist";
    if (is_image_set(name)) {
        if (!*image_root(name)) die(EXIT_USAGE, "--dataset %s needs a path, e.g. %smy-images", name, name);
        return name;
    }
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) return names[i];
    die(EXIT_USAGE, "--dataset: unknown data set '%s' (expected mnist, fashion-mnist, cifar10, cifar100, "
        "folder:PATH or list:PATH)", name);
}

// The settings that define a run: a resumed run takes them from its
// checkpoint, so giving one with --resume is refused rather than ignored.
static const char *const RUN_FLAGS[] = {
    "--model", "--batch", "--init", "--optimizer", "--lr", "--momentum", "--nesterov", "--weight-decay",
    "--schedule", "--warmup", "--step-epochs", "--gamma", "--augment", "--crop-pad", "--hflip",
    "--no-hflip", "--grayscale", "--image-size", "--strict", "--no-normalize", "--val-split", "--limit-train", "--seed",
    "--save-best", "--early-stop", "--init-from",
};

static void parse_args(int argc, char **argv, Options *o) {
    *o = (Options){.command = "train", .dataset = "mnist", .data_dir = "data", .model = "tfcnn",
                   .epochs = 5, .batch = 64, .normalize = 1, .hflip = -1, .crop_pad = -1, .seed = 1,
                   .opt_kind = CNN_OPT_ADAM, .schedule = CNN_SCHED_CONSTANT, .lr = -1, .momentum = -1,
                   .weight_decay = -1, .gamma = 0.1f, .top = 3};
    int i = 1;
    static const char *commands[] = {"train", "eval", "predict", "summary"};
    if (argc > 1 && argv[1][0] != '-') {
        int known = 0;
        for (int c = 0; c < 4; c++)
            if (!strcmp(argv[1], commands[c])) { o->command = commands[c]; known = 1; }
        if (!strcmp(argv[1], "help")) { fputs(HELP_MAIN, stdout); exit(0); }
        if (!known) die(EXIT_USAGE, "unknown command '%s' (expected train, eval, predict or summary; see --help)", argv[1]);
        i = 2;
    }
    o->images = calloc((size_t)argc, sizeof *o->images);
    for (; i < argc; i++) {
        char *a = argv[i];
        if (a[0] != '-') {
            if (strcmp(o->command, "predict")) die(EXIT_USAGE, "unexpected argument '%s' (see --help)", a);
            o->images[o->nimages++] = a;
            continue;
        }
        // --flag=value or --flag value
        char flag[64];
        const char *val = NULL, *eq = strchr(a, '=');
        if (eq) {
            snprintf(flag, sizeof flag, "%.*s", (int)(eq - a), a);
            val = eq + 1;
        } else {
            snprintf(flag, sizeof flag, "%s", a);
        }
#define SWITCH(name) (!strcmp(flag, name) && !val)
#define VALUE(name) (!strcmp(flag, name) && (val || (i + 1 < argc ? (val = argv[++i], 1) : \
                     (die(EXIT_USAGE, "%s needs a value (see --help)", name), 0))))
        if (SWITCH("--help") || SWITCH("-h")) {
            const char *h = !strcmp(o->command, "eval") ? HELP_EVAL : !strcmp(o->command, "predict") ? HELP_PREDICT
                          : !strcmp(o->command, "summary") ? HELP_SUMMARY : argc > 2 || i > 1 ? HELP_TRAIN : HELP_MAIN;
            if (i == 1) h = HELP_MAIN;
            fputs(h, stdout);
            exit(0);
        } else if (SWITCH("--version")) {
            printf("cnnc trainer %s\n", CNNC_VERSION);
            exit(0);
        } else if (VALUE("--dataset")) { o->dataset = canonical_dataset(val); o->set_dataset = 1; }
        else if (VALUE("--data-dir")) o->data_dir = val;
        else if (VALUE("--model")) { o->model = val; o->set_model = 1; }
        else if (VALUE("--epochs")) { o->epochs = (int)parse_long(flag, val, 1, 100000); o->set_epochs = 1; }
        else if (VALUE("--batch")) o->batch = (int)parse_long(flag, val, 1, 65536);
        else if (VALUE("--threads")) o->threads = (int)parse_long(flag, val, 1, 4096);
        else if (VALUE("--kernels")) o->kernels = val;
        else if (VALUE("--optimizer")) { if (cnn_opt_parse(val, &o->opt_kind)) exit(EXIT_USAGE); }
        else if (VALUE("--init")) { if (cnn_init_parse(val, &o->init)) exit(EXIT_USAGE); }
        else if (VALUE("--lr")) o->lr = parse_float(flag, val, 0, 10);
        else if (VALUE("--momentum")) o->momentum = parse_float(flag, val, 0, 1);
        else if (SWITCH("--nesterov")) o->nesterov = 1;
        else if (VALUE("--weight-decay")) o->weight_decay = parse_float(flag, val, 0, 10);
        else if (VALUE("--schedule")) { if (cnn_schedule_parse(val, &o->schedule)) exit(EXIT_USAGE); }
        else if (VALUE("--warmup")) o->warmup = parse_long(flag, val, 0, 100000000);
        else if (VALUE("--step-epochs")) o->step_epochs = (int)parse_long(flag, val, 1, 100000);
        else if (VALUE("--gamma")) o->gamma = parse_float(flag, val, 0, 1);
        else if (SWITCH("--augment")) o->augment = 1;
        else if (VALUE("--crop-pad")) o->crop_pad = (int)parse_long(flag, val, 0, 16);
        else if (SWITCH("--hflip")) o->hflip = 1;
        else if (SWITCH("--no-hflip")) o->hflip = 0;
        else if (SWITCH("--grayscale")) o->grayscale = 1;
        else if (VALUE("--image-size")) {
            char h[16] = "", *x = strchr(val, 'x');
            if (!x || (size_t)(x - val) >= sizeof h) die(EXIT_USAGE, "--image-size: '%s' is not HxW, e.g. 32x32", val);
            memcpy(h, val, (size_t)(x - val));
            o->image_h = (int)parse_long(flag, h, 1, 4096);
            o->image_w = (int)parse_long(flag, x + 1, 1, 4096);
        }
        else if (SWITCH("--strict")) o->strict = 1;
        else if (SWITCH("--no-normalize")) o->normalize = 0;
        else if (VALUE("--val-split")) o->val_split = (size_t)parse_long(flag, val, 0, 1L << 40);
        else if (VALUE("--limit-train")) o->limit_train = (size_t)parse_long(flag, val, 0, 1L << 40);
        else if (VALUE("--limit-test")) {
            o->limit_test = (size_t)parse_long(flag, val, 0, 1L << 40);
            o->set_limit_test = 1;
        }
        else if (VALUE("--seed")) o->seed = (uint64_t)parse_long(flag, val, 0, 0x7fffffffffffffffL);
        else if (VALUE("--checkpoint")) o->checkpoint = val;
        else if (VALUE("--resume")) o->resume = val;
        else if (VALUE("--log")) o->log_path = val;
        else if (VALUE("--log-every")) o->log_every = (int)parse_long(flag, val, 1, 1000000000);
        else if (VALUE("--save-best")) o->save_best = val;
        else if (VALUE("--early-stop")) o->early_stop = (int)parse_long(flag, val, 1, 100000);
        else if (VALUE("--init-from")) o->init_from = val;
        else if (SWITCH("--invert")) o->invert = 1;
        else if (SWITCH("--json")) o->json = 1;
        else if (VALUE("--top")) o->top = (int)parse_long(flag, val, 1, 256);
        else die(EXIT_USAGE, "unknown option '%s' (see trainer %s --help)", flag, o->command);
#undef SWITCH
#undef VALUE
        for (size_t k = 0; k < sizeof RUN_FLAGS / sizeof RUN_FLAGS[0] && !o->run_flag; k++)
            if (!strcmp(flag, RUN_FLAGS[k])) o->run_flag = RUN_FLAGS[k];
    }
}

// ---------------------------------------------------------------- data and model
static int dataset_classes(const char *name) { return !strcmp(name, "cifar100") ? 100 : 10; }

// The built-in data sets' shapes without loading them (image folders are
// loaded: their shape comes from their images).
static void dataset_shape(const char *name, int grayscale, int *C, int *H, int *W) {
    if (is_image_set(name)) {  // the channels; H and W come from the images (or --image-size)
        *C = grayscale ? 1 : 3;
        *H = *W = 0;
        return;
    }
    int digits = !strcmp(name, "mnist") || !strcmp(name, "fashion-mnist");
    *C = digits || grayscale ? 1 : 3;
    *H = *W = digits ? 28 : 32;
}

// The folder of a data set: <data-dir>/<name>, or Debian's Fashion-MNIST.
static void dataset_dir(const Options *o, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", o->data_dir, o->dataset);
    struct stat sb;
    if (!strcmp(o->dataset, "fashion-mnist") && stat(buf, &sb) && !stat("/usr/share/datasets/fashion-mnist", &sb))
        snprintf(buf, n, "/usr/share/datasets/fashion-mnist");
}

static void load_data(const Options *o, CnnDataset *train, CnnDataset *val, CnnDataset *test) {
    char dir[1024];
    dataset_dir(o, dir, sizeof dir);
    CnnDataOptions dopt = {.grayscale = o->grayscale, .limit_train = o->limit_train, .val_split = o->val_split,
                           .height = o->image_h, .width = o->image_w, .strict = o->strict};
    double t0 = now();
    CnnStatus st = cnn_dataset_load(o->dataset, dir, &dopt, train, val, test);
    if (is_image_set(o->dataset)) {
        check(st);
        snprintf(dir, sizeof dir, "%s", image_root(o->dataset));
        if (train->skipped || test->skipped)
            fprintf(stderr, "trainer: %s: skipped %zu unreadable file%s (named above; --strict stops at the first)\n",
                    dir, train->skipped + test->skipped, train->skipped + test->skipped == 1 ? "" : "s");
    } else if (st == CNN_EIO)
        die(EXIT_RUNTIME, "%s is not available in %s; get it with: tools/fetch-data %s --dir %s", o->dataset, dir,
            o->dataset, o->data_dir);
    check(st);
    if (o->limit_test && o->limit_test < test->n) {
        CnnDataset first;
        check(cnn_dataset_subset(test, 0, o->limit_test, &first));
        cnn_dataset_free(test);
        *test = first;
    }
    // With --json, stdout holds the JSON alone.
    fprintf(o->json ? stderr : stdout, "data: %s from %s: %zu train, %zu %s, %zu test, %dx%dx%d, %d classes (loaded in %.2f s)\n", o->dataset, dir,
           train->n, val->n, "validation", test->n, train->c, train->h, train->w, train->classes, now() - t0);
}

static void model_desc(const char *model, int classes, char *buf, size_t n) {
    if (cnn_builtin_model(model, classes, buf, n) != CNN_OK) snprintf(buf, n, "%s", model);
}

static void format_count(double v, char *buf, size_t n) {
    if (v >= 1e9) snprintf(buf, n, "%.2f G", v / 1e9);
    else if (v >= 1e6) snprintf(buf, n, "%.2f M", v / 1e6);
    else if (v >= 1e3) snprintf(buf, n, "%.1f k", v / 1e3);
    else snprintf(buf, n, "%.0f", v);
}

static void print_summary(const CnnNet *net) {
    printf("  #  %-36s %-14s %10s %12s\n", "layer", "output", "params", "FLOPs/image");
    for (int i = 0; i < cnn_net_num_layers(net); i++) {
        CnnLayerInfo li;
        cnn_net_layer_info(net, i, &li);
        char shape[32], fl[32];
        snprintf(shape, sizeof shape, "%dx%dx%d", li.OC, li.OH, li.OW);
        format_count(li.flops, fl, sizeof fl);
        printf(" %2d  %-36s %-14s %10zu %12s\n", i, li.text, shape, li.n_weight + li.n_bias, li.flops > 0 ? fl : "-");
    }
    char fl[32];
    format_count(cnn_net_flops(net), fl, sizeof fl);
    printf("     total: %zu parameters (%.2f MB as float32), %sFLOP forward per image\n", cnn_net_num_params(net),
           cnn_net_num_params(net) * 4.0 / 1e6, fl);
}

// ---------------------------------------------------------------- reports
static void print_class_table(const CnnMetrics *m, const int64_t *cm, int K, char **names) {
    printf("\n  %-14s %9s %9s %9s %8s\n", "class", "precision", "recall", "F1", "support");
    for (int k = 0; k < K && k < CNN_METRICS_MAX_CLASSES; k++)
        printf("  %-14.14s %9.4f %9.4f %9.4f %8lld\n", names ? names[k] : "?", m->precision[k], m->recall[k], m->f1[k],
               (long long)m->support[k]);
    printf("  %-14s %9.4f %9.4f %9.4f\n", "macro avg", m->macro_precision, m->macro_recall, m->macro_f1);
    if (K > 20) return;  // a 100x100 matrix helps nobody on a terminal
    printf("\nconfusion matrix (rows: true class, columns: predicted):\n       ");
    for (int k = 0; k < K; k++) printf(" %5.5s", names ? names[k] : "?");
    printf("\n");
    for (int i = 0; i < K; i++) {
        printf("  %-5.5s", names ? names[i] : "?");
        for (int j = 0; j < K; j++) printf(" %5lld", (long long)cm[(size_t)i * K + j]);
        printf("\n");
    }
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

// ---------------------------------------------------------------- checkpoint metadata
static void join_floats(const float *v, int n, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n && len < size; i++) len += (size_t)snprintf(buf + len, size - len, "%s%.9g", i ? "," : "", v[i]);
}

static int split_floats(const char *s, float *v, int n) {
    for (int i = 0; i < n; i++) {
        char *end;
        v[i] = strtof(s, &end);
        if (end == s) return 0;
        s = end;
        if (i + 1 < n) {
            if (*s != ',') return 0;
            s++;
        }
    }
    return *s == 0;
}

static const char *need(const CnnMeta *m, const char *path, const char *key) {
    const char *v = cnn_meta_get(m, key);
    if (!v) die(EXIT_RUNTIME, "%s: checkpoint metadata lacks '%s' (not written by trainer?)", path, key);
    return v;
}

// A whole number from checkpoint metadata, within [lo, hi], or exit 1 naming the key.
static long long meta_int(const CnnMeta *m, const char *path, const char *key, long long lo, long long hi) {
    const char *v = need(m, path, key);
    long long i;
    double x;
    if (!parse_number(v, 1, (double)lo, (double)hi, &i, &x) || i < lo || i > hi)
        die(EXIT_RUNTIME, "%s: checkpoint metadata '%s' is '%s', not a whole number in %lld..%lld", path, key, v, lo, hi);
    return i;
}

static double meta_double(const CnnMeta *m, const char *path, const char *key, double lo, double hi) {
    const char *v = need(m, path, key);
    long long i;
    double x;
    if (!parse_number(v, 0, lo, hi, &i, &x))
        die(EXIT_RUNTIME, "%s: checkpoint metadata '%s' is '%s', not a number in [%g, %g]", path, key, v, lo, hi);
    return x;
}

static float meta_float(const CnnMeta *m, const char *path, const char *key, double lo, double hi) {
    return (float)meta_double(m, path, key, lo, hi);
}

static void class_names_meta(const CnnDataset *d, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; k < d->classes && len < size; k++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", k ? "\n" : "", d->class_names ? d->class_names[k] : "?");
}

// Splits "a\nb\nc" into K names (pointers into a copy the caller frees).
static char **split_names(const char *s, int K, char **copy) {
    *copy = strdup(s);
    char **names = calloc((size_t)K, sizeof *names);
    char *p = *copy;
    for (int k = 0; k < K; k++) {
        names[k] = p ? p : "?";
        char *nl = p ? strchr(p, '\n') : NULL;
        if (nl) *nl = 0;
        p = nl ? nl + 1 : NULL;
    }
    return names;
}

// ---------------------------------------------------------------- train
// The signal that asked the run to stop (0: none). SIGINT (Ctrl-C), and
// SIGTERM and SIGHUP, which timeout, Slurm, systemd, docker stop and a closed
// terminal send: each saves a checkpoint and exits 128 + the signal.
static volatile sig_atomic_t stop_signal;

// Says at once that the signal was heard (the batch or evaluation under way
// finishes first, which can take seconds); write() is async-signal-safe.
static void on_stop_signal(int sig) {
    static const char msg[] = "\ntrainer: stopping after the current batch or evaluation, then saving a checkpoint "
                              "(again to stop at once)\n";
    stop_signal = sig;
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
}

static void catch_stop_signals(void) {
    struct sigaction sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESETHAND};  // a second one kills at once
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static const char *signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

// ---------------------------------------------------------------- output paths
// Every file the run will write is checked before any data is loaded or step
// run, so that a typo costs a second, not an epoch: the folder must take a
// new file (the checkpoint is written beside its target and renamed), and an
// existing target must be a writable regular file.
static void check_output_path(const char *flag, const char *path) {
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

// FNV-1a: a short stable tag for a custom model's default checkpoint name.
static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static int params_finite(CnnNet *net) {
    const float *p = cnn_net_params(net);
    const size_t n = cnn_net_num_params(net);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return 0;
    return 1;
}

static const char EPOCH_LOG_HEADER[] =
    "epoch,lr,train_loss,train_acc,eval_split,eval_loss,eval_acc,macro_precision,macro_recall,macro_f1,"
    "epoch_seconds,train_img_per_s\n";
static const char STEP_LOG_HEADER[] = "step,epoch,batch,loss,lr,img_per_s\n";

// Appends a row to a CSV log, with its header when the file is new.
static void append_log(const char *path, const char *header, const char *row) {
    FILE *f = fopen(path, "a");
    if (!f) die(EXIT_RUNTIME, "%s: cannot open the log for appending: %s", path, strerror(errno));
    if (ftell(f) == 0) fputs(header, f);
    fputs(row, f);
    if (fclose(f)) die(EXIT_RUNTIME, "%s: cannot write the log: %s", path, strerror(errno));
}


// ---------------------------------------------------------------- run metadata
// The run's numeric settings as checkpoint metadata: one row each, read by
// both save_run and settings_from_checkpoint, with the range a file's value
// must be in. (Strings and names, the position and the tallies are written
// beside them.)
typedef enum { KEY_INT, KEY_LONG, KEY_SIZE, KEY_U64, KEY_FLOAT } KeyType;

static const struct {
    const char *key;
    KeyType type;
    double lo, hi;
    size_t offset;  // in Options
    int since;      // 1: absent in checkpoints of older releases (then the default stays)
} RUN_KEYS[] = {
    {"epochs", KEY_INT, 1, 100000, offsetof(Options, epochs), 0},
    {"batch", KEY_INT, 1, 65536, offsetof(Options, batch), 0},
    {"seed", KEY_U64, 0, 9223372036854775807.0, offsetof(Options, seed), 0},
    {"grayscale", KEY_INT, 0, 1, offsetof(Options, grayscale), 0},
    {"normalize", KEY_INT, 0, 1, offsetof(Options, normalize), 0},
    {"limit_train", KEY_SIZE, 0, 1099511627776.0, offsetof(Options, limit_train), 0},
    {"val_split", KEY_SIZE, 0, 1099511627776.0, offsetof(Options, val_split), 0},
    {"augment", KEY_INT, 0, 1, offsetof(Options, augment), 0},
    {"crop_pad", KEY_INT, 0, 16, offsetof(Options, crop_pad), 0},
    {"hflip", KEY_INT, 0, 1, offsetof(Options, hflip), 0},
    {"base_lr", KEY_FLOAT, 0, 10, offsetof(Options, lr), 0},
    {"warmup", KEY_LONG, 0, 100000000, offsetof(Options, warmup), 0},
    {"step_epochs", KEY_INT, 1, 100000, offsetof(Options, step_epochs), 0},
    {"gamma", KEY_FLOAT, 0, 1, offsetof(Options, gamma), 0},
    {"early_stop", KEY_INT, 0, 100000, offsetof(Options, early_stop), 1},
    {"image_height", KEY_INT, 0, 4096, offsetof(Options, image_h), 1},
    {"image_width", KEY_INT, 0, 4096, offsetof(Options, image_w), 1},
};
#define N_RUN_KEYS (sizeof RUN_KEYS / sizeof RUN_KEYS[0])

static void run_keys_save(const Options *o, CnnMeta *m) {
    for (size_t k = 0; k < N_RUN_KEYS; k++) {
        const void *f = (const char *)o + RUN_KEYS[k].offset;
        switch (RUN_KEYS[k].type) {
        case KEY_INT: cnn_meta_set(m, RUN_KEYS[k].key, "%d", *(const int *)f); break;
        case KEY_LONG: cnn_meta_set(m, RUN_KEYS[k].key, "%ld", *(const long *)f); break;
        case KEY_SIZE: cnn_meta_set(m, RUN_KEYS[k].key, "%zu", *(const size_t *)f); break;
        case KEY_U64: cnn_meta_set(m, RUN_KEYS[k].key, "%llu", (unsigned long long)*(const uint64_t *)f); break;
        case KEY_FLOAT: cnn_meta_set(m, RUN_KEYS[k].key, "%.9g", *(const float *)f); break;
        }
    }
}

static void run_keys_load(Options *o, const CnnMeta *m, const char *path) {
    for (size_t k = 0; k < N_RUN_KEYS; k++) {
        const char *key = RUN_KEYS[k].key;
        if (RUN_KEYS[k].since && !cnn_meta_get(m, key)) continue;
        if (!strcmp(key, "epochs") && o->set_epochs) continue;  // --epochs may extend a run
        void *f = (char *)o + RUN_KEYS[k].offset;
        const double lo = RUN_KEYS[k].lo, hi = RUN_KEYS[k].hi;
        switch (RUN_KEYS[k].type) {
        case KEY_INT: *(int *)f = (int)meta_int(m, path, key, (long long)lo, (long long)hi); break;
        case KEY_LONG: *(long *)f = (long)meta_int(m, path, key, (long long)lo, (long long)hi); break;
        case KEY_SIZE: *(size_t *)f = (size_t)meta_int(m, path, key, (long long)lo, (long long)hi); break;
        case KEY_U64: *(uint64_t *)f = (uint64_t)meta_int(m, path, key, 0, 0x7fffffffffffffffLL); break;
        case KEY_FLOAT: *(float *)f = meta_float(m, path, key, lo, hi); break;
        }
    }
}

// Restores the run's settings from a checkpoint's metadata (the file decides).
static void settings_from_checkpoint(Options *o, const CnnMeta *m, const char *path) {
    const char *ds = need(m, path, "dataset");
    if (o->set_dataset && strcmp(ds, o->dataset))
        die(EXIT_USAGE, "--resume %s: the checkpoint trained on %s, not %s", path, ds, o->dataset);
    o->dataset = canonical_dataset(ds);
    o->model = need(m, path, "model");
    run_keys_load(o, m, path);
    if (cnn_schedule_parse(need(m, path, "schedule"), &o->schedule)) exit(EXIT_RUNTIME);
    const char *best = cnn_meta_get(m, "save_best");  // absent in older checkpoints
    o->save_best = best && *best ? best : NULL;
    // The log and the test subset go on as before unless given again.
    const char *log = cnn_meta_get(m, "log");
    if (!o->log_path && log && *log) o->log_path = log;
    if (!o->set_limit_test && cnn_meta_get(m, "limit_test"))
        o->limit_test = (size_t)meta_int(m, path, "limit_test", 0, 1LL << 40);
}

// Writes the run's checkpoint: weights, optimiser state and everything needed
// to resume at (epoch, batch_in_epoch) or to evaluate and predict later.
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

static void save_run(const Options *o, const char *path, CnnNet *net, const CnnOptimizer *opt, const float *mean,
                     const float *stdv, int C, const char *names, int epoch, long batch_in_epoch,
                     const EpochTally *tally, const RunBest *best) {
    CnnMeta m = {0};
    char mean_s[96], std_s[96];
    join_floats(mean, C, mean_s, sizeof mean_s);
    join_floats(stdv, C, std_s, sizeof std_s);
    cnn_meta_set(&m, "dataset", "%s", o->dataset);
    cnn_meta_set(&m, "class_names", "%s", names);
    cnn_meta_set(&m, "normalize_mean", "%s", mean_s);
    cnn_meta_set(&m, "normalize_std", "%s", std_s);
    cnn_meta_set(&m, "epoch", "%d", epoch);
    cnn_meta_set(&m, "batch_in_epoch", "%ld", batch_in_epoch);
    cnn_meta_set(&m, "epoch_loss_sum", "%.17g", tally->loss_sum);
    cnn_meta_set(&m, "epoch_seen", "%ld", tally->seen);
    cnn_meta_set(&m, "epoch_hits", "%ld", tally->hits);
    cnn_meta_set(&m, "best_acc", "%.17g", best->acc);
    cnn_meta_set(&m, "best_epoch", "%d", best->epoch);
    cnn_meta_set(&m, "save_best", "%s", o->save_best ? o->save_best : "");
    cnn_meta_set(&m, "log", "%s", o->log_path ? o->log_path : "");
    cnn_meta_set(&m, "limit_test", "%zu", o->limit_test);
    cnn_meta_set(&m, "init", "%s", cnn_init_name(o->init));
    cnn_meta_set(&m, "schedule", "%s", cnn_schedule_name(o->schedule));
    run_keys_save(o, &m);
    CnnStatus st = cnn_checkpoint_save(path, net, opt, &m);
    cnn_meta_free(&m);
    if (st) exit(EXIT_RUNTIME);
}

static int is_builtin(const char *model) {
    char buf[8];
    return cnn_builtin_model(model, 10, buf, sizeof buf) == CNN_OK;
}

// Threads, OpenBLAS's core and the compute kernels, before any work; a
// --kernels or CNNC_KERNELS that this CPU cannot run is a usage error.
static int setup_compute(const Options *o) {
    const int threads = cnn_threads_init(o->threads);
    if (o->kernels ? cnn_kernels_select(o->kernels) : cnn_kernels_from_env())
        die(EXIT_USAGE, "%s: cannot use kernels '%s'", o->kernels ? "--kernels" : "CNNC_KERNELS",
            o->kernels ? o->kernels : getenv("CNNC_KERNELS"));
    return threads;
}

// The net of --model for `classes` classes of CxHxW images at --batch:
// train and summary accept and refuse exactly the same models.
static CnnNet *build_model(const Options *o, int classes, int C, int H, int W) {
    char desc[4096];
    model_desc(o->model, classes, desc, sizeof desc);
    CnnNet *net;
    check_model(cnn_net_create(&net, desc, C, H, W, o->batch, o->seed));
    if (cnn_net_num_classes(net) != classes)
        die(EXIT_USAGE, "--model: the model ends in %d outputs but %s has %d classes", cnn_net_num_classes(net),
            o->dataset, classes);
    return net;
}

// ---------------------------------------------------------------- train, in stages
// Everything a training run holds between its stages.
typedef struct {
    Options *o;
    CnnMeta resume_meta, init_meta;
    char default_ckpt[256];
    int threads;
    CnnDataset train, val, test;
    const CnnDataset *eval_set;
    const char *eval_name;
    CnnNet *net;
    float mean[3], stdv[3];
    CnnBatcher it;
    long steps_per_epoch;
    CnnOptimizer opt;
    CnnSchedule sched;
    int start_epoch;
    long skip_batches;
    EpochTally resumed;  // the interrupted epoch's tally, for its report
    RunBest best;
    char names[8192];
    float *x;
    uint8_t *y;
    int64_t *cm;
    CnnMetrics met;
    int done_any, tty;
    long fault_step;  // CNNC_FAULT_NAN_AT_STEP: poison a weight after this step (divergence tests)
    char kept[512];   // what a divergence leaves behind, for its message
} Run;

// Settings, output paths and the checkpoints to read, before any work: a
// mistake here costs no data loading and no training.
static void run_prepare(Run *r) {
    Options *o = r->o;
    if (o->resume && o->run_flag)
        die(EXIT_USAGE, "--resume %s: %s cannot change a resumed run, whose settings come from the checkpoint "
            "(with --resume give only --epochs, --checkpoint, --log, --limit-test, --data-dir, --threads or --kernels)",
            o->resume, o->run_flag);
    if (o->resume) {
        check(cnn_checkpoint_read_meta(o->resume, &r->resume_meta));
        settings_from_checkpoint(o, &r->resume_meta, o->resume);
        if (!o->checkpoint) o->checkpoint = o->resume;
    }
    // Each custom model gets its own default file: one run must not
    // overwrite another's.
    if (!o->checkpoint) {
        if (is_builtin(o->model))
            snprintf(r->default_ckpt, sizeof r->default_ckpt, "cnnc-%s-%s.safetensors", o->dataset, o->model);
        else
            snprintf(r->default_ckpt, sizeof r->default_ckpt, "cnnc-%s-custom-%08x.safetensors", o->dataset,
                     (unsigned)fnv1a(o->model));
        o->checkpoint = r->default_ckpt;
    }
    if ((o->save_best || o->early_stop) && !o->val_split)
        die(EXIT_USAGE, "%s needs --val-split N: choosing epochs by test accuracy would tune on the test set",
            o->save_best ? "--save-best" : "--early-stop");
    if (o->save_best && !strcmp(o->save_best, o->checkpoint))
        die(EXIT_USAGE, "--save-best %s: give another file than --checkpoint (which holds the last epoch)", o->save_best);
    check_output_path("--checkpoint", o->checkpoint);
    if (o->log_path) check_output_path("--log", o->log_path);
    if (o->log_every) {
        if (!o->log_path) die(EXIT_USAGE, "--log-every N needs --log FILE.csv (its steps go to FILE.steps.csv)");
        const size_t n = strlen(o->log_path);
        const int csv = n >= 4 && !strcmp(o->log_path + n - 4, ".csv");
        snprintf(o->step_log, sizeof o->step_log, "%.*s.steps.csv", (int)(csv ? n - 4 : n), o->log_path);
        check_output_path("--log-every", o->step_log);
    }
    if (o->save_best) check_output_path("--save-best", o->save_best);
    // Fine-tuning: the model of --init-from unless --model says otherwise
    // (then its weights must fit); the optimiser and schedule start anew.
    if (o->init_from) {
        check(cnn_checkpoint_read_meta(o->init_from, &r->init_meta));
        if (!o->set_model) o->model = need(&r->init_meta, o->init_from, "model");
    }
}

// Threads and kernels, the data, the model and its starting weights.
static void run_build(Run *r) {
    Options *o = r->o;
    catch_stop_signals();
    r->threads = setup_compute(o);
    char info[512], kinfo[256];
    cnn_threads_describe(info, sizeof info);
    cnn_kernels_describe(kinfo, sizeof kinfo);
    printf("cnnc %s trainer: %s\n", CNNC_VERSION, info);
    printf("cnnc %s trainer: %s\n", CNNC_VERSION, kinfo);

    load_data(o, &r->train, &r->val, &r->test);
    r->eval_set = r->val.n ? &r->val : &r->test;
    r->eval_name = r->val.n ? "val" : "test";

    o->image_h = r->train.h, o->image_w = r->train.w;  // kept in the checkpoint for --resume
    r->net = build_model(o, r->train.classes, r->train.c, r->train.h, r->train.w);
    if (o->init != CNN_INIT_PYTORCH) cnn_net_init_weights_as(r->net, o->seed, o->init);
    if (o->init_from) {
        const CnnStatus st = cnn_checkpoint_load(o->init_from, r->net, NULL, NULL);
        if (st == CNN_ESHAPE) die(EXIT_USAGE, "--init-from %s: its weights do not fit the model", o->init_from);
        check(st);
        const char *e = cnn_meta_get(&r->init_meta, "epoch");
        printf("init: weights from %s%s%s; optimiser and schedule start anew\n", o->init_from,
               e ? " after epoch " : "", e ? e : "");
    }
    char fl[32];
    format_count(cnn_net_flops(r->net), fl, sizeof fl);
    printf("model: %s%s%s: %zu parameters, %sFLOP/image forward\n", is_builtin(o->model) ? o->model : "",
           is_builtin(o->model) ? " = " : "", cnn_net_desc(r->net), cnn_net_num_params(r->net), fl);
}

// A resumed run's weights, optimiser state, position, best epoch and the
// interrupted epoch's tally, from its checkpoint.
static void run_restore(Run *r) {
    Options *o = r->o;
    const CnnMeta *m = &r->resume_meta;
    check(cnn_checkpoint_load(o->resume, r->net, &r->opt, NULL));
    r->sched.lr = o->lr;
    r->start_epoch = (int)meta_int(m, o->resume, "epoch", 0, 100000);
    r->skip_batches = (long)meta_int(m, o->resume, "batch_in_epoch", 0, 1LL << 40);
    if (cnn_meta_get(m, "best_epoch")) {  // absent in older checkpoints
        r->best.epoch = (int)meta_int(m, o->resume, "best_epoch", 0, 100000);
        r->best.acc = meta_double(m, o->resume, "best_acc", 0, 1);
    }
    if (r->skip_batches && cnn_meta_get(m, "epoch_seen")) {  // absent in older checkpoints
        r->resumed.seen = (long)meta_int(m, o->resume, "epoch_seen", 0, 1LL << 40);
        r->resumed.hits = (long)meta_int(m, o->resume, "epoch_hits", 0, r->resumed.seen);
        r->resumed.loss_sum = meta_double(m, o->resume, "epoch_loss_sum", 0, 1e300);
    }
    if (r->skip_batches > r->steps_per_epoch)
        die(EXIT_RUNTIME, "%s: checkpoint position epoch %d batch %ld does not fit this data", o->resume,
            r->start_epoch, r->skip_batches);
    // Counted as the interruption message counts them (epochs from 1).
    if (r->skip_batches)
        printf("resume: %s at epoch %d, batch %ld; settings come from the checkpoint\n", o->resume,
               r->start_epoch + 1, r->skip_batches);
    else
        printf("resume: %s after epoch %d; settings come from the checkpoint\n", o->resume, r->start_epoch);
    if (r->start_epoch >= o->epochs)
        printf("resume: the run already finished its %d epoch%s (give a larger --epochs to go on)\n", o->epochs,
               plural(o->epochs));
}

// Standardisation, batches, optimiser and schedule; a resumed run's state.
static void run_setup(Run *r) {
    Options *o = r->o;
    // Per-channel standardisation from the training split (kept in the checkpoint).
    for (int c = 0; c < 3; c++) r->mean[c] = 0.0f, r->stdv[c] = 1.0f;
    if (o->normalize) {
        if (o->resume) {
            if (!split_floats(need(&r->resume_meta, o->resume, "normalize_mean"), r->mean, r->train.c) ||
                !split_floats(need(&r->resume_meta, o->resume, "normalize_std"), r->stdv, r->train.c))
                die(EXIT_RUNTIME, "%s: bad normalize_mean/normalize_std metadata", o->resume);
        } else {
            cnn_dataset_channel_stats(&r->train, r->mean, r->stdv);
        }
    }
    const int cifar = r->train.c == 3 || !strncmp(o->dataset, "cifar", 5);
    if (o->crop_pad < 0) o->crop_pad = cifar ? 4 : 2;
    if (o->hflip < 0) o->hflip = cifar;
    CnnBatcherConfig bcfg = {.batch = o->batch, .shuffle = 1, .seed = o->seed, .mean = r->mean, .std = r->stdv};
    if (o->augment) bcfg.aug = (CnnAugment){.crop_pad = o->crop_pad, .hflip = o->hflip};
    check(cnn_batcher_init(&r->it, &r->train, &bcfg));
    r->steps_per_epoch = (long)cnn_batcher_num_batches(&r->it);

    cnn_opt_defaults(&r->opt, o->opt_kind);
    if (o->lr >= 0) r->opt.lr = o->lr;
    if (o->momentum >= 0) r->opt.momentum = o->momentum;
    if (o->weight_decay >= 0) r->opt.weight_decay = o->weight_decay;
    r->opt.nesterov = o->nesterov;
    if (o->step_epochs <= 0) o->step_epochs = (o->epochs + 2) / 3;
    o->lr = r->opt.lr;  // the effective base rate and step length, as the checkpoint keeps them
    r->sched = (CnnSchedule){.kind = o->schedule, .lr = o->lr, .epochs = o->epochs, .warmup = o->warmup,
                             .step_epochs = o->step_epochs, .gamma = o->gamma};
    if (o->resume) run_restore(r);
    printf("train: %d epoch%s of %ld step%s, batch %d, %s lr %g (%s%s), %d thread%s, seed %llu%s%s\n", o->epochs,
           plural(o->epochs), r->steps_per_epoch, plural(r->steps_per_epoch), o->batch, cnn_opt_name(r->opt.kind),
           r->sched.lr, cnn_schedule_name(r->sched.kind), r->sched.warmup ? ", warm-up" : "", r->threads,
           plural(r->threads), (unsigned long long)o->seed, o->augment ? ", augmented" : "",
           o->normalize ? ", standardised" : "");
    printf("checkpoint: %s (after every epoch)\n", o->checkpoint);
    fflush(stdout);

    class_names_meta(&r->train, r->names, sizeof r->names);
    r->x = cnn_alloc_floats((size_t)o->batch * cnn_dataset_image_size(&r->train));
    r->y = malloc((size_t)o->batch);
    r->cm = calloc((size_t)r->train.classes * r->train.classes, sizeof *r->cm);
    if (!r->x || !r->y || !r->cm) die(EXIT_RUNTIME, "out of memory for one batch of %d images", o->batch);
    r->tty = isatty(STDOUT_FILENO);
    const char *fault = getenv("CNNC_FAULT_NAN_AT_STEP");
    r->fault_step = fault ? strtol(fault, NULL, 10) : -1;
    if (o->resume && !strcmp(o->resume, o->checkpoint))
        snprintf(r->kept, sizeof r->kept, "%s keeps the last good state (the resumed one)", o->checkpoint);
    else
        snprintf(r->kept, sizeof r->kept, "no checkpoint was written (it diverged before the first epoch ended)");
}

static void run_save(Run *r, const char *path, int epoch, long batch_in_epoch, const EpochTally *tally) {
    save_run(r->o, path, r->net, &r->opt, r->mean, r->stdv, r->train.c, r->names, epoch, batch_in_epoch,
             tally, &r->best);
}

// The time an epoch's steps took and the images this process saw (the
// tally may also count those before a resume).
typedef struct {
    EpochTally tally;
    double t0, t_step;
    long seen_here;
    float lr;
} EpochRun;

// One epoch's steps (from the resumed batch for the first epoch of a
// resumed run); a stop signal saves the position and exits.
static void run_epoch_steps(Run *r, int epoch, EpochRun *e) {
    Options *o = r->o;
    cnn_batcher_epoch(&r->it, (uint64_t)epoch);
    long b = 0;
    if (epoch == r->start_epoch && r->skip_batches) {
        cnn_batcher_skip(&r->it, (size_t)r->skip_batches);
        b = r->skip_batches;
    }
    *e = (EpochRun){.tally = epoch == r->start_epoch ? r->resumed : (EpochTally){0}, .t0 = now(), .lr = r->opt.lr};
    double last_draw = 0.0;
    int n;
    while ((n = cnn_batcher_next(&r->it, r->x, r->y)) > 0) {
        const long step = (long)epoch * r->steps_per_epoch + b;
        e->lr = cnn_schedule_lr(&r->sched, step, r->steps_per_epoch);
        int correct;
        const double ts = now();
        float loss = cnn_net_train_step(r->net, &r->opt, r->x, r->y, n, e->lr, &correct);
        e->t_step += now() - ts;
        if (step == r->fault_step) cnn_net_params(r->net)[0] = NAN;
        b++;
        if (!isfinite(loss) || !isfinite(e->lr))
            die(EXIT_RUNTIME, "training diverged at epoch %d, batch %ld: loss is %g; %s; try a lower --lr",
                epoch + 1, b, loss, r->kept);
        e->tally.loss_sum += (double)loss * n;
        e->tally.seen += n;
        e->tally.hits += correct;
        e->seen_here += n;
        if (o->log_every && (step + 1) % o->log_every == 0) {
            char row[256], lr_s[32];
            snprintf(row, sizeof row, "%ld,%d,%ld,%.6f,%s,%.1f\n", step + 1, epoch + 1, b, (double)loss,
                     shortest_float(e->lr, lr_s, sizeof lr_s), e->t_step > 0 ? e->seen_here / e->t_step : 0.0);
            append_log(o->step_log, STEP_LOG_HEADER, row);
        }
        if (r->tty && (now() - last_draw > 0.25 || b == r->steps_per_epoch)) {
            last_draw = now();
            const double rate = e->seen_here / (now() - e->t0);
            const long done = b * o->batch < (long)r->train.n ? b * o->batch : (long)r->train.n;
            printf("\r  epoch %d/%d [%5ld/%ld] loss %.4f acc %6.2f%%  %.0f img/s  ETA %.0fs\033[K", epoch + 1,
                   o->epochs, b, r->steps_per_epoch, e->tally.loss_sum / e->tally.seen,
                   100.0 * e->tally.hits / e->tally.seen, rate, (double)(r->train.n - (size_t)done) / rate);
            fflush(stdout);
        }
        if (stop_signal) {
            if (r->tty) printf("\n");
            fflush(stdout);
            run_save(r, o->checkpoint, epoch, b, &e->tally);
            fprintf(stderr, "trainer: %s%s at epoch %d, batch %ld; checkpoint written to %s; "
                    "continue with: trainer --resume %s\n", stop_signal == SIGINT ? "interrupted" : "stopped by ",
                    stop_signal == SIGINT ? "" : signal_name(stop_signal), epoch + 1, b, o->checkpoint, o->checkpoint);
            exit(128 + stop_signal);
        }
    }
}

// After an epoch's steps: evaluation, the report line and log row, the
// checkpoints. Returns 1 when --early-stop ends the run.
static int run_epoch_end(Run *r, int epoch, const EpochRun *e) {
    Options *o = r->o;
    if (!params_finite(r->net))
        die(EXIT_RUNTIME, "training diverged in epoch %d: a parameter is not finite; %s; try a lower --lr",
            epoch + 1, r->kept);
    double eval_loss;
    const double t_eval = now();
    check(cnn_evaluate(r->net, r->eval_set, r->mean, r->stdv, &eval_loss, r->cm));
    cnn_metrics_compute(r->cm, r->train.classes, &r->met);
    r->done_any = 1;
    // The epoch's wall time counts its evaluation (shown apart too):
    // the epoch times add up to the run's.
    const double epoch_s = now() - e->t0, eval_s = now() - t_eval;
    const double train_loss = e->tally.seen ? e->tally.loss_sum / e->tally.seen : 0.0;
    const double train_acc = e->tally.seen ? (double)e->tally.hits / e->tally.seen : 0.0;
    const double img_s = e->t_step > 0 ? e->seen_here / e->t_step : 0.0;
    const CnnMetrics *met = &r->met;
    if (r->tty) printf("\r\033[K");
    printf("epoch %d/%d  train loss %.4f acc %.2f%%  %s loss %.4f acc %.2f%%  P %.4f R %.4f F1 %.4f  %.1f s (eval %.1f s)  "
           "%.0f img/s\n", epoch + 1, o->epochs, train_loss, 100 * train_acc, r->eval_name, eval_loss, 100 * met->accuracy,
           met->macro_precision, met->macro_recall, met->macro_f1, epoch_s, eval_s, img_s);
    fflush(stdout);
    if (o->log_path) {
        char row[512], lr_s[32];
        snprintf(row, sizeof row, "%d,%s,%.6f,%.6f,%s,%.6f,%.6f,%.6f,%.6f,%.6f,%.3f,%.1f\n", epoch + 1,
                 shortest_float(e->lr, lr_s, sizeof lr_s), train_loss, train_acc, r->eval_name, eval_loss,
                 met->accuracy, met->macro_precision, met->macro_recall, met->macro_f1, epoch_s, img_s);
        append_log(o->log_path, EPOCH_LOG_HEADER, row);
    }
    // The best epoch by validation accuracy: its own checkpoint, and the
    // patience of --early-stop counted from it.
    const int better = met->accuracy > r->best.acc || !r->best.epoch;
    if (better) r->best = (RunBest){met->accuracy, epoch + 1};
    const int stop_early = o->early_stop && epoch + 1 - r->best.epoch >= o->early_stop;
    run_save(r, o->checkpoint, epoch + 1, 0, &(EpochTally){0});
    if (better && o->save_best) {
        run_save(r, o->save_best, epoch + 1, 0, &(EpochTally){0});
        printf("best so far: %s acc %.2f%% at epoch %d, saved to %s\n", r->eval_name, 100 * r->best.acc,
               r->best.epoch, o->save_best);
    }
    snprintf(r->kept, sizeof r->kept, "%s keeps the last good epoch (%d)", o->checkpoint, epoch + 1);
    if (stop_early)
        printf("early stop: %s accuracy has not improved for %d epoch%s (best %.2f%% at epoch %d)\n", r->eval_name,
               o->early_stop, plural(o->early_stop), 100 * r->best.acc, r->best.epoch);
    return stop_early;
}

// The test set's report (when epochs were evaluated on a validation split)
// and the per-class table; frees the run.
static void run_finish(Run *r, double t_run) {
    if (r->done_any) {
        if (r->eval_set != &r->test) {
            double tl;
            check(cnn_evaluate(r->net, &r->test, r->mean, r->stdv, &tl, r->cm));
            cnn_metrics_compute(r->cm, r->test.classes, &r->met);
            printf("test loss %.4f acc %.2f%%\n", tl, 100 * r->met.accuracy);
        }
        print_class_table(&r->met, r->cm, r->test.classes, r->test.class_names);
    }
    printf("\ndone: %.1f s, peak memory %.0f MB, checkpoint %s\n", now() - t_run, peak_rss_mb(), r->o->checkpoint);
    cnn_batcher_free(&r->it);
    cnn_free(r->x);
    free(r->y);
    free(r->cm);
    cnn_net_free(r->net);
    cnn_dataset_free(&r->train);
    cnn_dataset_free(&r->val);
    cnn_dataset_free(&r->test);
    cnn_meta_free(&r->resume_meta);
    cnn_meta_free(&r->init_meta);
}

static int cmd_train(Options *o) {
    static Run run;  // large (class names); one per process
    Run *r = &run;
    *r = (Run){.o = o};
    run_prepare(r);
    run_build(r);
    run_setup(r);
    if (stop_signal)
        die(128 + stop_signal, "stopped by %s before the first step; nothing to save", signal_name(stop_signal));
    const double t_run = now();
    for (int epoch = r->start_epoch; epoch < o->epochs; epoch++) {
        EpochRun e;
        run_epoch_steps(r, epoch, &e);
        if (run_epoch_end(r, epoch, &e)) break;
    }
    run_finish(r, t_run);
    return 0;
}

// ---------------------------------------------------------------- eval / predict
// Prints a JSON value on one line of stdout (--json) and frees it.
static void print_json(cJSON *v) {
    char *text = cJSON_PrintUnformatted(v);
    if (!text) die(EXIT_RUNTIME, "out of memory for the JSON output");
    printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(v);
}

// Builds the checkpoint's network (batch B) and loads its weights.
static CnnNet *open_checkpoint(const char *path, int B, CnnMeta *m, float *mean, float *stdv) {
    if (!path) die(EXIT_USAGE, "--checkpoint FILE is required");
    check(cnn_checkpoint_read_meta(path, m));
    int C, H, W;
    if (sscanf(need(m, path, "input_shape"), "%d,%d,%d", &C, &H, &W) != 3 || C < 1 || C > 3)
        die(EXIT_RUNTIME, "%s: bad input_shape metadata", path);
    CnnNet *net;
    check(cnn_net_create(&net, need(m, path, "model"), C, H, W, B, 1));
    check(cnn_checkpoint_load(path, net, NULL, NULL));
    for (int c = 0; c < 3; c++) { mean[c] = 0; stdv[c] = 1; }
    // Checkpoints written by the library alone (cnn_checkpoint_save without
    // the trainer's metadata) were trained on pixels/255, the batcher's default.
    const char *normalize = cnn_meta_get(m, "normalize");
    if (normalize && !strcmp(normalize, "1") &&
        (!split_floats(need(m, path, "normalize_mean"), mean, C) || !split_floats(need(m, path, "normalize_std"), stdv, C)))
        die(EXIT_RUNTIME, "%s: bad normalize_mean/normalize_std metadata", path);
    return net;
}

static int cmd_eval(Options *o) {
    setup_compute(o);
    CnnMeta m = {0};
    float mean[3], stdv[3];
    CnnNet *net = open_checkpoint(o->checkpoint, o->batch, &m, mean, stdv);
    // A checkpoint written by the library alone (cnn_checkpoint_save) names
    // no data set: --dataset says which, and grey input means --grayscale.
    int C, H, W;
    cnn_net_input_shape(net, &C, &H, &W);
    const char *ds = cnn_meta_get(&m, "dataset"), *grey = cnn_meta_get(&m, "grayscale");
    if (!o->set_dataset) {
        if (!ds)
            die(EXIT_USAGE, "%s: the checkpoint does not name its data set (written by the library, not by "
                "trainer train): give --dataset NAME", o->checkpoint);
        o->dataset = canonical_dataset(ds);
    }
    int dc, dh, dw;
    dataset_shape(o->dataset, 0, &dc, &dh, &dw);
    o->grayscale = grey ? !strcmp(grey, "1") : C == 1 && dc == 3;
    o->image_h = H, o->image_w = W;  // image folders are read at the model's size
    CnnDataset train = {0}, val = {0}, test = {0};
    load_data(o, &train, &val, &test);
    if (test.c != C || test.h != H || test.w != W || test.classes != cnn_net_num_classes(net))
        die(EXIT_USAGE, "%s: the model takes %dx%dx%d images and %d classes; %s has %dx%dx%d and %d", o->checkpoint, C, H,
            W, cnn_net_num_classes(net), o->dataset, test.c, test.h, test.w, test.classes);
    const int K = test.classes;
    int64_t *cm = calloc((size_t)K * K, sizeof *cm);
    double loss, t0 = now();
    check(cnn_evaluate(net, &test, mean, stdv, &loss, cm));
    const double secs = now() - t0;
    CnnMetrics met;
    cnn_metrics_compute(cm, K, &met);
    if (o->json) {
        cJSON *r = cJSON_CreateObject(), *names = cJSON_AddArrayToObject(r, "classes");
        cJSON *conf = cJSON_AddArrayToObject(r, "confusion");  // rows: true class, columns: predicted
        cJSON_AddStringToObject(r, "checkpoint", o->checkpoint);
        cJSON_AddStringToObject(r, "dataset", o->dataset);
        cJSON_AddNumberToObject(r, "images", (double)test.n);
        cJSON_AddNumberToObject(r, "loss", loss);
        cJSON_AddNumberToObject(r, "accuracy", met.accuracy);
        cJSON_AddNumberToObject(r, "macro_precision", met.macro_precision);
        cJSON_AddNumberToObject(r, "macro_recall", met.macro_recall);
        cJSON_AddNumberToObject(r, "macro_f1", met.macro_f1);
        for (int a = 0; a < K; a++) {
            cJSON_AddItemToArray(names, cJSON_CreateString(test.class_names ? test.class_names[a] : "?"));
            cJSON *row = cJSON_CreateArray();
            for (int b = 0; b < K; b++) cJSON_AddItemToArray(row, cJSON_CreateNumber((double)cm[(size_t)a * K + b]));
            cJSON_AddItemToArray(conf, row);
        }
        print_json(r);
    } else {
        printf("eval: %s on %s test (%zu images): loss %.4f accuracy %.2f%%  macro P %.4f R %.4f F1 %.4f  (%.0f img/s)\n",
               o->checkpoint, o->dataset, test.n, loss, 100 * met.accuracy, met.macro_precision, met.macro_recall,
               met.macro_f1, test.n / secs);
        print_class_table(&met, cm, K, test.class_names);
    }
    free(cm);
    cnn_net_free(net);
    cnn_meta_free(&m);
    cnn_dataset_free(&train);
    cnn_dataset_free(&val);
    cnn_dataset_free(&test);
    return 0;
}

static int cmd_predict(Options *o) {
    if (!o->nimages) die(EXIT_USAGE, "predict needs at least one IMAGE (see trainer predict --help)");
    setup_compute(o);
    CnnMeta m = {0};
    float mean[3], stdv[3];
    CnnNet *net = open_checkpoint(o->checkpoint, 1, &m, mean, stdv);
    int C, H, W;
    cnn_net_input_shape(net, &C, &H, &W);
    const int K = cnn_net_num_classes(net);
    char *names_copy = NULL;
    char **names = split_names(cnn_meta_get(&m, "class_names") ? cnn_meta_get(&m, "class_names") : "", K, &names_copy);
    uint8_t *pix = malloc((size_t)C * H * W);
    float *x = cnn_alloc_floats((size_t)C * H * W);
    int failures = 0;
    cJSON *all = o->json ? cJSON_CreateArray() : NULL;  // --json: one array, printed at the end
    for (int i = 0; i < o->nimages; i++) {
        if (cnn_image_load(o->images[i], C, H, W, pix) != CNN_OK) {
            failures++;
            if (all) {
                cJSON *r = cJSON_CreateObject();
                cJSON_AddStringToObject(r, "image", o->images[i]);
                cJSON_AddStringToObject(r, "error", cnn_last_error());
                cJSON_AddItemToArray(all, r);
            }
            continue;
        }
        if (o->invert)
            for (int p = 0; p < C * H * W; p++) pix[p] = (uint8_t)(255 - pix[p]);
        cnn_image_to_float(pix, C, H, W, mean, stdv, 0, 0, 0, x);
        const float *z = cnn_net_forward(net, x, 1, 0);
        double zmax = z[0], sum = 0;
        for (int k = 1; k < K; k++) zmax = fmax(zmax, z[k]);
        for (int k = 0; k < K; k++) sum += exp(z[k] - zmax);
        int order[256];
        for (int k = 0; k < K; k++) order[k] = k;
        for (int a = 0; a < K; a++)  // selection sort by score: K is small
            for (int b = a + 1; b < K; b++)
                if (z[order[b]] > z[order[a]]) { int t = order[a]; order[a] = order[b]; order[b] = t; }
        if (all) {
            cJSON *r = cJSON_CreateObject(), *top = cJSON_AddArrayToObject(r, "top");
            cJSON_AddStringToObject(r, "image", o->images[i]);
            for (int k = 0; k < o->top && k < K; k++) {
                cJSON *t = cJSON_CreateObject();
                cJSON_AddStringToObject(t, "class", names[order[k]]);
                cJSON_AddNumberToObject(t, "index", order[k]);
                cJSON_AddNumberToObject(t, "probability", exp(z[order[k]] - zmax) / sum);
                cJSON_AddItemToArray(top, t);
            }
            cJSON_AddItemToArray(all, r);
            continue;
        }
        printf("%s:", o->images[i]);
        for (int k = 0; k < o->top && k < K; k++)
            printf("%s %s (%.1f%%)", k ? "," : "", names[order[k]], 100.0 * exp(z[order[k]] - zmax) / sum);
        printf("\n");
    }
    if (all) print_json(all);
    free(pix);
    cnn_free(x);
    free(names);
    free(names_copy);
    cnn_net_free(net);
    cnn_meta_free(&m);
    return failures ? EXIT_RUNTIME : 0;
}

static int cmd_summary(Options *o) {
    int C, H, W, classes = dataset_classes(o->dataset);
    dataset_shape(o->dataset, o->grayscale, &C, &H, &W);
    if (is_image_set(o->dataset)) {  // its shape and classes are its images'
        CnnDataset train = {0}, val = {0}, test = {0};
        load_data(o, &train, &val, &test);
        C = train.c, H = train.h, W = train.w, classes = train.classes;
        cnn_dataset_free(&train);
        cnn_dataset_free(&val);
        cnn_dataset_free(&test);
    }
    CnnNet *net = build_model(o, classes, C, H, W);
    printf("model %s on %s (%dx%dx%d, %d classes):\n", o->model, o->dataset, C, H, W, classes);
    print_summary(net);
    cnn_net_free(net);
    return 0;
}

int main(int argc, char **argv) {
    // Line by line even into a pipe or file: progress and errors (stderr)
    // then appear in the order they happened.
    setvbuf(stdout, NULL, _IOLBF, 0);
    cnn_threads_limit_spin(argv);
    Options o;
    parse_args(argc, argv, &o);
    int rc;
    if (!strcmp(o.command, "eval")) rc = cmd_eval(&o);
    else if (!strcmp(o.command, "predict")) rc = cmd_predict(&o);
    else if (!strcmp(o.command, "summary")) rc = cmd_summary(&o);
    else rc = cmd_train(&o);
    free(o.images);
    return rc;
}
