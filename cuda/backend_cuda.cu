/* backend_cuda.cu - the CUDA backend: matrix products through cuBLAS (fp32,
 * TF32 off), every other op a kernel. Buffers are device memory; ops are
 * queued on one stream per backend. Every CUDA and cuBLAS call goes through
 * CUDA_TRY / CUBLAS_TRY, which record file, line and call in b->err and make
 * the op return -1: an error fails the job, never the process. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend.h"
#include "clock.h"
}
#include "blocks_cuda.h"

/* HYDRA_CUDA_PROFILE=1: every op is bracketed by a pair of events on the
 * stream; at each synchronisation (and at exit) their times are summed per
 * kind of op and, when the backend is destroyed, printed to stderr with the
 * wall time since it was created: the difference is time the GPU sat idle
 * waiting for the host. Off by default (events cost a few microseconds). */
enum {
  P_UPLOAD,
  P_DOWNLOAD,
  P_COPY,
  P_MATMUL,
  P_NORM,
  P_ROPE,
  P_ATTENTION,
  P_INTERVENE,
  P_ROW_DOTS,
  P_LOGIT_STATS,
  P_LOGIT_METRICS,
  P_ELEMENTWISE,
  P_ROWS,
  P_N
};
static const char *const prof_names[P_N] = {
    "upload",        "download",    "copy/memset",         "matmul",   "norm",
    "rope",          "attention",   "intervene",           "row_dots", "logit_stats",
    "logit_metrics", "elementwise", "gather/scatter/embed"};

typedef struct {
  int on, n, cap;
  cudaEvent_t *ev; /* 2 per op */
  int *op;
  double ms[P_N], wall0;
  long calls[P_N];
} prof_t;

/* Pinned staging for host<->device copies: PIN_SEGS segments of PIN_SEG
 * bytes used in turn. An upload copies into the current segment and queues
 * an asynchronous DMA from it, so the host runs on while the GPU works (a copy
 * from pageable memory would wait); a segment is reused only after the event
 * recorded behind its last copy has passed. Larger copies go directly. */
#define PIN_SEGS 4
#define PIN_SEG (16u << 20)

typedef struct {
  int device;
  cudaStream_t stream;
  cublasHandle_t blas;
  int tf32;
  char *pin;                    /* PIN_SEGS * PIN_SEG pinned bytes, or NULL */
  size_t pin_used;              /* bytes used in the current segment */
  int pin_seg;                  /* the current segment */
  cudaEvent_t pin_ev[PIN_SEGS]; /* behind each segment's last copy */
  prof_t prof;
} cuda_impl_t;

#define CUDA_TRY(b, call)                                                                          \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    if (e_ != cudaSuccess) {                                                                       \
      err_set((b)->err, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_));       \
      return -1;                                                                                   \
    }                                                                                              \
  } while (0)

#define CUBLAS_TRY(b, call)                                                                        \
  do {                                                                                             \
    cublasStatus_t s_ = (call);                                                                    \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                             \
      err_set((b)->err, "%s:%d: %s: cuBLAS status %d", __FILE__, __LINE__, #call, (int)s_);        \
      return -1;                                                                                   \
    }                                                                                              \
  } while (0)

/* A launch is checked right after it is queued (bad configuration); faults
 * inside a kernel surface at the next synchronising call. */
#define LAUNCH_CHECK(b) CUDA_TRY(b, cudaGetLastError())

static inline cuda_impl_t *impl(backend_t *b) {
  return (cuda_impl_t *)b->impl;
}

static void prof_flush(prof_t *p) {
  if (!p->on || p->n == 0)
    return;
  cudaEventSynchronize(p->ev[2 * p->n - 1]);
  for (int i = 0; i < p->n; i++) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, p->ev[2 * i], p->ev[2 * i + 1]) == cudaSuccess)
      p->ms[p->op[i]] += ms;
    p->calls[p->op[i]]++;
  }
  cudaGetLastError();
  p->n = 0;
}

/* One op's scope: records its start event on entry and its end on any return. */
struct prof_scope {
  cuda_impl_t *c;
  int slot;
  prof_scope(backend_t *b, int op) : c(impl(b)), slot(-1) {
    prof_t *p = &c->prof;
    if (!p->on)
      return;
    if (p->n == p->cap)
      prof_flush(p);
    slot = p->n++;
    p->op[slot] = op;
    cudaEventRecord(p->ev[2 * slot], c->stream);
  }
  ~prof_scope() {
    if (slot >= 0)
      cudaEventRecord(c->prof.ev[2 * slot + 1], c->stream);
  }
};
#define PROF(b, op) prof_scope prof_scope_(b, op)
static inline unsigned blocks(size_t n, unsigned threads) {
  return (unsigned)((n + threads - 1) / threads);
}

/* ---- memory ---- */

static void *cuda_alloc(backend_t *b, size_t bytes) {
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
  if (e != cudaSuccess) {
    cudaGetLastError(); /* clear the sticky-free error state of an OOM */
    err_set(b->err, "cudaMalloc(%zu bytes): %s", bytes, cudaGetErrorString(e));
    return NULL;
  }
  return p;
}

static void cuda_free(backend_t *b, void *p) {
  (void)b;
  cudaFree(p);
}

/* A staging region of `bytes` (<= PIN_SEG) in pinned memory, or NULL. */
static char *pin_take(backend_t *b, size_t bytes) {
  cuda_impl_t *c = impl(b);
  if (!c->pin || bytes > PIN_SEG)
    return NULL;
  if (c->pin_used + bytes > PIN_SEG) { /* next segment, once its last copy is done */
    c->pin_seg = (c->pin_seg + 1) % PIN_SEGS;
    c->pin_used = 0;
    if (cudaEventSynchronize(c->pin_ev[c->pin_seg]) != cudaSuccess)
      return NULL;
  }
  char *p = c->pin + (size_t)c->pin_seg * PIN_SEG + c->pin_used;
  c->pin_used += (bytes + 255) & ~(size_t)255;
  return p;
}

