// Private to libcnnc: layer structs, kernels and their naive twins.
#ifndef CNNC_INTERNAL_H
#define CNNC_INTERNAL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"
#include "kernels/kernels.h"

// Programmer errors abort with file:line (never used for bad input).
#define CNN_ASSERT(x)                                                                   \
    do {                                                                                \
        if (!(x)) {                                                                     \
            fprintf(stderr, "cnnc: %s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

// a*b*c*d without overflow; returns 1 on overflow.
static inline int mul_overflow4(size_t a, size_t b, size_t c, size_t d, size_t *out) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r) || __builtin_mul_overflow(r, c, &r) ||
        __builtin_mul_overflow(r, d, &r))
        return 1;
    *out = r;
    return 0;
}

// ---------------------------------------------------------------- batch chunks
// Work that reduces over the batch (weight gradients) is split into a fixed
// number of chunks that depends on B only, never on the thread count; the
// per-chunk partial sums are then added in chunk order. That makes every
// result bit-identical for any number of threads.
#define CNN_MAX_CHUNKS 16

static inline int batch_chunks(int B) { return B < CNN_MAX_CHUNKS ? B : CNN_MAX_CHUNKS; }
static inline int chunk_begin(int B, int nchunks, int c) { return (int)((long)B * c / nchunks); }

// Loops over fewer elements than this run on one thread: waking the team
// costs more than it saves, and far more when the cores are shared (a
// descheduled thread stalls every barrier).
#define CNN_PAR_MIN_WORK 32768

// A training step of a data-parallel net (cnn_net_set_collective): the
// batch of B images has C = batch_chunks(B) chunks, of which this rank
// computes [c0, c1): its images [i0, i0 + the chunks' images).
typedef struct {
    int active;  // 0: the whole batch is here (one process, or evaluation)
    int B, C, c0, c1, i0;
} BatchSplit;

// Scratch memory shared by all layers, sized once at net build time.
typedef struct {
    float *col;          // CNN_MAX_CHUNKS x col_size: im2col matrices
    size_t col_size;
    float *partial;      // CNN_MAX_CHUNKS x partial_size: per-chunk partial sums over the batch
    size_t partial_size;
    float *packed;       // packed_size: one layer's weights in a kernel's layout
    size_t packed_size;
    BatchSplit split;    // this step's part of the batch (zeroed: all of it)
    CnnCollective *coll; // the other ranks (NULL: none)
    void *xbuf;          // coll's receive buffer
    size_t xbuf_bytes;
    size_t *xoff;        // 4 x ranks: the exchange's offsets and lengths
    int failed;          // an exchange failed
    double xseconds, xbytes;  // time in exchanges and bytes this rank sent, since the net was built
} Workspace;

// The chunks of this pass's batch that run here (B: the images here), where
// chunk c starts, and the most images one chunk holds.
static inline int ws_chunks(const Workspace *ws, int B) {
    return ws->split.active ? ws->split.c1 - ws->split.c0 : batch_chunks(B);
}
static inline int ws_chunk_begin(const Workspace *ws, int B, int c) {
    if (!ws->split.active) return chunk_begin(B, batch_chunks(B), c);
    const BatchSplit *s = &ws->split;
    return chunk_begin(s->B, s->C, s->c0 + c) - s->i0;
}
// The whole batch's images (B: the images here).
static inline int ws_batch(const Workspace *ws, int B) { return ws->split.active ? ws->split.B : B; }
static inline int ws_chunk_images_max(const Workspace *ws, int B) {
    const int all = ws_batch(ws, B);
    return (all + batch_chunks(all) - 1) / batch_chunks(all);
}

// Sums over the batch (batch_sum.c). partial holds one row of n values per
// chunk here (stride apart); they are summed over the fixed tree of the
// batch's chunks (cnn_net_set_collective), the other ranks' subtrees
// included, into partial's first row.
void batch_sum(Workspace *ws, float *partial, size_t stride, int nchunks, size_t n);
void batch_sum_f64(Workspace *ws, double *partial, size_t stride, int nchunks, size_t n);
// The tree over chunks [0, nchunks) alone, into the first row.
void chunk_tree_sum(float *partial, size_t stride, int nchunks, size_t n);
void chunk_tree_sum_f64(double *partial, size_t stride, int nchunks, size_t n);
// dst[j] += src[j], j < n.
void add_floats(float *dst, const float *src, size_t n);

