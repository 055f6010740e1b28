// bf16 mixed precision: the rounding and the fused step against their
// definitions; the convolution and dense layers against a naive twin of
// the order of their sums (bit for bit), and against the double reference
// and its finite differences within the error bound of bf16 operands; nets
// bit-identical at any thread count and with or without fusions.
#include <float.h>
#include <string.h>

#include "layers/layer.h"
#include "testutil.h"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// ---------------------------------------------------------------- rounding and the step
START_TEST(test_bf16_round) {
    static const uint32_t cases[][2] = {
        {0x3f800000u, 0x3f800000u},  // 1 is a bf16 value
        {0x3f808000u, 0x3f800000u},  // a tie: to the even 0x3f80
        {0x3f818000u, 0x3f820000u},  // a tie: to the even 0x3f82
        {0x3f808001u, 0x3f810000u},  // above the tie: up
        {0x3f807fffu, 0x3f800000u},  // below it: down
        {0xbf80c000u, 0xbf810000u},  // negative: the magnitude rounds
        {0x7f7fffffu, 0x7f800000u},  // the largest float rounds to infinity
        {0x7f800000u, 0x7f800000u},  // infinity stays
        {0x00400000u, 0x00000000u},  // a denormal: zero
        {0x807fffffu, 0x80000000u},  // a negative denormal: -0
        {0x00800000u, 0x00800000u},  // the smallest normal stays
        {0x7f800001u, 0x7fc00000u},  // a signalling NaN: quiet
        {0xffc12345u, 0xffc10000u},  // a quiet NaN keeps its top bits
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const uint32_t got = bits(bf16_round(from_bits(cases[i][0])));
        ck_assert_msg(got == cases[i][1], "bf16_round(0x%08x) = 0x%08x, want 0x%08x", cases[i][0], got, cases[i][1]);
    }
    // Against the definition: the nearer of the two bf16 neighbours, ties to even.
    CnnRng r;
    cnn_rng_seed(&r, 1);
    for (int i = 0; i < 200000; i++) {
        const uint32_t u = (uint32_t)cnn_rng_below(&r, 0x7e800000u) + 0x00800000u;  // normal, below the top binade
        const float f = from_bits(u), lo = from_bits(u & 0xffff0000u), hi = from_bits((u & 0xffff0000u) + 0x10000u);
        const double dl = (double)f - lo, dh = (double)hi - f;
        const float want = dl < dh ? lo : dh < dl ? hi : ((bits(lo) >> 16) & 1 ? hi : lo);
        ck_assert_msg(bits(bf16_round(f)) == bits(want), "bf16_round(0x%08x)", u);
    }
}
END_TEST

// Every backend's conversion of arrays (VCVTNEPS2BF16 where the CPU has it)
// gives bf16_bits, over random bit patterns (NaNs, infinities, denormals
// among them) and every length's tail.
START_TEST(test_bf16_bits_array) {
    enum { N = 4099 };
    float *src = malloc(N * sizeof(float));
    uint16_t *dst = malloc((N + 1) * sizeof(uint16_t));
    CnnRng r;
    cnn_rng_seed(&r, 2);
    for (int i = 0; i < N; i++) {
        const uint32_t u = (uint32_t)cnn_rng_below(&r, 0x10000u) << 16 | (uint32_t)cnn_rng_below(&r, 0x10000u);
        src[i] = from_bits(i % 7 == 0 ? (u & 0x807fffffu) : i % 11 == 0 ? (u | 0x7f800000u) : u);
    }
    for (int kb = 0; kernels_next(&kb);)
        for (int n = 0; n <= 40; n++) {
            const int len = n < 35 ? n : N - (40 - n);
            dst[len] = 0xabcd;
            bf16_bits_array(src, dst, (size_t)len);
            for (int i = 0; i < len; i++)
                ck_assert_msg(dst[i] == bf16_bits(src[i]), "%s: bf16 of 0x%08x: 0x%04x, want 0x%04x",
                              cnn_kernels_name(), bits(src[i]), dst[i], bf16_bits(src[i]));
            ck_assert_msg(dst[len] == 0xabcd, "%s: wrote past %d elements", cnn_kernels_name(), len);
        }
    free(src);
    free(dst);
}
END_TEST

static float ftz(float r) { return fabsf(r) < FLT_MIN ? copysignf(0.0f, r) : r; }

