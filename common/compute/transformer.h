/* transformer.h - the one transformer: a block driven by the model's block
 * description (model/model.h), run over a batch of rows on a backend, with
 * hook sites where a caller captures, intervenes or reads out.
 *
 * The plain forward pass (forward.h) and the ablation engine (ablation/)
 * both run transformer_run; neither has a copy of the block. A pass is a
 * set of rows (token positions of sequences, or of ablated variants of
 * them) with their key/value layout; rows may join the pass at any
 * sub-stage (attention or MLP of a layer), entering through a hook, and
 * each sub-stage runs once over the rows active there.
 *
 * A transformer_t holds the model's weights in backend memory (uploaded
 * once; fp32 weights used in place on a host-memory backend; a bf16 model's
 * projections as bf16, widened per product) and work buffers for the rows
 * of a pass. One thread at a time. */
#ifndef HYDRA_TRANSFORMER_H
#define HYDRA_TRANSFORMER_H

#include <stddef.h>

#include "backend.h"
#include "model.h"

typedef struct transformer transformer_t;

/* Hook sites, in the order a layer reaches them. Widths: d = d_model,
 * H*hd = n_heads * head_dim, KV*hd = n_kv_heads * head_dim, F = d_mlp. */
typedef enum {
  HOOK_EMBED,      /* [rows, d]: the embeddings (layer 0's input, before resid_pre.0) */
  HOOK_RESID_PRE,  /* [rows, d]: layer L's input residual */
  HOOK_Q,          /* [rows, H*hd]: every head's query, after a q norm, before the rotary */
  HOOK_K,          /* [rows, KV*hd]: every key head's key, after a k norm, before the rotary */
  HOOK_V,          /* [rows, KV*hd]: every value head's value */
  HOOK_PATTERN,    /* not a buffer: the attention patterns, through hooks.pattern */
  HOOK_ATTN_HEADS, /* [rows, H*hd]: every head's output before the output projection */
  HOOK_ATTN_OUT,   /* [rows, d]: what attention adds to the residual (after a post norm) */
  HOOK_RESID_MID,  /* [rows, d]: the residual between attention and MLP (sequential) */
  HOOK_MLP_HIDDEN, /* [rows, F]: the MLP's hidden units, after the activation (or gate) */
  HOOK_MLP_OUT,    /* [rows, d]: what the MLP adds to the residual (after a post norm) */
  HOOK_RESID_POST, /* [rows, d]: layer L's output residual */
  HOOK_N
} hook_site_t;

/* A pass's hooks; every function is optional (NULL: nothing there). Each
 * returns 0, or non-zero to stop the pass after writing why into err
 * (HYDRA_ERR_LEN bytes; transformer_run clears it and reports it).
 *
 * join: rows [first, n) of the residual x[*, d] join the pass at sub-stage
 *   `stage` (2L: attention of layer L, 2L + 1: its MLP) and must be filled
 *   with their residual there. Called before the stage's sites.
 * at: the `n` active rows of a site of `layer` (0 for HOOK_EMBED) in `buf`
 *   [n, width]; the hook may read them (capture, read out) or write them
 *   (intervene) before the block goes on with them.
 * pattern: layer L's attention has run over its `n` active rows (before
 *   HOOK_ATTN_HEADS); the hook may read heads' attention patterns at some
 *   of them, or give them other patterns, through
 *   transformer_attention_rows (TransformerLens' hook_pattern). */
typedef struct {
  void *ctx;
  char *err;
  int (*join)(void *ctx, int stage, float *x, int first, int n);
  int (*at)(void *ctx, hook_site_t site, int layer, float *buf, int n, int width);
  int (*pattern)(void *ctx, int layer, int n);
} transformer_hooks_t;

/* Where a pass's keys and values live:
 * KV_OWN: in the pass's work buffers; each row attends to its own
 *   sequence's rows (the plain forward pass).
 * KV_FILL_CACHE: written into a cache (layer L at cache_k + L * layer_stride
 *   floats, row r of the pass at row r); rows attend within it (a clean pass
 *   keeping keys/values for later passes).
 * KV_CACHE_PREFIX: rows attend first to a range of the cache (the clean
 *   prefix), then to a range of the pass's own rows (their recomputed
 *   suffix); see the layout's second key range. */
typedef enum { KV_OWN, KV_FILL_CACHE, KV_CACHE_PREFIX } kv_mode_t;

