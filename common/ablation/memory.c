/* memory.c - the engine's backend buffers and the memory budget that sizes
 * its passes. */
#include <stdlib.h>

#include "engine_parts.h"

static void release(engine_t *e, void *p) {
  if (p)
    e->b->ops->free(e->b, p);
}

void free_pass_buffers(engine_t *e) {
  void *all[] = {e->values,         e->gathered,       e->final_normed,   e->final_inv,
                 e->logits,         e->clean_stats,    e->token_ids,      e->clean_row,
                 e->row_list,       e->read_row,       e->read_prompt,    e->ident,
                 e->job_targets,    e->job_foils,      e->argmax,         e->ptarget,
                 e->pfoil,          e->entries,        e->dirs,           e->udirs,
                 e->de_out,         e->logit_out,      e->metric_out,     e->resid_read,
                 e->shortcut_clean, e->shortcut_resid, e->shortcut_index, e->shortcut_spans};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    release(e, all[i]);
  e->values = e->gathered = e->final_normed = e->final_inv = e->logits = e->clean_stats = NULL;
  e->token_ids = e->clean_row = e->row_list = e->read_row = e->read_prompt = e->ident = NULL;
  e->job_targets = e->job_foils = e->argmax = e->ptarget = e->pfoil = NULL;
  e->entries = NULL;
  e->resid_read = NULL;
  e->shortcut_clean = e->shortcut_resid = NULL;
  e->shortcut_index = NULL;
  e->shortcut_spans = NULL;
  e->cap_spans = 0;
  e->dirs = e->udirs = e->de_out = e->logit_out = e->metric_out = NULL;
  if (e->tf)
    transformer_release_work(e->tf);
  e->cap_rows = e->cap_prompts = e->cap_read = 0;
  e->held_pass = 0;
}

void free_clean_buffers(engine_t *e) {
  release(e, e->resid_pre);
  release(e, e->resid_mid);
  release(e, e->kcache);
  release(e, e->vcache);
  e->resid_pre = e->resid_mid = e->kcache = e->vcache = NULL;
  e->cap_clean = 0;
  e->held_clean = 0;
}

#define ALLOC(field, bytes)                                                                        \
  do {                                                                                             \
    if (!failed && !(e->field = b->ops->alloc(b, bytes)))                                          \
      failed = 1;                                                                                  \
    else if (!failed)                                                                              \
      held += (bytes);                                                                             \
  } while (0)

/* Pass buffers for `rows` rows, `prompts` prompts and `reads` readout rows. */
int ensure_pass_buffers(engine_t *e, int rows, int prompts, int reads, char *err) {
  if (rows <= e->cap_rows && prompts <= e->cap_prompts && reads <= e->cap_read)
    return 0;
  if (rows < e->cap_rows)
    rows = e->cap_rows;
  if (prompts < e->cap_prompts)
    prompts = e->cap_prompts;
  if (reads < e->cap_read)
    reads = e->cap_read;
  free_pass_buffers(e);
  const model_config_t *c = &e->host->cfg;
  const size_t r = (size_t)rows, d = c->d_model, w = e->width_max, f = sizeof(float),
               in = sizeof(int), n_slots = engine_n_slots(c), np = (size_t)prompts,
               nr = (size_t)reads;
  const size_t n_idx = r > nr * n_slots ? r : nr * n_slots;
  backend_t *b = e->b;
  int failed = transformer_reserve(e->tf, rows, err) != 0;
  size_t held = failed ? 0 : r * transformer_row_bytes(c);
  ALLOC(values, r * w * f);
  ALLOC(gathered, r * w * f);
  ALLOC(final_normed, nr * d * f);
  ALLOC(final_inv, nr * f);
  ALLOC(logits, (size_t)LOGIT_ROWS * c->vocab_size * f);
  ALLOC(clean_stats, np * 3 * f);
  ALLOC(token_ids, r * in);
  ALLOC(clean_row, r * in);
  ALLOC(row_list, n_idx * in);
  ALLOC(read_row, nr * in);
  ALLOC(read_prompt, nr * in);
  ALLOC(ident, n_idx * in);
  ALLOC(job_targets, np * in);
  ALLOC(job_foils, np * in);
  ALLOC(argmax, np * in);
  ALLOC(ptarget, np * in);
  ALLOC(pfoil, np * in);
  ALLOC(entries, r * sizeof(intervention_t));
  ALLOC(dirs, np * d * f);
  ALLOC(udirs, np * d * f);
  ALLOC(de_out, nr * (n_slots + 1) * f); /* the slots, then a residual site's own */
  ALLOC(resid_read, 2 * nr * in);
  ALLOC(logit_out, nr * f);
  ALLOC(metric_out, nr * 5 * f);
  ALLOC(shortcut_clean, r * w * f);
  ALLOC(shortcut_resid, r * d * f);
  ALLOC(shortcut_index, (3 * r + 3 * nr) * in);
  ALLOC(shortcut_spans,
        r * sizeof(column_span_t)); /* a span a row; grown for groups (shortcuts.c) */
  e->cap_spans = failed ? 0 : rows;
  if (!failed) {
    int *ident = malloc(n_idx * in);
    if (!ident)
      failed = 1;
    for (size_t i = 0; ident && i < n_idx; i++)
      ident[i] = (int)i;
    if (ident && b->ops->upload(b, e->ident, ident, n_idx * in) != 0)
      failed = 1;
    free(ident);
  }
  if (failed) {
    free_pass_buffers(e);
    return err_set(err, "out of backend memory for a pass of %d rows: %s", rows, b->err);
  }
  e->cap_rows = rows;
  e->cap_prompts = prompts;
  e->cap_read = reads;
  e->held_pass = held;
  return 0;
}

