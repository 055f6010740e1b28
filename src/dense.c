// Fully connected layer y = x W^T + b, PyTorch's Linear layout W (OUT, IN).
// Forward and dx run over fixed batch chunks; dW|db as per-chunk partials
// added in chunk order (see batch_chunks).
#include <string.h>

#include "internal.h"

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