// bf16_step is VDPBF16PS's fused step: fmaf (one rounding) with the result
// flushed, on bf16 operands over the whole exponent range.
START_TEST(test_bf16_step_is_one_rounding) {
    CnnRng r;
    cnn_rng_seed(&r, 2);
    for (int i = 0; i < 1000000; i++) {
        const float acc = ftz(from_bits((uint32_t)cnn_rng_below(&r, 0xffffffffu)));
        const float a = bf16_round(from_bits((uint32_t)cnn_rng_below(&r, 0xffffffffu)));
        // b near 1/a, or anywhere: cancellations, underflows and overflows
        const float b = i % 2 ? bf16_round(from_bits((uint32_t)cnn_rng_below(&r, 0xffffffffu)))
                              : bf16_round(-acc / (a != 0.0f ? a : 1.0f) * (1.0f + (cnn_rng_uniform(&r) - 0.5f) / 64));
        if (isnan(acc) || isnan(a) || isnan(b)) continue;
        const float got = bf16_step(acc, a, b), want = ftz(fmaf(a, b, acc));
        ck_assert_msg(bits(got) == bits(want) || (isnan(got) && isnan(want)),
                      "bf16_step(%a, %a, %a) = %a, fmaf gives %a", acc, a, b, got, want);
    }
}
END_TEST

// ---------------------------------------------------------------- the naive twins of the order
static float rd(float v) { return bf16_round(v); }

// The contract of conv2d_bf16.c, written out on the (N)CHW tensors.
static void twin_conv_forward(const Conv2d *l, const float *x, float *y, int B) {
    for (int b = 0; b < B; b++)
        for (int oc = 0; oc < l->OC; oc++)
            for (int oh = 0; oh < l->OH; oh++)
                for (int ow = 0; ow < l->OW; ow++) {
                    float acc = l->has_bias ? ftz(l->b[oc]) + 0.0f : 0.0f;
                    for (int kh = 0; kh < l->KH; kh++)
                        for (int kw = 0; kw < l->KW; kw++) {
                            const int ih = oh * l->S - l->P + kh, iw = ow * l->S - l->P + kw;
                            if (ih < 0 || ih >= l->H || iw < 0 || iw >= l->W) continue;
                            for (int c0 = 0; c0 < l->C; c0 += 2)
                                for (int c = c0 + 1; c >= c0; c--) {
                                    if (c >= l->C) continue;
                                    const float xv = x[(((size_t)b * l->C + c) * l->H + ih) * l->W + iw];
                                    const float wv = l->w[(((size_t)oc * l->C + c) * l->KH + kh) * l->KW + kw];
                                    acc = bf16_step(acc, rd(xv), rd(wv));
                                }
                        }
                    y[(((size_t)b * l->OC + oc) * l->OH + oh) * l->OW + ow] = acc;
                }
}

static void twin_conv_input_grad(const Conv2d *l, const float *dy, float *dx, int B) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < l->C; c++)
            for (int ih = 0; ih < l->H; ih++)
                for (int iw = 0; iw < l->W; iw++) {
                    float acc = 0.0f;
                    for (int kh = 0; kh < l->KH; kh++)
                        for (int kw = 0; kw < l->KW; kw++) {
                            const int th = ih + l->P - kh, tw = iw + l->P - kw;
                            if (th < 0 || tw < 0 || th % l->S || tw % l->S) continue;
                            const int oh = th / l->S, ow = tw / l->S;
                            if (oh >= l->OH || ow >= l->OW) continue;
                            for (int o0 = 0; o0 < l->OC; o0 += 2)
                                for (int oc = o0 + 1; oc >= o0; oc--) {
                                    if (oc >= l->OC) continue;
                                    const float d = dy[(((size_t)b * l->OC + oc) * l->OH + oh) * l->OW + ow];
                                    const float wv = l->w[(((size_t)oc * l->C + c) * l->KH + kh) * l->KW + kw];
                                    acc = bf16_step(acc, rd(d), rd(wv));
                                }
                        }
                    dx[(((size_t)b * l->C + c) * l->H + ih) * l->W + iw] = acc;
                }
}

