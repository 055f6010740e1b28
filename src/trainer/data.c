// trainer: data sets, the model and the compute setup.
#define _XOPEN_SOURCE 700  // realpath
#include "trainer.h"

// ---------------------------------------------------------------- data and model
int dataset_classes(const char *name) { return !strcmp(name, "cifar100") ? 100 : 10; }

// The built-in data sets' shapes without loading them (image folders are
// loaded: their shape comes from their images).
void dataset_shape(const char *name, int grayscale, int *C, int *H, int *W) {
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

// An image folder or list by its absolute path, as checkpoints keep it so
// that eval and --resume find it from any folder (as given if it does not
// resolve; the built-in sets' names as they are).
const char *absolute_dataset(const char *dataset, char *buf, size_t n) {
    char abs[PATH_MAX];
    if (!is_image_set(dataset) || !realpath(image_root(dataset), abs)) return dataset;
    snprintf(buf, n, "%.*s%s", (int)(image_root(dataset) - dataset), dataset, abs);
    return buf;
}

// A data set as the user reads it: an image folder or list inside the
// current folder by its relative path.
const char *dataset_shown(const char *dataset, char *buf, size_t n) {
    char cwd[PATH_MAX];
    const char *root = is_image_set(dataset) ? image_root(dataset) : NULL;
    if (!root || root[0] != '/' || !getcwd(cwd, sizeof cwd)) return dataset;
    const size_t k = strlen(cwd);
    if (strncmp(root, cwd, k) || root[k] != '/' || !root[k + 1]) return dataset;
    snprintf(buf, n, "%.*s%s", (int)(root - dataset), dataset, root + k + 1);
    return buf;
}

// The fewest and most images a class has in d ("0-0" when empty): a class
// missing from a split shows as a 0.
static void class_range(const CnnDataset *d, int K, char *buf, size_t n) {
    size_t have[256] = {0}, lo = (size_t)-1, hi = 0;
    for (size_t i = 0; i < d->n; i++) have[d->labels[i]]++;
    for (int k = 0; k < K && k < 256; k++) {
        lo = have[k] < lo ? have[k] : lo;
        hi = have[k] > hi ? have[k] : hi;
    }
    snprintf(buf, n, "%zu-%zu", d->n ? lo : 0, hi);
}

void load_data(const Options *o, CnnDataset *train, CnnDataset *val, CnnDataset *test) {
    char dir[1024], shown[1024 + 16];
    dataset_dir(o, dir, sizeof dir);
    CnnDataOptions dopt = {.grayscale = o->grayscale, .limit_train = o->limit_train, .val_split = o->val_split,
                           .height = o->image_h, .width = o->image_w, .strict = o->strict,
                           .limit_test = o->limit_test, .seed = o->seed};
    double t0 = now();
    CnnStatus st = cnn_dataset_load(o->dataset, dir, &dopt, train, val, test);
    const char *name = dataset_shown(o->dataset, shown, sizeof shown);
    if (is_image_set(o->dataset)) {
        check(st);
        snprintf(dir, sizeof dir, "%s", image_root(name));
        if (train->skipped || test->skipped)
            fprintf(stderr, "trainer: %s: skipped %zu unreadable file%s (named above; --strict refuses the load at the first)\n",
                    dir, train->skipped + test->skipped, train->skipped + test->skipped == 1 ? "" : "s");
    } else if (st == CNN_EIO)
        die(EXIT_RUNTIME, "%s is not available in %s; get it with: tools/fetch-data %s --dir %s", o->dataset, dir,
            o->dataset, o->data_dir);
    check(st);
    // With --json, stdout holds the JSON alone.
    FILE *out = o->json ? stderr : stdout;
    fprintf(out, "data: %s from %s: %zu train, %zu %s, %zu test, %dx%dx%d, %d classes (loaded in %.2f s)\n", name, dir,
            train->n, val->n, "validation", test->n, train->c, train->h, train->w, train->classes, now() - t0);
    char tr[48], va[48], te[48];
    class_range(train, train->classes, tr, sizeof tr);
    class_range(val, train->classes, va, sizeof va);
    class_range(test, train->classes, te, sizeof te);
    fprintf(out, "images per class: train %s%s%s, test %s\n", tr, val->n ? ", validation " : "", val->n ? va : "", te);
}

int is_builtin(const char *model) {
    char buf[CNN_DESC_MAX];
    return cnn_builtin_model(model, 10, buf, sizeof buf) == CNN_OK;
}

// --model before any data is loaded: a built-in name, or a layer list that
// reads (its shapes are checked once the images' size is known). A single
// word that is neither is most likely a mistyped model name.
void check_model_text(const char *model) {
    if (is_builtin(model) || cnn_model_check(model) == CNN_OK) return;
    if (strspn(model, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == strlen(model)) {
        char names[256] = "";
        size_t len = 0;
        for (int i = 0; cnn_builtin_model_name(i) && len < sizeof names; i++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "", cnn_builtin_model_name(i));
        die(EXIT_USAGE, "--model %s: not a built-in model (%s); a model description such as "
            "\"conv(32,3) relu maxpool(2) flatten dense(10)\" is also accepted", model, names);
    }
    check_model(CNN_EFORMAT);  // the library named the problem
}

// Threads, OpenBLAS's core and the compute kernels, before any work; a
// --kernels or CNNC_KERNELS that this CPU cannot run is a usage error.
int setup_compute(const Options *o) {
    // Ranks sharing a machine share its cores, unless told otherwise.
    int want = o->threads;
    if (!want && !getenv("OMP_NUM_THREADS") && ranks_local_count() > 1) {
        want = omp_get_num_procs() / ranks_local_count();
        if (want < 1) want = 1;
    }
    const int threads = cnn_threads_init(want);
    if (o->kernels ? cnn_kernels_select(o->kernels) : cnn_kernels_from_env())
        die(EXIT_USAGE, "%s: cannot use kernels '%s'", o->kernels ? "--kernels" : "CNNC_KERNELS",
            o->kernels ? o->kernels : getenv("CNNC_KERNELS"));
    if (o->conv ? cnn_conv_select(o->conv) : cnn_conv_from_env())
        die(EXIT_USAGE, "%s: cannot use the convolution algorithm '%s'", o->conv ? "--conv" : "CNNC_CONV",
            o->conv ? o->conv : getenv("CNNC_CONV"));
    return threads;
}

// The net of --model for `classes` classes of CxHxW images at --batch:
// train and summary accept and refuse exactly the same models.
CnnNet *build_model(const Options *o, int classes, int C, int H, int W) {
    char builtin[CNN_DESC_MAX];
    const char *desc = cnn_builtin_model(o->model, classes, builtin, sizeof builtin) == CNN_OK ? builtin : o->model;
    CnnNet *net;
    check_model(cnn_net_create(&net, desc, C, H, W, o->batch, o->seed));
    if (cnn_net_num_classes(net) != classes)
        die(EXIT_USAGE, "--model: the model ends in %d outputs but %s has %d classes", cnn_net_num_classes(net),
            o->dataset, classes);
    return net;
}
