// A network of layers: each reads the tensor before it or named ones (a
// graph in topological order, model_desc.c), with parameter, gradient and
// moment arenas and activations sized once for the largest batch (no
// malloc in a step). The backward pass follows a plan made at build time:
// which layers run, and which gradient buffer each tensor's gradient lives
// in; a tensor read by several layers sums their gradients in a fixed order
// (the layers' order, last first).
#include <math.h>
#include <omp.h>
#include <string.h>
#include <unistd.h>

#include "layers/layer.h"

#define GRAD_NONE (-3)    // no gradient (plan) / not yet placed
#define GRAD_LOGITS (-1)  // the loss's gradient buffer

// One layer's part of the backward pass: its output gradient's buffer, and
// for each input the buffer it writes (GRAD_NONE: none needed) and, when
// another layer already wrote that input's gradient, the buffer to add it to.
typedef struct {
    int run, dy, dx[2], add_to[2];
} BackwardStep;

struct CnnNet {
    char *desc;
    int C, H, W, max_batch, L;
    Layer layers[CNN_MAX_LAYERS];
    BackwardStep plan[CNN_MAX_LAYERS];
    size_t n_params, n_buffers;
    float *params, *grads, *m, *v, *buffers;
    Workspace ws;
    int n_gbuf;
    float *gbuf[CNN_MAX_LAYERS + 1], *dlogits;
    const float *input;
    uint64_t seed, step;
    double flops;
    float label_smoothing;               // of the training loss (cnn_net_loss)
    CnnPrecision precision;              // of the convolution and dense products
    float *ema, ema_decay;               // the parameters' exponential moving average, or NULL
    uint8_t *decay;                      // per parameter: 1 if weight decay applies when skipping BN and biases
    float *lr_scale;                     // per parameter: the layer's weight_lr / bias_lr, or NULL if all are 1
    float *slow;                         // Lookahead's slow parameters then buffers, or NULL
    int profiling;                       // accumulate per-layer wall time
    double fwd_time[CNN_MAX_LAYERS], bwd_time[CNN_MAX_LAYERS];
};

static const struct {
    const char *name, *desc;
} BUILTINS[] = {
    {"lenet", "conv(6,5,pad=2) relu maxpool(2) conv(16,5) relu maxpool(2) flatten "
              "dense(120) relu dense(84) relu dense(%d)"},
    {"tfcnn", "conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) conv(64,3) relu flatten "
              "dense(64) relu dense(%d)"},
    {"vgg8bn", "conv(64,3,pad=1,bias=0) bn relu conv(64,3,pad=1,bias=0) bn relu maxpool(2) "
               "conv(128,3,pad=1,bias=0) bn relu conv(128,3,pad=1,bias=0) bn relu maxpool(2) "
               "conv(256,3,pad=1,bias=0) bn relu conv(256,3,pad=1,bias=0) bn relu maxpool(2) "
               "gap dense(%d)"},
    // He et al. 2016, section 4.2: 3 stages of 3 basic blocks (16, 32, 64
    // filters), identity shortcuts, option A (subsample, zero channels)
    // where the width doubles.
    {"resnet20", "conv(16,3,pad=1,bias=0) bn relu "
                 "[@x conv(16,3,pad=1,bias=0) bn relu conv(16,3,pad=1,bias=0) bn add(x) relu] x3 "
                 "@x conv(32,3,stride=2,pad=1,bias=0) bn relu conv(32,3,pad=1,bias=0) bn @r "
                 "from(x) maxpool(1,stride=2) chpad(8) add(r) relu "
                 "[@x conv(32,3,pad=1,bias=0) bn relu conv(32,3,pad=1,bias=0) bn add(x) relu] x2 "
                 "@x conv(64,3,stride=2,pad=1,bias=0) bn relu conv(64,3,pad=1,bias=0) bn @r "
                 "from(x) maxpool(1,stride=2) chpad(16) add(r) relu "
                 "[@x conv(64,3,pad=1,bias=0) bn relu conv(64,3,pad=1,bias=0) bn add(x) relu] x2 "
                 "gap dense(%d)"},
    // airbench94 (Jordan 2024): a frozen whitening layer (24 channels for
    // colour images, 8 for grey: 2 x in x 2 x 2), then three
    // conv-pool-BN-GELU-conv-BN-GELU groups (64, 256, 256), dirac-initialised
    // convolutions, batch norm with a fixed scale, momentum 0.4 (PyTorch's
    // convention; airbench writes 0.6) and its bias at 64x the learning rate,
    // and logits scaled by 1/9.
    {"airbench94", "conv(k=2,init=whiten,weight_lr=0) gelu "
                   "conv(64,3,pad=1,bias=0,init=dirac) maxpool(2) bn(eps=1e-12,momentum=0.4,weight_lr=0,bias_lr=64) gelu "
                   "conv(64,3,pad=1,bias=0,init=dirac) bn(eps=1e-12,momentum=0.4,weight_lr=0,bias_lr=64) gelu "
                   "conv(256,3,pad=1,bias=0,init=dirac) maxpool(2) bn(eps=1e-12,momentum=0.4,weight_lr=0,bias_lr=64) gelu "
                   "conv(256,3,pad=1,bias=0,init=dirac) bn(eps=1e-12,momentum=0.4,weight_lr=0,bias_lr=64) gelu "
                   "conv(256,3,pad=1,bias=0,init=dirac) maxpool(2) bn(eps=1e-12,momentum=0.4,weight_lr=0,bias_lr=64) gelu "
                   "conv(256,3,pad=1,bias=0,init=dirac) bn(eps=1e-12,momentum=0.4,weight_lr=0,bias_lr=64) gelu "
                   "maxpool(3) flatten dense(%d,bias=0) mul(0.11111111)"},
};

