/* transformer.c - the one transformer block; see transformer.h. */
#include "transformer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "gguf_quants.h"

struct transformer {
  const model_t *host;
  model_t dev; /* the same description with every array in backend memory */
  backend_t *b;
  int bf16;               /* projections held as bf16 (see upload_weights) */
  int native;             /* projections held in their file's blocks (model_blocks_t) */
  model_blocks_t *blocks; /* [n_layers * MODEL_LAYER_TENSORS]: native projections in backend
                             memory (a backend with its own memory) */
  model_blocks_t embed_blocks, unembed_blocks; /* likewise, the native embedding, unembedding */
  float *scratch;        /* [scratch_floats]: projections widened or decoded for a product */
  float *inv_freq;       /* [rotary_dim / 2]: the rotary's scaled inverse frequencies (RoPE only) */
  float *inv_freq_local; /* [rotary_dim / 2]: sliding layers' (rope_local_theta), or NULL */
  float rope_scale;      /* cos and sin multiplied by it (yarn's attention factor) */
  size_t scratch_floats;
  /* work buffers for capacity rows, named after what they hold */
  int capacity;
  float *resid;      /* [rows, d]: the residual stream */
  float *normed;     /* [rows, d]: a norm's output, the input of a sublayer */
  float *mlp_normed; /* [rows, d]: parallel residual only: the MLP's input */
  float *q, *k, *v;  /* [rows, H*hd], [rows, KV*hd] x2 */
  float *heads;      /* [rows, H*hd]: attention's per-head outputs */
  float *out;        /* [rows, d]: a sublayer's output, added to the residual */
  float *hidden;     /* [rows, F]: the MLP's hidden units */
  float *up;         /* [rows, F]: the gated MLP's up projection */
  float *embed_in;   /* [rows, embed_proj_dim]: a projected embedding's narrow rows */
  int *position, *key_start, *n_keys, *key2_start, *n_keys2;
  /* the attention a pattern hook runs inside (transformer_attention_rows) */
  struct {
    const transformer_pass_t *pass;
    int layer;
    const float *k, *v;
  } in_attention;
};

static float *upload(backend_t *b, const float *src, size_t n, int *failed) {
  if (!src || *failed)
    return NULL;
  float *dst = b->ops->alloc(b, n * sizeof(float));
  if (!dst || b->ops->upload(b, dst, src, n * sizeof(float)) != 0)
    *failed = 1;
  return dst;
}

/* A projection of a bf16 model: n bf16 values (exact, the model is rounded)
 * behind a float pointer that only transformer_matmul reads. */
static float *upload_bf16(backend_t *b, const float *src, size_t n, int *failed) {
  if (!src || *failed)
    return NULL;
  enum { CHUNK = 1 << 22 };
  uint16_t *dst = b->ops->alloc(b, n * sizeof(uint16_t));
  uint16_t *tmp = malloc(sizeof(uint16_t) * (n < CHUNK ? n : CHUNK));
  if (!dst || !tmp) {
    if (!tmp)
      err_set(b->err, "out of host memory");
    *failed = 1;
  }
  for (size_t i = 0; i < n && !*failed; i += CHUNK) {
    size_t k = n - i < CHUNK ? n - i : CHUNK;
    for (size_t j = 0; j < k; j++)
      tmp[j] = bf16_from_float(src[i + j]);
    if (b->ops->upload(b, dst + i, tmp, k * sizeof(uint16_t)) != 0)
      *failed = 1;
  }
  free(tmp);
  return (float *)dst;
}

/* A native projection's blocks copied to backend memory, described by dst. */
static float *upload_blocks(backend_t *b, const float *src, model_blocks_t *dst, int *failed) {
  const model_blocks_t *hb = (const model_blocks_t *)src;
  if (!src || *failed)
    return NULL;
  *dst = *hb;
  dst->borrowed = 0; /* the transformer's own copy */
  const size_t bytes = (size_t)hb->rows * hb->row_bytes;
  if (!(dst->blocks = b->ops->alloc(b, bytes)) ||
      b->ops->upload(b, dst->blocks, hb->blocks, bytes) != 0)
    *failed = 1;
  return (float *)dst;
}

/* Frees a device array unless it is the host's own (used in place). */
static void release(backend_t *b, float *p, const float *host) {
  if (p && p != host)
    b->ops->free(b, p);
}