// Each chunk from 0, its images in order, each output row in order, in it
// pixel pairs (ow+1 first); then the chunks' tree, as batch_sum sums it in
// one process.
static void twin_conv_weight_grad(const Conv2d *l, const float *x, const float *dy, float *dw, int B) {
    const size_t nw = (size_t)l->OC * l->C * l->KH * l->KW;
    const int nchunks = batch_chunks(B), N = l->OH * l->OW;
    float *part = calloc((size_t)nchunks * nw, sizeof(float));
    for (int ch = 0; ch < nchunks; ch++)
        for (int oc = 0; oc < l->OC; oc++)
            for (int c = 0; c < l->C; c++)
                for (int kh = 0; kh < l->KH; kh++)
                    for (int kw = 0; kw < l->KW; kw++) {
                        float acc = 0.0f;
                        for (int b = chunk_begin(B, nchunks, ch); b < chunk_begin(B, nchunks, ch + 1); b++)
                            for (int p0 = 0; p0 < N; p0 += 2 - (p0 % l->OW == l->OW - 1))
                                for (int p = p0 + 1; p >= p0; p--) {
                                    if (p >= N || p / l->OW != p0 / l->OW) continue;  // pairs in one row
                                    const int oh = p / l->OW, ow = p % l->OW;
                                    const int ih = oh * l->S - l->P + kh, iw = ow * l->S - l->P + kw;
                                    if (ih < 0 || ih >= l->H || iw < 0 || iw >= l->W) continue;
                                    const float d = dy[(((size_t)b * l->OC + oc) * l->OH + oh) * l->OW + ow];
                                    const float xv = x[(((size_t)b * l->C + c) * l->H + ih) * l->W + iw];
                                    acc = bf16_step(acc, rd(d), rd(xv));
                                }
                        part[(size_t)ch * nw + (((size_t)oc * l->C + c) * l->KH + kh) * l->KW + kw] = acc;
                    }
    chunk_tree_sum(part, nw, nchunks, nw);
    memcpy(dw, part, nw * sizeof(float));
    free(part);
}

static void assert_same_bits(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(bits(got[i]) == bits(want[i]), "%s[%zu]: %a, the contract's order gives %a", what, i, got[i],
                      want[i]);
}

// A backend that sums in an order of its own (AMX, kernels.h's
// bf16_own_sums) adds the same bf16 products: it and the twin each round
// at most K + 1 times, by at most 2^-24 of the sum of the terms'
// magnitudes (mag: the twin on |operands|), so they differ by at most
// (K + 1) 2^-23 mag. The other backends give the twin's bits.
static void assert_twin(const char *what, const float *got, const float *want, const float *mag, size_t n,
                        size_t K) {
    if (!kernels()->bf16_own_sums) {
        assert_same_bits(what, got, want, n);
        return;
    }
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double allowed = (double)(K + 1) * ldexp(1, -23) * mag[i] + 1e-30, err = fabs((double)got[i] - want[i]);
        worst = fmax(worst, err / allowed);
        ck_assert_msg(err <= allowed, "%s[%zu]: %a, the twin's sums %a: off by %.3g > %.3g ((K + 1) 2^-23 x %.3g)",
                      what, i, got[i], want[i], err, allowed, mag[i]);
    }
    printf("  %-10s within %.2f of the sums' rounding bound (%s)\n", what, worst, cnn_kernels_name());
}

static float *abs_floats(const float *v, size_t n) {
    float *a = cnn_alloc_floats(n);
    for (size_t i = 0; i < n; i++) a[i] = fabsf(v[i]);
    return a;
}

// ---------------------------------------------------------------- bounds against the double reference
// bf16 keeps 8 significant bits: rounding moves a value by at most 2^-8 of
// it, so a product of rounded operands is off by at most 2^-7 + 2^-16 of
// |x w|, and K fp32 additions add at most K 2^-24 of the sum of magnitudes
// (times 1 + 2^-7): |got - exact| <= (2^-7 + 2^-16 + K 2^-23) A, A the sum
// of |x w| over the terms (the same linear map on magnitudes).
static double bf16_bound(size_t K) { return ldexp(1, -7) + ldexp(1, -16) + (double)K * ldexp(1, -23); }

// got against exact (NaN: not computed, under emulation), each within
// bound * A[i] plus the finite differences' own error.
static void check_within(const char *what, const float *got, const double *exact, const double *A, size_t n,
                         double bound) {
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(A[i]));
    for (size_t i = 0; i < n; i++) {
        if (isnan(exact[i])) continue;
        const double allowed = bound * A[i] + 1e-7 * scale, err = fabs((double)got[i] - exact[i]);
        worst = fmax(worst, err / allowed);
        ck_assert_msg(err <= allowed, "%s[%zu]: %.9g, exact %.9g: off by %.3g > %.3g (bf16 bound x sum |terms| %.3g)",
                      what, i, got[i], exact[i], err, allowed, A[i]);
    }
    printf("  %-10s within %.2f of its bf16 bound\n", what, worst);
}

typedef struct {
    int B, C, H, W, OC, K, S, P, bias;
} Case;

typedef struct {
    Case k;
    int OH, OW;
    double *x, *w, *b, *r, *y;
} Ctx;

