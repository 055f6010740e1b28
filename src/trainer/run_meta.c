// trainer: checkpoint metadata, the run's settings in it, and saving a run.
#define _XOPEN_SOURCE 700  // realpath
#include "trainer.h"

// ---------------------------------------------------------------- checkpoint metadata
static void join_floats(const float *v, int n, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n && len < size; i++) len += (size_t)snprintf(buf + len, size - len, "%s%.9g", i ? "," : "", v[i]);
}

int split_floats(const char *s, float *v, int n) {
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

const char *need(const CnnMeta *m, const char *path, const char *key) {
    const char *v = cnn_meta_get(m, key);
    if (!v) die(EXIT_RUNTIME, "%s: checkpoint metadata lacks '%s' (not written by trainer?)", path, key);
    return v;
}

// A whole number from checkpoint metadata, within [lo, hi], or exit 1 naming the key.
long long meta_int(const CnnMeta *m, const char *path, const char *key, long long lo, long long hi) {
    const char *v = need(m, path, key);
    long long i;
    double x;
    if (!parse_number(v, 1, (double)lo, (double)hi, &i, &x) || i < lo || i > hi)
        die(EXIT_RUNTIME, "%s: checkpoint metadata '%s' is '%s', not a whole number in %lld..%lld", path, key, v, lo, hi);
    return i;
}

double meta_double(const CnnMeta *m, const char *path, const char *key, double lo, double hi) {
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

void class_names_meta(const CnnDataset *d, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; k < d->classes && len < size; k++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", k ? "\n" : "", d->class_names ? d->class_names[k] : "?");
}

// Splits "a\nb\nc" into K names (pointers into a copy the caller frees); a
// class the text does not name (a checkpoint written by the library alone
// names none) is called by its index, as the data sets' default names are.
char **split_names(const char *s, int K, char **copy) {
    enum { DIGITS = 12 };
    const size_t n = strlen(s);
    *copy = malloc(n + 1 + (size_t)K * DIGITS);
    char **names = calloc((size_t)K, sizeof *names);
    if (!*copy || !names) die(EXIT_RUNTIME, "out of memory for %d class names", K);
    memcpy(*copy, s, n + 1);
    char *p = n ? *copy : NULL, *spare = *copy + n + 1;
    for (int k = 0; k < K; k++) {
        if (!p) {
            snprintf(spare, DIGITS, "%d", k);
            names[k] = spare;
            spare += DIGITS;
            continue;
        }
        names[k] = p;
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        p = nl ? nl + 1 : NULL;
    }
    return names;
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
    {"hflip", KEY_INT, 0, 2, offsetof(Options, hflip), 0},
    {"base_lr", KEY_FLOAT, 0, 10, offsetof(Options, lr), 0},
    {"warmup", KEY_LONG, 0, 100000000, offsetof(Options, warmup), 0},
    {"step_epochs", KEY_INT, 1, 100000, offsetof(Options, step_epochs), 0},
    {"gamma", KEY_FLOAT, 0, 1, offsetof(Options, gamma), 0},
    {"early_stop", KEY_INT, 0, 100000, offsetof(Options, early_stop), 1},
    {"image_height", KEY_INT, 0, 4096, offsetof(Options, image_h), 1},
    {"image_width", KEY_INT, 0, 4096, offsetof(Options, image_w), 1},
    {"label_smoothing", KEY_FLOAT, 0, 0.99, offsetof(Options, label_smoothing), 1},
    {"tta", KEY_INT, 0, 2, offsetof(Options, tta), 1},
    {"ema", KEY_FLOAT, 0, 0.99999, offsetof(Options, ema), 1},
    {"reflect_pad", KEY_INT, 0, 1, offsetof(Options, reflect_pad), 1},
    {"lookahead", KEY_INT, 0, 1000000, offsetof(Options, lookahead), 1},
    {"lr_start", KEY_FLOAT, 0, 1, offsetof(Options, lr_start), 1},
    {"lr_end", KEY_FLOAT, 0, 1, offsetof(Options, lr_end), 1},
    {"whiten_bias_epochs", KEY_INT, 0, 100000, offsetof(Options, whiten_bias_epochs), 1},
    {"drop_last", KEY_INT, 0, 1, offsetof(Options, drop_last), 1},
};
#define N_RUN_KEYS (sizeof RUN_KEYS / sizeof RUN_KEYS[0])

// Row k of RUN_KEYS as text, as checkpoints and logs keep it.
static void run_key_text(size_t k, const Options *o, char *buf, size_t n) {
    const void *f = (const char *)o + RUN_KEYS[k].offset;
    switch (RUN_KEYS[k].type) {
    case KEY_INT: snprintf(buf, n, "%d", *(const int *)f); break;
    case KEY_LONG: snprintf(buf, n, "%ld", *(const long *)f); break;
    case KEY_SIZE: snprintf(buf, n, "%zu", *(const size_t *)f); break;
    case KEY_U64: snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)f); break;
    case KEY_FLOAT: shortest_float(*(const float *)f, buf, n); break;
    }
}