static void free_device_weights(transformer_t *t) {
  const model_t *m = t->host;
  model_t *d = &t->dev;
  if (t->embed_blocks.blocks)
    t->b->ops->free(t->b, t->embed_blocks.blocks);
  if (t->unembed_blocks.blocks)
    t->b->ops->free(t->b, t->unembed_blocks.blocks);
  for (int l = 0; l < d->cfg.n_layers; l++) {
    layer_weights_t hw = m->layers[l];
    float **ptr[MODEL_LAYER_TENSORS], **hptr[MODEL_LAYER_TENSORS];
    size_t len[MODEL_LAYER_TENSORS];
    int proj[MODEL_LAYER_TENSORS];
    int n = model_layer_tensors(&d->cfg, &d->layers[l], ptr, len, proj);
    model_layer_tensors(&d->cfg, &hw, hptr, len, NULL);
    for (int i = 0; i < n; i++) {
      if (t->native && proj[i]) {
        if (*ptr[i] && *ptr[i] != *hptr[i] && ((model_blocks_t *)*ptr[i])->blocks)
          t->b->ops->free(t->b, ((model_blocks_t *)*ptr[i])->blocks);
      } else {
        release(t->b, *ptr[i], *hptr[i]);
      }
    }
  }
  free(t->blocks);
  if (d->unembed != d->tok_embed)
    release(t->b, d->unembed, m->unembed);
  release(t->b, d->tok_embed, m->tok_embed);
  release(t->b, d->embed_proj_in, m->embed_proj_in);
  release(t->b, d->embed_proj_out, m->embed_proj_out);
  release(t->b, d->pos_embed, m->pos_embed);
  release(t->b, d->final_norm_w, m->final_norm_w);
  release(t->b, d->final_norm_b, m->final_norm_b);
  release(t->b, d->unembed_b, m->unembed_b);
  if (t->scratch)
    t->b->ops->free(t->b, t->scratch);
  if (t->inv_freq)
    t->b->ops->free(t->b, t->inv_freq);
  if (t->inv_freq_local)
    t->b->ops->free(t->b, t->inv_freq_local);
}

/* The rotary's per-pair inverse frequencies, once per model, in backend
 * memory; a second, unscaled set from rope_local_theta for sliding layers. */
static int upload_rope(transformer_t *t, char *err) {
  const model_config_t *c = &t->host->cfg;
  const int half = c->rotary_dim / 2;
  double freq[512];
  float freq32[512], local_scale;
  if (half > 512)
    return err_set(err, "rotary_dim %d is larger than 1024", c->rotary_dim);
  model_rope_frequencies(c, freq, &t->rope_scale);
  for (int i = 0; i < half; i++)
    freq32[i] = (float)freq[i];
  int failed = 0;
  t->inv_freq = upload(t->b, freq32, (size_t)half, &failed);
  if (c->rope_local_theta > 0.0f && !failed) {
    model_config_t local = *c;
    local.rope_theta = c->rope_local_theta;
    local.rope_scaling = ROPE_SCALING_NONE;
    model_rope_frequencies(&local, freq, &local_scale);
    for (int i = 0; i < half; i++)
      freq32[i] = (float)freq[i];
    t->inv_freq_local = upload(t->b, freq32, (size_t)half, &failed);
  }
  if (failed)
    return err_set(err, "uploading the rotary frequencies: %s", t->b->err);
  return 0;
}

/* The floats of the largest layer projection: a native product's tiles are
 * those of the product on the weights dequantised at load (a whole matrix,
 * or, on the CPU for few rows, tiles of it decoded one per thread), so the
 * same sgemm calls and the same floats (the CPU's sgemm sums in an order
 * that depends on the matrix's width; tests/bench/RESULTS.md). */
static size_t native_scratch_floats(const model_config_t *c) {
  const size_t d = (size_t)c->d_model, q = (size_t)c->n_heads * c->head_dim,
               kv = (size_t)c->n_kv_heads * c->head_dim, f = (size_t)c->d_mlp;
  size_t largest = q * d > f * d ? q * d : f * d;
  return largest > kv * d ? largest : kv * d;
}

/* On a host-memory backend the weights are used in place (a bf16 model's
 * are rounded fp32 there: the same products, no copy; a native model's
 * blocks are decoded per product into one scratch buffer the size of the
 * largest layer projection). Otherwise every array is copied to the
 * backend: a bf16 model's projections (and its unembedding) are stored as
 * bf16, widened per product into one scratch buffer the size of the largest
 * layer projection; a native model's keep their blocks, decoded the same
 * way. */
