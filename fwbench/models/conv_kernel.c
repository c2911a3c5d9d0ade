/* The short causal convolution of the Fast Weight Programmers' projections (fwp.ShortConv) on
 * the CPU: depthwise convolution over time, SiLU, and the L2 normalisation of the first channels
 * in groups (φ(q), φ(k) of the default feature map), forward and hand-written backward, one call
 * each, one thread. Compiled once per scalar type (-DREAL=float|double) by native.py; conv_fused.py
 * is the autograd wrapper, fwp._ConvSiLU (torch operations) and ShortConv.forward_reference
 * (autograd) the references it is tested against.
 *
 * Per example b, step t and channel c, with xx = [buf; x] (the size - 1 previous inputs first):
 *     y[t, c]   = Σ_j xx[t + j, c] w[j, c]            (j ascending, as the torch form)
 *     out[t, c] = SiLU(y[t, c]),  then for c < n_l2, per group G of `group` channels:
 *     out[t, G] = out[t, G] / max(|out[t, G]|, eps)    (as F.normalize)
 * The torch form runs some ten operations over the whole [B, T, C] tensor forward and twenty
 * backward, among them one over a [B, T, size, C] product for the weight's gradient; at short
 * sequences and small widths that was a third of the FWPs' training step. Here each is one pass.
 *
 * Layout: batch first, as torch gives ([B, T, C]); the weight transposed, [size, C]. The taps'
 * loops run over blocks of rows of one example as flat vectors.
 */
#include "kernel_common.h"

#define ALL(i, n) _Pragma("omp simd") for (int64_t i = 0; i < (n); i++)

#define L2_EPS ((REAL)1e-6)   /* fwp.L2_EPS: keeps an all-zero φ at zero */

typedef struct {
    int64_t B, T, C, size;    /* batch, steps, channels, taps */
    int64_t n_l2, group;      /* the first n_l2 channels are L2-normalised in groups of `group` */
    const REAL *x;            /* [B, T, C] input */
    const REAL *buf;          /* [B, size - 1, C] the previous inputs, oldest first */
    const REAL *w;            /* [size, C] weight, tap-major */
    REAL *y;                  /* [B, T, C] the convolution before SiLU */
    REAL *nrm;                /* [B, T, n_l2 / group] |SiLU(y)| of each normalised group */
    REAL *out;                /* [B, T, C] output */
    const REAL *grad;         /* [B, T, C] gradient w.r.t. the output */
    REAL *gx;                 /* [B, T, C] gradient w.r.t. x */
    REAL *gbuf;               /* [B, size - 1, C] gradient w.r.t. buf */
    REAL *gw;                 /* [size, C] gradient w.r.t. w */
    REAL *work;               /* scratch: (2 size + 1) BLOCK C */
} cv_args;

static inline REAL sum_squares(const REAL *a, int64_t n) {
    REAL s = 0;
    _Pragma("omp simd reduction(+:s)")
    for (int64_t i = 0; i < n; i++) s += a[i] * a[i];
    return s;
}

static inline REAL dot(const REAL *a, const REAL *b, int64_t n) {
    REAL s = 0;
    _Pragma("omp simd reduction(+:s)")
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Rows of a block: the taps' loops run over a block of rows of one example at once, as one flat
 * vector of BLOCK C values (a row alone, C values, is too short for the vector units). */
#define BLOCK 16

/* wt[j, r, c] = w[j, c] for r < BLOCK: the weight repeated over a block's rows. */
static void tile_weight(const cv_args *p, REAL *wt) {
    const int64_t C = p->C;
    for (int64_t j = 0; j < p->size; j++)
        for (int64_t r = 0; r < BLOCK; r++) memcpy(wt + (j * BLOCK + r) * C, p->w + j * C,
                                                   C * sizeof(REAL));
}

void cv_forward(const cv_args *p) {
    const int64_t B = p->B, T = p->T, C = p->C, size = p->size, G = p->group, L = size - 1;
    const int64_t ng = p->n_l2 / G;
    REAL *wt = p->work;  /* [size, BLOCK, C] */
    tile_weight(p, wt);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t0 = 0; t0 < T; t0 += BLOCK) {
            const int64_t t1 = t0 + BLOCK < T ? t0 + BLOCK : T;
            REAL *y = p->y + (b * T + t0) * C, *o = p->out + (b * T + t0) * C;
            for (int64_t j = 0; j < size; j++) {
                const REAL *wj = p->w + j * C;
                int64_t tx = L - j > t0 ? L - j : t0;  /* the first row reading x */
                if (tx > t1) tx = t1;
                for (int64_t t = t0; t < tx; t++) {  /* rows reading the buffer */
                    const REAL *src = p->buf + (b * L + t + j) * C;
                    REAL *yt = y + (t - t0) * C;
                    if (j == 0) ALL(c, C) yt[c] = src[c] * wj[c];
                    else ALL(c, C) yt[c] += src[c] * wj[c];
                }
                const int64_t n = (t1 - tx) * C;
                const REAL *src = p->x + (b * T + tx + j - L) * C, *w = wt + j * BLOCK * C;
                REAL *yt = y + (tx - t0) * C;
                if (j == 0) ALL(i, n) yt[i] = src[i] * w[i];
                else ALL(i, n) yt[i] += src[i] * w[i];
            }
            const int64_t n = (t1 - t0) * C;
            ALL(i, n) o[i] = y[i] / (1 + EXP(-y[i]));
            if (ng)
                for (int64_t t = t0; t < t1; t++)
                    for (int64_t g = 0; g < ng; g++) {
                        REAL *og = o + (t - t0) * C + g * G, nr = SQRT(sum_squares(og, G));
                        p->nrm[(b * T + t) * ng + g] = nr;
                        nr = nr > L2_EPS ? nr : L2_EPS;
                        ALL(c, G) og[c] /= nr;
                    }
        }
}

