/* blocks_cuda.h - GGUF weight blocks decoded to fp32 on the GPU, for the
 * CUDA backend's matmul_blocks. */
#ifndef HYDRA_BLOCKS_CUDA_H
#define HYDRA_BLOCKS_CUDA_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

/* Queues on `stream` the decoding of n_values values (whole blocks) of
 * `type` at w (device memory) into dst[n_values]: every value the float
 * gguf_quants.c decodes on the host, bit for bit (the same fp32 operations,
 * never fused). Types: F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K,
 * Q6_K; any other returns cudaErrorInvalidValue and queues nothing. */
#ifdef __cplusplus
extern "C" {
#endif
#include "backend.h"
cudaError_t blocks_decode(cudaStream_t stream, const void *w, uint32_t type, float *dst,
                          size_t n_values);
/* Queues the embedding lookup of backend.h's embed_blocks: x[r, :] = row
 * ids[r] of the table at w (rows of row_bytes bytes of `type`, device
 * memory) decoded as blocks_decode decodes (F32 rows too), plus
 * pos_embed[position[r], :] when pos_embed is non-NULL. A type above or
 * rows of another size return cudaErrorInvalidValue and queue nothing. */
cudaError_t blocks_embed(cudaStream_t stream, const void *w, uint32_t type, size_t row_bytes,
                         const int *ids, const float *pos_embed, const int *position, int rows,
                         int d, float *x);
/* Queues backend.h's column_products: y[s.row, :] += the sum over each
 * span s of spans[n] (device memory) of x[s.row, c] times column c of w
 * (out rows of in values of `type`, device memory, decoded as blocks_decode
 * decodes them, F32 rows too), a row's spans and columns in a fixed order.
 * A type above, or in not whole blocks, returns cudaErrorInvalidValue and
 * queues nothing. */
cudaError_t blocks_column_products(cudaStream_t stream, float *y, const float *x, const void *w,
                                   uint32_t type, const column_span_t *spans, int n, int out,
                                   int in);
#ifdef __cplusplus
}
#endif

#endif
