/* The delta rule, and the gated delta rule, on the CPU for small fast weight matrices: the
 * rule over a whole sequence forward and its hand-written backward through time, one call each,
 * one thread. Compiled once per scalar type (-DREAL=float|double) by native.py; delta_fused.py
 * is the autograd wrapper, the models' chunked torch forms and step loops (delta.py,
 * gated_delta.py) the references it is tested against.
 *
 * Per example and head, from φ(q_t), φ(k_t) [d_k], v_t [d_v], β_t and (gated) log α_t, all
 * computed by torch for all steps at once:
 *     P = α_t S_{t-1},   u = β_t (v_t - P^T k_t),   S_t = P + k_t u^T,   o_t = S_t^T q_t
 *       = P^T q_t + (q_t·k_t) u
 * (α_t = 1 for the delta rule). One example's and head's S stays in cache for the whole
 * sequence, and every S_t is kept for backward (the caller bounds their size): at widths of a
 * few tens the chunked torch form spends its time in the dispatch of some forty small batched
 * products per training step, which here are a few passes over d_k x d_v values per step.
 * Backward, per step in reverse with dS = dL/dS_t:
 *     du = dS^T k + (q·k) do,  dβ = du·r,  dr = β du  (= dL/dv),  dP = dS + q do^T - k dr^T,
 *     dq = P do + (u·do) k,  dk = dS u + (u·do) q - P dr,  d log α = <dP, P>,  dS_{t-1} = α dP.
 *
 * Layout: batch LAST inside the kernel, as in alstm_kernel.c: every per-example value is stored
 * as [rows, B h], so that each operation runs over examples and heads in SIMD lanes (a row of
 * S holds d_v values only, too few for the vector units). The kernel transposes the [B h, T, .]
 * tensors torch gives and takes at the edges.
 */
#include "kernel_common.h"

/* N is the lanes' count padded to a multiple of VL (the padding lanes hold zeros); loops that
 * sum over rows keep a block of VL lanes in registers (BLOCKS, then VEC) */
#define VL 16
#define LANES(n) _Pragma("omp simd") for (int64_t n = 0; n < N; n++)
#define BLOCKS(nb) for (int64_t nb = 0; nb < N; nb += VL)
#define VEC(l) _Pragma("omp simd") for (int64_t l = 0; l < VL; l++)

typedef struct {
    int64_t BH, T, dk, dv;    /* examples x heads, steps, key and value size; N below is BH
                                 rounded up to a multiple of VL */
    const REAL *q, *k;        /* [N, T, dk] φ(q), φ(k) */
    const REAL *v;            /* [N, T, dv] */
    const REAL *beta;         /* [N, T] */
    const REAL *la;           /* [N, T] log α, or NULL (the delta rule: α = 1) */
    const REAL *S0;           /* [N, dk, dv] state before step 0, or NULL when zero */
    REAL *o;                  /* [N, T, dv] outputs */
    REAL *ST;                 /* [N, dk, dv] the final state, or NULL when not wanted */
    /* kept from forward for backward, batch last */
    REAL *Qb, *Kb;            /* [T, dk, N] */
    REAL *Bb, *Ab;            /* [T, N] β, α */
    REAL *S0b;                /* [dk, dv, N] S_0, when given */
    REAL *Sh;                 /* [T, dk, dv, N] S_t after every step */
    REAL *Rb;                 /* [T, dv, N] r_t = v_t - P^T k_t */
    /* backward */
    const REAL *dO;           /* [N, T, dv] gradient w.r.t. the outputs, or NULL when zero */
    const REAL *dST;          /* [N, dk, dv] gradient w.r.t. the final state, or NULL when zero */
    REAL *dq, *dk_, *dv_;     /* [N, T, dk], [N, T, dk], [N, T, dv] */
    REAL *dbeta, *dla;        /* [N, T]; dla NULL for the delta rule */
    REAL *dS0;                /* [N, dk, dv] gradient w.r.t. S_0, or NULL when not wanted */
    REAL *work;               /* scratch: forward (2 T dv + 2 dv + 1) N, backward
                                 (T (2 dk + 2 dv + 2) + dk dv + 2 dv + 3 dk + 5) N */
} dr_args;

