// make_corpus DIR: writes valid seed inputs for every fuzz target into
// DIR/<target>/ (the folders must exist), in each target's input layout:
//   idx, idx_gz   tiny IDX image + label pairs (raw; gzip-compressed or not)
//   cifar         CIFAR-10/100 record files and class-name files
//   checkpoint    checkpoints saved from the fuzzer's net, with and without
//                 optimiser state
//   model_desc    the built-in models expanded, and descriptions using every
//                 layer and argument form
//   image         PNG, BMP, TGA, JPEG, HDR (stb_image_write), PGM and PPM
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>
#include <zlib.h>

#include "cnnc.h"

#define FUZZ_NET "conv(2,3) bn relu flatten dense(3)"  // as in fuzz_checkpoint.c

static const char *dir;
static int failed;

// ---------------------------------------------------------------- bytes
typedef struct {
    unsigned char *p;
    size_t n, cap;
} Buf;

static void put(Buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put8(Buf *b, unsigned v) {
    unsigned char c = (unsigned char)v;
    put(b, &c, 1);
}

static void put_be32(Buf *b, unsigned v) {
    for (int s = 24; s >= 0; s -= 8) put8(b, v >> s);
}

static void put_le16(Buf *b, size_t v) {
    put8(b, (unsigned)(v & 0xff));
    put8(b, (unsigned)(v >> 8 & 0xff));
}

static void save(const char *target, const char *name, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        failed = 1;
    }
}