// ---------------------------------------------------------------- bf16
// Mixed precision (cnn_net_set_precision): products of bf16 inputs and
// weights summed in fp32, as AVX512-BF16's VDPBF16PS does (src/bf16.c).
// bf16 values are kept as floats whose low 16 bits are zero.
// The same, as a float whose low 16 bits are zero.
static inline float bf16_round(float f) {
    const uint32_t u = (uint32_t)bf16_bits(f) << 16;
    float r;
    memcpy(&r, &u, sizeof r);
    return r;
}
void bf16_round_array(const float *src, float *dst, size_t n);
// dst[i] = bf16_bits(src[i]), i < n, on the backend's conversion.
void bf16_bits_array(const float *src, uint16_t *dst, size_t n);
// A pair of bf16 values as VDPBF16PS reads one (the even element low).
static inline uint32_t bf16_pair(float even, float odd) {
    return (uint32_t)bf16_bits(even) | (uint32_t)bf16_bits(odd) << 16;
}
// The backend's bf16 product (Bf16Gemm in kernels/kernels.h).
void bf16_gemm(const Bf16Gemm *g);
// One of VDPBF16PS's two steps: acc + a * b with the product exact and one
// rounding to nearest even, a denormal result flushed to zero (a and b
// bf16 values, acc never denormal). The product of two bf16 values has 16
// significant bits, so in double it is exact, and so is acc + a * b where
// their exponents are within 28 of each other; further apart, the smaller
// lies far below half an ulp of the larger's float and cannot move the
// rounding to float: one rounding, as the instruction's fused add.
static inline float bf16_step(float acc, float a, float b) {
    const float r = (float)((double)acc + (double)a * (double)b);
    // A zero exponent (denormal) keeps the sign bit alone: integer masks,
    // which vectorise where a branch on a float would not.
    uint32_t u;
    memcpy(&u, &r, sizeof u);
    u &= (u & 0x7f800000u) ? 0xffffffffu : 0x80000000u;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// ---------------------------------------------------------------- GEMM
// Switches OpenBLAS to a core this CPU runs, once, before the first product
// (src/kernels/blas_core.c); gemm and cnn_threads_init call it.
void threads_blas_ready(void);
// Row-major C(M,N) = alpha * op(A) op(B) + beta * C through single-threaded
// OpenBLAS; gemm_naive is the reference twin used by the tests.
void gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);
void gemm_naive(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float beta, float *C, int ldc);

// Kernels for the hot loops are chosen at run time: src/kernels/kernels.h.
#define CNN_SMALL_K_MAX 32

// ---------------------------------------------------------------- im2col
// x (C,H,W) -> col (C*KH*KW, OH*OW); zero padding P, stride S.
void im2col(const float *x, int C, int H, int W, int KH, int KW, int S, int P, int OH, int OW,
            float *col);
// col (C*KH*KW, OH*OW) -> dx (C,H,W): dx is overwritten (sum of overlaps).
void col2im(const float *col, int C, int H, int W, int KH, int KW, int S, int P, int OH, int OW,
            float *dx);

// ---------------------------------------------------------------- layers
typedef struct {
    int C, H, W, OC, KH, KW, S, P, OH, OW, has_bias;
    int relu;        // the forward pass applies the ReLU after the layer (net.c's fusions)
    int bf16;        // products in bf16 mixed precision (cnn_net_set_precision; conv2d_bf16.c)
    float *w, *b;    // w (OC, C*KH*KW), b (OC) or NULL
    float *dw, *db;  // gradients, same shapes
    // A max pool fused after the layer (and its ReLU; net.c): each image's
    // output goes to the chunk's scratch and is pooled into pool_out and
    // pool->argmax at once; the backward pass's dy is the pool's output
    // gradient, expanded image by image. `pooled` is known before the
    // pointers (for the scratch's size).
    int pooled;
    const struct Pool2d *pool;
    float *pool_out;
} Conv2d;

void conv2d_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws);
// "bf16", "winograd", "direct", "small-c" or "im2col": the forward pass's path.
const char *conv2d_path_name(const Conv2d *l);
// dx may be NULL (the network input needs no gradient).
void conv2d_backward(const Conv2d *l, const float *x, const float *dy, float *dx, int B,
                     Workspace *ws);
// Scratch floats per batch chunk of at most chunk_images images
// (ws->col_size), per-chunk weight-gradient partials (ws->partial_size)
// and packed weights (ws->packed_size) a layer needs, whichever kernels run it.
size_t conv2d_col_size(const Conv2d *l, int chunk_images);
// Where image i (of batch chunk c) of the output goes, what to do once it is
// there (the fused ReLU and max pool), and image i's output gradient (see
// Conv2d.pooled): every path of the layer goes through these.
float *conv2d_image_out(const Conv2d *l, float *y, int i, const Workspace *ws, int c);
void conv2d_image_done(const Conv2d *l, float *yi, int i);
const float *conv2d_image_dy(const Conv2d *l, const float *dy, int i, const Workspace *ws, int c);
size_t conv2d_partial_size(const Conv2d *l);
size_t conv2d_packed_size(const Conv2d *l);
// The most images one batch chunk holds at batch B.
static inline int chunk_images_max(int B) { return (B + batch_chunks(B) - 1) / batch_chunks(B); }
void conv2d_forward_naive(const Conv2d *l, const float *x, float *y, int B);
// db (OC) += per-channel sums of one image's dy (OC, N).
void conv2d_bias_grad(const float *dy, int OC, size_t N, float *db);

