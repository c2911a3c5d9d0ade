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
 * fwp.feature_map and fwp.normalise.
 *
 * The fast weights are formed only every L steps (chunks). Inside a chunk that started from S_c,
 * S_{t-1} = S_c + Σ_{c<=s<t} k_s u_s^T is applied without forming it:
 *     S_{t-1}^T k_t = S_c^T k_t + Σ_s u_s (k_s·k_t)      (the same for q_t),
 * a few vectors per earlier step of the chunk instead of a pass over d_k x d_v values. S_c is read
 * once per step and written once per chunk, and not at all while it is the zero initial state;
 * the torch loop reads and writes it several times per step. Backward walks the chunks in
 * reverse: S_c = S_e - Σ_s k_s u_s^T from the chunk's end S_e (rounding only, as the torch loop's
 * own walk back), and dL/dS_t = dS_e + Σ_{s>t} (q_s do_s^T - k_s dr_s^T) from the gradient dS_e at
 * the chunk's end, applied the same way. The recurrent products (pre_t and the gradient reaching
 * y_{t-1}) are one gemm per step over the batch, torch's BLAS when it is given. Sums run in
 * another order than the torch loop's: the two agree at rounding level.
 *
 * Layout: batch first, as torch gives ([B, T, .]); S is [B, h, d_k, d_v].
 */
#include "kernel_common.h"

#define ALL(i, n) _Pragma("omp simd") for (int64_t i = 0; i < (n); i++)

#define EXPM1(x) _Generic((x), float: expm1f, default: expm1)(x)
#define TANH(x) _Generic((x), float: tanhf, default: tanh)(x)

#define L2_EPS ((REAL)1e-6)   /* fwp.L2_EPS: keeps an all-zero φ at zero */

enum { MAP_IDENTITY = 0, MAP_ELU1 = 1 };
enum { NORM_NONE = 0, NORM_SUM = 1, NORM_L2 = 2 };