static int cuda_upload(backend_t *b, void *dst, const void *src, size_t bytes) {
  PROF(b, P_UPLOAD);
  cuda_impl_t *c = impl(b);
  char *stage = pin_take(b, bytes);
  if (!stage) {
    CUDA_TRY(b, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    return 0;
  }
  memcpy(stage, src, bytes);
  CUDA_TRY(b, cudaMemcpyAsync(dst, stage, bytes, cudaMemcpyHostToDevice, c->stream));
  CUDA_TRY(b, cudaEventRecord(c->pin_ev[c->pin_seg], c->stream));
  return 0;
}

static int cuda_download(backend_t *b, void *dst, const void *src, size_t bytes) {
  PROF(b, P_DOWNLOAD);
  cuda_impl_t *c = impl(b);
  char *stage = pin_take(b, bytes);
  CUDA_TRY(b, cudaMemcpyAsync(stage ? stage : dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
  if (stage)
    CUDA_TRY(b, cudaEventRecord(c->pin_ev[c->pin_seg], c->stream));
  CUDA_TRY(b, cudaStreamSynchronize(c->stream));
  if (stage)
    memcpy(dst, stage, bytes);
  return 0;
}

static size_t cuda_memory_available(backend_t *b) {
  size_t free_b = 0, total = 0;
  if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) {
    cudaGetLastError();
    err_set(b->err, "cudaMemGetInfo failed");
    return 0;
  }
  return free_b;
}

static int cuda_set_precision(backend_t *b, int tf32) {
  cuda_impl_t *c = impl(b);
  /* fp32: pedantic (no TF32 shortcuts); tf32: tensor cores with fp32 accumulation */
  if (cublasSetMathMode(c->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH) !=
      CUBLAS_STATUS_SUCCESS)
    return c->tf32;
  c->tf32 = tf32 ? 1 : 0;
  return c->tf32;
}

/* CUDA's current device is per thread. */
static void cuda_attach_thread(backend_t *b) {
  if (cudaSetDevice(impl(b)->device) != cudaSuccess)
    cudaGetLastError(); /* the next op reports what is wrong */
}

static int cuda_copy(backend_t *b, void *dst, const void *src, size_t bytes) {
  PROF(b, P_COPY);
  CUDA_TRY(b, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, impl(b)->stream));
  return 0;
}

static int cuda_memset0(backend_t *b, void *dst, size_t bytes) {
  PROF(b, P_COPY);
  CUDA_TRY(b, cudaMemsetAsync(dst, 0, bytes, impl(b)->stream));
  return 0;
}

static int cuda_synchronize(backend_t *b) {
  CUDA_TRY(b, cudaStreamSynchronize(impl(b)->stream));
  prof_flush(&impl(b)->prof);
  return 0;
}

/* ---- matmul ---- */

__global__ void k_bias_rows(float *y, const float *bias, int rows, int out, int accumulate) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (size_t)rows * out)
    return;
  float v = bias[i % out];
  y[i] = accumulate ? y[i] + v : v;
}

/* Row-major y[rows, out] = x[rows, in] . w[out, in]^T is, column-major,
 * y^T[out, rows] = w^T^T . x^T: op(A) = T on w (ld in), op(B) = N on x. */
static int cuda_matmul(backend_t *b, float *y, const float *x, const float *w, const float *bias,
                       int rows, int out, int in, int accumulate) {
  PROF(b, P_MATMUL);
  if (rows == 0)
    return 0;
  float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  if (bias) {
    size_t n = (size_t)rows * out;
    k_bias_rows<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(y, bias, rows, out, accumulate);
    LAUNCH_CHECK(b);
    beta = 1.0f;
  }
  CUBLAS_TRY(b, cublasSgemm(impl(b)->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &alpha, w, in,
                            x, in, &beta, y, out));
  return 0;
}

__global__ void k_widen_bf16(float *dst, const uint16_t *src, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    dst[i] = __uint_as_float((unsigned)src[i] << 16);
}

/* The start of a product on weights widened or decoded into scratch a tile
 * of rows at a time (matmul_bf16, matmul_blocks): checks that scratch holds
 * a row, writes the bias rows into y (or adds them when accumulating) and
 * sets the sgemm's beta. Returns 1 when there is nothing to multiply, -1 on
 * an error, 0 otherwise. */
static int tiled_matmul_start(backend_t *b, const char *op, float *y, const float *bias, int rows,
                              int out, int in, int accumulate, size_t scratch_floats, float *beta) {
  if (scratch_floats < (size_t)in)
    return err_set(b->err, "%s: scratch of %zu floats is under one row of %d", op, scratch_floats,
                   in);
  if (rows == 0)
    return 1;
  *beta = accumulate ? 1.0f : 0.0f;
  if (bias) {
    size_t n = (size_t)rows * out;
    k_bias_rows<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(y, bias, rows, out, accumulate);
    LAUNCH_CHECK(b);
    *beta = 1.0f;
  }
  return 0;
}

/* As cuda_matmul, on a block of w's rows at a time widened into scratch:
 * y[:, o0:o1] (leading dimension out) = x . w[o0:o1]^T. */
static int cuda_matmul_bf16(backend_t *b, float *y, const float *x, const uint16_t *w,
                            const float *bias, int rows, int out, int in, int accumulate,
                            float *scratch, size_t scratch_floats) {
  PROF(b, P_MATMUL);
  float alpha = 1.0f, beta = 0.0f;
  const int start = tiled_matmul_start(b, "matmul_bf16", y, bias, rows, out, in, accumulate,
                                       scratch_floats, &beta);
  if (start)
    return start > 0 ? 0 : -1;
  cudaStream_t st = impl(b)->stream;
  const long block = (long)(scratch_floats / (size_t)in);
  for (long o0 = 0; o0 < out; o0 += block) {
    const long n = out - o0 < block ? out - o0 : block;
    const size_t count = (size_t)n * in;
    const unsigned grid = blocks(count, 256) < 65536u * 8 ? blocks(count, 256) : 65536u * 8;
    k_widen_bf16<<<grid, 256, 0, st>>>(scratch, w + (size_t)o0 * in, count);
    LAUNCH_CHECK(b);
    CUBLAS_TRY(b, cublasSgemm(impl(b)->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, rows, in, &alpha,
                              scratch, in, x, in, &beta, y + o0, out));
  }
  return 0;
}

/* As cuda_matmul, on w's blocks decoded into scratch a tile of rows at a
 * time (blocks_decode): with a scratch of the whole matrix (the
 * transformer's), one cublasSgemm, the same call as on the weights
 * dequantised at load. F32 rows are multiplied where they are, in the same
 * tiles. */