const char *cnn_builtin_model_name(int i) {
    return i >= 0 && i < (int)(sizeof BUILTINS / sizeof BUILTINS[0]) ? BUILTINS[i].name : NULL;
}

CnnStatus cnn_builtin_model(const char *name, int classes, char *buf, size_t n) {
    for (size_t i = 0; i < sizeof BUILTINS / sizeof BUILTINS[0]; i++)
        if (!strcmp(name, BUILTINS[i].name)) {
            if ((size_t)snprintf(buf, n, BUILTINS[i].desc, classes) >= n)
                return cnn_error(CNN_EARG, "model %s: its description needs more than %zu characters", name, n);
            return CNN_OK;
        }
    return CNN_EARG;
}

// ---------------------------------------------------------------- shapes
static CnnStatus layer_shape(Layer *l, int idx) {
    char text[96];
    layer_spec_format(&l->spec, text, sizeof text);
    l->OC = l->C; l->OH = l->H; l->OW = l->W;
    CnnStatus st = l->spec.ops->shape ? l->spec.ops->shape(l, idx, text) : CNN_OK;
    l->in_size = (size_t)l->C * l->H * l->W;
    l->out_size = (size_t)l->OC * l->OH * l->OW;
    return st;
}

static double layer_flops(const Layer *l) { return l->spec.ops->flops ? l->spec.ops->flops(l) : 0.0; }

CnnStatus cnn_init_parse(const char *name, CnnInit *init) {
    if (!strcmp(name, "pytorch")) *init = CNN_INIT_PYTORCH;
    else if (!strcmp(name, "he")) *init = CNN_INIT_HE;
    else return cnn_error(CNN_EARG, "unknown initialisation '%s' (expected pytorch or he)", name);
    return CNN_OK;
}

const char *cnn_init_name(CnnInit init) { return init == CNN_INIT_HE ? "he" : "pytorch"; }

void cnn_net_init_weights(CnnNet *net, uint64_t seed) { cnn_net_init_weights_as(net, seed, CNN_INIT_PYTORCH); }

void cnn_net_init_weights_as(CnnNet *net, uint64_t seed, CnnInit init) {
    memset(net->params, 0, sizeof(float) * net->n_params);
    memset(net->buffers, 0, sizeof(float) * (net->n_buffers ? net->n_buffers : 1));
    for (int i = 0; i < net->L; i++) {
        Layer *l = &net->layers[i];
        if (!l->spec.ops->init) continue;
        CnnRng r;
        cnn_rng_derive(&r, seed ^ 0x696e6974ULL, (uint64_t)i, 0);  // "init": apart from data streams
        l->spec.ops->init(l, net->params + l->p_off, net->buffers + l->buf_off, &r, init);
    }
}

// ---------------------------------------------------------------- graph
static const float *tensor_data(const CnnNet *net, int t) {
    return t == LAYER_INPUT ? net->input : net->layers[t].out;
}

Layer *net_layer(CnnNet *net, int i) { return &net->layers[i]; }
float *net_layer_params(CnnNet *net, int i) { return net->params + net->layers[i].p_off; }
const float *net_tensor_data(const CnnNet *net, int t) { return tensor_data(net, t); }

static void tensor_shape(const CnnNet *net, int t, int *c, int *h, int *w) {
    if (t == LAYER_INPUT) {
        *c = net->C; *h = net->H; *w = net->W;
    } else {
        *c = net->layers[t].OC; *h = net->layers[t].OH; *w = net->layers[t].OW;
    }
}

static float *grad_buffer(CnnNet *net, int id) { return id == GRAD_LOGITS ? net->dlogits : net->gbuf[id]; }

