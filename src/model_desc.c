// The model description language: layers separated by white space, each a
// name with optional arguments, positional or key=value, and groups of
// layers repeated N times as [ ... ] xN (nested groups too):
//   conv(32,3) relu maxpool(2) conv(64,3,stride=1,pad=1) flatten dense(10)
//   [conv(64,3,pad=1,bias=0) bn relu] x2 maxpool(2) gap dense(10)
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

#define MAX_REPEAT 64
#define MAX_NESTING 8

// Text with a growing length (expansion stops with an error past `cap`).
typedef struct {
    char *s;
    size_t len, cap;
} Text;

static int text_add(Text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) return 0;
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = 0;
    return 1;
}

// Expands desc[*i ..] up to the ']' that closes this level (top: the end)
// into out; *i is left after it. UNCLOSED: the text ended inside a group
// (reported by the caller, which knows where the group opened).
#define UNCLOSED ((CnnStatus)-1)
static CnnStatus expand_groups(const char *desc, size_t *i, int depth, Text *out) {
    while (desc[*i]) {
        const char c = desc[*i];
        if (c == ']') {
            if (depth == 0)
                return cnn_error(CNN_EFORMAT, "model description: ']' at character %zu closes no '['", *i + 1);
            (*i)++;
            return CNN_OK;
        }
        if (c != '[') {
            if (!text_add(out, &desc[(*i)++], 1)) break;
            continue;
        }
        const size_t open = (*i)++;
        if (depth + 1 > MAX_NESTING)
            return cnn_error(CNN_EFORMAT, "model description: the group at character %zu is nested more than %d deep",
                             open + 1, MAX_NESTING);
        Text inner = {.s = malloc(out->cap), .cap = out->cap};
        if (!inner.s) return cnn_error(CNN_ENOMEM, "model description: out of memory");
        inner.s[0] = 0;
        CnnStatus st = expand_groups(desc, i, depth + 1, &inner);
        if (st == UNCLOSED)
            st = cnn_error(CNN_EFORMAT, "model description: '[' at character %zu has no matching ']'", open + 1);
        size_t j = *i;
        while (!st && isspace((unsigned char)desc[j])) j++;
        char *end = NULL;
        const long reps = !st && (desc[j] == 'x' || desc[j] == 'X') ? strtol(desc + j + 1, &end, 10) : 0;
        if (!st && (!end || end == desc + j + 1 || isspace((unsigned char)desc[j + 1])))
            st = cnn_error(CNN_EFORMAT, "model description: the group closed at character %zu needs a repeat "
                           "count after ']', e.g. [conv(8,3) relu] x2", *i);
        if (!st && (reps < 1 || reps > MAX_REPEAT))
            st = cnn_error(CNN_EFORMAT, "model description: repeat count x%ld at character %zu must be in 1..%d",
                           reps, j + 1, MAX_REPEAT);
        if (!st && *end && !isspace((unsigned char)*end) && *end != ']')
            st = cnn_error(CNN_EFORMAT, "model description: unexpected '%c' after the repeat count at character %zu",
                           *end, (size_t)(end - desc) + 1);
        for (long r = 0; !st && r < reps; r++)
            if (!text_add(out, " ", 1) || !text_add(out, inner.s, inner.len) || !text_add(out, " ", 1))
                st = cnn_error(CNN_EFORMAT, "model description: more than %zu characters once its groups are "
                               "repeated", out->cap - 1);
        free(inner.s);
        if (st) return st;
        *i = (size_t)(end - desc);
    }
    if (desc[*i]) return cnn_error(CNN_EFORMAT, "model description: more than %zu characters once its groups are "
                                   "repeated", out->cap - 1);
    return depth > 0 ? UNCLOSED : CNN_OK;
}

void layer_spec_format(const LayerSpec *s, char *buf, size_t n) {
    if (s->ops->format) s->ops->format(s, buf, n);
    else snprintf(buf, n, "%s", s->ops->name);
}

static CnnStatus parse_layers(const char *desc, LayerSpec *specs, int max_specs, int *n);

CnnStatus model_desc_parse(const char *desc, LayerSpec *specs, int max_specs, int *n) {
    *n = 0;
    if (!strchr(desc, '[') && !strchr(desc, ']')) return parse_layers(desc, specs, max_specs, n);
    Text out = {.s = malloc(65536), .cap = 65536};
    if (!out.s) return cnn_error(CNN_ENOMEM, "model description: out of memory");
    out.s[0] = 0;
    size_t i = 0;
    CnnStatus st = expand_groups(desc, &i, 0, &out);
    if (!st) st = parse_layers(out.s, specs, max_specs, n);
    free(out.s);
    return st;
}

static CnnStatus parse_layers(const char *desc, LayerSpec *specs, int max_specs, int *n) {
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
