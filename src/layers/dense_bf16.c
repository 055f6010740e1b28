// Dense layer in bf16 mixed precision (see conv2d_bf16.c for the
// arithmetic), through the backend's bf16 product. The order of the sums:
//  - forward, y[b,o]: from the bias, the inputs in pairs (1,0), (3,2), ...
//    (the odd one's product first, as VDPBF16PS); an odd count's last alone;
//  - input gradient, dx[b,i]: from 0, the outputs in pairs likewise;
//  - weight gradient, dw[o,i]: from 0 in each batch chunk, its rows in
//    pairs likewise, then the chunks' fixed tree in fp32 (batch_sum);
//  - the bias gradient in fp32: each chunk's rows in order, then the tree.
// The forward pass and the input gradient run as (chunk, 32 outputs) tasks:
// each output is one sum whoever computes it.
#include <string.h>

#include "layers/layer.h"

static size_t r16(size_t n) { return (n + 15) & ~(size_t)15; }
static size_t panels(int n) { return (size_t)(n + BF16_LANES - 1) / BF16_LANES; }
static int even(int n) { return (n + 1) & ~1; }

// A chunk's scratch (floats), for up to `rows` rows: x and dy rounded
// (rows of 16-bit values), dy transposed, x's pairs of rows in lanes, zeros.
static size_t x_size(const Dense *l, int rows) { return r16((size_t)rows * even(l->IN) / 2); }
static size_t dy_size(const Dense *l, int rows) { return r16((size_t)rows * even(l->OUT) / 2); }
static size_t dyt_size(const Dense *l, int rows) { return r16((size_t)l->OUT * even(rows) / 2); }
static size_t xb_size(const Dense *l, int rows) { return r16(panels(l->IN) * even(rows) / 2 * BF16_LANES); }

size_t dense_bf16_scratch_size(const Dense *l, int rows) {
    return x_size(l, rows) + dy_size(l, rows) + dyt_size(l, rows) + xb_size(l, rows) + r16((size_t)l->IN);
}

static size_t fwd_w_size(const Dense *l) { return r16(panels(l->OUT) * even(l->IN) / 2 * BF16_LANES); }
static size_t dx_w_size(const Dense *l) { return r16(panels(l->IN) * even(l->OUT) / 2 * BF16_LANES); }

size_t dense_bf16_packed_size(const Dense *l) {
    const size_t fwd = fwd_w_size(l) + r16((size_t)l->OUT), dx = dx_w_size(l);
    return fwd > dx ? fwd : dx;
}

static int chunk_rows_max(const Workspace *ws, int B) {
    int most = 0;
    for (int c = 0; c < ws_chunks(ws, B); c++) {
        const int n = ws_chunk_begin(ws, B, c + 1) - ws_chunk_begin(ws, B, c);
        most = n > most ? n : most;
    }
    return most;
}

// Rows [r0, r1) of a (B, n) matrix rounded, n rounded up to even with zeros.
static void round_rows(const float *src, int r0, int r1, int n, uint16_t *dst) {
    const int np = even(n);
    for (int r = r0; r < r1; r++, dst += np) {
        const float *s = src + (size_t)r * n;
        for (int j = 0; j < n; j++) dst[j] = bf16_bits(s[j]);
        if (np > n) dst[n] = 0;
    }
}

static float weight(const Dense *l, int o, int i) { return o < l->OUT && i < l->IN ? l->w[(size_t)o * l->IN + i] : 0.0f; }

void dense_bf16_forward(const Dense *l, const float *x, float *y, int B, Workspace *ws) {
    // x (B,IN), w (OUT,IN), b (OUT), y (B,OUT)
    const int IN = l->IN, OUT = l->OUT, kp = even(IN) / 2, rows = chunk_rows_max(ws, B);
    CNN_ASSERT(dense_bf16_packed_size(l) <= ws->packed_size && dense_bf16_scratch_size(l, rows) <= ws->col_size);
    // Lanes: panels of 32 outputs, pair j = inputs 2j, 2j+1.
    uint32_t *wb = (uint32_t *)ws->packed;
    float *bias = ws->packed + fwd_w_size(l);
    for (size_t o = 0; o < panels(OUT) * BF16_LANES; o++)
        for (int j = 0; j < kp; j++)
            wb[((o / BF16_LANES) * kp + j) * BF16_LANES + o % BF16_LANES] =
                bf16_pair(weight(l, (int)o, 2 * j), weight(l, (int)o, 2 * j + 1));
    for (int o = 0; o < OUT; o++) bias[o] = l->has_bias ? bf16_step(l->b[o], 0.0f, 0.0f) + 0.0f : 0.0f;
    const int nchunks = ws_chunks(ws, B), np = (int)panels(OUT);
    static const ptrdiff_t outer0 = 0;
#pragma omp parallel if ((size_t)B * IN * OUT >= CNN_PAR_MIN_WORK)
    {
#pragma omp for schedule(static)
        for (int c = 0; c < nchunks; c++)
            round_rows(x, ws_chunk_begin(ws, B, c), ws_chunk_begin(ws, B, c + 1), IN,
                       (uint16_t *)(ws->col + (size_t)c * ws->col_size));
#pragma omp for schedule(static)
        for (int task = 0; task < nchunks * np; task++) {
            const int c = task / np, j0 = task % np * BF16_LANES, r0 = ws_chunk_begin(ws, B, c);
            const int m = ws_chunk_begin(ws, B, c + 1) - r0, n = OUT - j0 < BF16_LANES ? OUT - j0 : BF16_LANES;
            if (m == 0) continue;
            const Bf16Gemm gm = {.m = m, .n = n, .kr = 1, .ks = kp,
                                 .a = (const uint16_t *)(ws->col + (size_t)c * ws->col_size), .a_outer = &outer0,
                                 .a_step = 2, .a_row = even(IN), .b = wb + (size_t)(j0 / BF16_LANES) * kp * BF16_LANES,
                                 .init = bias + j0, .c = y + (size_t)r0 * OUT + j0, .ldc = (size_t)OUT};
            bf16_gemm(&gm);
            if (l->relu)
                for (int r = 0; r < m; r++) relu_in_place(y + (size_t)(r0 + r) * OUT + j0, (size_t)n);
        }
    }
}

