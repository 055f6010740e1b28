// The model description language: layers separated by white space, each a
// name with optional arguments, positional or key=value, and groups of
// layers repeated N times as [ ... ] xN (nested groups too):
//   conv(32,3) relu maxpool(2) conv(64,3,stride=1,pad=1) flatten dense(10)
//   [conv(64,3,pad=1,bias=0) bn relu] x2 maxpool(2) gap dense(10)
// Each layer reads the tensor before it, unless the description says
// otherwise: @name names the current tensor, from(name) makes a named
// tensor current, and merge layers (add, concat) take the current tensor
// and a named one. A name may be given again (inside a repeated group, each
// copy gives it anew); a reference means the latest tensor of that name:
//   conv(16,3,pad=1) relu [@x conv(16,3,pad=1) relu conv(16,3,pad=1) add(x) relu] x3 gap dense(10)
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

CnnStatus cnn_model_check(const char *desc) {
    LayerSpec specs[CNN_MAX_LAYERS];
    int n;
    return model_desc_parse(desc, specs, CNN_MAX_LAYERS, &n);
}

// Names given so far and the tensors they mean (the latest wins).
typedef struct {
    int n;
    char name[CNN_MAX_LAYERS + 1][LAYER_NAME_MAX + 1];
    int tensor[CNN_MAX_LAYERS + 1];
} Names;

static int name_find(const Names *t, const char *name) {
    for (int i = t->n - 1; i >= 0; i--)
        if (!strcmp(t->name[i], name)) return t->tensor[i];
    return LAYER_NO_INPUT;
}

// A tensor name at p: a letter, then letters, digits or '_'; *len is its
// length (0 if none). Returns a status if it is too long.
static CnnStatus read_name(const char *p, const char *desc, char *out, size_t *len) {
    const size_t k = layer_name_length(p);
    *len = k;
    if (k > LAYER_NAME_MAX)
        return cnn_error(CNN_EFORMAT, "model description: the name at character %d is longer than %d characters",
                         (int)(p - desc) + 1, LAYER_NAME_MAX);
    memcpy(out, p, k);
    out[k] = 0;
    return CNN_OK;
}

static CnnStatus prefix_add(char *prefix, const char *text, int idx) {
    const size_t len = strlen(prefix);
    if (len + strlen(text) + 2 > LAYER_PREFIX_MAX)
        return cnn_error(CNN_EFORMAT, "model description: too many names and from() before layer %d", idx);
    snprintf(prefix + len, LAYER_PREFIX_MAX - len, "%s%s", len ? " " : "", text);
    return CNN_OK;
}

// One directive at *pp (@name or from(name)); returns 1 if there was one.
static int parse_directive(const char **pp, const char *desc, int idx, Names *names, int *cur, char *prefix,
                           CnnStatus *st) {
    const char *p = *pp;
    char name[LAYER_NAME_MAX + 1], text[LAYER_NAME_MAX + 8];
    size_t len;
    if (*p == '@') {
        if ((*st = read_name(p + 1, desc, name, &len))) return 1;
        if (!len) {
            *st = cnn_error(CNN_EFORMAT, "model description: '@' at character %d needs a name, e.g. @x",
                            (int)(p - desc) + 1);
            return 1;
        }
        if (names->n > CNN_MAX_LAYERS) {
            *st = cnn_error(CNN_EFORMAT, "model description: more than %d names", CNN_MAX_LAYERS + 1);
            return 1;
        }
        strcpy(names->name[names->n], name);
        names->tensor[names->n++] = *cur;
        snprintf(text, sizeof text, "@%s", name);
        *st = prefix_add(prefix, text, idx);
        *pp = p + 1 + len;
        return 1;
    }
    if (strncmp(p, "from(", 5)) return 0;
    if ((*st = read_name(p + 5, desc, name, &len))) return 1;
    if (!len || p[5 + len] != ')') {
        *st = cnn_error(CNN_EFORMAT, "model description: from( at character %d needs a name and ')', e.g. from(x)",
                        (int)(p - desc) + 1);
        return 1;
    }
    const int t = name_find(names, name);
    if (t == LAYER_NO_INPUT) {
        *st = cnn_error(CNN_EFORMAT, "model description: from(%s) at character %d: no tensor is named '%s' "
                        "(name one with @%s)", name, (int)(p - desc) + 1, name, name);
        return 1;
    }
    *cur = t;
    snprintf(text, sizeof text, "from(%s)", name);
    *st = prefix_add(prefix, text, idx);
    *pp = p + 6 + len;
    return 1;
}

// Every layer's output but the last must feed a later layer.
static CnnStatus check_all_used(const LayerSpec *specs, int n) {
    for (int i = 0; i < n - 1; i++) {
        int used = 0;
        for (int j = i + 1; j < n && !used; j++) used = specs[j].in[0] == i || specs[j].in[1] == i;
        if (!used)
            return cnn_error(CNN_EFORMAT, "model description: the output of layer %d (%s) is used by no later "
                             "layer (a branch must end in add or concat)", i, specs[i].ops->name);
    }
    return CNN_OK;
}

static CnnStatus parse_layers(const char *desc, LayerSpec *specs, int max_specs, int *n) {
    const char *p = desc;
    Names names = {0};
    int cur = LAYER_INPUT;
    char prefix[LAYER_PREFIX_MAX] = "";
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const int idx = *n;
        CnnStatus dst = CNN_OK;
        if (parse_directive(&p, desc, idx, &names, &cur, prefix, &dst)) {
            if (dst) return dst;
            if (*p && !isspace((unsigned char)*p))
                return cnn_error(CNN_EFORMAT, "model description: unexpected '%c' at character %d", *p,
                                 (int)(p - desc) + 1);
            continue;
        }
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
        s->in[0] = cur;
        s->in[1] = LAYER_NO_INPUT;
        s->lr_w = s->lr_b = 1.0f;
        strcpy(s->prefix, prefix);
        prefix[0] = 0;
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
        if (ops->flags & LAYER_MERGE) {
            s->in[1] = name_find(&names, s->ref);
            if (s->in[1] == LAYER_NO_INPUT)
                return cnn_error(CNN_EFORMAT, "model description: layer %d (%s): no tensor is named '%s' "
                                 "(name one with @%s)", idx, name, s->ref, s->ref);
        }
        cur = idx;
        (*n)++;
        if (*p && !isspace((unsigned char)*p))
            return cnn_error(CNN_EFORMAT, "model description: unexpected '%c' after layer %d (%s)", *p, idx, name);
    }
    if (*n == 0) return cnn_error(CNN_EFORMAT, "model description is empty");
    if (cur != *n - 1)
        return cnn_error(CNN_EFORMAT, "model description: from() after the last layer: the net's output is "
                         "its last layer");
    return check_all_used(specs, *n);
}