static double objective(void *p) {
    Ctx *c = p;
    ref_conv(c->x, c->w, c->k.bias ? c->b : NULL, c->y, c->k.B, c->k.C, c->k.H, c->k.W, c->k.OC, c->k.K, c->k.K,
             c->k.S, c->k.P, c->OH, c->OW);
    return dot_dd(c->y, c->r, (size_t)c->k.B * c->k.OC * c->OH * c->OW);
}

static double *abs_copy(const double *v, size_t n) {
    double *a = malloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i] = fabs(v[i]);
    return a;
}

static Workspace make_ws(const Conv2d *l, int B) {
    Workspace ws = {0};
    ws.col_size = (conv2d_col_size(l, chunk_images_max(B)) + 15) & ~(size_t)15;
    ws.partial_size = (conv2d_partial_size(l) + 15) & ~(size_t)15;
    ws.packed_size = conv2d_bf16_packed_size(l) > conv2d_packed_size(l) ? conv2d_bf16_packed_size(l)
                                                                         : conv2d_packed_size(l);
    ws.col = cnn_alloc_floats((size_t)batch_chunks(B) * ws.col_size);
    ws.partial = cnn_alloc_floats((size_t)batch_chunks(B) * ws.partial_size);
    ws.packed = cnn_alloc_floats(ws.packed_size);
    return ws;
}

