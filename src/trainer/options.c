// trainer: the help texts and the command line.
#include "trainer.h"

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
    "                        PATH/test/<class>/*.png (PNG, JPEG, BMP, PGM/PPM; one folder per class,\n"
    "                        none empty), or list:PATH, PATH/train.csv and PATH/test.csv of\n"
    "                        path,label lines\n"
    "  --data-dir DIR        folder holding <dataset>/ as tools/fetch-data lays it out (default data)\n"
    "                        (checkpoints keep PATH and DIR as absolute paths, for eval and --resume)\n"
    "  --grayscale           colour images as one channel (mean of R, G, B)\n"
    "  --image-size HxW      image folders: resize every image to HxW (default: the first image's size)\n"
    "  --strict              image folders: stop at the first unreadable file (default: skip and count)\n"
    "  --limit-train N       use only N training images (0: all, the default)\n"
    "  --val-split N         hold out N of those training images and evaluate on them\n"
    "  --limit-test N        evaluate on N test images only (0: all, the default)\n"
    "                        (image folders and lists: random images, every class in proportion,\n"
    "                        drawn from --seed; the other data sets: the first N, the last N\n"
    "                        for --val-split)\n"
    "  --tta                 evaluate each image with its mirror image (mean of the two logits)\n"
    "  --tta-shift           --tta, and the same for the image shifted a pixel up-left and down-right\n"
    "                        (weights 1/2, 1/4, 1/4; airbench94's 6 views)\n"
    "  --ema D               evaluate (and keep in the checkpoint, for eval and predict) an\n"
    "                        exponential moving average of the weights, decay D per step, e.g. 0.999\n"
    "  --no-normalize        feed pixels/255 (default: standardise each channel with the\n"
    "                        training split's mean and std, stored in the checkpoint)\n"
    "  --augment             random crop with zero padding and (CIFAR) horizontal flips\n"
    "  --crop-pad N          padding of the random crop (default 4 for CIFAR, 2 for digits)\n"
    "  --hflip / --no-hflip  horizontal flips with --augment (default: on for CIFAR only)\n"
    "  --hflip-alternate     flip each image every other epoch instead (from a coin per image)\n"
    "  --reflect-pad         pad the random crop by mirroring the image, not with black\n"
    "model and optimiser:\n"
    "  --model M             tfcnn, lenet, vgg8bn, resnet20, airbench94 or a description such as\n"
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
    "  --no-decay-bn-bias    no weight decay on biases and batch norm's scale and shift\n"
    "  --label-smoothing X   the loss's targets (1 - X) one-hot + X / classes (default 0)\n"
    "  --precision P         fp32 or bf16: bf16 is mixed precision as PyTorch's autocast, products\n"
    "                        of bf16 values summed in fp32, the rest fp32 (default fp32)\n"
    "  --schedule S          constant, step, cosine or linear (decay to 0 at the end; with\n"
    "                        --warmup the one-cycle triangle) (default constant)\n"
    "  --warmup N            steps of linear learning-rate warm-up (default 0)\n"
    ;
