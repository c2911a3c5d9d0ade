/* Fast-weights RNN (Ba et al. 2016) on the CPU: the whole sequence forward, and its hand-written
 * backward, one call each, one thread. Compiled once per scalar type (-DREAL=float|double) by
 * fastweights_native.py; fastweights_fused.py is the autograd wrapper.
 *
 * Layout: batch LAST. Every per-example vector is stored as [H, B], so each operation runs over
 * the batch in SIMD lanes with no horizontal sums, whatever H is: [T, H, B] sequences,
 * [H, H, B] fast weights. The wrapper transposes at the edges.
 *
 * Time is cut into chunks of L steps. Inside the chunk that starts at step c0, the fast weights
 * before step t are (docs/paper.md §1.1 unrolled, §1.5)
 *     A(t) = lam^(t-c0) A(c0) + eta sum_{c0 <= tau < t} lam^(t-1-tau) k_tau k_tau^T,
 * k_tau = h(tau), so A(t) q is read from A(c0) and the chunk's own states (the memory view)
 * without forming A(t); A is formed only at the ends of all chunks but the last.
 *
 * Level marks (docs/paper.md §3.2, the multi-level model): `prev`, when given, names for each
 * step the state its slow term reads, prev[t] = t - 1 in a plain sequence, another earlier step
 * where a coarse level resumes, -1 for h0 and -2 for a fresh zero state where a finer level
 * starts. The fast weights are never reset: every output enters them, whatever the level.
 */
#include "kernel_common.h"

#define LANES(b) _Pragma("omp simd") for (int64_t b = 0; b < B; b++)

typedef struct {
    int64_t B, T, H, S, L;   /* batch, sequence length, hidden units, inner steps, chunk length */
    int64_t stop_grad;       /* 1: no gradient into the stored states through A */
    int64_t has_G, need_A0;  /* backward: G holds dL/dA(start of last chunk); dL/dA(0) wanted */
    double eta, eps;         /* fast learning rate, layer-norm epsilon */
    const REAL *cx;          /* [B, T, H] C x(t) + b (batch first, as torch gives it) */
    const REAL *h0;          /* [H, B] state before step 0, or NULL when zero */
    const REAL *W;           /* [H, H] slow recurrent weights (torch layout: slow = W h) */
    const REAL *A0;          /* [H, H, B] carried-in fast weights, or NULL when zero */
    const REAL *g, *b;       /* [H] inner layer norm gain and bias, NULL when off */
    const REAL *gp, *bp;     /* [H] layer norm of the preliminary state, NULL when off */
    const REAL *pw;          /* pw[j] = lam^j for j = 0 .. L */
    const int64_t *prev;     /* [T] the step whose output step t reads as h(t-1) (-1: h0, -2:
                              * zero), or NULL for t - 1 throughout (no level marks) */
    REAL *Y;                 /* [T, H, B] outputs h(t): also the stored states */
    REAL *Yb;                /* [B, T, H] the outputs again, batch first, for torch */
    REAL *Q;                 /* [T, S, H, B] inner-loop queries h_s(t), s < S */
    REAL *XH, *RS;           /* [T, S, H, B], [T, S, B]: normalised z and 1/std, inner LN */
    REAL *XP, *RP;           /* [T, H, B], [T, B]: the same for the preliminary LN */
    REAL *AB;                /* [chunks - 1, H, H, B] A at the end of every chunk but the last */
    const REAL *dY;          /* [B, T, H] gradient of the loss w.r.t. the outputs */
    REAL *G;                 /* [H, H, B] in: dL/dA(last chunk start) if has_G; out: dL/dA(0) */
    REAL *DS;                /* [T, H, B] gradient w.r.t. the slow term (= w.r.t. C x + b) */
    REAL *DSb;               /* [B, T, H] the same, batch first, for torch */
    REAL *D;                 /* [T, S, H, B] gradient w.r.t. the pre-LN z of each inner step */
    REAL *dW, *dh0;          /* [H, H], [H, B] (dh0 may be NULL) */
    REAL *dg, *db, *dgp, *dbp; /* [H] layer norm parameter gradients */
    REAL *work;              /* [8 H + 8, B] scratch */
    gemm_t gemm;             /* BLAS gemm, or NULL for the plain loops below */
} fw_args;