static int upload_weights(transformer_t *t, char *err) {
  const model_t *m = t->host;
  model_t *d = &t->dev;
  backend_t *b = t->b;
  const model_config_t *c = &m->cfg;
  *d = *m;
  d->layers = calloc((size_t)c->n_layers, sizeof(layer_weights_t));
  if (!d->layers)
    return err_set(err, "out of memory");
  memcpy(d->layers, m->layers, (size_t)c->n_layers * sizeof(layer_weights_t));
  if (t->native) {
    t->scratch_floats = native_scratch_floats(c);
    if (!(t->scratch = b->ops->alloc(b, t->scratch_floats * sizeof(float))))
      return err_set(err, "allocating %zu floats of scratch for native weights: %s",
                     t->scratch_floats, b->err);
  }
  if (b->host_memory)
    return 0;
  if (t->native &&
      !(t->blocks = calloc((size_t)c->n_layers * MODEL_LAYER_TENSORS, sizeof(model_blocks_t))))
    return err_set(err, "out of memory");
  const size_t vd = (size_t)c->vocab_size * model_embed_width(c),
               proj = (size_t)c->d_model * c->embed_proj_dim;
  int failed = 0;
  for (int l = 0; l < c->n_layers && !failed; l++) {
    float **ptr[MODEL_LAYER_TENSORS];
    size_t len[MODEL_LAYER_TENSORS];
    int proj[MODEL_LAYER_TENSORS];
    int n = model_layer_tensors(c, &d->layers[l], ptr, len, proj);
    for (int i = 0; i < n; i++) {
      if (t->native && proj[i]) {
        *ptr[i] =
            upload_blocks(b, *ptr[i], &t->blocks[(size_t)l * MODEL_LAYER_TENSORS + i], &failed);
      } else if (t->bf16 && proj[i]) {
        *ptr[i] = upload_bf16(b, *ptr[i], len[i], &failed);
        if (len[i] > t->scratch_floats)
          t->scratch_floats = len[i];
      } else {
        *ptr[i] = upload(b, *ptr[i], len[i], &failed);
      }
    }
  }
  if (t->native) { /* the embedding and unembedding in their blocks (tok_embed is NULL) */
    d->embed_blocks = (model_blocks_t *)upload_blocks(b, (const float *)m->embed_blocks,
                                                      &t->embed_blocks, &failed);
    d->unembed_blocks = c->tied_unembed
                            ? d->embed_blocks
                            : (model_blocks_t *)upload_blocks(b, (const float *)m->unembed_blocks,
                                                              &t->unembed_blocks, &failed);
  }
  d->tok_embed = upload(b, m->tok_embed, vd, &failed);
  d->pos_embed = upload(b, m->pos_embed, (size_t)c->max_positions * c->d_model, &failed);
  d->embed_proj_in = upload(b, m->embed_proj_in, proj, &failed);
  d->embed_proj_out = upload(b, m->embed_proj_out, proj, &failed);
  d->final_norm_w = upload(b, m->final_norm_w, c->d_model, &failed);
  d->final_norm_b = upload(b, m->final_norm_b, c->d_model, &failed);
  d->unembed_b = upload(b, m->unembed_b, (size_t)c->vocab_size, &failed);
  if (t->bf16)
    d->unembed = upload_bf16(b, m->unembed, vd, &failed);
  else
    d->unembed = c->tied_unembed ? d->tok_embed : upload(b, m->unembed, vd, &failed);
  if (t->bf16 && !failed && !(t->scratch = b->ops->alloc(b, t->scratch_floats * sizeof(float))))
    failed = 1;
  if (failed)
    return err_set(err, "uploading weights: %s", b->err);
  return 0;
}

int transformer_matmul(transformer_t *t, float *y, const float *x, const float *w,
                       const float *bias, int rows, int out, int in, int accumulate) {
  backend_t *b = t->b;
  if (t->native) {
    const model_blocks_t *w_blocks = (const model_blocks_t *)w;
    return b->ops->matmul_blocks(b, y, x, w_blocks->blocks, w_blocks->type, bias, rows, out, in,
                                 accumulate, t->scratch, t->scratch_floats);
  }
  if (t->bf16)
    return b->ops->matmul_bf16(b, y, x, (const uint16_t *)w, bias, rows, out, in, accumulate,
                               t->scratch, t->scratch_floats);
  return b->ops->matmul(b, y, x, w, bias, rows, out, in, accumulate);
}

int transformer_column_products(transformer_t *t, float *y, const float *x, const float *w,
                                const column_span_t *spans, int n, int out, int in) {
  backend_t *b = t->b;
  if (t->native) {
    const model_blocks_t *w_blocks = (const model_blocks_t *)w;
    return b->ops->column_products(b, y, x, w_blocks->blocks, w_blocks->type, spans, n, out, in);
  }
  return b->ops->column_products(b, y, x, w, t->bf16 ? GGUF_TENSOR_BF16 : GGUF_TENSOR_F32, spans, n,
                                 out, in);
}

/* ------------------------------------------------------ work buffers -- */

size_t transformer_row_bytes(const model_config_t *c) {
  const size_t d = c->d_model, q = (size_t)c->n_heads * c->head_dim,
               kv = (size_t)c->n_kv_heads * c->head_dim, fm = c->d_mlp;
  return sizeof(float) * (2 * d + (c->parallel_residual ? d : 0) + 2 * q + 2 * kv + d + 2 * fm +
                          (size_t)c->embed_proj_dim) +
         sizeof(int) * 5;
}

