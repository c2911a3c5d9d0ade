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
 * Layout: batch first, as torch gives ([B, T, C]); the weight transposed, [size, C].
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef REAL
#define REAL float
#endif

#define ALL(i, n) _Pragma("omp simd") for (int64_t i = 0; i < (n); i++)

#if defined __GNUC__ && !defined __clang__ && defined __GLIBC__ && defined __x86_64__
/* glibc's vector exp (libmvec, reached through libm), so that the SiLU loops vectorise; its
 * math.h declares it only under -ffast-math, which a shared library must not use (GCC then sets
 * the whole process to flush subnormals to zero) */
#pragma omp declare simd notinbranch
extern float expf(float);
#pragma omp declare simd notinbranch
extern double exp(double);
#endif
#define EXP(x) _Generic((x), float: expf, default: exp)(x)
#define SQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)

#define L2_EPS ((REAL)1e-6)   /* fwp.L2_EPS: keeps an all-zero φ at zero */

typedef struct {
    int64_t B, T, C, size;    /* batch, steps, channels, taps */
    int64_t n_l2, group;      /* the first n_l2 channels are L2-normalised in groups of `group` */
    const REAL *x;            /* [B, T, C] input */
    const REAL *buf;          /* [B, size - 1, C] the previous inputs, oldest first */
    const REAL *w;            /* [size, C] weight, tap-major */
    REAL *y;                  /* [B, T, C] the convolution before SiLU */
    REAL *sg;                 /* [B, T, C] sigmoid(y) */
    REAL *nrm;                /* [B, T, n_l2 / group] |SiLU(y)| of each normalised group */
    REAL *out;                /* [B, T, C] output */
    const REAL *grad;         /* [B, T, C] gradient w.r.t. the output */
    REAL *gx;                 /* [B, T, C] gradient w.r.t. x */
    REAL *gbuf;               /* [B, size - 1, C] gradient w.r.t. buf */
    REAL *gw;                 /* [size, C] gradient w.r.t. w */
    REAL *work;               /* scratch: C */
} cv_args;

/* row t + j of xx = [buf; x] for example b */
static inline const REAL *xx_row(const cv_args *p, int64_t b, int64_t r) {
    const int64_t L = p->size - 1;
    return r < L ? p->buf + (b * L + r) * p->C : p->x + (b * p->T + r - L) * p->C;
}

static inline REAL *gxx_row(const cv_args *p, int64_t b, int64_t r) {
    const int64_t L = p->size - 1;
    return r < L ? p->gbuf + (b * L + r) * p->C : p->gx + (b * p->T + r - L) * p->C;
}

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

void cv_forward(const cv_args *p) {
    const int64_t B = p->B, T = p->T, C = p->C, size = p->size, G = p->group;
    const int64_t ng = p->n_l2 / G;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const int64_t row = (b * T + t) * C;
            REAL *y = p->y + row, *sg = p->sg + row, *o = p->out + row;
            const REAL *x0 = xx_row(p, b, t);
            ALL(c, C) y[c] = x0[c] * p->w[c];
            for (int64_t j = 1; j < size; j++) {
                const REAL *xj = xx_row(p, b, t + j), *wj = p->w + j * C;
                ALL(c, C) y[c] += xj[c] * wj[c];
            }
            ALL(c, C) {
                sg[c] = 1 / (1 + EXP(-y[c]));
                o[c] = y[c] * sg[c];
            }
            for (int64_t g = 0; g < ng; g++) {
                REAL *og = o + g * G, n = SQRT(sum_squares(og, G));
                p->nrm[(b * T + t) * ng + g] = n;
                n = n > L2_EPS ? n : L2_EPS;
                ALL(c, G) og[c] /= n;
            }
        }
}

void cv_backward(const cv_args *p) {
    const int64_t B = p->B, T = p->T, C = p->C, size = p->size, G = p->group, L = size - 1;
    const int64_t ng = p->n_l2 / G;
    REAL *gy = p->work;
    memset(p->gw, 0, size * C * sizeof(REAL));
    for (int64_t b = 0; b < B; b++) {
        for (int64_t r = 0; r < L; r++) memset(gxx_row(p, b, r), 0, C * sizeof(REAL));
        for (int64_t t = 0; t < T; t++) memset(gxx_row(p, b, L + t), 0, C * sizeof(REAL));
        for (int64_t t = 0; t < T; t++) {
            const int64_t row = (b * T + t) * C;
            const REAL *y = p->y + row, *sg = p->sg + row, *o = p->out + row, *g = p->grad + row;
            ALL(c, C) gy[c] = g[c];
            for (int64_t k = 0; k < ng; k++) {
                /* (g - φ (φ·g)) / |s| where |s| >= eps, else g / eps; s = SiLU(y) */
                const REAL *ok = o + k * G, *gk = g + k * G;
                REAL n = p->nrm[(b * T + t) * ng + k], along = 0;
                if (n >= L2_EPS)
                    along = dot(ok, gk, G);
                else
                    n = L2_EPS;
                REAL *gyk = gy + k * G;
                ALL(c, G) gyk[c] = (gk[c] - ok[c] * along) / n;
            }
            ALL(c, C) gy[c] *= sg[c] * (1 + y[c] * (1 - sg[c]));  /* SiLU' */
            for (int64_t j = 0; j < size; j++) {
                const REAL *xj = xx_row(p, b, t + j), *wj = p->w + j * C;
                REAL *gj = gxx_row(p, b, t + j), *gwj = p->gw + j * C;
                ALL(c, C) {
                    gj[c] += gy[c] * wj[c];
                    gwj[c] += xj[c] * gy[c];
                }
            }
        }
    }
}