// The backward plan: a layer runs if it or a layer it reads from (at any
// depth) has parameters; a gradient buffer is taken when the first reader of
// a tensor (in backward order) writes its gradient and freed when the tensor's
// own layer has used it. Layers that work in place (LAYER_GRAD_IN_PLACE) hand
// their dy buffer on. Returns the number of buffers.
static int plan_backward(CnnNet *net) {
    const int L = net->L;
    int needs[CNN_MAX_LAYERS], where[CNN_MAX_LAYERS], busy[CNN_MAX_LAYERS + 1] = {0}, n_buf = 0;
    for (int i = 0; i < L; i++) {
        const Layer *l = &net->layers[i];
        needs[i] = l->n_w + l->n_b > 0;
        for (int s = 0; s < 2; s++) needs[i] |= l->spec.in[s] >= 0 && needs[l->spec.in[s]];
        where[i] = GRAD_NONE;
    }
    where[L - 1] = GRAD_LOGITS;
    for (int i = L - 1; i >= 0; i--) {
        const Layer *l = &net->layers[i];
        BackwardStep *p = &net->plan[i];
        *p = (BackwardStep){.run = needs[i], .dy = where[i], .dx = {GRAD_NONE, GRAD_NONE},
                            .add_to = {GRAD_NONE, GRAD_NONE}};
        if (!p->run) continue;
        CNN_ASSERT(p->dy != GRAD_NONE);
        const int in_place = (l->spec.ops->flags & LAYER_GRAD_IN_PLACE) || l->pool_in_conv;
        int free_dy = 1, temp[2] = {GRAD_NONE, GRAD_NONE};
        for (int s = 0; s < 2; s++) {
            const int t = l->spec.in[s];
            if (t < 0 || !needs[t]) continue;
            int b;
            if (in_place) {
                b = p->dy;  // dx is dy
                free_dy = where[t] != GRAD_NONE;
            } else {
                for (b = 0; busy[b]; b++) {}
                busy[b] = 1;
                if (b >= n_buf) n_buf = b + 1;
                if (where[t] != GRAD_NONE) temp[s] = b;
            }
            p->dx[s] = b;
            if (where[t] == GRAD_NONE) where[t] = b;
            else p->add_to[s] = where[t];
        }
        for (int s = 0; s < 2; s++)
            if (temp[s] != GRAD_NONE) busy[temp[s]] = 0;
        if (free_dy && p->dy >= 0) busy[p->dy] = 0;
    }
    return n_buf;
}

// ---------------------------------------------------------------- fusions
static int fusion_level = NET_FUSE_ALL;

void net_set_fusion(int level) { fusion_level = level; }

// A relu layer whose input only it reads, from a layer that can apply it
// (LAYER_RELU_OUT: conv, dense, batch norm), is done in that layer's
// forward, on each image's output while it is still in cache; a max pool
// that alone reads a relu layer's output does the relu's backward in its
// own (the pool's gradient is 0 but at each window's argmax, where the
// relu's mask is the pool's output > 0). A max pool that alone reads a
// convolution's output (or its fused relu's) is done by the convolution
// (LAYER_POOL_OUT), image by image from scratch: the full-size output is
// never written to memory, nor its gradient (the backward expands each
// image's). The same numbers, bit for bit, without the passes over memory.
static void plan_fusions(Layer *layers, int L) {
    int readers[CNN_MAX_LAYERS] = {0};
    for (int i = 0; i < L; i++)
        for (int s = 0; s < 2; s++)
            if (layers[i].spec.in[s] >= 0) readers[layers[i].spec.in[s]]++;
    for (int i = 0; i < L && fusion_level >= NET_FUSE_RELU; i++) {
        Layer *l = &layers[i];
        const int t = l->spec.in[0];
        if (t < 0 || readers[t] != 1) continue;
        if (l->spec.ops == &relu_layer && (layers[t].spec.ops->flags & LAYER_RELU_OUT))
            layers[t].relu_out = l->relu_fused = 1;
        if (l->spec.ops == &maxpool_layer && layers[t].spec.ops == &relu_layer)
            l->relu_grad = layers[t].relu_grad_done = 1;
        if (l->spec.ops != &maxpool_layer || fusion_level < NET_FUSE_ALL) continue;
        Layer *src = &layers[t];
        if (src->spec.ops == &relu_layer) {
            if (!src->relu_fused) continue;
            src = &layers[src->spec.in[0]];
        }
        if (src->spec.ops->flags & LAYER_POOL_OUT) {  // its only reader: no other pool claims it
            src->pool_after = i;
            l->pool_in_conv = 1;
        }
    }
}

// The per-parameter learning-rate multipliers, allocated (all 1) on first
// need; 0 if out of memory.
static int lr_scale_ready(CnnNet *net) {
    if (net->lr_scale) return 1;
    if (!(net->lr_scale = cnn_alloc_floats(net->n_params))) return 0;
    for (size_t j = 0; j < net->n_params; j++) net->lr_scale[j] = 1.0f;
    return 1;
}

static int is_view(const Layer *l) { return (l->spec.ops->flags & LAYER_VIEW) || l->relu_fused; }

// ---------------------------------------------------------------- build
static size_t physical_memory(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && size > 0 ? (size_t)pages * (size_t)size : SIZE_MAX;
}

static size_t memory_limit;  // 0: 90% of physical memory

void cnn_set_memory_limit(size_t bytes) { memory_limit = bytes; }

