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

/* 1 when product_rows runs its AVX2+FMA kernel (picked at the first call:
 * the CPU has AVX2 and FMA and the environment variable HYDRA_NO_SIMD is not
 * set to anything but "0"), 0 when it runs plain C. Both give the same bits. */
int product_simd(void);

#endif
