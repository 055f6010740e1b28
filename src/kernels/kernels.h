// The seam between layers and the code that runs their hot loops. A backend
// is one table of function pointers, chosen once (from the CPU's features,
// CNNC_KERNELS or cnn_kernels_select) and read by the layers through
// kernels(). Each instruction set's kernels live in their own files, compiled
// with their own flags (kernel_isa_flags in meson.build), and are reached only
// through a table whose CPU check passed: no layer code names an instruction
// set, and the library runs on any CPU.
//
// A NULL entry means "the backend has nothing special here": the layer takes
// its portable path (im2col + OpenBLAS), which is the whole "reference"
// backend.
#ifndef CNNC_KERNELS_H
#define CNNC_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

// A convolution on channel-blocked tensors: 8 channels a block, the block's
// channels innermost ([block][row][column][8]). The input plane is already
// zero-padded (Hp x Wp) and the kernel packed as w[ob][cb][kh][kw][i][o]
// (input channel i and output channel o of blocks cb and ob).
//
// N images (0 counts as 1) lie x_image and y_image floats apart (y_image:
// the output, or dy for the weight gradient): the kernels run them one after
// the other inside each weight tile, so a tile's weights stay in cache (and
// the weight gradient's accumulators in registers) across the images, while
// every sum keeps the order it would have image by image.
typedef struct {
    int CB, OCB;  // input and output channel blocks
    int KH, KW, S;
    int Hp, Wp;   // padded input plane
    int OH, OW;
    int N;                    // images
    size_t x_image, y_image;  // floats from one image to the next
} BlockedConv;

// Winograd F(m x m, 3 x 3) on 8-channel blocks: an a x a input tile
// (a = m + 2) becomes B^T d B, a 3 x 3 filter G g G^T, and a x a products
// become the m x m output tile A^T M A. Row-major matrices, B^T a x a, G
// a x 3 and A^T m x a (used up to a = 6).
typedef struct {
    int m, a;
    float BT[36], G[18], AT[24];
} WinoTransform;

// Floats from one position's V (or M, dM) to the next: `blocks` blocks of T
// tiles, then a cache line. Without it the a^2 values of a tile, whole 4 KiB
// multiples apart for most shapes, fall in one L1 set, which holds 8 lines:
// each transform evicted what it had just written (tfcnn's 15x15 input
// transform ran 3-4x slower).
static inline size_t wino_pos_floats(int blocks, size_t T) { return (size_t)blocks * T * 8 + 16; }

// VCVTNEPS2BF16's bits of f: the nearest bf16 (ties to even), denormals to
// a signed zero, NaN quiet. Integer selects, which vectorise.
static inline uint16_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);  // carries into the exponent where it rounds up
    const uint32_t nan = u | 0x00400000u, zero = u & 0x80000000u;
    u = (u & 0x7fffffffu) > 0x7f800000u ? nan : (u & 0x7f800000u) ? rounded : zero;
    return (uint16_t)(u >> 16);
}

// bf16 mixed precision's product, which every bf16 layer pass is made of:
// c[i ldc + j] (i < m rows, j < n lanes) gains kr x ks pairs of bf16
// products, pair (r, s) in that order, each as VDPBF16PS adds a pair: the
// odd element's product first, then the even one's, each step rounded
// once to nearest even, denormal results flushed (bf16_step). Pair (r, s)
// of row i is the 32 bits at a + row_off(i) + a_outer[r] + s a_step (u16
// units; row_off(i) = a_rows[i] where given, else i a_row; the bf16 with
// the even index in the low half); lane j's is b[((j / 32) kr ks + r ks + s) 32 + j % 32], panels of
// 32 lanes, padded with zeros. The sums start from c, or from init[j] where
// init is given; c rows hold n floats, the rest of the row untouched.
#define BF16_LANES 32
typedef struct Bf16Gemm {
    int m, n, kr, ks;
    const uint16_t *a;
    const ptrdiff_t *a_outer, *a_rows;
    ptrdiff_t a_step, a_row;
    const uint32_t *b;
    const float *init;
    float *c;
    size_t ldc;
} Bf16Gemm;