CnnStatus cnn_net_create(CnnNet **out, const char *desc, int C, int H, int W, int max_batch,
                         uint64_t seed) {
    *out = NULL;
    char builtin[CNN_DESC_MAX];
    if (cnn_builtin_model(desc, 10, builtin, sizeof builtin) == CNN_OK) desc = builtin;
    if (C <= 0 || H <= 0 || W <= 0 || C > 4096 || H > 65536 || W > 65536)
        return cnn_error(CNN_ESHAPE, "input shape %dx%dx%d is not valid", C, H, W);
    if (max_batch <= 0 || max_batch > 1 << 20)
        return cnn_error(CNN_EARG, "batch size %d must be in 1..%d", max_batch, 1 << 20);
    LayerSpec specs[CNN_MAX_LAYERS];
    int L;
    CnnStatus st = model_desc_parse(desc, specs, CNN_MAX_LAYERS, &L);
    if (st) return st;

    CnnNet *net = calloc(1, sizeof *net);
    if (!net) return cnn_error(CNN_ENOMEM, "cannot allocate the network");
    net->C = C; net->H = H; net->W = W; net->max_batch = max_batch; net->L = L;
    net->seed = seed;
    // Shapes, arena offsets, buffer sizes; all in size_t with overflow checks.
    size_t act_total = 0, gmax = 0, extra = 0;
    Workspace need = {0};  // largest scratch of any layer
    for (int i = 0; i < L; i++) net->layers[i].spec = specs[i];
    plan_fusions(net->layers, L);
    for (int i = 0; i < L; i++) {
        Layer *l = &net->layers[i];
        tensor_shape(net, l->spec.in[0], &l->C, &l->H, &l->W);
        if (l->spec.in[1] != LAYER_NO_INPUT) tensor_shape(net, l->spec.in[1], &l->C2, &l->H2, &l->W2);
        if ((st = layer_shape(l, i))) goto fail;
        if ((l->OC > 1 << 24) || (double)l->OH * l->OW * l->OC > 1e9) {
            st = cnn_error(CNN_ESHAPE, "layer %d: output %dx%dx%d is too large", i, l->OC, l->OH, l->OW);
            goto fail;
        }
        l->p_off = net->n_params;
        net->n_params += l->n_w + l->n_b;
        l->buf_off = net->n_buffers;
        net->n_buffers += l->n_buf;
        net->flops += layer_flops(l);
        const LayerOps *ops = l->spec.ops;
        if (!is_view(l)) act_total += (size_t)max_batch * l->out_size;
        if (ops->aux_floats) extra += ops->aux_floats(l, max_batch);
        if ((size_t)max_batch * l->out_size > gmax) gmax = (size_t)max_batch * l->out_size;
        if (ops->scratch) ops->scratch(l, max_batch, &need);
    }
    net->n_gbuf = plan_backward(net);
    const int n_gbuf_alloc = net->n_gbuf > 0 ? net->n_gbuf : 1;  // bench's pass timing uses the first
    const Layer *last = &net->layers[L - 1];
    if (last->OH != 1 || last->OW != 1 || last->OC < 2) {
        st = cnn_error(CNN_ESHAPE, "the last layer must output class scores (K x 1 x 1, K >= 2), "
                       "not %dx%dx%d: end the model with dense(classes)", last->OC, last->OH, last->OW);
        goto fail;
    }
    if (last->OC > 256) {
        st = cnn_error(CNN_ESHAPE, "the last layer has %d outputs; labels are bytes, so at most 256 classes", last->OC);
        goto fail;
    }
    // Keep every chunk's slice 64-byte aligned.
    if (need.partial_size < 4) need.partial_size = 4;  // the loss's sum and hits, as doubles
    const size_t partial_max = (need.partial_size + 15) & ~(size_t)15;
    const size_t col_max = (need.col_size + 15) & ~(size_t)15, packed_max = need.packed_size;
    const int nch = batch_chunks(max_batch);
    const double total_floats = 4.0 * net->n_params + (double)net->n_buffers + (double)act_total +
                                (double)extra + (double)n_gbuf_alloc * gmax + (double)nch * (col_max + partial_max) +
                                (double)packed_max +
                                (double)max_batch * last->OC;
    const double bytes = 4.0 * total_floats;
    const double limit = memory_limit ? (double)memory_limit : 0.9 * (double)physical_memory();
    if (bytes > limit) {
        st = cnn_error(CNN_ENOMEM, "model needs %.0f MB at batch %d but the limit is %.0f MB%s: "
                       "use a smaller --batch or model", bytes / 1048576.0, max_batch,
                       limit / 1048576.0, memory_limit ? "" : " (90% of this machine's memory)");
        goto fail;
    }
    net->params = cnn_alloc_floats(net->n_params);
    net->grads = cnn_alloc_floats(net->n_params);
    net->m = cnn_alloc_floats(net->n_params);
    net->v = cnn_alloc_floats(net->n_params);
    net->buffers = cnn_alloc_floats(net->n_buffers);
    net->decay = calloc(net->n_params ? net->n_params : 1, 1);
    int ok = 1;
    for (int b = 0; b < n_gbuf_alloc; b++) ok &= (net->gbuf[b] = cnn_alloc_floats(gmax)) != NULL;
    net->dlogits = cnn_alloc_floats((size_t)max_batch * last->OC);
    net->ws.col_size = col_max;
    net->ws.col = cnn_alloc_floats((size_t)nch * col_max);
    net->ws.partial_size = partial_max;
    net->ws.partial = cnn_alloc_floats((size_t)nch * partial_max);
    net->ws.packed_size = packed_max;
    net->ws.packed = cnn_alloc_floats(packed_max ? packed_max : 1);
    ok &= net->params && net->grads && net->m && net->v && net->buffers && net->decay && net->dlogits && net->ws.col &&
          net->ws.partial && net->ws.packed;
    for (int i = 0; i < L && ok; i++) {
        Layer *l = &net->layers[i];
        const LayerOps *ops = l->spec.ops;
        if (l->relu_fused) l->out = net->layers[l->spec.in[0]].out;  // allocated: inputs come first
        else if (!is_view(l)) ok &= (l->out = cnn_alloc_floats((size_t)max_batch * l->out_size)) != NULL;
        if (ops->aux_floats) ok &= (l->aux = cnn_alloc_floats(ops->aux_floats(l, max_batch))) != NULL;
        if (ok && ops->wire)
            ops->wire(l, net->params + l->p_off, net->grads + l->p_off, net->buffers + l->buf_off);
        // Weight decay, when it skips normalisation and biases: conv and dense weights only.
        if (ok && !(ops->flags & LAYER_NO_DECAY)) memset(net->decay + l->p_off, 1, l->n_w);
    }
    for (int i = 0; i < L && ok; i++)
        if (net->layers[i].pool_after) {
            Layer *l = &net->layers[i];
            l->spec.ops->wire_pool(l, &net->layers[l->pool_after]);
        }
    // Learning-rate multipliers, where a layer sets one.
    for (int i = 0; i < L && ok; i++) {
        const Layer *l = &net->layers[i];
        if ((l->spec.lr_w == 1.0f || !l->n_w) && (l->spec.lr_b == 1.0f || !l->n_b)) continue;
        ok = lr_scale_ready(net);
        for (size_t j = 0; ok && j < l->n_w; j++) net->lr_scale[l->p_off + j] = l->spec.lr_w;
        for (size_t j = 0; ok && j < l->n_b; j++) net->lr_scale[l->p_off + l->n_w + j] = l->spec.lr_b;
    }
    if (!ok) {
        st = cnn_error(CNN_ENOMEM, "cannot allocate %.0f MB for the network", bytes / 1048576.0);
        goto fail;
    }
    // Canonical description: every layer with all its arguments, after the
    // names and from() written before it.
    size_t dl = 0, cap = (size_t)L * (96 + LAYER_PREFIX_MAX + 1) + 1;
    net->desc = malloc(cap);
    if (!net->desc) { st = cnn_error(CNN_ENOMEM, "cannot allocate the network"); goto fail; }
    net->desc[0] = 0;
    for (int i = 0; i < L; i++) {
        char text[96];
        const LayerSpec *s = &net->layers[i].spec;
        layer_spec_format(s, text, sizeof text);
        dl += (size_t)snprintf(net->desc + dl, cap - dl, "%s%s%s%s", i ? " " : "", s->prefix,
                               s->prefix[0] ? " " : "", text);
    }
    cnn_net_init_weights(net, seed);
    *out = net;
    return CNN_OK;
fail:
    cnn_net_free(net);
    return st;
}

