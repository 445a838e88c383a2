/* blocks_cuda.cu - see blocks_cuda.h. One thread per value; layouts are
 * llama.cpp's ggml-common.h, arithmetic gguf_quants.c's in the same order
 * with __fmul_rn / __fadd_rn / __fsub_rn, so that nvcc fuses nothing. */
#include <cuda_fp16.h>

#include "blocks_cuda.h"
extern "C" {
#include "gguf_quants.h"
#include "model.h"
}

__device__ static float f16_at(const uint8_t *p) {
  return __half2float(__ushort_as_half((unsigned short)(p[0] | p[1] << 8)));
}

__device__ static int int8_at(const uint8_t *p) {
  return (int)(signed char)p[0];
}

/* value e (< 32) of a 32-value block */
__device__ static float q4_0(const uint8_t *b, int e) {
  const int q = e < 16 ? b[2 + e] & 0x0f : b[2 + e - 16] >> 4;
  return __fmul_rn(f16_at(b), (float)(q - 8));
}

__device__ static float q4_1(const uint8_t *b, int e) {
  const int q = e < 16 ? b[4 + e] & 0x0f : b[4 + e - 16] >> 4;
  return __fadd_rn(__fmul_rn(f16_at(b), (float)q), f16_at(b + 2));
}

__device__ static int q5_value(const uint8_t *qh, const uint8_t *qs, int e) {
  const uint32_t h = qh[0] | qh[1] << 8 | qh[2] << 16 | (uint32_t)qh[3] << 24;
  const int nibble = e < 16 ? qs[e] & 0x0f : qs[e - 16] >> 4;
  return nibble | (int)(h >> e & 1) << 4;
}

__device__ static float q5_0(const uint8_t *b, int e) {
  return __fmul_rn(f16_at(b), (float)(q5_value(b + 2, b + 6, e) - 16));
}

__device__ static float q5_1(const uint8_t *b, int e) {
  return __fadd_rn(__fmul_rn(f16_at(b), (float)q5_value(b + 4, b + 8, e)), f16_at(b + 2));
}

__device__ static float q8_0(const uint8_t *b, int e) {
  return __fmul_rn((float)int8_at(b + 2 + e), f16_at(b));
}

/* the 6-bit scale and min of sub-block j (Q4_K, Q5_K) */
__device__ static void k_scale_min(const uint8_t *s, int j, int *scale, int *min) {
  if (j < 4) {
    *scale = s[j] & 0x3f;
    *min = s[j + 4] & 0x3f;
  } else {
    *scale = (s[j + 4] & 0x0f) | (s[j - 4] >> 2 & 0x30);
    *min = (s[j + 4] >> 4) | (s[j] >> 2 & 0x30);
  }
}

/* value e (< 256) of a super-block */
__device__ static float q45_k(const uint8_t *b, int e, int five) {
  const int j = e / 32, l = e % 32;
  int scale, min;
  k_scale_min(b + 4, j, &scale, &min);
  const float dl = __fmul_rn(f16_at(b), (float)scale), ml = __fmul_rn(f16_at(b + 2), (float)min);
  const uint8_t *qs = b + (five ? 48 : 16);
  int q = qs[j / 2 * 32 + l] >> (4 * (j % 2)) & 0x0f;
  if (five)
    q |= (b[16 + l] >> j & 1) << 4;
  return __fsub_rn(__fmul_rn(dl, (float)q), ml);
}

__device__ static float q6_k(const uint8_t *b, int e) {
  const int half = e / 128, r = e % 128;
  const int lo = b[half * 64 + r % 64] >> (4 * (r / 64)) & 0x0f;
  const int hi = b[128 + half * 32 + r % 32] >> (2 * (r / 32)) & 3;
  const float dl = __fmul_rn(f16_at(b + 208), (float)int8_at(b + 192 + e / 16));
  return __fmul_rn(dl, (float)((lo | hi << 4) - 32));
}

/* value e of the block at b, of any of model_native_type's types */
__device__ static float decode_value(const uint8_t *b, uint32_t type, int e) {
  switch (type) {
  case GGUF_TENSOR_F32:
    return __uint_as_float((unsigned)(b[0] | b[1] << 8 | b[2] << 16 | (unsigned)b[3] << 24));
  case GGUF_TENSOR_F16:
    return f16_at(b);
  case GGUF_TENSOR_BF16:
    return __uint_as_float((unsigned)(b[0] | b[1] << 8) << 16);
  case GGUF_TENSOR_Q4_0:
    return q4_0(b, e);
  case GGUF_TENSOR_Q4_1:
    return q4_1(b, e);
  case GGUF_TENSOR_Q5_0:
    return q5_0(b, e);
  case GGUF_TENSOR_Q5_1:
    return q5_1(b, e);
  case GGUF_TENSOR_Q8_0:
    return q8_0(b, e);
  case GGUF_TENSOR_Q4_K:
    return q45_k(b, e, 0);
  case GGUF_TENSOR_Q5_K:
    return q45_k(b, e, 1);
  default: /* GGUF_TENSOR_Q6_K: model_native_type passes no other */
    return q6_k(b, e);
  }
}