// (Two strings: ISO C promises string literals of up to 4095 characters.)
static const char *HELP_TRAIN_RUN =
    "  --lr-start F          the warm-up starts at F x --lr (default 0: at lr/N)\n"
    "  --lr-end F            cosine and linear end at F x --lr (default 0)\n"
    "  --lookahead K         Lookahead: every K steps the weights and batch-norm statistics move to\n"
    "                        slow += a (fast - slow) with a = 1 - 0.95^K (step/steps)^3, and restart\n"
    "                        from there; the run ends on the slow weights (airbench94: 5)\n"
    "  --whiten-bias-epochs N  the whitening layers' biases (conv(...,init=whiten)) train for the\n"
    "                        first N epochs, then stay as they are (airbench94: 3; default 0: all)\n"
    "  --drop-last           each epoch leaves out its last partial batch (airbench94 does)\n"
    "  --step-epochs N       step schedule: multiply the rate by --gamma every N epochs (default 1/3 of --epochs)\n"
    "  --gamma X             step schedule factor (default 0.1)\n"
    "run:\n"
    "  --threads N           OpenMP threads (default: OMP_NUM_THREADS, else all cores, shared\n"
    "                        by the ranks of an mpirun job on this machine)\n"
    "  --kernels NAME        compute kernels: auto (default: the best this CPU runs), avx512bf16,\n"
    "                        avx2 or reference (im2col + OpenBLAS); also CNNC_KERNELS=NAME\n"
    "  --conv ALGO           3x3 stride-1 convolutions: auto (default: Winograd F(4x4,3x3) where\n"
    "                        it was measured faster), direct or winograd; also CNNC_CONV=ALGO\n"
    "  --seed S              seeds initialisation, shuffling, augmentation, dropout and the image\n"
    "                        folders' and lists' subsets (default 1)\n"
    "  --checkpoint FILE     written atomically after every epoch and on Ctrl-C\n"
    "                        (default cnnc-<dataset>-<model>.safetensors); a file that exists is\n"
    "                        refused unless it is the --resume or --init-from file, or --overwrite\n"
    "  --overwrite           let a new run replace an existing --checkpoint (and --save-best) file\n"
    "  --resume FILE         continue a run from its checkpoint (settings come from the file;\n"
    "                        --epochs may extend it)\n"
    "  --save-best FILE      also write the epoch with the best validation accuracy to FILE (needs --val-split)\n"
    "  --early-stop N        stop after N epochs without a better validation accuracy (needs --val-split)\n"
    "  --init-from FILE      start from a checkpoint's weights (fine-tuning; its model unless --model is given),\n"
    "                        with a new optimiser and schedule\n"
    "  --log FILE.csv        append one row of metrics per epoch\n"
    "  --log-every N         also a row every N steps (step, loss, lr, img/s) in FILE.steps.csv\n"
    "\n"
    "Results are bit-identical for any --threads with the same --seed, kernels and --conv, and\n"
    "for 1, 2, 4, 8 or 16 ranks of `mpirun -np N --bind-to none trainer ...` (data-parallel:\n"
    "--batch is the whole batch; rank 0 prints and writes; SIGUSR1 to mpirun stops with a checkpoint).\n";

