/* shortcuts.c - a variant's first ablated sub-stage, not recomputed where
 * its output is known exactly from the clean run's (issue 24, 1b and 1c).
 *
 * A variant joins the pass at its first ablated sub-stage from the clean
 * residual, so that sub-stage's inputs are the clean run's: its output
 * differs from the clean output only by the intervention itself.
 *   delta (head.L.H, neuron.L.N): the output is linear in the site's values
 *     (no post norm): ablated out = clean out + (ablated - clean values) .
 *     W^T over the head's columns of the output projection or the neuron's
 *     column of the down projection, at the intervened positions: the
 *     change is zero in every other column, so only the unit's own columns
 *     are multiplied (backend op column_products: a head's head_dim columns,
 *     a neuron's one, a group's several, each row its own);
 *   replace (attn.L, mlp.L by zero, mean, resample, patch): the ablated
 *     output is the intervention's values, whatever the clean output was.
 * Either way the variant joins at the next sub-stage with those residual
 * rows, and its skipped slot's direct effect comes from the same values. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "engine_parts.h"

/* The kind of shortcut a component allows as the first ablated sub-stage
 * of a unit under `method`, ignoring the store (SHORTCUT_NONE: none). */
static int component_shortcut(const model_config_t *cfg, const component_t *c,
                              method_kind_t method) {
  if (cfg->parallel_residual)
    return SHORTCUT_NONE;
  const int last_mlp = c->layer == cfg->n_layers - 1; /* no sub-stage after it to join */
  switch (c->kind) {
  case COMPONENT_HEAD:
    return cfg->post_norms ? SHORTCUT_NONE : SHORTCUT_DELTA;
  case COMPONENT_NEURON:
    return cfg->post_norms || last_mlp ? SHORTCUT_NONE : SHORTCUT_DELTA;
  case COMPONENT_ATTN:
  case COMPONENT_MLP:
    if (c->kind == COMPONENT_MLP && last_mlp)
      return SHORTCUT_NONE;
    return method == METHOD_ZERO || method == METHOD_MEAN || method == METHOD_RESAMPLE ||
                   method == METHOD_PATCH
               ? SHORTCUT_REPLACE
               : SHORTCUT_NONE;
  default:
    return SHORTCUT_NONE;
  }
}

/* A delta reads the clean values of its site from the store of clean
 * sources: the site has one whenever one of its components could take it. */
int shortcut_needs_store(const engine_job_t *job, const model_config_t *cfg, const component_t *c) {
  return job->reuse && !job->whole_stages &&
         component_shortcut(cfg, c, METHOD_SCALE) == SHORTCUT_DELTA;
}

int shortcut_kind(const run_t *R, int unit, int method, int *stage) {
  const engine_job_t *job = R->job;
  const model_config_t *cfg = R->cfg;
  const int first = unit_stage(job, cfg, unit);
  if (!job->reuse || job->whole_stages)
    return SHORTCUT_NONE;
  int kind = SHORTCUT_NONE, site_layer = -1;
  hook_site_t site = HOOK_N;
  for (int a = unit_first(job, unit); a < unit_end(job, unit); a++) {
    const component_t *c = &job->components[a];
    if (component_stage(cfg, c) != first)
      continue; /* a later sub-stage: intervened in the pass as usual */
    int layer;
    const hook_site_t s = component_site(cfg, c, &layer);
    const int k = component_shortcut(cfg, c, job->methods[method].kind);
    /* every component at the first sub-stage one site's, of one kind */
    if (k == SHORTCUT_NONE || (kind != SHORTCUT_NONE && (k != kind || s != site)))
      return SHORTCUT_NONE;
    kind = k;
    site = s;
    site_layer = layer;
  }
  if (kind == SHORTCUT_NONE)
    return SHORTCUT_NONE;
  const int has_store = R->src.dstore && R->src.dstore[store_index(cfg, site, site_layer)];
  if (kind == SHORTCUT_DELTA && !has_store)
    return SHORTCUT_NONE;
  if (kind == SHORTCUT_REPLACE && !has_store && job->methods[method].kind != METHOD_ZERO)
    return SHORTCUT_NONE;
  *stage = first + 1;
  return kind;
}

/* The rows of one kind of shortcut joining at a stage: pass rows, their
 * rows of the clean pass and of the store, in the order of buf's rows. */
typedef struct {
  int *map;                          /* [n]: pass row -> its row of buf, or -1 */
  int *pass, *clean, *store;         /* [m] */
  int *variant;                      /* [m]: the row's variant (index into vs) */
  int *read_out, *read_x, *read_dir; /* [n_read]: direct-effect readouts */
  int m, n_reads;
} shortcut_rows_t;