// The gzip (single member) form of src.
static Buf gzip(const Buf *src) {
    z_stream z = {0};
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    Buf out = {0};
    out.cap = deflateBound(&z, (uLong)src->n);
    out.p = malloc(out.cap);
    if (!out.p) abort();
    z.next_in = src->p;
    z.avail_in = (uInt)src->n;
    z.next_out = out.p;
    z.avail_out = (uInt)out.cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    out.n = out.cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

// ---------------------------------------------------------------- IDX
static void idx_pair(Buf *images, Buf *labels, unsigned n, unsigned rows, unsigned cols) {
    put_be32(images, 0x803);
    put_be32(images, n);
    put_be32(images, rows);
    put_be32(images, cols);
    for (unsigned i = 0; i < n * rows * cols; i++) put8(images, i * 29);
    put_be32(labels, 0x801);
    put_be32(labels, n);
    for (unsigned i = 0; i < n; i++) put8(labels, i % 10);
}

// split (2 bytes LE) + a + b: the layout of fuzz_idx.c.
static void save_split(const char *target, const char *name, const Buf *prefix, const Buf *a,
                       const Buf *b) {
    Buf in = {0};
    if (prefix) put(&in, prefix->p, prefix->n);
    put_le16(&in, a->n);
    put(&in, a->p, a->n);
    put(&in, b->p, b->n);
    save(target, name, in.p, in.n);
    free(in.p);
}

static void make_idx(void) {
    static const unsigned shapes[][3] = {{3, 4, 4}, {1, 1, 1}, {10, 2, 3}, {2, 28, 28}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        Buf im = {0}, lb = {0};
        idx_pair(&im, &lb, shapes[s][0], shapes[s][1], shapes[s][2]);
        char name[32];
        snprintf(name, sizeof name, "pair-%zu", s);
        save_split("idx", name, NULL, &im, &lb);
        // idx_gz modes: 0 compressed by the harness, 2 the same with raw
        // labels, 1 already gzip bytes.
        Buf m0 = {0}, m1 = {0}, m2 = {0};
        put8(&m0, 0);
        put8(&m1, 1);
        put8(&m2, 2);
        snprintf(name, sizeof name, "plain-%zu", s);
        save_split("idx_gz", name, &m0, &im, &lb);
        snprintf(name, sizeof name, "plain-rawlabels-%zu", s);
        save_split("idx_gz", name, &m2, &im, &lb);
        Buf gi = gzip(&im), gl = gzip(&lb);
        snprintf(name, sizeof name, "gzip-%zu", s);
        save_split("idx_gz", name, &m1, &gi, &gl);
        free(gi.p);
        free(gl.p);
        free(m0.p);
        free(m1.p);
        free(m2.p);
        free(im.p);
        free(lb.p);
    }
}

// ---------------------------------------------------------------- CIFAR
static void names(Buf *b, int classes) {
    static const char *ten[] = {"airplane", "automobile", "bird", "cat", "deer",
                                "dog", "frog", "horse", "ship", "truck"};
    char line[32];
    for (int k = 0; k < classes; k++) {
        if (classes == 10)
            snprintf(line, sizeof line, "%s\n", ten[k]);
        else
            snprintf(line, sizeof line, "class_%d\r\n", k);
        put(b, line, strlen(line));
    }
    put8(b, '\n');  // empty lines are skipped
}

// flags, split, records, names: the layout of fuzz_cifar.c.
static void cifar_seed(const char *name, unsigned flags, const Buf *rec, int classes) {
    Buf nm = {0}, pre = {0};
    names(&nm, classes);
    put8(&pre, flags);
    save_split("cifar", name, &pre, rec, &nm);
    free(nm.p);
    free(pre.p);
}

static void make_cifar(void) {
    Buf r = {0};
    // Expanded: label bytes only.
    for (int i = 0; i < 12; i++) put8(&r, (unsigned)(i % 10));
    cifar_seed("c10-expand", 2, &r, 10);
    cifar_seed("c10-expand-two", 6, &r, 10);
    r.n = 0;
    for (int i = 0; i < 6; i++) {
        put8(&r, (unsigned)(i * 3 % 20));
        put8(&r, (unsigned)(i * 17 % 100));
    }
    cifar_seed("c100-expand", 3, &r, 100);
    cifar_seed("c100-expand-two", 7, &r, 100);
    // Raw records: CIFAR-10 with one record, CIFAR-100 with one.
    r.n = 0;
    put8(&r, 7);
    for (int i = 0; i < 3072; i++) put8(&r, (unsigned)(i * 13));
    cifar_seed("c10-raw", 0, &r, 10);
    r.n = 0;
    put8(&r, 19);
    put8(&r, 99);
    for (int i = 0; i < 3072; i++) put8(&r, (unsigned)(i * 5));
    cifar_seed("c100-raw", 1, &r, 100);
    free(r.p);
}

// ---------------------------------------------------------------- checkpoints
static void copy_into(const char *target, const char *name, const char *src) {
    FILE *f = fopen(src, "rb");
    Buf b = {0};
    unsigned char tmp[4096];
    size_t got;
    while (f && (got = fread(tmp, 1, sizeof tmp, f)) > 0) put(&b, tmp, got);
    if (!f) {
        fprintf(stderr, "make_corpus: cannot read %s\n", src);
        failed = 1;
        return;
    }
    fclose(f);
    save(target, name, b.p, b.n);
    free(b.p);
}

static void make_checkpoints(void) {
    CnnNet *net;
    if (cnn_net_create(&net, FUZZ_NET, 1, 5, 5, 2, 1)) {
        fprintf(stderr, "make_corpus: %s\n", cnn_last_error());
        failed = 1;
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/checkpoint/.tmp-ckpt", dir);
    CnnMeta meta = {0};
    cnn_meta_set(&meta, "epoch", "%d", 3);
    cnn_meta_set(&meta, "dataset", "%s", "mnist");
    const CnnOptKind kinds[] = {CNN_OPT_ADAM, CNN_OPT_ADAMW, CNN_OPT_SGD};
    const char *names_[] = {"adam", "adamw", "sgd"};
    if (cnn_checkpoint_save(path, net, NULL, NULL) == CNN_OK) copy_into("checkpoint", "plain", path);
    if (cnn_checkpoint_save(path, net, NULL, &meta) == CNN_OK) copy_into("checkpoint", "meta", path);
    for (int k = 0; k < 3; k++) {
        CnnOptimizer opt;
        cnn_opt_defaults(&opt, kinds[k]);
        opt.t = 42;
        opt.nesterov = k == 2;
        opt.momentum = k == 2 ? 0.9f : 0.0f;
        if (cnn_checkpoint_save(path, net, &opt, &meta) == CNN_OK)
            copy_into("checkpoint", names_[k], path);
        else
            failed = 1;
    }
    remove(path);
    cnn_meta_free(&meta);
    cnn_net_free(net);
}

// ---------------------------------------------------------------- descriptions
static void make_descs(void) {
    static const char *builtin[] = {"lenet", "tfcnn", "vgg8bn", "resnet20"};
    static const char *extra[] = {
        "conv(8,3,stride=2,pad=1) bn relu avgpool(2) dropout(0.25) gap fc(5)",
        "conv(4,3x5,bias=0) maxpool(3,stride=1) flatten linear(7,bias=0)",
        "conv2d(out=4,k=3) globalavgpool dense(out=3)",
        ("conv(4,kernel=2x2,stride=2,pad=0) batchnorm(eps=0.001,momentum=0.01) relu "
         "maxpool(k=2,stride=2) flatten dropout(p=0.5) dense(16) relu dense(2)"),
        "flatten dense(10)",
        "conv(3,1) avgpool(kernel=4) gap dense(4,bias=1)",
        "dropout(0.9999999) bn(eps=1.2345678e-5,momentum=0.3) flatten dense(3)",
    };
    char buf[CNN_DESC_MAX], name[32];
    for (int i = 0; i < 3; i++) {
        save("model_desc", builtin[i], builtin[i], strlen(builtin[i]));
        if (cnn_builtin_model(builtin[i], 10, buf, sizeof buf) == CNN_OK) {
            snprintf(name, sizeof name, "%s-expanded", builtin[i]);
            save("model_desc", name, buf, strlen(buf));
        }
    }
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        snprintf(name, sizeof name, "desc-%zu", i);
        save("model_desc", name, extra[i], strlen(extra[i]));
        // The canonical form, as checkpoints store it.
        CnnNet *net;
        if (cnn_net_create(&net, extra[i], 3, 16, 16, 1, 1) == CNN_OK) {
            snprintf(name, sizeof name, "desc-%zu-canonical", i);
            save("model_desc", name, cnn_net_desc(net), strlen(cnn_net_desc(net)));
            cnn_net_free(net);
        } else {
            fprintf(stderr, "make_corpus: %s: %s\n", extra[i], cnn_last_error());
            failed = 1;
        }
    }
}

// ---------------------------------------------------------------- images
static void image_file(const char *name, int ok) {
    if (!ok) {
        fprintf(stderr, "make_corpus: cannot write image %s\n", name);
        failed = 1;
    }
}

static void make_images(void) {
    enum { W = 7, H = 5 };
    unsigned char px[H * W * 4];
    float hdr[H * W * 3];
    for (int i = 0; i < H * W * 4; i++) px[i] = (unsigned char)(i * 37);
    for (int i = 0; i < H * W * 3; i++) hdr[i] = (float)i / 16.0f;
    char path[1024];
#define IMG(name) (snprintf(path, sizeof path, "%s/image/%s", dir, name), path)
    image_file("grey.png", stbi_write_png(IMG("grey.png"), W, H, 1, px, W));
    image_file("rgb.png", stbi_write_png(IMG("rgb.png"), W, H, 3, px, W * 3));
    image_file("rgba.png", stbi_write_png(IMG("rgba.png"), W, H, 4, px, W * 4));
    image_file("rgb.bmp", stbi_write_bmp(IMG("rgb.bmp"), W, H, 3, px));
    image_file("grey.tga", stbi_write_tga(IMG("grey.tga"), W, H, 1, px));
    image_file("rgb.jpg", stbi_write_jpg(IMG("rgb.jpg"), W, H, 3, px, 90));
    image_file("grey.jpg", stbi_write_jpg(IMG("grey.jpg"), W, H, 1, px, 50));
    image_file("rgb.hdr", stbi_write_hdr(IMG("rgb.hdr"), W, H, 3, hdr));
#undef IMG
    Buf b = {0};
    char head[32];
    snprintf(head, sizeof head, "P5\n%d %d\n255\n", W, H);
    put(&b, head, strlen(head));
    put(&b, px, W * H);
    save("image", "grey.pgm", b.p, b.n);
    b.n = 0;
    snprintf(head, sizeof head, "P6\n# c\n%d %d\n255\n", W, H);
    put(&b, head, strlen(head));
    put(&b, px, W * H * 3);
    save("image", "rgb.ppm", b.p, b.n);
    free(b.p);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR (with DIR/{idx,idx_gz,cifar,checkpoint,model_desc,image})\n");
        return 2;
    }
    dir = argv[1];
    cnn_set_quiet(1);
    cnn_threads_init(1);
    make_idx();
    make_cifar();
    make_checkpoints();
    make_descs();
    make_images();
    return failed;
}