void dense_bf16_backward(const Dense *l, const float *x, const float *dy, float *dx, int B, Workspace *ws) {
    // x (B,IN), dy (B,OUT), dx (B,IN) or NULL; dw (OUT,IN) +=, db (OUT) +=
    const int IN = l->IN, OUT = l->OUT, rows = chunk_rows_max(ws, B), kpo = even(OUT) / 2;
    const size_t nw = (size_t)OUT * IN, stride = ws->partial_size;
    CNN_ASSERT(nw + (size_t)OUT <= stride && dense_bf16_packed_size(l) <= ws->packed_size &&
               dense_bf16_scratch_size(l, rows) <= ws->col_size);
    // The input gradient's lanes: panels of 32 inputs, pair j = outputs 2j, 2j+1.
    uint32_t *wd = (uint32_t *)ws->packed;
    if (dx)
        for (size_t i = 0; i < panels(IN) * BF16_LANES; i++)
            for (int j = 0; j < kpo; j++)
                wd[((i / BF16_LANES) * kpo + j) * BF16_LANES + i % BF16_LANES] =
                    bf16_pair(weight(l, 2 * j, (int)i), weight(l, 2 * j + 1, (int)i));
    const int nchunks = ws_chunks(ws, B), np = (int)panels(IN);
    static const ptrdiff_t outer0 = 0;
#pragma omp parallel if ((size_t)B * IN * OUT >= CNN_PAR_MIN_WORK)
    {
#pragma omp for schedule(static)
        for (int c = 0; c < nchunks; c++) {
            float *base = ws->col + (size_t)c * ws->col_size;
            uint16_t *dyr = (uint16_t *)(base + x_size(l, rows)), *dyt = (uint16_t *)(base + x_size(l, rows) + dy_size(l, rows));
            uint32_t *xb = (uint32_t *)(base + x_size(l, rows) + dy_size(l, rows) + dyt_size(l, rows));
            float *zeros = (float *)(xb + xb_size(l, rows));
            float *pdw = ws->partial + (size_t)c * stride, *pdb = pdw + nw;
            const int r0 = ws_chunk_begin(ws, B, c), r1 = ws_chunk_begin(ws, B, c + 1), m = r1 - r0, mp = even(m);
            memset(pdw, 0, sizeof(float) * (nw + (size_t)OUT));
            memset(zeros, 0, sizeof(float) * (size_t)IN);
            for (int r = r0; r < r1; r++)
                for (int o = 0; o < OUT; o++) pdb[o] += dy[(size_t)r * OUT + o];
            if (m == 0) continue;
            if (dx) round_rows(dy, r0, r1, OUT, dyr);
            // Weight gradient: rows the outputs, pair j = rows r0 + 2j, r0 + 2j + 1.
            for (int o = 0; o < OUT; o++)
                for (int r = 0; r < mp; r++) dyt[(size_t)o * mp + r] = r < m ? bf16_bits(dy[(size_t)(r0 + r) * OUT + o]) : 0;
            for (size_t i = 0; i < panels(IN) * BF16_LANES; i++)
                for (int j = 0; j < mp / 2; j++) {
                    const int ra = r0 + 2 * j, rb = ra + 1;
                    xb[((i / BF16_LANES) * (mp / 2) + j) * BF16_LANES + i % BF16_LANES] =
                        (int)i < IN ? bf16_pair(x[(size_t)ra * IN + i], rb < r1 ? x[(size_t)rb * IN + i] : 0.0f) : 0;
                }
            const Bf16Gemm gm = {.m = OUT, .n = IN, .kr = 1, .ks = mp / 2, .a = dyt, .a_outer = &outer0,
                                 .a_step = 2, .a_row = mp, .b = xb, .c = pdw, .ldc = (size_t)IN};
            bf16_gemm(&gm);
        }
        if (dx) {
#pragma omp for schedule(static)
            for (int task = 0; task < nchunks * np; task++) {
                const int c = task / np, j0 = task % np * BF16_LANES, r0 = ws_chunk_begin(ws, B, c);
                const int m = ws_chunk_begin(ws, B, c + 1) - r0, n = IN - j0 < BF16_LANES ? IN - j0 : BF16_LANES;
                if (m == 0) continue;
                float *base = ws->col + (size_t)c * ws->col_size;
                const uint16_t *dyr = (const uint16_t *)(base + x_size(l, rows));
                const float *zeros = base + x_size(l, rows) + dy_size(l, rows) + dyt_size(l, rows) + xb_size(l, rows);
                const Bf16Gemm gm = {.m = m, .n = n, .kr = 1, .ks = kpo, .a = dyr, .a_outer = &outer0, .a_step = 2,
                                     .a_row = even(OUT), .b = wd + (size_t)(j0 / BF16_LANES) * kpo * BF16_LANES,
                                     .init = zeros + j0, .c = dx + (size_t)r0 * IN + j0, .ldc = (size_t)IN};
                bf16_gemm(&gm);
            }
        }
    }
    batch_sum(ws, ws->partial, stride, nchunks, nw + (l->has_bias ? (size_t)OUT : 0));
    add_floats(l->dw, ws->partial, nw);
    if (l->has_bias) add_floats(l->db, ws->partial + nw, (size_t)OUT);
}
