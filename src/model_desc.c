// The model description language: layers separated by white space, each a
// name with optional arguments, positional or key=value:
//   conv(32,3) relu maxpool(2) conv(64,3,stride=1,pad=1) flatten dense(10)
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

void layer_spec_format(const LayerSpec *s, char *buf, size_t n) {
    if (s->ops->format) s->ops->format(s, buf, n);
    else snprintf(buf, n, "%s", s->ops->name);
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
        const LayerOps *ops = layer_ops_find(name);
        if (!ops) {
            char known[256];
            layer_ops_names(known, sizeof known);
            return cnn_error(CNN_EFORMAT, "model description: layer %d: unknown layer '%s' (known: %s)",
                             idx, name, known);
        }
        LayerSpec *s = &specs[idx];
        memset(s, 0, sizeof *s);
        s->ops = ops;
        if (ops->defaults) ops->defaults(s);
        const ArgSite at = {.idx = idx, .name = name};
        int npos = 0;
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
                    if (npos >= 4 || !ops->positional[npos])
                        return cnn_error(CNN_EFORMAT, "model description: layer %d (%s): too many arguments", idx, name);
                    key = ops->positional[npos++];
                    val = tok;
                }
                CnnStatus st = CNN_OK;
                if (!ops->set_arg || !ops->set_arg(s, key, val, &at, &st))
                    return cnn_error(CNN_EFORMAT, "model description: layer %d (%s) has no argument '%s'",
                                     idx, name, key);
                if (st) return st;
                if (*p == ',') p++;
                else if (*p != ')')
                    return cnn_error(CNN_EFORMAT, "model description: layer %d (%s): missing ')' or ',' after '%s'", idx, name, tok);
            }
        }
        if (ops->finish) {
            CnnStatus st = ops->finish(s, &at);
            if (st) return st;
        }
        (*n)++;
        if (*p && !isspace((unsigned char)*p))
            return cnn_error(CNN_EFORMAT, "model description: unexpected '%c' after layer %d (%s)", *p, idx, name);
    }
    if (*n == 0) return cnn_error(CNN_EFORMAT, "model description is empty");
    return CNN_OK;
}
