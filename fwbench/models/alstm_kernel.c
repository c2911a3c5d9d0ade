/* Associative LSTM (Danihelka et al. 2016) on the CPU: the recurrence over a whole sequence
 * forward, and its hand-written backward (backpropagation through time), one call each, one
 * thread. Compiled once per scalar type (-DREAL=float|double) by native.py; alstm_fused.py is
 * the autograd wrapper, alstm.py the torch reference it is tested against.
 *
 * Per step, from the input term px(t) = x_proj(x(t)) (computed by torch for all steps at once):
 *     z     = px(t) + W h(t-1)                              [K = 9 Hc rows, W is h_proj.weight]
 *     gf, gi, go = sigmoid(z[0:Hc]), sigmoid(z[Hc:2Hc]), sigmoid(z[2Hc:3Hc])
 *     ri, ro, u  = bound(complex z[3Hc:5Hc]), bound(z[5Hc:7Hc]), bound(z[7Hc:9Hc])
 *     c_s   = gf * c_s + (P_s ri) (*) (gi * u)             for each copy s < N
 *     m     = (1/N) sum_s (P_s ro) (*) c_s
 *     h(t)  = go * bound(m)
 * with (*) the complex product, bound(z) = z / max(1, |z|), (P_s v)[j] = v[perm[s, j]]. Complex
 * vectors are (real, imaginary) halves; c holds per copy Hc real parts then Hc imaginary parts.
 * The operations run in the order of the torch reference, so the two agree at rounding level.
 *
 * Layout: batch LAST. Every per-example vector is stored as [rows, B], so each operation runs
 * over the batch in SIMD lanes; the permutation then picks whole rows. The kernel transposes
 * the batch-first tensors torch gives and takes at the edges.
 */
#include "kernel_common.h"

#define LANES(b) _Pragma("omp simd") for (int64_t b = 0; b < B; b++)
#define ALL(i, n) _Pragma("omp simd") for (int64_t i = 0; i < (n); i++)

typedef struct {
    int64_t B, T, Hc, N;     /* batch, steps, complex units (H = 2 Hc real units), copies */
    const REAL *px;          /* [B, T, 9 Hc] input term x_proj(x) (batch first, as torch gives) */
    const REAL *h0;          /* [B, H] state before step 0, or NULL when zero */
    const REAL *c0;          /* [B, N, H] cell copies before step 0, or NULL when zero */
    const REAL *W;           /* [9 Hc, H] h_proj weight (torch layout: z = W h) */
    const int64_t *perm;     /* [N, Hc] the copies' permutations */
    REAL *Z;                 /* [T, 9 Hc, B] gates after the sigmoid, then the raw complex z */
    REAL *C;                 /* [T + 1, N, H, B] cell copies; C[0] the carried-in ones */
    REAL *M;                 /* [T, H, B] mean over copies of the retrieval, before the bound */
    REAL *Y;                 /* [T, H, B] outputs h(t) */
    REAL *Yb;                /* [B, T, H] the outputs again, batch first, for torch */
    REAL *cT;                /* [B, N, H] the final cell copies, batch first */
    const REAL *dY;          /* [B, T, H] gradient w.r.t. the outputs, or NULL when zero */
    REAL *GH;                /* [T, H, B] scratch: dY batch last, then dL/dh(t) in full */
    const REAL *dcT;         /* [B, N, H] gradient w.r.t. the final copies, or NULL when zero */
    REAL *DZ;                /* [T, 9 Hc, B] gradient w.r.t. z */
    REAL *dpx;               /* [B, T, 9 Hc] the same, batch first: the gradient w.r.t. px */
    REAL *dW;                /* [9 Hc, H] gradient w.r.t. W, zero on entry */
    REAL *dh0;               /* [B, H] gradient w.r.t. h0, or NULL when not wanted */
    REAL *dc0;               /* [B, N, H] gradient w.r.t. c0, or NULL when not wanted */
    REAL *work;              /* [(32 + 2 N) Hc, B] scratch */
    gemm_t gemm;             /* BLAS gemm, or NULL for the plain loops below */
} al_args;

static inline REAL sigmoid(REAL x) { return (REAL)1 / ((REAL)1 + EXP(-x)); }