int ensure_clean_buffers(engine_t *e, int rows, char *err) {
  if (rows <= e->cap_clean)
    return 0;
  free_clean_buffers(e);
  const model_config_t *c = &e->host->cfg;
  const size_t n = (size_t)c->n_layers * rows, d = c->d_model,
               kv = (size_t)c->n_kv_heads * c->head_dim, f = sizeof(float);
  backend_t *b = e->b;
  int failed = 0;
  size_t held = 0;
  ALLOC(resid_pre, n * d * f);
  if (!c->parallel_residual)
    ALLOC(resid_mid, n * d * f);
  ALLOC(kcache, n * kv * f);
  ALLOC(vcache, n * kv * f);
  if (failed) {
    free_clean_buffers(e);
    return err_set(err, "out of backend memory for the clean cache of %d rows: %s", rows, b->err);
  }
  e->cap_clean = rows;
  e->held_clean = held;
  return 0;
}
#undef ALLOC

/* The clean log-probs of `lp` prompts (0: none): held at the size a job
 * needs, so a smaller or logit-only job gives the memory back. */
int ensure_lp_buffer(engine_t *e, int lp, char *err) {
  if (lp == e->cap_lp || (lp > 0 && lp < e->cap_lp && 2 * lp >= e->cap_lp))
    return 0;
  release(e, e->clean_lp);
  e->clean_lp = NULL;
  e->cap_lp = 0;
  e->held_lp = 0;
  if (lp == 0)
    return 0;
  const size_t bytes = sizeof(float) * (size_t)lp * e->host->cfg.vocab_size;
  if (!(e->clean_lp = e->b->ops->alloc(e->b, bytes)))
    return err_set(err, "out of backend memory for the clean log-probs of %d prompts: %s", lp,
                   e->b->err);
  e->cap_lp = lp;
  e->held_lp = bytes;
  return 0;
}

/* Backend bytes one row of a pass and of the clean cache take (the buffers
 * above; readouts and prompts sized as if every row were one). */
size_t bytes_per_row(const engine_t *e) {
  const model_config_t *c = &e->host->cfg;
  const size_t d = c->d_model, kv = (size_t)c->n_kv_heads * c->head_dim, w = e->width_max,
               ns = engine_n_slots(c), L = c->n_layers, f = sizeof(float), in = sizeof(int);
  const size_t rows = f * (3 * w + d) + in * 5 + sizeof(intervention_t);
  const size_t reads = f * (d + 1 + ns + 1 + 5) + 5 * in;
  const size_t prompts = f * (3 + 2 * d) + in * 5;
  const size_t index = 2 * in * (ns > 1 ? ns : 1);
  const size_t clean = f * L * ((c->parallel_residual ? 1 : 2) * d + 2 * kv);
  return transformer_row_bytes(c) + rows + reads + prompts + index + clean;
}

void engine_set_memory_budget(engine_t *e, size_t bytes) {
  e->memory_budget = bytes;
}

/* Bytes of backend memory a run may take (pass and clean buffers, its store
 * of clean outputs, other jobs' kept stores); 0: unknown (a host backend
 * without a set budget). */
size_t memory_total(engine_t *e) {
  /* what the backend could give: free memory plus what this engine holds */
  const size_t avail = e->b->ops->memory_available(e->b);
  size_t budget = 0;
  if (avail > 0)
    budget = (size_t)((double)(avail + e->held_pass + e->held_clean + e->held_lp + kept_bytes(e)) *
                      ENGINE_MEMORY_SHARE);
  if (e->memory_budget > 0 && (budget == 0 || e->memory_budget < budget))
    budget = e->memory_budget;
  return budget;
}

/* Rows per pass within the budget, less `reserved` bytes held for the job
 * (its store of clean outputs). */
int pass_rows(engine_t *e, int longest, size_t reserved, size_t *bytes) {
  const size_t per_row = bytes_per_row(e);
  size_t budget = memory_total(e);
  if (budget > 0)
    budget = budget > reserved ? budget - reserved : 0;
  long rows = budget > 0 ? (long)(budget / per_row) : ENGINE_DEFAULT_ROWS;
  if (rows > ENGINE_MAX_ROWS)
    rows = ENGINE_MAX_ROWS;
  if (rows < longest)
    rows = longest;
  if (rows < 1)
    rows = 1;
  if (bytes)
    *bytes = (size_t)rows * per_row;
  return (int)rows;
}

int engine_pass_rows(engine_t *e, int longest, size_t *bytes) {
  return pass_rows(e, longest, 0, bytes);
}