void transformer_release_work(transformer_t *t) {
  backend_t *b = t->b;
  void *all[] = {t->resid,  t->normed,     t->mlp_normed, t->q,       t->k,        t->v,
                 t->heads,  t->out,        t->hidden,     t->up,      t->position, t->key_start,
                 t->n_keys, t->key2_start, t->n_keys2,    t->embed_in};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    if (all[i])
      b->ops->free(b, all[i]);
  t->resid = t->normed = t->mlp_normed = t->q = t->k = t->v = t->heads = t->out = NULL;
  t->hidden = t->up = t->embed_in = NULL;
  t->position = t->key_start = t->n_keys = t->key2_start = t->n_keys2 = NULL;
  t->capacity = 0;
}

int transformer_reserve(transformer_t *t, int rows, char *err) {
  if (rows <= t->capacity)
    return 0;
  transformer_release_work(t);
  backend_t *b = t->b;
  const model_config_t *c = &t->host->cfg;
  const size_t r = (size_t)rows, d = (size_t)c->d_model, q = (size_t)c->n_heads * c->head_dim,
               kv = (size_t)c->n_kv_heads * c->head_dim, fm = (size_t)c->d_mlp;
  const size_t fl = sizeof(float), in = sizeof(int);
  int failed = 0;
#define ALLOC(field, bytes)                                                                        \
  do {                                                                                             \
    if (!failed && !(t->field = b->ops->alloc(b, bytes)))                                          \
      failed = 1;                                                                                  \
  } while (0)
  ALLOC(resid, r * d * fl);
  ALLOC(normed, r * d * fl);
  if (c->parallel_residual)
    ALLOC(mlp_normed, r * d * fl);
  ALLOC(q, r * q * fl);
  ALLOC(k, r * kv * fl);
  ALLOC(v, r * kv * fl);
  ALLOC(heads, r * q * fl);
  ALLOC(out, r * d * fl);
  ALLOC(hidden, r * fm * fl);
  ALLOC(up, r * fm * fl);
  if (c->embed_proj_dim)
    ALLOC(embed_in, r * (size_t)c->embed_proj_dim * fl);
  ALLOC(position, r * in);
  ALLOC(key_start, r * in);
  ALLOC(n_keys, r * in);
  ALLOC(key2_start, r * in);
  ALLOC(n_keys2, r * in);
#undef ALLOC
  if (failed) {
    transformer_release_work(t);
    return err_set(err, "out of backend memory for a pass of %d rows: %s", rows, b->err);
  }
  t->capacity = rows;
  return 0;
}

int transformer_set_layout(transformer_t *t, int rows, const int *position, const int *key_start,
                           const int *n_keys, const int *key2_start, const int *n_keys2,
                           char *err) {
  backend_t *b = t->b;
  const size_t bytes = (size_t)rows * sizeof(int);
  if (rows > t->capacity)
    return err_set(err, "a pass of %d rows is over the %d reserved", rows, t->capacity);
  if (b->ops->upload(b, t->position, position, bytes) ||
      b->ops->upload(b, t->key_start, key_start, bytes) ||
      b->ops->upload(b, t->n_keys, n_keys, bytes) ||
      (key2_start && b->ops->upload(b, t->key2_start, key2_start, bytes)) ||
      (n_keys2 && b->ops->upload(b, t->n_keys2, n_keys2, bytes)))
    return err_set(err, "backend %s: %s", b->ops->name, b->err);
  return 0;
}

transformer_t *transformer_create(const model_t *m, backend_t *b, char *err) {
  if (model_config_check(&m->cfg, err) != 0)
    return NULL;
  transformer_t *t = calloc(1, sizeof(*t));
  if (!t) {
    err_set(err, "out of memory");
    return NULL;
  }
  t->host = m;
  t->b = b;
  /* host memory: a bf16 model's rounded fp32 in place */
  t->bf16 = m->weights_dtype == WEIGHTS_BF16 && !b->host_memory;
  t->native = m->weights_dtype == WEIGHTS_NATIVE;
  if (t->native && (!b->ops->matmul_blocks || !b->ops->embed_blocks)) {
    err_set(err, "backend %s cannot multiply weights in their blocks (--weights-dtype native)",
            b->ops->name);
    free(t);
    return NULL;
  }
  if (upload_weights(t, err) != 0 ||
      (m->cfg.positions == POSITIONS_ROPE && upload_rope(t, err) != 0)) {
    transformer_destroy(t);
    return NULL;
  }
  return t;
}

void transformer_destroy(transformer_t *t) {
  if (!t)
    return;
  transformer_release_work(t);
  if (t->dev.layers)
    free_device_weights(t);
  free(t->dev.layers);
  free(t);
}