typedef struct {
    const char *name;     // as in CNNC_KERNELS and --kernels
    const char *summary;  // one line for start-up banners
    int (*cpu_supports)(void);
    // Products with a small inner dimension K <= CNN_SMALL_K_MAX (first
    // convolutions). C (M,N) = bias (per row; none if NULL) + A (M,K) B (K,N).
    void (*gemm_small_k)(int M, int N, int K, const float *A, const float *B, const float *bias,
                         float *C);
    // C (M,K) = beta C + A (M,N) B (K,N)^T, for the weight gradient.
    void (*gemm_small_k_nt)(int M, int K, int N, const float *A, const float *B, float beta,
                            float *C);
    // Direct convolution of few input channels, stride 1 (NULL: im2col +
    // GEMM instead), one image: xp is the input zero-padded to (C, OH + KH - 1,
    // round16(OW) + KW - 1), with the top-left input pixel at (P, P).
    // y (OC,OH,OW) = bias (none if NULL) + terms in (c, kh, kw) order, as
    // gemm_small_k on the im2col matrix; dw (OC, C KH KW) += the weight
    // gradient of dy (OC,OH,OW).
    void (*conv_small_c_fwd)(const float *xp, int C, int KH, int KW, const float *w, const float *bias, int OC,
                             int OH, int OW, float *y);
    void (*conv_small_c_wgrad)(const float *xp, int C, int KH, int KW, const float *dy, int OC, int OH, int OW,
                               float *dw);
    // conv_small_c_fwd with a 2x2, stride-2 max pool of each output plane
    // (then a ReLU of the pooled values if relu): y and argmax (OC, OH/2,
    // OW/2), argmax indexing the OH x OW plane as maxpool_forward's; the
    // convolution's own output is never stored. NULL: the two apart.
    void (*conv_small_c_fwd_pool2)(const float *xp, int C, int KH, int KW, const float *w, const float *bias, int OC,
                                   int OH, int OW, int relu, float *y, int32_t *argmax);
    // Direct convolution on blocked tensors (NULL: im2col + GEMM instead).
    // y[ob][oh][ow][o] = bias[8 ob + o] (0 if NULL)
    //     + sum over cb, kh, kw, i of x[cb][oh S + kh][ow S + kw][i] w[ob][cb][kh][kw][i][o],
    // summed in that order (cb, kh, kw, i) for every output; for each of the
    // g->N images.
    void (*conv_fwd_blocked)(const BlockedConv *g, const float *x, const float *w, const float *bias,
                             float *y);
    // dw[ob][cb][kh][kw][i][o] = (accumulate ? dw : 0)
    //     + sum over images n, oh, ow (in that order) of
    //       x_n[cb][oh S + kh][ow S + kw][i] dy_n[ob][oh][ow][o],
    // where dy's rows are dy_row floats apart and its blocks dy_block floats.
    void (*conv_wgrad_blocked)(const BlockedConv *g, const float *x, const float *dy, size_t dy_row,
                               size_t dy_block, int accumulate, float *dw);
    // Layouts (C a multiple of 8): x (C,H,W) -> xb [C/8][H+2PH][W+2PW][8]
    // with zeros around, and yb [C/8][H][W][8] -> y (C,H,W).
    void (*block_pad)(const float *x, int C, int H, int W, int PH, int PW, float *xb);
    void (*unblock)(const float *yb, int C, int H, int W, float *y);
    // Winograd transforms (NULL: no Winograd). n images of CB blocks of
    // padded Hp x Wp planes, x_image floats apart, cut into TH x TW tiles
    // (tile (ty, tx) reads rows ty m .. ty m + a - 1, zeros past the plane):
    // V[pos][cb][t][8] = (B^T d B)[pos] with t = (image TH + ty) TW + tx and
    // T = n TH TW tiles in all; positions wino_pos_floats(CB, T) apart.
    void (*wino_input)(const WinoTransform *f, const float *xb, int CB, int Hp, int Wp, size_t x_image,
                       int n, int TH, int TW, float *V);
    // yb[ob][oh][ow][8] of each image (y_image floats apart) = (A^T M A)
    // of its tile, plus bias[8 ob + o] (0 if NULL), for the pixels inside
    // OH x OW; M[pos][ob][t][8] as V (positions wino_pos_floats(OCB, T) apart).
    void (*wino_output)(const WinoTransform *f, const float *M, int OCB, int n, int TH, int TW, int OH,
                        int OW, const float *bias, float *yb, size_t y_image);
    // One position's products: M[ob][t][o] = sum over cb, i (in that order)
    // of V[cb][t][i] U[ob][cb][i][o], for T tiles.
    void (*wino_products)(const float *V, const float *U, int CB, int OCB, size_t T, float *M);
    // The transformed filters of output block ob: U[pos][ob][cb][i][o] =
    // (G g G^T)[pos] (positions u_pos floats apart) of the 3x3 filters of a
    // convolution from 8 CB to 8 OCB channels, from w in PyTorch's layout:
    // flip 0, w (8 OCB, 8 CB, 3, 3) and g = w[8 ob + o][8 cb + i]; flip 1
    // (the input gradient's), w (8 CB, 8 OCB, 3, 3) and g[kh][kw] =
    // w[8 cb + i][8 ob + o][2 - kh][2 - kw].
    void (*wino_filters)(const WinoTransform *f, const float *w, int CB, int OCB, int flip, int ob, float *U,
                         size_t u_pos);
    // The weight gradient. dM[pos][ob][t][8] = (A dY A^T)[pos] of each m x m
    // tile of the output gradients: dy[ob][oh][ow][8] of n images, rows row
    // floats apart, blocks plane apart, images image apart (zeros past OH x OW);
    // positions wino_pos_floats(OCB, T) apart, as M's.
    void (*wino_dy)(const WinoTransform *f, const float *dy, int OCB, int OH, int OW, size_t row, size_t plane,
                    size_t image, int n, int TH, int TW, float *dM);
    // dw[ob][cb][kh][kw][i][o] (accumulate ? += : =) sum over positions (a, b)
    // in order of G[a][kh] G[b][kw] (sum over tiles t in order of
    // V[pos][cb][t][i] dM[pos][ob][t][o]).
    void (*wino_wgrad)(const WinoTransform *f, const float *V, const float *dM, int CB, int OCB, size_t T,
                       int accumulate, float *dw);
    // The dense layer's forward pass and input gradient for a chunk of rows
    // (NULL: OpenBLAS): y (rows, OUT) = x (rows, IN) w (OUT, IN)^T + bias
    // (none if NULL); dx (rows, IN) = dy (rows, OUT) w.
    void (*dense_fwd)(const float *x, int rows, int IN, const float *w, int OUT, const float *bias, float *y);
    void (*dense_dx)(const float *dy, int rows, int OUT, const float *w, int IN, float *dx);
    // The dense layer's weight gradient (dense_wgrad_impl.h; NULL: the
    // portable build of the same code).
    void (*dense_wgrad_tree)(const float *dy, int OUT, const float *x, int IN, const int *start, int nchunks,
                             int o0, int n, float *dw);
    // bf16 mixed precision's one product (Bf16Gemm; NULL: the portable
    // build of bf16_gemm_impl.h): the same bits from every backend but
    // those whose bf16_own_sums says how theirs differ (AMX).
    void (*bf16_gemm)(const Bf16Gemm *g);
    const char *bf16_own_sums;
    // dst[i] = bf16_bits(src[i]) for i < n (NULL: the portable loop).
    void (*bf16_convert)(const float *src, uint16_t *dst, size_t n);
} Kernels;

