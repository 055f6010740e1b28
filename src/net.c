// A sequential network: layer table, parameter/gradient/moment arenas,
// activations sized once for the largest batch (no malloc in a step).
#include <math.h>
#include <omp.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

typedef struct {
    LayerSpec spec;
    int C, H, W, OC, OH, OW;
    size_t in_size, out_size;  // floats per sample
    size_t p_off, n_w, n_b;    // weight then bias in the parameter arena
    size_t buf_off, n_buf;     // BN running mean then var in the buffer arena
    Conv2d conv;
    Pool2d pool;
    BatchNorm bn;
    Dense dense;
    float *out;       // (max_batch, out_size); flatten aliases its input
    int32_t *argmax;  // maxpool
    float *mask;      // dropout
    float *bn_save;   // batchnorm: save_mean, save_invstd
} Layer;

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
    const LayerSpec *s = &l->spec;
    char text[96];
    layer_spec_format(s, text, sizeof text);
    l->OC = l->C; l->OH = l->H; l->OW = l->W;
    switch (s->kind) {
    case LAYER_CONV:
        if (l->H + 2 * s->pad < s->k_h || l->W + 2 * s->pad < s->k_w)
            return cnn_error(CNN_ESHAPE, "layer %d %s: kernel %dx%d does not fit input %dx%dx%d (pad %d)",
                             idx, text, s->k_h, s->k_w, l->C, l->H, l->W, s->pad);
        l->OC = s->a;
        l->OH = (l->H + 2 * s->pad - s->k_h) / s->stride + 1;
        l->OW = (l->W + 2 * s->pad - s->k_w) / s->stride + 1;
        l->n_w = (size_t)s->a * l->C * s->k_h * s->k_w;
        l->n_b = s->bias ? (size_t)s->a : 0;
        break;
    case LAYER_MAXPOOL:
    case LAYER_AVGPOOL:
        if (l->H < s->a || l->W < s->a)
            return cnn_error(CNN_ESHAPE, "layer %d %s: window %dx%d does not fit input %dx%dx%d",
                             idx, text, s->a, s->a, l->C, l->H, l->W);
        l->OH = (l->H - s->a) / s->stride + 1;
        l->OW = (l->W - s->a) / s->stride + 1;
        break;
    case LAYER_GAP: l->OH = l->OW = 1; break;
    case LAYER_FLATTEN: l->OC = l->C * l->H * l->W; l->OH = l->OW = 1; break;
    case LAYER_DENSE:
        if (l->H != 1 || l->W != 1)
            return cnn_error(CNN_ESHAPE, "layer %d %s: input is %dx%dx%d, dense needs a flat input "
                             "(put flatten or gap before it)", idx, text, l->C, l->H, l->W);
        l->OC = s->a;
        l->n_w = (size_t)s->a * l->C;
        l->n_b = s->bias ? (size_t)s->a : 0;
        break;
    case LAYER_BATCHNORM:
        l->n_w = l->n_b = (size_t)l->C;
        l->n_buf = 2 * (size_t)l->C;
        break;
    case LAYER_RELU:
    case LAYER_DROPOUT: break;
    }
    l->in_size = (size_t)l->C * l->H * l->W;
    l->out_size = (size_t)l->OC * l->OH * l->OW;
    return CNN_OK;
}

static double layer_flops(const Layer *l) {
    if (l->spec.kind == LAYER_CONV || l->spec.kind == LAYER_DENSE)
        return 2.0 * (double)l->n_w * l->OH * l->OW;
    return 0.0;
}

// Points each layer's kernel struct at its slices of the arenas.
static void wire_layer(CnnNet *net, Layer *l) {
    const LayerSpec *s = &l->spec;
    float *w = net->params + l->p_off, *dw = net->grads + l->p_off;
    float *b = l->n_b ? w + l->n_w : NULL, *db = l->n_b ? dw + l->n_w : NULL;
    switch (s->kind) {
    case LAYER_CONV:
        l->conv = (Conv2d){.C = l->C, .H = l->H, .W = l->W, .OC = l->OC, .KH = s->k_h, .KW = s->k_w,
                           .S = s->stride, .P = s->pad, .OH = l->OH, .OW = l->OW,
                           .has_bias = s->bias, .w = w, .b = b, .dw = dw, .db = db};
        break;
    case LAYER_MAXPOOL:
    case LAYER_AVGPOOL:
        l->pool = (Pool2d){.C = l->C, .H = l->H, .W = l->W, .K = s->a, .S = s->stride,
                           .OH = l->OH, .OW = l->OW};
        break;
    case LAYER_BATCHNORM:
        l->bn = (BatchNorm){.C = l->C, .HW = l->H * l->W, .eps = s->eps, .momentum = s->momentum,
                            .gamma = w, .beta = b, .dgamma = dw, .dbeta = db,
                            .running_mean = net->buffers + l->buf_off,
                            .running_var = net->buffers + l->buf_off + l->C,
                            .save_mean = l->bn_save, .save_invstd = l->bn_save + l->C};
        break;
    case LAYER_DENSE:
        l->dense = (Dense){.IN = l->C, .OUT = l->OC, .has_bias = s->bias, .w = w, .b = b,
                           .dw = dw, .db = db};
        break;
    default: break;
    }
}