const model_t *transformer_weights(const transformer_t *t) {
  return &t->dev;
}

float *transformer_residual(transformer_t *t) {
  return t->resid;
}

/* ------------------------------------------------------------- the block -- */

static int norm(transformer_t *t, float *y, float *inv_scale, const float *x, const float *gamma,
                const float *beta, int rows) {
  const model_config_t *c = &t->host->cfg;
  if (c->norm == NORM_LAYERNORM)
    return t->b->ops->layernorm(t->b, y, inv_scale, x, gamma, beta, rows, c->d_model, c->norm_eps);
  return t->b->ops->rmsnorm(t->b, y, inv_scale, x, gamma, rows, c->d_model, c->norm_eps);
}

int transformer_final_norm(transformer_t *t, float *y, float *inv_scale, const float *x, int rows) {
  const model_config_t *c = &t->host->cfg;
  if (c->no_final_norm) { /* y = x; no scale to freeze: 0 */
    const size_t bytes = (size_t)rows * c->d_model * sizeof(float);
    if ((y != x && t->b->ops->copy(t->b, y, x, bytes)) ||
        (inv_scale && t->b->ops->memset0(t->b, inv_scale, (size_t)rows * sizeof(float))))
      return -1;
    return 0;
  }
  return norm(t, y, inv_scale, x, t->dev.final_norm_w, t->dev.final_norm_b, rows);
}

/* The unembedding's product runs in tiles of the vocabulary, as many rows
 * as the largest layer projection holds: a native model's are decoded into
 * the scratch of that size (no fp32 unembedding anywhere), and an fp32
 * model's are multiplied in the same tiles (matmul_blocks on F32 rows), so
 * that both give the same floats. */
int transformer_unembed(transformer_t *t, float *logits, const float *x, int rows) {
  const model_config_t *c = &t->host->cfg;
  backend_t *b = t->b;
  if (c->embed_proj_dim) { /* x[rows, d] projected down: [rows, embed_proj_dim] */
    if (rows > t->capacity)
      return err_set(b->err, "unembedding %d rows, over the %d reserved", rows, t->capacity);
    if (b->ops->matmul(b, t->embed_in, x, t->dev.embed_proj_out, NULL, rows, c->embed_proj_dim,
                       c->d_model, 0))
      return -1;
    x = t->embed_in;
  }
  const int width = model_embed_width(c);
  if (t->native)
    return transformer_matmul(t, logits, x, (const float *)t->dev.unembed_blocks, t->dev.unembed_b,
                              rows, c->vocab_size, width, 0);
  if (t->bf16)
    return transformer_matmul(t, logits, x, t->dev.unembed, t->dev.unembed_b, rows, c->vocab_size,
                              width, 0);
  return b->ops->matmul_blocks(b, logits, x, t->dev.unembed, GGUF_TENSOR_F32, t->dev.unembed_b,
                               rows, c->vocab_size, width, 0, NULL, native_scratch_floats(c));
}

int transformer_cap_logits(transformer_t *t, float *logits, int rows) {
  const model_config_t *c = &t->host->cfg;
  if (c->final_softcap <= 0.0f)
    return 0;
  return t->b->ops->softcap(t->b, logits, (size_t)rows * c->vocab_size, c->final_softcap);
}

static int hook(const transformer_pass_t *P, hook_site_t site, int layer, float *buf, int n,
                int width) {
  return P->hooks.at ? P->hooks.at(P->hooks.ctx, site, layer, buf, n, width) : 0;
}

/* Rows [first, n) join at sub-stage k. */
static int join(transformer_t *t, const transformer_pass_t *P, int k, float *x, int first, int n) {
  if (n <= first)
    return 0;
  if (!P->hooks.join)
    return err_set(P->hooks.err ? P->hooks.err : t->b->err,
                   "rows join sub-stage %d of a pass without a join hook", k);
  return P->hooks.join(P->hooks.ctx, k, x, first, n);
}

/* out[n, d] *= the residual scale, where the family has one: what a
 * sublayer adds to the residual, its component's output. */
static int residual_scale(transformer_t *t, int n) {
  const model_config_t *c = &t->host->cfg;
  if (c->residual_scale == 0.0f || c->residual_scale == 1.0f)
    return 0;
  return t->b->ops->scale(t->b, t->out, (size_t)n * c->d_model, c->residual_scale);
}

/* out[n, d] = attention of layer L over input[n, d] (the pre norm's output,
 * or the residual itself without pre norms); keys and values per the pass's
 * kv mode. */