// The convolution algorithm for layers both can run (cnn_conv_select):
// Winograd only where the layer asks for it (auto) or always, or never.
typedef enum { CONV_AUTO, CONV_DIRECT, CONV_WINOGRAD } ConvAlgo;
ConvAlgo conv_algo(void);

// The backend in use; the first call selects one (CNNC_KERNELS or the best
// for this CPU). Never NULL.
const Kernels *kernels(void);

// CPU features (0 on other architectures), checked with the OS's saving of
// the wider registers: the CPU_* bits of cpu_features().
enum {
    CPU_SSE2 = 1u << 0, CPU_SSE3 = 1u << 1, CPU_SSSE3 = 1u << 2, CPU_SSE41 = 1u << 3,
    CPU_SSE42 = 1u << 4, CPU_AVX = 1u << 5, CPU_AVX2 = 1u << 6, CPU_FMA = 1u << 7,
    CPU_FMA4 = 1u << 8, CPU_XOP = 1u << 9, CPU_SSE4A = 1u << 10, CPU_3DNOW = 1u << 11,
    CPU_AVX512 = 1u << 12,  // F, BW, DQ and VL: what AVX-512 kernels assume
    CPU_AVX512_BF16 = 1u << 13,
    CPU_AMX_BF16 = 1u << 14,  // AMX-TILE and AMX-BF16, the OS saving the tiles, and this process allowed them
};
unsigned cpu_features(void);
int cpu_has_avx2_fma(void);
int cpu_has_avx512(void);

