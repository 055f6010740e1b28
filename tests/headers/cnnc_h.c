// Compiles and links with cnnc.h as the only header, as C and (through
// cnnc_h.cpp) as C++: a missing or unclosed extern "C" fails here.
#include <string.h>

#include "cnnc.h"

typedef CnnStatus (*EvalFn)(CnnNet *, const CnnDataset *, const float *, const float *, double *,
                           int64_t *);

int main(void) {
    EvalFn volatile ev = cnn_evaluate;  // declared with C linkage: links from C++ too
    CnnDataset d;
    memset(&d, 0, sizeof d);  // declared by the nested cnnc/data.h
    cnn_dataset_free(&d);
    CnnNet *net = NULL;
    cnn_set_quiet(1);
    const int st = cnn_net_create(&net, "flatten dense(2)", 1, 2, 2, 1, 1);
    cnn_net_free(net);
    return st == CNN_OK && ev ? 0 : 1;
}