static int cuda_matmul_blocks(backend_t *b, float *y, const float *x, const void *w, uint32_t type,
                              const float *bias, int rows, int out, int in, int accumulate,
                              float *scratch, size_t scratch_floats) {
  const gguf_quant_type_t *tt = gguf_quant_type(type);
  if (!tt || !model_native_type(type) || in % (int)tt->block_size)
    return err_set(b->err, "matmul_blocks: type %s rows of %d cannot be multiplied in blocks",
                   tt ? tt->name : "?", in);
  PROF(b, P_MATMUL);
  float alpha = 1.0f, beta = 0.0f;
  const int start = tiled_matmul_start(b, "matmul_blocks", y, bias, rows, out, in, accumulate,
                                       scratch_floats, &beta);
  if (start)
    return start > 0 ? 0 : -1;
  cudaStream_t st = impl(b)->stream;
  const size_t row_bytes = (size_t)(in / (int)tt->block_size) * tt->type_size;
  const long most = (long)(scratch_floats / (size_t)in), n_tiles = (out + most - 1) / most;
  const long tile = (out + n_tiles - 1) / n_tiles; /* equal tiles, as the CPU's */
  for (long o0 = 0; o0 < out; o0 += tile) {
    const long n = out - o0 < tile ? out - o0 : tile;
    const uint8_t *src = (const uint8_t *)w + (size_t)o0 * row_bytes;
    if (type != GGUF_TENSOR_F32)
      CUDA_TRY(b, blocks_decode(st, src, type, scratch, (size_t)n * in));
    const float *tile_w = type == GGUF_TENSOR_F32 ? (const float *)src : scratch;
    CUBLAS_TRY(b, cublasSgemm(impl(b)->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, rows, in, &alpha,
                              tile_w, in, x, in, &beta, y + o0, out));
  }
  return 0;
}

/* ---- norms: one block per row ---- */

__device__ float block_sum(float v, float *shared) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0)
    shared[warp] = v;
  __syncthreads();
  int n_warps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < n_warps ? shared[threadIdx.x] : 0.0f;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1)
      v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x == 0)
    shared[0] = v;
  __syncthreads();
  v = shared[0];
  __syncthreads();
  return v;
}

/* One block per row; row r's gamma and beta are row r % gamma_rows of
 * gamma[gamma_rows, d] (1: a model's norm; n_heads: per-head q/k norms). */
__global__ void k_layernorm(float *y, float *inv_scale, const float *x, const float *gamma,
                            const float *beta, int d, int gamma_rows, float eps) {
  __shared__ float shared[32];
  const float *xr = x + (size_t)blockIdx.x * d;
  float *yr = y + (size_t)blockIdx.x * d;
  gamma += (size_t)(blockIdx.x % gamma_rows) * d;
  if (beta)
    beta += (size_t)(blockIdx.x % gamma_rows) * d;
  float s = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x)
    s += xr[i];
  const float mean = block_sum(s, shared) / d;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    float c = xr[i] - mean;
    ss += c * c;
  }
  const float inv = rsqrtf(block_sum(ss, shared) / d + eps);
  for (int i = threadIdx.x; i < d; i += blockDim.x)
    yr[i] = (xr[i] - mean) * inv * gamma[i] + (beta ? beta[i] : 0.0f);
  if (inv_scale && threadIdx.x == 0)
    inv_scale[blockIdx.x] = inv;
}

__global__ void k_rmsnorm(float *y, float *inv_scale, const float *x, const float *gamma, int d,
                          float eps) {
  __shared__ float shared[32];
  const float *xr = x + (size_t)blockIdx.x * d;
  float *yr = y + (size_t)blockIdx.x * d;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < d; i += blockDim.x)
    ss += xr[i] * xr[i];
  const float inv = rsqrtf(block_sum(ss, shared) / d + eps);
  for (int i = threadIdx.x; i < d; i += blockDim.x)
    yr[i] = xr[i] * inv * gamma[i];
  if (inv_scale && threadIdx.x == 0)
    inv_scale[blockIdx.x] = inv;
}

static int cuda_layernorm(backend_t *b, float *y, float *inv_scale, const float *x,
                          const float *gamma, const float *beta, int rows, int d, float eps) {
  PROF(b, P_NORM);
  if (rows == 0)
    return 0;
  k_layernorm<<<rows, 256, 0, impl(b)->stream>>>(y, inv_scale, x, gamma, beta, d, 1, eps);
  LAUNCH_CHECK(b);
  return 0;
}

static int cuda_head_layernorm(backend_t *b, float *x, const float *gamma, const float *beta,
                               int rows, int n_heads, int head_dim, float eps) {
  PROF(b, P_NORM);
  if (rows == 0)
    return 0;
  k_layernorm<<<rows * n_heads, 128, 0, impl(b)->stream>>>(x, NULL, x, gamma, beta, head_dim,
                                                           n_heads, eps);
  LAUNCH_CHECK(b);
  return 0;
}

static int cuda_rmsnorm(backend_t *b, float *y, float *inv_scale, const float *x,
                        const float *gamma, int rows, int d, float eps) {
  PROF(b, P_NORM);
  if (rows == 0)
    return 0;
  k_rmsnorm<<<rows, 256, 0, impl(b)->stream>>>(y, inv_scale, x, gamma, d, eps);
  LAUNCH_CHECK(b);
  return 0;
}

/* ---- RoPE: one thread per (row, head, pair) ---- */

__global__ void k_rope(float *x, const int *position, const float *inv_freq, int rows, int n_heads,
                       int head_dim, int rotary_dim, float attn_scale) {
  const int half = rotary_dim / 2;
  size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (size_t)rows * n_heads * half)
    return;
  int i = (int)(t % half);
  size_t rh = t / half;
  int r = (int)(rh / n_heads);
  float *xh = x + rh * head_dim;
  double angle = (double)position[r] * (double)inv_freq[i];
  float c = (float)(cos(angle) * attn_scale), s = (float)(sin(angle) * attn_scale);
  float a = xh[i], bb = xh[i + half];
  xh[i] = a * c - bb * s;
  xh[i + half] = bb * c + a * s;
}

static int cuda_rope(backend_t *b, float *x, const int *position, const float *inv_freq, int rows,
                     int n_heads, int head_dim, int rotary_dim, float attn_scale) {
  PROF(b, P_ROPE);
  size_t n = (size_t)rows * n_heads * (rotary_dim / 2);
  if (n == 0)
    return 0;
  k_rope<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(x, position, inv_freq, rows, n_heads,
                                                      head_dim, rotary_dim, attn_scale);
  LAUNCH_CHECK(b);
  return 0;
}

/* ---- attention: one warp per (row, head), online softmax over its keys ----
 * Each lane holds head_dim / 32 (at most ATT_MAX_PER_LANE) output dims. */
#define ATT_MAX_PER_LANE 8

/* Online-softmax update of one warp's (m, l, acc) with a run of n keys. */
__device__ void attend_run(const float *qr, float *acc, float &m, float &l, const float *kb,
                           const float *vb, size_t kv_stride, int n, int head_dim, float scale,
                           float softcap, int lane) {
  for (int j = 0; j < n; j++) {
    const float *kj = kb + (size_t)j * kv_stride, *vj = vb + (size_t)j * kv_stride;
    float s = 0.0f;
    int p = 0;
    for (int i = lane; i < head_dim; i += 32, p++)
      s += qr[p] * kj[i];
    for (int o = 16; o > 0; o >>= 1)
      s += __shfl_xor_sync(0xffffffffu, s, o);
    s *= scale;
    if (softcap > 0.0f)
      s = softcap * tanhf(s / softcap);
    const float m_new = fmaxf(m, s), corr = expf(m - m_new), w = expf(s - m_new);
    l = l * corr + w;
    p = 0;
    for (int i = lane; i < head_dim; i += 32, p++)
      acc[p] = acc[p] * corr + w * vj[i];
    m = m_new;
  }
}

