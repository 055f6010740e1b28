// trainer train: a run in stages.
#include <ctype.h>

#include "trainer.h"

// The data set's part of a default checkpoint name, one file name in the
// current folder: "folder:data/shapes/" -> "folder-shapes", other
// characters than letters, digits, '.', '-' and '_' as '_'.
static void dataset_tag(const char *dataset, char *out, size_t n) {
    const char *colon = strchr(dataset, ':');
    size_t len = 0, k = colon ? (size_t)(colon - dataset) : strlen(dataset);
    const char *path = colon ? colon + 1 : "";
    size_t plen = strlen(path);
    while (plen > 1 && path[plen - 1] == '/') plen--;  // "shapes/" names shapes
    size_t start = plen;
    while (start > 0 && path[start - 1] != '/') start--;
    char joined[256];
    snprintf(joined, sizeof joined, "%.*s%s%.*s", (int)k, dataset, colon ? "-" : "", (int)(plen - start), path + start);
    for (const char *c = joined; *c && len + 1 < n; c++)
        out[len++] = isalnum((unsigned char)*c) || *c == '.' || *c == '-' || *c == '_' ? *c : '_';
    out[len] = 0;
}

// ---------------------------------------------------------------- train, in stages
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
    char settings[4200];  // the run's settings as one CSV field, for its log
    double xseconds, xbytes;  // exchange totals at the last epoch's end (data parallelism)
} Run;

// 1 if paths a and b name the same file.
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return a && b && !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// A new run writes no checkpoint over an existing file unasked: only over
// the one it resumes or starts from, or with --overwrite.
static void keep_existing(const char *flag, const char *path, int is_default, const Options *o) {
    struct stat sb;
    if (rank_id() != 0 || o->overwrite || stat(path, &sb)) return;  // only rank 0 writes
    if (same_file(path, o->resume) || same_file(path, o->init_from)) return;
    const int ckpt = !strcmp(flag, "--checkpoint");
    die(EXIT_USAGE, "%s %s%s: the file exists; %s%s%sreplace it with --overwrite, or give another %s", flag, path,
        is_default ? " (the default)" : "", ckpt ? "continue its run with --resume " : "", ckpt ? path : "",
        ckpt ? ", " : "", flag);
}

