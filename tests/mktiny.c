// mktiny DIR [SIZE]: writes a tiny learnable MNIST-style data set (raw IDX
// files, 1xSIZExSIZE, 12 by default (28 at most), 10 classes: a bright bar
// whose position encodes the class) and two images of class 3 (digit3.png,
// digit3.pgm) for the trainer's tests.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

#define S_MAX 28
static int S = 12;

static unsigned rng = 12345;
static unsigned next(void) { return rng = rng * 1103515245u + 12345u; }

static void draw(unsigned char *img, int k) {
    for (int i = 0; i < S * S; i++) img[i] = (unsigned char)(next() >> 27);  // faint noise
    int row = 1 + k;  // classes 0..9: a horizontal bar on rows 1..10
    for (int x = 2; x < S - 2; x++) img[row * S + x] = 230;
}

static void be32(FILE *f, unsigned v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

static int write_set(const char *dir, const char *prefix, int n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, prefix);
    FILE *fi = fopen(p, "wb");
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, prefix);
    FILE *fl = fopen(p, "wb");
    if (!fi || !fl) return 1;
    be32(fi, 0x803); be32(fi, (unsigned)n); be32(fi, S); be32(fi, S);
    be32(fl, 0x801); be32(fl, (unsigned)n);
    unsigned char img[S_MAX * S_MAX];
    for (int i = 0; i < n; i++) {
        unsigned char k = (unsigned char)(i % 10);
        draw(img, k);
        fwrite(img, 1, (size_t)S * S, fi);
        fwrite(&k, 1, 1, fl);
    }
    return fclose(fi) | fclose(fl);
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3 || (argc == 3 && (atoi(argv[2]) < 12 || atoi(argv[2]) > S_MAX))) {
        fprintf(stderr, "usage: mktiny DIR [SIZE, 12..%d]\n", S_MAX);
        return 2;
    }
    if (argc == 3) S = atoi(argv[2]);
    const char *dir = argv[1];
    if (write_set(dir, "train", 400) || write_set(dir, "t10k", 100)) {
        perror(dir);
        return 1;
    }
    unsigned char img[S_MAX * S_MAX];
    draw(img, 3);
    char p[1024];
    snprintf(p, sizeof p, "%s/digit3.png", dir);
    if (!stbi_write_png(p, S, S, 1, img, S)) return 1;
    // The same image three times larger, as a binary PGM (resized on load).
    snprintf(p, sizeof p, "%s/digit3.pgm", dir);
    FILE *f = fopen(p, "wb");
    if (!f) return 1;
    fprintf(f, "P5\n%d %d\n255\n", 3 * S, 3 * S);
    for (int y = 0; y < 3 * S; y++)
        for (int x = 0; x < 3 * S; x++) fputc(img[(y / 3) * S + x / 3], f);
    fclose(f);
    snprintf(p, sizeof p, "%s/not-an-image.png", dir);
    f = fopen(p, "wb");
    fputs("hello", f);
    fclose(f);
    return 0;
}
