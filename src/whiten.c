// Whitening initialisation, as airbench94's first layer (Jordan 2024): a
// conv whose 2D filters (D = in x kh x kw) are the eigenvectors of the
// covariance of its input patches, each scaled by 1/sqrt(eigenvalue + eps),
// and their negatives. Its outputs are decorrelated, unit-variance patch
// coordinates, largest eigenvalue first. The covariance is summed in
// double, image after image, in one thread: the same weights at any thread
// count. The eigenvectors come from cyclic Jacobi rotations (exact to double
// rounding for these small symmetric matrices).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

#define WHITEN_EPS 5e-4  // airbench94's eps

int cnn_net_whitening_layers(CnnNet *net) {
    int n = 0;
    for (int i = 0; i < cnn_net_num_layers(net); i++)
        n += net_layer(net, i)->spec.init_mode == LAYER_INIT_WHITEN;
    return n;
}

// Eigen-decomposition of the symmetric a (D,D) (destroyed): val[j] and the
// row vec[j] (D) for j < D, in descending order of val.
static void jacobi_eigen(double *a, int D, double *vec, double *val) {
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) vec[i * D + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0, diag = 0.0;
        for (int p = 0; p < D; p++) {
            diag += a[p * D + p] * a[p * D + p];
            for (int q = p + 1; q < D; q++) off += a[p * D + q] * a[p * D + q];
        }
        if (off <= 1e-30 * diag) break;
        for (int p = 0; p < D; p++)
            for (int q = p + 1; q < D; q++) {
                const double apq = a[p * D + q];
                if (apq == 0.0) continue;
                // The rotation that zeroes a[p][q] (Golub & Van Loan 8.5.2).
                const double tau = (a[q * D + q] - a[p * D + p]) / (2.0 * apq);
                const double t = (tau >= 0 ? 1.0 : -1.0) / (fabs(tau) + sqrt(1.0 + tau * tau));
                const double c = 1.0 / sqrt(1.0 + t * t), s = t * c;
                for (int k = 0; k < D; k++) {  // columns p, q
                    const double akp = a[k * D + p], akq = a[k * D + q];
                    a[k * D + p] = c * akp - s * akq;
                    a[k * D + q] = s * akp + c * akq;
                }
                for (int k = 0; k < D; k++) {  // rows p, q
                    const double apk = a[p * D + k], aqk = a[q * D + k];
                    a[p * D + k] = c * apk - s * aqk;
                    a[q * D + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < D; k++) {  // eigenvectors as rows
                    const double vp = vec[p * D + k], vq = vec[q * D + k];
                    vec[p * D + k] = c * vp - s * vq;
                    vec[q * D + k] = s * vp + c * vq;
                }
            }
    }
    for (int j = 0; j < D; j++) val[j] = a[j * D + j];
    // Selection sort, descending (D is small); ties keep their order.
    for (int j = 0; j < D; j++) {
        int best = j;
        for (int k = j + 1; k < D; k++)
            if (val[k] > val[best]) best = k;
        if (best == j) continue;
        const double tv = val[j];
        val[j] = val[best];
        val[best] = tv;
        for (int k = 0; k < D; k++) {
            const double tk = vec[j * D + k];
            vec[j * D + k] = vec[best * D + k];
            vec[best * D + k] = tk;
        }
    }
}

// Adds the outer products of every patch of the B images x (B,C,H,W) that
// layer l reads (its padding as zeros) to cov (D,D, upper triangle).
static long add_patches(const Layer *l, const float *x, int B, double *cov, double *p) {
    const LayerSpec *s = &l->spec;
    const int C = l->C, H = l->H, W = l->W, KH = s->k_h, KW = s->k_w, D = C * KH * KW;
    long n = 0;
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < l->OH; oy++)
            for (int ox = 0; ox < l->OW; ox++) {
                int d = 0;
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < KH; ky++)
                        for (int kx = 0; kx < KW; kx++, d++) {
                            const int y = oy * s->stride - s->pad + ky, xx = ox * s->stride - s->pad + kx;
                            p[d] = y < 0 || y >= H || xx < 0 || xx >= W
                                       ? 0.0 : x[(((size_t)b * C + c) * H + y) * W + xx];
                        }
                for (int i = 0; i < D; i++)
                    for (int j = i; j < D; j++) cov[i * D + j] += p[i] * p[j];
                n++;
            }
    return n;
}

CnnStatus cnn_net_init_whitening(CnnNet *net, const float *x, int n) {
    int C, H, W;
    cnn_net_input_shape(net, &C, &H, &W);
    const size_t image = (size_t)C * H * W;
    const int max_batch = cnn_net_max_batch(net);
    if (n <= 0) return cnn_error(CNN_EARG, "whitening needs at least one image");
    for (int i = 0; i < cnn_net_num_layers(net); i++) {
        Layer *l = net_layer(net, i);
        if (l->spec.init_mode != LAYER_INIT_WHITEN) continue;
        const int D = l->C * l->spec.k_h * l->spec.k_w;
        double *cov = calloc((size_t)D * D * 3 + 2 * (size_t)D, sizeof *cov);
        if (!cov) return cnn_error(CNN_ENOMEM, "cannot allocate the whitening of layer %d", i);
        double *vec = cov + (size_t)D * D, *val = vec + (size_t)D * D, *p = val + D;
        long patches = 0;
        // The layer's input: the images, or what the layers before it make
        // of them in evaluation mode.
        for (int b0 = 0; b0 < n; b0 += max_batch) {
            const int B = n - b0 < max_batch ? n - b0 : max_batch;
            const float *in = x + (size_t)b0 * image;
            if (l->spec.in[0] != LAYER_INPUT) {
                cnn_net_forward(net, in, B, 0);
                in = net_tensor_data(net, l->spec.in[0]);
            }
            patches += add_patches(l, in, B, cov, p);
        }
        for (int a = 0; a < D; a++)
            for (int b = a; b < D; b++) cov[b * D + a] = cov[a * D + b] /= (double)patches;
        jacobi_eigen(cov, D, vec, val);
        float *w = net_layer_params(net, i);
        for (int j = 0; j < D; j++) {
            const double s = 1.0 / sqrt((val[j] > 0 ? val[j] : 0.0) + WHITEN_EPS);
            for (int k = 0; k < D; k++) {
                w[(size_t)j * D + k] = (float)(vec[j * D + k] * s);
                w[(size_t)(D + j) * D + k] = -(float)(vec[j * D + k] * s);
            }
        }
        memset(w + l->n_w, 0, sizeof(float) * l->n_b);  // bias 0, as airbench's Conv
        free(cov);
    }
    return CNN_OK;
}
