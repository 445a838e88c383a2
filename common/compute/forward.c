/* forward.c - the plain forward pass: the one transformer over a batch,
 * with hooks that download each layer's input residual. */
#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include "transformer.h"

struct forward {
  transformer_t *t;
  const model_config_t *cfg;
  backend_t *b;
  int capacity; /* rows the buffers below hold */
  float *normed, *inv_scale, *logits, *gathered;
  int *ids, *logit_rows;
};

forward_t *forward_create(const model_t *m, backend_t *b, char *err) {
  forward_t *f = calloc(1, sizeof(*f));
  if (!f) {
    err_set(err, "out of memory");
    return NULL;
  }
  f->cfg = &m->cfg;
  f->b = b;
  if (!(f->t = transformer_create(m, b, err))) {
    free(f);
    return NULL;
  }
  return f;
}

static void free_buffers(forward_t *f) {
  void *all[] = {f->normed, f->inv_scale, f->logits, f->gathered, f->ids, f->logit_rows};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    if (all[i])
      f->b->ops->free(f->b, all[i]);
  f->normed = f->inv_scale = f->logits = f->gathered = NULL;
  f->ids = f->logit_rows = NULL;
  f->capacity = 0;
}

void forward_destroy(forward_t *f) {
  if (!f)
    return;
  free_buffers(f);
  transformer_destroy(f->t);
  free(f);
}

const model_t *forward_weights(const forward_t *f) {
  return transformer_weights(f->t);
}

int forward_matmul(forward_t *f, float *y, const float *x, const float *w, const float *bias,
                   int rows, int out, int in, int accumulate) {
  return transformer_matmul(f->t, y, x, w, bias, rows, out, in, accumulate);
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

static int grow(forward_t *f, int rows, char *err) {
  if (transformer_reserve(f->t, rows, err) != 0)
    return -1;
  if (rows <= f->capacity)
    return 0;
  free_buffers(f);
  backend_t *b = f->b;
  const size_t r = (size_t)rows, d = (size_t)f->cfg->d_model, fl = sizeof(float);
  if (!(f->normed = b->ops->alloc(b, r * d * fl)) || !(f->inv_scale = b->ops->alloc(b, r * fl)) ||
      !(f->logits = b->ops->alloc(b, r * (size_t)f->cfg->vocab_size * fl)) ||
      !(f->gathered = b->ops->alloc(b, r * d * fl)) ||
      !(f->ids = b->ops->alloc(b, r * sizeof(int))) ||
      !(f->logit_rows = b->ops->alloc(b, r * sizeof(int)))) {
    free_buffers(f);
    return err_set(err, "allocating work buffers for %d rows: %s", rows, b->err);
  }
  f->capacity = rows;
  return 0;
}

static int check_batch(const forward_t *f, const forward_batch_t *batch, long *rows, char *err) {
  const model_config_t *c = f->cfg;
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
static int set_layout(forward_t *f, const forward_batch_t *batch, int rows, char *err) {
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
  int rc = transformer_set_layout(f->t, rows, position, key_start, n_keys, NULL, NULL, err);
  if (!rc && f->b->ops->upload(f->b, f->ids, batch->ids, (size_t)rows * sizeof(int)))
    rc = err_set(err, "%s", f->b->err);
  free(host);
  return rc;
}

/* out->residuals: each layer's input, downloaded at resid_pre. */
typedef struct {
  forward_t *f;
  float *residuals;
  int rows;
  char *err;
} capture_t;

static int capture_residual(void *ctx, hook_site_t site, int layer, float *buf, int n, int width) {
  capture_t *c = ctx;
  if (site != HOOK_RESID_PRE)
    return 0;
  const size_t rd = (size_t)c->rows * width;
  backend_t *b = c->f->b;
  if (b->ops->download(b, c->residuals + (size_t)layer * rd, buf,
                       (size_t)n * width * sizeof(float)))
    return err_set(c->err, "backend %s: %s", b->ops->name, b->err);
  return 0;
}

int forward_run(forward_t *f, const forward_batch_t *batch, forward_out_t *out, char *err) {
  const model_config_t *c = f->cfg;
  backend_t *b = f->b;
  const backend_ops_t *op = b->ops;
  long rows_l = 0;
  if (check_batch(f, batch, &rows_l, err) != 0)
    return -1;
  const int rows = (int)rows_l, d = c->d_model;
  const size_t rd = (size_t)rows * d;
  if (grow(f, rows, err) != 0 || set_layout(f, batch, rows, err) != 0)
    return -1;
  capture_t cap = {.f = f, .residuals = out->residuals, .rows = rows, .err = err};
  transformer_pass_t pass = {
      .rows = rows,
      .ids = f->ids,
      .kv = KV_OWN,
      .hooks = {.ctx = &cap, .err = err, .at = out->residuals ? capture_residual : NULL}};
  if (transformer_run(f->t, &pass, err) != 0)
    return -1;
  const float *resid = transformer_residual(f->t);
  if (out->residuals &&
      op->download(b, out->residuals + (size_t)c->n_layers * rd, resid, rd * sizeof(float)))
    goto fail;
  if (transformer_final_norm(f->t, f->normed, f->inv_scale, resid, rows))
    goto fail;
  if (out->final_inv_scale &&
      op->download(b, out->final_inv_scale, f->inv_scale, (size_t)rows * sizeof(float)))
    goto fail;
  if (out->logits) {
    const float *src = f->normed;
    int n = rows;
    if (out->logit_rows) {
      n = out->n_logit_rows;
      for (int i = 0; i < n; i++)
        if (out->logit_rows[i] < 0 || out->logit_rows[i] >= rows)
          return err_set(err, "logit row %d is outside the batch of %d rows", out->logit_rows[i],
                         rows);
      if (op->upload(b, f->logit_rows, out->logit_rows, (size_t)n * sizeof(int)) ||
          op->gather_rows(b, f->gathered, f->normed, f->logit_rows, n, d))
        goto fail;
      src = f->gathered;
    }
    if (transformer_unembed(f->t, f->logits, src, n) ||
        transformer_cap_logits(f->t, f->logits, n) ||
        op->download(b, out->logits, f->logits, (size_t)n * c->vocab_size * sizeof(float)))
      goto fail;
  }
  if (op->synchronize(b))
    goto fail;
  return 0;
fail:
  return err_set(err, "backend %s: %s", op->name, b->err);
}
