// Fully connected layer y = x W^T + b, PyTorch's Linear layout W (OUT, IN).
// The products run in blocks fixed by the shapes alone, never by the thread
// count: the forward pass and dx in the batch chunks (OpenBLAS ran 16-row
// blocks of tfcnn's dense(64) forward 4-8x slower than 4-row ones); the
// weight gradient in blocks of 16 output rows, each one product over the
// whole batch added into dW, so no per-chunk partials are summed afterwards.
#include <string.h>

#include "layers/layer.h"

#define DW_ROWS 16  // output rows per weight-gradient product

void dense_forward(const Dense *l, const float *x, float *y, int B) {
    // x (B,IN), w (OUT,IN), b (OUT), y (B,OUT)
    const int nblocks = batch_chunks(B);
#pragma omp parallel for schedule(static) if ((size_t)B * l->IN * l->OUT >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nblocks; c++) {
        const int i0 = chunk_begin(B, nblocks, c), rows = chunk_begin(B, nblocks, c + 1) - i0;
        float *yc = y + (size_t)i0 * l->OUT;
        if (l->has_bias)
            for (int i = 0; i < rows; i++) memcpy(yc + (size_t)i * l->OUT, l->b, sizeof(float) * l->OUT);
        gemm(0, 1, rows, l->OUT, l->IN, 1.0f, x + (size_t)i0 * l->IN, l->IN, l->w, l->IN,
             l->has_bias ? 1.0f : 0.0f, yc, l->OUT);
    }
}

// db[o] += sum over the batch of dy[i][o], in eight running sums added in
// lane order (a fixed order, and chains that overlap).
static void bias_grad(const float *dy, int B, int OUT, int o, float *db) {
    float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < B; i++) lane[i & 7] += dy[(size_t)i * OUT + o];
    float s = 0.0f;
    for (int k = 0; k < 8; k++) s += lane[k];
    db[o] += s;
}

void dense_backward(const Dense *l, const float *x, const float *dy, float *dx, int B, Workspace *ws) {
    // x (B,IN), dy (B,OUT), dx (B,IN) or NULL; dw (OUT,IN) +=, db (OUT) +=
    (void)ws;
    const int nw_blocks = (l->OUT + DW_ROWS - 1) / DW_ROWS, nblocks = batch_chunks(B);
    const int par = (size_t)B * l->IN * l->OUT >= CNN_PAR_MIN_WORK;
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static) nowait
        for (int k = 0; k < nw_blocks; k++) {
            const int o0 = k * DW_ROWS, n = l->OUT - o0 < DW_ROWS ? l->OUT - o0 : DW_ROWS;
            // dW[o0 .. o0 + n) += dy[:, o0 .. o0 + n)^T x
            gemm(1, 0, n, l->IN, B, 1.0f, dy + o0, l->OUT, x, l->IN, 1.0f, l->dw + (size_t)o0 * l->IN, l->IN);
            if (l->has_bias)
                for (int o = o0; o < o0 + n; o++) bias_grad(dy, B, l->OUT, o, l->db);
        }
        if (dx) {
#pragma omp for schedule(static)
            for (int c = 0; c < nblocks; c++) {
                const int i0 = chunk_begin(B, nblocks, c), rows = chunk_begin(B, nblocks, c + 1) - i0;
                gemm(0, 0, rows, l->IN, l->OUT, 1.0f, dy + (size_t)i0 * l->OUT, l->OUT, l->w, l->IN, 0.0f,
                     dx + (size_t)i0 * l->IN, l->IN);
            }
        }
    }
}

// ---------------------------------------------------------------- layer row
// dense(out, bias=1) on a flat input: PyTorch's Linear.
static void dense_defaults(LayerSpec *s) { s->bias = 1; }

static int dense_set_arg(LayerSpec *s, const char *key, const char *val, const ArgSite *at,
                         CnnStatus *st) {
    if (!strcmp(key, "out")) *st = layer_arg_int(at, key, val, 1, 1 << 24, &s->a);
    else if (!strcmp(key, "bias")) *st = layer_arg_int(at, key, val, 0, 1, &s->bias);
    else return layer_lr_arg(s, key, val, at, st);
    return 1;
}

static CnnStatus dense_finish(LayerSpec *s, const ArgSite *at) {
    if (!s->a)
        return cnn_error(CNN_EFORMAT, "model description: layer %d: dense needs a unit count, "
                         "e.g. dense(10)", at->idx);
    return CNN_OK;
}

static void dense_format(const LayerSpec *s, char *buf, size_t n) {
    char lr[64];
    snprintf(buf, n, "dense(%d%s%s)", s->a, s->bias ? "" : ",bias=0", layer_lr_text(s, lr, sizeof lr));
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
    .wire = dense_wire,
    .init = dense_init,
    .flops = layer_weight_flops,
    .tensors = dense_tensors,
    .forward = dense_forward_row,
    .backward = dense_backward_row,
};