/* The bound of n complex values (re, im rows of B): y = x / s, s = max(1, |x|); r = |x| kept
 * when wanted (the backward pass needs it). */
static void bound(int64_t n, int64_t B, const REAL *re, const REAL *im, REAL *yre, REAL *yim,
                  REAL *r) {
    if (r) {
        ALL(i, n * B) r[i] = SQRT(re[i] * re[i] + im[i] * im[i]);
        ALL(i, n * B) {
            REAL s = r[i] < 1 ? 1 : r[i];
            yre[i] = re[i] / s;
            yim[i] = im[i] / s;
        }
        return;
    }
    ALL(i, n * B) {
        REAL m = SQRT(re[i] * re[i] + im[i] * im[i]);
        REAL s = m < 1 ? 1 : m;
        yre[i] = re[i] / s;
        yim[i] = im[i] / s;
    }
}

/* Backward of the bound: dx = (dy - [|x| >= 1] (dy . y) y) / max(1, |x|), from y and r = |x|. */
static void bound_backward(int64_t n, int64_t B, const REAL *yre, const REAL *yim, const REAL *r,
                           const REAL *dyre, const REAL *dyim, REAL *dxre, REAL *dxim) {
    ALL(i, n * B) {
        REAL s = r[i] < 1 ? 1 : r[i];
        REAL k = r[i] >= 1 ? dyre[i] * yre[i] + dyim[i] * yim[i] : 0;
        dxre[i] = (dyre[i] - k * yre[i]) / s;
        dxim[i] = (dyim[i] - k * yim[i]) / s;
    }
}

/* The bounded keys and update of step t (rows ri re, ri im, ro re, ro im, u re, u im of Hc each)
 * into bd, their moduli into r (or not, when NULL), and v = gi * u into v (re, im rows). */
static void keys(const al_args *a, const REAL *z, REAL *bd, REAL *r, REAL *v) {
    int64_t B = a->B, Hc = a->Hc, n = Hc * B;
    for (int p = 0; p < 3; p++)
        bound(Hc, B, z + (3 + 2 * p) * n, z + (4 + 2 * p) * n, bd + 2 * p * n,
              bd + (2 * p + 1) * n, r ? r + p * n : NULL);
    const REAL *gi = z + n, *ure = bd + 4 * n, *uim = bd + 5 * n;
    ALL(i, n) {
        v[i] = gi[i] * ure[i];
        v[n + i] = gi[i] * uim[i];
    }
}

void al_forward(const al_args *a) {
    int64_t B = a->B, T = a->T, Hc = a->Hc, N = a->N, H = 2 * Hc, K = 9 * Hc, n = Hc * B;
    REAL *bd = a->work, *v = bd + 6 * n, *ms = v + 2 * n, *o = ms + 2 * n, *h0 = o + 2 * n;
    if (a->c0) kc_to_batch_last(B, N * H, N * H, a->c0, a->C);
    else memset(a->C, 0, N * H * B * sizeof(REAL));
    if (a->h0) kc_to_batch_last(B, H, H, a->h0, h0);
    kc_to_batch_last(B, T * K, T * K, a->px, a->Z); /* z = px(t), then W h(t-1) added */
    for (int64_t t = 0; t < T; t++) {
        REAL *z = a->Z + t * K * B, *y = a->Y + t * H * B, *m = a->M + t * H * B;
        const REAL *cp = a->C + t * N * H * B;
        REAL *cn = a->C + (t + 1) * N * H * B;
        if (t || a->h0) kc_times_W(a->gemm, B, K, H, a->W, t ? a->Y + (t - 1) * H * B : h0, z, 0);
        ALL(i, 3 * n) z[i] = sigmoid(z[i]);
        keys(a, z, bd, NULL, v);
        memset(ms, 0, 2 * n * sizeof(REAL));
        for (int64_t s = 0; s < N; s++)
            for (int64_t j = 0; j < Hc; j++) {
                int64_t k = a->perm[s * Hc + j];
                const REAL *gf = z + j * B, *vre = v + j * B, *vim = v + n + j * B;
                const REAL *rire = bd + k * B, *riim = bd + n + k * B;
                const REAL *rore = bd + 2 * n + k * B, *roim = bd + 3 * n + k * B;
                const REAL *cpre = cp + (s * H + j) * B, *cpim = cp + (s * H + Hc + j) * B;
                REAL *cnre = cn + (s * H + j) * B, *cnim = cn + (s * H + Hc + j) * B;
                REAL *mre = ms + j * B, *mim = ms + n + j * B;
                LANES(b) {
                    REAL wre = rire[b] * vre[b] - riim[b] * vim[b];
                    REAL wim = rire[b] * vim[b] + riim[b] * vre[b];
                    REAL cre = gf[b] * cpre[b] + wre, cim = gf[b] * cpim[b] + wim;
                    cnre[b] = cre;
                    cnim[b] = cim;
                    mre[b] += rore[b] * cre - roim[b] * cim;
                    mim[b] += rore[b] * cim + roim[b] * cre;
                }
            }
        ALL(i, 2 * n) m[i] = ms[i] / (REAL)N;
        bound(Hc, B, m, m + n, o, o + n, NULL);
        const REAL *go = z + 2 * n;
        ALL(i, n) {
            y[i] = go[i] * o[i];
            y[n + i] = go[i] * o[n + i];
        }
    }
    kc_to_batch_first(B, T * H, T * H, a->Y, a->Yb);
    kc_to_batch_first(B, N * H, N * H, a->C + T * N * H * B, a->cT);
}