static void run_conv_case(Case k, uint64_t seed, int with_bounds) {
    CnnRng r;
    cnn_rng_seed(&r, seed);
    Conv2d l = {.C = k.C, .H = k.H, .W = k.W, .OC = k.OC, .KH = k.K, .KW = k.K, .S = k.S, .P = k.P,
                .has_bias = k.bias, .bf16 = 1};
    l.OH = (k.H + 2 * k.P - k.K) / k.S + 1;
    l.OW = (k.W + 2 * k.P - k.K) / k.S + 1;
    printf("conv bf16 B=%d C=%d %dx%d OC=%d K=%d S=%d P=%d bias=%d -> %dx%d\n", k.B, k.C, k.H, k.W, k.OC, k.K, k.S,
           k.P, k.bias, l.OH, l.OW);
    const size_t nx = (size_t)k.B * k.C * k.H * k.W, nw = (size_t)k.OC * k.C * k.K * k.K;
    const size_t ny = (size_t)k.B * k.OC * l.OH * l.OW;
    float *x = cnn_alloc_floats(nx), *dx = cnn_alloc_floats(nx), *dx2 = cnn_alloc_floats(nx);
    float *y = cnn_alloc_floats(ny), *y2 = cnn_alloc_floats(ny), *dy = cnn_alloc_floats(ny);
    float *dw2 = cnn_alloc_floats(nw);
    l.w = cnn_alloc_floats(nw); l.dw = cnn_alloc_floats(nw);
    l.b = cnn_alloc_floats(k.OC); l.db = cnn_alloc_floats(k.OC);
    fill_uniform(x, nx, -1, 1, &r);
    fill_uniform(l.w, nw, -0.5f, 0.5f, &r);
    fill_uniform(l.b, k.OC, -0.5f, 0.5f, &r);
    fill_uniform(dy, ny, -1, 1, &r);
    Workspace ws = make_ws(&l, k.B);

    // Bit for bit: the layer and the twin of its order.
    // (the twin on magnitudes, for a backend with sums of its own)
    float *ym = cnn_alloc_floats(ny), *dxm = cnn_alloc_floats(nx), *dwm = cnn_alloc_floats(nw);
    if (kernels()->bf16_own_sums) {
        Conv2d la = l;
        la.w = abs_floats(l.w, nw), la.b = abs_floats(l.b, k.OC);
        float *xa = abs_floats(x, nx), *dya = abs_floats(dy, ny);
        twin_conv_forward(&la, xa, ym, k.B);
        twin_conv_input_grad(&la, dya, dxm, k.B);
        twin_conv_weight_grad(&la, xa, dya, dwm, k.B);
        cnn_free(la.w); cnn_free(la.b); cnn_free(xa); cnn_free(dya);
    }
    const size_t taps = (size_t)k.K * k.K;
    conv2d_forward(&l, x, y, k.B, &ws);
    twin_conv_forward(&l, x, y2, k.B);
    assert_twin("forward", y, y2, ym, ny, (size_t)k.C * taps);
    memset(l.dw, 0, nw * sizeof(float));
    conv2d_backward(&l, x, dy, dx, k.B, &ws);
    twin_conv_input_grad(&l, dy, dx2, k.B);
    assert_twin("dx", dx, dx2, dxm, nx, (size_t)k.OC * taps);
    twin_conv_weight_grad(&l, x, dy, dw2, k.B);
    assert_twin("dw", l.dw, dw2, dwm, nw, (size_t)k.B * l.OH * l.OW + 16);
    cnn_free(ym); cnn_free(dxm); cnn_free(dwm);
    if (!with_bounds) {
        cnn_free(ws.col); cnn_free(ws.partial); cnn_free(ws.packed);
        cnn_free(x); cnn_free(dx); cnn_free(dx2); cnn_free(y); cnn_free(y2); cnn_free(dy); cnn_free(dw2);
        cnn_free(l.w); cnn_free(l.dw); cnn_free(l.b); cnn_free(l.db);
        return;
    }

    // Within the bound: the forward against the double reference, the
    // gradients against its finite differences.
    Ctx c = {.k = k, .OH = l.OH, .OW = l.OW, .x = to_double(x, nx), .w = to_double(l.w, nw),
             .b = to_double(l.b, k.OC), .r = to_double(dy, ny), .y = malloc(ny * sizeof(double))};
    double *y_exact = malloc(ny * sizeof(double)), *A = malloc(ny * sizeof(double));
    objective(&c);
    memcpy(y_exact, c.y, ny * sizeof(double));
    double *ax = abs_copy(c.x, nx), *aw = abs_copy(c.w, nw), *ar = abs_copy(c.r, ny);
    ref_conv(ax, aw, NULL, A, k.B, k.C, k.H, k.W, k.OC, k.K, k.K, k.S, k.P, l.OH, l.OW);
    check_within("forward", y, y_exact, A, ny, bf16_bound((size_t)k.C * k.K * k.K));
    double *gx = malloc(nx * sizeof(double)), *gw = malloc(nw * sizeof(double));
    double *Ax = malloc(nx * sizeof(double)), *Aw = malloc(nw * sizeof(double));
    finite_diff(objective, &c, c.x, nx, gx);
    finite_diff(objective, &c, c.w, nw, gw);
    // The magnitudes' sums: the same gradients of sum(conv(|x|, |w|) |dy|).
    Ctx ca = c;
    ca.x = ax, ca.w = aw, ca.r = ar, ca.k.bias = 0;
    finite_diff(objective, &ca, ca.x, nx, Ax);
    finite_diff(objective, &ca, ca.w, nw, Aw);
    for (size_t i = 0; i < nx; i++) Ax[i] = isnan(Ax[i]) ? 0.0 : Ax[i];
    for (size_t i = 0; i < nw; i++) Aw[i] = isnan(Aw[i]) ? 0.0 : Aw[i];
    check_within("dx", dx, gx, Ax, nx, bf16_bound((size_t)k.OC * k.K * k.K));
    check_within("dw", l.dw, gw, Aw, nw, bf16_bound((size_t)k.B * l.OH * l.OW));
    if (k.bias) {  // fp32, as every layer's
        double *gb = malloc(k.OC * sizeof(double));
        finite_diff(objective, &c, c.b, (size_t)k.OC, gb);
        ck_assert_double_lt(rel_err(l.db, gb, (size_t)k.OC, 1e-6), 1e-4);
        free(gb);
    }
    cnn_free(ws.col); cnn_free(ws.partial); cnn_free(ws.packed);
    cnn_free(x); cnn_free(dx); cnn_free(dx2); cnn_free(y); cnn_free(y2); cnn_free(dy); cnn_free(dw2);
    cnn_free(l.w); cnn_free(l.dw); cnn_free(l.b); cnn_free(l.db);
    free(c.x); free(c.w); free(c.b); free(c.r); free(c.y); free(y_exact); free(A);
    free(ax); free(aw); free(ar); free(gx); free(gw); free(Ax); free(Aw);
}

START_TEST(test_conv_bf16) {
    static const Case cases[] = {
        {2, 3, 7, 6, 5, 3, 1, 1, 1},   // odd channels both ways, padding
        {3, 4, 9, 8, 6, 3, 2, 1, 1},   // stride 2: taps that reach no input
        {1, 1, 5, 5, 2, 5, 1, 2, 0},   // one channel, a 5x5 kernel, no bias
        {2, 6, 5, 7, 3, 1, 1, 0, 1},   // pointwise
        {19, 2, 4, 3, 3, 3, 1, 1, 1},  // 16 chunks, three of two images
        {2, 16, 6, 6, 16, 3, 1, 1, 1}, // the block widths of a VDPBF16PS kernel
    };
    // Bit for bit only (finite differences would take minutes): several
    // 32-lane panels and 12-row tiles with their tails, odd widths, stride 2.
    static const Case large[] = {
        {3, 37, 11, 9, 45, 3, 1, 1, 1},
        {2, 20, 13, 10, 33, 3, 2, 1, 0},
        {2, 64, 8, 8, 64, 3, 1, 1, 1},
        {2, 3, 15, 15, 70, 5, 1, 2, 1},
    };
    for (int kb = 0; kernels_next(&kb);) {  // every build of the loops gives the same bits
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_conv_case(cases[i], 40 + i, 1);
        for (size_t i = 0; i < sizeof large / sizeof *large; i++) run_conv_case(large[i], 60 + i, 0);
    }
}
END_TEST