__global__ void k_attention(float *out, const float *q, const float *k, const float *v,
                            const int *key_start, const int *n_keys, const float *k2,
                            const float *v2, const int *key2_start, const int *n_keys2, int rows,
                            int n_heads, int n_kv_heads, int head_dim, float scale, float softcap,
                            int window) {
  const int warp = (int)(((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5);
  const int lane = threadIdx.x & 31;
  if (warp >= rows * n_heads)
    return;
  const int r = warp / n_heads, h = warp % n_heads, kvh = h / (n_heads / n_kv_heads);
  const size_t q_stride = (size_t)n_heads * head_dim, kv_stride = (size_t)n_kv_heads * head_dim;
  const size_t kv_off = (size_t)kvh * head_dim;
  const float *qh = q + (size_t)r * q_stride + (size_t)h * head_dim;
  float qr[ATT_MAX_PER_LANE], acc[ATT_MAX_PER_LANE];
  int per = 0;
  for (int i = lane; i < head_dim; i += 32, per++) {
    qr[per] = qh[i];
    acc[per] = 0.0f;
  }
  int n1 = n_keys[r], n2 = k2 ? n_keys2[r] : 0, start1 = key_start[r],
      start2 = k2 ? key2_start[r] : 0;
  if (window > 0 && n1 + n2 > window) { /* the keys before the window, first run first */
    const int skip = n1 + n2 - window, skip1 = skip < n1 ? skip : n1;
    start1 += skip1, n1 -= skip1;
    start2 += skip - skip1, n2 -= skip - skip1;
  }
  float m = -INFINITY, l = 0.0f;
  attend_run(qr, acc, m, l, k + (size_t)start1 * kv_stride + kv_off,
             v + (size_t)start1 * kv_stride + kv_off, kv_stride, n1, head_dim, scale, softcap,
             lane);
  if (n2)
    attend_run(qr, acc, m, l, k2 + (size_t)start2 * kv_stride + kv_off,
               v2 + (size_t)start2 * kv_stride + kv_off, kv_stride, n2, head_dim, scale, softcap,
               lane);
  float *oh = out + (size_t)r * q_stride + (size_t)h * head_dim;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  int p = 0;
  for (int i = lane; i < head_dim; i += 32, p++)
    oh[i] = acc[p] * inv;
}

static int cuda_attention(backend_t *b, float *out, const float *q, const float *k, const float *v,
                          const int *key_start, const int *n_keys, const float *k2, const float *v2,
                          const int *key2_start, const int *n_keys2, int rows, int n_heads,
                          int n_kv_heads, int head_dim, float scale, float softcap, int window) {
  PROF(b, P_ATTENTION);
  if (head_dim > 32 * ATT_MAX_PER_LANE)
    return err_set(b->err, "attention: head_dim %d is larger than %d", head_dim,
                   32 * ATT_MAX_PER_LANE);
  size_t threads = (size_t)rows * n_heads * 32;
  if (threads == 0)
    return 0;
  k_attention<<<blocks(threads, 128), 128, 0, impl(b)->stream>>>(
      out, q, k, v, key_start, n_keys, k2, v2, key2_start, n_keys2, rows, n_heads, n_kv_heads,
      head_dim, scale, softcap, window);
  LAUNCH_CHECK(b);
  return 0;
}

/* ---- attention_rows: one warp per entry; the pattern's max and sum over
 * the window's keys first, then each key's probability read, or weighted
 * into the head's output ---- */

/* Key j of a row's keys (its first run, then its second) in x or x2. */
__device__ const float *key_row(const float *x, const float *x2, int start1, int n1, int start2,
                                int j, size_t kv_stride, size_t kv_off) {
  return j < n1 ? x + (size_t)(start1 + j) * kv_stride + kv_off
                : x2 + (size_t)(start2 + j - n1) * kv_stride + kv_off;
}

/* The (capped, scaled) score of key row kj against the lane's query dims. */
__device__ float key_score(const float *qr, const float *kj, int head_dim, float scale,
                           float softcap, int lane) {
  float s = 0.0f;
  int p = 0;
  for (int i = lane; i < head_dim; i += 32, p++)
    s += qr[p] * kj[i];
  for (int o = 16; o > 0; o >>= 1)
    s += __shfl_xor_sync(0xffffffffu, s, o);
  s *= scale;
  return softcap > 0.0f ? softcap * tanhf(s / softcap) : s;
}

__global__ void k_attention_rows(float *out, float *patterns, const pattern_entry_t *entries,
                                 int n_entries, const float *q, const float *k, const float *v,
                                 const int *key_start, const int *n_keys, const float *k2,
                                 const float *v2, const int *key2_start, const int *n_keys2,
                                 int n_heads, int n_kv_heads, int head_dim, float scale,
                                 float softcap, int window) {
  const int warp = (int)(((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5);
  const int lane = threadIdx.x & 31;
  if (warp >= n_entries)
    return;
  const pattern_entry_t e = entries[warp];
  const int r = e.row, kvh = e.head / (n_heads / n_kv_heads);
  const size_t q_stride = (size_t)n_heads * head_dim, kv_stride = (size_t)n_kv_heads * head_dim;
  const size_t kv_off = (size_t)kvh * head_dim;
  const int n1 = n_keys[r], n2 = k2 ? n_keys2[r] : 0, start1 = key_start[r],
            start2 = k2 ? key2_start[r] : 0, total = n1 + n2;
  const int skip = window > 0 && total > window ? total - window : 0;
  const float *qh = q + (size_t)r * q_stride + (size_t)e.head * head_dim;
  float qr[ATT_MAX_PER_LANE], acc[ATT_MAX_PER_LANE];
  int per = 0;
  for (int i = lane; i < head_dim; i += 32, per++) {
    qr[per] = qh[i];
    acc[per] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  if (e.kind != PATTERN_SET)
    for (int j = skip; j < total; j++) {
      const float s = key_score(qr, key_row(k, k2, start1, n1, start2, j, kv_stride, kv_off),
                                head_dim, scale, softcap, lane);
      const float m_new = fmaxf(m, s);
      l = l * expf(m - m_new) + expf(s - m_new);
      m = m_new;
    }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int j = 0; j < total; j++) {
    float w;
    if (e.kind == PATTERN_SET) {
      w = patterns[e.offset + j];
    } else {
      w = j < skip ? 0.0f
                   : expf(key_score(qr, key_row(k, k2, start1, n1, start2, j, kv_stride, kv_off),
                                    head_dim, scale, softcap, lane) -
                          m) *
                         inv;
      if (e.kind == PATTERN_READ) {
        if (lane == 0)
          patterns[e.offset + j] = w;
        continue;
      }
      w *= e.alpha;
    }
    const float *vj = key_row(v, v2, start1, n1, start2, j, kv_stride, kv_off);
    int p = 0;
    for (int i = lane; i < head_dim; i += 32, p++)
      acc[p] += w * vj[i];
  }
  if (e.kind == PATTERN_READ)
    return;
  float *oh = out + (size_t)r * q_stride + (size_t)e.head * head_dim;
  int p = 0;
  for (int i = lane; i < head_dim; i += 32, p++)
    oh[i] = acc[p];
}

static int cuda_attention_rows(backend_t *b, float *out, float *patterns,
                               const pattern_entry_t *entries, int n_entries, const float *q,
                               const float *k, const float *v, const int *key_start,
                               const int *n_keys, const float *k2, const float *v2,
                               const int *key2_start, const int *n_keys2, int n_heads,
                               int n_kv_heads, int head_dim, float scale, float softcap,
                               int window) {
  PROF(b, P_ATTENTION);
  if (head_dim > 32 * ATT_MAX_PER_LANE)
    return err_set(b->err, "attention_rows: head_dim %d is larger than %d", head_dim,
                   32 * ATT_MAX_PER_LANE);
  const size_t threads = (size_t)n_entries * 32;
  if (threads == 0)
    return 0;
  k_attention_rows<<<blocks(threads, 128), 128, 0, impl(b)->stream>>>(
      out, patterns, entries, n_entries, q, k, v, key_start, n_keys, k2, v2, key2_start, n_keys2,
      n_heads, n_kv_heads, head_dim, scale, softcap, window);
  LAUNCH_CHECK(b);
  return 0;
}

/* ---- interventions and projections ---- */

/* One block per entry, threads over its columns. */
__global__ void k_intervene(float *x, int width, const intervention_t *entries, const float *src) {
  const intervention_t e = entries[blockIdx.x];
  float *xr = x + (size_t)e.row * width;
  for (int c = e.col0 + threadIdx.x; c < e.col1; c += blockDim.x) {
    if (e.kind == INTERVENE_SET)
      xr[c] = src[e.src_offset + c - e.col0];
    else if (e.kind == INTERVENE_SCALE)
      xr[c] *= e.alpha;
    else
      xr[c] += src[e.src_offset + c - e.col0];
  }
}

static int cuda_intervene(backend_t *b, float *x, int width, const intervention_t *entries, int n,
                          const float *src) {
  PROF(b, P_INTERVENE);
  if (n == 0)
    return 0;
  k_intervene<<<n, 128, 0, impl(b)->stream>>>(x, width, entries, src);
  LAUNCH_CHECK(b);
  return 0;
}

/* One block per dot product. */
__global__ void k_row_dots(float *out, const int *out_index, const float *x, const int *x_row,
                           const float *dirs, const int *dir_row, int d) {
  __shared__ float shared[32];
  const float *xr = x + (size_t)x_row[blockIdx.x] * d, *dr = dirs + (size_t)dir_row[blockIdx.x] * d;
  float s = 0.0f;
  for (int c = threadIdx.x; c < d; c += blockDim.x)
    s += xr[c] * dr[c];
  s = block_sum(s, shared);
  if (threadIdx.x == 0)
    out[out_index[blockIdx.x]] = s;
}

static int cuda_row_dots(backend_t *b, float *out, const int *out_index, const float *x,
                         const int *x_row, const float *dirs, const int *dir_row, int n, int d) {
  PROF(b, P_ROW_DOTS);
  if (n == 0)
    return 0;
  k_row_dots<<<n, 256, 0, impl(b)->stream>>>(out, out_index, x, x_row, dirs, dir_row, d);
  LAUNCH_CHECK(b);
  return 0;
}

/* (v, i) replaces (bv, bi) as the argmax so far: none yet (bi < 0), a larger
 * value, or an equal one at a lower index; a NaN (i < 0) never does. */
__device__ void best_merge(float *bv, int *bi, float v, int i) {
  if (i >= 0 && (*bi < 0 || v > *bv || (v == *bv && i < *bi))) {
    *bv = v;
    *bi = i;
  }
}

/* One block of LOGIT_THREADS per row: the argmax and the double sum over the
 * vocabulary, then the centred target logit and the target's and foil's. */
#define LOGIT_THREADS 512
__global__ void k_logit_stats(int *best, float *stats, const float *logits, int vocab,
                              const int *targets, const int *foils) {
  __shared__ double s_sum[LOGIT_THREADS / 32];
  __shared__ float s_v[LOGIT_THREADS / 32];
  __shared__ int s_i[LOGIT_THREADS / 32];
  const float *l = logits + (size_t)blockIdx.x * vocab;
  double sum = 0.0;
  float bv = 0.0f;
  int bi = -1;
  for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
    const float v = l[t];
    sum += v;
    best_merge(&bv, &bi, v, v == v ? t : -1);
  }
  for (int o = 16; o > 0; o >>= 1) {
    sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    best_merge(&bv, &bi, ov, oi);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    s_sum[warp] = sum;
    s_v[warp] = bv;
    s_i[warp] = bi;
  }
  __syncthreads();
  if (warp != 0)
    return;
  const int n_warps = blockDim.x >> 5;
  sum = lane < n_warps ? s_sum[lane] : 0.0;
  bv = lane < n_warps ? s_v[lane] : 0.0f;
  bi = lane < n_warps ? s_i[lane] : -1;
  for (int o = 16; o > 0; o >>= 1) {
    sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    best_merge(&bv, &bi, ov, oi);
  }
  if (lane == 0) {
    const int r = blockIdx.x, arg = bi < 0 ? 0 : bi;
    const int target = targets[r] >= 0 ? targets[r] : arg;
    best[r] = arg;
    stats[3 * (size_t)r] = (float)((double)l[target] - sum / vocab);
    stats[3 * (size_t)r + 1] = l[target];
    stats[3 * (size_t)r + 2] = foils && foils[r] >= 0 ? l[foils[r]] : 0.0f;
  }
}

static int cuda_logit_stats(backend_t *b, int *best, float *stats, const float *logits, int rows,
                            int vocab, const int *targets, const int *foils) {
  PROF(b, P_LOGIT_STATS);
  if (rows == 0)
    return 0;
  k_logit_stats<<<rows, LOGIT_THREADS, 0, impl(b)->stream>>>(best, stats, logits, vocab, targets,
                                                             foils);
  LAUNCH_CHECK(b);
  return 0;
}

/* Block-wide reductions over LOGIT_THREADS threads; every thread gets the
 * result, and every thread of the block must call them. */
__device__ void block_best(float *bv, int *bi) {
  __shared__ float s_v[LOGIT_THREADS / 32];
  __shared__ int s_i[LOGIT_THREADS / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, *bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, *bi, o);
    best_merge(bv, bi, ov, oi);
  }
  if (lane == 0)
    s_v[warp] = *bv, s_i[warp] = *bi;
  __syncthreads();
  if (warp == 0) {
    *bv = lane < n_warps ? s_v[lane] : 0.0f;
    *bi = lane < n_warps ? s_i[lane] : -1;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, *bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, *bi, o);
      best_merge(bv, bi, ov, oi);
    }
    if (lane == 0)
      s_v[0] = *bv, s_i[0] = *bi;
  }
  __syncthreads();
  *bv = s_v[0], *bi = s_i[0];
  __syncthreads(); /* s_v, s_i free for another call */
}