// bf16 mixed precision, portable (conv2d_bf16.c: the order of its sums is
// the contract of every bf16 kernel): scratch floats per chunk and packed
// weights it needs.
size_t conv2d_bf16_scratch_size(const Conv2d *l);
size_t conv2d_bf16_packed_size(const Conv2d *l);
void conv2d_bf16_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws);
void conv2d_bf16_backward(const Conv2d *l, const float *x, const float *dy, float *dx, int B, Workspace *ws);

// Direct convolution of few input channels, stride 1 (conv2d_small_c.c):
// the forward pass, and one image's weight gradient into dw (zeroed first
// if `first`, else +=), using scratch (conv2d_small_c_scratch_size floats).
#define CNN_SMALL_C_TAPS_MAX 256  // C KH KW of the layers it takes
int conv2d_small_c_applies(const Conv2d *l);
size_t conv2d_small_c_scratch_size(const Conv2d *l);
void conv2d_small_c_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws);
void conv2d_small_c_weight_grad(const Conv2d *l, const float *xi, const float *dyi, float *scratch, int first,
                                float *dw);

// Direct convolution on 8-channel blocks (conv2d_direct.c): stride-1
// layers with C and OC multiples of 8, where the backend has the kernels.
int conv2d_direct_applies(const Conv2d *l);
size_t conv2d_direct_scratch_size(const Conv2d *l, int chunk_images);
size_t conv2d_direct_partial_size(const Conv2d *l);
void conv2d_direct_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws);
void conv2d_direct_backward(const Conv2d *l, const float *x, const float *dy, float *dx, int B,
                            Workspace *ws);

// Winograd F(4x4, 3x3) (or F(2x2, 3x3)) for 3x3 stride-1 layers with C and
// OC multiples of 8 (conv2d_winograd.c): forward and input gradient.
int conv2d_winograd_possible(const Conv2d *l);  // the shape allows it
int conv2d_winograd_applies(const Conv2d *l);   // ... and the algorithm in use asks for it
int conv2d_winograd_auto(const Conv2d *l);      // auto's choice for this layer
int conv2d_winograd_weight_grad_applies(const Conv2d *l, int chunk_images);  // the weight gradient too
int conv2d_winograd_group(const Conv2d *l, int most);
size_t conv2d_winograd_scratch_size(const Conv2d *l, int chunk_images);
size_t conv2d_winograd_filter_size(const Conv2d *l);
void conv2d_winograd_forward(const Conv2d *l, const float *x, float *y, int B, Workspace *ws);
void conv2d_winograd_input_grad_filters(const Conv2d *l, float *U);
void conv2d_winograd_input_grad(const Conv2d *l, int n, const float *dyb, size_t dy_image, const float *U,
                                float *scratch, float *dxb, size_t dx_image);
void conv2d_winograd_weight_grad(const Conv2d *l, int n, const float *xb, size_t x_image, const float *dyb,
                                 size_t dy_image, float *scratch, int accumulate, float *dw);
// The output tile m (4, or 2 for tests of F(2x2, 3x3)).
void conv2d_winograd_set_tile(int m);
int conv2d_winograd_tile(void);

typedef struct Pool2d {
    int C, H, W, K, S, OH, OW;
    int relu_grad;    // max pooling: the backward pass also does the ReLU's before it (net.c's fusions)
    int32_t *argmax;  // (B,C,OH,OW) index into the H*W plane, for max pooling
} Pool2d;

void maxpool_forward(const Pool2d *l, const float *x, float *y, int32_t *argmax, int B);
// With l->relu_grad, y (the forward output) masks the gradient as the
// ReLU before the pool would: only where y > 0 (or NaN) does it pass.
void maxpool_backward(const Pool2d *l, const float *y, const float *dy, const int32_t *argmax, float *dx, int B);
// One image, (C,H,W), on the calling thread: for a pool fused into a convolution.
void maxpool_forward_image(const Pool2d *l, const float *x, float *y, int32_t *argmax);
void maxpool_backward_image(const Pool2d *l, const float *y, const float *dy, const int32_t *argmax, float *dx);
void avgpool_forward(const Pool2d *l, const float *x, float *y, int B);
void avgpool_backward(const Pool2d *l, const float *dy, float *dx, int B);
// Global average pooling: x (B,C,H,W) -> y (B,C).
void gap_forward(const float *x, float *y, int B, int C, int HW);
void gap_backward(const float *dy, float *dx, int B, int C, int HW);

