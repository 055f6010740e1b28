// im2col / col2im for one image (Caffe's layout): row (c,kh,kw), column (oh,ow).
#include <string.h>

#include "internal.h"

void im2col(const float *x, int C, int H, int W, int KH, int KW, int S, int P, int OH, int OW,
            float *col) {
    // x (C,H,W), col (C*KH*KW, OH*OW)
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                float *row = col + ((size_t)(c * KH + kh) * KW + kw) * OH * OW;
                const float *plane = x + (size_t)c * H * W;
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * S - P + kh;
                    float *out = row + (size_t)oh * OW;
                    if (ih < 0 || ih >= H) {
                        memset(out, 0, sizeof(float) * OW);
                        continue;
                    }
                    const float *in = plane + (size_t)ih * W;
                    if (S == 1) {
                        // Contiguous run: zeros on the left/right padding, a copy in between.
                        int lo = P - kw, hi = W + P - kw;  // ow range with iw in [0, W)
                        if (lo < 0) lo = 0;
                        if (hi > OW) hi = OW;
                        if (hi < lo) hi = lo;
                        for (int ow = 0; ow < lo; ow++) out[ow] = 0.0f;
                        if (hi > lo) memcpy(out + lo, in + lo - P + kw, sizeof(float) * (hi - lo));
                        for (int ow = hi; ow < OW; ow++) out[ow] = 0.0f;
                    } else {
                        for (int ow = 0; ow < OW; ow++) {
                            int iw = ow * S - P + kw;
                            out[ow] = (iw >= 0 && iw < W) ? in[iw] : 0.0f;
                        }
                    }
                }
            }
}

void col2im(const float *col, int C, int H, int W, int KH, int KW, int S, int P, int OH, int OW,
            float *dx) {
    // col (C*KH*KW, OH*OW), dx (C,H,W)
    memset(dx, 0, sizeof(float) * (size_t)C * H * W);
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < KH; kh++)
            for (int kw = 0; kw < KW; kw++) {
                const float *row = col + ((size_t)(c * KH + kh) * KW + kw) * OH * OW;
                float *plane = dx + (size_t)c * H * W;
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * S - P + kh;
                    if (ih < 0 || ih >= H) continue;
                    float *out = plane + (size_t)ih * W;
                    const float *in = row + (size_t)oh * OW;
                    for (int ow = 0; ow < OW; ow++) {
                        int iw = ow * S - P + kw;
                        if (iw >= 0 && iw < W) out[iw] += in[ow];
                    }
                }
            }
}
