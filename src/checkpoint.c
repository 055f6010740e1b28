// Checkpoints in the safetensors format (8-byte little-endian header length,
// JSON header, raw little-endian data), so NumPy and PyTorch open them
// directly: safetensors.torch.load_file(path) gives a state_dict.
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "internal.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c writes host floats as little-endian; port the byte swaps first"
#endif

#define MAX_HEADER (64u << 20)  // a header beyond 64 MiB is not a cnnc checkpoint

// ---------------------------------------------------------------- metadata
CnnStatus cnn_meta_set(CnnMeta *m, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;  // values of any length (model descriptions)
    if (!buf) return cnn_error(CNN_ENOMEM, "out of memory");
    va_start(ap, fmt);
    vsnprintf(buf, (size_t)len + 1, fmt, ap);
    va_end(ap);
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->keys[i], key)) {
            free(m->values[i]);
            m->values[i] = buf;
            return CNN_OK;
        }
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 16;
        char **k = realloc(m->keys, cap * sizeof *k);
        if (!k) {
            free(buf);
            return cnn_error(CNN_ENOMEM, "out of memory");
        }
        m->keys = k;
        char **v = realloc(m->values, cap * sizeof *v);
        if (!v) {
            free(buf);
            return cnn_error(CNN_ENOMEM, "out of memory");
        }
        m->values = v;
        m->cap = cap;
    }
    m->keys[m->n] = strdup(key);
    if (!m->keys[m->n]) {
        free(buf);
        return cnn_error(CNN_ENOMEM, "out of memory");
    }
    m->values[m->n] = buf;
    m->n++;
    return CNN_OK;
}

const char *cnn_meta_get(const CnnMeta *m, const char *key) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->keys[i], key)) return m->values[i];
    return NULL;
}

