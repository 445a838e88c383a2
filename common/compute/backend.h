/* backend.h - the one interface the engine drives; cpu/ and cuda/ implement it.
 *
 * A backend is a table of ops over float buffers that live in the backend's
 * memory (host memory for the CPU backend, device memory for CUDA). Buffers
 * come from ops->alloc and are reused across calls; no op allocates. Index
 * arrays (int) live in backend memory too.
 *
 * Every op returns 0, or -1 after writing what failed into b->err. Ops are
 * issued in order on the backend's stream; results are visible on the host
 * after ops->download. A backend_t is used by one thread at a time.
 *
 * Layouts are row-major. A "row" is one token position of one sequence (or
 * of one ablated variant of it). Projections are stored [out, in]. */
#ifndef HYDRA_BACKEND_H
#define HYDRA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model.h"

typedef struct backend backend_t;

typedef enum { INTERVENE_SET, INTERVENE_SCALE, INTERVENE_ADD } intervene_kind_t;

/* One intervention on a row range of columns; see ops->intervene. */
typedef struct {
  int row;
  int col0, col1;
  int kind; /* intervene_kind_t */
  int src_offset;
  float alpha;
} intervention_t;

/* Columns [col0, col1) of one row, for ops->column_products. */
typedef struct {
  int row;
  int col0, col1;
} column_span_t;

/* One head's pattern row for ops->attention_rows. */
typedef enum { PATTERN_READ, PATTERN_SET, PATTERN_SCALE } pattern_kind_t;

typedef struct {
  int row, head;
  int kind;    /* pattern_kind_t */
  int offset;  /* into the op's patterns: the row's keys' probabilities from here */
  float alpha; /* PATTERN_SCALE */
} pattern_entry_t;

