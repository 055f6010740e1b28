// Dense layer in bf16 mixed precision, portable C (see conv2d_bf16.c for
// the arithmetic). The order of the sums:
//  - forward, y[b,o]: from the bias, the inputs in pairs (1,0), (3,2), ...
//    (the odd one's product first, as VDPBF16PS); an odd count's last alone;
//  - input gradient, dx[b,i]: from 0, the outputs in pairs likewise;
//  - weight gradient, dw[o,i]: from 0 in each batch chunk, its rows in
//    pairs likewise, then the chunks' fixed tree in fp32 (batch_sum);
//  - the bias gradient in fp32: each chunk's rows in order, then the tree.
#include <string.h>

#include "layers/layer.h"

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

size_t dense_bf16_scratch_size(const Dense *l) { return round16((size_t)l->IN) + round16((size_t)l->OUT); }
size_t dense_bf16_packed_size(const Dense *l) { return (size_t)l->IN * l->OUT; }

void dense_bf16_forward(const Dense *l, const float *x, float *y, int B, Workspace *ws) {
    // x (B,IN), w (OUT,IN), b (OUT), y (B,OUT)
    const int IN = l->IN, OUT = l->OUT;
    CNN_ASSERT(dense_bf16_packed_size(l) <= ws->packed_size && dense_bf16_scratch_size(l) <= ws->col_size);
    float *wt = ws->packed;  // (IN, OUT): an input's OUT weights side by side
    for (int o = 0; o < OUT; o++)
        for (int i = 0; i < IN; i++) wt[(size_t)i * OUT + o] = bf16_round(l->w[(size_t)o * IN + i]);
    const int nchunks = ws_chunks(ws, B);
#pragma omp parallel for schedule(static) if ((size_t)B * IN * OUT >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        float *xr = ws->col + (size_t)c * ws->col_size;
        for (int r = ws_chunk_begin(ws, B, c); r < ws_chunk_begin(ws, B, c + 1); r++) {
            float *yr = y + (size_t)r * OUT;
            bf16_round_array(x + (size_t)r * IN, xr, (size_t)IN);
            for (int o = 0; o < OUT; o++) yr[o] = l->has_bias ? bf16_step(l->b[o], 0.0f, 0.0f) + 0.0f : 0.0f;
            bf16_pair_steps(yr, xr, wt, (size_t)OUT, IN, OUT);
            if (l->relu) relu_in_place(yr, (size_t)OUT);
        }
    }
}

void dense_bf16_backward(const Dense *l, const float *x, const float *dy, float *dx, int B, Workspace *ws) {
    // x (B,IN), dy (B,OUT), dx (B,IN) or NULL; dw (OUT,IN) +=, db (OUT) +=
    const int IN = l->IN, OUT = l->OUT;
    const size_t nw = (size_t)OUT * IN, stride = ws->partial_size;
    CNN_ASSERT(nw + (size_t)OUT <= stride && dense_bf16_packed_size(l) <= ws->packed_size &&
               dense_bf16_scratch_size(l) <= ws->col_size);
    float *wr = ws->packed;  // (OUT, IN), rounded
    bf16_round_array(l->w, wr, nw);
    const int nchunks = ws_chunks(ws, B);
#pragma omp parallel for schedule(static) if ((size_t)B * IN * OUT >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        float *xr = ws->col + (size_t)c * ws->col_size, *dyr = xr + round16((size_t)IN);
        float *pdw = ws->partial + (size_t)c * stride, *pdb = pdw + nw;
        memset(pdw, 0, sizeof(float) * (nw + (size_t)OUT));
        const int r0 = ws_chunk_begin(ws, B, c), r1 = ws_chunk_begin(ws, B, c + 1);
        for (int r = r0; r < r1; r++) {
            const float *dyrow = dy + (size_t)r * OUT;
            for (int o = 0; o < OUT; o++) pdb[o] += dyrow[o];
            if (!dx) continue;
            bf16_round_array(dyrow, dyr, (size_t)OUT);
            float *dxr = dx + (size_t)r * IN;
            memset(dxr, 0, sizeof(float) * (size_t)IN);
            bf16_pair_steps(dxr, dyr, wr, (size_t)IN, OUT, IN);
        }
        for (int r = r0; r < r1; r += 2)
            for (int q = r + 1; q >= r; q--) {  // row r+1 first, then r
                if (q >= r1) continue;
                bf16_round_array(x + (size_t)q * IN, xr, (size_t)IN);
                bf16_round_array(dy + (size_t)q * OUT, dyr, (size_t)OUT);
                for (int o = 0; o < OUT; o++) bf16_axpy_steps(pdw + (size_t)o * IN, xr, dyr[o], IN);
            }
    }
    batch_sum(ws, ws->partial, stride, nchunks, nw + (l->has_bias ? (size_t)OUT : 0));
    add_floats(l->dw, ws->partial, nw);
    if (l->has_bias) add_floats(l->db, ws->partial + nw, (size_t)OUT);
}