typedef struct {             /* one chunk: steps [c0, c1) read A(c0) = A (NULL: zero) */
    const fw_args *a;
    int64_t c0, c1;
    const REAL *A;
} chunk_t;

/* out[H, B] += W x (transpose = 0: the slow term) or W^T x (transpose = 1: its gradient) for
 * x[H, B]; BLAS when given. */
static void times_W(const fw_args *a, const REAL *x, int transpose, REAL *out) {
    int64_t B = a->B, H = a->H;
    if (a->gemm) {
        /* column-major view: out^T[B, H] += x^T op(M) with M = W read column-major = W^T */
        const REAL one = 1;
        const char nt = 'N', tr = 'T';
        a->gemm(&nt, transpose ? &tr : &nt, &B, &H, &H, &one, x, &B, a->W, &H, &one, out, &B);
        return;
    }
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < H; j++) {
            REAL w = transpose ? a->W[j * H + i] : a->W[i * H + j];
            const REAL *xj = x + j * B;
            REAL *oi = out + i * B;
            LANES(b) oi[b] += w * xj[b];
        }
}

/* The state step t's slow term reads: h(prev), h0, or NULL for zero. */
static const REAL *previous(const fw_args *a, int64_t t) {
    int64_t p = a->prev ? a->prev[t] : t - 1;
    return p >= 0 ? a->Y + p * a->H * a->B : (p == -1 ? a->h0 : NULL);
}

/* out[h, b] = x[b * T * H + h]: step t of a batch-first [B, T, H] tensor, batch last. */
static void to_batch_last(const fw_args *a, const REAL *x, REAL *out) {
    int64_t B = a->B, H = a->H, TH = a->T * a->H;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) out[h * B + b] = x[b * TH + h];
}

static void to_batch_first(const fw_args *a, const REAL *x, REAL *out) {
    int64_t B = a->B, H = a->H, TH = a->T * a->H;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) out[b * TH + h] = x[h * B + b];
}

/* s[b] = scale * sum_h x[h, b] y[h, b] */
static void col_dot(int64_t H, int64_t B, REAL scale, const REAL *x, const REAL *y, REAL *s) {
    LANES(b) s[b] = 0;
    for (int64_t h = 0; h < H; h++) {
        const REAL *xh = x + h * B, *yh = y + h * B;
        LANES(b) s[b] += xh[b] * yh[b];
    }
    LANES(b) s[b] *= scale;
}

/* y[h, b] += s[b] x[h, b] */
static void col_axpy(int64_t H, int64_t B, const REAL *s, const REAL *x, REAL *y) {
    for (int64_t h = 0; h < H; h++) {
        const REAL *xh = x + h * B;
        REAL *yh = y + h * B;
        LANES(b) yh[b] += s[b] * xh[b];
    }
}

/* out = relu(g * LN(z) + bias) over h for every b (biased variance, as torch). */
static void ln_forward(int64_t H, int64_t B, const REAL *z, const REAL *g, const REAL *bias,
                       double eps, REAL *xh, REAL *rs, REAL *out, REAL *mean) {
    LANES(b) { mean[b] = 0; rs[b] = 0; }
    for (int64_t h = 0; h < H; h++) LANES(b) mean[b] += z[h * B + b];
    LANES(b) mean[b] /= H;
    for (int64_t h = 0; h < H; h++) LANES(b) {
        REAL d = z[h * B + b] - mean[b];
        rs[b] += d * d;
    }
    LANES(b) rs[b] = (REAL)1 / (REAL)sqrt(rs[b] / H + (REAL)eps);
    for (int64_t h = 0; h < H; h++) LANES(b) {
        REAL x = (z[h * B + b] - mean[b]) * rs[b], u = g[h] * x + bias[h];
        xh[h * B + b] = x;
        out[h * B + b] = u > 0 ? u : 0;
    }
}

