#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include "bf16.h"

#define TRY(call)                                                                                  \
  do {                                                                                             \
    if ((call) != 0)                                                                               \
      goto fail;                                                                                   \
  } while (0)

struct forward {
  const model_t *host;
  model_t dev; /* the same description with every array in backend memory */
  backend_t *b;
  int bf16;       /* projections held as bf16 (see upload_weights) */
  float *scratch; /* [scratch_floats]: bf16 projections widened for a product */
  size_t scratch_floats;
  int capacity; /* rows the work buffers hold */
  float *x, *xn, *q, *k, *v, *att, *proj, *h, *h2, *scale, *logits;
  int *ids, *position, *key_start, *n_keys, *logit_rows;
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
 * behind a float pointer that only forward_matmul reads. */
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

/* Frees a device array unless it is the host's own (used in place). */
static void release(backend_t *b, float *p, const float *host) {
  if (p && p != host)
    b->ops->free(b, p);
}

static void free_device_weights(forward_t *f) {
  const model_t *m = f->host;
  model_t *d = &f->dev;
  for (int l = 0; l < d->cfg.n_layers; l++) {
    layer_weights_t hw = m->layers[l];
    float **ptr[MODEL_LAYER_TENSORS], **hptr[MODEL_LAYER_TENSORS];
    size_t len[MODEL_LAYER_TENSORS];
    int n = model_layer_tensors(&d->cfg, &d->layers[l], ptr, len, NULL);
    model_layer_tensors(&d->cfg, &hw, hptr, len, NULL);
    for (int i = 0; i < n; i++)
      release(f->b, *ptr[i], *hptr[i]);
  }
  if (d->unembed != d->tok_embed)
    release(f->b, d->unembed, m->unembed);
  release(f->b, d->tok_embed, m->tok_embed);
  release(f->b, d->pos_embed, m->pos_embed);
  release(f->b, d->final_norm_w, m->final_norm_w);
  release(f->b, d->final_norm_b, m->final_norm_b);
  if (f->scratch)
    f->b->ops->free(f->b, f->scratch);
}

/* On a host-memory backend the weights are used in place (a bf16 model's
 * are rounded fp32 there: the same products, no copy). Otherwise every array
 * is copied to the backend, and a bf16 model's projections (and its
 * unembedding) are stored as bf16, widened per product into one scratch
 * buffer the size of the largest layer projection. */
static int upload_weights(forward_t *f, char *err) {
  const model_t *m = f->host;
  model_t *d = &f->dev;
  backend_t *b = f->b;
  const model_config_t *c = &m->cfg;
  *d = *m;
  d->layers = calloc((size_t)c->n_layers, sizeof(layer_weights_t));
  if (!d->layers)
    return err_set(err, "out of memory");
  memcpy(d->layers, m->layers, (size_t)c->n_layers * sizeof(layer_weights_t));
  if (b->host_memory)
    return 0;
  const size_t vd = (size_t)c->vocab_size * c->d_model;
  int failed = 0;
  for (int l = 0; l < c->n_layers && !failed; l++) {
    float **ptr[MODEL_LAYER_TENSORS];
    size_t len[MODEL_LAYER_TENSORS];
    int proj[MODEL_LAYER_TENSORS];
    int n = model_layer_tensors(c, &d->layers[l], ptr, len, proj);
    for (int i = 0; i < n; i++) {
      if (f->bf16 && proj[i]) {
        *ptr[i] = upload_bf16(b, *ptr[i], len[i], &failed);
        if (len[i] > f->scratch_floats)
          f->scratch_floats = len[i];
      } else {
        *ptr[i] = upload(b, *ptr[i], len[i], &failed);
      }
    }
  }
  d->tok_embed = upload(b, m->tok_embed, vd, &failed);
  d->pos_embed = upload(b, m->pos_embed, (size_t)c->max_positions * c->d_model, &failed);
  d->final_norm_w = upload(b, m->final_norm_w, c->d_model, &failed);
  d->final_norm_b = upload(b, m->final_norm_b, c->d_model, &failed);
  if (f->bf16)
    d->unembed = upload_bf16(b, m->unembed, vd, &failed);
  else
    d->unembed = c->tied_unembed ? d->tok_embed : upload(b, m->unembed, vd, &failed);
  if (f->bf16 && !failed && !(f->scratch = b->ops->alloc(b, f->scratch_floats * sizeof(float))))
    failed = 1;
  if (failed)
    return err_set(err, "uploading weights: %s", b->err);
  return 0;
}

int forward_matmul(forward_t *f, float *y, const float *x, const float *w, const float *bias,
                   int rows, int out, int in, int accumulate) {
  backend_t *b = f->b;
  if (f->bf16)
    return b->ops->matmul_bf16(b, y, x, (const uint16_t *)w, bias, rows, out, in, accumulate,
                               f->scratch, f->scratch_floats);
  return b->ops->matmul(b, y, x, w, bias, rows, out, in, accumulate);
}

static void free_work(forward_t *f) {
  backend_t *b = f->b;
  void *all[] = {f->x,        f->xn,        f->q,      f->k,         f->v,      f->att,
                 f->proj,     f->h,         f->h2,     f->scale,     f->logits, f->ids,
                 f->position, f->key_start, f->n_keys, f->logit_rows};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    if (all[i])
      b->ops->free(b, all[i]);
  f->x = f->xn = f->q = f->k = f->v = f->att = f->proj = f->h = f->h2 = f->scale = f->logits = NULL;
  f->ids = f->position = f->key_start = f->n_keys = f->logit_rows = NULL;
  f->capacity = 0;
}

static int grow_work(forward_t *f, int rows, char *err) {
  if (rows <= f->capacity)
    return 0;
  free_work(f);
  backend_t *b = f->b;
  const model_config_t *c = &f->host->cfg;
  const size_t r = (size_t)rows, d = (size_t)c->d_model, q = (size_t)c->n_heads * c->head_dim,
               kv = (size_t)c->n_kv_heads * c->head_dim, fm = (size_t)c->d_mlp;
  const size_t fl = sizeof(float), in = sizeof(int);
  int failed = 0;
#define ALLOC(field, bytes)                                                                        \
  do {                                                                                             \
    if (!failed && !(f->field = b->ops->alloc(b, bytes)))                                          \
      failed = 1;                                                                                  \
  } while (0)
  ALLOC(x, r * d * fl);
  ALLOC(xn, r * d * fl);
  ALLOC(q, r * q * fl);
  ALLOC(k, r * kv * fl);
  ALLOC(v, r * kv * fl);
  ALLOC(att, r * q * fl);
  ALLOC(proj, r * d * fl);
  ALLOC(h, r * fm * fl);
  ALLOC(h2, r * fm * fl);
  ALLOC(scale, r * fl);
  ALLOC(logits, r * (size_t)c->vocab_size * fl);
  ALLOC(ids, r * in);
  ALLOC(position, r * in);
  ALLOC(key_start, r * in);
  ALLOC(n_keys, r * in);
  ALLOC(logit_rows, r * in);
#undef ALLOC
  if (failed) {
    free_work(f);
    return err_set(err, "allocating work buffers for %d rows: %s", rows, b->err);
  }
  f->capacity = rows;
  return 0;
}

forward_t *forward_create(const model_t *m, backend_t *b, char *err) {
  forward_t *f = calloc(1, sizeof(*f));
  if (!f) {
    err_set(err, "out of memory");
    return NULL;
  }
  f->host = m;
  f->b = b;
  f->bf16 = m->weights_bf16 && !b->host_memory; /* host memory: the rounded fp32 in place */
  if (upload_weights(f, err) != 0) {
    forward_destroy(f);
    return NULL;
  }
  return f;
}

void forward_destroy(forward_t *f) {
  if (!f)
    return;
  free_work(f);
  if (f->dev.layers)
    free_device_weights(f);
  free(f->dev.layers);
  free(f);
}

const model_t *forward_weights(const forward_t *f) {
  return &f->dev;
}

long forward_batch_rows(const forward_batch_t *batch) {
  long rows = 0;
  for (int s = 0; s < batch->n_seqs; s++) {
    if (batch->lengths[s] < 1)
      return -1;
    rows += batch->lengths[s];
  }
  return rows;
}

static int norm(forward_t *f, float *y, float *inv_scale, const float *x, const float *gamma,
                const float *beta, int rows) {
  const model_config_t *c = &f->host->cfg;
  if (c->norm == NORM_LAYERNORM)
    return f->b->ops->layernorm(f->b, y, inv_scale, x, gamma, beta, rows, c->d_model, c->norm_eps);
  return f->b->ops->rmsnorm(f->b, y, inv_scale, x, gamma, rows, c->d_model, c->norm_eps);
}

/* proj[rows, d] = attention block of layer w over xn[rows, d] */
static int attention_block(forward_t *f, const layer_weights_t *w, int rows) {
  const model_config_t *c = &f->host->cfg;
  const backend_ops_t *op = f->b->ops;
  backend_t *b = f->b;
  const int d = c->d_model, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
  TRY(forward_matmul(f, f->q, f->xn, w->wq, w->bq, rows, q, d, 0));  /* q[rows, H*hd]   */
  TRY(forward_matmul(f, f->k, f->xn, w->wk, w->bk, rows, kv, d, 0)); /* k[rows, KV*hd]  */
  TRY(forward_matmul(f, f->v, f->xn, w->wv, w->bv, rows, kv, d, 0)); /* v[rows, KV*hd]  */
  if (c->positions == POSITIONS_ROPE) {
    TRY(op->rope(b, f->q, f->position, rows, c->n_heads, c->head_dim, c->rotary_dim,
                 c->rope_theta));
    TRY(op->rope(b, f->k, f->position, rows, c->n_kv_heads, c->head_dim, c->rotary_dim,
                 c->rope_theta));
  }
  TRY(op->attention(b, f->att, f->q, f->k, f->v, f->key_start, f->n_keys, NULL, NULL, NULL, NULL,
                    rows, c->n_heads, c->n_kv_heads, c->head_dim));     /* att[rows, H*hd] */
  TRY(forward_matmul(f, f->proj, f->att, w->wo, w->bo, rows, d, q, 0)); /* proj[rows, d]   */
  return 0;
fail:
  return -1;
}

/* proj[rows, d] = MLP block of layer w over xn[rows, d] */
static int mlp_block(forward_t *f, const layer_weights_t *w, int rows) {
  const model_config_t *c = &f->host->cfg;
  const backend_ops_t *op = f->b->ops;
  backend_t *b = f->b;
  const int d = c->d_model, fm = c->d_mlp;
  const size_t n = (size_t)rows * fm;
  if (c->mlp == MLP_SWIGLU) {
    TRY(forward_matmul(f, f->h, f->xn, w->w_gate, NULL, rows, fm, d, 0));   /* gate[rows, F] */
    TRY(forward_matmul(f, f->h2, f->xn, w->w_up, w->b_up, rows, fm, d, 0)); /* up[rows, F] */
    TRY(op->swiglu(b, f->h, f->h2, n));                                     /* silu(gate)*up */
  } else {
    TRY(forward_matmul(f, f->h, f->xn, w->w_up, w->b_up, rows, fm, d, 0)); /* h[rows, F] */
    TRY(op->activation(b, f->h, n, c->activation));
  }
  TRY(forward_matmul(f, f->proj, f->h, w->w_down, w->b_down, rows, d, fm, 0)); /* proj[rows, d] */
  return 0;
fail:
  return -1;
}

static int check_batch(const forward_t *f, const forward_batch_t *batch, long *rows, char *err) {
  const model_config_t *c = &f->host->cfg;
  *rows = 0;
  if (batch->n_seqs < 1)
    return err_set(err, "empty batch");
  *rows = forward_batch_rows(batch);
  if (*rows < 0)
    return err_set(err, "a sequence of the batch is empty");
  if (*rows > (1L << 30))
    return err_set(err, "batch of %ld tokens is too large", *rows);
  long r = 0;
  for (int s = 0; s < batch->n_seqs; s++) {
    if (batch->lengths[s] > c->max_positions)
      return err_set(err, "sequence %d has %d tokens, more than the model's context of %d", s,
                     batch->lengths[s], c->max_positions);
    for (int t = 0; t < batch->lengths[s]; t++, r++)
      if (batch->ids[r] < 0 || batch->ids[r] >= c->vocab_size)
        return err_set(err, "sequence %d token %d: id %d is outside the vocabulary [0, %d)", s, t,
                       batch->ids[r], c->vocab_size);
  }
  return 0;
}

/* Positions, and each row's causal key range inside its own sequence. */
static int upload_layout(forward_t *f, const forward_batch_t *batch, int rows, char *err) {
  int *host = malloc((size_t)rows * 3 * sizeof(int));
  if (!host)
    return err_set(err, "out of memory");
  int *position = host, *key_start = host + rows, *n_keys = host + 2 * rows;
  int r = 0;
  for (int s = 0; s < batch->n_seqs; s++)
    for (int t = 0; t < batch->lengths[s]; t++, r++) {
      position[r] = t;
      key_start[r] = r - t;
      n_keys[r] = t + 1;
    }
  backend_t *b = f->b;
  const size_t bytes = (size_t)rows * sizeof(int);
  int rc = b->ops->upload(b, f->ids, batch->ids, bytes) ||
           b->ops->upload(b, f->position, position, bytes) ||
           b->ops->upload(b, f->key_start, key_start, bytes) ||
           b->ops->upload(b, f->n_keys, n_keys, bytes);
  free(host);
  return rc ? err_set(err, "%s", b->err) : 0;
}

int forward_run(forward_t *f, const forward_batch_t *batch, forward_out_t *out, char *err) {
  const model_t *m = &f->dev;
  const model_config_t *c = &m->cfg;
  const backend_ops_t *op = f->b->ops;
  backend_t *b = f->b;
  long rows_l = 0;
  if (check_batch(f, batch, &rows_l, err) != 0)
    return -1;
  const int rows = (int)rows_l, d = c->d_model;
  const size_t rd = (size_t)rows * d;
  if (grow_work(f, rows, err) != 0 || upload_layout(f, batch, rows, err) != 0)
    return -1;

  TRY(op->embed(b, f->x, m->tok_embed, f->ids, m->pos_embed, f->position, rows, d));
  for (int l = 0; l < c->n_layers; l++) {
    const layer_weights_t *w = &m->layers[l];
    if (out->residuals)
      TRY(op->download(b, out->residuals + (size_t)l * rd, f->x, rd * sizeof(float)));
    TRY(norm(f, f->xn, NULL, f->x, w->attn_norm_w, w->attn_norm_b, rows));
    TRY(attention_block(f, w, rows));
    if (c->parallel_residual) {
      TRY(norm(f, f->xn, NULL, f->x, w->mlp_norm_w, w->mlp_norm_b, rows));
      TRY(op->add(b, f->x, f->proj, rd));
    } else {
      TRY(op->add(b, f->x, f->proj, rd));
      TRY(norm(f, f->xn, NULL, f->x, w->mlp_norm_w, w->mlp_norm_b, rows));
    }
    TRY(mlp_block(f, w, rows));
    TRY(op->add(b, f->x, f->proj, rd));
  }
  if (out->residuals)
    TRY(op->download(b, out->residuals + (size_t)c->n_layers * rd, f->x, rd * sizeof(float)));

  TRY(norm(f, f->xn, f->scale, f->x, m->final_norm_w, m->final_norm_b, rows));
  if (out->final_inv_scale)
    TRY(op->download(b, out->final_inv_scale, f->scale, (size_t)rows * sizeof(float)));
  if (out->logits) {
    const float *src = f->xn;
    int n = rows;
    if (out->logit_rows) {
      n = out->n_logit_rows;
      for (int i = 0; i < n; i++)
        if (out->logit_rows[i] < 0 || out->logit_rows[i] >= rows)
          return err_set(err, "logit row %d is outside the batch of %d rows", out->logit_rows[i],
                         rows);
      TRY(op->upload(b, f->logit_rows, out->logit_rows, (size_t)n * sizeof(int)));
      TRY(op->gather_rows(b, f->proj, f->xn, f->logit_rows, n, d));
      src = f->proj;
    }
    TRY(forward_matmul(f, f->logits, src, m->unembed, NULL, n, c->vocab_size, d, 0));
    TRY(op->download(b, out->logits, f->logits, (size_t)n * c->vocab_size * sizeof(float)));
  }
  TRY(op->synchronize(b));
  return 0;
fail:
  return err_set(err, "backend %s: %s", op->name, b->err);
}
