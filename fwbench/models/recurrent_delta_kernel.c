/* Recurrent delta rule (Irie et al. 2021) on the CPU: the rule over a whole sequence forward,
 * and its hand-written backward through time, one call each, one thread. Compiled once per
 * scalar type (-DREAL=float|double) by native.py; recurrent_delta_fused.py is the autograd
 * wrapper, the step loops in recurrent_delta.py the references it is tested against.
 *
 * Per step t, for every example and head, from the projections z_t (computed by torch for all
 * steps at once) and the previous output y_{t-1}:
 *     pre_t = z_t + R tanh(y_{t-1})                       [K = h (2 d_k + d_v + 1) rows]
 *     q, k  = φ(pre_t q rows), φ(pre_t k rows);  v = pre_t v rows;  β = sigmoid(pre_t β row)
 *     r     = v - S^T k,  u = β r
 *     o     = S^T q + (q·k) u,   S += k u^T,   y_t = o (the heads concatenated)
 * with φ a feature map (identity or ELU + 1) then a normalisation (none, sum or L2), as
 * fwp.feature_map and fwp.normalise. The operations run in the order of the torch loop, so the
 * two agree at rounding level.
 *
 * Each example's and head's S (d_k x d_v) is read in one pass (S^T k and S^T q together) and
 * written in a second while it is still in cache: one pass per step over the whole state in
 * memory, where the torch loop makes several. Backward restores S_{t-1} = S_t - k u^T from the
 * kept r (as the torch loop does) and updates dL/dS in place, both in two passes over the block.
 * The recurrent products (pre_t and the gradient reaching y_{t-1}) are one gemm per step over
 * the batch, torch's BLAS when it is given.
 *
 * Layout: batch first, as torch gives ([B, T, .]); S is [B, h, d_k, d_v].
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef REAL
#define REAL float
#endif

#define ALL(i, n) _Pragma("omp simd") for (int64_t i = 0; i < (n); i++)

#define EXP(x) _Generic((x), float: expf, default: exp)(x)
#define EXPM1(x) _Generic((x), float: expm1f, default: expm1)(x)
#define SQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)
#define TANH(x) _Generic((x), float: tanhf, default: tanh)(x)

#define L2_EPS ((REAL)1e-6)   /* fwp.L2_EPS: keeps an all-zero φ at zero */

/* Fortran BLAS gemm; integers are passed as 64-bit values, which an LP64 BLAS reads correctly on
 * a little-endian machine (the low half) and an ILP64 BLAS reads whole. */
typedef void (*gemm_t)(const char *, const char *, const int64_t *, const int64_t *,
                       const int64_t *, const REAL *, const REAL *, const int64_t *, const REAL *,
                       const int64_t *, const REAL *, REAL *, const int64_t *);

enum { MAP_IDENTITY = 0, MAP_ELU1 = 1 };
enum { NORM_NONE = 0, NORM_SUM = 1, NORM_L2 = 2 };

typedef struct {
    int64_t B, T, H, dk, dv;  /* batch, steps, heads, key and value size per head */
    int64_t fmap, norm;       /* feature map (MAP_*) and normalisation (NORM_*) of q and k */
    const REAL *z;            /* [B, T, K] projections: q, k, v of the heads, then β of each;
                                 K = h (2 dk + dv + 1) */
    const REAL *R;            /* [K, N] recurrent weight (pre = z + R tanh(y)), N = h dv */
    const REAL *y0;           /* [B, N] output before step 0 */
    REAL *S;                  /* [B, h, dk, dv] forward: S_0 on entry, S_T on return; backward:
                                 S_T on entry, walked back to S_0 */
    REAL *Y;                  /* [B, T, N] outputs y_t */
    REAL *TH;                 /* [B, T, N] tanh(y_{t-1}), the recurrent input of step t */
    REAL *P;                  /* [B, T, K] pre-activations pre_t */
    REAL *Rr;                 /* [B, T, h, dv] r_t = v_t - S_{t-1}^T k_t */
    const REAL *dY;           /* [B, T, N] gradient w.r.t. the outputs, or NULL when zero */
    REAL *dS;                 /* [B, h, dk, dv] gradient w.r.t. S_T on entry, S_0 on return */
    REAL *dP;                 /* [B, T, K] gradient w.r.t. pre_t, which is that w.r.t. z_t */
    REAL *dy0;                /* [B, N] gradient w.r.t. y0 */
    REAL *work;               /* scratch: B N + 16 max(dk, dv) */
    gemm_t gemm;              /* BLAS gemm, or NULL for the plain loops below */
} rd_args;

