// The layer-operations table: one row per layer kind (KANN's kad_op_list,
// darknet's per-layer function pointers). The parser (model_desc.c) and the
// network (net.c) only call rows; neither names a kind. Adding a kind is
// one file in src/layers/ with its math and its row, plus one line in
// layers.c.
#ifndef CNNC_LAYER_H
#define CNNC_LAYER_H

#include "internal.h"

typedef struct LayerOps LayerOps;

#define LAYER_INPUT (-1)      // in[]: the net's input
#define LAYER_NO_INPUT (-2)   // in[1] of a one-input layer
#define LAYER_NAME_MAX 15     // characters of a tensor name (@name)
#define LAYER_PREFIX_MAX 64   // text of the labels and from() before a layer

// A layer as written in a model description, with every argument resolved.
typedef struct {
    const LayerOps *ops;
    int a, k_h, k_w, stride, pad, bias;  // a: out channels / units / pool kernel
    float p, eps, momentum;              // dropout p, mul's factor; batch norm eps and momentum
    // Learning-rate multipliers of the weight (batch norm: scale) and bias
    // (shift): weight_lr=, bias_lr=; 1 by default, 0 freezes. See cnn_opt_step_scaled.
    float lr_w, lr_b;
    int init_mode;                       // conv: LAYER_INIT_*
    // The graph: in[0] is the tensor the layer reads (LAYER_INPUT for the
    // net's input, else a layer's index), in[1] a merge layer's second one
    // (LAYER_NO_INPUT otherwise). `ref` is in[1]'s name as written, `prefix`
    // the labels and from() written before the layer, kept for the
    // canonical text.
    int in[2];
    char ref[LAYER_NAME_MAX + 1];
    char prefix[LAYER_PREFIX_MAX];
} LayerSpec;

// A layer in a built network: shapes, its slices of the arenas, its
// kernel's struct and its activations.
typedef struct {
    LayerSpec spec;
    int C, H, W, OC, OH, OW;
    int C2, H2, W2;            // a merge layer's second input
    size_t in_size, out_size;  // floats per sample (in_size: the first input)
    size_t p_off, n_w, n_b;    // weight then bias in the parameter arena
    size_t buf_off, n_buf;     // buffers (batch norm running statistics)
    union {
        Conv2d conv;
        Pool2d pool;
        BatchNorm bn;
        Dense dense;
    };
    // ReLU fusions, planned by net.c at build: relu_out, this layer's forward
    // applies the relu layer that alone reads its output; relu_fused, this
    // relu layer is one (its output is its input's tensor, its forward does
    // nothing); relu_grad, this max pool alone reads a relu layer's output
    // and its backward does that layer's too; relu_grad_done, this relu
    // layer is one (its backward does nothing: its gradient is in place).
    unsigned char relu_out, relu_fused, relu_grad, relu_grad_done;
    // Max-pool fusion (net.c): pool_after, the index of the max pool that
    // this layer's forward does (0: none), through a fused relu or alone
    // reading this layer's output; pool_in_conv, this pool is one (its
    // passes do nothing; its gradient stays pooled, in place).
    int pool_after;
    unsigned char pool_in_conv;
    float *out;  // (max_batch, out_size); a view layer points it at its input
    float *aux;  // ops->aux_floats of per-kind state: argmax, mask, batch statistics
} Layer;

// What a pass gives every layer besides its tensors.
typedef struct {
    int B, training;
    Workspace *ws;
    uint64_t seed, step;  // the net's seed and step: dropout masks
    int index;            // position in the net
    int sample0;          // index of x's first image in the whole batch (data parallelism)
    const float *x2;      // a merge layer's second input (LAYER_MERGE)
    float *dx2;           // and its gradient, or NULL
} LayerRun;

// conv(..., init=dirac|whiten): after the usual initialisation, the first
// min(out, in) filters become identities (torch.nn.init.dirac_), or the
// weights are set from data by cnn_net_init_whitening.
enum { LAYER_INIT_DEFAULT, LAYER_INIT_DIRAC, LAYER_INIT_WHITEN };

// Where an argument was written, for error messages.
typedef struct {
    int idx;           // layer index in the description
    const char *name;  // the name as written (an alias, maybe)
} ArgSite;

enum {
    LAYER_VIEW = 1,          // output is the input reinterpreted (no copy, no memory)
    LAYER_GRAD_IN_PLACE = 2,  // backward writes dx over dy (or leaves dy as dx)
    LAYER_MERGE = 4,          // two inputs: the current tensor and a named one (add, concat)
    LAYER_NO_DECAY = 8,       // its weights are a normalisation's scale and shift (no decay when skipping those)
    LAYER_RELU_OUT = 16,      // its forward can apply a ReLU to its output (Layer.relu_out); its backward does not read it
    LAYER_POOL_OUT = 32       // its forward can do the max pool after it (Layer.pool_after; see wire_pool)
};

