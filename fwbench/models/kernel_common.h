/* What the compiled kernels share (native.py hashes this file with every source that includes
 * it): the scalar type, exp and sqrt in it, and the BLAS gemm's signature. */
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