static inline REAL sigmoid(REAL x) { return (REAL)1 / ((REAL)1 + EXP(-x)); }

/* n = normalise(feature_map(a)) over d values (fwp.feature_map, fwp.normalise). */
static void phi(const rd_args *p, const REAL *a, int64_t d, REAL *n) {
    for (int64_t i = 0; i < d; i++)
        n[i] = p->fmap == MAP_ELU1 ? (a[i] > 0 ? a[i] + 1 : EXPM1(a[i]) + 1) : a[i];
    if (p->norm == NORM_SUM) {
        REAL s = 0;
        for (int64_t i = 0; i < d; i++) s += n[i];
        s += L2_EPS;
        ALL(i, d) n[i] /= s;
    } else if (p->norm == NORM_L2) {
        REAL s = 0;
        for (int64_t i = 0; i < d; i++) s += n[i] * n[i];
        REAL c = SQRT(s);
        c = c > L2_EPS ? c : L2_EPS;
        ALL(i, d) n[i] /= c;
    }
}

/* g_a = dL/da from g_n = dL/dn, n = phi(a) (f, of d values, is scratch). */
static void phi_backward(const rd_args *p, const REAL *a, int64_t d, const REAL *n,
                         const REAL *g_n, REAL *f, REAL *g_a) {
    for (int64_t i = 0; i < d; i++)
        f[i] = p->fmap == MAP_ELU1 ? (a[i] > 0 ? a[i] + 1 : EXPM1(a[i]) + 1) : a[i];
    if (p->norm == NORM_SUM) {  /* n = f / s, s = Σ f + eps: g_f = (g_n - n·g_n) / s */
        REAL s = 0, along = 0;
        for (int64_t i = 0; i < d; i++) s += f[i];
        s += L2_EPS;
        for (int64_t i = 0; i < d; i++) along += n[i] * g_n[i];
        ALL(i, d) g_a[i] = (g_n[i] - along) / s;
    } else if (p->norm == NORM_L2) {  /* (g_n - n (n·g_n)) / |f| if |f| >= eps, else g_n / eps */
        REAL s = 0, along = 0;
        for (int64_t i = 0; i < d; i++) s += f[i] * f[i];
        REAL c = SQRT(s);
        if (c >= L2_EPS)
            for (int64_t i = 0; i < d; i++) along += n[i] * g_n[i];
        else
            c = L2_EPS;
        ALL(i, d) g_a[i] = (g_n[i] - n[i] * along) / c;
    } else {
        ALL(i, d) g_a[i] = g_n[i];
    }
    if (p->fmap == MAP_ELU1)
        for (int64_t i = 0; i < d; i++) g_a[i] *= a[i] > 0 ? (REAL)1 : EXP(a[i]);
}

/* P[:, t] += TH[:, t] R^T over the batch (P[:, t] holds z_t). */
static void add_recurrent(const rd_args *p, int64_t t) {
    int64_t B = p->B, T = p->T, N = p->H * p->dv, K = p->H * (2 * p->dk + p->dv + 1);
    const REAL *th = p->TH + t * N;
    REAL *pre = p->P + t * K;
    if (p->gemm) { /* column-major: pre[K, B] += R^T[K, N] th[N, B] (R read column-major = R^T) */
        const char tr = 'T', nt = 'N';
        const REAL one = 1;
        const int64_t ldb = T * N, ldc = T * K;
        p->gemm(&tr, &nt, &K, &B, &N, &one, p->R, &N, th, &ldb, &one, pre, &ldc);
        return;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < K; k++) {
            REAL s = 0;
            for (int64_t i = 0; i < N; i++) s += p->R[k * N + i] * th[b * T * N + i];
            pre[b * T * K + k] += s;
        }
}

