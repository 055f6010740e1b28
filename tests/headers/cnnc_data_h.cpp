// The C test compiled as C++.
#include "cnnc_data_h.c"