static void run_keys_save(const Options *o, CnnMeta *m) {
    for (size_t k = 0; k < N_RUN_KEYS; k++) {
        char v[32];
        run_key_text(k, o, v, sizeof v);
        cnn_meta_set(m, RUN_KEYS[k].key, "%s", v);
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
void settings_from_checkpoint(Options *o, const CnnMeta *m, const char *path) {
    const char *ds = need(m, path, "dataset");
    char given[PATH_MAX + 16], kept[PATH_MAX + 16];  // image sets by their absolute paths
    if (o->set_dataset && strcmp(absolute_dataset(ds, kept, sizeof kept), absolute_dataset(o->dataset, given, sizeof given)))
        die(EXIT_USAGE, "--resume %s: the checkpoint trained on %s, not %s", path, ds, o->dataset);
    if (!o->set_dataset) o->dataset = canonical_dataset(ds);
    data_dir_from_checkpoint(o, m);
    o->model = need(m, path, "model");
    run_keys_load(o, m, path);
    if (cnn_schedule_parse(need(m, path, "schedule"), &o->schedule)) exit(EXIT_RUNTIME);
    o->precision = checkpoint_precision(m, path);
    const char *best = cnn_meta_get(m, "save_best");  // absent in older checkpoints
    o->save_best = best && *best ? best : NULL;
    // The log and the test subset go on as before unless given again.
    const char *log = cnn_meta_get(m, "log");
    if (!o->log_path && log && *log) o->log_path = log;
    if (!o->set_limit_test && cnn_meta_get(m, "limit_test"))
        o->limit_test = (size_t)meta_int(m, path, "limit_test", 0, 1LL << 40);
}

// The folder of the built-in data sets, as the run that wrote a checkpoint
// had it, unless --data-dir is given or the folder is gone (then the default).
void data_dir_from_checkpoint(Options *o, const CnnMeta *m) {
    const char *dir = cnn_meta_get(m, "data_dir");  // absent in older checkpoints
    struct stat sb;
    if (!o->set_data_dir && dir && *dir && !stat(dir, &sb) && S_ISDIR(sb.st_mode)) o->data_dir = dir;
}

// The precision a checkpoint's run trained in (fp32 where it says none).
CnnPrecision checkpoint_precision(const CnnMeta *m, const char *path) {
    const char *p = cnn_meta_get(m, "precision");
    CnnPrecision v = CNN_PRECISION_FP32;
    if (p && cnn_precision_parse(p, &v)) die(EXIT_RUNTIME, "%s: bad precision metadata '%s'", path, p);
    return v;
}

// Everything that defines the run, as "key=value; ..." for its log: the
// data, the model, the optimiser, every row of RUN_KEYS, the threads and
// kernels (results depend on the kernels, never on the threads), and the
// checkpoint a resumed run came from.
void run_settings_text(const Options *o, const CnnOptimizer *opt, int threads, char *buf, size_t n) {
    char wd[32], mom[32];
    size_t len = (size_t)snprintf(buf, n, "cnnc=%s; dataset=%s; model=%s; init=%s; optimizer=%s; "
                                  "weight_decay=%s; decay_skip_bn_bias=%d; momentum=%s; nesterov=%d; schedule=%s",
                                  CNNC_VERSION, o->dataset, o->model, cnn_init_name(o->init), cnn_opt_name(opt->kind),
                                  shortest_float(opt->weight_decay, wd, sizeof wd), opt->decay_skip_bn_bias,
                                  shortest_float(opt->momentum, mom, sizeof mom), opt->nesterov,
                                  cnn_schedule_name(o->schedule));
    for (size_t k = 0; k < N_RUN_KEYS && len < n; k++) {
        char v[32];
        run_key_text(k, o, v, sizeof v);
        len += (size_t)snprintf(buf + len, n - len, "; %s=%s", RUN_KEYS[k].key, v);
    }
    if (len < n)
        len += (size_t)snprintf(buf + len, n - len, "; limit_test=%zu; threads=%d; kernels=%s; conv=%s; precision=%s",
                                o->limit_test, threads, cnn_kernels_name(), cnn_conv_name(),
                                cnn_precision_name(o->precision));
    if (o->resume && len < n) snprintf(buf + len, n - len, "; resumed_from=%s", o->resume);
}

void save_run(const Options *o, const char *path, CnnNet *net, const CnnOptimizer *opt, const float *mean,
                     const float *stdv, int C, const char *names, int epoch, long batch_in_epoch,
                     const EpochTally *tally, const RunBest *best) {
    CnnMeta m = {0};
    char mean_s[96], std_s[96];
    join_floats(mean, C, mean_s, sizeof mean_s);
    join_floats(stdv, C, std_s, sizeof std_s);
    // Absolute paths: eval and --resume find the data from any folder.
    char ds[PATH_MAX + 16], dir[PATH_MAX];
    cnn_meta_set(&m, "dataset", "%s", absolute_dataset(o->dataset, ds, sizeof ds));
    cnn_meta_set(&m, "data_dir", "%s", realpath(o->data_dir, dir) ? dir : o->data_dir);
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
    cnn_meta_set(&m, "precision", "%s", cnn_precision_name(o->precision));
    run_keys_save(o, &m);
    CnnStatus st = cnn_checkpoint_save(path, net, opt, &m);
    cnn_meta_free(&m);
    if (st) exit(EXIT_RUNTIME);
}