struct LayerOps {
    const char *name;           // canonical name, used by summaries and the canonical text
    const char *aliases[3];     // other names the parser accepts
    const char *positional[4];  // names of positional arguments, in order
    unsigned flags;             // LAYER_VIEW, LAYER_GRAD_IN_PLACE
    // Description: defaults, one key=value (returns 0 for an unknown key,
    // else 1 with *st set), then a check of required arguments. Each may be NULL.
    void (*defaults)(LayerSpec *s);
    int (*set_arg)(LayerSpec *s, const char *key, const char *val, const ArgSite *at, CnnStatus *st);
    CnnStatus (*finish)(LayerSpec *s, const ArgSite *at);
    void (*format)(const LayerSpec *s, char *buf, size_t n);  // NULL: the name alone
    // Build: output shape and parameter counts from l->C,H,W (NULL: same
    // shape, no parameters); `text` is the layer's canonical text.
    CnnStatus (*shape)(Layer *l, int idx, const char *text);
    size_t (*aux_floats)(const Layer *l, int max_batch);      // NULL: none
    void (*scratch)(const Layer *l, int max_batch, Workspace *need);  // raises col/partial/packed sizes
    void (*wire)(Layer *l, float *w, float *dw, float *buffers);  // point the kernel struct at arenas
    // LAYER_POOL_OUT: once every layer is wired, take the fused max pool's tensors.
    void (*wire_pool)(Layer *l, Layer *pool);
    void (*init)(Layer *l, float *w, float *buffers, CnnRng *r, CnnInit init);  // params already zeroed
    double (*flops)(const Layer *l);                              // forward FLOPs per sample
    // The layer's tensors under PyTorch names and layouts; returns the count.
    int (*tensors)(const Layer *l, int idx, float *w, float *m, float *v, float *buffers,
                   NetTensor *out);
    // Passes: x (B, in_size) -> l->out (B, out_size); dx may be NULL when
    // nothing below needs it (never for LAYER_GRAD_IN_PLACE, where dx == dy).
    void (*forward)(Layer *l, const float *x, const LayerRun *r);
    void (*backward)(Layer *l, const float *x, const float *dy, float *dx, const LayerRun *r);
    // tools/bench: see net_conv_pass_times. NULL except for convolutions.
    int (*pass_times)(Layer *l, const float *x, float *dx_buf, int B, int reps, Workspace *ws,
                      double t[3]);
};

// ---------------------------------------------------------------- rows
extern const LayerOps conv_layer, maxpool_layer, avgpool_layer, gap_layer, relu_layer,
    batchnorm_layer, dropout_layer, flatten_layer, dense_layer, add_layer, concat_layer,
    chpad_layer, gelu_layer, mul_layer;

// The row whose name or alias is `name`, or NULL.
const LayerOps *layer_ops_find(const char *name);
// "conv, maxpool, ..." : every canonical name, for error messages.
void layer_ops_names(char *buf, size_t n);

// ---------------------------------------------------------------- helpers for rows
CnnStatus layer_arg_int(const ArgSite *at, const char *key, const char *val, int lo, int hi, int *out);
CnnStatus layer_arg_float(const ArgSite *at, const char *key, const char *val, float lo, float hi,
                          float *out);
// Characters of the tensor name at the start of s (a letter, then letters,
// digits or '_'); 0 if none.
size_t layer_name_length(const char *s);
// weight_lr=X and bias_lr=X, the learning-rate multipliers every layer with
// parameters takes: 1 if the key is one of them (*st set), else 0.
int layer_lr_arg(LayerSpec *s, const char *key, const char *val, const ArgSite *at, CnnStatus *st);
// ",weight_lr=X,bias_lr=Y" for the multipliers that are not 1 ("" if none).
const char *layer_lr_text(const LayerSpec *s, char *buf, size_t n);
// "%g" when it reads back as x, else "%.9g": canonical text must rebuild the layer.
const char *layer_fmt_float(float x, char *buf, size_t n);
// A conv or dense layer's n_w weights then n_b biases (see CnnInit).
void layer_init_weights(const Layer *l, float *w, CnnRng *r, CnnInit init);
// 2 * weights * output pixels: conv and dense.
double layer_weight_flops(const Layer *l);
// A conv or dense layer's "<idx>.weight" (shape) and, if it has one,
// "<idx>.bias" (OC); returns the count.
int layer_weight_bias_tensors(const Layer *l, int idx, int ndim, const int64_t *shape, float *w, float *m,
                              float *v, NetTensor *out);
// Appends the tensor "<idx>.<what>" to out[*n].
void layer_add_tensor(NetTensor *out, int *n, int idx, const char *what, int ndim,
                      const int64_t *shape, float *data, float *m, float *v);

// ---------------------------------------------------------------- the net's layers
// Layer i of a built net, its parameters in the arena, and tensor t's data
// after the last forward pass (t: LAYER_INPUT or a layer's index).
Layer *net_layer(CnnNet *net, int i);
float *net_layer_params(CnnNet *net, int i);
const float *net_tensor_data(const CnnNet *net, int t);
// Which fusions nets built after the call make (see Layer.relu_out and
// pool_after; all by default): the tests compare them.
enum { NET_FUSE_NONE, NET_FUSE_RELU, NET_FUSE_ALL };
void net_set_fusion(int level);

// ---------------------------------------------------------------- descriptions
// Parses a description into specs; returns the count via *n.
CnnStatus model_desc_parse(const char *desc, LayerSpec *specs, int max_specs, int *n);
void layer_spec_format(const LayerSpec *s, char *buf, size_t n);

#endif  // CNNC_LAYER_H