// Settings, output paths and the checkpoints to read, before any work: a
// mistake here costs no data loading and no training.
static void run_prepare(Run *r) {
    Options *o = r->o;
    if (o->resume && o->run_flag)
        die(EXIT_USAGE, "--resume %s: %s cannot change a resumed run, whose settings come from the checkpoint "
            "(with --resume give only --epochs, --checkpoint, --log, --limit-test, --data-dir, --threads, --kernels, --conv "
            "or --overwrite)",
            o->resume, o->run_flag);
    if (o->resume) {
        check(cnn_checkpoint_read_meta(o->resume, &r->resume_meta));
        settings_from_checkpoint(o, &r->resume_meta, o->resume);
        if (!o->checkpoint) o->checkpoint = o->resume;
    }
    new_run_id(o->run_id, sizeof o->run_id);
    if (o->set_model) check_model_text(o->model);
    // Each custom model gets its own default file: one run must not
    // overwrite another's.
    if (!o->checkpoint) {
        char tag[128];
        dataset_tag(o->dataset, tag, sizeof tag);
        if (is_builtin(o->model))
            snprintf(r->default_ckpt, sizeof r->default_ckpt, "cnnc-%s-%s.safetensors", tag, o->model);
        else
            snprintf(r->default_ckpt, sizeof r->default_ckpt, "cnnc-%s-custom-%08x.safetensors", tag,
                     (unsigned)fnv1a(o->model));
        o->checkpoint = r->default_ckpt;
    }
    if ((o->save_best || o->early_stop) && !o->val_split)
        die(EXIT_USAGE, "%s needs --val-split N: choosing epochs by test accuracy would tune on the test set",
            o->save_best ? "--save-best" : "--early-stop");
    if (o->save_best && !strcmp(o->save_best, o->checkpoint))
        die(EXIT_USAGE, "--save-best %s: give another file than --checkpoint (which holds the last epoch)", o->save_best);
    check_output_path("--checkpoint", o->checkpoint);
    keep_existing("--checkpoint", o->checkpoint, o->checkpoint == r->default_ckpt, o);
    if (o->log_path) {
        check_output_path("--log", o->log_path);
        check_log_columns("--log", o->log_path, EPOCH_LOG_HEADER);
    }
    if (o->log_every) {
        if (!o->log_path) die(EXIT_USAGE, "--log-every N needs --log FILE.csv (its steps go to FILE.steps.csv)");
        const size_t n = strlen(o->log_path);
        const int csv = n >= 4 && !strcmp(o->log_path + n - 4, ".csv");
        snprintf(o->step_log, sizeof o->step_log, "%.*s.steps.csv", (int)(csv ? n - 4 : n), o->log_path);
        check_output_path("--log-every", o->step_log);
        check_log_columns("--log-every", o->step_log, STEP_LOG_HEADER);
    }
    if (o->save_best) check_output_path("--save-best", o->save_best);
    if (o->save_best && !o->resume) keep_existing("--save-best", o->save_best, 0, o);  // a resumed run's own
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
    char info[512], kinfo[1024];
    cnn_threads_describe(info, sizeof info);
    cnn_kernels_describe(kinfo, sizeof kinfo);
    printf("cnnc %s trainer: %s\n", CNNC_VERSION, info);
    printf("cnnc %s trainer: %s\n", CNNC_VERSION, kinfo);

    load_data(o, &r->train, &r->val, &r->test);
    r->eval_set = r->val.n ? &r->val : &r->test;
    r->eval_name = r->val.n ? "val" : "test";

    o->image_h = r->train.h, o->image_w = r->train.w;  // kept in the checkpoint for --resume
    r->net = build_model(o, r->train.classes, r->train.c, r->train.h, r->train.w);
    if (rank_count() > 1) {
        if (o->batch < rank_count())
            die(EXIT_USAGE, "--batch %d is smaller than the %d ranks: every rank needs a part of each batch "
                "(--batch is the whole batch, split across the ranks)", o->batch, rank_count());
        check(cnn_net_set_collective(r->net, ranks_collective()));
        printf("data-parallel: %d ranks x %d thread%s, each computing its part of every batch of %d\n",
               rank_count(), r->threads, plural(r->threads), o->batch);
    }
    check(cnn_net_set_label_smoothing(r->net, o->label_smoothing));
    check(cnn_net_set_precision(r->net, o->precision));
    char pinfo[256];
    cnn_precision_describe(o->precision, pinfo, sizeof pinfo);
    printf("cnnc %s trainer: %s\n", CNNC_VERSION, pinfo);
    if (o->init != CNN_INIT_PYTORCH) cnn_net_init_weights_as(r->net, o->seed, o->init);
    if (o->init_from) {
        const CnnStatus st = cnn_checkpoint_load(o->init_from, r->net, NULL, NULL);
        if (st == CNN_ESHAPE) die(EXIT_USAGE, "--init-from %s: its weights do not fit the model", o->init_from);
        check(st);
        const char *e = cnn_meta_get(&r->init_meta, "epoch");
        printf("init: weights from %s%s%s; optimiser and schedule start anew\n", o->init_from,
               e ? " after epoch " : "", e ? e : "");
    }
    check(cnn_net_set_ema(r->net, o->ema));  // from these weights; a resumed run loads its own
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

// A new run's init=whiten layers, from the first 5000 training images as
// the net sees them (standardised, not augmented), as airbench94 does.
static void run_whiten(Run *r) {
    const int layers = cnn_net_whitening_layers(r->net);
    if (!layers || r->o->resume || r->o->init_from) return;
    const int n = r->train.n < 5000 ? (int)r->train.n : 5000;
    CnnBatcher it;
    const CnnBatcherConfig cfg = {.batch = n, .mean = r->mean, .std = r->stdv};
    check(cnn_batcher_init(&it, &r->train, &cfg));
    float *x = cnn_alloc_floats((size_t)n * cnn_dataset_image_size(&r->train));
    if (!x) die(EXIT_RUNTIME, "out of memory for %d images to whiten with", n);
    cnn_batcher_next(&it, x, NULL);
    const double t0 = now();
    check(cnn_net_init_whitening(r->net, x, n));
    printf("whiten: %d layer%s from the patches of %d training images (%.1f s)\n", layers, plural(layers), n,
           now() - t0);
    cnn_free(x);
    cnn_batcher_free(&it);
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
    if (o->augment) bcfg.aug = (CnnAugment){.crop_pad = o->crop_pad, .hflip = o->hflip, .reflect = o->reflect_pad};
    bcfg.drop_last = o->drop_last;
    check(cnn_batcher_init(&r->it, &r->train, &bcfg));
    run_whiten(r);
    check(cnn_net_set_lookahead(r->net, o->lookahead > 0));  // from these weights; a resumed run loads its own
    r->steps_per_epoch = (long)cnn_batcher_num_batches(&r->it);
    if (r->steps_per_epoch == 0)
        die(EXIT_USAGE, "--drop-last: the %zu training images make no whole batch of %d", r->train.n, o->batch);
    if (o->whiten_bias_epochs && !cnn_net_whitening_layers(r->net))
        die(EXIT_USAGE, "--whiten-bias-epochs: the model has no whitening layer (conv(...,init=whiten))");

    cnn_opt_defaults(&r->opt, o->opt_kind);
    if (o->lr >= 0) r->opt.lr = o->lr;
    if (o->momentum >= 0) r->opt.momentum = o->momentum;
    if (o->weight_decay >= 0) r->opt.weight_decay = o->weight_decay;
    r->opt.nesterov = o->nesterov;
    r->opt.decay_skip_bn_bias = o->no_decay_bn_bias;
    if (o->step_epochs <= 0) o->step_epochs = (o->epochs + 2) / 3;
    o->lr = r->opt.lr;  // the effective base rate and step length, as the checkpoint keeps them
    r->sched = (CnnSchedule){.kind = o->schedule, .lr = o->lr, .epochs = o->epochs, .warmup = o->warmup,
                             .step_epochs = o->step_epochs, .gamma = o->gamma, .start_frac = o->lr_start,
                             .end_frac = o->lr_end};
    if (o->resume) run_restore(r);
    printf("train: %d epoch%s of %ld step%s, batch %d, %s lr %g (%s%s), %d thread%s, seed %llu%s%s\n", o->epochs,
           plural(o->epochs), r->steps_per_epoch, plural(r->steps_per_epoch), o->batch, cnn_opt_name(r->opt.kind),
           r->sched.lr, cnn_schedule_name(r->sched.kind), r->sched.warmup ? ", warm-up" : "", r->threads,
           plural(r->threads), (unsigned long long)o->seed, o->augment ? ", augmented" : "",
           o->normalize ? ", standardised" : "");
    printf("checkpoint: %s (after every epoch)\n", o->checkpoint);
    if (o->log_path) {
        char text[4096];
        run_settings_text(o, &r->opt, r->threads, text, sizeof text);
        csv_field(text, r->settings, sizeof r->settings);
        printf("log: %s%s%s, run %s\n", o->log_path, o->log_every ? " and " : "", o->log_every ? o->step_log : "",
               o->run_id);
    }
    fflush(stdout);

    class_names_meta(&r->train, r->names, sizeof r->names);
    r->x = cnn_alloc_floats((size_t)o->batch * cnn_dataset_image_size(&r->train));
    r->y = malloc((size_t)o->batch);
    r->cm = calloc((size_t)r->train.classes * r->train.classes, sizeof *r->cm);
    if (!r->x || !r->y || !r->cm) die(EXIT_RUNTIME, "out of memory for one batch of %d images", o->batch);
    // mpirun gives each rank a terminal even when its own output goes to a
    // file, so under a launcher the live line is left out.
    r->tty = isatty(STDOUT_FILENO) && rank_count() == 1;
    const char *fault = getenv("CNNC_FAULT_NAN_AT_STEP");
    r->fault_step = fault ? strtol(fault, NULL, 10) : -1;
    if (o->resume && !strcmp(o->resume, o->checkpoint))
        snprintf(r->kept, sizeof r->kept, "%s keeps the last good state (the resumed one)", o->checkpoint);
    else
        snprintf(r->kept, sizeof r->kept, "no checkpoint was written (it diverged before the first epoch ended)");
}

// Loss and confusion matrix of a data set, with the weights' moving average
// where the run keeps one, and flip test-time augmentation with --tta.
// Ranks evaluate a share each; counts add exactly, losses in rank order.
static void evaluate(Run *r, const CnnDataset *d, double *loss) {
    const int N = rank_count(), K = d->classes;
    CnnDataset part = *d;
    const size_t a = d->n * (size_t)rank_id() / N, b = d->n * (size_t)(rank_id() + 1) / N;
    part.images += a * cnn_dataset_image_size(d);
    part.labels += a;
    part.n = b - a;
    CnnStatus st = CNN_OK;
    *loss = 0.0;
    memset(r->cm, 0, sizeof(int64_t) * K * K);
    if (part.n) {
        cnn_net_swap_ema(r->net);
        st = cnn_evaluate_tta(r->net, &part, r->mean, r->stdv, r->o->tta, loss, r->cm);
        cnn_net_swap_ema(r->net);
    }
    check(st);
    if (N > 1) {
        *loss = ranks_sum_in_order(*loss * (double)part.n) / (double)d->n;
        ranks_sum_counts(r->cm, K * K);
    }
}

// Rank 0 writes the checkpoints: the others hold the same state.
static void run_save(Run *r, const char *path, int epoch, long batch_in_epoch, const EpochTally *tally) {
    if (rank_id() != 0) return;
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

// --lookahead K: a sync every K steps with airbench94's alpha, 0.95^K
// (done / total)^3, rising from 0 (the slow weights follow the fast ones)
// to 0.95^K at the end; after the last step the weights become the slow ones.
static void lookahead_after(Run *r, long done) {
    const int K = r->o->lookahead;
    if (!K) return;
    const long total = (long)r->o->epochs * r->steps_per_epoch;
    const double f = (double)done / (double)total;
    if (done % K == 0) cnn_net_lookahead_sync(r->net, (float)(pow(0.95, K) * f * f * f));
    if (done == total) cnn_net_lookahead_sync(r->net, 1.0f);
}

// One epoch's steps (from the resumed batch for the first epoch of a
// resumed run); a stop signal saves the position and exits.
static void run_epoch_steps(Run *r, int epoch, EpochRun *e) {
    Options *o = r->o;
    cnn_batcher_epoch(&r->it, (uint64_t)epoch);
    check(cnn_net_freeze_whitening_bias(r->net, o->whiten_bias_epochs > 0 && epoch >= o->whiten_bias_epochs));
    long b = 0;
    if (epoch == r->start_epoch && r->skip_batches) {
        cnn_batcher_skip(&r->it, (size_t)r->skip_batches);
        b = r->skip_batches;
    }
    *e = (EpochRun){.tally = epoch == r->start_epoch ? r->resumed : (EpochTally){0}, .t0 = now(), .lr = r->opt.lr};
    double last_draw = 0.0;
    int n;
    while ((n = cnn_batcher_peek(&r->it)) > 0) {
        // This rank's images of the batch (all of them for one rank).
        int first, count;
        cnn_net_batch_part(r->net, n, &first, &count);
        cnn_batcher_next_part(&r->it, first, count, r->x, r->y);
        const long step = (long)epoch * r->steps_per_epoch + b;
        e->lr = cnn_schedule_lr(&r->sched, step, r->steps_per_epoch);
        int correct;
        const double ts = now();
        float loss = cnn_net_train_step(r->net, &r->opt, r->x, r->y, n, e->lr, &correct);
        lookahead_after(r, step + 1);
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
            snprintf(row, sizeof row, "%ld,%d,%ld,%.6f,%s,%.1f,%s\n", step + 1, epoch + 1, b, (double)loss,
                     shortest_float(e->lr, lr_s, sizeof lr_s), e->t_step > 0 ? e->seen_here / e->t_step : 0.0,
                     o->run_id);
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
        if (rank_count() > 1) stop_signal = ranks_stop_signal(stop_signal);  // every rank stops at this step
        if (stop_signal) {
            if (r->tty) printf("\n");
            fflush(stdout);
            run_save(r, o->checkpoint, epoch, b, &e->tally);
            if (rank_id() == 0)
                fprintf(stderr, "trainer: %s%s at epoch %d, batch %ld; checkpoint written to %s; "
                        "continue with: trainer --resume %s\n", stop_signal == SIGINT ? "interrupted" : "stopped by ",
                        stop_signal == SIGINT ? "" : signal_name(stop_signal), epoch + 1, b, o->checkpoint,
                        o->checkpoint);
            ranks_barrier();  // no rank exits (which ends the job) before rank 0 has saved
            ranks_exit_ok();
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
    evaluate(r, r->eval_set, &eval_loss);
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
    if (rank_count() > 1) {
        double xs, xb;
        cnn_net_exchange_stats(r->net, &xs, &xb);
        const long steps = (e->seen_here + o->batch - 1) / o->batch;
        // Time in exchanges includes waiting for the slowest rank.
        printf("  exchange (rank 0): %.2f s of %.2f s of steps (%.0f%%), %.2f MB sent a step\n", xs - r->xseconds,
               e->t_step, e->t_step > 0 ? 100 * (xs - r->xseconds) / e->t_step : 0.0,
               steps > 0 ? (xb - r->xbytes) / steps / 1e6 : 0.0);
        r->xseconds = xs, r->xbytes = xb;
    }
    fflush(stdout);
    if (o->log_path) {
        char row[5000], lr_s[32];
        snprintf(row, sizeof row, "%d,%s,%.6f,%.6f,%s,%.6f,%.6f,%.6f,%.6f,%.6f,%.3f,%.1f,%s,%s\n", epoch + 1,
                 shortest_float(e->lr, lr_s, sizeof lr_s), train_loss, train_acc, r->eval_name, eval_loss,
                 met->accuracy, met->macro_precision, met->macro_recall, met->macro_f1, epoch_s, img_s, o->run_id,
                 r->settings);
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
            evaluate(r, &r->test, &tl);
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

int cmd_train(Options *o) {
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