void cnn_meta_free(CnnMeta *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

// ---------------------------------------------------------------- tensor list
typedef struct {
    char name[80];
    const NetTensor *t;
    float *data;  // what is stored: the weights, or one of the moments
} Entry;

static const char *MOMENT_NAMES[2][3] = {
    {"exp_avg", "exp_avg_sq", NULL},   // Adam, AdamW (PyTorch's state names)
    {"momentum_buffer", NULL, NULL},   // SGD
};

// All stored tensors in file order: weights and buffers, the weights'
// moving average and Lookahead's slow weights (if the net keeps them), then moments.
static int entries(CnnNet *net, const CnnOptimizer *opt, NetTensor *ts, Entry *e) {
    int nt = net_tensors(net, ts), n = 0;
    for (int i = 0; i < nt; i++) {
        snprintf(e[n].name, sizeof e[n].name, "%s", ts[i].name);
        e[n].t = &ts[i];
        e[n++].data = ts[i].data;
    }
    for (int i = 0; i < nt; i++) {
        if (!ts[i].m || !net_ema(net, ts[i].data)) continue;  // trainable tensors only
        snprintf(e[n].name, sizeof e[n].name, "ema.%s", ts[i].name);
        e[n].t = &ts[i];
        e[n++].data = net_ema(net, ts[i].data);
    }
    for (int i = 0; i < nt && cnn_net_lookahead(net); i++) {
        snprintf(e[n].name, sizeof e[n].name, "lookahead.%s", ts[i].name);
        e[n].t = &ts[i];
        e[n++].data = net_slow(net, ts[i].data);
    }
    if (!opt) return n;
    const char **names = MOMENT_NAMES[opt->kind == CNN_OPT_SGD];
    for (int k = 0; names[k]; k++)
        for (int i = 0; i < nt; i++) {
            if (!ts[i].m) continue;
            snprintf(e[n].name, sizeof e[n].name, "optimizer.%s.%s", names[k], ts[i].name);
            e[n].t = &ts[i];
            e[n++].data = k == 0 ? ts[i].m : ts[i].v;
        }
    return n;
}

// ---------------------------------------------------------------- save
static int add_meta(cJSON *md, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Any length: a model's canonical description runs to thousands of
// characters (vgg8bn's 540, resnet20's 2,900), and a cut one loads no net.
// Returns 0 when out of memory.
static int add_meta(cJSON *md, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!buf) return 0;
    va_start(ap, fmt);
    vsnprintf(buf, (size_t)n + 1, fmt, ap);
    va_end(ap);
    cJSON_DeleteItemFromObjectCaseSensitive(md, key);
    const int ok = cJSON_AddStringToObject(md, key, buf) != NULL;
    free(buf);
    return ok;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

CnnStatus cnn_checkpoint_save(const char *path, CnnNet *net, const CnnOptimizer *opt,
                              const CnnMeta *meta) {
    NetTensor ts[CNN_MAX_TENSORS];
    Entry e[5 * CNN_MAX_TENSORS];
    const int n = entries(net, opt, ts, e);
    cJSON *root = cJSON_CreateObject(), *md = cJSON_AddObjectToObject(root, "__metadata__");
    int C, H, W;
    cnn_net_input_shape(net, &C, &H, &W);
    int meta_ok = md != NULL;
    for (int i = 0; meta && i < meta->n; i++) meta_ok &= add_meta(md, meta->keys[i], "%s", meta->values[i]);
    meta_ok &= add_meta(md, "format", "cnnc-1");
    meta_ok &= add_meta(md, "model", "%s", cnn_net_desc(net));
    meta_ok &= add_meta(md, "input_shape", "%d,%d,%d", C, H, W);
    meta_ok &= add_meta(md, "net_step", "%llu", (unsigned long long)cnn_net_step(net));
    if (opt) {
        meta_ok &= add_meta(md, "optimizer", "%s", cnn_opt_name(opt->kind));
        meta_ok &= add_meta(md, "lr", "%.9g", opt->lr);
        meta_ok &= add_meta(md, "beta1", "%.9g", opt->beta1);
        meta_ok &= add_meta(md, "beta2", "%.9g", opt->beta2);
        meta_ok &= add_meta(md, "eps", "%.9g", opt->eps);
        meta_ok &= add_meta(md, "weight_decay", "%.9g", opt->weight_decay);
        meta_ok &= add_meta(md, "momentum", "%.9g", opt->momentum);
        meta_ok &= add_meta(md, "nesterov", "%d", opt->nesterov);
        meta_ok &= add_meta(md, "decay_skip_bn_bias", "%d", opt->decay_skip_bn_bias);
        meta_ok &= add_meta(md, "optimizer_step", "%ld", opt->t);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(root, e[i].name);
        cJSON_AddStringToObject(t, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(t, "shape"), *offs = cJSON_AddArrayToObject(t, "data_offsets");
        for (int d = 0; d < e[i].t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e[i].t->shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += e[i].t->numel * sizeof(float);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *json = meta_ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return cnn_error(CNN_ENOMEM, "%s: cannot format the checkpoint header", path);
    // Pad the header with spaces so the data starts 8-byte aligned (allowed by the format).
    size_t hlen = strlen(json), padded = (hlen + 7) & ~(size_t)7;

    // Temporary file in the same folder, so rename() is atomic.
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) { cJSON_free(json); return cnn_error(CNN_ENOMEM, "out of memory"); }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        CnnStatus st = cnn_error(CNN_EIO, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        free(tmp);
        cJSON_free(json);
        return st;
    }
    fchmod(fd, 0644);
    unsigned char len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    static const char spaces[8] = "        ";
    int bad = write_all(fd, len8, 8) || write_all(fd, json, hlen) || write_all(fd, spaces, padded - hlen);
    for (int i = 0; i < n && !bad; i++) bad = write_all(fd, e[i].data, e[i].t->numel * sizeof(float));
    cJSON_free(json);
    if (!bad) bad = fsync(fd);
    int err = errno;
    if (close(fd) && !bad) { bad = 1; err = errno; }
    if (!bad && rename(tmp, path)) { bad = 1; err = errno; }
    if (bad) {
        unlink(tmp);
        free(tmp);
        return cnn_error(CNN_EIO, "%s: cannot write checkpoint: %s (the previous file, if any, is untouched)",
                         path, strerror(err));
    }
    // Make the rename itself durable.
    char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
    if (dir) {
        if (slash) *(slash == dir ? slash + 1 : slash) = 0;
        int dfd = open(slash ? dir : ".", O_RDONLY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    free(tmp);
    return CNN_OK;
}

// ---------------------------------------------------------------- load
typedef struct {
    FILE *f;
    size_t file_size, data_start;
    cJSON *root;
} Reader;

static int read_size(const cJSON *a, int i, size_t *out) {
    const cJSON *x = cJSON_GetArrayItem(a, i);
    if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 9.0e15 ||
        x->valuedouble != (double)(size_t)x->valuedouble)
        return 0;
    *out = (size_t)x->valuedouble;
    return 1;
}

static void reader_close(Reader *r) {
    if (r->f) fclose(r->f);
    cJSON_Delete(r->root);
    memset(r, 0, sizeof *r);
}

static size_t dtype_size(const char *dtype) {
    static const struct {
        const char *name;
        size_t size;
    } T[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
             {"I16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1}};
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (!strcmp(T[i].name, dtype)) return T[i].size;
    return 0;
}

typedef struct {
    size_t begin, end;
    const char *name;
} Span;

static int span_cmp(const void *a, const void *b) {
    const Span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

// The whole header against the file, as the safetensors library checks it,
// whichever tensors the caller then reads: every entry's size matches its
// dtype and shape, and the entries tile the data section exactly, so a
// truncated or padded file is refused by every command.
static CnnStatus check_layout(const Reader *r, const char *path) {
    const size_t avail = r->file_size - r->data_start;
    const int n = cJSON_GetArraySize(r->root);
    Span *spans = malloc(sizeof(Span) * (size_t)(n > 0 ? n : 1));
    if (!spans) return cnn_error(CNN_ENOMEM, "%s: cannot allocate the tensor table", path);
    int k = 0;
    CnnStatus st = CNN_OK;
    const cJSON *t;
    cJSON_ArrayForEach(t, r->root) {
        if (!strcmp(t->string, "__metadata__")) continue;
        const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
        size_t numel = 1, a, b, esize = cJSON_IsString(dtype) ? dtype_size(dtype->valuestring) : 0;
        int ok = cJSON_IsObject(t) && esize && cJSON_IsArray(shape) && cJSON_IsArray(offs) &&
                 cJSON_GetArraySize(offs) == 2 && read_size(offs, 0, &a) && read_size(offs, 1, &b) && a <= b;
        for (int d = 0; ok && d < cJSON_GetArraySize(shape); d++) {
            size_t v;
            ok = read_size(shape, d, &v) && !__builtin_mul_overflow(numel, v, &numel);
        }
        if (!ok || __builtin_mul_overflow(numel, esize, &numel)) {
            st = cnn_error(CNN_EFORMAT, "%s: tensor '%s' has a bad dtype, shape or data_offsets", path, t->string);
            break;
        }
        if (b - a != numel) {
            st = cnn_error(CNN_EFORMAT, "%s: tensor '%s' data_offsets [%zu,%zu] hold %zu bytes, its dtype and shape need %zu",
                           path, t->string, a, b, b - a, numel);
            break;
        }
        spans[k++] = (Span){a, b, t->string};
    }
    if (!st) {
        qsort(spans, (size_t)k, sizeof(Span), span_cmp);
        size_t at = 0;
        for (int i = 0; i < k && !st; i++) {
            if (spans[i].begin != at)
                st = cnn_error(CNN_EFORMAT, "%s: tensor '%s' starts at byte %zu of the data section, expected %zu "
                               "(overlapping or missing data)", path, spans[i].name, spans[i].begin, at);
            at = spans[i].end;
        }
        if (!st && at != avail)
            st = cnn_error(CNN_EFORMAT, "%s: the header describes %zu bytes of tensor data but the file holds %zu "
                           "(truncated or not a checkpoint)", path, at, avail);
    }
    free(spans);
    return st;
}

static CnnStatus reader_open(Reader *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->f = fopen(path, "rb");
    if (!r->f) return cnn_error(CNN_EIO, "%s: cannot open checkpoint: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(r->f), &sb) || !S_ISREG(sb.st_mode)) {
        reader_close(r);
        return cnn_error(CNN_EIO, "%s: not a regular file", path);
    }
    const size_t size = r->file_size = (size_t)sb.st_size;
    unsigned char len8[8];
    if (size < 8 || fread(len8, 1, 8, r->f) != 8) {
        reader_close(r);
        return cnn_error(CNN_EFORMAT, "%s: %zu bytes is too short for a safetensors checkpoint (needs an 8-byte header length)",
                         path, size);
    }
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++) hlen |= (uint64_t)len8[b] << (8 * b);
    if (hlen == 0 || hlen > MAX_HEADER || hlen > size - 8) {
        reader_close(r);
        return cnn_error(CNN_EFORMAT, "%s: header length %llu does not fit a file of %zu bytes (truncated or not a checkpoint)",
                         path, (unsigned long long)hlen, size);
    }
    char *json = malloc(hlen);
    if (!json) {
        reader_close(r);
        return cnn_error(CNN_ENOMEM, "%s: cannot allocate the header", path);
    }
    if (fread(json, 1, hlen, r->f) != hlen) {
        free(json);
        reader_close(r);
        return cnn_error(CNN_EIO, "%s: cannot read the %llu-byte header", path, (unsigned long long)hlen);
    }
    r->root = cJSON_ParseWithLength(json, hlen);
    free(json);
    if (!r->root || !cJSON_IsObject(r->root)) {
        reader_close(r);
        return cnn_error(CNN_EFORMAT, "%s: the header is not a JSON object", path);
    }
    r->data_start = 8 + hlen;
    CnnStatus st = check_layout(r, path);
    if (st) reader_close(r);
    return st;
}

static CnnStatus read_meta(const Reader *r, const char *path, CnnMeta *meta) {
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(r->root, "__metadata__");
    if (!cJSON_IsObject(md)) return cnn_error(CNN_EFORMAT, "%s: no __metadata__ object: not a cnnc checkpoint", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, md) {
        if (!cJSON_IsString(it))
            return cnn_error(CNN_EFORMAT, "%s: metadata '%s' is not a string", path, it->string);
        CnnStatus st = cnn_meta_set(meta, it->string, "%s", it->valuestring);
        if (st) return st;
    }
    const char *fmt = cnn_meta_get(meta, "format");
    if (!fmt || strcmp(fmt, "cnnc-1"))
        return cnn_error(CNN_EFORMAT, "%s: metadata format is '%s', expected 'cnnc-1'", path, fmt ? fmt : "(none)");
    if (!cnn_meta_get(meta, "model") || !cnn_meta_get(meta, "input_shape"))
        return cnn_error(CNN_EFORMAT, "%s: metadata lacks 'model' or 'input_shape'", path);
    return CNN_OK;
}

CnnStatus cnn_checkpoint_read_meta(const char *path, CnnMeta *meta) {
    Reader r;
    CnnStatus st = reader_open(&r, path);
    if (st) return st;
    st = read_meta(&r, path, meta);
    reader_close(&r);
    return st;
}

// Checks one tensor's header entry against what the net expects; reads it into dst.
static CnnStatus load_entry(Reader *r, const char *path, const Entry *e, float *dst) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r->root, e->name);
    if (!cJSON_IsObject(t)) return cnn_error(CNN_EFORMAT, "%s: tensor '%s' is missing", path, e->name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    if (!cJSON_IsString(dtype) || strcmp(dtype->valuestring, "F32"))
        return cnn_error(CNN_EFORMAT, "%s: tensor '%s' has dtype %s, expected F32", path, e->name,
                         cJSON_IsString(dtype) ? dtype->valuestring : "(none)");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    char want[64] = "", got[64] = "";
    for (int d = 0; d < e->t->ndim; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)e->t->shape[d]);
    int same = cJSON_IsArray(shape) && cJSON_GetArraySize(shape) == e->t->ndim;
    for (int d = 0; cJSON_IsArray(shape) && d < cJSON_GetArraySize(shape) && d < 8; d++) {
        size_t v = 0;
        if (!read_size(shape, d, &v)) same = 0;
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%zu", d ? "," : "", v);
        if (d < e->t->ndim && (int64_t)v != e->t->shape[d]) same = 0;
    }
    if (!same)
        return cnn_error(CNN_ESHAPE, "%s: tensor '%s' has shape [%s], the model needs [%s]", path, e->name, got, want);
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    size_t a, b;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !read_size(offs, 0, &a) || !read_size(offs, 1, &b))
        return cnn_error(CNN_EFORMAT, "%s: tensor '%s' has no valid data_offsets", path, e->name);
    const size_t bytes = e->t->numel * sizeof(float), avail = r->file_size - r->data_start;
    if (b < a || b - a != bytes || b > avail)
        return cnn_error(CNN_EFORMAT, "%s: tensor '%s' data_offsets [%zu,%zu] do not hold %zu bytes within the %zu-byte data section",
                         path, e->name, a, b, bytes, avail);
    if (fseek(r->f, (long)(r->data_start + a), SEEK_SET) || fread(dst, 1, bytes, r->f) != bytes)
        return cnn_error(CNN_EIO, "%s: cannot read tensor '%s'", path, e->name);
    return CNN_OK;
}

static CnnStatus opt_from_meta(const CnnMeta *m, const char *path, CnnOptimizer *opt) {
    const char *name = cnn_meta_get(m, "optimizer");
    if (!name) return cnn_error(CNN_EFORMAT, "%s: checkpoint holds no optimiser state", path);
    CnnOptKind kind;
    if (cnn_opt_parse(name, &kind)) return cnn_error(CNN_EFORMAT, "%s: unknown optimizer '%s'", path, name);
    cnn_opt_defaults(opt, kind);
    const char *keys[] = {"lr", "beta1", "beta2", "eps", "weight_decay", "momentum"};
    float *dst[] = {&opt->lr, &opt->beta1, &opt->beta2, &opt->eps, &opt->weight_decay, &opt->momentum};
    for (int i = 0; i < 6; i++) {
        const char *v = cnn_meta_get(m, keys[i]);
        char *end;
        if (!v || (*dst[i] = strtof(v, &end), *end || !*v))
            return cnn_error(CNN_EFORMAT, "%s: metadata '%s' is missing or not a number", path, keys[i]);
        // A NaN or negative rate would silently wreck the resumed run.
        const int beta = dst[i] == &opt->beta1 || dst[i] == &opt->beta2;
        if (!isfinite(*dst[i]) || *dst[i] < 0.0f || (beta && *dst[i] >= 1.0f))
            return cnn_error(CNN_EFORMAT, "%s: metadata '%s' is %s, outside %s", path, keys[i], v,
                             beta ? "[0, 1)" : "[0, inf)");
    }
    const char *t = cnn_meta_get(m, "optimizer_step"), *nest = cnn_meta_get(m, "nesterov");
    char *end;
    errno = 0;
    if (!t || !*t || (opt->t = strtol(t, &end, 10), *end) || errno || opt->t < 0)
        return cnn_error(CNN_EFORMAT, "%s: metadata 'optimizer_step' is missing or bad", path);
    opt->nesterov = nest && !strcmp(nest, "1");
    const char *skip = cnn_meta_get(m, "decay_skip_bn_bias");  // absent before 0.1.0's graphs: no skipping
    opt->decay_skip_bn_bias = skip && !strcmp(skip, "1");
    return CNN_OK;
}

CnnStatus cnn_checkpoint_load(const char *path, CnnNet *net, CnnOptimizer *opt, CnnMeta *meta) {
    Reader r;
    CnnStatus st = reader_open(&r, path);
    if (st) return st;
    CnnMeta local = {0};
    CnnMeta *m = meta ? meta : &local;
    if ((st = read_meta(&r, path, m))) goto done;
    // The description must be the model's own (canonical text compares exactly).
    if (strcmp(cnn_meta_get(m, "model"), cnn_net_desc(net))) {
        st = cnn_error(CNN_ESHAPE, "%s: checkpoint model \"%s\" differs from this model \"%s\"", path,
                       cnn_meta_get(m, "model"), cnn_net_desc(net));
        goto done;
    }
    int C, H, W;
    char shape[48];
    cnn_net_input_shape(net, &C, &H, &W);
    snprintf(shape, sizeof shape, "%d,%d,%d", C, H, W);
    if (strcmp(cnn_meta_get(m, "input_shape"), shape)) {
        st = cnn_error(CNN_ESHAPE, "%s: checkpoint input shape %s differs from this model's %s", path,
                       cnn_meta_get(m, "input_shape"), shape);
        goto done;
    }
    CnnOptimizer o;
    if (opt && (st = opt_from_meta(m, path, &o))) goto done;
    // Optional (older files lack it), but when present a whole decimal number.
    const char *step = cnn_meta_get(m, "net_step");
    unsigned long long net_step = 0;
    if (step) {
        char *end;
        errno = 0;
        net_step = strtoull(step, &end, 10);
        if (!*step || *end || errno || step[strspn(step, " \t")] == '-') {
            st = cnn_error(CNN_EFORMAT, "%s: metadata 'net_step' is '%s', not a step count", path, step);
            goto done;
        }
    }
    NetTensor ts[CNN_MAX_TENSORS];
    Entry e[5 * CNN_MAX_TENSORS];
    const int n = entries(net, opt ? &o : NULL, ts, e);
    // Read everything into scratch first: a failed load leaves the net untouched.
    size_t total = 0;
    for (int i = 0; i < n; i++) total += e[i].t->numel;
    float *scratch = cnn_alloc_floats(total);
    if (!scratch) { st = cnn_error(CNN_ENOMEM, "%s: out of memory", path); goto done; }
    size_t pos = 0;
    for (int i = 0; i < n && !st; i++) {
        st = load_entry(&r, path, &e[i], scratch + pos);
        pos += e[i].t->numel;
    }
    // Any tensor the model does not have means the file is for another model.
    const cJSON *it;
    cJSON_ArrayForEach(it, r.root) {
        if (st) break;
        if (!strcmp(it->string, "__metadata__")) continue;
        int known = 0;
        for (int i = 0; i < n && !known; i++) known = !strcmp(it->string, e[i].name);
        // Without an optimiser, a moving average or Lookahead, their tensors are left out.
        if (!known && !(!opt && !strncmp(it->string, "optimizer.", 10)) &&
            !(!cnn_net_ema_decay(net) && !strncmp(it->string, "ema.", 4)) &&
            !(!cnn_net_lookahead(net) && !strncmp(it->string, "lookahead.", 10)))
            st = cnn_error(CNN_ESHAPE, "%s: tensor '%s' does not belong to this model", path, it->string);
    }
    if (!st) {
        pos = 0;
        for (int i = 0; i < n; i++) {
            memcpy(e[i].data, scratch + pos, e[i].t->numel * sizeof(float));
            pos += e[i].t->numel;
        }
        if (opt) *opt = o;
        if (step) cnn_net_set_step(net, net_step);
    }
    cnn_free(scratch);
done:
    if (!meta) cnn_meta_free(&local);
    reader_close(&r);
    return st;
}
