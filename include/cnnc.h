// cnnc: batched, multi-core convolutional networks in C11.
//
// Tensors are float32 NCHW: a batch of B samples, each C channels of H x W,
// stored sample after sample, channel after channel, row after row.
// Every function that touches input, files or memory returns a CnnStatus and,
// on failure, records a one-line message (cnn_last_error) that names the
// thing that went wrong. Library code never exits.
#ifndef CNNC_H
#define CNNC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CNNC_VERSION "0.1.0"

// The library's interface: libcnnc.so exports these functions and nothing
// else, so that a program's own gemm or im2col cannot replace the library's.
#if defined(__GNUC__) || defined(__clang__)
#define CNN_API __attribute__((visibility("default")))
#else
#define CNN_API
#endif

// ---------------------------------------------------------------- status
typedef enum {
    CNN_OK = 0,
    CNN_EIO,      // a file could not be opened, read or written
    CNN_EFORMAT,  // a file or string is malformed
    CNN_ESHAPE,   // shapes do not fit together
    CNN_ENOMEM,   // an allocation failed or would be too large
    CNN_EARG,     // a bad argument value
} CnnStatus;

// Short name of a status ("format error", ...).
CNN_API const char *cnn_status_str(CnnStatus s);
// The message of the last error recorded on this thread ("" if none).
CNN_API const char *cnn_last_error(void);
// Record an error message (printf-style) and return s. Also printed to
// stderr as "cnnc: <message>" unless cnn_set_quiet(1).
CNN_API CnnStatus cnn_error(CnnStatus s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
// 1: keep errors silent (only cnn_last_error); 0: also print them.
CNN_API void cnn_set_quiet(int quiet);

// ---------------------------------------------------------------- random numbers
// SplitMix64: small, fast, passes BigCrush, and cheap to derive independent
// streams from (seed, epoch, index) so results never depend on thread order.
typedef struct {
    uint64_t state;
} CnnRng;

CNN_API void cnn_rng_seed(CnnRng *r, uint64_t seed);
// A stream derived from a seed and two counters (e.g. epoch and sample index).
CNN_API void cnn_rng_derive(CnnRng *r, uint64_t seed, uint64_t a, uint64_t b);
CNN_API uint64_t cnn_rng_u64(CnnRng *r);
// Uniform integer in [0, n), unbiased. n must be > 0.
CNN_API uint32_t cnn_rng_below(CnnRng *r, uint32_t n);
// Uniform float in [0, 1) with 24 random bits.
CNN_API float cnn_rng_uniform(CnnRng *r);
// Standard normal (Box-Muller, double internally).
CNN_API double cnn_rng_normal(CnnRng *r);
// Fisher-Yates permutation of 0..n-1 into perm.
CNN_API void cnn_rng_permutation(CnnRng *r, uint32_t *perm, size_t n);

// ---------------------------------------------------------------- threads
// Sets the OpenMP thread count (n <= 0: keep OMP_NUM_THREADS or all cores)
// and makes OpenBLAS single-threaded: cnnc parallelises around BLAS calls.
// The first call also checks OpenBLAS's choice of kernels: when
// OPENBLAS_CORETYPE is unset and OpenBLAS runs a core older than the CPU
// (its SSE3 "Prescott" kernels on an AVX-512 Xeon it does not recognise), it
// switches OpenBLAS to the Haswell or SkylakeX core (cnn_threads_describe
// says so). Call it before any BLAS work. Returns the number of threads.
CNN_API int cnn_threads_init(int n);
// Call first thing in main(argv): unless the user chose OMP_WAIT_POLICY or
// GOMP_SPINCOUNT, re-executes the program with GOMP_SPINCOUNT=3000 (libgomp
// reads it only at start-up), so idle OpenMP threads spin briefly, then sleep.
// With libgomp's default a 2-thread run on 2 cores fell to a tenth of its
// speed as soon as another process took a core; with the short spin it keeps
// most of it, and loses nothing on an idle machine (see tools/PERF.md).
// It also re-executes with OPENBLAS_CORETYPE set where cnn_threads_init
// would switch OpenBLAS's core but the OpenBLAS in use cannot do that
// in-process. Returns only if no re-execution was needed or it failed.
CNN_API void cnn_threads_limit_spin(char **argv);
// "2 OpenMP threads (spin 3000); OpenBLAS core Haswell, pthreads build (1
// thread inside cnnc)" style description.
CNN_API void cnn_threads_describe(char *buf, size_t n);

// ---------------------------------------------------------------- kernels
// The code that runs convolutions is chosen once, at run time, from the CPU's
// features: "avx2" (AVX2 + FMA) where the CPU has them, else "reference"
// (im2col + OpenBLAS, portable C). CNNC_KERNELS=<name> in the environment
// forces a backend, as does cnn_kernels_select. For each backend, results are
// bit-identical at any thread count; between backends they differ in the
// last bits (sums are taken in another order).
//
// Selects a backend by name; NULL, "" or "auto" take the best this CPU runs.
// CNN_EARG with a message if the name is unknown or the CPU lacks its
// features. Do not call it while a training step runs.
CNN_API CnnStatus cnn_kernels_select(const char *name);
// Selects the backend named by CNNC_KERNELS (the best this CPU runs if it
// is unset); CNN_EARG with a message if the name is bad. Without a call to
// this or cnn_kernels_select, the first convolution does the same but falls
// back to the best backend, with a warning, where the variable is bad.
CNN_API CnnStatus cnn_kernels_from_env(void);
// Name of the backend in use.
CNN_API const char *cnn_kernels_name(void);
// The backends compiled in, best first: name of backend i (NULL past the
// end) and, in *supported if not NULL, whether this CPU runs it.
CNN_API int cnn_kernels_count(void);
CNN_API const char *cnn_kernels_list(int i, int *supported);
// "kernels avx2 (AVX2+FMA small-K GEMMs ...; the best this CPU runs)".
CNN_API void cnn_kernels_describe(char *buf, size_t n);
// The algorithm of 3x3 stride-1 convolutions with channels in multiples of
// 8, where the backend has both: "direct", "winograd" (F(4x4, 3x3) forward
// and input gradient, the weight gradient direct; it rounds differently, see
// the README) or "auto" (the default: Winograd on the layers where it was
// measured faster). NULL or "" mean auto; CNNC_CONV in the environment does
// the same as a call with its value. CNN_EARG for another name. Do not call
// it while a training step runs.
CNN_API CnnStatus cnn_conv_select(const char *name);
CNN_API CnnStatus cnn_conv_from_env(void);
CNN_API const char *cnn_conv_name(void);

// ---------------------------------------------------------------- memory
// Batches are plain NCHW float32 arrays (B images of C x H x W). 64-byte aligned, zeroed allocation of count floats (NULL on failure or overflow).
CNN_API float *cnn_alloc_floats(size_t count);
CNN_API void cnn_free(void *p);

// ---------------------------------------------------------------- networks
typedef struct CnnNet CnnNet;

// Writes the description of a built-in model ("lenet", "tfcnn", "vgg8bn",
// "resnet20", "airbench94") with a final dense(classes) into buf; CNN_EARG (no message) if
// unknown, or (with one) if it needs more than n bytes: CNN_DESC_MAX is enough.
#define CNN_DESC_MAX 4096
CNN_API CnnStatus cnn_builtin_model(const char *name, int classes, char *buf, size_t n);
// The name of built-in model i (0, 1, ...), NULL past the last.
CNN_API const char *cnn_builtin_model_name(int i);

// Builds a sequential network from a description (a built-in name, meaning
// 10 classes, or a layer
// list such as "conv(32,3) relu maxpool(2) flatten dense(10)") for inputs of
// shape (C,H,W) and batches of up to max_batch images. Weights get He
// initialisation from seed. On failure *out is NULL and the message names
// the layer and the shapes.
CNN_API CnnStatus cnn_net_create(CnnNet **out, const char *desc, int C, int H, int W,
                         int max_batch, uint64_t seed);
// Reads a layer list as cnn_net_create does, without input shapes or any
// allocation: CNN_EFORMAT (with the message cnn_net_create would give) for
// an unknown layer, a bad argument or bad syntax. Shapes are checked only
// by cnn_net_create.
CNN_API CnnStatus cnn_model_check(const char *desc);
// Largest network cnn_net_create may allocate, in bytes (parameters, moments,
// activations and workspaces together); bigger ones fail with CNN_ENOMEM
// before anything is allocated. 0 (the default): 90% of physical memory.
// Process-wide; set it before building nets (fuzzers, containers whose
// memory limit is below the machine's).
CNN_API void cnn_set_memory_limit(size_t bytes);
CNN_API void cnn_net_free(CnnNet *net);

// Weight initialisation. CNN_INIT_PYTORCH, what cnn_net_create uses: the
// defaults of PyTorch's Conv2d and Linear (kaiming_uniform with a = sqrt(5)),
// weights and biases uniform in +-1/sqrt(fan_in), so that a new classifier
// starts near the uniform prediction (loss ln(classes)). CNN_INIT_HE: weights
// N(0, 2/fan_in) (He et al. 2015), biases 0. Both: batch norm weight 1, bias
// 0, running mean 0, variance 1.
typedef enum { CNN_INIT_PYTORCH, CNN_INIT_HE } CnnInit;

// Re-initialises all parameters and buffers: PyTorch's defaults, or `init`.
CNN_API void cnn_net_init_weights(CnnNet *net, uint64_t seed);
CNN_API void cnn_net_init_weights_as(CnnNet *net, uint64_t seed, CnnInit init);
// "pytorch" or "he"; CNN_EARG with a message for another name.
CNN_API CnnStatus cnn_init_parse(const char *name, CnnInit *init);
CNN_API const char *cnn_init_name(CnnInit init);

// Layers written conv(2 x in x kh x kw, k, init=whiten) get their weights
// from data, as airbench94's first layer: the eigenvectors of the
// covariance of the layer's input patches (no mean removed), scaled by
// 1/sqrt(eigenvalue + 5e-4), largest first, then their negatives; the bias
// is set to 0. x holds n images (n,C,H,W) as the net is fed them (the
// trainer uses the first 5000 training images, standardised, not
// augmented); layers after others see what those make of them in
// evaluation mode. Deterministic at any thread count.
CNN_API int cnn_net_whitening_layers(CnnNet *net);
CNN_API CnnStatus cnn_net_init_whitening(CnnNet *net, const float *x, int n);
// Freezes (1) or thaws (0) the biases of the whitening layers: a frozen
// parameter keeps its value and optimiser moments, as one PyTorch stops
// giving a gradient (airbench94 trains its whitening bias for 3 epochs).
// Thawed, they take their layer's bias_lr again. CNN_ENOMEM only.
CNN_API CnnStatus cnn_net_freeze_whitening_bias(CnnNet *net, int frozen);

// Shapes and counts.
CNN_API int cnn_net_num_layers(const CnnNet *net);
CNN_API int cnn_net_num_classes(const CnnNet *net);     // width of the last layer
CNN_API int cnn_net_max_batch(const CnnNet *net);
CNN_API size_t cnn_net_num_params(const CnnNet *net);   // trainable floats
CNN_API size_t cnn_net_num_buffers(const CnnNet *net);  // BN running statistics
CNN_API double cnn_net_flops(const CnnNet *net);        // forward FLOPs per image (2 x MACs, conv+dense)
CNN_API const char *cnn_net_desc(const CnnNet *net);    // canonical description
CNN_API void cnn_net_input_shape(const CnnNet *net, int *C, int *H, int *W);

typedef struct {
    const char *kind;  // "conv", "relu", ...
    char text[96];     // canonical description of the layer, e.g. "conv(32,3,stride=1,pad=0)"
    int C, H, W;       // input shape per sample
    int OC, OH, OW;    // output shape per sample
    size_t n_weight, n_bias, n_buffer;  // trainable weight/bias floats, BN buffers
    double flops;      // forward FLOPs per image (2 x MACs)
    int input, input2; // tensors read: -1 the net's input, k layer k's output; input2 -2 if none
    int done_by;       // -1, or the layer whose passes do this one's (a ReLU or max pool fused into it)
    // How a convolution's forward pass runs now (kernels, --conv and the
    // precision decide): "winograd", "direct", "small-c", "im2col" or
    // "bf16"; NULL for other layers.
    const char *path;
} CnnLayerInfo;
CNN_API void cnn_net_layer_info(const CnnNet *net, int i, CnnLayerInfo *info);

// Parameter, gradient and optimiser arenas: parallel arrays of
// cnn_net_num_params floats; layer i's weight then bias start at
// cnn_net_param_offset(net, i). Buffers hold BN running mean then var.
CNN_API float *cnn_net_params(CnnNet *net);
CNN_API float *cnn_net_grads(CnnNet *net);
CNN_API float *cnn_net_moment1(CnnNet *net);
CNN_API float *cnn_net_moment2(CnnNet *net);
CNN_API float *cnn_net_buffers(CnnNet *net);
CNN_API size_t cnn_net_param_offset(const CnnNet *net, int layer);
CNN_API size_t cnn_net_buffer_offset(const CnnNet *net, int layer);

// Forward pass of B <= max_batch images x (B,C,H,W). training=1 uses batch
// statistics and dropout (with stream (seed, step)); 0 is evaluation.
// Returns the logits (B, classes), owned by the net and valid until the next call.
CNN_API const float *cnn_net_forward(CnnNet *net, const float *x, int B, int training);

// Softmax cross-entropy of the last forward's logits against labels:
// returns the mean loss and stores the gradient for cnn_net_backward.
// *correct (may be NULL) receives the number of argmax hits.
CNN_API float cnn_net_loss(CnnNet *net, const uint8_t *labels, int B, int *correct);
// Label smoothing of cnn_net_loss (PyTorch's CrossEntropyLoss(label_smoothing=eps)),
// 0 by default; cnn_evaluate reports the plain loss.
CNN_API CnnStatus cnn_net_set_label_smoothing(CnnNet *net, float eps);
CNN_API float cnn_net_label_smoothing(const CnnNet *net);
// The precision of the convolution and dense products. CNN_PRECISION_FP32
// (the default): fp32 throughout. CNN_PRECISION_BF16: mixed precision as
// PyTorch's autocast does it: each product takes its inputs, weights and
// output gradients rounded to bf16 and sums in fp32; the layers' outputs,
// the weights themselves, optimiser state, batch norm, the loss and the
// softmax stay fp32, and so do checkpoints. bf16 keeps fp32's exponent
// range, so gradients neither underflow nor overflow where fp32's would
// not: no loss scaling. The sums are taken in the order of the
// AVX512-BF16 instruction VDPBF16PS; the portable code that computes them
// on any CPU gives the bits such a kernel gives. Results are bit-identical
// at any thread or rank count, as in fp32. Call between training steps.
typedef enum { CNN_PRECISION_FP32, CNN_PRECISION_BF16 } CnnPrecision;
CNN_API CnnStatus cnn_net_set_precision(CnnNet *net, CnnPrecision p);
CNN_API CnnPrecision cnn_net_precision(const CnnNet *net);
// "fp32" or "bf16"; CNN_EARG with a message for another name.
CNN_API CnnStatus cnn_precision_parse(const char *name, CnnPrecision *p);
CNN_API const char *cnn_precision_name(CnnPrecision p);
// One line on how this CPU computes in precision p, for a start-up banner.
CNN_API void cnn_precision_describe(CnnPrecision p, char *buf, size_t n);
// An exponential moving average of the parameters, updated by every
// cnn_net_train_step (ema = decay ema + (1 - decay) params), starting from
// the parameters at this call; 0 turns it off. Checkpoints keep it as
// "ema.<name>" tensors. cnn_net_swap_ema exchanges parameters and average
// (evaluate with the average, then swap back); no-op without one.
CNN_API CnnStatus cnn_net_set_ema(CnnNet *net, float decay);
CNN_API float cnn_net_ema_decay(const CnnNet *net);  // 0 when off
CNN_API void cnn_net_swap_ema(CnnNet *net);

// Lookahead (Zhang et al. 2019), as airbench94 runs it: slow weights (the
// parameters and the batch norm statistics) that each sync moves toward the
// fast ones, slow += (1 - alpha) (fast - slow), after which the fast ones
// restart from them. set_lookahead(net, 1) starts the slow copy from the
// current weights (0 drops it); checkpoints keep it as "lookahead.<name>".
CNN_API CnnStatus cnn_net_set_lookahead(CnnNet *net, int on);
CNN_API int cnn_net_lookahead(const CnnNet *net);  // 1 when on
CNN_API void cnn_net_lookahead_sync(CnnNet *net, float alpha);

// Backward pass of the last forward/loss: writes gradients into the grads arena
// (adding to what is there; call cnn_net_zero_grad first).
CNN_API void cnn_net_backward(CnnNet *net, int B);
CNN_API void cnn_net_zero_grad(CnnNet *net);

// Dropout streams: the random masks of a training forward depend only on
// (seed, step, sample index). cnn_net_set_step sets the step counter.
CNN_API void cnn_net_set_seed(CnnNet *net, uint64_t seed);
CNN_API void cnn_net_set_step(CnnNet *net, uint64_t step);
CNN_API uint64_t cnn_net_step(const CnnNet *net);

// Per-layer timing for benchmarks: set_profiling(1) clears and starts the
// accumulators; layer_times returns the seconds spent in layer i so far.
CNN_API void cnn_net_set_profiling(CnnNet *net, int on);
CNN_API void cnn_net_layer_times(const CnnNet *net, int i, double *fwd_s, double *bwd_s);

// ---------------------------------------------------------------- data parallelism
// Several processes (ranks) train one net together, each holding a copy.
// A batch of B images is cut into batch chunks, min(B, 16) of them; rank r
// computes chunks [r C / ranks, (r + 1) C / ranks), the images that
// cnn_net_batch_part names. Every sum over the batch (weight gradients,
// batch-norm statistics, the loss) is one fixed tree over the chunks:
// pairwise, each range split at its middle chunk. A rank sums its own
// chunks' subtree; the tree above the ranks (a range of ranks split at its
// middle rank, ranks without chunks left out) is summed by every rank from
// the others' subtrees, moved by the two operations below. When ranks is a
// power of two the ranks' subtrees are subtrees of the one-process tree, so
// the parameters after every step are bit-identical to one process's; for
// other counts they are the same on every run with that count.
typedef struct CnnCollective CnnCollective;
struct CnnCollective {
    int rank, ranks;
    // Each returns 0, or non-zero when the exchange failed. Offsets and
    // lengths are in bytes, one per rank.
    // alltoall: send's block q (send_off[q], send_len[q]) goes to rank q;
    // rank p's block for this rank arrives at recv + recv_off[p] (recv_len[p]).
    int (*alltoall)(CnnCollective *c, const void *send, const size_t *send_off, const size_t *send_len,
                    void *recv, const size_t *recv_off, const size_t *recv_len);
    // allgather: on return, buf's block q (off[q], len[q]) holds rank q's block q.
    int (*allgather)(CnnCollective *c, void *buf, const size_t *off, const size_t *len);
    void *ctx;
};

// Makes the net one of c->ranks (NULL: back to one process). From then on
// a training forward (training = 1), cnn_net_loss, cnn_net_backward and
// cnn_net_train_step take B as the whole batch, with x and labels holding
// only this rank's images (cnn_net_batch_part); their results (gradients,
// batch-norm statistics, the loss and the count of hits) are the whole
// batch's, the same on every rank. Evaluation (training = 0) stays local:
// each rank passes B images of its own. max_batch is the whole batch's.
// The collective must outlive its use by the net.
CNN_API CnnStatus cnn_net_set_collective(CnnNet *net, CnnCollective *c);
// The images [*first, *first + *count) of a batch of B that this rank computes.
CNN_API void cnn_net_batch_part(const CnnNet *net, int B, int *first, int *count);
// 1 if an exchange failed since the net was built (the step's results are then not valid).
CNN_API int cnn_net_collective_failed(const CnnNet *net);
// Seconds spent in exchanges (the tree above the ranks included) and bytes
// this rank sent, since the net was built.
CNN_API void cnn_net_exchange_stats(const CnnNet *net, double *seconds, double *bytes);

// ---------------------------------------------------------------- optimisers
typedef enum { CNN_OPT_ADAM, CNN_OPT_ADAMW, CNN_OPT_SGD } CnnOptKind;

typedef struct {
    CnnOptKind kind;
    float lr;            // learning rate (default 1e-3)
    float beta1, beta2;  // Adam moments (0.9, 0.999)
    float eps;           // Adam epsilon (1e-8)
    float weight_decay;  // L2 (Adam, SGD) or decoupled (AdamW)
    float momentum;      // SGD momentum (0 = plain SGD)
    int nesterov;        // SGD: Nesterov momentum
    long t;              // steps taken (Adam bias correction)
    int decay_skip_bn_bias;  // cnn_net_train_step: no weight decay on biases and batch norm's scale and shift
} CnnOptimizer;

// Defaults of PyTorch: Adam lr 1e-3, betas 0.9/0.999, eps 1e-8.
CNN_API void cnn_opt_defaults(CnnOptimizer *opt, CnnOptKind kind);
// One update of n parameters from their gradients; m and v are the moment
// arenas (v unused by SGD). lr overrides opt->lr when >= 0 (schedules).
CNN_API void cnn_opt_step(CnnOptimizer *opt, float *params, const float *grads, float *m,
                  float *v, size_t n, float lr);
// The same with weight decay only where decay[i] is non-zero (decay may be NULL: everywhere).
CNN_API void cnn_opt_step_masked(CnnOptimizer *opt, float *params, const float *grads, float *m, float *v, size_t n, float lr,
                         const uint8_t *decay);
// The same with a multiplier of each parameter's gradient (scale may be NULL:
// 1), taken before weight decay is added: with SGD, a multiplier s is a
// learning rate s times larger that leaves the decay alone (airbench's
// bias_scaler); Adam, being invariant to the gradient's scale, mostly
// ignores it. A multiplier of 0 freezes the parameter: no update, no
// decay, moments unchanged. Layers set theirs with weight_lr= and bias_lr=.
CNN_API void cnn_opt_step_scaled(CnnOptimizer *opt, float *params, const float *grads, float *m, float *v, size_t n,
                         float lr, const uint8_t *decay, const float *scale);
CNN_API CnnStatus cnn_opt_parse(const char *name, CnnOptKind *kind);
CNN_API const char *cnn_opt_name(CnnOptKind kind);

// One training step: forward, loss, zero_grad, backward, optimiser update.
// Returns the mean loss; *correct gets the argmax hits (may be NULL).
CNN_API float cnn_net_train_step(CnnNet *net, CnnOptimizer *opt, const float *x,
                         const uint8_t *labels, int B, float lr, int *correct);

// ---------------------------------------------------------------- metrics
#define CNN_METRICS_MAX_CLASSES 256

typedef struct {
    double accuracy, macro_precision, macro_recall, macro_f1;
    double precision[CNN_METRICS_MAX_CLASSES], recall[CNN_METRICS_MAX_CLASSES];
    double f1[CNN_METRICS_MAX_CLASSES];
    int64_t support[CNN_METRICS_MAX_CLASSES];  // examples of each true class
} CnnMetrics;

// Adds B predictions (argmax of logits (B,K)) to the confusion matrix cm (K,K),
// rows = true class, columns = predicted class.
CNN_API void cnn_confusion_add(int64_t *cm, int K, const float *logits, const uint8_t *labels, int B);
// Accuracy, per-class and macro-averaged precision, recall and F1 of cm.
CNN_API void cnn_metrics_compute(const int64_t *cm, int K, CnnMetrics *m);

// ---------------------------------------------------------------- schedules
typedef enum { CNN_SCHED_CONSTANT, CNN_SCHED_STEP, CNN_SCHED_COSINE, CNN_SCHED_LINEAR } CnnScheduleKind;

typedef struct {
    CnnScheduleKind kind;
    float lr;         // peak learning rate
    int epochs;       // length of the run (cosine decays to 0 at its end)
    long warmup;      // steps of linear warm-up (0: none)
    int step_epochs;  // step: multiply by gamma every step_epochs epochs
    float gamma;      // step: decay factor (0.1)
    // Fractions of lr where the warm-up starts and where cosine and linear
    // end (0, 0 by default; airbench94's 0.2 and 0.07).
    float start_frac, end_frac;
} CnnSchedule;

CNN_API CnnStatus cnn_schedule_parse(const char *name, CnnScheduleKind *kind);
CNN_API const char *cnn_schedule_name(CnnScheduleKind kind);
// Learning rate of optimiser step `step` (0-based).
CNN_API float cnn_schedule_lr(const CnnSchedule *s, long step, long steps_per_epoch);

// ---------------------------------------------------------------- checkpoints
// String key/value metadata stored in a checkpoint's "__metadata__".
typedef struct {
    int n, cap;
    char **keys, **values;
} CnnMeta;

// Sets (or replaces) key to a printf-formatted value. CNN_ENOMEM on failure.
CNN_API CnnStatus cnn_meta_set(CnnMeta *m, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
CNN_API const char *cnn_meta_get(const CnnMeta *m, const char *key);  // NULL if absent
CNN_API void cnn_meta_free(CnnMeta *m);

// Writes a safetensors file: the network's tensors under PyTorch state_dict
// names and layouts ("0.weight" (OC,C,KH,KW), "3.running_mean", ...), the
// optimiser's moments ("optimizer.exp_avg.0.weight", ...) when opt is given,
// and __metadata__ holding "format", "model", "input_shape", the optimiser's
// settings and every entry of meta (may be NULL). Atomic: a temporary file in
// the same folder is written, fsynced and renamed over path, so the previous
// file survives any failure.
CNN_API CnnStatus cnn_checkpoint_save(const char *path, CnnNet *net, const CnnOptimizer *opt,
                              const CnnMeta *meta);
// Reads only the metadata (to learn the model and input shape before building).
CNN_API CnnStatus cnn_checkpoint_read_meta(const char *path, CnnMeta *meta);
// Loads weights (and, when opt is given, its moments and settings) into a net
// built from the same description; checks header, JSON, dtypes, shapes and
// offsets and fails with a message naming the file and the problem. meta may
// be NULL.
CNN_API CnnStatus cnn_checkpoint_load(const char *path, CnnNet *net, CnnOptimizer *opt, CnnMeta *meta);

// ---------------------------------------------------------------- images
// Decodes an image file (PNG, JPEG, BMP, 8-bit binary PGM/PPM) into out (C,H,W)
// uint8, converted to C channels (1: grey, 3: RGB) and resized to H x W.
CNN_API CnnStatus cnn_image_load(const char *path, int C, int H, int W, uint8_t *out);
// An image file's own height and width (it is decoded to find them).
CNN_API CnnStatus cnn_image_size(const char *path, int *H, int *W);

#ifdef __cplusplus
}
#endif

// Data sets, batches and evaluation (closed extern "C" first: the nested
// header opens its own).
#include "cnnc/data.h"

#endif  // CNNC_H