#define SUM_N 4
__device__ void block_sums(double *v) {
  __shared__ double s[LOGIT_THREADS / 32][SUM_N];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  for (int j = 0; j < SUM_N; j++)
    for (int o = 16; o > 0; o >>= 1)
      v[j] += __shfl_xor_sync(0xffffffffu, v[j], o);
  if (lane == 0)
    for (int j = 0; j < SUM_N; j++)
      s[warp][j] = v[j];
  __syncthreads();
  if (warp == 0) {
    for (int j = 0; j < SUM_N; j++) {
      v[j] = lane < n_warps ? s[lane][j] : 0.0;
      for (int o = 16; o > 0; o >>= 1)
        v[j] += __shfl_xor_sync(0xffffffffu, v[j], o);
    }
    if (lane == 0)
      for (int j = 0; j < SUM_N; j++)
        s[0][j] = v[j];
  }
  __syncthreads();
  for (int j = 0; j < SUM_N; j++)
    v[j] = s[0][j];
  __syncthreads();
}

/* One block of LOGIT_THREADS per row: the argmax (the maximum for the
 * log-sum-exp), then one pass for the exp sum, the target's rank and the KL
 * terms against the reference log-probs, then the row's log-probs if asked. */
/* A logit as the distribution reads it: soft-capped when cap > 0. */
__device__ __forceinline__ float capped(float x, float cap) {
  return cap > 0.0f ? cap * tanhf(x / cap) : x;
}