void cv_backward(const cv_args *p) {
    const int64_t B = p->B, T = p->T, C = p->C, size = p->size, G = p->group, L = size - 1;
    const int64_t ng = p->n_l2 / G;
    REAL *wt = p->work, *gwt = wt + size * BLOCK * C, *gy = gwt + size * BLOCK * C;
    tile_weight(p, wt);
    memset(gwt, 0, size * BLOCK * C * sizeof(REAL));  /* gw per row of a block */
    memset(p->gw, 0, size * C * sizeof(REAL));
    memset(p->gx, 0, B * T * C * sizeof(REAL));
    if (L) memset(p->gbuf, 0, B * L * C * sizeof(REAL));
    for (int64_t b = 0; b < B; b++)
        for (int64_t t0 = 0; t0 < T; t0 += BLOCK) {
            const int64_t t1 = t0 + BLOCK < T ? t0 + BLOCK : T, n = (t1 - t0) * C;
            const int64_t row = (b * T + t0) * C;
            const REAL *y = p->y + row, *o = p->out + row, *g = p->grad + row;
            ALL(i, n) gy[i] = g[i];
            for (int64_t t = t0; t < t1; t++)
                for (int64_t k = 0; k < ng; k++) {
                    /* (g - φ (φ·g)) / |s| where |s| >= eps, else g / eps; s = SiLU(y) */
                    const int64_t at = (t - t0) * C + k * G;
                    const REAL *ok = o + at, *gk = g + at;
                    REAL nr = p->nrm[(b * T + t) * ng + k], along = 0;
                    if (nr >= L2_EPS)
                        along = dot(ok, gk, G);
                    else
                        nr = L2_EPS;
                    REAL *gyk = gy + at;
                    ALL(c, G) gyk[c] = (gk[c] - ok[c] * along) / nr;
                }
            ALL(i, n) {  /* SiLU'(y) = σ(y) (1 + y (1 - σ(y))) */
                const REAL sg = 1 / (1 + EXP(-y[i]));
                gy[i] *= sg * (1 + y[i] * (1 - sg));
            }
            for (int64_t j = 0; j < size; j++) {
                const REAL *wj = p->w + j * C;
                REAL *gwj = p->gw + j * C;
                int64_t tx = L - j > t0 ? L - j : t0;
                if (tx > t1) tx = t1;
                for (int64_t t = t0; t < tx; t++) {  /* rows reading the buffer */
                    const REAL *src = p->buf + (b * L + t + j) * C, *gyt = gy + (t - t0) * C;
                    REAL *dst = p->gbuf + (b * L + t + j) * C;
                    ALL(c, C) {
                        dst[c] += gyt[c] * wj[c];
                        gwj[c] += src[c] * gyt[c];
                    }
                }
                const int64_t m = (t1 - tx) * C, off = (tx - t0) * C;
                const REAL *src = p->x + (b * T + tx + j - L) * C, *w = wt + j * BLOCK * C + off;
                const REAL *gyt = gy + off;
                REAL *dst = p->gx + (b * T + tx + j - L) * C, *gw = gwt + j * BLOCK * C + off;
                ALL(i, m) {
                    dst[i] += gyt[i] * w[i];
                    gw[i] += src[i] * gyt[i];
                }
            }
        }
    for (int64_t j = 0; j < size; j++)  /* the rows' gw summed */
        for (int64_t r = 0; r < BLOCK; r++) {
            const REAL *src = gwt + (j * BLOCK + r) * C;
            REAL *gwj = p->gw + j * C;
            ALL(c, C) gwj[c] += src[c];
        }
}