/* Backward of step t: gh = dL/dh(t) in full, gc = dL/dc(t) in; gc becomes dL/dc(t-1) and
 * DZ[t] = dL/dz(t) is written. */
static void step_backward(const al_args *a, int64_t t, const REAL *gh, REAL *gc, REAL *w) {
    int64_t B = a->B, Hc = a->Hc, N = a->N, H = 2 * Hc, K = 9 * Hc, n = Hc * B;
    const REAL *z = a->Z + t * K * B, *m = a->M + t * H * B;
    const REAL *cp = a->C + t * N * H * B, *cn = a->C + (t + 1) * N * H * B;
    REAL *dz = a->DZ + t * K * B;
    REAL *bd = w, *r = bd + 6 * n, *v = r + 3 * n, *o = v + 2 * n, *ro = o + 2 * n,
         *dm = ro + n, *dgf = dm + 2 * n, *dv = dgf + n, *dk = dv + 2 * n, *du = dk + 4 * n;
    const REAL *gf = z, *gi = z + n, *go = z + 2 * n;
    keys(a, z, bd, r, v);
    /* h = go * bound(m), m = (1/N) sum_s r_s */
    bound(Hc, B, m, m + n, o, o + n, ro);
    ALL(i, n) {
        REAL dgo = gh[i] * o[i] + gh[n + i] * o[n + i];
        dz[2 * n + i] = dgo * (1 - go[i]) * go[i];
        dm[i] = gh[i] * go[i]; /* d bound(m), overwritten by d m below */
        dm[n + i] = gh[n + i] * go[i];
    }
    bound_backward(Hc, B, o, o + n, ro, dm, dm + n, dm, dm + n);
    ALL(i, 2 * n) dm[i] /= (REAL)N; /* d r_s, the same for every s */
    memset(dgf, 0, 7 * n * sizeof(REAL)); /* dgf, dv, dk (d ri, d ro after the bound) */
    for (int64_t s = 0; s < N; s++)
        for (int64_t j = 0; j < Hc; j++) {
            int64_t k = a->perm[s * Hc + j];
            const REAL *drre = dm + j * B, *drim = dm + n + j * B;
            const REAL *vre = v + j * B, *vim = v + n + j * B, *f = gf + j * B;
            const REAL *rire = bd + k * B, *riim = bd + n + k * B;
            const REAL *rore = bd + 2 * n + k * B, *roim = bd + 3 * n + k * B;
            const REAL *cpre = cp + (s * H + j) * B, *cpim = cp + (s * H + Hc + j) * B;
            const REAL *cnre = cn + (s * H + j) * B, *cnim = cn + (s * H + Hc + j) * B;
            REAL *gre = gc + (s * H + j) * B, *gim = gc + (s * H + Hc + j) * B;
            REAL *dfj = dgf + j * B, *dvre = dv + j * B, *dvim = dv + n + j * B;
            REAL *drire = dk + k * B, *driim = dk + n + k * B;
            REAL *drore = dk + 2 * n + k * B, *droim = dk + 3 * n + k * B;
            LANES(b) {
                /* r = pro (*) c: d pro = dr (*) conj(c), d c += conj(pro) (*) dr */
                drore[b] += drre[b] * cnre[b] + drim[b] * cnim[b];
                droim[b] += drim[b] * cnre[b] - drre[b] * cnim[b];
                REAL ore = gre[b] + (drre[b] * rore[b] + drim[b] * roim[b]);
                REAL oim = gim[b] + (drim[b] * rore[b] - drre[b] * roim[b]);
                /* c = gf * c_prev + pri (*) v */
                dfj[b] += ore * cpre[b] + oim * cpim[b];
                gre[b] = f[b] * ore;
                gim[b] = f[b] * oim;
                drire[b] += ore * vre[b] + oim * vim[b];
                driim[b] += oim * vre[b] - ore * vim[b];
                dvre[b] += ore * rire[b] + oim * riim[b];
                dvim[b] += oim * rire[b] - ore * riim[b];
            }
        }
    const REAL *ure = bd + 4 * n, *uim = bd + 5 * n;
    ALL(i, n) {
        REAL dgi = dv[i] * ure[i] + dv[n + i] * uim[i];
        du[i] = dv[i] * gi[i];
        du[n + i] = dv[n + i] * gi[i];
        dz[i] = dgf[i] * (1 - gf[i]) * gf[i];
        dz[n + i] = dgi * (1 - gi[i]) * gi[i];
    }
    bound_backward(Hc, B, bd, bd + n, r, dk, dk + n, dz + 3 * n, dz + 4 * n);
    bound_backward(Hc, B, bd + 2 * n, bd + 3 * n, r + n, dk + 2 * n, dk + 3 * n, dz + 5 * n,
                   dz + 6 * n);
    bound_backward(Hc, B, bd + 4 * n, bd + 5 * n, r + 2 * n, du, du + n, dz + 7 * n, dz + 8 * n);
}

