// 2-D convolution through im2col + SGEMM, parallel over fixed batch chunks.
// Each chunk owns one im2col buffer and one dW|db partial, so results do not
// depend on how chunks are spread over threads.
#include <string.h>

#include "internal.h"

static int is_pointwise(const Conv2d *l) {
    return l->KH == 1 && l->KW == 1 && l->S == 1 && l->P == 0;
}

size_t conv2d_col_size(const Conv2d *l) {
    const size_t col = is_pointwise(l) ? 0 : (size_t)l->C * l->KH * l->KW * l->OH * l->OW;
    const size_t direct = conv2d_direct_scratch_size(l);
    return col > direct ? col : direct;
}

static int use_direct(const Conv2d *l) {
    const Kernels *k = kernels();
    return k->conv_fwd_blocked && k->conv_wgrad_blocked && k->block_pad && k->unblock &&
           conv2d_direct_applies(l);
}

void conv2d_bias_grad(const float *dy, int OC, size_t N, float *db) {
    for (int oc = 0; oc < OC; oc++) {
        const float *row = dy + (size_t)oc * N;
        float s = 0.0f;
        for (size_t p = 0; p < N; p++) s += row[p];
        db[oc] += s;
    }
}

// y (OC,N) = b + w (OC,K) . src (K,N)
static void output_gemm(const Conv2d *l, int K, int N, const float *src, float *y) {
    const Kernels *k = kernels();
    if (K <= CNN_SMALL_K_MAX && k->gemm_small_k) {
        k->gemm_small_k(l->OC, N, K, l->w, src, l->has_bias ? l->b : NULL, y);
        return;
    }
    if (l->has_bias)
        for (int oc = 0; oc < l->OC; oc++)
            for (int p = 0; p < N; p++) y[(size_t)oc * N + p] = l->b[oc];
    gemm(0, 0, l->OC, N, K, 1.0f, l->w, K, src, N, l->has_bias ? 1.0f : 0.0f, y, N);
}

// dw (OC,K) = beta dw + dy (OC,N) . src (K,N)^T
static void weight_gemm(const Conv2d *l, int K, int N, const float *dy, const float *src, float beta,
                        float *dw) {
    const Kernels *k = kernels();
    if (K <= CNN_SMALL_K_MAX && k->gemm_small_k_nt) {
        k->gemm_small_k_nt(l->OC, K, N, dy, src, beta, dw);
        return;
    }
    gemm(0, 1, l->OC, K, N, 1.0f, dy, N, src, N, beta, dw, K);
}

void conv2d_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws) {
    // x (B,C,H,W), w (OC,C*KH*KW), b (OC), y (B,OC,OH,OW)
    if (use_direct(l)) {
        conv2d_direct_forward(l, x, y, B, ws);
        return;
    }
    const int K = l->C * l->KH * l->KW, N = l->OH * l->OW;
    const size_t in_size = (size_t)l->C * l->H * l->W, out_size = (size_t)l->OC * N;
    const int nchunks = batch_chunks(B);
#pragma omp parallel for schedule(static) if ((size_t)B * l->OC * K * N >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        float *col = ws->col + (size_t)c * ws->col_size;
        for (int i = chunk_begin(B, nchunks, c); i < chunk_begin(B, nchunks, c + 1); i++) {
            const float *xi = x + (size_t)i * in_size;
            float *yi = y + (size_t)i * out_size;
            const float *src = xi;
            if (!is_pointwise(l)) {
                im2col(xi, l->C, l->H, l->W, l->KH, l->KW, l->S, l->P, l->OH, l->OW, col);
                src = col;
            }
            output_gemm(l, K, N, src, yi);
        }
    }
}

void conv2d_backward(const Conv2d *l, const float *x, const float *dy, float *dx, int B,
                     Workspace *ws) {
    // x (B,C,H,W), dy (B,OC,OH,OW), dx (B,C,H,W) or NULL; dw (OC,C*KH*KW) +=, db (OC) +=
    if (use_direct(l)) {
        conv2d_direct_backward(l, x, dy, dx, B, ws);
        return;
    }
    const int K = l->C * l->KH * l->KW, N = l->OH * l->OW;
    const size_t in_size = (size_t)l->C * l->H * l->W, out_size = (size_t)l->OC * N;
    const size_t nw = (size_t)l->OC * K, stride = ws->partial_size;
    const int nchunks = batch_chunks(B);
    const int pointwise = is_pointwise(l);
    CNN_ASSERT(nw + (size_t)l->OC <= stride);
#pragma omp parallel for schedule(static) if ((size_t)B * l->OC * K * N >= CNN_PAR_MIN_WORK)
    for (int c = 0; c < nchunks; c++) {
        float *col = ws->col + (size_t)c * ws->col_size;
        float *pdw = ws->partial + (size_t)c * stride, *pdb = pdw + nw;
        memset(pdb, 0, sizeof(float) * l->OC);
        const int i0 = chunk_begin(B, nchunks, c), i1 = chunk_begin(B, nchunks, c + 1);
        for (int i = i0; i < i1; i++) {
            const float *xi = x + (size_t)i * in_size;
            const float *dyi = dy + (size_t)i * out_size;
            const float *src = xi;
            if (!pointwise) {
                im2col(xi, l->C, l->H, l->W, l->KH, l->KW, l->S, l->P, l->OH, l->OW, col);
                src = col;
            }
            // dW_chunk += dy_i (OC,N) . col_i^T (N,K)
            weight_gemm(l, K, N, dyi, src, i == i0 ? 0.0f : 1.0f, pdw);
            conv2d_bias_grad(dyi, l->OC, (size_t)N, pdb);
            if (!dx) continue;
            float *dxi = dx + (size_t)i * in_size;
            if (pointwise) {
                gemm(1, 0, K, N, l->OC, 1.0f, l->w, K, dyi, N, 0.0f, dxi, N);
            } else {
                // dcol = W^T (K,OC) . dy_i (OC,N), then scatter back onto the image.
                gemm(1, 0, K, N, l->OC, 1.0f, l->w, K, dyi, N, 0.0f, col, N);
                col2im(col, l->C, l->H, l->W, l->KH, l->KW, l->S, l->P, l->OH, l->OW, dxi);
            }
        }
    }
    reduce_chunks(l->dw, ws->partial, stride, nchunks, nw);
    if (l->has_bias) reduce_chunks(l->db, ws->partial + nw, stride, nchunks, (size_t)l->OC);
}

void conv2d_forward_naive(const Conv2d *l, const float *x, float *y, int B) {
    // Direct convolution, the definition itself; x (B,C,H,W) -> y (B,OC,OH,OW).
    for (int b = 0; b < B; b++)
        for (int oc = 0; oc < l->OC; oc++)
            for (int oh = 0; oh < l->OH; oh++)
                for (int ow = 0; ow < l->OW; ow++) {
                    double s = l->has_bias ? l->b[oc] : 0.0;
                    for (int c = 0; c < l->C; c++)
                        for (int kh = 0; kh < l->KH; kh++)
                            for (int kw = 0; kw < l->KW; kw++) {
                                int ih = oh * l->S - l->P + kh, iw = ow * l->S - l->P + kw;
                                if (ih < 0 || ih >= l->H || iw < 0 || iw >= l->W) continue;
                                s += (double)x[(((size_t)b * l->C + c) * l->H + ih) * l->W + iw] *
                                     l->w[(((size_t)oc * l->C + c) * l->KH + kh) * l->KW + kw];
                            }
                    y[(((size_t)b * l->OC + oc) * l->OH + oh) * l->OW + ow] = (float)s;
                }
}