// ---------------------------------------------------------------- dense
// The dense layer's twins: inputs in pairs, the odd one first.
static void twin_dense_forward(const float *x, const float *w, const float *b, int has_bias, int B, int IN, int OUT,
                               float *y) {
    for (int q = 0; q < B; q++)
        for (int o = 0; o < OUT; o++) {
            float acc = has_bias ? ftz(b[o]) + 0.0f : 0.0f;
            for (int i0 = 0; i0 < IN; i0 += 2)
                for (int i = i0 + 1; i >= i0; i--)
                    if (i < IN) acc = bf16_step(acc, rd(x[(size_t)q * IN + i]), rd(w[(size_t)o * IN + i]));
            y[(size_t)q * OUT + o] = acc;
        }
}

static void twin_dense_input_grad(const float *dy, const float *w, int B, int IN, int OUT, float *dx) {
    for (int q = 0; q < B; q++)
        for (int i = 0; i < IN; i++) {
            float acc = 0.0f;
            for (int o0 = 0; o0 < OUT; o0 += 2)
                for (int o = o0 + 1; o >= o0; o--)
                    if (o < OUT) acc = bf16_step(acc, rd(dy[(size_t)q * OUT + o]), rd(w[(size_t)o * IN + i]));
            dx[(size_t)q * IN + i] = acc;
        }
}

// Each batch chunk's rows in pairs from 0, then the chunks' tree.
static void twin_dense_weight_grad(const float *dy, const float *x, int B, int IN, int OUT, float *dw) {
    const size_t nw = (size_t)IN * OUT;
    const int nchunks = batch_chunks(B);
    float *part = calloc((size_t)nchunks * nw, sizeof(float));
    for (int ch = 0; ch < nchunks; ch++) {
        const int r0 = chunk_begin(B, nchunks, ch), r1 = chunk_begin(B, nchunks, ch + 1);
        for (size_t j = 0; j < nw; j++) {
            const int o = (int)(j / IN), i = (int)(j % IN);
            float acc = 0.0f;
            for (int q0 = r0; q0 < r1; q0 += 2)
                for (int q = q0 + 1; q >= q0; q--)
                    if (q < r1) acc = bf16_step(acc, rd(dy[(size_t)q * OUT + o]), rd(x[(size_t)q * IN + i]));
            part[(size_t)ch * nw + j] = acc;
        }
    }
    chunk_tree_sum(part, nw, nchunks, nw);
    memcpy(dw, part, nw * sizeof(float));
    free(part);
}