void cnn_net_init_weights(CnnNet *net, uint64_t seed) {
    memset(net->params, 0, sizeof(float) * net->n_params);
    memset(net->buffers, 0, sizeof(float) * (net->n_buffers ? net->n_buffers : 1));
    for (int i = 0; i < net->L; i++) {
        Layer *l = &net->layers[i];
        CnnRng r;
        cnn_rng_derive(&r, seed ^ 0x696e6974ULL, (uint64_t)i, 0);  // "init": apart from data streams
        float *w = net->params + l->p_off;
        if (l->spec.kind == LAYER_CONV || l->spec.kind == LAYER_DENSE) {
            // He et al. 2015: N(0, 2/fan_in) keeps ReLU activations' variance steady.
            const double fan_in = (double)l->n_w / l->OC, std = sqrt(2.0 / fan_in);
            for (size_t j = 0; j < l->n_w; j++) w[j] = (float)(cnn_rng_normal(&r) * std);
        } else if (l->spec.kind == LAYER_BATCHNORM) {
            for (int c = 0; c < l->C; c++) w[c] = 1.0f;                  // gamma
            for (int c = 0; c < l->C; c++) l->bn.running_var[c] = 1.0f;  // running var
        }
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
    size_t act_total = 0, gmax = 0, col_max = 0, partial_max = 0, packed_max = 0, extra = 0;
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
        size_t acts = (size_t)max_batch * l->out_size;
        if (l->spec.kind != LAYER_FLATTEN) act_total += acts;
        if (l->spec.kind == LAYER_DROPOUT) act_total += acts;
        if (l->spec.kind == LAYER_MAXPOOL) extra += acts;  // argmax, int32
        if ((size_t)max_batch * l->in_size > gmax) gmax = (size_t)max_batch * l->in_size;
        if (l->spec.kind == LAYER_CONV) {
            l->conv = (Conv2d){.C = l->C, .H = l->H, .W = l->W, .OC = l->OC, .KH = l->spec.k_h, .KW = l->spec.k_w,
                               .S = l->spec.stride, .P = l->spec.pad, .OH = l->OH, .OW = l->OW};
            size_t cs = conv2d_col_size(&l->conv), ps = conv2d_packed_size(&l->conv);
            if (cs > col_max) col_max = cs;
            if (ps > packed_max) packed_max = ps;
        }
        if ((l->spec.kind == LAYER_CONV || l->spec.kind == LAYER_DENSE) && l->n_w + l->OC > partial_max)
            partial_max = l->n_w + (size_t)l->OC;
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
    partial_max = (partial_max + 15) & ~(size_t)15;  // keep every chunk's slice 64-byte aligned
    col_max = (col_max + 15) & ~(size_t)15;
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
        size_t acts = (size_t)max_batch * l->out_size;
        if (l->spec.kind != LAYER_FLATTEN) ok &= (l->out = cnn_alloc_floats(acts)) != NULL;
        if (l->spec.kind == LAYER_MAXPOOL)
            ok &= (l->argmax = aligned_alloc(64, (acts * sizeof(int32_t) + 63) & ~(size_t)63)) != NULL;
        if (l->spec.kind == LAYER_DROPOUT) ok &= (l->mask = cnn_alloc_floats(acts)) != NULL;
        if (l->spec.kind == LAYER_BATCHNORM) ok &= (l->bn_save = cnn_alloc_floats(2 * (size_t)l->C)) != NULL;
        if (ok) wire_layer(net, l);
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
        if (l->spec.kind != LAYER_FLATTEN) free(l->out);
        free(l->argmax);
        free(l->mask);
        free(l->bn_save);
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
        const size_t n = (size_t)B * l->out_size;
        const double t0 = net->profiling ? omp_get_wtime() : 0.0;
        switch (l->spec.kind) {
        case LAYER_CONV: conv2d_forward(&l->conv, in, l->out, B, &net->ws); break;
        case LAYER_MAXPOOL: maxpool_forward(&l->pool, in, l->out, l->argmax, B); break;
        case LAYER_AVGPOOL: avgpool_forward(&l->pool, in, l->out, B); break;
        case LAYER_GAP: gap_forward(in, l->out, B, l->C, l->H * l->W); break;
        case LAYER_RELU: relu_forward(in, l->out, n); break;
        case LAYER_BATCHNORM: batchnorm_forward(&l->bn, in, l->out, B, training); break;
        case LAYER_DROPOUT:
            dropout_forward(l->spec.p, in, l->out, l->mask, B, l->out_size,
                            net->seed ^ (0x5eedULL * (uint64_t)(i + 1)), net->step, training);
            break;
        case LAYER_FLATTEN: l->out = (float *)in; break;  // a view: same bytes, new shape
        case LAYER_DENSE: dense_forward(&l->dense, in, l->out, B); break;
        }
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
        float *dx = need_dx ? (dy == net->gbuf[0] ? net->gbuf[1] : net->gbuf[0]) : NULL;
        const size_t n = (size_t)B * l->out_size;
        const double t0 = net->profiling ? omp_get_wtime() : 0.0;
        switch (l->spec.kind) {
        case LAYER_CONV: conv2d_backward(&l->conv, x, dy, dx, B, &net->ws); break;
        case LAYER_MAXPOOL: maxpool_backward(&l->pool, dy, l->argmax, dx, B); break;
        case LAYER_AVGPOOL: avgpool_backward(&l->pool, dy, dx, B); break;
        case LAYER_GAP: gap_backward(dy, dx, B, l->C, l->H * l->W); break;
        case LAYER_RELU: dx = dy; relu_backward(l->out, dy, dx, n); break;
        case LAYER_BATCHNORM: batchnorm_backward(&l->bn, x, dy, dx, B); break;
        case LAYER_DROPOUT: dx = dy; dropout_backward(l->mask, dy, dx, n); break;
        case LAYER_FLATTEN: dx = dy; break;
        case LAYER_DENSE: dense_backward(&l->dense, x, dy, dx, B, &net->ws); break;
        }
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

static void add_tensor(NetTensor *t, int *n, int layer, const char *what, int ndim, const int64_t *shape,
                       float *data, float *m, float *v) {
    NetTensor *x = &t[(*n)++];
    snprintf(x->name, sizeof x->name, "%d.%s", layer, what);
    x->ndim = ndim;
    x->numel = 1;
    for (int d = 0; d < ndim; d++) {
        x->shape[d] = shape[d];
        x->numel *= (size_t)shape[d];
    }
    x->data = data;
    x->m = m;
    x->v = v;
}

int net_tensors(CnnNet *net, NetTensor *t) {
    int n = 0;
    for (int i = 0; i < net->L; i++) {
        const Layer *l = &net->layers[i];
        float *w = net->params + l->p_off, *m = net->m + l->p_off, *v = net->v + l->p_off;
        const int64_t conv_w[4] = {l->OC, l->C, l->spec.k_h, l->spec.k_w};
        const int64_t dense_w[2] = {l->OC, l->C}, vec[1] = {l->OC};
        switch (l->spec.kind) {
        case LAYER_CONV:
            add_tensor(t, &n, i, "weight", 4, conv_w, w, m, v);
            if (l->n_b) add_tensor(t, &n, i, "bias", 1, vec, w + l->n_w, m + l->n_w, v + l->n_w);
            break;
        case LAYER_DENSE:
            add_tensor(t, &n, i, "weight", 2, dense_w, w, m, v);
            if (l->n_b) add_tensor(t, &n, i, "bias", 1, vec, w + l->n_w, m + l->n_w, v + l->n_w);
            break;
        case LAYER_BATCHNORM:
            add_tensor(t, &n, i, "weight", 1, vec, w, m, v);
            add_tensor(t, &n, i, "bias", 1, vec, w + l->C, m + l->C, v + l->C);
            add_tensor(t, &n, i, "running_mean", 1, vec, net->buffers + l->buf_off, NULL, NULL);
            add_tensor(t, &n, i, "running_var", 1, vec, net->buffers + l->buf_off + l->C, NULL, NULL);
            break;
        default: break;
        }
    }
    return n;
}

static double best_of(double a, double b) { return a < b ? a : b; }

int net_conv_pass_times(CnnNet *net, int i, int B, int reps, double t[3]) {
    if (i < 0 || i >= net->L || net->layers[i].spec.kind != LAYER_CONV || !net->input) return 0;
    Layer *l = &net->layers[i];
    const float *x = i > 0 ? net->layers[i - 1].out : net->input;
    float *saved = malloc(sizeof(float) * net->n_params);
    if (!saved) return 0;
    memcpy(saved, net->grads, sizeof(float) * net->n_params);
    t[0] = t[1] = t[2] = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = omp_get_wtime();
        conv2d_forward(&l->conv, x, l->out, B, &net->ws);  // the same values again
        double t1 = omp_get_wtime();
        conv2d_backward(&l->conv, x, l->out, NULL, B, &net->ws);  // any dy will do for timing
        double t2 = omp_get_wtime();
        conv2d_backward(&l->conv, x, l->out, net->gbuf[0], B, &net->ws);
        double t3 = omp_get_wtime();
        t[0] = best_of(t[0], t1 - t0);
        t[2] = best_of(t[2], t2 - t1);
        t[1] = best_of(t[1], (t3 - t2) - (t2 - t1));
    }
    memcpy(net->grads, saved, sizeof(float) * net->n_params);
    free(saved);
    return 1;
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
    info->kind = layer_kind_name(l->spec.kind);
    layer_spec_format(&l->spec, info->text, sizeof info->text);
    info->C = l->C; info->H = l->H; info->W = l->W;
    info->OC = l->OC; info->OH = l->OH; info->OW = l->OW;
    info->n_weight = l->n_w;
    info->n_bias = l->n_b;
    info->n_buffer = l->n_buf;
    info->flops = layer_flops(l);
}
