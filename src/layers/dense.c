// Fully connected layer y = x W^T + b, PyTorch's Linear layout W (OUT, IN).
// Forward and dx run over fixed batch chunks; dW|db as per-chunk partials
// added in chunk order (see batch_chunks).
#include <string.h>

#include "layers/layer.h"

void dense_forward(const Dense *l, const float *x, float *y, int B) {
    // x (B,IN), w (OUT,IN), b (OUT), y (B,OUT)
    const int nchunks = batch_chunks(B);
#pragma omp parallel for schedule(static) if ((size_t)B * l->IN * l->OUT >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        const int i0 = chunk_begin(B, nchunks, c), rows = chunk_begin(B, nchunks, c + 1) - i0;
        float *yc = y + (size_t)i0 * l->OUT;
        if (l->has_bias)
            for (int i = 0; i < rows; i++) memcpy(yc + (size_t)i * l->OUT, l->b, sizeof(float) * l->OUT);
        gemm(0, 1, rows, l->OUT, l->IN, 1.0f, x + (size_t)i0 * l->IN, l->IN, l->w, l->IN,
             l->has_bias ? 1.0f : 0.0f, yc, l->OUT);
    }
}

void dense_backward(const Dense *l, const float *x, const float *dy, float *dx, int B,
                    Workspace *ws) {
    // x (B,IN), dy (B,OUT), dx (B,IN) or NULL; dw (OUT,IN) +=, db (OUT) +=
    const int nchunks = batch_chunks(B);
    const size_t nw = (size_t)l->OUT * l->IN, stride = ws->partial_size;
    CNN_ASSERT(nw + (size_t)l->OUT <= stride);
#pragma omp parallel for schedule(static) if ((size_t)B * l->IN * l->OUT >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        const int i0 = chunk_begin(B, nchunks, c), rows = chunk_begin(B, nchunks, c + 1) - i0;
        const float *xc = x + (size_t)i0 * l->IN, *dyc = dy + (size_t)i0 * l->OUT;
        float *pdw = ws->partial + (size_t)c * stride, *pdb = pdw + nw;
        gemm(1, 0, l->OUT, l->IN, rows, 1.0f, dyc, l->OUT, xc, l->IN, 0.0f, pdw, l->IN);
        for (int o = 0; o < l->OUT; o++) {
            float s = 0.0f;
            for (int i = 0; i < rows; i++) s += dyc[(size_t)i * l->OUT + o];
            pdb[o] = s;
        }
        if (dx)
            gemm(0, 0, rows, l->IN, l->OUT, 1.0f, dyc, l->OUT, l->w, l->IN, 0.0f,
                 dx + (size_t)i0 * l->IN, l->IN);
    }
    reduce_chunks(l->dw, ws->partial, stride, nchunks, nw);
    if (l->has_bias) reduce_chunks(l->db, ws->partial + nw, stride, nchunks, (size_t)l->OUT);
}

// ---------------------------------------------------------------- layer row
// dense(out, bias=1) on a flat input: PyTorch's Linear.
static void dense_defaults(LayerSpec *s) { s->bias = 1; }

static int dense_set_arg(LayerSpec *s, const char *key, const char *val, const ArgSite *at,
                         CnnStatus *st) {
    if (!strcmp(key, "out")) *st = layer_arg_int(at, key, val, 1, 1 << 24, &s->a);
    else if (!strcmp(key, "bias")) *st = layer_arg_int(at, key, val, 0, 1, &s->bias);
    else return 0;
    return 1;
}

static CnnStatus dense_finish(LayerSpec *s, const ArgSite *at) {
    if (!s->a)
        return cnn_error(CNN_EFORMAT, "model description: layer %d: dense needs a unit count, "
                         "e.g. dense(10)", at->idx);
    return CNN_OK;
}

static void dense_format(const LayerSpec *s, char *buf, size_t n) {
    snprintf(buf, n, "dense(%d%s)", s->a, s->bias ? "" : ",bias=0");
}

static CnnStatus dense_shape(Layer *l, int idx, const char *text) {
    if (l->H != 1 || l->W != 1)
        return cnn_error(CNN_ESHAPE, "layer %d %s: input is %dx%dx%d, dense needs a flat input "
                         "(put flatten or gap before it)", idx, text, l->C, l->H, l->W);
    l->OC = l->spec.a;
    l->n_w = (size_t)l->spec.a * l->C;
    l->n_b = l->spec.bias ? (size_t)l->spec.a : 0;
    return CNN_OK;
}

static void dense_scratch(const Layer *l, int max_batch, Workspace *need) {
    (void)max_batch;
    const size_t partial = l->n_w + (size_t)l->OC;
    if (partial > need->partial_size) need->partial_size = partial;
}

static void dense_wire(Layer *l, float *w, float *dw, float *buffers) {
    (void)buffers;
    l->dense = (Dense){.IN = l->C, .OUT = l->OC, .has_bias = l->spec.bias, .w = w,
                       .b = l->n_b ? w + l->n_w : NULL, .dw = dw,
                       .db = l->n_b ? dw + l->n_w : NULL};
}

static void dense_init(Layer *l, float *w, float *buffers, CnnRng *r, CnnInit init) {
    (void)buffers;
    layer_init_weights(l, w, r, init);
}

static int dense_tensors(const Layer *l, int idx, float *w, float *m, float *v, float *buffers,
                         NetTensor *out) {
    (void)buffers;
    const int64_t shape[2] = {l->OC, l->C};
    return layer_weight_bias_tensors(l, idx, 2, shape, w, m, v, out);
}

static void dense_forward_row(Layer *l, const float *x, const LayerRun *r) {
    dense_forward(&l->dense, x, l->out, r->B);
}

static void dense_backward_row(Layer *l, const float *x, const float *dy, float *dx,
                               const LayerRun *r) {
    dense_backward(&l->dense, x, dy, dx, r->B, r->ws);
}

const LayerOps dense_layer = {
    .name = "dense",
    .aliases = {"linear", "fc"},
    .positional = {"out"},
    .defaults = dense_defaults,
    .set_arg = dense_set_arg,
    .finish = dense_finish,
    .format = dense_format,
    .shape = dense_shape,
    .scratch = dense_scratch,
    .wire = dense_wire,
    .init = dense_init,
    .flops = layer_weight_flops,
    .tensors = dense_tensors,
    .forward = dense_forward_row,
    .backward = dense_backward_row,
};