static int attention(transformer_t *t, const transformer_pass_t *P, int L, const float *input,
                     int n) {
  const model_config_t *c = &t->host->cfg;
  const layer_weights_t *w = &t->dev.layers[L];
  const backend_ops_t *op = t->b->ops;
  backend_t *b = t->b;
  const int d = c->d_model, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
  const size_t at_layer = (size_t)L * P->cache_layer_stride;
  float *k = P->kv == KV_FILL_CACHE ? P->cache_k + at_layer : t->k;
  float *v = P->kv == KV_FILL_CACHE ? P->cache_v + at_layer : t->v;
  TRY(transformer_matmul(t, t->q, input, w->wq, w->bq, n, q, d, 0)); /* q[n, H*hd]  */
  TRY(transformer_matmul(t, k, input, w->wk, w->bk, n, kv, d, 0));   /* k[n, KV*hd] */
  TRY(transformer_matmul(t, v, input, w->wv, w->bv, n, kv, d, 0));   /* v[n, KV*hd] */
  if (c->qk_norm == QK_NORM_PER_HEAD) { /* RMS per head, before the rotary */
    TRY(op->rmsnorm(b, t->q, NULL, t->q, w->q_norm_w, n * c->n_heads, c->head_dim, c->norm_eps));
    TRY(op->rmsnorm(b, k, NULL, k, w->k_norm_w, n * c->n_kv_heads, c->head_dim, c->norm_eps));
  } else if (c->qk_norm == QK_NORM_WHOLE) { /* RMS over each row's whole q and k */
    TRY(op->rmsnorm(b, t->q, NULL, t->q, w->q_norm_w, n, q, c->norm_eps));
    TRY(op->rmsnorm(b, k, NULL, k, w->k_norm_w, n, kv, c->norm_eps));
  } else if (c->qk_norm == QK_NORM_LAYERNORM_HEADS) { /* LayerNorm per head, own weights */
    TRY(op->head_layernorm(b, t->q, w->q_norm_w, w->q_norm_b, n, c->n_heads, c->head_dim,
                           c->norm_eps));
    TRY(op->head_layernorm(b, k, w->k_norm_w, w->k_norm_b, n, c->n_kv_heads, c->head_dim,
                           c->norm_eps));
  }
  TRY(hook(P, HOOK_Q, L, t->q, n, q));
  TRY(hook(P, HOOK_K, L, k, n, kv));
  TRY(hook(P, HOOK_V, L, v, n, kv));
  const int slides = model_layer_slides(c, L);
  if (c->positions == POSITIONS_ROPE) {
    const float *freq = slides && t->inv_freq_local ? t->inv_freq_local : t->inv_freq;
    const float rs = slides && t->inv_freq_local ? 1.0f : t->rope_scale;
    TRY(op->rope(b, t->q, t->position, freq, n, c->n_heads, c->head_dim, c->rotary_dim, rs));
    TRY(op->rope(b, k, t->position, freq, n, c->n_kv_heads, c->head_dim, c->rotary_dim, rs));
  }
  const float scale = c->attn_scale > 0.0f ? c->attn_scale : 1.0f / sqrtf((float)c->head_dim);
  const int window = slides ? c->sliding_window : 0;
  if (P->kv == KV_CACHE_PREFIX) /* the clean prefix from the cache, then the pass's own rows */
    TRY(op->attention(b, t->heads, t->q, P->cache_k + at_layer, P->cache_v + at_layer, t->key_start,
                      t->n_keys, k, v, t->key2_start, t->n_keys2, n, c->n_heads, c->n_kv_heads,
                      c->head_dim, scale, c->attn_softcap, window));
  else
    TRY(op->attention(b, t->heads, t->q, k, v, t->key_start, t->n_keys, NULL, NULL, NULL, NULL, n,
                      c->n_heads, c->n_kv_heads, c->head_dim, scale, c->attn_softcap,
                      window)); /* heads[n, H*hd] */
  if (P->hooks.pattern) {
    t->in_attention.pass = P;
    t->in_attention.layer = L;
    t->in_attention.k = k;
    t->in_attention.v = v;
    const int rc = P->hooks.pattern(P->hooks.ctx, L, n);
    t->in_attention.pass = NULL;
    TRY(rc);
  }
  TRY(hook(P, HOOK_ATTN_HEADS, L, t->heads, n, q));
  TRY(transformer_matmul(t, t->out, t->heads, w->wo, w->bo, n, d, q, 0)); /* out[n, d] */
  if (c->post_norms)
    TRY(norm(t, t->out, NULL, t->out, w->post_attn_norm_w, w->post_attn_norm_b, n));
  TRY(residual_scale(t, n));
  TRY(hook(P, HOOK_ATTN_OUT, L, t->out, n, d));
  return 0;
fail:
  return -1;
}

