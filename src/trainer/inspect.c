// trainer eval, predict and summary.
#include "trainer.h"

// ---------------------------------------------------------------- eval / predict
// Prints a JSON value on one line of stdout (--json) and frees it.
static void print_json(cJSON *v) {
    char *text = cJSON_PrintUnformatted(v);
    if (!text) die(EXIT_RUNTIME, "out of memory for the JSON output");
    printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(v);
}

// Builds the checkpoint's network (batch B) and loads its weights; o_precision
// is --precision (-1 if not given).
static CnnNet *open_checkpoint(const char *path, int B, int o_precision, CnnMeta *m, float *mean, float *stdv) {
    if (!path) die(EXIT_USAGE, "--checkpoint FILE is required");
    check(cnn_checkpoint_read_meta(path, m));
    int C, H, W;
    if (sscanf(need(m, path, "input_shape"), "%d,%d,%d", &C, &H, &W) != 3 || C < 1 || C > 3)
        die(EXIT_RUNTIME, "%s: bad input_shape metadata", path);
    CnnNet *net;
    check(cnn_net_create(&net, need(m, path, "model"), C, H, W, B, 1));
    // A run with --ema is evaluated and used with the weights' moving average.
    const double ema = cnn_meta_get(m, "ema") ? meta_double(m, path, "ema", 0, 0.99999) : 0.0;
    check(cnn_net_set_ema(net, (float)ema));
    check(cnn_checkpoint_load(path, net, NULL, NULL));
    cnn_net_swap_ema(net);
    // Evaluated in the precision it trained in, unless --precision says otherwise.
    check(cnn_net_set_precision(net, o_precision >= 0 ? (CnnPrecision)o_precision : checkpoint_precision(m, path)));
    for (int c = 0; c < 3; c++) { mean[c] = 0; stdv[c] = 1; }
    // Checkpoints written by the library alone (cnn_checkpoint_save without
    // the trainer's metadata) were trained on pixels/255, the batcher's default.
    const char *normalize = cnn_meta_get(m, "normalize");
    if (normalize && !strcmp(normalize, "1") &&
        (!split_floats(need(m, path, "normalize_mean"), mean, C) || !split_floats(need(m, path, "normalize_std"), stdv, C)))
        die(EXIT_RUNTIME, "%s: bad normalize_mean/normalize_std metadata", path);
    return net;
}

int cmd_eval(Options *o) {
    setup_compute(o);
    CnnMeta m = {0};
    float mean[3], stdv[3];
    CnnNet *net = open_checkpoint(o->checkpoint, o->batch, o->set_precision ? (int)o->precision : -1, &m, mean, stdv);
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
    data_dir_from_checkpoint(o, &m);
    // --limit-test takes the run's images of an image folder (its seed) unless --seed says otherwise.
    if (!o->set_seed && cnn_meta_get(&m, "seed")) o->seed = (uint64_t)meta_int(&m, o->checkpoint, "seed", 0, 0x7fffffffffffffffLL);
    int dc, dh, dw;
    dataset_shape(o->dataset, 0, &dc, &dh, &dw);
    o->grayscale = grey ? !strcmp(grey, "1") : C == 1 && dc == 3;
    o->image_h = H, o->image_w = W;  // image folders are read at the model's size
    CnnDataset train = {0}, val = {0}, test = {0};
    load_data(o, &train, &val, &test);
    char shown_buf[PATH_MAX + 16];
    const char *shown = dataset_shown(o->dataset, shown_buf, sizeof shown_buf);
    if (test.c != C || test.h != H || test.w != W || test.classes != cnn_net_num_classes(net))
        die(EXIT_USAGE, "%s: the model takes %dx%dx%d images and %d classes; %s has %dx%dx%d and %d", o->checkpoint, C, H,
            W, cnn_net_num_classes(net), shown, test.c, test.h, test.w, test.classes);
    const int K = test.classes;
    int64_t *cm = calloc((size_t)K * K, sizeof *cm);
    double loss, t0 = now();
    check(cnn_evaluate_tta(net, &test, mean, stdv, o->tta, &loss, cm));
    const double secs = now() - t0;
    CnnMetrics met;
    cnn_metrics_compute(cm, K, &met);
    if (o->json) {
        cJSON *r = cJSON_CreateObject(), *names = cJSON_AddArrayToObject(r, "classes");
        cJSON *conf = cJSON_AddArrayToObject(r, "confusion");  // rows: true class, columns: predicted
        cJSON_AddStringToObject(r, "checkpoint", o->checkpoint);
        cJSON_AddStringToObject(r, "dataset", shown);
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
               o->checkpoint, shown, test.n, loss, 100 * met.accuracy, met.macro_precision, met.macro_recall,
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

int cmd_predict(Options *o) {
    if (!o->nimages) die(EXIT_USAGE, "predict needs at least one IMAGE (see trainer predict --help)");
    setup_compute(o);
    CnnMeta m = {0};
    float mean[3], stdv[3];
    CnnNet *net = open_checkpoint(o->checkpoint, 1, o->set_precision ? (int)o->precision : -1, &m, mean, stdv);
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

int cmd_summary(Options *o) {
    check_model_text(o->model);
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