void cnn_net_free(CnnNet *net) {
    if (!net) return;
    for (int i = 0; i < net->L; i++) {
        Layer *l = &net->layers[i];
        if (l->spec.ops && !is_view(l)) free(l->out);
        free(l->aux);
    }
    free(net->params); free(net->grads); free(net->m); free(net->v); free(net->buffers); free(net->decay); cnn_free(net->lr_scale);
    free(net->ema);
    cnn_free(net->slow);
    for (int b = 0; b < CNN_MAX_LAYERS + 1; b++) free(net->gbuf[b]);
    free(net->dlogits);
    free(net->ws.col); free(net->ws.partial); free(net->ws.packed);
    free(net->ws.xbuf); free(net->ws.xoff);
    free(net->desc);
    free(net);
}

// ---------------------------------------------------------------- data parallelism
CnnStatus cnn_net_set_collective(CnnNet *net, CnnCollective *c) {
    Workspace *ws = &net->ws;
    free(ws->xbuf);
    free(ws->xoff);
    ws->xbuf = NULL;
    ws->xoff = NULL;
    ws->coll = NULL;
    ws->split.active = 0;
    if (!c || c->ranks == 1) return CNN_OK;
    if (c->ranks < 1 || c->rank < 0 || c->rank >= c->ranks || !c->alltoall || !c->allgather)
        return cnn_error(CNN_EARG, "collective: rank %d of %d ranks, or an operation missing", c->rank, c->ranks);
    // The largest sum exchanged is one chunk's partial row (at least the loss's two doubles).
    ws->xbuf_bytes = sizeof(float) * ws->partial_size + 8 * (size_t)c->ranks;
    ws->xbuf = malloc(ws->xbuf_bytes);
    ws->xoff = malloc(4 * sizeof(size_t) * (size_t)c->ranks);
    if (!ws->xbuf || !ws->xoff) return cnn_error(CNN_ENOMEM, "cannot allocate the exchange buffers of %d ranks", c->ranks);
    ws->coll = c;
    return CNN_OK;
}

int cnn_net_collective_failed(const CnnNet *net) { return net->ws.failed; }

void cnn_net_exchange_stats(const CnnNet *net, double *seconds, double *bytes) {
    *seconds = net->ws.xseconds;
    *bytes = net->ws.xbytes;
}