void relu_forward(const float *x, float *y, size_t n);
// y = relu(y), for a layer whose output the ReLU after it is fused into.
void relu_in_place(float *y, size_t n);
// dx = dy where y > 0 (y is the forward output); dx may alias dy.
void relu_backward(const float *y, const float *dy, float *dx, size_t n);
// GELU (erf form) and its gradient dy * GELU'(x).
void gelu_forward(const float *x, float *y, size_t n);
void gelu_backward(const float *x, const float *dy, float *dx, size_t n);

typedef struct {
    int C, HW;
    int relu;  // the forward pass applies the ReLU after the layer (net.c's fusions)
    float eps, momentum;
    float *gamma, *beta, *dgamma, *dbeta;  // (C) each
    float *running_mean, *running_var;     // (C) each
    float *save_mean, *save_invstd;        // (C): batch statistics of the last training forward
} BatchNorm;

// Training (ws non-NULL) sums over the batch in ws->partial (batchnorm_partial_size
// floats a chunk); evaluation (ws NULL) uses the running statistics.
void batchnorm_forward(const BatchNorm *l, const float *x, float *y, int B, Workspace *ws);
size_t batchnorm_partial_size(int C);
void batchnorm_backward(const BatchNorm *l, const float *x, const float *dy, float *dx, int B, Workspace *ws);

// Inverted dropout: mask holds 0 or 1/(1-p) per element; the mask of sample i
// comes from the stream (seed, step, i).
void dropout_forward(float p, const float *x, float *y, float *mask, int B, size_t per_sample,
                     uint64_t seed, uint64_t step, uint64_t first, int training);
void dropout_backward(const float *mask, const float *dy, float *dx, size_t n);

typedef struct {
    int IN, OUT, has_bias;
    int relu;                // the forward pass applies the ReLU after the layer (net.c's fusions)
    int bf16;                // products in bf16 mixed precision (dense_bf16.c)
    float *w, *b, *dw, *db;  // w (OUT, IN), b (OUT)
} Dense;

void dense_forward(const Dense *l, const float *x, float *y, int B, Workspace *ws);
// bf16 mixed precision, portable (dense_bf16.c).
size_t dense_bf16_scratch_size(const Dense *l, int chunk_rows);  // floats a chunk
size_t dense_bf16_packed_size(const Dense *l);
void dense_bf16_forward(const Dense *l, const float *x, float *y, int B, Workspace *ws);
void dense_bf16_backward(const Dense *l, const float *x, const float *dy, float *dx, int B, Workspace *ws);
size_t dense_partial_size(const Dense *l);
void dense_backward(const Dense *l, const float *x, const float *dy, float *dx, int B,
                    Workspace *ws);

// logits (B,K), labels (B) -> mean loss; dlogits = (softmax - onehot) / B.
double softmax_xent_sum(const float *logits, const uint8_t *labels, float *dlogits, int B, int K, float smoothing,
                        int norm, int *correct);
float softmax_xent(const float *logits, const uint8_t *labels, float *dlogits, int B, int K, float smoothing,
                   int *correct);

// ---------------------------------------------------------------- layers table
// Model descriptions and the per-kind rows live in layers/layer.h.
#define CNN_MAX_LAYERS 128

// ---------------------------------------------------------------- named tensors
// The network's tensors under PyTorch's state_dict names ("0.weight",
// "1.running_mean", ...) with PyTorch layouts; trainable ones also point at
// their gradient-free optimiser moments.
// The moving average of a parameter of the arena (NULL without one).
float *net_ema(CnnNet *net, const float *param);
// Lookahead's slow copy of a parameter or buffer of the arenas (NULL without one).
float *net_slow(CnnNet *net, const float *data);

typedef struct {
    char name[48];
    int ndim;
    int64_t shape[4];
    size_t numel;
    float *data;
    float *m, *v;  // optimiser moments (NULL for buffers)
} NetTensor;

#define CNN_MAX_TENSORS (4 * CNN_MAX_LAYERS)
int net_tensors(CnnNet *net, NetTensor *out);

// For tools/bench, after a forward pass at batch B: best of `reps` seconds of
// conv layer i's forward (t[0]), input gradient (t[1], the backward pass less
// a backward without dx) and weight gradient (t[2]). Gradients are left as
// they were. Returns 0 if layer i is not a convolution or nothing ran yet.
int net_conv_pass_times(CnnNet *net, int i, int B, int reps, double t[3]);

#endif  // CNNC_INTERNAL_H
