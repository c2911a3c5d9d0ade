/* What the compiled kernels share (native.py hashes this file with every source that includes
 * it): the scalar type, exp and sqrt in it, the BLAS gemm's signature, and for the batch-last
 * layout tiled transposes and the products with a weight matrix. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifndef REAL
#define REAL float
#endif

/* glibc's vector exp (libmvec, reached through libm), declared here for GCC so that loops over
 * the batch that take exp vectorise; math.h declares it only under -ffast-math, which a shared
 * library must not use (GCC then sets the whole process to flush subnormals to zero). Elsewhere
 * (other compilers or C libraries) the scalar exp. */
#if defined __GNUC__ && !defined __clang__ && defined __GLIBC__ && defined __x86_64__
#pragma omp declare simd notinbranch
extern float expf(float);
#pragma omp declare simd notinbranch
extern double exp(double);
#endif

/* exp and sqrt in the scalar type itself (exp of a float would otherwise run in double) */
#define EXP(x) _Generic((x), float: expf, default: exp)(x)
#define SQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)

/* Fortran BLAS gemm; integers are passed as 64-bit values, which an LP64 BLAS reads correctly on
 * a little-endian machine (the low half) and an ILP64 BLAS reads whole. */
typedef void (*gemm_t)(const char *, const char *, const int64_t *, const int64_t *,
                       const int64_t *, const REAL *, const REAL *, const int64_t *, const REAL *,
                       const int64_t *, const REAL *, REAL *, const int64_t *);

/* ---- batch-last layout: every per-example vector stored as [rows, B], the batch in SIMD lanes
 * (names start with kc_, apart from the kernels' own helpers) */

/* Transposes in tiles of TILE x TILE, so that reads and writes both stay within a few cache
 * lines (element by element, one of the two strides a whole row of the batch per value). */
#define TILE 16

/* to_last: dst[k, b] = src[b * stride + k] for k < K (K values of every example, batch last);
 * else the inverse, dst[b * stride + k] = src[k, b]. */
static inline void kc_transpose(int64_t B, int64_t K, int64_t stride, const REAL *src,
                                   REAL *dst, int to_last) {
    for (int64_t b0 = 0; b0 < B; b0 += TILE)
        for (int64_t k0 = 0; k0 < K; k0 += TILE) {
            int64_t b1 = b0 + TILE < B ? b0 + TILE : B, k1 = k0 + TILE < K ? k0 + TILE : K;
            for (int64_t b = b0; b < b1; b++)
                for (int64_t k = k0; k < k1; k++) {
                    if (to_last) dst[k * B + b] = src[b * stride + k];
                    else dst[b * stride + k] = src[k * B + b];
                }
        }
}
#define kc_to_batch_last(B, K, stride, src, dst) kc_transpose(B, K, stride, src, dst, 1)
#define kc_to_batch_first(B, K, stride, src, dst) kc_transpose(B, K, stride, src, dst, 0)

/* With W[K, H] (torch's layout, z = W h): back = 0, out[K, B] += W in[H, B]; back = 1,
 * out[H, B] += W^T in[K, B]. Through the BLAS gemm when given, else plain loops. */
static inline void kc_times_W(gemm_t gemm, int64_t B, int64_t K, int64_t H, const REAL *W,
                           const REAL *in, REAL *out, int back) {
    if (gemm) { /* column-major, the batch as rows: out^T += in^T (W read column-major = W^T) */
        const REAL one = 1;
        const char nt = 'N', tr = 'T';
        if (back)
            gemm(&nt, &tr, &B, &H, &K, &one, in, &B, W, &H, &one, out, &B);
        else
            gemm(&nt, &nt, &B, &K, &H, &one, in, &B, W, &H, &one, out, &B);
        return;
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < H; i++) {
            REAL w = W[k * H + i];
            const REAL *src = in + (back ? k : i) * B;
            REAL *dst = out + (back ? i : k) * B;
            _Pragma("omp simd") for (int64_t b = 0; b < B; b++) dst[b] += w * src[b];
        }
}

/* dW[K, H] += dz[K, B] h[H, B]^T, summed over the batch: the gradient of a W of kc_times_W. */
static inline void kc_add_outer(gemm_t gemm, int64_t B, int64_t K, int64_t H, const REAL *dz,
                             const REAL *h, REAL *dW) {
    if (gemm) { /* column-major: dW^T[H, K] += h[H, B] dz^T[B, K] */
        const REAL one = 1;
        const char nt = 'N', tr = 'T';
        gemm(&tr, &nt, &H, &K, &B, &one, h, &B, dz, &B, &one, dW, &H);
        return;
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < H; i++) {
            REAL s = 0;
            const REAL *dk = dz + k * B, *hi = h + i * B;
            _Pragma("omp simd reduction(+ : s)") for (int64_t b = 0; b < B; b++)
                s += dk[b] * hi[b];
            dW[k * H + i] += s;
        }
}