static void collect_rows(const run_t *R, const variant_t *vs, int i0, int i1, int kind, int n_read,
                         shortcut_rows_t *s) {
  const engine_job_t *job = R->job;
  s->m = s->n_reads = 0;
  for (int i = i0; i < i1; i++) {
    const variant_t *v = &vs[i];
    if (v->shortcut != kind)
      continue;
    const int off = job->position_offsets[v->prompt], len = job->lengths[v->prompt];
    int k0, k1;
    run_positions(R, v->prompt, v->k, &k0, &k1);
    for (int k = k0; k < k1; k++) {
      const int t = job->position_list[off + k], row = v->base + t - v->p0;
      s->map[row] = s->m;
      s->pass[s->m] = row;
      s->clean[s->m] = R->clean_start[v->cprompt] + t;
      s->store[s->m] = off + k;
      s->variant[s->m] = i;
      if (t == len - 1) {
        s->read_out[s->n_reads] = v->stage * n_read + i;
        s->read_x[s->n_reads] = s->m;
        s->read_dir[s->n_reads++] = v->cprompt;
      }
      s->m++;
    }
  }
}

/* The rows' direct effects at the skipped slot: dot(buf row, direction). */
static int read_slot(run_t *R, const shortcut_rows_t *s, const float *buf) {
  engine_t *e = R->e;
  backend_t *b = e->b;
  int *idx = e->shortcut_index + 3 * e->cap_rows;
  if (s->n_reads == 0)
    return 0;
  return b->ops->upload(b, idx, s->read_out, sizeof(int) * s->n_reads) ||
         b->ops->upload(b, idx + e->cap_read, s->read_x, sizeof(int) * s->n_reads) ||
         b->ops->upload(b, idx + 2 * e->cap_read, s->read_dir, sizeof(int) * s->n_reads) ||
         b->ops->row_dots(b, e->de_out, idx, buf, idx + e->cap_read, e->dirs, idx + 2 * e->cap_read,
                          s->n_reads, R->d);
}

/* The columns of its site a delta variant changes: its unit's components
 * at its skipped sub-stage, in column order, merged where they meet or
 * overlap (a unit may name a head twice). Returns their count. */
static int variant_spans(const run_t *R, const variant_t *v, column_span_t *out) {
  const engine_job_t *job = R->job;
  int n = 0;
  for (int a = unit_first(job, v->component); a < unit_end(job, v->component); a++) {
    const component_t *c = &job->components[a];
    if (component_stage(R->cfg, c) != v->stage - 1)
      continue;
    column_span_t span = {0};
    component_cols(R->cfg, c, &span.col0, &span.col1);
    int at = n++;
    for (; at > 0 && out[at - 1].col0 > span.col0; at--)
      out[at] = out[at - 1];
    out[at] = span;
  }
  int merged = 0;
  for (int i = 0; i < n; i++) {
    if (merged > 0 && out[i].col0 <= out[merged - 1].col1) {
      if (out[i].col1 > out[merged - 1].col1)
        out[merged - 1].col1 = out[i].col1;
    } else {
      out[merged++] = out[i];
    }
  }
  return merged;
}

/* Rows ordered by their first column, then by row: the rows of one head
 * or neuron (its variants' positions and prompts) follow each other in the
 * table, so its columns of the projection stay in cache between them. */
static int by_first_column(const void *a, const void *b) {
  const int *x = a, *y = b;
  return x[0] != y[0] ? (x[0] > y[0]) - (x[0] < y[0]) : (x[1] > y[1]) - (x[1] < y[1]);
}

/* The spans of every row of s (row j: buf row j), on the host in spans
 * (malloc'd, at most m * the largest unit), rows ordered by_first_column;
 * returns their count, or -1 out of memory. */
