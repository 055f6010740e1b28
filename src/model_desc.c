// The model description language: layers separated by white space, each a
// name with optional arguments, positional or key=value:
//   conv(32,3) relu maxpool(2) conv(64,3,stride=1,pad=1) flatten dense(10)
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *layer_kind_name(LayerKind k) {
    static const char *names[] = {"conv", "maxpool", "avgpool", "gap", "relu",
                                  "batchnorm", "dropout", "flatten", "dense"};
    return names[k];
}

// The shortest of %g and %.9g that reads back as x: the canonical text must
// rebuild the same layer (checkpoints store it), and %g alone rounds
// dropout(0.9999999) to "dropout(1)", which does not parse.
static const char *fmt_float(float x, char *buf, size_t n) {
    snprintf(buf, n, "%g", x);
    if (strtof(buf, NULL) != x) snprintf(buf, n, "%.9g", x);
    return buf;
}

void layer_spec_format(const LayerSpec *s, char *buf, size_t n) {
    char f1[32], f2[32];
    switch (s->kind) {
    case LAYER_CONV:
        if (s->k_h == s->k_w)
            snprintf(buf, n, "conv(%d,%d,stride=%d,pad=%d%s)", s->a, s->k_h, s->stride, s->pad,
                     s->bias ? "" : ",bias=0");
        else
            snprintf(buf, n, "conv(%d,%dx%d,stride=%d,pad=%d%s)", s->a, s->k_h, s->k_w, s->stride,
                     s->pad, s->bias ? "" : ",bias=0");
        break;
    case LAYER_MAXPOOL:
    case LAYER_AVGPOOL:
        snprintf(buf, n, "%s(%d,stride=%d)", layer_kind_name(s->kind), s->a, s->stride);
        break;
    case LAYER_BATCHNORM:
        snprintf(buf, n, "batchnorm(eps=%s,momentum=%s)", fmt_float(s->eps, f1, sizeof f1),
                 fmt_float(s->momentum, f2, sizeof f2));
        break;
    case LAYER_DROPOUT: snprintf(buf, n, "dropout(%s)", fmt_float(s->p, f1, sizeof f1)); break;
    case LAYER_DENSE: snprintf(buf, n, "dense(%d%s)", s->a, s->bias ? "" : ",bias=0"); break;
    default: snprintf(buf, n, "%s", layer_kind_name(s->kind)); break;
    }
}

typedef struct {
    char key[16];
    char val[32];
} Arg;

static const struct {
    const char *name;
    LayerKind kind;
    const char *positional[4];  // names of positional arguments, in order
} LAYERS[] = {
    {"conv", LAYER_CONV, {"out", "k", "stride", "pad"}},
    {"conv2d", LAYER_CONV, {"out", "k", "stride", "pad"}},
    {"maxpool", LAYER_MAXPOOL, {"k", "stride"}},
    {"avgpool", LAYER_AVGPOOL, {"k", "stride"}},
    {"gap", LAYER_GAP, {0}},
    {"globalavgpool", LAYER_GAP, {0}},
    {"relu", LAYER_RELU, {0}},
    {"bn", LAYER_BATCHNORM, {0}},
    {"batchnorm", LAYER_BATCHNORM, {0}},
    {"dropout", LAYER_DROPOUT, {"p"}},
    {"flatten", LAYER_FLATTEN, {0}},
    {"dense", LAYER_DENSE, {"out"}},
    {"linear", LAYER_DENSE, {"out"}},
    {"fc", LAYER_DENSE, {"out"}},
};

static CnnStatus parse_int(const char *v, int lo, int hi, int *out, int idx, const char *name,
                           const char *key) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return cnn_error(CNN_EFORMAT,
                         "model description: layer %d (%s): %s=%s must be an integer in %d..%d",
                         idx, name, key, v, lo, hi);
    *out = (int)x;
    return CNN_OK;
}