START_TEST(test_dense_bf16) {
    static const int cases[][4] = {{3, 7, 5, 1}, {1, 13, 3, 1}, {19, 6, 4, 0}, {37, 33, 17, 1}, {40, 70, 45, 1}};
    for (int kb = 0; kernels_next(&kb);)
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        CnnRng r;
        cnn_rng_seed(&r, 70 + t);
        Dense l = {.IN = cases[t][1], .OUT = cases[t][2], .has_bias = cases[t][3], .bf16 = 1};
        const int B = cases[t][0], IN = l.IN, OUT = l.OUT;
        printf("dense bf16 B=%d IN=%d OUT=%d bias=%d\n", B, IN, OUT, l.has_bias);
        const size_t nx = (size_t)B * IN, ny = (size_t)B * OUT, nw = (size_t)IN * OUT;
        float *x = cnn_alloc_floats(nx), *dx = cnn_alloc_floats(nx), *y = cnn_alloc_floats(ny);
        float *dy = cnn_alloc_floats(ny), *want = cnn_alloc_floats(nx > nw ? (nx > ny ? nx : ny) : (nw > ny ? nw : ny));
        l.w = cnn_alloc_floats(nw); l.dw = cnn_alloc_floats(nw); l.b = cnn_alloc_floats(OUT); l.db = cnn_alloc_floats(OUT);
        fill_uniform(x, nx, -1, 1, &r);
        fill_uniform(l.w, nw, -1, 1, &r);
        fill_uniform(l.b, OUT, -1, 1, &r);
        fill_uniform(dy, ny, -1, 1, &r);
        Workspace ws = {0};
        ws.col_size = dense_bf16_scratch_size(&l, (B + batch_chunks(B) - 1) / batch_chunks(B)), ws.partial_size = dense_partial_size(&l);
        ws.packed_size = dense_bf16_packed_size(&l);
        ws.col = cnn_alloc_floats((size_t)batch_chunks(B) * ws.col_size);
        ws.partial = cnn_alloc_floats((size_t)batch_chunks(B) * ws.partial_size);
        ws.packed = cnn_alloc_floats(ws.packed_size);

        dense_forward(&l, x, y, B, &ws);
        memset(l.dw, 0, nw * sizeof(float));
        dense_backward(&l, x, dy, dx, B, &ws);
        float *mag = cnn_alloc_floats(nx > nw ? (nx > ny ? nx : ny) : (nw > ny ? nw : ny));
        float *xa = abs_floats(x, nx), *wa = abs_floats(l.w, nw), *ba = abs_floats(l.b, OUT), *dya = abs_floats(dy, ny);
        const int own = kernels()->bf16_own_sums != NULL;
        twin_dense_forward(x, l.w, l.b, l.has_bias, B, IN, OUT, want);
        if (own) twin_dense_forward(xa, wa, ba, l.has_bias, B, IN, OUT, mag);
        assert_twin("dense forward", y, want, mag, ny, (size_t)IN);
        twin_dense_input_grad(dy, l.w, B, IN, OUT, want);
        if (own) twin_dense_input_grad(dya, wa, B, IN, OUT, mag);
        assert_twin("dense dx", dx, want, mag, nx, (size_t)OUT);
        twin_dense_weight_grad(dy, x, B, IN, OUT, want);
        if (own) twin_dense_weight_grad(dya, xa, B, IN, OUT, mag);
        assert_twin("dense dw", l.dw, want, mag, nw, (size_t)B + 16);
        cnn_free(mag); cnn_free(xa); cnn_free(wa); cnn_free(ba); cnn_free(dya);

        DenseCtx c = {B, IN, OUT, l.has_bias, to_double(x, nx), to_double(l.w, nw), to_double(l.b, OUT),
                      to_double(dy, ny), malloc(ny * sizeof(double))};
        dense_objective(&c);
        double *y_exact = malloc(ny * sizeof(double)), *A = malloc(ny * sizeof(double));
        memcpy(y_exact, c.y, ny * sizeof(double));
        double *ax = abs_copy(c.x, nx), *aw = abs_copy(c.w, nw), *ar = abs_copy(c.r, ny);
        ref_dense(ax, aw, NULL, A, B, IN, OUT);
        check_within("forward", y, y_exact, A, ny, bf16_bound((size_t)IN));
        double *gx = malloc(nx * sizeof(double)), *gw = malloc(nw * sizeof(double));
        double *Ax = malloc(nx * sizeof(double)), *Aw = malloc(nw * sizeof(double));
        finite_diff(dense_objective, &c, c.x, nx, gx);
        finite_diff(dense_objective, &c, c.w, nw, gw);
        DenseCtx ca = c;
        ca.x = ax, ca.w = aw, ca.r = ar, ca.bias = 0;
        finite_diff(dense_objective, &ca, ca.x, nx, Ax);
        finite_diff(dense_objective, &ca, ca.w, nw, Aw);
        for (size_t i = 0; i < nx; i++) Ax[i] = isnan(Ax[i]) ? 0.0 : Ax[i];
        for (size_t i = 0; i < nw; i++) Aw[i] = isnan(Aw[i]) ? 0.0 : Aw[i];
        check_within("dx", dx, gx, Ax, nx, bf16_bound((size_t)OUT));
        check_within("dw", l.dw, gw, Aw, nw, bf16_bound((size_t)B));
        if (l.has_bias) {
            double *gb = malloc(OUT * sizeof(double));
            finite_diff(dense_objective, &c, c.b, (size_t)OUT, gb);
            ck_assert_double_lt(rel_err(l.db, gb, (size_t)OUT, 1e-6), 1e-4);
            free(gb);
        }
        cnn_free(ws.col); cnn_free(ws.partial); cnn_free(ws.packed);
        cnn_free(x); cnn_free(dx); cnn_free(y); cnn_free(dy); cnn_free(want);
        cnn_free(l.w); cnn_free(l.dw); cnn_free(l.b); cnn_free(l.db);
        free(c.x); free(c.w); free(c.b); free(c.r); free(c.y); free(y_exact); free(A);
        free(ax); free(aw); free(ar); free(gx); free(gw); free(Ax); free(Aw);
    }
}
END_TEST