__global__ void k_logit_metrics(float *out, float *lp_out, const float *logits, int vocab,
                                const int *prompt, const int *targets, const int *foils,
                                const float *ref_lp, float softcap) {
  const int r = blockIdx.x, p = prompt[r];
  const float *l = logits + (size_t)r * vocab;
  float bv = 0.0f;
  int bi = -1;
  for (int k = threadIdx.x; k < vocab; k += blockDim.x) {
    const float v = l[k];
    best_merge(&bv, &bi, v, v == v ? k : -1);
  }
  block_best(&bv, &bi);
  const float max = bi < 0 ? -INFINITY : capped(bv, softcap);
  const int t = targets[p] >= 0 ? targets[p] : (bi < 0 ? 0 : bi);
  const float lraw = l[t], lt = capped(lraw, softcap);
  const float *q = ref_lp ? ref_lp + (size_t)p * vocab : NULL;
  double acc[SUM_N] = {0.0, 0.0, 0.0, 0.0}; /* exp sum, sum p (q - l), sum p, rank */
  for (int k = threadIdx.x; k < vocab; k += blockDim.x) {
    const float v = capped(l[k], softcap);
    acc[0] += expf(v - max);
    acc[3] += l[k] > lraw ? 1.0 : 0.0; /* the cap keeps the order: ranked before it */
    if (q) {
      const float qk = q[k];
      const double pk = expf(qk);
      acc[1] += pk * ((double)qk - v);
      acc[2] += pk;
    }
  }
  block_sums(acc);
  const double lse = max + log(acc[0]);
  if (threadIdx.x == 0) {
    float *o = out + 5 * (size_t)r;
    o[0] = (float)(lt - lse);
    o[1] = (float)exp(lt - lse);
    o[2] = q ? (float)(acc[1] + lse * acc[2]) : 0.0f;
    o[3] = (float)acc[3];
    o[4] = foils && foils[p] >= 0 ? l[t] - l[foils[p]] : 0.0f;
  }
  if (lp_out)
    for (int k = threadIdx.x; k < vocab; k += blockDim.x)
      lp_out[(size_t)r * vocab + k] = (float)(capped(l[k], softcap) - lse);
}

static int cuda_logit_metrics(backend_t *b, float *out, float *lp_out, const float *logits,
                              int rows, int vocab, const int *prompt, const int *targets,
                              const int *foils, const float *ref_lp, float softcap) {
  PROF(b, P_LOGIT_METRICS);
  if (rows == 0)
    return 0;
  k_logit_metrics<<<rows, LOGIT_THREADS, 0, impl(b)->stream>>>(out, lp_out, logits, vocab, prompt,
                                                               targets, foils, ref_lp, softcap);
  LAUNCH_CHECK(b);
  return 0;
}

/* ---- element-wise ---- */

__device__ __forceinline__ float activate(float t, int act) {
  if (act == ACT_GELU_TANH)
    return 0.5f * t * (1.0f + tanhf(0.7978845608028654f * (t + 0.044715f * t * t * t)));
  if (act == ACT_GELU_ERF)
    return 0.5f * t * (1.0f + erff(t * 0.7071067811865476f));
  if (act == ACT_RELU) /* NaN kept, as in PyTorch */
    return t <= 0.0f ? 0.0f : t;
  return t / (1.0f + expf(-t));
}

__global__ void k_activation(float *x, size_t n, int act) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    x[i] = activate(x[i], act);
}

__global__ void k_glu(float *gate, const float *up, size_t n, int act) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    gate[i] = activate(gate[i], act) * up[i];
}

__global__ void k_scale(float *x, size_t n, float alpha) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    x[i] *= alpha;
}

__global__ void k_softcap(float *x, size_t n, float cap) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    x[i] = cap * tanhf(x[i] / cap);
}