static int delta_spans(const run_t *R, const variant_t *vs, const shortcut_rows_t *s,
                       column_span_t **spans) {
  int most = 1;
  for (int j = 0; j < s->m; j++) {
    const int u = vs[s->variant[j]].component;
    const int size = unit_end(R->job, u) - unit_first(R->job, u);
    most = size > most ? size : most;
  }
  const size_t per_row = (size_t)most;
  column_span_t *rows = malloc(sizeof(column_span_t) * (size_t)s->m * per_row);
  column_span_t *all = malloc(sizeof(column_span_t) * (size_t)s->m * per_row);
  int *count = malloc(sizeof(int) * 3 * (size_t)s->m), *order = count + s->m;
  if (!rows || !all || !count) {
    free(rows), free(all), free(count);
    return -1;
  }
  for (int j = 0; j < s->m; j++) { /* row j's spans at rows + j * per_row */
    column_span_t *mine = rows + (size_t)j * per_row;
    if (j > 0 && s->variant[j] == s->variant[j - 1]) {
      count[j] = count[j - 1];
      memcpy(mine, mine - per_row, sizeof(column_span_t) * (size_t)count[j]);
    } else {
      count[j] = variant_spans(R, &vs[s->variant[j]], mine);
    }
    order[2 * j] = mine[0].col0;
    order[2 * j + 1] = j;
  }
  qsort(order, (size_t)s->m, 2 * sizeof(int), by_first_column);
  int n = 0;
  for (int i = 0; i < s->m; i++) {
    const int j = order[2 * i + 1];
    for (int k = 0; k < count[j]; k++) {
      all[n] = rows[(size_t)j * per_row + k];
      all[n++].row = j;
    }
  }
  free(rows), free(count);
  *spans = all;
  return n;
}

/* The rows' change of the residual, delta[m, width] . W^T over each row's
 * own columns, into e->shortcut_resid[m, d]. */
static int narrow_product(run_t *R, const variant_t *vs, const shortcut_rows_t *s,
                          const float *delta, const float *w, int width) {
  engine_t *e = R->e;
  backend_t *b = e->b;
  const backend_ops_t *op = b->ops;
  column_span_t *spans = NULL;
  const int n = delta_spans(R, vs, s, &spans);
  if (n < 0)
    return err_set(R->err, "out of memory");
  if (n > e->cap_spans) { /* groups: several spans a row */
    op->free(b, e->shortcut_spans);
    e->cap_spans = 0;
    if (!(e->shortcut_spans = op->alloc(b, sizeof(column_span_t) * (size_t)n))) {
      free(spans);
      return err_set(R->err, "backend %s: %s", op->name, b->err);
    }
    e->cap_spans = n;
  }
  const int rc = op->upload(b, e->shortcut_spans, spans, sizeof(column_span_t) * (size_t)n) ||
                 op->memset0(b, e->shortcut_resid, sizeof(float) * (size_t)s->m * R->d) ||
                 transformer_column_products(e->tf, e->shortcut_resid, delta, w, e->shortcut_spans,
                                             n, R->d, width);
  free(spans);
  if (rc)
    return err_set(R->err, "backend %s: %s", op->name, b->err);
  e->narrow_rows += s->m;
  return 0;
}

/* Delta: buf = ablated - clean values of the site; their product with the
 * projection's weights over the changed columns is added to the rows'
 * (clean) residual. */
static int join_delta(run_t *R, const variant_t *vs, int i0, int i1, int stage, float *resid,
                      const shortcut_rows_t *s) {
  engine_t *e = R->e;
  backend_t *b = e->b;
  const backend_ops_t *op = b->ops;
  const model_config_t *cfg = R->cfg;
  const int mlp = stage % 2 == 0, L = (stage - 1) / 2, d = R->d, m = s->m;
  const hook_site_t site = mlp ? HOOK_MLP_HIDDEN : HOOK_ATTN_HEADS;
  const int width = site_width(cfg, site);
  const size_t n = (size_t)m * width;
  const float *store = R->src.dstore[store_index(cfg, site, L)];
  const layer_weights_t *w = &transformer_weights(e->tf)->layers[L];
  int *store_rows = e->shortcut_index, *pass_rows = e->shortcut_index + e->cap_rows;
  if (op->upload(b, store_rows, s->store, sizeof(int) * m) ||
      op->upload(b, pass_rows, s->pass, sizeof(int) * m) ||
      op->gather_rows(b, e->shortcut_clean, store, store_rows, m, width) ||
      op->copy(b, e->gathered, e->shortcut_clean, sizeof(float) * n))
    return err_set(R->err, "backend %s: %s", op->name, b->err);
  if (apply_site(R, vs + i0, i1 - i0, INT_MAX, site, L, e->gathered, s->map) != 0)
    return -1;
  const float rs = cfg->residual_scale == 0.0f ? 1.0f : cfg->residual_scale;
  if (op->scale(b, e->shortcut_clean, n, -1.0f) || op->add(b, e->gathered, e->shortcut_clean, n) ||
      (rs != 1.0f && op->scale(b, e->gathered, n, rs)))
    return err_set(R->err, "backend %s: %s", op->name, b->err);
  if (narrow_product(R, vs, s, e->gathered, mlp ? w->w_down : w->wo, width) != 0)
    return -1;
  if (read_slot(R, s, e->shortcut_resid) ||
      op->gather_rows(b, e->gathered, resid, pass_rows, m, d) ||
      op->add(b, e->gathered, e->shortcut_resid, (size_t)m * d) ||
      op->scatter_rows(b, resid, e->gathered, pass_rows, m, d))
    return err_set(R->err, "backend %s: %s", op->name, b->err);
  return 0;
}