static const char *HELP_EVAL =
    "usage: trainer eval --checkpoint FILE [--dataset NAME] [--data-dir DIR] [--batch N] [--threads N]\n"
    "                    [--kernels NAME] [--conv ALGO] [--precision P] [--limit-test N] [--tta]\n"
    "                    [--tta-shift] [--json] [--seed S]\n"
    "\n"
    "Evaluates a checkpoint on the test split of its data set (or --dataset; the checkpoint keeps\n"
    "its folder as an absolute path, which --data-dir overrides): loss, accuracy, macro precision,\n"
    "recall and F1, a per-class table and the confusion matrix. --json prints them as one JSON\n"
    "object instead (classes, confusion rows by true class). --tta scores each image by the mean\n"
    "of its logits and its mirror image's (horizontal-flip test-time augmentation); --tta-shift\n"
    "adds the same for the image shifted by a pixel up-left and down-right (airbench94's 6 views,\n"
    "weights 1/2, 1/4, 1/4). The model computes in the precision it trained in (fp32 or bf16)\n"
    "unless --precision says otherwise. --limit-test N evaluates N test images: of an image folder\n"
    "or list, random ones with every class in proportion, drawn as the run did (from its --seed,\n"
    "unless --seed is given).\n";

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
int parse_number(const char *s, int whole, double lo, double hi, long long *i, double *d) {
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
int is_image_set(const char *dataset) { return !strncmp(dataset, "folder:", 7) || !strncmp(dataset, "list:", 5); }
const char *image_root(const char *dataset) { return strchr(dataset, ':') + 1; }

const char *canonical_dataset(const char *name) {
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
    "--save-best", "--early-stop", "--init-from", "--label-smoothing", "--no-decay-bn-bias", "--tta",
    "--ema", "--lookahead", "--tta-shift", "--hflip-alternate", "--reflect-pad", "--lr-start", "--lr-end",
    "--whiten-bias-epochs", "--drop-last", "--precision",
};

void parse_args(int argc, char **argv, Options *o) {
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
        if (!strcmp(argv[1], "help")) { fputs(HELP_MAIN, stdout); ranks_exit_ok(); exit(0); }
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
            if (h == HELP_TRAIN) fputs(HELP_TRAIN_RUN, stdout);
            ranks_exit_ok();
            exit(0);
        } else if (SWITCH("--version")) {
            printf("cnnc trainer %s\n", CNNC_VERSION);
            ranks_exit_ok();
            exit(0);
        } else if (VALUE("--dataset")) { o->dataset = canonical_dataset(val); o->set_dataset = 1; }
        else if (VALUE("--data-dir")) { o->data_dir = val; o->set_data_dir = 1; }
        else if (VALUE("--model")) { o->model = val; o->set_model = 1; }
        else if (VALUE("--epochs")) { o->epochs = (int)parse_long(flag, val, 1, 100000); o->set_epochs = 1; }
        else if (VALUE("--batch")) o->batch = (int)parse_long(flag, val, 1, 65536);
        else if (VALUE("--threads")) o->threads = (int)parse_long(flag, val, 1, 4096);
        else if (VALUE("--kernels")) o->kernels = val;
        else if (VALUE("--conv")) o->conv = val;
        else if (VALUE("--optimizer")) { if (cnn_opt_parse(val, &o->opt_kind)) exit(EXIT_USAGE); }
        else if (VALUE("--init")) { if (cnn_init_parse(val, &o->init)) exit(EXIT_USAGE); }
        else if (VALUE("--lr")) o->lr = parse_float(flag, val, 0, 10);
        else if (VALUE("--momentum")) o->momentum = parse_float(flag, val, 0, 1);
        else if (SWITCH("--nesterov")) o->nesterov = 1;
        else if (VALUE("--label-smoothing")) o->label_smoothing = parse_float(flag, val, 0, 0.99f);
        else if (VALUE("--precision")) {
            if (cnn_precision_parse(val, &o->precision)) exit(EXIT_USAGE);
            o->set_precision = 1;
        }
        else if (SWITCH("--no-decay-bn-bias")) o->no_decay_bn_bias = 1;
        else if (SWITCH("--tta")) o->tta = o->tta > 1 ? o->tta : 1;
        else if (SWITCH("--tta-shift")) o->tta = 2;
        else if (SWITCH("--hflip-alternate")) o->hflip = 2;
        else if (SWITCH("--reflect-pad")) o->reflect_pad = 1;
        else if (VALUE("--lookahead")) o->lookahead = (int)parse_long(flag, val, 0, 1000000);
        else if (VALUE("--whiten-bias-epochs")) o->whiten_bias_epochs = (int)parse_long(flag, val, 0, 100000);
        else if (SWITCH("--drop-last")) o->drop_last = 1;
        else if (VALUE("--lr-start")) o->lr_start = parse_float(flag, val, 0, 1);
        else if (VALUE("--lr-end")) o->lr_end = parse_float(flag, val, 0, 1);
        else if (VALUE("--ema")) o->ema = parse_float(flag, val, 0, 0.99999f);
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
        else if (VALUE("--seed")) { o->seed = (uint64_t)parse_long(flag, val, 0, 0x7fffffffffffffffL); o->set_seed = 1; }
        else if (VALUE("--checkpoint")) o->checkpoint = val;
        else if (VALUE("--resume")) o->resume = val;
        else if (SWITCH("--overwrite")) o->overwrite = 1;
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