void al_backward(const al_args *a) {
    int64_t B = a->B, T = a->T, Hc = a->Hc, N = a->N, H = 2 * Hc, K = 9 * Hc, n = Hc * B;
    REAL *gh = a->work, *gc = gh + 2 * n, *h0 = gc + 2 * N * n, *w = h0 + 2 * n;
    if (a->dcT) kc_to_batch_last(B, N * H, N * H, a->dcT, gc);
    else memset(gc, 0, N * H * B * sizeof(REAL));
    if (a->dY) kc_to_batch_last(B, T * H, T * H, a->dY, a->GH);
    else memset(a->GH, 0, T * H * B * sizeof(REAL));
    for (int64_t t = T - 1; t >= 0; t--) {
        REAL *ght = a->GH + t * H * B; /* dL/dh(t) = dY(t) + W^T dz(t+1) */
        if (t + 1 < T) kc_times_W(a->gemm, B, K, H, a->W, a->DZ + (t + 1) * K * B, ght, 1);
        step_backward(a, t, ght, gc, w);
    }
    kc_to_batch_first(B, T * K, T * K, a->DZ, a->dpx);
    for (int64_t t = 1; t < T; t++) kc_add_outer(a->gemm, B, K, H, a->DZ + t * K * B, a->Y + (t - 1) * H * B, a->dW);
    if (a->h0) {
        kc_to_batch_last(B, H, H, a->h0, h0);
        kc_add_outer(a->gemm, B, K, H, a->DZ, h0, a->dW);
        if (a->dh0) {
            memset(gh, 0, H * B * sizeof(REAL));
            kc_times_W(a->gemm, B, K, H, a->W, a->DZ, gh, 1);
            kc_to_batch_first(B, H, H, gh, a->dh0);
        }
    }
    if (a->dc0) kc_to_batch_first(B, N * H, N * H, gc, a->dc0);
}