typedef struct {
  const char *name;
  /* 1 when the products (matmul, matmul_bf16, matmul_blocks) give a row the
   * same floats bit for bit whatever the other rows of its batch, its place
   * in the batch, the tiles and the thread count (the CPU backend's
   * cpu/product.c); 0 when a row may round differently in another batch
   * (cuBLAS), within the fp32 product's bound. */
  int batch_invariant;
  /* Frees the backend and everything it holds (b may be NULL). */
  void (*destroy)(backend_t *b);

  /* ---- memory ---- */
  void *(*alloc)(backend_t *b, size_t bytes);
  void (*free)(backend_t *b, void *p);
  int (*upload)(backend_t *b, void *dst, const void *src, size_t bytes);
  int (*download)(backend_t *b, void *dst, const void *src, size_t bytes);
  int (*memset0)(backend_t *b, void *dst, size_t bytes);
  int (*copy)(backend_t *b, void *dst, const void *src, size_t bytes); /* within backend memory */
  int (*synchronize)(backend_t *b);
  /* Bytes the backend could still allocate (free device memory), or 0 when it
   * does not know (host memory): the engine sizes its passes from it. */
  size_t (*memory_available)(backend_t *b);
  /* Matrix-product precision: 0 fp32 (the default), 1 TF32 tensor cores
   * where the backend has them. Returns the precision now in force (the CPU
   * backend has no TF32 and stays at 0). */
  int (*set_precision)(backend_t *b, int tf32);
  /* Makes the calling thread ready to drive the backend: state that is per
   * thread (OpenMP's thread count, CUDA's current device). A thread other
   * than the one that created the backend calls it before its first op. */
  void (*attach_thread)(backend_t *b);

  /* ---- ops ----
   * y[rows, out] = x[rows, in] . w[out, in]^T (+ bias[out], if non-NULL);
   * with accumulate, y += instead of y =. */
  int (*matmul)(backend_t *b, float *y, const float *x, const float *w, const float *bias, int rows,
                int out, int in, int accumulate);

  /* matmul with w[out, in] held as bfloat16 (common/bf16.h): the same
   * product in fp32, with the weights widened exactly. scratch is backend
   * memory of scratch_floats >= in floats that the op may overwrite: w is
   * widened into it a block of rows at a time (fewer, larger products when
   * it holds all out * in). */
  int (*matmul_bf16)(backend_t *b, float *y, const float *x, const uint16_t *w, const float *bias,
                     int rows, int out, int in, int accumulate, float *scratch,
                     size_t scratch_floats);

  /* matmul with w[out, in] held in a GGUF block format (gguf_quants.h): row
   * o is in / block_size blocks of `type` (one of model_native_type's) at
   * w + o * row_bytes, in backend memory. The same product in fp32 as matmul
   * on the weights dequantised at load (each value exactly as gguf_quants
   * decodes it): tiles of rows are decoded into scratch (backend memory of
   * scratch_floats >= in floats the op may overwrite) just before their
   * product, in tiles of equal size (at most as many rows as scratch
   * holds; a backend may take smaller ones for a product of few rows, the
   * same for every type); F32 rows are multiplied where they are, in the
   * same tiles (scratch is not touched and may be NULL; scratch_floats
   * sets the tiles). A product's floats depend on its tiles (a BLAS's order
   * of sums depends on the width): equal tiles, equal floats, and matmul
   * gives the floats of matmul_blocks with a scratch that holds all of w. */
  int (*matmul_blocks)(backend_t *b, float *y, const float *x, const void *w, uint32_t type,
                       const float *bias, int rows, int out, int in, int accumulate, float *scratch,
                       size_t scratch_floats);

  /* A gated MLP's gate and up products as one (MLP_SWIGLU, MLP_GEGLU):
   * gate[rows, out] = act(x . w_gate^T) * (x . w_up^T + b_up), b_up NULL
   * for none, w_gate and w_up fp32 [out, in]; up[rows, out] is the op's to
   * overwrite. act ACT_SILU gives swiglu's floats, another act glu's: the
   * floats of matmul (gate), matmul (up), then swiglu or glu bit for bit
   * on a batch_invariant backend (the CPU's finishes each tile of hidden
   * units in cache, with no pass of its own over gate and up), within the
   * fp32 product's bound on another (CUDA adds the bias after the product). */
  int (*matmul_glu)(backend_t *b, float *gate, float *up, const float *x, const float *w_gate,
                    const float *w_up, const float *b_up, int rows, int out, int in,
                    activation_t act);

  /* A product over a few of w's columns at chosen rows (a head's slice of
   * the output projection, a neuron's column of the down projection): for
   * every span s of spans[n] (backend memory),
   *   y[s.row, o] += sum over c in [s.col0, s.col1) of x[s.row, c] w[o, c]
   * for o < out, x[*, in] and y[*, out] row-major, w[out, in] held as
   * `type`, one of model_native_type's: GGUF_TENSOR_F32 (fp32 rows),
   * GGUF_TENSOR_BF16 (the matmul_bf16 weights), a block type (rows of in /
   * block_size blocks, the blocks that hold a span's columns decoded as
   * gguf_quants decodes them). The spans of one row are consecutive in the
   * table and do not overlap. Each y[row, o] gets one addition: the float
   * sum of its spans' sums in table order, each span's in an order of its
   * columns fixed by the backend, whatever the other rows (the same floats
   * in any batch). */
  int (*column_products)(backend_t *b, float *y, const float *x, const void *w, uint32_t type,
                         const column_span_t *spans, int n, int out, int in);

  /* y[rows, d] = (x - mean) / sqrt(var + eps) * gamma + beta; inv_scale[rows]
   * (optional) receives 1 / sqrt(var + eps), the scale the direct effects freeze. */
  int (*layernorm)(backend_t *b, float *y, float *inv_scale, const float *x, const float *gamma,
                   const float *beta, int rows, int d, float eps);

  /* In place on x[rows, n_heads * head_dim]: every head's head_dim values
   * LayerNormed, (x - mean) / sqrt(var + eps) * gamma + beta, head h with
   * its own gamma[h * head_dim ...] and beta[h * head_dim ...] (beta NULL:
   * none): q/k norms per head (QK_NORM_LAYERNORM_HEADS). */
  int (*head_layernorm)(backend_t *b, float *x, const float *gamma, const float *beta, int rows,
                        int n_heads, int head_dim, float eps);

  /* y[rows, d] = x / sqrt(mean(x^2) + eps) * gamma; inv_scale as above. */
  int (*rmsnorm)(backend_t *b, float *y, float *inv_scale, const float *x, const float *gamma,
                 int rows, int d, float eps);

  /* In place on x[rows, n_heads * head_dim]: rotate the first rotary_dim
   * dimensions of every head, pair i (< rotary_dim/2) by the angle
   * position[row] * inv_freq[i], in the Hugging Face "rotate_half" pairing
   * (i with i + rotary_dim/2), with cos and sin multiplied by attn_scale
   * (yarn's attention factor; 1: none): x_i' = s (x_i cos - x_j sin),
   * x_j' = s (x_j cos + x_i sin). inv_freq[rotary_dim/2] is in backend
   * memory (model_rope_frequencies, rounded to float). */
  int (*rope)(backend_t *b, float *x, const int *position, const float *inv_freq, int rows,
              int n_heads, int head_dim, int rotary_dim, float attn_scale);

  /* Causal softmax attention. out[rows, n_heads*head_dim]; q likewise.
   * Query row r attends to n_keys[r] key rows of k/v starting at
   * key_start[r], then (when k2 is non-NULL) to n_keys2[r] rows of k2/v2
   * starting at key2_start[r]: a variant reads its clean prefix from the clean
   * pass's cache and its recomputed suffix from its own rows. k, v, k2, v2 are
   * [*, n_kv_heads*head_dim]; head h reads kv head h / (n_heads / n_kv_heads).
   * Scores are q.k * scale (1/sqrt(head_dim) for most families), then, with
   * softcap > 0, softcap * tanh(score / softcap) (Gemma 2's attention
   * soft-cap). window > 0: a row reads only the last `window` of its keys
   * (its own and the window - 1 before it: a sliding window, the keys being
   * the row's positions 0..p in order across the two runs); 0: all. */
  int (*attention)(backend_t *b, float *out, const float *q, const float *k, const float *v,
                   const int *key_start, const int *n_keys, const float *k2, const float *v2,
                   const int *key2_start, const int *n_keys2, int rows, int n_heads, int n_kv_heads,
                   int head_dim, float scale, float softcap, int window);

  /* One head's attention pattern at chosen rows (TransformerLens'
   * hook_pattern), with the arguments attention took (the same rows of q,
   * keys and values, layout, scale, softcap, window). Key j of row r counts
   * its n_keys[r] + n_keys2[r] keys in order (the first run, then the
   * second); the pattern p_j is the softmax of the row's scores, 0 before
   * its window. For each entry e (head e.head of row e.row), over its keys:
   * PATTERN_READ writes p_j to patterns[e.offset + j] (out untouched);
   * PATTERN_SET makes the head's output out[e.row, e.head*hd ...] =
   * sum_j patterns[e.offset + j] v_j (a given pattern row, window or not);
   * PATTERN_SCALE makes it sum_j alpha p_j v_j. Entries name distinct (row,
   * head)s; n_entries 0 does nothing. Sums in float, as attention's. */
  int (*attention_rows)(backend_t *b, float *out, float *patterns, const pattern_entry_t *entries,
                        int n_entries, const float *q, const float *k, const float *v,
                        const int *key_start, const int *n_keys, const float *k2, const float *v2,
                        const int *key2_start, const int *n_keys2, int n_heads, int n_kv_heads,
                        int head_dim, float scale, float softcap, int window);

  /* In place x[n] = act(x). */
  int (*activation)(backend_t *b, float *x, size_t n, activation_t act);

  /* gate[n] = silu(gate) * up, in place on gate. */
  int (*swiglu)(backend_t *b, float *gate, const float *up, size_t n);

  /* gate[n] = act(gate) * up, in place on gate (GeGLU with a GELU act). */
  int (*glu)(backend_t *b, float *gate, const float *up, size_t n, activation_t act);

  /* In place x[n] *= alpha (Gemma's embedding scale). */
  int (*scale)(backend_t *b, float *x, size_t n, float alpha);

  /* In place x[n] = cap * tanh(x / cap), cap > 0 (a final-logit soft-cap). */
  int (*softcap)(backend_t *b, float *x, size_t n, float cap);

  /* y[n] += x[n] */
  int (*add)(backend_t *b, float *y, const float *x, size_t n);

  /* dst[i, :] = src[index[i], :] for i < rows; rows of d floats. */
  int (*gather_rows)(backend_t *b, float *dst, const float *src, const int *index, int rows, int d);

  /* dst[index[i], :] = src[i, :] for i < rows. */
  int (*scatter_rows)(backend_t *b, float *dst, const float *src, const int *index, int rows,
                      int d);

  /* x[r, :] = tok_embed[ids[r], :] (+ pos_embed[position[r], :] when pos_embed
   * is non-NULL). ids must be < vocab (checked by the caller). */
  int (*embed)(backend_t *b, float *x, const float *tok_embed, const int *ids,
               const float *pos_embed, const int *position, int rows, int d);

  /* embed with the token table in a GGUF block format (as matmul_blocks's
   * w): row t is d values of `type` in row_bytes bytes at tok_blocks + t *
   * row_bytes; x[r, :] = row ids[r] decoded (each value exactly as
   * gguf_quants decodes it) (+ pos_embed[position[r], :]). Only the rows
   * asked for are decoded. */
  int (*embed_blocks)(backend_t *b, float *x, const void *tok_blocks, uint32_t type,
                      size_t row_bytes, const int *ids, const float *pos_embed, const int *position,
                      int rows, int d);

  /* Interventions: for every entry e, for columns c in [col0, col1) of row
   * e.row of x[*, width]: SET x = src[src_offset + c - col0]; SCALE x *= alpha;
   * ADD x += src[src_offset + c - col0]. Entries must not overlap (each
   * (row, column) is written by at most one entry). One launch for a whole
   * table: all variants of a layer at once. */
  int (*intervene)(backend_t *b, float *x, int width, const intervention_t *entries, int n,
                   const float *src);

  /* out[out_index[i]] = dot(x[x_row[i], :], dirs[dir_row[i], :]) over d
   * columns, for i < n: direct effects (a component's output projected on a
   * prompt's frozen-norm target direction) and centred target logits. */
  int (*row_dots)(backend_t *b, float *out, const int *out_index, const float *x, const int *x_row,
                  const float *dirs, const int *dir_row, int n, int d);

  /* For each of `rows` rows of `vocab` logits (the clean run's, in backend
   * memory), what the engine reads of them when no metric needs the whole
   * distribution, so the rows never leave the device: best[r] the argmax
   * (the first of equal maxima; NaNs never win; 0 when every logit is NaN),
   * stats[3 r + 1] the logit of targets[r] (targets[r] < 0: of the argmax),
   * stats[3 r] that logit centred, less the mean logit (in double),
   * stats[3 r + 2] the logit of foils[r] (foils NULL or foils[r] < 0: 0).
   * Ids must be < vocab. */
  int (*logit_stats)(backend_t *b, int *best, float *stats, const float *logits, int rows,
                     int vocab, const int *targets, const int *foils);

  /* The full-distribution metrics of `rows` rows of `vocab` logits (in
   * backend memory), reduced where the logits are. Row r is a run of prompt
   * p = prompt[r]: its target t is targets[p] (< 0: the row's argmax, as in
   * logit_stats), its foil foils[p] (foils NULL or < 0: none). With lse the
   * row's log-sum-exp (in double):
   *   out[5 r]     l[t] - lse, the target's log-prob;  out[5 r + 1] its exp;
   *   out[5 r + 2] KL(ref || row) = sum_k exp(q_k) (q_k - l_k + lse), q the
   *                reference log-probs ref_lp[p * vocab ...] (ref_lp NULL: 0);
   *   out[5 r + 3] the target's rank, #{k : l_k > l[t]};
   *   out[5 r + 4] l[t] - l[foil] (0 without a foil).
   * lp_out non-NULL: lp_out[r * vocab + k] = l_k - lse (the clean run's
   * log-probs, the reference of its ablated runs). Sums in double; ids must be
   * < vocab. softcap > 0: the logits given are a final-logit soft-cap's input
   * and the distribution is the capped one: every l_k above except the
   * logit difference (out[5 r + 4], on the logits as given) reads
   * softcap * tanh(logits / softcap); the target by default is still the
   * argmax of the logits given, and the rank is counted on them too (the cap
   * keeps the order; no ties from its rounding). */
  int (*logit_metrics)(backend_t *b, float *out, float *lp_out, const float *logits, int rows,
                       int vocab, const int *prompt, const int *targets, const int *foils,
                       const float *ref_lp, float softcap);
} backend_ops_t;

struct backend {
  const backend_ops_t *ops;
  int host_memory; /* buffers are plain host memory: model weights can be used in place */
  void *impl;
  char err[HYDRA_ERR_LEN];
};

/* A backend a build can create: each backend folder defines one entry
 * (backend_cpu_entry, backend_cuda_entry); the build lists those it
 * compiled, in the order "auto" prefers them (compute/registry.c). */
typedef struct {
  const char *name;
  /* Devices this machine has for it (the CPU: 1); 0: not usable here. */
  int (*device_count)(void);
  backend_t *(*create)(int n_threads, char *err);
} backend_entry_t;

/* Creates a backend by name: an entry's name, or "auto" (the first entry of
 * the build with a device: CUDA when built and a GPU is visible, else the
 * CPU). n_threads <= 0 means all cores. Returns NULL with err filled when
 * the backend is not available (not built, or no device). */
backend_t *backend_create(const char *name, int n_threads, char *err);

/* b->ops->destroy(b); NULL is allowed. */
void backend_destroy(backend_t *b);

/* 1 when this build has the CUDA backend and a device is visible. */
int backend_cuda_available(void);

#endif
