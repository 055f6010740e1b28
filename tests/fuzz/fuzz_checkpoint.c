// The safetensors checkpoint reader: cnn_checkpoint_read_meta, then
// cnn_checkpoint_load into a small net without an optimiser and with one.
// Input: the whole checkpoint file.
#include <string.h>

#include "fuzz_common.h"

// Must match make_corpus.c, which saves the seed checkpoints from this net.
#define FUZZ_NET "conv(2,3) bn relu flatten dense(3)"

static char path[128];
static CnnNet *net;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init();
    fuzz_path(path, sizeof path, "checkpoint.safetensors");
    if (cnn_net_create(&net, FUZZ_NET, 1, 5, 5, 2, 1)) abort();
    return 0;
}

static void check_meta(const CnnMeta *m) {
    for (int i = 0; i < m->n; i++)
        if (!m->keys[i] || !m->values[i] || cnn_meta_get(m, m->keys[i]) == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write(path, data, size);
    CnnMeta meta = {0};
    if (cnn_checkpoint_read_meta(path, &meta) == CNN_OK) {
        check_meta(&meta);
        if (!cnn_meta_get(&meta, "model") || !cnn_meta_get(&meta, "input_shape")) abort();
    }
    cnn_meta_free(&meta);

    // A failed load must leave the weights untouched.
    const size_t np = cnn_net_num_params(net), nb = cnn_net_num_buffers(net);
    static float before[4096];
    if (np + nb > sizeof before / sizeof before[0]) abort();
    memcpy(before, cnn_net_params(net), np * sizeof(float));
    memcpy(before + np, cnn_net_buffers(net), nb * sizeof(float));
    if (cnn_checkpoint_load(path, net, NULL, &meta) == CNN_OK) {
        check_meta(&meta);
    } else if (memcmp(before, cnn_net_params(net), np * sizeof(float)) ||
               memcmp(before + np, cnn_net_buffers(net), nb * sizeof(float))) {
        abort();
    }
    cnn_meta_free(&meta);

    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_ADAM);
    if (cnn_checkpoint_load(path, net, &opt, NULL) == CNN_OK) {
        if (opt.t < 0 || (opt.kind != CNN_OPT_ADAM && opt.kind != CNN_OPT_ADAMW &&
                          opt.kind != CNN_OPT_SGD))
            abort();
    }
    unlink(path);
    return 0;
}