static CnnStatus parse_float(const char *v, float lo, float hi, float *out, int idx,
                             const char *name, const char *key) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !(x >= lo && x <= hi))
        return cnn_error(CNN_EFORMAT,
                         "model description: layer %d (%s): %s=%s must be a number in [%g, %g]",
                         idx, name, key, v, lo, hi);
    *out = (float)x;
    return CNN_OK;
}

// Applies one key=value to a spec.
static CnnStatus apply_arg(LayerSpec *s, const char *key, const char *val, int idx,
                           const char *name) {
    CnnStatus st = CNN_OK;
    int has = 1;
    switch (s->kind) {
    case LAYER_CONV:
        if (!strcmp(key, "out")) st = parse_int(val, 1, 1 << 16, &s->a, idx, name, key);
        else if (!strcmp(key, "k") || !strcmp(key, "kernel")) {
            char kh[16] = {0}, *x = strchr(val, 'x');
            if (x && (size_t)(x - val) < sizeof kh) {
                memcpy(kh, val, (size_t)(x - val));
                st = parse_int(kh, 1, 64, &s->k_h, idx, name, key);
                if (!st) st = parse_int(x + 1, 1, 64, &s->k_w, idx, name, key);
            } else {
                st = parse_int(val, 1, 64, &s->k_h, idx, name, key);
                s->k_w = s->k_h;
            }
        } else if (!strcmp(key, "stride")) st = parse_int(val, 1, 64, &s->stride, idx, name, key);
        else if (!strcmp(key, "pad")) st = parse_int(val, 0, 64, &s->pad, idx, name, key);
        else if (!strcmp(key, "bias")) st = parse_int(val, 0, 1, &s->bias, idx, name, key);
        else has = 0;
        break;
    case LAYER_MAXPOOL:
    case LAYER_AVGPOOL:
        if (!strcmp(key, "k") || !strcmp(key, "kernel")) st = parse_int(val, 1, 64, &s->a, idx, name, key);
        else if (!strcmp(key, "stride")) st = parse_int(val, 1, 64, &s->stride, idx, name, key);
        else has = 0;
        break;
    case LAYER_BATCHNORM:
        if (!strcmp(key, "eps")) st = parse_float(val, 1e-12f, 1.0f, &s->eps, idx, name, key);
        else if (!strcmp(key, "momentum")) st = parse_float(val, 0.0f, 1.0f, &s->momentum, idx, name, key);
        else has = 0;
        break;
    case LAYER_DROPOUT:
        if (!strcmp(key, "p")) {
            st = parse_float(val, 0.0f, 1.0f, &s->p, idx, name, key);
            if (!st && s->p >= 1.0f)
                st = cnn_error(CNN_EFORMAT, "model description: layer %d (%s): p=%s must be below 1",
                               idx, name, val);
        } else has = 0;
        break;
    case LAYER_DENSE:
        if (!strcmp(key, "out")) st = parse_int(val, 1, 1 << 24, &s->a, idx, name, key);
        else if (!strcmp(key, "bias")) st = parse_int(val, 0, 1, &s->bias, idx, name, key);
        else has = 0;
        break;
    default: has = 0; break;
    }
    if (!has)
        return cnn_error(CNN_EFORMAT, "model description: layer %d (%s) has no argument '%s'", idx,
                         name, key);
    return st;
}

