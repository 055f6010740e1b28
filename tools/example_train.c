// The README's library example, built with the project so that it keeps compiling.
// Run from the project root after tools/fetch-data mnist: build/tools/example_train
#include <cnnc.h>

int main(int argc, char **argv) {
    (void)argc;
    cnn_threads_limit_spin(argv);      // idle threads spin briefly, then sleep (see below)
    cnn_threads_init(0);               // OMP_NUM_THREADS or all cores
    CnnDataset train = {0}, val = {0}, test = {0};
    if (cnn_dataset_load("mnist", "data/mnist", NULL, &train, &val, &test)) return 1;
    CnnNet *net;
    if (cnn_net_create(&net, "tfcnn", 1, 28, 28, 64, /*seed*/ 1)) return 1;
    CnnOptimizer opt;
    cnn_opt_defaults(&opt, CNN_OPT_ADAM);
    CnnBatcher it;
    CnnBatcherConfig cfg = {.batch = 64, .shuffle = 1, .seed = 1};
    if (cnn_batcher_init(&it, &train, &cfg)) return 1;
    float *x = cnn_alloc_floats(64 * 784);
    uint8_t y[64];
    for (int epoch = 0; epoch < 3; epoch++) {
        cnn_batcher_epoch(&it, epoch);
        for (int n; (n = cnn_batcher_next(&it, x, y)) > 0;)
            cnn_net_train_step(net, &opt, x, y, n, -1.0f, NULL);
    }
    return cnn_checkpoint_save("mnist.safetensors", net, &opt, NULL) ? 1 : 0;
}