// The part of a batch of B that a data-parallel training pass runs here.
static BatchSplit batch_split(const CnnNet *net, int B) {
    const CnnCollective *c = net->ws.coll;
    if (!c) return (BatchSplit){0};
    const int C = batch_chunks(B);
    BatchSplit s = {.active = 1, .B = B, .C = C, .c0 = (int)((long)c->rank * C / c->ranks),
                    .c1 = (int)((long)(c->rank + 1) * C / c->ranks)};
    s.i0 = chunk_begin(B, C, s.c0);
    return s;
}

static int split_images(const BatchSplit *s, int B) {
    return s->active ? chunk_begin(s->B, s->C, s->c1) - s->i0 : B;
}

void cnn_net_batch_part(const CnnNet *net, int B, int *first, int *count) {
    const BatchSplit s = batch_split(net, B);
    *first = s.i0;
    *count = split_images(&s, B);
}

// ---------------------------------------------------------------- passes
const float *cnn_net_forward(CnnNet *net, const float *x, int B, int training) {
    CNN_ASSERT(B >= 1 && B <= net->max_batch);
    net->input = x;
    net->ws.split = training ? batch_split(net, B) : (BatchSplit){0};
    const int n = split_images(&net->ws.split, B);
    for (int i = 0; i < net->L; i++) {
        Layer *l = &net->layers[i];
        const double t0 = net->profiling ? omp_get_wtime() : 0.0;
        const LayerRun run = {.B = n, .training = training, .ws = &net->ws, .seed = net->seed,
                              .step = net->step, .index = i, .sample0 = net->ws.split.i0,
                              .x2 = l->spec.in[1] != LAYER_NO_INPUT ? tensor_data(net, l->spec.in[1]) : NULL};
        l->spec.ops->forward(l, tensor_data(net, l->spec.in[0]), &run);
        if (net->profiling) net->fwd_time[i] += omp_get_wtime() - t0;
    }
    return net->layers[net->L - 1].out;
}

// Each chunk's loss and hits, then the batch's tree over the chunks, so
// that every rank of a data-parallel run gets the whole batch's.
float cnn_net_loss(CnnNet *net, const uint8_t *labels, int B, int *correct) {
    const Layer *last = &net->layers[net->L - 1];
    Workspace *ws = &net->ws;
    const int K = last->OC, n = split_images(&ws->split, B);  // B: the whole batch, n of its images here
    const int nchunks = ws_chunks(ws, n);
    const size_t ds = ws->partial_size / 2;
    double *P = (double *)ws->partial;
    for (int k = 0; k < nchunks; k++) {
        const int i0 = ws_chunk_begin(ws, n, k), rows = ws_chunk_begin(ws, n, k + 1) - i0;
        int hits = 0;
        P[k * ds] = softmax_xent_sum(last->out + (size_t)i0 * K, labels + i0, net->dlogits + (size_t)i0 * K, rows, K,
                                     net->label_smoothing, B, &hits);
        P[k * ds + 1] = hits;
    }
    batch_sum_f64(ws, P, ds, nchunks, 2);
    if (correct) *correct = (int)P[1];
    return (float)(P[0] / B);
}

CnnStatus cnn_net_set_label_smoothing(CnnNet *net, float eps) {
    if (!(eps >= 0.0f && eps < 1.0f)) return cnn_error(CNN_EARG, "label smoothing %g must be in [0, 1)", eps);
    net->label_smoothing = eps;
    return CNN_OK;
}

float cnn_net_label_smoothing(const CnnNet *net) { return net->label_smoothing; }

CnnStatus cnn_net_set_precision(CnnNet *net, CnnPrecision p) {
    if (p != CNN_PRECISION_FP32 && p != CNN_PRECISION_BF16) return cnn_error(CNN_EARG, "unknown precision %d", (int)p);
    net->precision = p;
    for (int i = 0; i < net->L; i++) {
        Layer *l = &net->layers[i];
        if (l->spec.ops == &conv_layer) l->conv.bf16 = p == CNN_PRECISION_BF16;
        else if (l->spec.ops == &dense_layer) l->dense.bf16 = p == CNN_PRECISION_BF16;
    }
    return CNN_OK;
}

CnnPrecision cnn_net_precision(const CnnNet *net) { return net->precision; }

CnnStatus cnn_precision_parse(const char *name, CnnPrecision *p) {
    if (!strcmp(name, "fp32")) *p = CNN_PRECISION_FP32;
    else if (!strcmp(name, "bf16")) *p = CNN_PRECISION_BF16;
    else return cnn_error(CNN_EARG, "unknown precision '%s' (expected fp32 or bf16)", name);
    return CNN_OK;
}

const char *cnn_precision_name(CnnPrecision p) { return p == CNN_PRECISION_BF16 ? "bf16" : "fp32"; }

CnnStatus cnn_net_set_ema(CnnNet *net, float decay) {
    if (!(decay >= 0.0f && decay < 1.0f)) return cnn_error(CNN_EARG, "EMA decay %g must be in [0, 1)", decay);
    if (decay == 0.0f) {
        free(net->ema);
        net->ema = NULL;
    } else if (!net->ema) {
        if (!(net->ema = cnn_alloc_floats(net->n_params ? net->n_params : 1)))
            return cnn_error(CNN_ENOMEM, "cannot allocate the weights' moving average");
        memcpy(net->ema, net->params, sizeof(float) * net->n_params);
    }
    net->ema_decay = decay;
    return CNN_OK;
}