#define TILE 16

/* dst[r, n] = src[n * R + r] for r < R, n < M, and 0 for M <= n < N (the padding lanes):
 * [M, R] to [R, N]. */
static void to_batch_last(int64_t M, int64_t N, int64_t R, const REAL *src, REAL *dst) {
    for (int64_t n0 = 0; n0 < M; n0 += TILE)
        for (int64_t r0 = 0; r0 < R; r0 += TILE) {
            int64_t n1 = n0 + TILE < M ? n0 + TILE : M, r1 = r0 + TILE < R ? r0 + TILE : R;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t n = n0; n < n1; n++) dst[r * N + n] = src[n * R + r];
        }
    if (N > M)
        for (int64_t r = 0; r < R; r++) memset(dst + r * N + M, 0, (N - M) * sizeof(REAL));
}

/* dst[n * R + r] = src[r, n] for n < M: [R, N] to [M, R]. */
static void to_batch_first(int64_t M, int64_t N, int64_t R, const REAL *src, REAL *dst) {
    for (int64_t n0 = 0; n0 < M; n0 += TILE)
        for (int64_t r0 = 0; r0 < R; r0 += TILE) {
            int64_t n1 = n0 + TILE < M ? n0 + TILE : M, r1 = r0 + TILE < R ? r0 + TILE : R;
            for (int64_t n = n0; n < n1; n++)
                for (int64_t r = r0; r < r1; r++) dst[n * R + r] = src[r * N + n];
        }
}

void dr_forward(const dr_args *p) {
    const int64_t M = p->BH, N = (M + VL - 1) / VL * VL, T = p->T, dk = p->dk, dv = p->dv;
    const int64_t SS = dk * dv * N;
    REAL *Vb = p->work, *Ob = Vb + T * dv * N, *rk = Ob + T * dv * N, *rq = rk + dv * N;
    REAL *qk = rq + dv * N;
    to_batch_last(M, N, T * dk, p->q, p->Qb);
    to_batch_last(M, N, T * dk, p->k, p->Kb);
    to_batch_last(M, N, T * dv, p->v, Vb);
    to_batch_last(M, N, T, p->beta, p->Bb);
    if (p->la) {
        to_batch_last(M, N, T, p->la, p->Ab);
        for (int64_t i = 0; i < T * N; i++) p->Ab[i] = EXP(p->Ab[i]);
    } else {
        for (int64_t i = 0; i < T * N; i++) p->Ab[i] = 1;
    }
    if (p->S0) to_batch_last(M, N, dk * dv, p->S0, p->S0b);
    const REAL *prev = p->S0 ? p->S0b : NULL;  /* NULL: zero */
    for (int64_t t = 0; t < T; t++) {
        const REAL *q = p->Qb + t * dk * N, *k = p->Kb + t * dk * N, *v = Vb + t * dv * N;
        const REAL *al = p->Ab + t * N, *be = p->Bb + t * N;
        REAL *S = p->Sh + t * SS, *r = p->Rb + t * dv * N, *o = Ob + t * dv * N;
        BLOCKS(nb) {
            REAL a[VL];
            VEC(l) a[l] = 0;
            for (int64_t i = 0; i < dk; i++) VEC(l) a[l] += q[i * N + nb + l] * k[i * N + nb + l];
            VEC(l) qk[nb + l] = a[l];
            for (int64_t c = 0; c < dv; c++) {  /* S_{t-1}^T k, S_{t-1}^T q */
                REAL ak[VL], aq[VL];
                VEC(l) { ak[l] = 0; aq[l] = 0; }
                if (prev)
                    for (int64_t i = 0; i < dk; i++) {
                        const REAL *Sic = prev + (i * dv + c) * N + nb;
                        const REAL *ki = k + i * N + nb, *qi = q + i * N + nb;
                        VEC(l) { ak[l] += ki[l] * Sic[l]; aq[l] += qi[l] * Sic[l]; }
                    }
                VEC(l) { rk[c * N + nb + l] = ak[l]; rq[c * N + nb + l] = aq[l]; }
            }
        }
        for (int64_t c = 0; c < dv; c++) {
            REAL *rc = r + c * N, *oc = o + c * N, *uc = rk + c * N;
            const REAL *vc = v + c * N, *rqc = rq + c * N;
            LANES(n) {
                rc[n] = vc[n] - al[n] * uc[n];
                uc[n] = be[n] * rc[n];  /* u, in the read's place */
                oc[n] = al[n] * rqc[n] + qk[n] * uc[n];
            }
        }
        for (int64_t i = 0; i < dk; i++) {  /* S_t = α S_{t-1} + k u^T */
            const REAL *ki = k + i * N;
            for (int64_t c = 0; c < dv; c++) {
                REAL *Sic = S + (i * dv + c) * N;
                const REAL *uc = rk + c * N;
                if (prev) {
                    const REAL *Pic = prev + (i * dv + c) * N;
                    LANES(n) Sic[n] = al[n] * Pic[n] + ki[n] * uc[n];
                } else {
                    LANES(n) Sic[n] = ki[n] * uc[n];
                }
            }
        }
        prev = S;
    }
    to_batch_first(M, N, T * dv, Ob, p->o);
    if (p->ST) to_batch_first(M, N, dk * dv, p->Sh + (T - 1) * SS, p->ST);
}

