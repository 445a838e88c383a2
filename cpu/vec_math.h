/* vec_math.h - the CPU backend's elementwise functions on float arrays: on an
 * x86-64 CPU with AVX2 and FMA, 8-wide kernels with their own exp, expm1 and
 * tanh (silu and swiglu 16-wide where it has AVX-512, the same operations:
 * the same floats; HYDRA_NO_AVX512 set to anything but "0" keeps them 8-wide)
 * (range reduction and a polynomial, a few ulp: tests/unit/cpu
 * test_vec_math measures them against double on a dense sweep); elsewhere
 * libm loops. The path is chosen at run time, so the project builds for
 * baseline x86-64 (and other CPUs) and runs the wide kernels where it can
 * (built with VEC_MATH_PLAIN: the libm loops only, as tests do).
 * Every element goes through the same kernel whatever n and its position
 * (the last n % 8 through a padded copy), so a result never depends on how
 * an array was split into calls. NaN in gives NaN out. No function
 * allocates; all are thread-safe on disjoint arrays. */
#ifndef HYDRA_VEC_MATH_H
#define HYDRA_VEC_MATH_H

#include <stddef.h>

/* Whether the AVX2+FMA kernels run on this CPU. */
int vec_math_wide(void);

/* y[i] = exp(x[i] - shift) (y may be x); returns the sum of the y[i] in
 * double. exp overflows to +inf above ~88.72 and underflows through the
 * subnormals to 0 below ~-103.97. */
double vec_exp_shift_sum(float *y, const float *x, size_t n, float shift);

/* y[i] = tanh(x[i]) (y may be x): odd, saturating at +-1. */
void vec_tanh(float *y, const float *x, size_t n);

/* x[i] = cap * tanh(x[i] / cap), cap > 0 */
void vec_softcap(float *x, size_t n, float cap);

/* x[i] = silu(x[i]) = x / (1 + exp(-x)) */
void vec_silu(float *x, size_t n);

/* gate[i] = silu(gate[i]) * up[i] */
void vec_swiglu(float *gate, const float *up, size_t n);

/* vec_swiglu on each of rows rows of n values, ld floats apart (a tile of a
 * product), in one call: the same floats. */
void vec_swiglu_rows(float *gate, const float *up, size_t ld, size_t rows, size_t n);

/* x[i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), computed as
 * x / (1 + exp(-2 u)) (the same function, free of the cancellation in
 * 1 + tanh for negative x). */
void vec_gelu_tanh(float *x, size_t n);

/* Row kernels (one source compiled for both paths, except the two double
 * sums' AVX2 path, four running sums of four doubles; every order depends on
 * n only): */

/* sum of x[i]^2, in double */
double vec_sum_squares(const float *x, size_t n);

/* sum of x[i] y[i], in double */
double vec_dot_double(const float *x, const float *y, size_t n);

/* sum of x[i] y[i], in float */
float vec_dot(const float *x, const float *y, size_t n);

/* y[i] += a x[i] */
void vec_axpy(float *y, float a, const float *x, size_t n);

/* y[i] += x[i] */
void vec_add(float *y, const float *x, size_t n);

#endif
