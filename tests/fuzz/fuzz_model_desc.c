// Model descriptions through cnn_net_create on a 3x16x16 input, batch 1.
// A net that builds must also survive what the trainer does with it: its
// canonical description must build the same net again (checkpoints store
// it), and a small one must run forward, loss, backward and an optimiser step
// (ASan then checks the shape arithmetic against the kernels).
// Input: the description (NUL-terminated here).
#include <string.h>

#include "fuzz_common.h"

#define MAX_DESC 4096
#define MAX_FLOPS 4e6  // keeps one execution in milliseconds

static float x[3 * 16 * 16];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init();
    // Under libFuzzer's -rss_limit_mb=2048 a model may not take gigabytes.
    cnn_set_memory_limit((size_t)512 << 20);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)((i * 7919) % 255) / 255.0f - 0.5f;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_DESC) return 0;
    char desc[MAX_DESC + 1];
    memcpy(desc, data, size);
    desc[size] = 0;
    CnnNet *net;
    if (cnn_net_create(&net, desc, 3, 16, 16, 1, 1) != CNN_OK) {
        if (net) abort();
        return 0;
    }
    CnnNet *again;
    if (cnn_net_create(&again, cnn_net_desc(net), 3, 16, 16, 1, 1) != CNN_OK) {
        fprintf(stderr, "canonical description does not build: \"%s\"\n%s\n", cnn_net_desc(net),
                cnn_last_error());
        abort();
    }
    if (strcmp(cnn_net_desc(net), cnn_net_desc(again)) ||
        cnn_net_num_params(net) != cnn_net_num_params(again)) {
        fprintf(stderr, "canonical description is not a fixed point:\n\"%s\"\n\"%s\"\n",
                cnn_net_desc(net), cnn_net_desc(again));
        abort();
    }
    cnn_net_free(again);
    for (int i = 0; i < cnn_net_num_layers(net); i++) {
        CnnLayerInfo info;
        cnn_net_layer_info(net, i, &info);
    }
    const int K = cnn_net_num_classes(net);
    if (K < 2 || K > 256) abort();
    if (cnn_net_flops(net) <= MAX_FLOPS) {
        CnnOptimizer opt;
        cnn_opt_defaults(&opt, CNN_OPT_ADAM);
        const uint8_t label = (uint8_t)(size % (size_t)K);
        cnn_net_forward(net, x, 1, 0);
        cnn_net_train_step(net, &opt, x, &label, 1, -1.0f, NULL);
    }
    cnn_net_free(net);
    return 0;
}
