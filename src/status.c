// Error codes and the last-error message (thread-local, so parallel loaders
// and tests do not overwrite each other's messages).
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cnnc.h"

static _Thread_local char last_error[512];
static int quiet;

const char *cnn_status_str(CnnStatus s) {
    switch (s) {
    case CNN_OK: return "ok";
    case CNN_EIO: return "I/O error";
    case CNN_EFORMAT: return "format error";
    case CNN_ESHAPE: return "shape error";
    case CNN_ENOMEM: return "out of memory";
    case CNN_EARG: return "bad argument";
    }
    return "unknown error";
}

const char *cnn_last_error(void) { return last_error; }

void cnn_set_quiet(int q) { quiet = q; }

CnnStatus cnn_error(CnnStatus s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    if (!quiet) fprintf(stderr, "cnnc: %s\n", last_error);
    return s;
}
