// A sequential network: layer table, parameter/gradient/moment arenas,
// activations sized once for the largest batch (no malloc in a step).
#include <math.h>
#include <omp.h>
#include <string.h>
#include <unistd.h>

#include "layers/layer.h"

struct CnnNet {
    char *desc;
    int C, H, W, max_batch, L, first_param_layer;
    Layer layers[CNN_MAX_LAYERS];
    size_t n_params, n_buffers;
    float *params, *grads, *m, *v, *buffers;
    Workspace ws;
    float *gbuf[2], *dlogits;
    const float *input;
    uint64_t seed, step;
    double flops;
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
};

CnnStatus cnn_builtin_model(const char *name, int classes, char *buf, size_t n) {
    for (size_t i = 0; i < sizeof BUILTINS / sizeof BUILTINS[0]; i++)
        if (!strcmp(name, BUILTINS[i].name)) {
            snprintf(buf, n, BUILTINS[i].desc, classes);
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
    char builtin[1024];
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
    net->first_param_layer = L;
    // Shapes, arena offsets, buffer sizes; all in size_t with overflow checks.
    int c = C, h = H, w = W;
    size_t act_total = 0, gmax = 0, extra = 0;
    Workspace need = {0};  // largest scratch of any layer
    for (int i = 0; i < L; i++) {
        Layer *l = &net->layers[i];
        l->spec = specs[i];
        l->C = c; l->H = h; l->W = w;
        if ((st = layer_shape(l, i))) goto fail;
        if ((l->OC > 1 << 24) || (double)l->OH * l->OW * l->OC > 1e9) {
            st = cnn_error(CNN_ESHAPE, "layer %d: output %dx%dx%d is too large", i, l->OC, l->OH, l->OW);
            goto fail;
        }
        l->p_off = net->n_params;
        net->n_params += l->n_w + l->n_b;
        l->buf_off = net->n_buffers;
        net->n_buffers += l->n_buf;
        if (l->n_w && net->first_param_layer == L) net->first_param_layer = i;
        net->flops += layer_flops(l);
        const LayerOps *ops = l->spec.ops;
        if (!(ops->flags & LAYER_VIEW)) act_total += (size_t)max_batch * l->out_size;
        if (ops->aux_floats) extra += ops->aux_floats(l, max_batch);
        if ((size_t)max_batch * l->in_size > gmax) gmax = (size_t)max_batch * l->in_size;
        if (ops->scratch) ops->scratch(l, max_batch, &need);
        c = l->OC; h = l->OH; w = l->OW;
    }
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
    const size_t partial_max = (need.partial_size + 15) & ~(size_t)15;
    const size_t col_max = (need.col_size + 15) & ~(size_t)15, packed_max = need.packed_size;
    const int nch = batch_chunks(max_batch);
    const double total_floats = 4.0 * net->n_params + (double)net->n_buffers + (double)act_total +
                                (double)extra + 2.0 * gmax + (double)nch * (col_max + partial_max) +
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
    net->gbuf[0] = cnn_alloc_floats(gmax);
    net->gbuf[1] = cnn_alloc_floats(gmax);
    net->dlogits = cnn_alloc_floats((size_t)max_batch * last->OC);
    net->ws.col_size = col_max;
    net->ws.col = cnn_alloc_floats((size_t)nch * col_max);
    net->ws.partial_size = partial_max;
    net->ws.partial = cnn_alloc_floats((size_t)nch * partial_max);
    net->ws.packed_size = packed_max;
    net->ws.packed = cnn_alloc_floats(packed_max ? packed_max : 1);
    int ok = net->params && net->grads && net->m && net->v && net->buffers && net->gbuf[0] &&
             net->gbuf[1] && net->dlogits && net->ws.col && net->ws.partial && net->ws.packed;
    for (int i = 0; i < L && ok; i++) {
        Layer *l = &net->layers[i];
        const LayerOps *ops = l->spec.ops;
        if (!(ops->flags & LAYER_VIEW))
            ok &= (l->out = cnn_alloc_floats((size_t)max_batch * l->out_size)) != NULL;
        if (ops->aux_floats) ok &= (l->aux = cnn_alloc_floats(ops->aux_floats(l, max_batch))) != NULL;
        if (ok && ops->wire)
            ops->wire(l, net->params + l->p_off, net->grads + l->p_off, net->buffers + l->buf_off);
    }
    if (!ok) {
        st = cnn_error(CNN_ENOMEM, "cannot allocate %.0f MB for the network", bytes / 1048576.0);
        goto fail;
    }
    // Canonical description: every layer with all its arguments.
    size_t dl = 0, cap = (size_t)L * 96 + 1;
    net->desc = malloc(cap);
    if (!net->desc) { st = cnn_error(CNN_ENOMEM, "cannot allocate the network"); goto fail; }
    net->desc[0] = 0;
    for (int i = 0; i < L; i++) {
        char text[96];
        layer_spec_format(&net->layers[i].spec, text, sizeof text);
        dl += (size_t)snprintf(net->desc + dl, cap - dl, "%s%s", i ? " " : "", text);
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
        if (l->spec.ops && !(l->spec.ops->flags & LAYER_VIEW)) free(l->out);
        free(l->aux);
    }
    free(net->params); free(net->grads); free(net->m); free(net->v); free(net->buffers);
    free(net->gbuf[0]); free(net->gbuf[1]); free(net->dlogits);
    free(net->ws.col); free(net->ws.partial); free(net->ws.packed);
    free(net->desc);
    free(net);
}

// ---------------------------------------------------------------- passes
const float *cnn_net_forward(CnnNet *net, const float *x, int B, int training) {
    CNN_ASSERT(B >= 1 && B <= net->max_batch);
    net->input = x;
    const float *in = x;
    for (int i = 0; i < net->L; i++) {
        Layer *l = &net->layers[i];
        const double t0 = net->profiling ? omp_get_wtime() : 0.0;
        const LayerRun run = {.B = B, .training = training, .ws = &net->ws, .seed = net->seed,
                              .step = net->step, .index = i};
        l->spec.ops->forward(l, in, &run);
        if (net->profiling) net->fwd_time[i] += omp_get_wtime() - t0;
        in = l->out;
    }
    return in;
}

float cnn_net_loss(CnnNet *net, const uint8_t *labels, int B, int *correct) {
    const Layer *last = &net->layers[net->L - 1];
    return softmax_xent(last->out, labels, net->dlogits, B, last->OC, correct);
}

void cnn_net_backward(CnnNet *net, int B) {
    float *dy = net->dlogits;
    for (int i = net->L - 1; i >= net->first_param_layer; i--) {
        Layer *l = &net->layers[i];
        const float *x = i > 0 ? net->layers[i - 1].out : net->input;
        // The input gradient is needed only if a layer below has parameters.
        const int need_dx = i > net->first_param_layer;
        const LayerOps *ops = l->spec.ops;
        float *dx = ops->flags & LAYER_GRAD_IN_PLACE ? dy
                    : need_dx ? (dy == net->gbuf[0] ? net->gbuf[1] : net->gbuf[0]) : NULL;
        const double t0 = net->profiling ? omp_get_wtime() : 0.0;
        const LayerRun run = {.B = B, .training = 1, .ws = &net->ws, .seed = net->seed,
                              .step = net->step, .index = i};
        if (ops->backward) ops->backward(l, x, dy, dx, &run);
        if (net->profiling) net->bwd_time[i] += omp_get_wtime() - t0;
        dy = dx;
    }
}

void cnn_net_zero_grad(CnnNet *net) { memset(net->grads, 0, sizeof(float) * net->n_params); }

float cnn_net_train_step(CnnNet *net, CnnOptimizer *opt, const float *x, const uint8_t *labels,
                         int B, float lr, int *correct) {
    cnn_net_forward(net, x, B, 1);
    float loss = cnn_net_loss(net, labels, B, correct);
    cnn_net_zero_grad(net);
    cnn_net_backward(net, B);
    cnn_opt_step(opt, net->params, net->grads, net->m, net->v, net->n_params, lr);
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
    const float *x = i > 0 ? net->layers[i - 1].out : net->input;
    float *saved = malloc(sizeof(float) * net->n_params);
    if (!saved) return 0;
    memcpy(saved, net->grads, sizeof(float) * net->n_params);
    int ok = l->spec.ops->pass_times(l, x, net->gbuf[0], B, reps, &net->ws, t);
    memcpy(net->grads, saved, sizeof(float) * net->n_params);  // leave gradients as they were
    free(saved);
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
    info->flops = layer_flops(l);
}
