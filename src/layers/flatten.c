// flatten: (C,H,W) -> (C*H*W,1,1) as a view of the same bytes (NCHW is
// already row-major per sample, as PyTorch's Flatten sees it).
#include "layers/layer.h"

static CnnStatus flatten_shape(Layer *l, int idx, const char *text) {
    (void)idx, (void)text;
    l->OC = l->C * l->H * l->W;
    l->OH = l->OW = 1;
    return CNN_OK;
}

static void flatten_forward_row(Layer *l, const float *x, const LayerRun *r) {
    (void)r;
    l->out = (float *)x;
}

const LayerOps flatten_layer = {
    .name = "flatten",
    .flags = LAYER_VIEW | LAYER_GRAD_IN_PLACE,
    .shape = flatten_shape,
    .forward = flatten_forward_row,
};
