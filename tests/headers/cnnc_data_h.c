// Compiles and links with cnnc/data.h as the only header, as C and (through
// cnnc_data_h.cpp) as C++: the header says it may be included on its own.
#include <string.h>

#include "cnnc/data.h"

typedef CnnStatus (*EvalFn)(CnnNet *, const CnnDataset *, const float *, const float *, double *,
                           int64_t *);

int main(void) {
    EvalFn volatile ev = cnn_evaluate;  // declared with C linkage: links from C++ too
    CnnDataset d;
    memset(&d, 0, sizeof d);
    cnn_dataset_free(&d);
    return ev ? 0 : 1;
}