__global__ void k_swiglu(float *gate, const float *up, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

__global__ void k_add(float *y, const float *x, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    y[i] += x[i];
}

static int cuda_activation(backend_t *b, float *x, size_t n, activation_t act) {
  PROF(b, P_ELEMENTWISE);
  if (act != ACT_GELU_TANH && act != ACT_GELU_ERF && act != ACT_SILU && act != ACT_RELU)
    return err_set(b->err, "unknown activation %d", (int)act);
  if (n == 0)
    return 0;
  k_activation<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(x, n, (int)act);
  LAUNCH_CHECK(b);
  return 0;
}

static int cuda_swiglu(backend_t *b, float *gate, const float *up, size_t n) {
  PROF(b, P_ELEMENTWISE);
  if (n == 0)
    return 0;
  k_swiglu<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(gate, up, n);
  LAUNCH_CHECK(b);
  return 0;
}

static int cuda_glu(backend_t *b, float *gate, const float *up, size_t n, activation_t act) {
  PROF(b, P_ELEMENTWISE);
  if (act != ACT_GELU_TANH && act != ACT_GELU_ERF && act != ACT_SILU && act != ACT_RELU)
    return err_set(b->err, "unknown activation %d", (int)act);
  if (n == 0)
    return 0;
  k_glu<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(gate, up, n, (int)act);
  LAUNCH_CHECK(b);
  return 0;
}

/* gate = act(gate) * (up + b_up), act < 0 for swiglu's silu (k_swiglu's
 * formula): matmul_glu's bias and hidden units in one pass. */
__global__ void k_glu_bias(float *gate, const float *up, const float *b_up, int out, size_t n,
                           int act) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n)
    return;
  const float g = gate[i], u = b_up ? up[i] + b_up[i % out] : up[i];
  gate[i] = (act < 0 ? g / (1.0f + expf(-g)) : activate(g, act)) * u;
}

/* One sgemm each (beta 0), then the bias and the hidden units in one
 * kernel: the bias is added after the product here (matmul starts the sum
 * from it), a float rounding apart, within the product's bound. */
static int cuda_matmul_glu(backend_t *b, float *gate, float *up, const float *x,
                           const float *w_gate, const float *w_up, const float *b_up, int rows,
                           int out, int in, activation_t act) {
  PROF(b, P_MATMUL);
  if (act != ACT_GELU_TANH && act != ACT_GELU_ERF && act != ACT_SILU && act != ACT_RELU)
    return err_set(b->err, "matmul_glu: unknown activation %d", (int)act);
  if (rows == 0 || out == 0)
    return 0;
  const size_t n = (size_t)rows * out;
  float alpha = 1.0f, beta = 0.0f;
  if (in == 0) { /* empty sums (cuBLAS takes no lda of 0) */
    CUDA_TRY(b, cudaMemsetAsync(gate, 0, n * sizeof(float), impl(b)->stream));
    CUDA_TRY(b, cudaMemsetAsync(up, 0, n * sizeof(float), impl(b)->stream));
  } else {
    CUBLAS_TRY(b, cublasSgemm(impl(b)->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &alpha,
                              w_gate, in, x, in, &beta, gate, out));
    CUBLAS_TRY(b, cublasSgemm(impl(b)->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &alpha, w_up,
                              in, x, in, &beta, up, out));
  }
  k_glu_bias<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(gate, up, b_up, out, n,
                                                          act == ACT_SILU ? -1 : (int)act);
  LAUNCH_CHECK(b);
  return 0;
}

static int cuda_scale(backend_t *b, float *x, size_t n, float alpha) {
  PROF(b, P_ELEMENTWISE);
  if (n == 0)
    return 0;
  k_scale<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(x, n, alpha);
  LAUNCH_CHECK(b);
  return 0;
}

static int cuda_softcap(backend_t *b, float *x, size_t n, float cap) {
  PROF(b, P_ELEMENTWISE);
  if (n == 0)
    return 0;
  k_softcap<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(x, n, cap);
  LAUNCH_CHECK(b);
  return 0;
}

static int cuda_add(backend_t *b, float *y, const float *x, size_t n) {
  PROF(b, P_ELEMENTWISE);
  if (n == 0)
    return 0;
  k_add<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(y, x, n);
  LAUNCH_CHECK(b);
  return 0;
}

/* ---- rows ---- */

__global__ void k_gather_rows(float *dst, const float *src, const int *index, int rows, int d) {
  size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (size_t)rows * d)
    return;
  size_t r = t / d, i = t % d;
  dst[t] = src[(size_t)index[r] * d + i];
}

__global__ void k_scatter_rows(float *dst, const float *src, const int *index, int rows, int d) {
  size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (size_t)rows * d)
    return;
  size_t r = t / d, i = t % d;
  dst[(size_t)index[r] * d + i] = src[t];
}

__global__ void k_embed(float *x, const float *tok_embed, const int *ids, const float *pos_embed,
                        const int *position, int rows, int d) {
  size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (size_t)rows * d)
    return;
  size_t r = t / d, i = t % d;
  float v = tok_embed[(size_t)ids[r] * d + i];
  if (pos_embed)
    v += pos_embed[(size_t)position[r] * d + i];
  x[t] = v;
}

static int cuda_gather_rows(backend_t *b, float *dst, const float *src, const int *index, int rows,
                            int d) {
  PROF(b, P_ROWS);
  size_t n = (size_t)rows * d;
  if (n == 0)
    return 0;
  k_gather_rows<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(dst, src, index, rows, d);
  LAUNCH_CHECK(b);
  return 0;
}

static int cuda_scatter_rows(backend_t *b, float *dst, const float *src, const int *index, int rows,
                             int d) {
  PROF(b, P_ROWS);
  size_t n = (size_t)rows * d;
  if (n == 0)
    return 0;
  k_scatter_rows<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(dst, src, index, rows, d);
  LAUNCH_CHECK(b);
  return 0;
}

static int cuda_embed(backend_t *b, float *x, const float *tok_embed, const int *ids,
                      const float *pos_embed, const int *position, int rows, int d) {
  PROF(b, P_ROWS);
  size_t n = (size_t)rows * d;
  if (n == 0)
    return 0;
  k_embed<<<blocks(n, 256), 256, 0, impl(b)->stream>>>(x, tok_embed, ids, pos_embed, position, rows,
                                                       d);
  LAUNCH_CHECK(b);
  return 0;
}

static int cuda_embed_blocks(backend_t *b, float *x, const void *tok_blocks, uint32_t type,
                             size_t row_bytes, const int *ids, const float *pos_embed,
                             const int *position, int rows, int d) {
  PROF(b, P_ROWS);
  const cudaError_t rc = blocks_embed(impl(b)->stream, tok_blocks, type, row_bytes, ids, pos_embed,
                                      position, rows, d, x);
  if (rc == cudaErrorInvalidValue) {
    const gguf_quant_type_t *tt = gguf_quant_type(type);
    return err_set(b->err, "embed_blocks: type %s rows of %d in %zu bytes cannot be decoded",
                   tt ? tt->name : "?", d, row_bytes);
  }
  CUDA_TRY(b, rc);
  return 0;
}