float cnn_net_ema_decay(const CnnNet *net) { return net->ema ? net->ema_decay : 0.0f; }

void cnn_net_swap_ema(CnnNet *net) {
    if (!net->ema) return;
    for (size_t i = 0; i < net->n_params; i++) {
        const float t = net->params[i];
        net->params[i] = net->ema[i];
        net->ema[i] = t;
    }
}

float *net_ema(CnnNet *net, const float *param) { return net->ema ? net->ema + (param - net->params) : NULL; }

CnnStatus cnn_net_set_lookahead(CnnNet *net, int on) {
    if (!on) {
        cnn_free(net->slow);
        net->slow = NULL;
    } else if (!net->slow) {
        if (!(net->slow = cnn_alloc_floats(net->n_params + net->n_buffers + 1)))
            return cnn_error(CNN_ENOMEM, "cannot allocate Lookahead's slow weights");
        memcpy(net->slow, net->params, sizeof(float) * net->n_params);
        memcpy(net->slow + net->n_params, net->buffers, sizeof(float) * net->n_buffers);
    }
    return CNN_OK;
}

int cnn_net_lookahead(const CnnNet *net) { return net->slow != NULL; }

CnnStatus cnn_net_freeze_whitening_bias(CnnNet *net, int frozen) {
    for (int i = 0; i < net->L; i++) {
        const Layer *l = &net->layers[i];
        if (l->spec.init_mode != LAYER_INIT_WHITEN || !l->n_b) continue;
        if (!net->lr_scale && !frozen && l->spec.lr_b == 1.0f) continue;  // all multipliers are 1 already
        if (!lr_scale_ready(net)) return cnn_error(CNN_ENOMEM, "cannot allocate the learning-rate multipliers");
        for (size_t j = 0; j < l->n_b; j++) net->lr_scale[l->p_off + l->n_w + j] = frozen ? 0.0f : l->spec.lr_b;
    }
    return CNN_OK;
}

// slow += (1 - alpha) (fast - slow), then fast = slow, over one arena.
static void lookahead_sync(float *fast, float *slow, size_t n, float alpha) {
    const float w = 1.0f - alpha;
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) {
        slow[i] += w * (fast[i] - slow[i]);
        fast[i] = slow[i];
    }
}

void cnn_net_lookahead_sync(CnnNet *net, float alpha) {
    if (!net->slow) return;
    lookahead_sync(net->params, net->slow, net->n_params, alpha);
    lookahead_sync(net->buffers, net->slow + net->n_params, net->n_buffers, alpha);
}

float *net_slow(CnnNet *net, const float *data) {
    if (!net->slow) return NULL;
    if (data >= net->params && data < net->params + net->n_params) return net->slow + (data - net->params);
    return net->slow + net->n_params + (data - net->buffers);
}

// acc += g over n floats.
static void add_gradient(float *acc, const float *g, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
    for (size_t i = 0; i < n; i++) acc[i] += g[i];
}

void cnn_net_backward(CnnNet *net, int B) {
    B = split_images(&net->ws.split, B);
    for (int i = net->L - 1; i >= 0; i--) {
        const BackwardStep *p = &net->plan[i];
        if (!p->run) continue;
        Layer *l = &net->layers[i];
        const LayerOps *ops = l->spec.ops;
        float *dx[2];
        for (int s = 0; s < 2; s++) dx[s] = p->dx[s] != GRAD_NONE ? grad_buffer(net, p->dx[s]) : NULL;
        const double t0 = net->profiling ? omp_get_wtime() : 0.0;
        const LayerRun run = {.B = B, .training = 1, .ws = &net->ws, .seed = net->seed, .step = net->step,
                              .index = i, .sample0 = net->ws.split.i0,
                              .x2 = l->spec.in[1] != LAYER_NO_INPUT ? tensor_data(net, l->spec.in[1]) : NULL,
                              .dx2 = dx[1]};
        if (ops->backward) ops->backward(l, tensor_data(net, l->spec.in[0]), grad_buffer(net, p->dy), dx[0], &run);
        for (int s = 0; s < 2; s++)
            if (p->add_to[s] != GRAD_NONE)
                add_gradient(grad_buffer(net, p->add_to[s]), dx[s],
                             (size_t)B * net->layers[l->spec.in[s]].out_size);
        if (net->profiling) net->bwd_time[i] += omp_get_wtime() - t0;
    }
}

void cnn_net_zero_grad(CnnNet *net) { memset(net->grads, 0, sizeof(float) * net->n_params); }