/* dz from du = dL/d(g xhat + bias) (relu mask applied); gain and bias gradients into acc. */
static void ln_backward(int64_t H, int64_t B, const REAL *du, const REAL *xh, const REAL *rs,
                        const REAL *g, REAL *dg_acc, REAL *db_acc, REAL *dz, REAL *m1, REAL *m2) {
    LANES(b) { m1[b] = 0; m2[b] = 0; }
    for (int64_t h = 0; h < H; h++) LANES(b) {
        int64_t i = h * B + b;
        REAL gd = g[h] * du[i];
        m1[b] += gd;
        m2[b] += gd * xh[i];
        dg_acc[i] += du[i] * xh[i];
        db_acc[i] += du[i];
    }
    LANES(b) { m1[b] /= H; m2[b] /= H; }
    for (int64_t h = 0; h < H; h++) LANES(b) {
        int64_t i = h * B + b;
        dz[i] = rs[b] * (g[h] * du[i] - m1[b] - xh[i] * m2[b]);
    }
}

static void relu_mask(int64_t n, const REAL *out, REAL *grad) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) grad[i] = out[i] > 0 ? grad[i] : 0;
}

/* acc += A(t) q (trans: A(t)^T q) from A(c0) and the chunk's states; sc is [B] scratch. */
static void read_memory(const chunk_t *c, int64_t t, const REAL *q, int trans, REAL *acc,
                        REAL *sc) {
    const fw_args *a = c->a;
    int64_t B = a->B, H = a->H, n = t - c->c0;
    if (c->A) {
        REAL alpha = a->pw[n];
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < H; j++) {
                const REAL *Aij = c->A + (i * H + j) * B;
                if (trans) {
                    const REAL *qi = q + i * B;
                    REAL *oj = acc + j * B;
                    LANES(b) oj[b] += alpha * Aij[b] * qi[b];
                } else {
                    const REAL *qj = q + j * B;
                    REAL *oi = acc + i * B;
                    LANES(b) oi[b] += alpha * Aij[b] * qj[b];
                }
            }
    }
    for (int64_t tau = c->c0; tau < t; tau++) {
        const REAL *k = a->Y + tau * H * B;
        col_dot(H, B, (REAL)a->eta * a->pw[t - 1 - tau], k, q, sc);
        col_axpy(H, B, sc, k, acc);
    }
}

/* The inner loop of step t, given the slow term (docs/paper.md §1.2-§1.3). */
static void step_forward(const chunk_t *c, int64_t t, const REAL *slow, REAL *z, REAL *v) {
    const fw_args *a = c->a;
    int64_t B = a->B, H = a->H, S = a->S, HB = H * B;
    REAL *q = a->Q + t * S * HB;
    if (a->gp) ln_forward(H, B, slow, a->gp, a->bp, a->eps, a->XP + t * HB, a->RP + t * B, q, v);
    else for (int64_t i = 0; i < HB; i++) q[i] = slow[i] > 0 ? slow[i] : 0;
    for (int64_t s = 0; s < S; s++) {
        memcpy(z, slow, HB * sizeof(REAL));
        read_memory(c, t, q + s * HB, 0, z, v);
        REAL *out = s + 1 < S ? q + (s + 1) * HB : a->Y + t * HB;
        if (a->g)
            ln_forward(H, B, z, a->g, a->b, a->eps, a->XH + (t * S + s) * HB, a->RS + (t * S + s) * B,
                       out, v);
        else
            for (int64_t i = 0; i < HB; i++) out[i] = z[i] > 0 ? z[i] : 0;
    }
}

/* out = lam^n A(c0) + eta sum_{tau in chunk} lam^(c1-1-tau) k_tau k_tau^T = A(c1). */
static void chunk_end(const chunk_t *c, REAL *out) {
    const fw_args *a = c->a;
    int64_t B = a->B, H = a->H, n = c->c1 - c->c0;
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < H; j++) {
            REAL *o = out + (i * H + j) * B;
            if (c->A) {
                const REAL *src = c->A + (i * H + j) * B;
                LANES(b) o[b] = a->pw[n] * src[b];
            } else {
                LANES(b) o[b] = 0;
            }
            for (int64_t tau = c->c0; tau < c->c1; tau++) {
                const REAL *ki = a->Y + (tau * H + i) * B, *kj = a->Y + (tau * H + j) * B;
                REAL w = (REAL)a->eta * a->pw[c->c1 - 1 - tau];
                LANES(b) o[b] += w * ki[b] * kj[b];
            }
        }
}