CnnStatus model_desc_parse(const char *desc, LayerSpec *specs, int max_specs, int *n) {
    *n = 0;
    const char *p = desc;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const int idx = *n;
        char name[24];
        size_t len = 0;
        while (isalnum((unsigned char)*p) || *p == '_') {
            if (len + 1 < sizeof name) name[len++] = (char)tolower((unsigned char)*p);
            p++;
        }
        name[len] = 0;
        if (len == 0)
            return cnn_error(CNN_EFORMAT, "model description: unexpected '%c' at character %d of \"%s\"",
                             *p, (int)(p - desc) + 1, desc);
        if (idx >= max_specs)
            return cnn_error(CNN_EFORMAT, "model description: more than %d layers", max_specs);
        int li = -1;
        for (size_t j = 0; j < sizeof LAYERS / sizeof LAYERS[0]; j++)
            if (!strcmp(LAYERS[j].name, name)) li = (int)j;
        if (li < 0)
            return cnn_error(CNN_EFORMAT,
                             "model description: layer %d: unknown layer '%s' (known: conv, maxpool, "
                             "avgpool, gap, relu, batchnorm, dropout, flatten, dense)",
                             idx, name);
        LayerSpec *s = &specs[idx];
        memset(s, 0, sizeof *s);
        s->kind = LAYERS[li].kind;
        s->stride = s->kind == LAYER_CONV ? 1 : 0;  // pools: 0 = same as kernel
        s->bias = 1;
        s->eps = 1e-5f;
        s->momentum = 0.1f;
        s->p = 0.5f;
        int npos = 0, seen_kernel = 0, seen_out = 0;
        if (*p == '(') {
            p++;
            for (;;) {
                while (isspace((unsigned char)*p)) p++;
                if (*p == ')') { p++; break; }
                char tok[64];
                size_t tl = 0;
                while (*p && *p != ',' && *p != ')' && !isspace((unsigned char)*p)) {
                    if (tl + 1 >= sizeof tok)
                        return cnn_error(CNN_EFORMAT, "model description: layer %d (%s): argument too long", idx, name);
                    tok[tl++] = *p++;
                }
                tok[tl] = 0;
                while (isspace((unsigned char)*p)) p++;
                if (!*p)
                    return cnn_error(CNN_EFORMAT, "model description: layer %d (%s): missing ')'", idx, name);
                if (tl == 0)
                    return cnn_error(CNN_EFORMAT, "model description: layer %d (%s): empty argument", idx, name);
                char *eq = strchr(tok, '=');
                const char *key, *val;
                if (eq) {
                    *eq = 0;
                    key = tok;
                    val = eq + 1;
                } else {
                    if (npos >= 4 || !LAYERS[li].positional[npos])
                        return cnn_error(CNN_EFORMAT, "model description: layer %d (%s): too many arguments", idx, name);
                    key = LAYERS[li].positional[npos++];
                    val = tok;
                }
                CnnStatus st = apply_arg(s, key, val, idx, name);
                if (st) return st;
                if (!strcmp(key, "out")) seen_out = 1;
                if (!strcmp(key, "k") || !strcmp(key, "kernel")) seen_kernel = 1;
                if (*p == ',') p++;
                else if (*p != ')')
                    return cnn_error(CNN_EFORMAT, "model description: layer %d (%s): missing ')' or ',' after '%s'", idx, name, tok);
            }
        }
        if (s->kind == LAYER_CONV && (!seen_out || !seen_kernel))
            return cnn_error(CNN_EFORMAT, "model description: layer %d: conv needs out channels and kernel, e.g. conv(32,3)", idx);
        if ((s->kind == LAYER_MAXPOOL || s->kind == LAYER_AVGPOOL) && !seen_kernel)
            return cnn_error(CNN_EFORMAT, "model description: layer %d: %s needs a kernel size, e.g. %s(2)", idx, name, name);
        if (s->kind == LAYER_DENSE && !seen_out)
            return cnn_error(CNN_EFORMAT, "model description: layer %d: dense needs a unit count, e.g. dense(10)", idx);
        if ((s->kind == LAYER_MAXPOOL || s->kind == LAYER_AVGPOOL) && s->stride == 0) s->stride = s->a;
        (*n)++;
        if (*p && !isspace((unsigned char)*p))
            return cnn_error(CNN_EFORMAT, "model description: unexpected '%c' after layer %d (%s)", *p, idx, name);
    }
    if (*n == 0) return cnn_error(CNN_EFORMAT, "model description is empty");
    return CNN_OK;
}
