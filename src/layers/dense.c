// Fully connected layer y = x W^T + b, PyTorch's Linear layout W (OUT, IN).
// The products run in the batch chunks (the forward pass and dx; OpenBLAS
// ran 16-row blocks of tfcnn's dense(64) forward 4-8x slower than 4-row
// ones). The weight gradient is summed over the batch as every sum over it
// is (batch_sum): per chunk, then the chunks' tree, in blocks of 16 output
// rows (dense_wgrad_impl.h: OpenBLAS ran the chunks' small products 3x
// slower); only the rank exchange waits for all of them.
#include <string.h>

#include "kernels/dense_wgrad_impl.h"
#include "layers/layer.h"

#define DW_ROWS 16  // output rows per weight-gradient block

void dense_forward(const Dense *l, const float *x, float *y, int B, Workspace *ws) {
    // x (B,IN), w (OUT,IN), b (OUT), y (B,OUT)
    if (l->bf16) {
        dense_bf16_forward(l, x, y, B, ws);
        return;
    }
    const Kernels *k = kernels();
    const int nblocks = ws_chunks(ws, B);
#pragma omp parallel for schedule(static) if ((size_t)B * l->IN * l->OUT >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nblocks; c++) {
        const int i0 = ws_chunk_begin(ws, B, c), rows = ws_chunk_begin(ws, B, c + 1) - i0;
        if (rows == 0) continue;
        float *yc = y + (size_t)i0 * l->OUT;
        if (k->dense_fwd) {
            k->dense_fwd(x + (size_t)i0 * l->IN, rows, l->IN, l->w, l->OUT, l->has_bias ? l->b : NULL, yc);
        } else {
            if (l->has_bias)
                for (int i = 0; i < rows; i++) memcpy(yc + (size_t)i * l->OUT, l->b, sizeof(float) * l->OUT);
            gemm(0, 1, rows, l->OUT, l->IN, 1.0f, x + (size_t)i0 * l->IN, l->IN, l->w, l->IN,
                 l->has_bias ? 1.0f : 0.0f, yc, l->OUT);
        }
        if (l->relu) relu_in_place(yc, (size_t)rows * l->OUT);
    }
}

// The row the chunks' tree sums into (then exchanged between ranks): dW (OUT, IN), then db (OUT).
size_t dense_partial_size(const Dense *l) { return (size_t)l->OUT * l->IN + (size_t)l->OUT; }

void dense_backward(const Dense *l, const float *x, const float *dy, float *dx, int B, Workspace *ws) {
    // x (B,IN), dy (B,OUT), dx (B,IN) or NULL; dw (OUT,IN) +=, db (OUT) +=
    if (l->bf16) {
        dense_bf16_backward(l, x, dy, dx, B, ws);
        return;
    }
    const int nw_blocks = (l->OUT + DW_ROWS - 1) / DW_ROWS, nchunks = ws_chunks(ws, B);
    const size_t nw = (size_t)l->OUT * l->IN, stride = ws->partial_size;
    CNN_ASSERT(dense_partial_size(l) <= stride && nchunks <= DENSE_MAX_CHUNKS);
    const Kernels *k = kernels();
    int start[DENSE_MAX_CHUNKS + 1];
    for (int c = 0; c <= nchunks; c++) start[c] = ws_chunk_begin(ws, B, c);
    float *sum = ws->partial;  // the chunks' tree: dW then db
    const int par = (size_t)B * l->IN * l->OUT >= CNN_PAR_MIN_WORK;
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static) nowait
        for (int b = 0; b < nw_blocks; b++) {
            const int o0 = b * DW_ROWS, n = l->OUT - o0 < DW_ROWS ? l->OUT - o0 : DW_ROWS;
            float *rows = sum + (size_t)o0 * l->IN;
            if (k->dense_wgrad_tree) k->dense_wgrad_tree(dy, l->OUT, x, l->IN, start, nchunks, o0, n, rows);
            else dense_wgrad_tree_impl(dy, l->OUT, x, l->IN, start, nchunks, o0, n, rows);
            for (int o = o0; o < o0 + n && l->has_bias; o++) {
                float part[DENSE_MAX_CHUNKS][1];
                for (int c = 0; c < nchunks; c++) {
                    float s = 0.0f;
                    for (int i = start[c]; i < start[c + 1]; i++) s += dy[(size_t)i * l->OUT + o];
                    part[c][0] = s;
                }
                chunk_tree_sum(&part[0][0], 1, nchunks, 1);
                sum[nw + o] = part[0][0];
            }
        }
        if (dx) {
#pragma omp for schedule(static)
            for (int c = 0; c < nchunks; c++) {
                const int rows = start[c + 1] - start[c];
                if (rows == 0) continue;
                if (k->dense_dx)
                    k->dense_dx(dy + (size_t)start[c] * l->OUT, rows, l->OUT, l->w, l->IN, dx + (size_t)start[c] * l->IN);
                else
                    gemm(0, 0, rows, l->IN, l->OUT, 1.0f, dy + (size_t)start[c] * l->OUT, l->OUT, l->w, l->IN, 0.0f,
                         dx + (size_t)start[c] * l->IN, l->IN);
            }
        }
    }
    // The chunks' tree is done: only the ranks' part is left.
    batch_sum(ws, sum, stride, nchunks > 0 ? 1 : 0, nw + (l->has_bias ? (size_t)l->OUT : 0));
    add_floats(l->dw, sum, nw);
    if (l->has_bias) add_floats(l->db, sum + nw, (size_t)l->OUT);
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
    l->dense = (Dense){.IN = l->C, .OUT = l->OC, .has_bias = l->spec.bias, .relu = l->relu_out, .w = w,
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

static void dense_scratch(const Layer *l, int max_batch, Workspace *need) {
    const Dense d = {.IN = l->C, .OUT = l->OC};
    const int rows = (max_batch + batch_chunks(max_batch) - 1) / batch_chunks(max_batch);
    if (dense_partial_size(&d) > need->partial_size) need->partial_size = dense_partial_size(&d);
    // Any net may switch to bf16 (cnn_net_set_precision) after it is built.
    if (dense_bf16_scratch_size(&d, rows) > need->col_size) need->col_size = dense_bf16_scratch_size(&d, rows);
    if (dense_bf16_packed_size(&d) > need->packed_size) need->packed_size = dense_bf16_packed_size(&d);
}

static void dense_forward_row(Layer *l, const float *x, const LayerRun *r) {
    dense_forward(&l->dense, x, l->out, r->B, r->ws);
}

static void dense_backward_row(Layer *l, const float *x, const float *dy, float *dx,
                               const LayerRun *r) {
    dense_backward(&l->dense, x, dy, dx, r->B, r->ws);
}

const LayerOps dense_layer = {
    .name = "dense",
    .aliases = {"linear", "fc"},
    .flags = LAYER_RELU_OUT,
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