void fw_forward(const fw_args *a) {
    int64_t B = a->B, T = a->T, H = a->H, HB = H * B;
    REAL *slow = a->work, *z = slow + HB, *v = z + HB;
    for (int64_t ci = 0, c0 = 0; c0 < T; ci++, c0 += a->L) {
        chunk_t c = {a, c0, c0 + a->L < T ? c0 + a->L : T, ci ? a->AB + (ci - 1) * H * HB : a->A0};
        for (int64_t t = c.c0; t < c.c1; t++) {
            to_batch_last(a, a->cx + t * H, slow); /* slow = C x(t) + b + W h(t-1) */
            const REAL *hp = previous(a, t);
            if (hp) times_W(a, hp, 0, slow);
            step_forward(&c, t, slow, z, v);
            to_batch_first(a, a->Y + t * HB, a->Yb + t * H);
        }
        if (c.c1 < T) chunk_end(&c, a->AB + ci * H * HB);
    }
}

/* gh += dL/dk_t through the reads of later steps of the chunk,
 *   sum_{t' > t, s} eta lam^(t'-1-t) [(k_t . q) delta + (k_t . delta) q], q = h_s(t'), delta = dz,
 * and, when use_G, through A(c1): eta lam^(c1-1-t) (G + G^T) k_t. */
static void key_grad(const chunk_t *c, int64_t t, int use_G, REAL *gh, REAL *kq, REAL *kd) {
    const fw_args *a = c->a;
    int64_t B = a->B, H = a->H, S = a->S, HB = H * B;
    const REAL *k = a->Y + t * HB;
    for (int64_t u = t + 1; u < c->c1; u++)
        for (int64_t s = 0; s < S; s++) {
            const REAL *q = a->Q + (u * S + s) * HB, *d = a->D + (u * S + s) * HB;
            REAL w = (REAL)a->eta * a->pw[u - 1 - t];
            col_dot(H, B, w, k, q, kq);
            col_dot(H, B, w, k, d, kd);
            col_axpy(H, B, kq, d, gh);
            col_axpy(H, B, kd, q, gh);
        }
    if (!use_G) return;
    REAL w = (REAL)a->eta * a->pw[c->c1 - 1 - t];
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < H; j++) {
            const REAL *Gij = a->G + (i * H + j) * B, *Gji = a->G + (j * H + i) * B;
            const REAL *kj = k + j * B;
            REAL *gi = gh + i * B;
            LANES(b) gi[b] += w * (Gij[b] + Gji[b]) * kj[b];
        }
}

/* Backward of step t: gh = dL/dh(t) in full; writes D and DS for this step. */
static void step_backward(const chunk_t *c, int64_t t, REAL *gh, REAL *w) {
    const fw_args *a = c->a;
    int64_t B = a->B, H = a->H, S = a->S, HB = H * B;
    REAL *ds = a->DS + t * HB, *dq = gh, *dz = w, *acc = w + HB, *v = w + 5 * HB;
    const REAL *q = a->Q + t * S * HB;
    memset(ds, 0, HB * sizeof(REAL));
    for (int64_t s = S - 1; s >= 0; s--) {
        relu_mask(HB, s + 1 < S ? q + (s + 1) * HB : a->Y + t * HB, dq);
        REAL *d = a->D + (t * S + s) * HB;
        if (a->g)
            ln_backward(H, B, dq, a->XH + (t * S + s) * HB, a->RS + (t * S + s) * B, a->g, acc,
                        acc + HB, d, v, v + B);
        else memcpy(d, dq, HB * sizeof(REAL));
        for (int64_t i = 0; i < HB; i++) ds[i] += d[i];
        memset(dq, 0, HB * sizeof(REAL));
        read_memory(c, t, d, 1, dq, v); /* dL/dh_s(t) through A(t) h_s(t) */
    }
    relu_mask(HB, q, dq);
    if (a->gp) {
        ln_backward(H, B, dq, a->XP + t * HB, a->RP + t * B, a->gp, acc + 2 * HB, acc + 3 * HB,
                    dz, v, v + B);
        for (int64_t i = 0; i < HB; i++) ds[i] += dz[i];
    } else {
        for (int64_t i = 0; i < HB; i++) ds[i] += dq[i];
    }
}