float cnn_net_train_step(CnnNet *net, CnnOptimizer *opt, const float *x, const uint8_t *labels,
                         int B, float lr, int *correct) {
    cnn_net_forward(net, x, B, 1);
    float loss = cnn_net_loss(net, labels, B, correct);
    cnn_net_zero_grad(net);
    cnn_net_backward(net, B);
    if (net->ws.failed) return NAN;
    cnn_opt_step_scaled(opt, net->params, net->grads, net->m, net->v, net->n_params, lr,
                        opt->decay_skip_bn_bias ? net->decay : NULL, net->lr_scale);
    if (net->ema) {
        const float d = net->ema_decay, *p = net->params;
        float *e = net->ema;
        const size_t n = net->n_params;
#pragma omp parallel for schedule(static) if (n >= CNN_PAR_MIN_WORK)
        for (size_t i = 0; i < n; i++) e[i] = d * e[i] + (1.0f - d) * p[i];
    }
    net->step++;
    return loss;
}

// ---------------------------------------------------------------- accessors
int cnn_net_num_layers(const CnnNet *net) { return net->L; }
int cnn_net_num_classes(const CnnNet *net) { return net->layers[net->L - 1].OC; }
int cnn_net_max_batch(const CnnNet *net) { return net->max_batch; }
size_t cnn_net_num_params(const CnnNet *net) { return net->n_params; }
size_t cnn_net_num_buffers(const CnnNet *net) { return net->n_buffers; }
double cnn_net_flops(const CnnNet *net) { return net->flops; }
const char *cnn_net_desc(const CnnNet *net) { return net->desc; }
float *cnn_net_params(CnnNet *net) { return net->params; }
float *cnn_net_grads(CnnNet *net) { return net->grads; }
float *cnn_net_moment1(CnnNet *net) { return net->m; }
float *cnn_net_moment2(CnnNet *net) { return net->v; }
float *cnn_net_buffers(CnnNet *net) { return net->buffers; }
size_t cnn_net_param_offset(const CnnNet *net, int i) { return net->layers[i].p_off; }
size_t cnn_net_buffer_offset(const CnnNet *net, int i) { return net->layers[i].buf_off; }
void cnn_net_set_seed(CnnNet *net, uint64_t seed) { net->seed = seed; }
void cnn_net_set_step(CnnNet *net, uint64_t step) { net->step = step; }
uint64_t cnn_net_step(const CnnNet *net) { return net->step; }

int net_tensors(CnnNet *net, NetTensor *t) {
    int n = 0;
    for (int i = 0; i < net->L; i++) {
        const Layer *l = &net->layers[i];
        if (l->spec.ops->tensors)
            n += l->spec.ops->tensors(l, i, net->params + l->p_off, net->m + l->p_off,
                                      net->v + l->p_off, net->buffers + l->buf_off, t + n);
    }
    return n;
}

int net_conv_pass_times(CnnNet *net, int i, int B, int reps, double t[3]) {
    if (i < 0 || i >= net->L || !net->layers[i].spec.ops->pass_times || !net->input) return 0;
    Layer *l = &net->layers[i];
    const float *x = tensor_data(net, l->spec.in[0]);
    // The input gradient's own buffer: the net's gradient buffers hold the
    // largest output, which a first layer's input may exceed.
    float *saved = malloc(sizeof(float) * net->n_params), *dx = cnn_alloc_floats((size_t)B * l->in_size);
    int ok = 0;
    if (saved && dx) {
        memcpy(saved, net->grads, sizeof(float) * net->n_params);
        ok = l->spec.ops->pass_times(l, x, dx, B, reps, &net->ws, t);
        memcpy(net->grads, saved, sizeof(float) * net->n_params);  // leave gradients as they were
    }
    free(saved);
    cnn_free(dx);
    return ok;
}

void cnn_net_set_profiling(CnnNet *net, int on) {
    net->profiling = on;
    memset(net->fwd_time, 0, sizeof net->fwd_time);
    memset(net->bwd_time, 0, sizeof net->bwd_time);
}

void cnn_net_layer_times(const CnnNet *net, int i, double *fwd_s, double *bwd_s) {
    *fwd_s = net->fwd_time[i];
    *bwd_s = net->bwd_time[i];
}

void cnn_net_input_shape(const CnnNet *net, int *C, int *H, int *W) {
    *C = net->C; *H = net->H; *W = net->W;
}

void cnn_net_layer_info(const CnnNet *net, int i, CnnLayerInfo *info) {
    const Layer *l = &net->layers[i];
    info->kind = l->spec.ops->name;
    layer_spec_format(&l->spec, info->text, sizeof info->text);
    info->C = l->C; info->H = l->H; info->W = l->W;
    info->OC = l->OC; info->OH = l->OH; info->OW = l->OW;
    info->n_weight = l->n_w;
    info->n_bias = l->n_b;
    info->n_buffer = l->n_buf;
    info->input = l->spec.in[0];
    info->input2 = l->spec.in[1];
    info->flops = layer_flops(l);
    info->done_by = -1;
    info->path = l->spec.ops == &conv_layer ? conv2d_path_name(&l->conv) : NULL;
    for (int j = i; j >= 0; j = net->layers[j].spec.in[0]) {  // down the chain of fused layers
        const Layer *f = &net->layers[j];
        if (f != l && (f->relu_out || f->pool_after)) info->done_by = j;
        if (!(f->relu_fused || f->pool_in_conv) || f->spec.in[0] < 0) break;
    }
}
