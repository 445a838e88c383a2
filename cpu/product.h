/* product.h - the CPU backend's matrix product, summed in one fixed order per
 * element, whatever the batch. */
#ifndef HYDRA_CPU_PRODUCT_H
#define HYDRA_CPU_PRODUCT_H

/* y[r][j] (rows of ldy floats) = sum over k of x[r][k] * w[j][k], for r <
 * rows, j < n, k < in (x: rows of in floats, w: n rows of in floats), added
 * onto y[r][j] when accumulate. Every element is one chain of fused
 * multiply-adds in increasing k, starting from 0 (or from y[r][j] when
 * accumulate), whichever rows and columns share the call: a row's result does
 * not depend on the batch it sits in, its place in it, how w is cut into
 * tiles or the thread count (BLAS sgemm picks kernels and blockings by the
 * product's shape, so its rows round differently with the row count).
 * parallel: the columns are shared out over OpenMP's threads; 0: all on the
 * calling thread (inside a team). Never fails. */
void product_rows(float *y, int ldy, const float *x, const float *w, int rows, int n, int in,
                  int accumulate, int parallel);

/* finish(ctx, gate, up, ld, rows, n): turns a tile of a gated MLP's gate
 * products (rows of n values, ld floats apart) into its hidden units, given
 * the up products at the same places (act(gate) * up, in place on gate). */
typedef void (*product_finish_fn)(void *ctx, float *gate, const float *up, int ld, int rows, int n);

/* A gated MLP's two products of one x as one pass (rows of x: in floats; of
 * gate and up: n floats): gate[r][j] = sum over k of x[r][k] * wg[j][k] and
 * up[r][j] = sum over k of x[r][k] * wu[j][k], each one chain as in
 * product_rows (gate's from 0; up's from up[r][j] when up_from_y, where a
 * bias was filled in, else from 0), so both hold product_rows's bits. As
 * soon as a tile's sums are complete, finish (NULL: none) is called on it
 * (at most 12 rows of 16 values, in cache; with in 0, rows of all n), so
 * the hidden units never take a separate pass over memory; up is left
 * holding its products. The columns are shared out over OpenMP's threads
 * (parallel) as in product_rows. */
void product_pair_rows(float *gate, float *up, const float *x, const float *wg, const float *wu,
                       int rows, int n, int in, int up_from_y, product_finish_fn finish, void *ctx,
                       int parallel);

/* The kernel product_rows runs, picked at the first call: 2 AVX-512 (the
 * CPU has AVX512F), 1 AVX2+FMA, 0 plain C; the environment variable
 * HYDRA_NO_SIMD (set to anything but "0") takes plain C, HYDRA_NO_AVX512 at
 * most AVX2. All give the same bits. */
int product_simd(void);

#endif