// ---------------------------------------------------------------- nets
static const char *const NETS[] = {
    "conv(8,3,pad=1) relu maxpool(2) conv(6,3,stride=2) bn relu flatten dense(7) relu dense(5)",
    "conv(4,3,pad=1) relu @a conv(4,3,pad=1) add(a) relu gap dense(5)",
};

START_TEST(test_bf16_nets_bit_identical_across_thread_counts) {
    test_precision = CNN_PRECISION_BF16;
    for (size_t t = 0; t < sizeof NETS / sizeof *NETS; t++) {
        CnnNet *net;
        ck_assert_int_eq(cnn_net_create(&net, NETS[t], 3, 12, 10, 19, 11), CNN_OK);
        const size_t n = cnn_net_num_params(net) + cnn_net_num_buffers(net);
        cnn_net_free(net);
        float *one = train_with_threads(NETS[t], 1, 3, 19);
        for (int th = 2; th <= 3; th++) {
            float *other = train_with_threads(NETS[t], th, 3, 19);
            ck_assert_msg(!memcmp(one, other, n * sizeof(float)), "%s: 1 and %d threads differ", NETS[t], th);
            free(other);
        }
        // bf16 is on: fp32 gives other bits.
        test_precision = CNN_PRECISION_FP32;
        float *fp32 = train_with_threads(NETS[t], 2, 3, 19);
        test_precision = CNN_PRECISION_BF16;
        ck_assert_msg(memcmp(one, fp32, n * sizeof(float)), "%s: bf16 and fp32 give the same bits", NETS[t]);
        free(one);
        free(fp32);
    }
}
END_TEST

START_TEST(test_bf16_fusions_change_no_bit) {
    test_precision = CNN_PRECISION_BF16;
    const char *desc = NETS[0];
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, desc, 3, 12, 10, 8, 11), CNN_OK);
    const size_t n = cnn_net_num_params(net) + cnn_net_num_buffers(net);
    cnn_net_free(net);
    net_set_fusion(NET_FUSE_NONE);
    float *plain = train_with_threads(desc, 2, 3, 8);
    net_set_fusion(NET_FUSE_ALL);
    float *fused = train_with_threads(desc, 2, 3, 8);
    ck_assert_msg(!memcmp(plain, fused, n * sizeof(float)), "fusing the ReLU and pool changed bf16 results");
    free(plain);
    free(fused);
}
END_TEST

START_TEST(test_precision_names) {
    CnnPrecision p;
    ck_assert_int_eq(cnn_precision_parse("bf16", &p), CNN_OK);
    ck_assert_int_eq(p, CNN_PRECISION_BF16);
    ck_assert_str_eq(cnn_precision_name(p), "bf16");
    ck_assert_int_eq(cnn_precision_parse("fp32", &p), CNN_OK);
    ck_assert_int_eq(p, CNN_PRECISION_FP32);
    ck_assert_int_eq(cnn_precision_parse("fp16", &p), CNN_EARG);
    CnnNet *net;
    ck_assert_int_eq(cnn_net_create(&net, "conv(2,3) flatten dense(3)", 1, 5, 5, 2, 1), CNN_OK);
    ck_assert_int_eq(cnn_net_precision(net), CNN_PRECISION_FP32);
    ck_assert_int_eq(cnn_net_set_precision(net, CNN_PRECISION_BF16), CNN_OK);
    ck_assert_int_eq(cnn_net_precision(net), CNN_PRECISION_BF16);
    ck_assert_int_eq(cnn_net_set_precision(net, (CnnPrecision)7), CNN_EARG);
    cnn_net_free(net);
}
END_TEST

static Suite *bf16_suite(void) {
    Suite *s = suite_create("bf16");
    TCase *tc = tcase_create("bf16");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_bf16_round);
    tcase_add_test(tc, test_bf16_step_is_one_rounding);
    tcase_add_test(tc, test_bf16_bits_array);
    tcase_add_test(tc, test_conv_bf16);
    tcase_add_test(tc, test_dense_bf16);
    tcase_add_test(tc, test_bf16_nets_bit_identical_across_thread_counts);
    tcase_add_test(tc, test_bf16_fusions_change_no_bit);
    tcase_add_test(tc, test_precision_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return run_suite(bf16_suite()); }