/* Replace: buf = the ablated output (the clean one where the intervention
 * leaves a row, e.g. a source without that position); the rows' residual
 * is the clean one before the sub-stage plus it, as the sub-stage adds. */
static int join_replace(run_t *R, const variant_t *vs, int i0, int i1, int stage, float *resid,
                        const shortcut_rows_t *s) {
  engine_t *e = R->e;
  backend_t *b = e->b;
  const backend_ops_t *op = b->ops;
  const model_config_t *cfg = R->cfg;
  const int mlp = stage % 2 == 0, L = (stage - 1) / 2, d = R->d, m = s->m;
  const hook_site_t site = mlp ? HOOK_MLP_OUT : HOOK_ATTN_OUT;
  const float *store = R->src.dstore ? R->src.dstore[store_index(cfg, site, L)] : NULL;
  const float *before = (mlp ? e->resid_mid : e->resid_pre) + (size_t)L * e->cap_clean * d;
  int *store_rows = e->shortcut_index, *pass_rows = e->shortcut_index + e->cap_rows,
      *clean_rows = e->shortcut_index + 2 * e->cap_rows;
  const size_t n = (size_t)m * d;
  if (op->upload(b, store_rows, s->store, sizeof(int) * m) ||
      op->upload(b, pass_rows, s->pass, sizeof(int) * m) ||
      op->upload(b, clean_rows, s->clean, sizeof(int) * m) ||
      (store ? op->gather_rows(b, e->gathered, store, store_rows, m, d)
             : op->memset0(b, e->gathered, sizeof(float) * n)))
    return err_set(R->err, "backend %s: %s", op->name, b->err);
  if (apply_site(R, vs + i0, i1 - i0, INT_MAX, site, L, e->gathered, s->map) != 0)
    return -1;
  if (read_slot(R, s, e->gathered) ||
      op->gather_rows(b, e->shortcut_resid, before, clean_rows, m, d) ||
      op->add(b, e->shortcut_resid, e->gathered, n) ||
      op->scatter_rows(b, resid, e->shortcut_resid, pass_rows, m, d))
    return err_set(R->err, "backend %s: %s", op->name, b->err);
  return 0;
}

long engine_shortcut_runs(const engine_t *e) {
  return e->shortcut_runs;
}

long engine_shortcut_narrow_rows(const engine_t *e) {
  return e->narrow_rows;
}

int shortcut_join(run_t *R, const variant_t *vs, int i0, int i1, int stage, float *resid, int n,
                  int n_read) {
  int any[3] = {0};
  for (int i = i0; i < i1; i++) {
    any[vs[i].shortcut] = 1;
    R->e->shortcut_runs += vs[i].shortcut != SHORTCUT_NONE;
  }
  if (!any[SHORTCUT_DELTA] && !any[SHORTCUT_REPLACE])
    return 0;
  shortcut_rows_t s = {0};
  int *host = malloc(sizeof(int) * (5 * (size_t)n + 3 * (size_t)n_read));
  if (!host)
    return err_set(R->err, "out of memory");
  s.map = host;
  s.pass = host + n;
  s.clean = host + 2 * n;
  s.store = host + 3 * n;
  s.variant = host + 4 * n;
  s.read_out = host + 5 * n;
  s.read_x = s.read_out + n_read;
  s.read_dir = s.read_x + n_read;
  int rc = 0;
  for (int kind = SHORTCUT_DELTA; kind <= SHORTCUT_REPLACE && rc == 0; kind++) {
    if (!any[kind])
      continue;
    for (int r = 0; r < n; r++)
      s.map[r] = -1;
    collect_rows(R, vs, i0, i1, kind, n_read, &s);
    if (s.m > 0)
      rc = kind == SHORTCUT_DELTA ? join_delta(R, vs, i0, i1, stage, resid, &s)
                                  : join_replace(R, vs, i0, i1, stage, resid, &s);
  }
  free(host);
  return rc;
}
