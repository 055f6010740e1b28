// A program that links libcnnc and defines functions named as the
// library's internal ones (common names in ML code): libcnnc.so exports its
// API alone, so none of these may be called. Each aborts if it is.
#include <stdio.h>
#include <stdlib.h>

#include <cnnc.h>

#define TRAP(name)                                                    \
    void name(void);                                                  \
    void name(void) {                                                 \
        fprintf(stderr, "interpose: libcnnc called the program's " #name "\n"); \
        abort();                                                      \
    }
TRAP(gemm)
TRAP(im2col)
TRAP(col2im)
TRAP(batch_sum)
TRAP(add_floats)
TRAP(add_layer)
TRAP(batchnorm_forward)
TRAP(relu_forward)
TRAP(dense_forward)
TRAP(conv2d_forward)
TRAP(chunk_tree_sum)
TRAP(kernels)

int main(void) {
    cnn_threads_init(1);
    CnnNet *net;
    if (cnn_net_create(&net, "conv(8,5,stride=2) relu flatten dense(10)", 1, 28, 28, 8, 1)) return 1;
    float *x = cnn_alloc_floats(8 * 28 * 28);
    uint8_t y[8];
    CnnRng r;
    cnn_rng_seed(&r, 3);
    for (int i = 0; i < 8 * 28 * 28; i++) x[i] = cnn_rng_uniform(&r);
    for (int i = 0; i < 8; i++) y[i] = (uint8_t)(i % 10);
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_ADAM);
    float first = 0, last = 0;
    for (int s = 0; s < 20; s++) {
        last = cnn_net_train_step(net, &opt, x, y, 8, -1.0f, NULL);
        if (s == 0) first = last;
    }
    printf("interpose: loss %.4f -> %.4f over 20 steps\n", first, last);
    cnn_net_free(net);
    cnn_free(x);
    // Learning a fixed batch: the loss falls (the library used its own code).
    return last < first ? 0 : 1;
}