typedef struct {
  int rows;
  /* [2 n_layers]: rows active at each sub-stage, non-decreasing: the first
   * stage_rows[k] rows of the pass run sub-stage k (rows beyond join
   * later). NULL: every row from the embeddings on. */
  const int *stage_rows;
  /* Token ids of every row in backend memory: the pass starts with the
   * embeddings. NULL: rows enter only through hooks.join. */
  const int *ids;
  kv_mode_t kv;
  float *cache_k, *cache_v; /* KV_FILL_CACHE, KV_CACHE_PREFIX */
  size_t cache_layer_stride;
  transformer_hooks_t hooks;
} transformer_pass_t;

/* The model must outlive the transformer (a host-memory backend reads its
 * weights in place). NULL with err filled on failure (out of backend
 * memory). */
transformer_t *transformer_create(const model_t *m, backend_t *b, char *err);
void transformer_destroy(transformer_t *t);

/* Work buffers for passes of up to `rows` rows (grown, never shrunk, until
 * transformer_release_work). */
int transformer_reserve(transformer_t *t, int rows, char *err);
void transformer_release_work(transformer_t *t);
/* Backend bytes the work buffers take per row of a pass. */
size_t transformer_row_bytes(const model_config_t *c);

/* The layout of the next pass's rows (host arrays, uploaded here):
 * position[r] (rotary and learned positions), and the key rows row r
 * attends to: n_keys[r] rows from key_start[r] (of the pass's own keys, or
 * of the cache for KV_CACHE_PREFIX), then, for KV_CACHE_PREFIX only,
 * n_keys2[r] of the pass's own rows from key2_start[r] (key2_start and
 * n_keys2 NULL otherwise). */
int transformer_set_layout(transformer_t *t, int rows, const int *position, const int *key_start,
                           const int *n_keys, const int *key2_start, const int *n_keys2, char *err);

/* Runs every layer over the pass; afterwards transformer_residual(t) holds
 * the residual entering the final norm for the rows active at the last
 * sub-stage. Returns 0 or -1 (err: what a hook wrote, or the backend's
 * message). pass->hooks.err is where hooks write (it may be err itself, or
 * NULL when no hook fails). */
int transformer_run(transformer_t *t, const transformer_pass_t *pass, char *err);

/* Only inside hooks.pattern: backend op attention_rows on the layer's
 * attention as it just ran (its queries after the rotary, its keys and
 * values, the pass's layout): entries[n] and patterns in backend memory.
 * A row's keys are its positions 0..p in order, whichever run holds them. */
int transformer_attention_rows(transformer_t *t, float *patterns, const pattern_entry_t *entries,
                               int n, char *err);

/* The final norm of `rows` rows of x[*, d] into y, with inv_scale[rows]
 * (optional) receiving each row's 1/scale (frozen for direct effects). */
int transformer_final_norm(transformer_t *t, float *y, float *inv_scale, const float *x, int rows);

/* logits[rows, vocab] = x[rows, d] . unembed^T (+ the unembedding's bias, if any;
 * before any final-logit soft-cap) */
int transformer_unembed(transformer_t *t, float *logits, const float *x, int rows);

/* In place on logits[rows, vocab]: the model's final-logit soft-cap, if it
 * has one (c tanh(logits / c)); the model's output distribution's logits. */
int transformer_cap_logits(transformer_t *t, float *logits, int rows);

/* The pass's residual buffer [rows, d] (backend memory). */
float *transformer_residual(transformer_t *t);

/* The model as the backend holds it: the same description, every array in
 * backend memory. For a bf16 model (model_t.weights_dtype) the projection
 * matrices and the unembedding hold bf16 data, for a native one the layer
 * projections point at model_blocks_t (pass them only to
 * transformer_matmul and transformer_column_products) and the embedding and unembedding are
 * embed_blocks and unembed_blocks (tok_embed and unembed are NULL). */
const model_t *transformer_weights(const transformer_t *t);

/* y[rows, out] = x[rows, in] . w[out, in]^T (+ bias) for w one of
 * transformer_weights(t)'s projection matrices, in the dtype they are held
 * in (backend ops matmul, matmul_bf16 or matmul_blocks). */
int transformer_matmul(transformer_t *t, float *y, const float *x, const float *w,
                       const float *bias, int rows, int out, int in, int accumulate);

/* The backend op column_products on such a matrix w[out, in]: y[s.row, :]
 * += the sum over each span s of x[s.row, c] w[:, c] for c in its columns,
 * spans[n] in backend memory. */
int transformer_column_products(transformer_t *t, float *y, const float *x, const float *w,
                                const column_span_t *spans, int n, int out, int in);

#endif