/* g[B, N] = dP[:, t] R, times 1 - TH[:, t]^2 (the gradient reaching y_{t-1}). */
static void recurrent_backward(const rd_args *p, int64_t t, REAL *g) {
    int64_t B = p->B, T = p->T, N = p->H * p->dv, K = p->H * (2 * p->dk + p->dv + 1);
    const REAL *dpre = p->dP + t * K;
    if (p->gemm) { /* column-major: g[N, B] = R[N, K] (R^T read column-major) dpre[K, B] */
        const char nt = 'N';
        const REAL one = 1, zero = 0;
        const int64_t ldb = T * K;
        p->gemm(&nt, &nt, &N, &B, &K, &one, p->R, &N, dpre, &ldb, &zero, g, &N);
    } else {
        for (int64_t b = 0; b < B; b++) {
            REAL *gb = g + b * N;
            for (int64_t i = 0; i < N; i++) gb[i] = 0;
            for (int64_t k = 0; k < K; k++) {
                REAL d = dpre[b * T * K + k];
                const REAL *r = p->R + k * N;
                ALL(i, N) gb[i] += d * r[i];
            }
        }
    }
    for (int64_t b = 0; b < B; b++) {
        const REAL *th = p->TH + (b * T + t) * N;
        REAL *gb = g + b * N;
        ALL(i, N) gb[i] *= 1 - th[i] * th[i];
    }
}

void rd_forward(const rd_args *p) {
    const int64_t B = p->B, T = p->T, h = p->H, dk = p->dk, dv = p->dv;
    const int64_t N = h * dv, K = h * (2 * dk + dv + 1), C = h * (2 * dk + dv);
    const int64_t m = dk > dv ? dk : dv;
    REAL *q = p->work, *k = q + m, *rk = k + m, *rq = rk + m;
    for (int64_t b = 0; b < B; b++) {
        const REAL *y0 = p->y0 + b * N;
        REAL *th = p->TH + b * T * N;
        ALL(i, N) th[i] = TANH(y0[i]);
    }
    for (int64_t t = 0; t < T; t++) {
        for (int64_t b = 0; b < B; b++)
            memcpy(p->P + (b * T + t) * K, p->z + (b * T + t) * K, K * sizeof(REAL));
        add_recurrent(p, t);
        for (int64_t b = 0; b < B; b++) {
            const REAL *pre = p->P + (b * T + t) * K;
            REAL *y = p->Y + (b * T + t) * N;
            for (int64_t j = 0; j < h; j++) {
                REAL *S = p->S + (b * h + j) * dk * dv;
                const REAL *v = pre + 2 * h * dk + j * dv;
                REAL *r = p->Rr + ((b * T + t) * h + j) * dv, *o = y + j * dv;
                REAL beta = sigmoid(pre[C + j]), qk = 0;
                phi(p, pre + j * dk, dk, q);
                phi(p, pre + h * dk + j * dk, dk, k);
                ALL(c, dv) { rk[c] = 0; rq[c] = 0; }
                for (int64_t i = 0; i < dk; i++) {  /* [k; q]^T S_{t-1}: the read pass */
                    const REAL ki = k[i], qi = q[i], *Si = S + i * dv;
                    ALL(c, dv) { rk[c] += ki * Si[c]; rq[c] += qi * Si[c]; }
                }
                for (int64_t i = 0; i < dk; i++) qk += q[i] * k[i];
                ALL(c, dv) {
                    r[c] = v[c] - rk[c];
                    REAL u = beta * r[c];
                    o[c] = rq[c] + qk * u;
                    rk[c] = u;  /* u_t, in the read's place */
                }
                for (int64_t i = 0; i < dk; i++) {  /* S_t = S_{t-1} + k u^T: the write pass */
                    const REAL ki = k[i];
                    REAL *Si = S + i * dv;
                    ALL(c, dv) Si[c] += ki * rk[c];
                }
            }
            if (t + 1 < T) {
                REAL *th = p->TH + (b * T + t + 1) * N;
                ALL(i, N) th[i] = TANH(y[i]);
            }
        }
    }
}

