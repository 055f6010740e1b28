// trainer: data sets, the model and the compute setup.
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

void load_data(const Options *o, CnnDataset *train, CnnDataset *val, CnnDataset *test) {
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

int is_builtin(const char *model) {
    char buf[CNN_DESC_MAX];
    return cnn_builtin_model(model, 10, buf, sizeof buf) == CNN_OK;
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