int transformer_attention_rows(transformer_t *t, float *patterns, const pattern_entry_t *entries,
                               int n, char *err) {
  const model_config_t *c = &t->host->cfg;
  const transformer_pass_t *P = t->in_attention.pass;
  backend_t *b = t->b;
  if (!P)
    return err_set(err, "attention patterns are reached only inside a pattern hook");
  const int L = t->in_attention.layer;
  const size_t at_layer = (size_t)L * P->cache_layer_stride;
  const float scale = c->attn_scale > 0.0f ? c->attn_scale : 1.0f / sqrtf((float)c->head_dim);
  const int window = model_layer_slides(c, L) ? c->sliding_window : 0;
  const int prefix = P->kv == KV_CACHE_PREFIX;
  if (n > 0 && b->ops->attention_rows(
                   b, t->heads, patterns, entries, n, t->q,
                   prefix ? P->cache_k + at_layer : t->in_attention.k,
                   prefix ? P->cache_v + at_layer : t->in_attention.v, t->key_start, t->n_keys,
                   prefix ? t->in_attention.k : NULL, prefix ? t->in_attention.v : NULL,
                   prefix ? t->key2_start : NULL, prefix ? t->n_keys2 : NULL, c->n_heads,
                   c->n_kv_heads, c->head_dim, scale, c->attn_softcap, window))
    return err_set(err, "backend %s: %s", b->ops->name, b->err);
  return 0;
}

/* out[n, d] = the MLP of layer L over input[n, d] */
static int mlp(transformer_t *t, const transformer_pass_t *P, int L, const float *input, int n) {
  const model_config_t *c = &t->host->cfg;
  const layer_weights_t *w = &t->dev.layers[L];
  const backend_ops_t *op = t->b->ops;
  backend_t *b = t->b;
  const int d = c->d_model, fm = c->d_mlp;
  const size_t nf = (size_t)n * fm;
  if ((c->mlp == MLP_SWIGLU || c->mlp == MLP_GEGLU) && op->matmul_glu && !t->bf16 && !t->native) {
    /* fp32 weights: both products and the hidden units as one op */
    TRY(op->matmul_glu(b, t->hidden, t->up, input, w->w_gate, w->w_up, w->b_up, n, fm, d,
                       c->mlp == MLP_SWIGLU ? ACT_SILU : c->activation));
  } else if (c->mlp == MLP_SWIGLU) {
    TRY(transformer_matmul(t, t->hidden, input, w->w_gate, NULL, n, fm, d, 0)); /* gate[n, F] */
    TRY(transformer_matmul(t, t->up, input, w->w_up, w->b_up, n, fm, d, 0));    /* up[n, F]   */
    TRY(op->swiglu(b, t->hidden, t->up, nf)); /* hidden = silu(gate) * up */
  } else if (c->mlp == MLP_GEGLU) {
    TRY(transformer_matmul(t, t->hidden, input, w->w_gate, NULL, n, fm, d, 0)); /* gate[n, F] */
    TRY(transformer_matmul(t, t->up, input, w->w_up, w->b_up, n, fm, d, 0));    /* up[n, F]   */
    TRY(op->glu(b, t->hidden, t->up, nf, c->activation)); /* hidden = gelu(gate) * up */
  } else {
    TRY(transformer_matmul(t, t->hidden, input, w->w_up, w->b_up, n, fm, d, 0)); /* [n, F] */
    TRY(op->activation(b, t->hidden, nf, c->activation));
  }
  TRY(hook(P, HOOK_MLP_HIDDEN, L, t->hidden, n, fm));
  TRY(transformer_matmul(t, t->out, t->hidden, w->w_down, w->b_down, n, d, fm, 0)); /* [n, d] */
  if (c->post_norms)
    TRY(norm(t, t->out, NULL, t->out, w->post_mlp_norm_w, w->post_mlp_norm_b, n));
  TRY(residual_scale(t, n));
  TRY(hook(P, HOOK_MLP_OUT, L, t->out, n, d));
  return 0;
fail:
  return -1;
}

/* Layer L over the pass's active rows: attention over the rows active at
 * sub-stage 2L, the MLP over those of 2L + 1 (*present: the rows in the
 * residual so far; rows beyond it join). With a parallel residual both
 * read the layer's input, and rows join only at the attention stage. */