void rd_backward(const rd_args *p) {
    const int64_t B = p->B, T = p->T, h = p->H, dk = p->dk, dv = p->dv;
    const int64_t N = h * dv, K = h * (2 * dk + dv + 1), C = h * (2 * dk + dv);
    const int64_t m = dk > dv ? dk : dv;
    REAL *gy = p->work;  /* [B, N] dL/dy_t through the steps after t */
    REAL *q = gy + B * N, *k = q + m, *u = k + m, *dSk = u + m, *du = dSk + m, *dr = du + m;
    REAL *dSu = dr + m, *gq = dSu + m, *gk = gq + m, *f = gk + m, *ga = f + m, *dob = ga + m;
    memset(gy, 0, B * N * sizeof(REAL));
    for (int64_t t = T - 1; t >= 0; t--) {
        for (int64_t b = 0; b < B; b++) {
            const REAL *pre = p->P + (b * T + t) * K;
            REAL *dpre = p->dP + (b * T + t) * K;
            const REAL *dy = p->dY ? p->dY + (b * T + t) * N : NULL;
            for (int64_t j = 0; j < h; j++) {
                REAL *S = p->S + (b * h + j) * dk * dv, *dS = p->dS + (b * h + j) * dk * dv;
                const REAL *r = p->Rr + ((b * T + t) * h + j) * dv, *g = gy + b * N + j * dv;
                const REAL *aq = pre + j * dk, *ak = pre + h * dk + j * dk;
                REAL beta = sigmoid(pre[C + j]), qk = 0, ud = 0, g_beta = 0;
                phi(p, aq, dk, q);
                phi(p, ak, dk, k);
                ALL(c, dv) {
                    u[c] = beta * r[c];
                    dob[c] = (dy ? dy[j * dv + c] : 0) + g[c];  /* dL/do_t */
                    dSk[c] = 0;
                }
                for (int64_t i = 0; i < dk; i++) {  /* back to S_{t-1}; dS_t^T k, dS_t u */
                    const REAL ki = k[i];
                    REAL *Si = S + i * dv, s = 0;
                    const REAL *dSi = dS + i * dv;
                    ALL(c, dv) Si[c] -= ki * u[c];
                    _Pragma("omp simd reduction(+:s)")
                    for (int64_t c = 0; c < dv; c++) { dSk[c] += ki * dSi[c]; s += dSi[c] * u[c]; }
                    dSu[i] = s;
                }
                for (int64_t i = 0; i < dk; i++) qk += q[i] * k[i];
                _Pragma("omp simd reduction(+:ud, g_beta)")
                for (int64_t c = 0; c < dv; c++) {
                    du[c] = qk * dob[c] + dSk[c];  /* (q·k) do + dS_t^T k */
                    g_beta += du[c] * r[c];
                    dr[c] = beta * du[c];          /* dL/dv_t, and -dL/d(S_{t-1}^T k) */
                    ud += u[c] * dob[c];
                }
                for (int64_t i = 0; i < dk; i++) {  /* S_{t-1} do, S_{t-1} dr; dS_{t-1} */
                    const REAL qi = q[i], ki = k[i];
                    const REAL *Si = S + i * dv;
                    REAL *dSi = dS + i * dv, sdo = 0, sdr = 0;
                    _Pragma("omp simd reduction(+:sdo, sdr)")
                    for (int64_t c = 0; c < dv; c++) {
                        sdo += Si[c] * dob[c];
                        sdr += Si[c] * dr[c];
                        dSi[c] += qi * dob[c] - ki * dr[c];
                    }
                    gq[i] = sdo + ud * ki;
                    gk[i] = dSu[i] - sdr + ud * qi;
                }
                phi_backward(p, aq, dk, q, gq, f, ga);
                memcpy(dpre + j * dk, ga, dk * sizeof(REAL));
                phi_backward(p, ak, dk, k, gk, f, ga);
                memcpy(dpre + h * dk + j * dk, ga, dk * sizeof(REAL));
                memcpy(dpre + 2 * h * dk + j * dv, dr, dv * sizeof(REAL));
                dpre[C + j] = g_beta * (beta * (1 - beta));
            }
        }
        recurrent_backward(p, t, gy);  /* now dL/dy_{t-1} */
    }
    memcpy(p->dy0, gy, B * N * sizeof(REAL));
}