typedef struct {
    int64_t B, T, H, dk, dv;  /* batch, steps, heads, key and value size per head */
    int64_t fmap, norm;       /* feature map (MAP_*) and normalisation (NORM_*) of q and k */
    int64_t L;                /* steps per chunk (below) */
    int64_t s0;               /* whether S_0 is given (else zero, never read) */
    int64_t final;            /* whether to form S_T (else S ends at the last chunk's start) */
    int64_t ds0;              /* whether to form dL/dS_0 */
    int64_t dsT;              /* whether dS holds a gradient w.r.t. S_T on entry (else zero) */
    const REAL *z;            /* [B, T, K] projections: q, k, v of the heads, then β of each;
                                 K = h (2 dk + dv + 1) */
    const REAL *R;            /* [K, N] recurrent weight (pre = z + R tanh(y)), N = h dv */
    const REAL *y0;           /* [B, N] output before step 0 */
    REAL *S;                  /* [B, h, dk, dv] forward: S_0 on entry (if s0), S_T on return (if
                                 final, else the last chunk's start); backward: as forward
                                 left it, walked back to S_0; NULL when never formed */
    REAL *Y;                  /* [B, T, N] outputs y_t */
    REAL *TH;                 /* [B, T, N] tanh(y_{t-1}), the recurrent input of step t */
    REAL *P;                  /* [B, T, K] pre-activations pre_t */
    REAL *Rr;                 /* [B, T, h, dv] r_t = v_t - S_{t-1}^T k_t */
    REAL *Qn, *Kn;            /* [B, T, h, dk] φ(q_t), φ(k_t) */
    REAL *U;                  /* [B, T, h, dv] u_t = β_t r_t */
    const REAL *dY;           /* [B, T, N] gradient w.r.t. the outputs, or NULL when zero */
    REAL *dS;                 /* [B, h, dk, dv] gradient w.r.t. S_T on entry (if dsT), S_0 on
                                 return (if ds0); NULL when never formed */
    REAL *DO;                 /* [B, T, h, dv] scratch: dL/do_t */
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

static inline REAL dot(const REAL *a, const REAL *b, int64_t n) {
    REAL s = 0;
    _Pragma("omp simd reduction(+:s)")
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* S (one block, d_k x d_v) += Σ_{s in [c0, c1)} sign k_s u_s^T, or = when !live; ks, us: the
 * chunk's first key and u of this example and head, `stride_k`, `stride_u` apart per step. */
static void add_outer(REAL *S, int live, int64_t dk, int64_t dv, int64_t n, REAL sign,
                      const REAL *ks, int64_t stride_k, const REAL *us, int64_t stride_u) {
    for (int64_t i = 0; i < dk; i++) {
        REAL *Si = S + i * dv;
        if (!live) ALL(c, dv) Si[c] = 0;
        for (int64_t s = 0; s < n; s++) {
            const REAL a = sign * ks[s * stride_k + i], *u = us + s * stride_u;
            ALL(c, dv) Si[c] += a * u[c];
        }
    }
}

void rd_forward(const rd_args *p) {
    const int64_t B = p->B, T = p->T, h = p->H, dk = p->dk, dv = p->dv, L = p->L;
    const int64_t N = h * dv, K = h * (2 * dk + dv + 1), C = h * (2 * dk + dv);
    const int64_t m = dk > dv ? dk : dv;
    REAL *rk = p->work, *rq = rk + m;
    int live = p->s0 != 0;  /* whether S holds the chunk's start (else that is zero) */
    for (int64_t b = 0; b < B; b++) {
        const REAL *y0 = p->y0 + b * N;
        REAL *th = p->TH + b * T * N;
        ALL(i, N) th[i] = TANH(y0[i]);
    }
    for (int64_t c0 = 0; c0 < T; c0 += L) {
        const int64_t c1 = c0 + L < T ? c0 + L : T;
        for (int64_t t = c0; t < c1; t++) {
            for (int64_t b = 0; b < B; b++)
                memcpy(p->P + (b * T + t) * K, p->z + (b * T + t) * K, K * sizeof(REAL));
            add_recurrent(p, t);
            for (int64_t b = 0; b < B; b++) {
                const REAL *pre = p->P + (b * T + t) * K;
                REAL *y = p->Y + (b * T + t) * N;
                for (int64_t j = 0; j < h; j++) {
                    const int64_t at = (b * T + t) * h + j, first = (b * T + c0) * h + j;
                    REAL *q = p->Qn + at * dk, *k = p->Kn + at * dk;
                    REAL *r = p->Rr + at * dv, *u = p->U + at * dv, *o = y + j * dv;
                    const REAL *v = pre + 2 * h * dk + j * dv;
                    REAL beta = sigmoid(pre[C + j]);
                    phi(p, pre + j * dk, dk, q);
                    phi(p, pre + h * dk + j * dk, dk, k);
                    ALL(c, dv) { rk[c] = 0; rq[c] = 0; }
                    if (live) {  /* S_c^T k, S_c^T q: one pass over the block */
                        const REAL *S = p->S + (b * h + j) * dk * dv;
                        for (int64_t i = 0; i < dk; i++) {
                            const REAL ki = k[i], qi = q[i], *Si = S + i * dv;
                            ALL(c, dv) { rk[c] += ki * Si[c]; rq[c] += qi * Si[c]; }
                        }
                    }
                    for (int64_t s = 0; s < t - c0; s++) {  /* the chunk's earlier steps */
                        const REAL *ks = p->Kn + (first + s * h) * dk;
                        const REAL *us = p->U + (first + s * h) * dv;
                        const REAL a = dot(ks, k, dk), e = dot(ks, q, dk);
                        ALL(c, dv) { rk[c] += a * us[c]; rq[c] += e * us[c]; }
                    }
                    const REAL qk = dot(q, k, dk);
                    ALL(c, dv) {
                        r[c] = v[c] - rk[c];
                        u[c] = beta * r[c];
                        o[c] = rq[c] + qk * u[c];
                    }
                }
                if (t + 1 < T) {
                    REAL *th = p->TH + (b * T + t + 1) * N;
                    ALL(i, N) th[i] = TANH(y[i]);
                }
            }
        }
        if (c1 < T || p->final) {  /* S at the chunk's end: one pass per chunk */
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < h; j++) {
                    const int64_t first = (b * T + c0) * h + j;
                    add_outer(p->S + (b * h + j) * dk * dv, live, dk, dv, c1 - c0, 1,
                              p->Kn + first * dk, h * dk, p->U + first * dv, h * dv);
                }
            live = 1;
        }
    }
}

void rd_backward(const rd_args *p) {
    const int64_t B = p->B, T = p->T, h = p->H, dk = p->dk, dv = p->dv, L = p->L;
    const int64_t N = h * dv, K = h * (2 * dk + dv + 1), C = h * (2 * dk + dv);
    const int64_t m = dk > dv ? dk : dv;
    REAL *gy = p->work;  /* [B, N] dL/dy_t through the steps after t */
    REAL *dSk = gy + B * N, *du = dSk + m, *dSu = du + m, *sdo = dSu + m, *sdr = sdo + m;
    REAL *gq = sdr + m, *gk = gq + m, *f = gk + m, *ga = f + m;
    int dlive = p->dsT != 0;  /* whether dS holds dL/dS at the chunk's end (else zero) */
    memset(gy, 0, B * N * sizeof(REAL));
    for (int64_t c0 = (T - 1) / L * L; c0 >= 0; c0 -= L) {
        const int64_t c1 = c0 + L < T ? c0 + L : T;
        const int live = c0 > 0 || p->s0;  /* whether S_c is not zero */
        if (live && (c1 < T || p->final))  /* S back to the chunk's start, S_c */
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < h; j++) {
                    const int64_t last = (b * T + c1 - 1) * h + j;
                    add_outer(p->S + (b * h + j) * dk * dv, 1, dk, dv, c1 - c0, -1,
                              p->Kn + last * dk, -h * dk, p->U + last * dv, -h * dv);
                }
        for (int64_t t = c1 - 1; t >= c0; t--) {
            for (int64_t b = 0; b < B; b++) {
                const REAL *pre = p->P + (b * T + t) * K;
                REAL *dpre = p->dP + (b * T + t) * K;
                const REAL *dy = p->dY ? p->dY + (b * T + t) * N : NULL;
                for (int64_t j = 0; j < h; j++) {
                    const int64_t at = (b * T + t) * h + j, first = (b * T + c0) * h + j;
                    const REAL *q = p->Qn + at * dk, *k = p->Kn + at * dk;
                    const REAL *r = p->Rr + at * dv, *u = p->U + at * dv, *g = gy + b * N + j * dv;
                    REAL *dob = p->DO + at * dv, *dr = dpre + 2 * h * dk + j * dv;
                    const REAL beta = sigmoid(pre[C + j]);
                    REAL g_beta = 0, ud = 0;
                    ALL(c, dv) {
                        dob[c] = (dy ? dy[j * dv + c] : 0) + g[c];  /* dL/do_t */
                        dSk[c] = 0;
                    }
                    if (dlive) {  /* dS_e^T k, dS_e u: one pass over the block */
                        const REAL *dS = p->dS + (b * h + j) * dk * dv;
                        for (int64_t i = 0; i < dk; i++) {
                            const REAL ki = k[i], *dSi = dS + i * dv;
                            ALL(c, dv) dSk[c] += ki * dSi[c];
                            dSu[i] = dot(dSi, u, dv);
                        }
                    } else {
                        ALL(i, dk) dSu[i] = 0;
                    }
                    /* the chunk's later steps: dS_t = dS_e + Σ_{s>t} (q_s do_s^T - k_s dr_s^T) */
                    for (int64_t s = t + 1; s < c1; s++) {
                        const int64_t as = (b * T + s) * h + j;
                        const REAL *qs = p->Qn + as * dk, *ks = p->Kn + as * dk;
                        const REAL *dos = p->DO + as * dv;
                        const REAL *drs = p->dP + (b * T + s) * K + 2 * h * dk + j * dv;
                        const REAL a = dot(qs, k, dk), e = dot(ks, k, dk);
                        const REAL a2 = dot(dos, u, dv), e2 = dot(drs, u, dv);
                        ALL(c, dv) dSk[c] += a * dos[c] - e * drs[c];
                        ALL(i, dk) dSu[i] += a2 * qs[i] - e2 * ks[i];
                    }
                    const REAL qk = dot(q, k, dk);
                    _Pragma("omp simd reduction(+:ud, g_beta)")
                    for (int64_t c = 0; c < dv; c++) {
                        du[c] = qk * dob[c] + dSk[c];  /* (q·k) do + dS_t^T k */
                        g_beta += du[c] * r[c];
                        dr[c] = beta * du[c];          /* dL/dv_t, and -dL/d(S_{t-1}^T k) */
                        ud += u[c] * dob[c];
                    }
                    ALL(i, dk) { sdo[i] = 0; sdr[i] = 0; }
                    if (live) {  /* S_c do, S_c dr: one pass over the block */
                        const REAL *S = p->S + (b * h + j) * dk * dv;
                        for (int64_t i = 0; i < dk; i++) {
                            const REAL *Si = S + i * dv;
                            REAL a = 0, e = 0;
                            _Pragma("omp simd reduction(+:a, e)")
                            for (int64_t c = 0; c < dv; c++) { a += Si[c] * dob[c]; e += Si[c] * dr[c]; }
                            sdo[i] = a;
                            sdr[i] = e;
                        }
                    }
                    for (int64_t s = 0; s < t - c0; s++) {  /* S_{t-1} = S_c + Σ_{s<t} k_s u_s^T */
                        const REAL *ks = p->Kn + (first + s * h) * dk;
                        const REAL *us = p->U + (first + s * h) * dv;
                        const REAL a = dot(us, dob, dv), e = dot(us, dr, dv);
                        ALL(i, dk) { sdo[i] += a * ks[i]; sdr[i] += e * ks[i]; }
                    }
                    ALL(i, dk) {
                        gq[i] = sdo[i] + ud * k[i];
                        gk[i] = dSu[i] - sdr[i] + ud * q[i];
                    }
                    phi_backward(p, pre + j * dk, dk, q, gq, f, dpre + j * dk);
                    phi_backward(p, pre + h * dk + j * dk, dk, k, gk, f, dpre + h * dk + j * dk);
                    dpre[C + j] = g_beta * (beta * (1 - beta));
                }
            }
            recurrent_backward(p, t, gy);  /* now dL/dy_{t-1} */
        }
        if (c0 > 0 || p->ds0) {  /* dS at the chunk's start: one pass per chunk */
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < h; j++) {
                    const int64_t last = (b * T + c1 - 1) * h + j;
                    REAL *dS = p->dS + (b * h + j) * dk * dv;
                    add_outer(dS, dlive, dk, dv, c1 - c0, 1, p->Qn + last * dk, -h * dk,
                              p->DO + last * dv, -h * dv);
                    add_outer(dS, 1, dk, dv, c1 - c0, -1, p->Kn + last * dk, -h * dk,
                              p->dP + (b * T + c1 - 1) * K + 2 * h * dk + j * dv, -K);
                }
            dlive = 1;
        }
    }
    memcpy(p->dy0, gy, B * N * sizeof(REAL));
}