/* G <- dL/dA(c0) = scale G + sum_{t, s} lam^(t-c0) dz(t, s) h_s(t)^T (G ignored if !has). */
static void chunk_start_grad(const chunk_t *c, REAL scale, int has) {
    const fw_args *a = c->a;
    int64_t B = a->B, H = a->H, S = a->S;
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < H; j++) {
            REAL *G = a->G + (i * H + j) * B;
            if (has) LANES(b) G[b] *= scale;
            else LANES(b) G[b] = 0;
            for (int64_t t = c->c0; t < c->c1; t++)
                for (int64_t s = 0; s < S; s++) {
                    const REAL *d = a->D + ((t * S + s) * H + i) * B, *q = a->Q + ((t * S + s) * H + j) * B;
                    REAL alpha = a->pw[t - c->c0];
                    LANES(b) G[b] += alpha * d[b] * q[b];
                }
        }
}

/* dW = sum_t dslow(t) h(prev(t))^T, dh0 = W^T sum_{t: prev(t) = -1} dslow(t), layer-norm
 * gradients summed over b. */
static void finish_backward(const fw_args *a, const REAL *acc) {
    int64_t B = a->B, T = a->T, H = a->H, HB = H * B;
    const REAL one = 1;
    for (int64_t t = 0; t < T; t++) {
        const REAL *hp = previous(a, t), *ds = a->DS + t * HB;
        if (!hp) continue; /* a zero state */
        if (a->gemm) { /* column-major dW^T[H, H] += hp ds^T */
            const char tr = 'T', nt = 'N';
            a->gemm(&tr, &nt, &H, &H, &B, &one, hp, &B, ds, &B, &one, a->dW, &H);
            continue;
        }
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < H; j++) {
                REAL s = 0;
#pragma omp simd reduction(+ : s)
                for (int64_t b = 0; b < B; b++) s += ds[i * B + b] * hp[j * B + b];
                a->dW[i * H + j] += s;
            }
    }
    if (a->dh0)
        for (int64_t t = 0; t < (a->prev ? T : 1); t++)
            if (!a->prev || a->prev[t] == -1) times_W(a, a->DS + t * HB, 1, a->dh0);
    REAL *outs[4] = {a->dg, a->db, a->dgp, a->dbp};
    for (int k = 0; k < 4; k++)
        if (outs[k])
            for (int64_t h = 0; h < H; h++) {
                REAL s = 0;
                for (int64_t b = 0; b < B; b++) s += acc[k * HB + h * B + b];
                outs[k][h] = s;
            }
}

void fw_backward(const fw_args *a) {
    int64_t B = a->B, T = a->T, H = a->H, HB = H * B;
    REAL *gh = a->work, *w = gh + HB, *acc = w + HB, *kq = w + 5 * HB, *kd = kq + 2 * B;
    int64_t last = (T - 1) / a->L;
    int has_G = a->has_G && (!a->stop_grad || a->need_A0);
    memset(acc, 0, 4 * HB * sizeof(REAL));
    for (int64_t ci = last; ci >= 0; ci--) {
        int64_t c0 = ci * a->L;
        chunk_t c = {a, c0, c0 + a->L < T ? c0 + a->L : T, ci ? a->AB + (ci - 1) * H * HB : a->A0};
        for (int64_t t = c.c1 - 1; t >= c.c0; t--) {
            /* dL/dh(t) = dY(t) + W^T dslow(u) for the steps u that read h(t) (u = t + 1 without
             * level marks) + (through A) key_grad */
            to_batch_last(a, a->dY + t * H, gh);
            if (!a->prev) {
                if (t + 1 < T) times_W(a, a->DS + (t + 1) * HB, 1, gh);
            } else {
                for (int64_t u = t + 1; u < T; u++)
                    if (a->prev[u] == t) times_W(a, a->DS + u * HB, 1, gh);
            }
            if (!a->stop_grad) key_grad(&c, t, ci < last && has_G, gh, kq, kd);
            step_backward(&c, t, gh, w);
            to_batch_first(a, a->DS + t * HB, a->DSb + t * H);
        }
        int wanted = ci > 0 ? (!a->stop_grad || a->need_A0) : a->need_A0;
        if (wanted && c.A) {
            chunk_start_grad(&c, ci == last ? 1 : a->pw[c.c1 - c.c0], has_G);
            has_G = 1;
        }
    }
    finish_backward(a, acc);
}
