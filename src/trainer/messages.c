// trainer: messages, exits and the report tables.
#include "trainer.h"

// ---------------------------------------------------------------- messages
void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("trainer: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    ranks_abort(code);
    exit(code);
}

// Library errors were already printed by cnnc ("cnnc: <file>: <problem>").
void check(CnnStatus st) {
    if (!st) return;
    ranks_abort(st == CNN_EARG ? EXIT_USAGE : EXIT_RUNTIME);
    exit(st == CNN_EARG ? EXIT_USAGE : EXIT_RUNTIME);
}

// A model that cannot be built from --model is a usage error; memory is not.
void check_model(CnnStatus st) {
    if (!st) return;
    ranks_abort(st == CNN_ENOMEM ? EXIT_RUNTIME : EXIT_USAGE);
    exit(st == CNN_ENOMEM ? EXIT_RUNTIME : EXIT_USAGE);
}

double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

const char *plural(long n) { return n == 1 ? "" : "s"; }

// The shortest text that reads back as x: 0.001, not 0.00100000005.
const char *shortest_float(float x, char *buf, size_t n) {
    if (!buf || !n) return "";
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, n, "%.*g", digits, x);
        if (strtof(buf, NULL) == x) break;
    }
    return buf;
}
void format_count(double v, char *buf, size_t n) {
    if (v >= 1e9) snprintf(buf, n, "%.2f G", v / 1e9);
    else if (v >= 1e6) snprintf(buf, n, "%.2f M", v / 1e6);
    else if (v >= 1e3) snprintf(buf, n, "%.1f k", v / 1e3);
    else snprintf(buf, n, "%.0f", v);
}
static void tensor_label(int t, char *buf, size_t n) {
    if (t == -1) snprintf(buf, n, "input");
    else snprintf(buf, n, "%d", t);
}

// A graph (any layer reading other than the layer before it) gets an
// "inputs" column: the layers each one reads.
void print_summary(const CnnNet *net) {
    const int L = cnn_net_num_layers(net);
    int graph = 0;
    for (int i = 0; i < L; i++) {
        CnnLayerInfo li;
        cnn_net_layer_info(net, i, &li);
        graph |= li.input != i - 1 || li.input2 != -2;
    }
    printf("  #  %-36s %-14s %10s %12s%s\n", "layer", "output", "params", "FLOPs/image", graph ? "  inputs" : "");
    for (int i = 0; i < L; i++) {
        CnnLayerInfo li;
        cnn_net_layer_info(net, i, &li);
        char shape[32], fl[32], in[16], in2[16] = "";
        snprintf(shape, sizeof shape, "%dx%dx%d", li.OC, li.OH, li.OW);
        format_count(li.flops, fl, sizeof fl);
        tensor_label(li.input, in, sizeof in);
        if (li.input2 != -2) tensor_label(li.input2, in2, sizeof in2);
        printf(" %2d  %-36s %-14s %10zu %12s", i, li.text, shape, li.n_weight + li.n_bias, li.flops > 0 ? fl : "-");
        if (graph) printf("  %s%s%s", in, in2[0] ? ", " : "", in2);
        printf("\n");
    }
    char fl[32];
    format_count(cnn_net_flops(net), fl, sizeof fl);
    printf("     total: %zu parameters (%.2f MB as float32), %sFLOP forward per image\n", cnn_net_num_params(net),
           cnn_net_num_params(net) * 4.0 / 1e6, fl);
}
// ---------------------------------------------------------------- reports
// A table cell: s cut to its first `width` characters, whole UTF-8
// characters only (printf's precision counts bytes and may split one), then
// padded with spaces to `width` on the right (left) or the left.
static const char *cell(const char *s, int width, int left, char *buf, size_t n) {
    size_t end = 0;
    int chars = 0;
    for (; s[end]; end++)
        if (((unsigned char)s[end] & 0xC0) != 0x80 && chars++ == width) break;  // the start of one too many
    const int pad = chars < width ? width - chars : 0;
    if (left) snprintf(buf, n, "%.*s%*s", (int)end, s, pad, "");
    else snprintf(buf, n, "%*s%.*s", pad, "", (int)end, s);
    return buf;
}

void print_class_table(const CnnMetrics *m, const int64_t *cm, int K, char **names) {
    char c[96];
    printf("\n  %-14s %9s %9s %9s %8s\n", "class", "precision", "recall", "F1", "support");
    for (int k = 0; k < K && k < CNN_METRICS_MAX_CLASSES; k++)
        printf("  %s %9.4f %9.4f %9.4f %8lld\n", cell(names ? names[k] : "?", 14, 1, c, sizeof c), m->precision[k],
               m->recall[k], m->f1[k], (long long)m->support[k]);
    printf("  %-14s %9.4f %9.4f %9.4f\n", "macro avg", m->macro_precision, m->macro_recall, m->macro_f1);
    if (K > 20) return;  // a 100x100 matrix helps nobody on a terminal
    printf("\nconfusion matrix (rows: true class, columns: predicted):\n       ");
    for (int k = 0; k < K; k++) printf(" %s", cell(names ? names[k] : "?", 5, 0, c, sizeof c));
    printf("\n");
    for (int i = 0; i < K; i++) {
        printf("  %s", cell(names ? names[i] : "?", 5, 1, c, sizeof c));
        for (int j = 0; j < K; j++) printf(" %5lld", (long long)cm[(size_t)i * K + j]);
        printf("\n");
    }
}

double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}