__global__ void k_decode_blocks(const uint8_t *w, uint32_t type, float *dst, size_t n,
                                unsigned block_size, unsigned type_size) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    dst[i] = decode_value(w + i / block_size * type_size, type, (int)(i % block_size));
}

/* x[r, i] = value i of row ids[r] (+ pos_embed[position[r], i]) */
__global__ void k_embed_blocks(float *x, const uint8_t *w, uint32_t type, size_t row_bytes,
                               unsigned block_size, unsigned type_size, const int *ids,
                               const float *pos_embed, const int *position, int rows, int d) {
  const size_t n = (size_t)rows * d;
  for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < n;
       t += (size_t)gridDim.x * blockDim.x) {
    const size_t r = t / d, i = t % d;
    const uint8_t *row = w + (size_t)ids[r] * row_bytes;
    float v = decode_value(row + i / block_size * type_size, type, (int)(i % block_size));
    if (pos_embed)
      v = __fadd_rn(v, pos_embed[(size_t)position[r] * d + i]);
    x[t] = v;
  }
}

cudaError_t blocks_embed(cudaStream_t stream, const void *w, uint32_t type, size_t row_bytes,
                         const int *ids, const float *pos_embed, const int *position, int rows,
                         int d, float *x) {
  const gguf_quant_type_t *tt = gguf_quant_type(type);
  if (!model_native_type(type) || d % (int)tt->block_size ||
      row_bytes != (size_t)(d / (int)tt->block_size) * tt->type_size)
    return cudaErrorInvalidValue;
  const size_t n = (size_t)rows * d;
  size_t grid = (n + 255) / 256;
  if (grid > 65536u * 8)
    grid = 65536u * 8;
  if (n)
    k_embed_blocks<<<(unsigned)grid, 256, 0, stream>>>(x, (const uint8_t *)w, type, row_bytes,
                                                       tt->block_size, tt->type_size, ids,
                                                       pos_embed, position, rows, d);
  return cudaGetLastError();
}

cudaError_t blocks_decode(cudaStream_t stream, const void *w, uint32_t type, float *dst,
                          size_t n_values) {
  if (!model_native_type(type) || type == GGUF_TENSOR_F32) /* F32 rows are used in place */
    return cudaErrorInvalidValue;
  const gguf_quant_type_t *tt = gguf_quant_type(type);
  size_t grid = (n_values + 255) / 256;
  if (grid > 65536u * 8)
    grid = 65536u * 8;
  if (n_values)
    k_decode_blocks<<<(unsigned)grid, 256, 0, stream>>>((const uint8_t *)w, type, dst, n_values,
                                                        tt->block_size, tt->type_size);
  return cudaGetLastError();
}

/* One block per row (the first of its spans; the others return), a warp
 * per output o: lanes over a span's columns, a fixed shuffle tree for the
 * span's sum, the spans' sums added in table order by lane 0. */
__global__ void k_column_products(float *y, const float *x, const uint8_t *w, uint32_t type,
                                  size_t row_bytes, unsigned block_size, unsigned type_size,
                                  const column_span_t *spans, int n, int out, int in) {
  const int i = blockIdx.x;
  if (i > 0 && spans[i - 1].row == spans[i].row)
    return;
  int end = i + 1;
  while (end < n && spans[end].row == spans[i].row)
    end++;
  const float *xr = x + (size_t)spans[i].row * in;
  float *yr = y + (size_t)spans[i].row * out;
  const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int o = blockIdx.y * warps + threadIdx.x / 32; o < out; o += gridDim.y * warps) {
    const uint8_t *wr = w + (size_t)o * row_bytes;
    float acc = 0.0f;
    for (int s = i; s < end; s++) {
      float part = 0.0f;
      for (int c = spans[s].col0 + lane; c < spans[s].col1; c += 32)
        part += xr[c] * decode_value(wr + c / block_size * type_size, type, (int)(c % block_size));
      for (int k = 16; k > 0; k /= 2)
        part += __shfl_xor_sync(0xffffffffu, part, k);
      acc += part;
    }
    if (lane == 0)
      yr[o] += acc;
  }
}

cudaError_t blocks_column_products(cudaStream_t stream, float *y, const float *x, const void *w,
                                   uint32_t type, const column_span_t *spans, int n, int out,
                                   int in) {
  const gguf_quant_type_t *tt = gguf_quant_type(type);
  if (!model_native_type(type) || in % (int)tt->block_size)
    return cudaErrorInvalidValue;
  if (n == 0 || out == 0)
    return cudaSuccess;
  const size_t row_bytes = (size_t)(in / (int)tt->block_size) * tt->type_size;
  const unsigned warps = 8, y_blocks = (unsigned)((out + warps * 8 - 1) / (warps * 8));
  k_column_products<<<dim3((unsigned)n, y_blocks), warps * 32, 0, stream>>>(
      y, x, (const uint8_t *)w, type, row_bytes, tt->block_size, tt->type_size, spans, n, out, in);
  return cudaGetLastError();
}
