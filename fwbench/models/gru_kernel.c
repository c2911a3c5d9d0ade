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
 *     dL/dW_hh += dL/dhh h(t-1)^T,  dL/db_hh += dL/dhh  (summed over the batch)
 * The gradient of the input term goes back to torch, which carries it to W_ih, b_ih and x.
 *
 * Layout: batch LAST, every per-example vector stored as [rows, B], so each operation runs
 * over the batch in SIMD lanes; the kernel transposes the batch-first tensors torch gives and
 * takes at the edges, in tiles (kernel_common.h).
 */
#include "kernel_common.h"

#define LANES(b) _Pragma("omp simd") for (int64_t b = 0; b < B; b++)

typedef struct {
    int64_t B, T, H;         /* batch, steps, hidden units */
    const REAL *X;           /* [B, T, 3H] input term W_ih x(t) + b_ih (batch first) */
    const REAL *W;           /* [3H, H] W_hh (torch layout: hh = W_hh h) */
    const REAL *bh;          /* [3H] b_hh */
    REAL *HS;                /* [T + 1, H, B] h(t - 1) for t = 0..T: HS[0] = h(-1) on entry */
    REAL *S;                 /* [T, 4H, B] per step r, z, n and hh_n, kept for backward */
    REAL *Y;                 /* [B, T, H] the outputs h(t), batch first */
    const REAL *dY;          /* [B, T, H] gradient w.r.t. the outputs */
    REAL *dX;                /* [B, T, 3H] gradient w.r.t. the input term */
    REAL *dW;                /* [3H, H] gradient w.r.t. W_hh, zero on entry */
    REAL *db;                /* [3H] gradient w.r.t. b_hh, zero on entry */
    REAL *dh0;               /* [H, B] gradient w.r.t. h(-1), or NULL when not wanted */
    REAL *work;              /* forward [(T + 1) 3H, B], backward [T (H + 3H) + 4H, B] */
    gemm_t gemm;             /* BLAS gemm, or NULL for plain loops */
} gru_args;

static inline REAL sigmoid(REAL x) { return (REAL)1 / ((REAL)1 + EXP(-x)); }

/* tanh(x) = 1 - 2 / (1 + exp(2x)), through the vector exp (glibc's vector tanh is newer) */
static inline REAL tanh_(REAL x) { return (REAL)1 - (REAL)2 / ((REAL)1 + EXP(2 * x)); }

void gru_forward(const gru_args *a) {
    int64_t B = a->B, T = a->T, H = a->H, K = 3 * a->H;
    REAL *XI = a->work, *hh = XI + T * K * B;
    kc_to_batch_last(B, T * K, T * K, a->X, XI);
    for (int64_t t = 0; t < T; t++) {
        const REAL *xi = XI + t * K * B, *hp = a->HS + t * H * B;
        REAL *h = a->HS + (t + 1) * H * B, *s = a->S + t * 4 * H * B;
        for (int64_t k = 0; k < K; k++) {
            REAL bias = a->bh[k];
            LANES(b) hh[k * B + b] = bias;
        }
        kc_times_W(a->gemm, B, K, H, a->W, hp, hh, 0);
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
    kc_to_batch_first(B, T * H, T * H, a->HS + H * B, a->Y);
}

void gru_backward(const gru_args *a) {
    int64_t B = a->B, T = a->T, H = a->H, K = 3 * a->H;
    REAL *DY = a->work, *DI = DY + T * H * B, *dh = DI + T * K * B, *g = dh + K * B;
    kc_to_batch_last(B, T * H, T * H, a->dY, DY);
    memset(g, 0, (size_t)(H * B) * sizeof(REAL)); /* dL/dh(t), then dL/dh(t - 1) */
    for (int64_t t = T - 1; t >= 0; t--) {
        const REAL *s = a->S + t * 4 * H * B, *hp = a->HS + t * H * B, *dy = DY + t * H * B;
        REAL *di = DI + t * K * B;
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
        kc_add_outer(a->gemm, B, K, H, dh, hp, a->dW);
        for (int64_t k = 0; k < K; k++) {
            REAL sum = 0;
            const REAL *dk = dh + k * B;
            _Pragma("omp simd reduction(+ : sum)") for (int64_t b = 0; b < B; b++) sum += dk[b];
            a->db[k] += sum;
        }
        kc_times_W(a->gemm, B, K, H, a->W, dh, g, 1);
    }
    kc_to_batch_first(B, T * K, T * K, DI, a->dX);
    if (a->dh0)
        memcpy(a->dh0, g, (size_t)(H * B) * sizeof(REAL));
}