static int cuda_column_products(backend_t *b, float *y, const float *x, const void *w,
                                uint32_t type, const column_span_t *spans, int n, int out, int in) {
  PROF(b, P_MATMUL);
  const cudaError_t rc = blocks_column_products(impl(b)->stream, y, x, w, type, spans, n, out, in);
  if (rc == cudaErrorInvalidValue) {
    const gguf_quant_type_t *tt = gguf_quant_type(type);
    return err_set(b->err, "column_products: type %s rows of %d cannot be read by column",
                   tt ? tt->name : "?", in);
  }
  CUDA_TRY(b, rc);
  return 0;
}

static void cuda_destroy(backend_t *b);

static backend_ops_t make_ops(void) {
  backend_ops_t o = {};
  o.name = "cuda";
  o.batch_invariant = 0; /* cuBLAS picks its kernel, and so its sums, by the product's shape */
  o.destroy = cuda_destroy;
  o.alloc = cuda_alloc;
  o.free = cuda_free;
  o.upload = cuda_upload;
  o.download = cuda_download;
  o.memset0 = cuda_memset0;
  o.copy = cuda_copy;
  o.synchronize = cuda_synchronize;
  o.memory_available = cuda_memory_available;
  o.set_precision = cuda_set_precision;
  o.attach_thread = cuda_attach_thread;
  o.matmul = cuda_matmul;
  o.matmul_bf16 = cuda_matmul_bf16;
  o.matmul_blocks = cuda_matmul_blocks;
  o.matmul_glu = cuda_matmul_glu;
  o.column_products = cuda_column_products;
  o.layernorm = cuda_layernorm;
  o.head_layernorm = cuda_head_layernorm;
  o.rmsnorm = cuda_rmsnorm;
  o.rope = cuda_rope;
  o.attention = cuda_attention;
  o.attention_rows = cuda_attention_rows;
  o.activation = cuda_activation;
  o.swiglu = cuda_swiglu;
  o.glu = cuda_glu;
  o.scale = cuda_scale;
  o.softcap = cuda_softcap;
  o.add = cuda_add;
  o.gather_rows = cuda_gather_rows;
  o.scatter_rows = cuda_scatter_rows;
  o.embed = cuda_embed;
  o.embed_blocks = cuda_embed_blocks;
  o.intervene = cuda_intervene;
  o.row_dots = cuda_row_dots;
  o.logit_stats = cuda_logit_stats;
  o.logit_metrics = cuda_logit_metrics;
  return o;
}
static const backend_ops_t cuda_ops = make_ops();

static int cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

static backend_t *cuda_create(int n_threads, char *err) {
  (void)n_threads;
  backend_t *b = (backend_t *)calloc(1, sizeof(*b));
  cuda_impl_t *c = (cuda_impl_t *)calloc(1, sizeof(*c));
  if (!b || !c) {
    free(b);
    free(c);
    err_set(err, "out of memory creating the CUDA backend");
    return NULL;
  }
  b->ops = &cuda_ops;
  b->impl = c;
  cudaError_t e;
  cublasStatus_t s;
  if ((e = cudaGetDevice(&c->device)) != cudaSuccess ||
      (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
    err_set(err, "CUDA backend: %s", cudaGetErrorString(e));
    goto fail;
  }
  if ((s = cublasCreate(&c->blas)) != CUBLAS_STATUS_SUCCESS ||
      (s = cublasSetStream(c->blas, c->stream)) != CUBLAS_STATUS_SUCCESS ||
      /* fp32 by default: no TF32 tensor-core shortcuts */
      (s = cublasSetMathMode(c->blas, CUBLAS_PEDANTIC_MATH)) != CUBLAS_STATUS_SUCCESS) {
    err_set(err, "CUDA backend: cuBLAS status %d", (int)s);
    goto fail;
  }
  /* pinned staging; without it (cudaHostAlloc refused) copies go directly */
  if (cudaHostAlloc((void **)&c->pin, (size_t)PIN_SEGS * PIN_SEG, cudaHostAllocDefault) !=
      cudaSuccess) {
    cudaGetLastError();
    c->pin = NULL;
  }
  for (int i = 0; c->pin && i < PIN_SEGS; i++)
    if (cudaEventCreateWithFlags(&c->pin_ev[i], cudaEventDisableTiming) != cudaSuccess ||
        cudaEventRecord(c->pin_ev[i], c->stream) != cudaSuccess) {
      err_set(err, "CUDA backend: cannot create staging events");
      goto fail;
    }
  if (getenv("HYDRA_CUDA_PROFILE") && atoi(getenv("HYDRA_CUDA_PROFILE")) > 0) {
    prof_t *p = &c->prof;
    p->cap = 8192;
    p->ev = (cudaEvent_t *)calloc(2 * (size_t)p->cap, sizeof(cudaEvent_t));
    p->op = (int *)calloc((size_t)p->cap, sizeof(int));
    p->on = p->ev && p->op;
    for (int i = 0; p->on && i < 2 * p->cap; i++)
      if (cudaEventCreate(&p->ev[i]) != cudaSuccess)
        p->on = 0;
    p->wall0 = clock_monotonic();
  }
  return b;
fail:
  cuda_destroy(b);
  return NULL;
}

static void cuda_destroy(backend_t *b) {
  if (!b)
    return;
  cuda_impl_t *c = impl(b);
  if (c && c->prof.on) {
    prof_t *p = &c->prof;
    cudaStreamSynchronize(c->stream);
    prof_flush(p);
    double total = 0;
    for (int i = 0; i < P_N; i++)
      total += p->ms[i];
    const double wall = (clock_monotonic() - p->wall0) * 1e3;
    fprintf(stderr,
            "hydra cuda profile: %.1f ms wall since the backend was created, %.1f ms in ops "
            "(GPU busy %.0f%%)\n",
            wall, total, wall > 0 ? 100 * total / wall : 0);
    for (int i = 0; i < P_N; i++)
      if (p->calls[i])
        fprintf(stderr, "  %-22s %10.1f ms %5.1f%% %9ld calls %8.1f us/call\n", prof_names[i],
                p->ms[i], total > 0 ? 100 * p->ms[i] / total : 0, p->calls[i],
                1e3 * p->ms[i] / p->calls[i]);
    for (int i = 0; i < 2 * p->cap; i++)
      if (p->ev[i])
        cudaEventDestroy(p->ev[i]);
    free(p->ev);
    free(p->op);
  }
  if (c) {
    if (c->stream)
      cudaStreamSynchronize(c->stream);
    for (int i = 0; i < PIN_SEGS; i++)
      if (c->pin_ev[i])
        cudaEventDestroy(c->pin_ev[i]);
    if (c->pin)
      cudaFreeHost(c->pin);
    if (c->blas)
      cublasDestroy(c->blas);
    if (c->stream)
      cudaStreamDestroy(c->stream);
    free(c);
  }
  free(b);
}

extern "C" const backend_entry_t backend_cuda_entry = {"cuda", cuda_device_count, cuda_create};