static int layer(transformer_t *t, const transformer_pass_t *P, int L, int *present) {
  const model_config_t *c = &t->host->cfg;
  const layer_weights_t *w = &t->dev.layers[L];
  const backend_ops_t *op = t->b->ops;
  backend_t *b = t->b;
  const int d = c->d_model, k = 2 * L;
  const int pre_norms = !c->no_pre_norms && !c->post_residual_norms;
  const int n_attn = P->stage_rows ? P->stage_rows[k] : P->rows;
  const int n_mlp = P->stage_rows ? P->stage_rows[k + 1] : P->rows;
  if (c->parallel_residual && n_mlp != n_attn)
    return err_set(P->hooks.err ? P->hooks.err : t->b->err,
                   "with a parallel residual, rows join a layer at its attention");
  TRY(join(t, P, k, t->resid, *present, n_attn));
  if (n_attn > *present)
    *present = n_attn;
  if (n_attn > 0) {
    if (L == 0)
      TRY(hook(P, HOOK_EMBED, 0, t->resid, n_attn, d));
    TRY(hook(P, HOOK_RESID_PRE, L, t->resid, n_attn, d));
    if (pre_norms)
      TRY(norm(t, t->normed, NULL, t->resid, w->attn_norm_w, w->attn_norm_b, n_attn));
    if (c->parallel_residual)
      TRY(norm(t, t->mlp_normed, NULL, t->resid, w->mlp_norm_w, w->mlp_norm_b, n_attn));
    TRY(attention(t, P, L, pre_norms ? t->normed : t->resid, n_attn));
    TRY(op->add(b, t->resid, t->out, (size_t)n_attn * d));
    if (c->post_residual_norms) /* the stream itself normed after the add (OPT-350m) */
      TRY(norm(t, t->resid, NULL, t->resid, w->attn_norm_w, w->attn_norm_b, n_attn));
  }
  TRY(join(t, P, k + 1, t->resid, *present, n_mlp));
  if (n_mlp > *present)
    *present = n_mlp;
  if (n_mlp == 0)
    return 0;
  if (!c->parallel_residual) {
    TRY(hook(P, HOOK_RESID_MID, L, t->resid, n_mlp, d));
    if (pre_norms)
      TRY(norm(t, t->normed, NULL, t->resid, w->mlp_norm_w, w->mlp_norm_b, n_mlp));
  }
  TRY(mlp(t, P, L, c->parallel_residual ? t->mlp_normed : pre_norms ? t->normed : t->resid, n_mlp));
  TRY(op->add(b, t->resid, t->out, (size_t)n_mlp * d));
  if (c->post_residual_norms)
    TRY(norm(t, t->resid, NULL, t->resid, w->mlp_norm_w, w->mlp_norm_b, n_mlp));
  TRY(hook(P, HOOK_RESID_POST, L, t->resid, n_mlp, d));
  return 0;
fail:
  return -1;
}

/* resid[n, d] = embed_proj_in . tok_embed[ids] (+ pos_embed[position]), in
 * transformers' order (OPT's project_in, then the positions added). */
static int embed_projected(transformer_t *t, const int *ids, int n) {
  const model_config_t *c = &t->host->cfg;
  const backend_ops_t *op = t->b->ops;
  backend_t *b = t->b;
  TRY(op->embed(b, t->embed_in, t->dev.tok_embed, ids, NULL, NULL, n, c->embed_proj_dim));
  TRY(op->matmul(b, t->resid, t->embed_in, t->dev.embed_proj_in, NULL, n, c->d_model,
                 c->embed_proj_dim, 0)); /* [n, d] */
  if (t->dev.pos_embed) {
    TRY(op->gather_rows(b, t->out, t->dev.pos_embed, t->position, n, c->d_model));
    TRY(op->add(b, t->resid, t->out, (size_t)n * c->d_model));
  }
  return 0;
fail:
  return -1;
}

int transformer_run(transformer_t *t, const transformer_pass_t *P, char *err) {
  const model_config_t *c = &t->host->cfg;
  backend_t *b = t->b;
  b->err[0] = '\0';
  if (P->hooks.err)
    P->hooks.err[0] = '\0';
  if (P->rows > t->capacity)
    return err_set(err, "a pass of %d rows is over the %d reserved", P->rows, t->capacity);
  const model_blocks_t *eb = t->dev.embed_blocks;
  if (P->ids && c->embed_proj_dim) {
    if (embed_projected(t, P->ids, P->rows))
      goto fail;
  } else if (P->ids &&
             (t->native
                  ? b->ops->embed_blocks(b, t->resid, eb->blocks, eb->type, eb->row_bytes, P->ids,
                                         t->dev.pos_embed, t->position, P->rows, c->d_model)
                  : b->ops->embed(b, t->resid, t->dev.tok_embed, P->ids, t->dev.pos_embed,
                                  t->position, P->rows, c->d_model)))
    goto fail;
  if (P->ids && c->embed_scale != 0.0f && c->embed_scale != 1.0f &&
      b->ops->scale(b, t->resid, (size_t)P->rows * c->d_model, c->embed_scale))
    goto fail;
  int present = P->ids ? P->rows : 0;
  for (int L = 0; L < c->n_layers; L++)
    if (layer(t, P, L, &present) != 0)
      goto fail;
  return 0;
fail:
  if (P->hooks.err && P->hooks.err[0]) {
    if (P->hooks.err != err)
      err_set(err, "%s", P->hooks.err);
    return -1;
  }
  return err_set(err, "backend %s: %s", b->ops->name, b->err);
}
