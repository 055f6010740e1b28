// The C test compiled as C++.
#include "cnnc_h.c"
