/* GRU (Cho et al. 2014, torch's nn.GRU equations) on the CPU: the recurrence over a whole
 * sequence forward, and its hand-written backward through time, one call each, one thread.
 * Compiled once per scalar type (-DREAL=float|double) by native.py; gru_fused.py is the
 * autograd wrapper, and torch's nn.GRU the reference it is tested against.
 *
 * Per step, from the input term xi(t) = W_ih x(t) + b_ih (computed by torch for all steps):
 *     hh = W_hh h(t-1) + b_hh                                        [3H rows: r, z, n]
 *     r = sigmoid(xi_r + hh_r),  z = sigmoid(xi_z + hh_z),  n = tanh(xi_n + r hh_n)
 *     h(t) = (1 - z) n + z h(t-1)
 * Backward, from g = dL/dh(t):
 *     dn = g (1 - z) (1 - n^2),  dz = g (h(t-1) - n) z (1 - z),  dr = dn hh_n r (1 - r)
 *     dL/dxi = (dr, dz, dn),  dL/dhh = (dr, dz, dn r),  dL/dh(t-1) = g z + W_hh^T dL/dhh
 * The gradients of W_hh, b_hh and of the input term are left to torch, from dL/dhh and
 * dL/dxi of every step (one large product each).
 *
 * Layout: batch LAST, every per-example vector stored as [rows, B], so each operation runs
 * over the batch in SIMD lanes; the wrapper transposes at the edges.
 */
#include "kernel_common.h"

#define LANES(b) _Pragma("omp simd") for (int64_t b = 0; b < B; b++)

typedef struct {
    int64_t B, T, H;         /* batch, steps, hidden units */
    const REAL *XI;          /* [T, 3H, B] input term W_ih x(t) + b_ih */
    const REAL *W;           /* [3H, H] W_hh (torch layout: hh = W_hh h) */
    const REAL *bh;          /* [3H] b_hh */
    REAL *HS;                /* [T + 1, H, B] h(t - 1) for t = 0..T: HS[0] = h(-1) on entry */
    REAL *S;                 /* [T, 4H, B] per step r, z, n and hh_n, kept for backward */
    const REAL *DY;          /* [T, H, B] gradient w.r.t. the outputs h(t) */
    REAL *DI;                /* [T, 3H, B] gradient w.r.t. the input term */
    REAL *DH;                /* [T, 3H, B] gradient w.r.t. hh */
    REAL *dh0;               /* [H, B] gradient w.r.t. h(-1), or NULL when not wanted */
    REAL *work;              /* [3H, B] scratch */
    gemm_t gemm;             /* BLAS gemm, or NULL for the plain loops below */
} gru_args;

/* back = 0: out[3H, B] += W_hh in[H, B]; back = 1: out[H, B] += W_hh^T in[3H, B]. */
static void recurrent(const gru_args *a, const REAL *in, REAL *out, int back) {
    int64_t B = a->B, H = a->H, K = 3 * a->H;
    if (a->gemm) { /* column-major, the batch as rows: out^T += in^T (W^T or W) */
        const REAL one = 1;
        const char nt = 'N', tr = 'T';
        if (back)
            a->gemm(&nt, &tr, &B, &H, &K, &one, in, &B, a->W, &H, &one, out, &B);
        else
            a->gemm(&nt, &nt, &B, &K, &H, &one, in, &B, a->W, &H, &one, out, &B);
        return;
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < H; i++) {
            REAL w = a->W[k * H + i];
            const REAL *src = in + (back ? k : i) * B;
            REAL *dst = out + (back ? i : k) * B;
            LANES(b) dst[b] += w * src[b];
        }
}

static inline REAL sigmoid(REAL x) { return (REAL)1 / ((REAL)1 + EXP(-x)); }

/* tanh(x) = 1 - 2 / (1 + exp(2x)), through the vector exp (glibc's vector tanh is newer) */
static inline REAL tanh_(REAL x) { return (REAL)1 - (REAL)2 / ((REAL)1 + EXP(2 * x)); }

void gru_forward(const gru_args *a) {
    int64_t B = a->B, H = a->H;
    REAL *hh = a->work;
    for (int64_t t = 0; t < a->T; t++) {
        const REAL *xi = a->XI + t * 3 * H * B, *hp = a->HS + t * H * B;
        REAL *h = a->HS + (t + 1) * H * B, *s = a->S + t * 4 * H * B;
        for (int64_t k = 0; k < 3 * H; k++) {
            REAL bias = a->bh[k];
            LANES(b) hh[k * B + b] = bias;
        }
        recurrent(a, hp, hh, 0);
        for (int64_t j = 0; j < H; j++) {
            const REAL *xr = xi + j * B, *xz = xi + (H + j) * B, *xn = xi + (2 * H + j) * B;
            const REAL *hr = hh + j * B, *hz = hh + (H + j) * B, *hn = hh + (2 * H + j) * B;
            const REAL *hpj = hp + j * B;
            REAL *r = s + j * B, *z = s + (H + j) * B, *n = s + (2 * H + j) * B;
            REAL *kn = s + (3 * H + j) * B, *hj = h + j * B;
            LANES(b) {
                r[b] = sigmoid(xr[b] + hr[b]);
                z[b] = sigmoid(xz[b] + hz[b]);
                kn[b] = hn[b];
                n[b] = tanh_(xn[b] + r[b] * hn[b]);
                hj[b] = ((REAL)1 - z[b]) * n[b] + z[b] * hpj[b];
            }
        }
    }
}

void gru_backward(const gru_args *a) {
    int64_t B = a->B, H = a->H;
    REAL *g = a->work; /* dL/dh(t), then dL/dh(t - 1) */
    memset(g, 0, (size_t)(H * B) * sizeof(REAL));
    for (int64_t t = a->T - 1; t >= 0; t--) {
        const REAL *s = a->S + t * 4 * H * B, *hp = a->HS + t * H * B;
        const REAL *dy = a->DY + t * H * B;
        REAL *di = a->DI + t * 3 * H * B, *dh = a->DH + t * 3 * H * B;
        for (int64_t j = 0; j < H; j++) {
            const REAL *r = s + j * B, *z = s + (H + j) * B, *n = s + (2 * H + j) * B;
            const REAL *kn = s + (3 * H + j) * B, *hpj = hp + j * B, *dyj = dy + j * B;
            REAL *gj = g + j * B;
            REAL *dir = di + j * B, *diz = di + (H + j) * B, *din = di + (2 * H + j) * B;
            REAL *dhr = dh + j * B, *dhz = dh + (H + j) * B, *dhn = dh + (2 * H + j) * B;
            LANES(b) {
                REAL gt = gj[b] + dyj[b];
                REAL dn = gt * ((REAL)1 - z[b]) * ((REAL)1 - n[b] * n[b]);
                REAL dz = gt * (hpj[b] - n[b]) * z[b] * ((REAL)1 - z[b]);
                REAL dr = dn * kn[b] * r[b] * ((REAL)1 - r[b]);
                dir[b] = dr;
                diz[b] = dz;
                din[b] = dn;
                dhr[b] = dr;
                dhz[b] = dz;
                dhn[b] = dn * r[b];
                gj[b] = gt * z[b]; /* the direct path to h(t - 1); W_hh^T dL/dhh added below */
            }
        }
        recurrent(a, dh, g, 1);
    }
    if (a->dh0)
        memcpy(a->dh0, g, (size_t)(H * B) * sizeof(REAL));
}