void dr_backward(const dr_args *p) {
    const int64_t M = p->BH, N = (M + VL - 1) / VL * VL, T = p->T, dk = p->dk, dv = p->dv;
    const int64_t SS = dk * dv * N;
    REAL *DQ = p->work, *DK = DQ + T * dk * N, *DV = DK + T * dk * N, *DO = DV + T * dv * N;
    REAL *DB = DO + T * dv * N, *DA = DB + T * N, *dS = DA + T * N, *u = dS + SS;
    REAL *dSk = u + dv * N, *dSu = dSk + dv * N, *sdo = dSu + dk * N, *sdr = sdo + dk * N;
    REAL *qk = sdr + dk * N, *gb = qk + N, *ud = gb + N, *f = ud + N;
    if (p->dO) to_batch_last(M, N, T * dv, p->dO, DO);
    else memset(DO, 0, T * dv * N * sizeof(REAL));
    if (p->dST) to_batch_last(M, N, dk * dv, p->dST, dS);
    else memset(dS, 0, SS * sizeof(REAL));
    for (int64_t t = T - 1; t >= 0; t--) {
        const REAL *q = p->Qb + t * dk * N, *k = p->Kb + t * dk * N, *r = p->Rb + t * dv * N;
        const REAL *al = p->Ab + t * N, *be = p->Bb + t * N, *dob = DO + t * dv * N;
        const REAL *prev = t ? p->Sh + (t - 1) * SS : (p->S0 ? p->S0b : NULL);
        REAL *dr = DV + t * dv * N;
        for (int64_t c = 0; c < dv; c++) {
            REAL *uc = u + c * N;
            const REAL *rc = r + c * N;
            LANES(n) uc[n] = be[n] * rc[n];
        }
        BLOCKS(nb) {  /* q·k; dS^T k, dS u */
            REAL a[VL];
            VEC(l) a[l] = 0;
            for (int64_t i = 0; i < dk; i++) VEC(l) a[l] += q[i * N + nb + l] * k[i * N + nb + l];
            VEC(l) qk[nb + l] = a[l];
            for (int64_t c = 0; c < dv; c++) {
                REAL e[VL];
                VEC(l) e[l] = 0;
                for (int64_t i = 0; i < dk; i++) {
                    const REAL *dSic = dS + (i * dv + c) * N + nb, *ki = k + i * N + nb;
                    VEC(l) e[l] += ki[l] * dSic[l];
                }
                VEC(l) dSk[c * N + nb + l] = e[l];
            }
            for (int64_t i = 0; i < dk; i++) {
                REAL e[VL];
                VEC(l) e[l] = 0;
                for (int64_t c = 0; c < dv; c++) {
                    const REAL *dSic = dS + (i * dv + c) * N + nb, *uc = u + c * N + nb;
                    VEC(l) e[l] += dSic[l] * uc[l];
                }
                VEC(l) dSu[i * N + nb + l] = e[l];
            }
        }
        LANES(n) { gb[n] = 0; ud[n] = 0; f[n] = 0; }
        for (int64_t c = 0; c < dv; c++) {
            const REAL *dSkc = dSk + c * N, *doc = dob + c * N, *rc = r + c * N, *uc = u + c * N;
            REAL *drc = dr + c * N;
            LANES(n) {
                const REAL du = dSkc[n] + qk[n] * doc[n];
                gb[n] += du * rc[n];
                ud[n] += uc[n] * doc[n];
                drc[n] = be[n] * du;
            }
        }
        BLOCKS(nb) {  /* S_{t-1} do, S_{t-1} dr, <dP, S_{t-1}>; dS_{t-1} */
            REAL ff[VL];
            VEC(l) ff[l] = 0;
            for (int64_t i = 0; i < dk; i++) {
                const REAL *ki = k + i * N + nb, *qi = q + i * N + nb, *a_ = al + nb;
                REAL a[VL], e[VL];
                VEC(l) { a[l] = 0; e[l] = 0; }
                for (int64_t c = 0; c < dv; c++) {
                    REAL *dSic = dS + (i * dv + c) * N + nb;
                    const REAL *doc = dob + c * N + nb, *drc = dr + c * N + nb;
                    if (prev) {
                        const REAL *Sic = prev + (i * dv + c) * N + nb;
                        VEC(l) {
                            const REAL dP = dSic[l] + qi[l] * doc[l] - ki[l] * drc[l];
                            a[l] += Sic[l] * doc[l];
                            e[l] += Sic[l] * drc[l];
                            ff[l] += dP * Sic[l];
                            dSic[l] = a_[l] * dP;
                        }
                    } else {
                        VEC(l) dSic[l] = a_[l] * (dSic[l] + qi[l] * doc[l] - ki[l] * drc[l]);
                    }
                }
                VEC(l) { sdo[i * N + nb + l] = a[l]; sdr[i * N + nb + l] = e[l]; }
            }
            VEC(l) f[nb + l] = ff[l];
        }
        REAL *dqt = DQ + t * dk * N, *dkt = DK + t * dk * N;
        for (int64_t i = 0; i < dk; i++) {
            const REAL *ki = k + i * N, *qi = q + i * N, *sdoi = sdo + i * N, *sdri = sdr + i * N;
            const REAL *dSui = dSu + i * N;
            REAL *dqi = dqt + i * N, *dki = dkt + i * N;
            LANES(n) {
                dqi[n] = al[n] * sdoi[n] + ud[n] * ki[n];
                dki[n] = dSui[n] + ud[n] * qi[n] - al[n] * sdri[n];
            }
        }
        REAL *dbt = DB + t * N, *dat = DA + t * N;
        LANES(n) { dbt[n] = gb[n]; dat[n] = al[n] * f[n]; }
    }
    to_batch_first(M, N, T * dk, DQ, p->dq);
    to_batch_first(M, N, T * dk, DK, p->dk_);
    to_batch_first(M, N, T * dv, DV, p->dv_);
    to_batch_first(M, N, T, DB, p->dbeta);
    if (p->dla) to_batch_first(M, N, T, DA, p->dla);
    if (p->dS0) to_batch_first(M, N, dk * dv, dS, p->dS0);
}