// ---------------------------------------------------------------- x86-64 AVX2 + FMA
void gemm_small_k_avx2(int M, int N, int K, const float *A, const float *B, const float *bias,
                       float *C);
void dense_forward_avx2(const float *x, int rows, int IN, const float *w, int OUT, const float *bias, float *y);
void dense_input_grad_avx2(const float *dy, int rows, int OUT, const float *w, int IN, float *dx);
void bf16_gemm_avx2(const Bf16Gemm *g);
void bf16_convert_avx2(const float *src, uint16_t *dst, size_t n);
void dense_wgrad_tree_avx2(const float *dy, int OUT, const float *x, int IN, const int *start, int nchunks, int o0,
                           int n, float *dw);
void gemm_small_k_nt_avx2(int M, int K, int N, const float *A, const float *B, float beta,
                          float *C);

void conv_small_c_fwd_avx2(const float *xp, int C, int KH, int KW, const float *w, const float *bias, int OC,
                           int OH, int OW, float *y);
void conv_small_c_fwd_pool2_avx2(const float *xp, int C, int KH, int KW, const float *w, const float *bias, int OC,
                                 int OH, int OW, int relu, float *y, int32_t *argmax);
void conv_small_c_wgrad_avx2(const float *xp, int C, int KH, int KW, const float *dy, int OC, int OH, int OW,
                             float *dw);
void conv_fwd_blocked_avx2(const BlockedConv *g, const float *x, const float *w, const float *bias,
                          float *y);
void conv_wgrad_blocked_avx2(const BlockedConv *g, const float *x, const float *dy, size_t dy_row,
                             size_t dy_block, int accumulate, float *dw);
void block_pad_avx2(const float *x, int C, int H, int W, int PH, int PW, float *xb);
void unblock_avx2(const float *yb, int C, int H, int W, float *y);
void wino_input_avx2(const WinoTransform *f, const float *xb, int CB, int Hp, int Wp, size_t x_image, int n,
                     int TH, int TW, float *V);
void wino_output_avx2(const WinoTransform *f, const float *M, int OCB, int n, int TH, int TW, int OH, int OW,
                      const float *bias, float *yb, size_t y_image);
void wino_products_avx2(const float *V, const float *U, int CB, int OCB, size_t T, float *M);
void wino_filters_avx2(const WinoTransform *f, const float *w, int CB, int OCB, int flip, int ob, float *U,
                       size_t u_pos);
void wino_dy_avx2(const WinoTransform *f, const float *dy, int OCB, int OH, int OW, size_t row, size_t plane,
                  size_t image, int n, int TH, int TW, float *dM);
void wino_wgrad_avx2(const WinoTransform *f, const float *V, const float *dM, int CB, int OCB, size_t T,
                     int accumulate, float *dw);

// ---------------------------------------------------------------- x86-64 AVX-512 + AVX512-BF16
void bf16_gemm_avx512bf16(const Bf16Gemm *g);
void bf16_gemm_amx(const Bf16Gemm *g);
void bf16_convert_avx512bf16(const float *src, uint16_t *dst, size_t n);

// ---------------------------------------------------------------- OpenBLAS
// The core OpenBLAS should be switched to, or NULL to leave it as it is
// (pure: tested alone). env is OPENBLAS_CORETYPE (NULL if unset), reported
// the core OpenBLAS runs (openblas_get_corename), cpu the CPU_* bits. A core
// this CPU cannot run is replaced by the best one it can; where env is unset
// or names no OpenBLAS core, a pre-AVX2 core on an AVX2 or AVX-512 CPU is
// replaced too; a runnable core the user named stays. Writes the one line
// to print into note ("" where there is nothing to say).
const char *blas_core_decide(const char *env, const char *reported, unsigned cpu, char *note, size_t n);
// 0 if the named core needs a feature this CPU lacks (unknown names: 1).
int blas_core_runnable(const char *core, unsigned cpu);
// Makes the switch blas_core_decide asks for, in-process; writes the note.
// Call once, before any BLAS work (threads.c's blas_ready does).
void blas_core_choose(char *note, size_t n);
// Where a switch is needed that this OpenBLAS cannot make in-process (it
// reads the variable only as it loads), sets the environment for running the
// program again (OPENBLAS_CORETYPE and what blas_core_choose then reports)
// and returns 1; blas_core_undo_reexec restores it if the exec fails.
int blas_core_prepare_reexec(void);
void blas_core_undo_reexec(void);

#endif  // CNNC_KERNELS_H
